//! Tests that need something from the machine (root, a tool): under CI they fail when it
//! is missing, elsewhere they say `SKIPPED` and return.

use std::io::Write;

/// Whether this run is CI's (`CI` set to anything but `false`/`0`/empty; `.ci/run` and
/// GitHub Actions set `CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A line on the test process's stderr that cargo test shows whatever the outcome:
/// the test harness captures `print!`/`eprint!` of passing tests, not direct writes.
pub fn announce(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The running test's name (libtest names each test's thread after it).
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned()
}

/// What a test needs from the machine (`need`, e.g. "mounting a tmpfs (root)") and
/// whether it has it. With it, the test announces that it ran, so CI's log shows it did.
/// Without it, under CI (see [`in_ci`]) the test fails naming what is missing; elsewhere
/// it says `SKIPPED` on the uncaptured stderr and the caller returns (a local machine
/// may lack root or a tool, CI may not).
#[track_caller]
pub fn require(need: &str, have: bool) -> bool {
    let test = test_name();
    if have {
        announce(&format!("ran {test}: {need}"));
        return true;
    }
    assert!(
        !in_ci(),
        "{test}: needs {need}, which this machine does not give it, and CI is set: \
         a CI run must not skip it"
    );
    announce(&format!(
        "SKIPPED {test}: needs {need} (CI fails here instead)"
    ));
    false
}
