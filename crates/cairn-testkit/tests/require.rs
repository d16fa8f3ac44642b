//! The rule of [`cairn_testkit::require`], checked against this test binary run as a
//! child process: a test that cannot get what it needs from the machine fails under CI,
//! naming it, and elsewhere says `SKIPPED` where cargo test shows it (not in captured
//! output). Moved here from the integration suite's `harness` module with the function.

use cairn_testkit::require;
use std::process::Command;

const PROBE: &str = "require_probe";
const NEED: &str = "a thing no machine has";

/// Acts only when `the_probe_fails_under_ci_and_skips_loudly_elsewhere` runs it.
#[test]
fn require_probe() {
    if std::env::var_os("CAIRN_REQUIRE_PROBE").is_none() {
        return;
    }
    if !require(NEED, false) {
        return;
    }
    unreachable!("require(_, false) returned true");
}

fn run_probe(ci: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([PROBE, "--exact", "--test-threads", "1"])
        .env("CAIRN_REQUIRE_PROBE", "1")
        .env_remove("CI");
    if let Some(v) = ci {
        cmd.env("CI", v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_probe_fails_under_ci_and_skips_loudly_elsewhere() {
    let (ok, text) = run_probe(Some("true"));
    assert!(!ok, "passed under CI=true:\n{text}");
    assert!(text.contains("1 failed"), "{text}");
    assert!(text.contains(NEED) && text.contains("CI is set"), "{text}");

    for ci in [None, Some("false")] {
        let (ok, text) = run_probe(ci);
        assert!(ok, "CI={ci:?}:\n{text}");
        assert!(text.contains("1 passed"), "CI={ci:?}: {text}");
        // Shown although the test passed and its output was captured.
        assert!(
            text.contains(&format!("SKIPPED {PROBE}: needs {NEED}")),
            "CI={ci:?}: {text}"
        );
    }
}
