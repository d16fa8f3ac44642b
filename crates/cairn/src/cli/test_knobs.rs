//! Settings that exist for the tests only: `CAIRN_CLOCK_OFFSET_SECS` (shifts the clock,
//! so the retention purge can delete data early), `CAIRN_VAULT_QUOTA_UNIT_BYTES`
//! (shrinks the quota's gigabyte), and `CAIRN_SSO_ALLOW_INSECURE_IDP` (identity
//! providers over plain http and on private addresses).
//!
//! They are honoured only in builds with debug assertions — the dev and test profiles
//! that `cargo test` builds the integration tests' `cairn` with — or with the cargo
//! feature `test-knobs` (`cargo build --release --features test-knobs`, for running the
//! tests against an optimised binary). A release build (`cargo build --release`, the
//! package) resets them to their defaults and warns once that they were ignored.
//! (A dev-dependency cannot turn a feature on for the binary the integration tests run,
//! so debug assertions are what marks a test build.)

use super::args::{Cli, Command, SsoCmd};
use std::sync::OnceLock;

/// `--clock-offset-secs`' default: the real clock.
pub const CLOCK_OFFSET_DEFAULT: i64 = 0;
/// `--vault-quota-unit-bytes`' default: a GB of Account Size is 10^9 bytes.
pub const QUOTA_UNIT_DEFAULT: u64 = 1_000_000_000;

/// Whether this build honours the test knobs.
pub const HONOURED: bool = cfg!(any(debug_assertions, feature = "test-knobs"));

/// The knobs a release build found set and ignored, kept for `serve` to log once its
/// logging is set up.
static IGNORED: OnceLock<Vec<&'static str>> = OnceLock::new();

/// Resets every test knob set in `cli` to its default unless `honoured`; returns the
/// names of those reset (empty when `honoured` or none was set).
pub fn apply(cli: &mut Cli, honoured: bool) -> Vec<&'static str> {
    if honoured {
        return Vec::new();
    }
    let mut ignored = Vec::new();
    let g = &mut cli.global;
    if g.clock_offset_secs != CLOCK_OFFSET_DEFAULT {
        g.clock_offset_secs = CLOCK_OFFSET_DEFAULT;
        ignored.push("CAIRN_CLOCK_OFFSET_SECS (--clock-offset-secs)");
    }
    if g.vault_quota_unit_bytes != QUOTA_UNIT_DEFAULT {
        g.vault_quota_unit_bytes = QUOTA_UNIT_DEFAULT;
        ignored.push("CAIRN_VAULT_QUOTA_UNIT_BYTES (--vault-quota-unit-bytes)");
    }
    let insecure = match &mut cli.command {
        Command::Serve(a) => Some(&mut a.sso_allow_insecure_idp),
        Command::Sso(SsoCmd::Saml {
            allow_insecure_idp, ..
        }) => Some(allow_insecure_idp),
        _ => None,
    };
    if let Some(flag) = insecure.filter(|f| **f) {
        *flag = false;
        ignored.push("CAIRN_SSO_ALLOW_INSECURE_IDP (--sso-allow-insecure-idp)");
    }
    ignored
}

/// The warning for knobs that were ignored.
pub fn warning(ignored: &[&str]) -> String {
    format!(
        "ignored (test-only settings; this release build honours them only with the \
         `test-knobs` feature): {}",
        ignored.join(", ")
    )
}

/// Applies [`HONOURED`] to `cli`. For `serve` the warning waits for its logging
/// ([`log_ignored`]); other commands print it to stderr now.
pub fn enforce(cli: &mut Cli) {
    let ignored = apply(cli, HONOURED);
    if ignored.is_empty() {
        return;
    }
    if matches!(cli.command, Command::Serve(_)) {
        let _ = IGNORED.set(ignored);
    } else {
        eprintln!("warning: {}", warning(&ignored));
    }
}

/// Logs, once, the knobs `serve` ignored.
pub fn log_ignored() {
    if let Some(ignored) = IGNORED.get() {
        tracing::warn!("{}", warning(ignored));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap()
    }

    /// What a release build does (the feature-off branch, run in this test build).
    #[test]
    fn a_release_build_resets_the_knobs_and_says_which() {
        let mut cli = parse(&[
            "cairn",
            "--clock-offset-secs",
            "2678400",
            "--vault-quota-unit-bytes",
            "4000000",
            "serve",
            "--sso-allow-insecure-idp",
        ]);
        let ignored = apply(&mut cli, false);
        assert_eq!(ignored.len(), 3, "{ignored:?}");
        assert_eq!(cli.global.clock_offset_secs, 0);
        assert_eq!(cli.global.vault_quota_unit_bytes, 1_000_000_000);
        let Command::Serve(a) = &cli.command else {
            panic!("serve")
        };
        assert!(!a.sso_allow_insecure_idp);
        assert!(warning(&ignored).contains("CAIRN_CLOCK_OFFSET_SECS"));

        let mut cli = parse(&[
            "cairn",
            "sso",
            "saml",
            "--tenant",
            "t",
            "--metadata-url",
            "http://127.0.0.1/md",
            "--allow-insecure-idp",
        ]);
        assert_eq!(apply(&mut cli, false).len(), 1);
        let Command::Sso(SsoCmd::Saml {
            allow_insecure_idp, ..
        }) = &cli.command
        else {
            panic!("sso saml")
        };
        assert!(!allow_insecure_idp);

        // Nothing set: nothing to warn about.
        let mut cli = parse(&["cairn", "tenant", "list"]);
        assert!(apply(&mut cli, false).is_empty());
    }

    #[test]
    fn a_test_build_keeps_them() {
        let mut cli = parse(&["cairn", "--clock-offset-secs", "-60", "tenant", "list"]);
        assert!(apply(&mut cli, true).is_empty());
        assert_eq!(cli.global.clock_offset_secs, -60);
    }
}
