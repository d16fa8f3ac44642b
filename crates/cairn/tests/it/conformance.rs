//! The external conformance checker: scim2-tester (driven by `scim2 test`) through
//! `scripts/scim2-check URL TOKEN`, against a fresh server and tenant. Every check must
//! report SUCCESS (the script exits non-zero otherwise, SKIPPED included).
//!
//! `CAIRN_SCIM2_CHECK` names another program to run instead of scripts/scim2-check (same
//! arguments). The scim2 CLI itself is found by the script: `$CAIRN_SCIM2` (exported by
//! scripts/test), else `.venv/bin/scim2`, else `scim2` on PATH. A missing tool fails the
//! test, it never skips.

use crate::support::*;
use std::path::PathBuf;
use std::process::Stdio;

fn checker() -> PathBuf {
    match std::env::var_os("CAIRN_SCIM2_CHECK") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo_root().join("scripts/scim2-check"),
    }
}

#[tokio::test]
async fn scim2_tester_reports_every_check_successful() {
    let program = checker();
    assert!(
        program.is_file(),
        "conformance checker {} not found (set CAIRN_SCIM2_CHECK or restore scripts/scim2-check)",
        program.display()
    );
    let app = TestApp::spawn().await;
    let t = app.tenant("Conformance");
    let url = t.url.clone();
    let token = t.token.clone();
    let prog = program.clone();
    // The checker takes minutes at worst; run it off the runtime so the server keeps
    // answering (it is a separate process anyway, but do not block a runtime worker).
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&prog)
            .arg(&url)
            .arg(&token)
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("could not run {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(
        out.status.success(),
        "{} {} TOKEN failed ({}); summary: {summary}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- server log ---\n{}",
        program.display(),
        t.url,
        out.status,
        app.log()
    );
    assert!(
        summary.starts_with("scim2-tester: ") && summary.ends_with(" 0 failed"),
        "unexpected last line {summary:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    // A run that reports no passed check is no evidence of conformance.
    assert!(
        !summary.starts_with("scim2-tester: 0 passed"),
        "no check ran: {summary}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
}
