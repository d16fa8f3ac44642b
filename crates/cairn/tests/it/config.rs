//! The settings file (`--config`, `CAIRN_CONFIG`), `*_FILE` variables, shell completions
//! and help (issue 18): flag > env > file > default, unknown keys refused by name, secrets
//! never printed.

use crate::support::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// `cairn ARGS` with only the given environment (nothing inherited, so no `CAIRN_*` of
/// the test run leaks in).
fn cairn(args: &[&str], env: &[(&str, &str)]) -> Cli {
    Command::new(cairn_bin())
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("run cairn")
        .into()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn setting<'a>(shown: &'a Value, key: &str) -> (&'a str, &'a str) {
    let s = &shown["settings"][key];
    (
        s["value"].as_str().unwrap_or("<none>"),
        s["source"]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in {shown}")),
    )
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let dir = tempfile::tempdir().unwrap();
    let db_url_file = write(
        dir.path(),
        "db-url",
        "postgres://cairn:hunter2@db.internal/cairn\n",
    );
    let config = write(
        dir.path(),
        "cairn.toml",
        r#"
# Keys are the long options; `_` reads as `-`.
data-dir = "/srv/cairn-from-file"
retention_days = 10
scim-rate-limit = 7
request-log-days = 3
trusted-proxies = ["10.0.0.0/8", "192.0.2.1"]
log = "debug"
aws-secret-access-key = "file-secret"
"#,
    );
    let out = cairn(
        &[
            "--config",
            &config,
            "config",
            "show",
            "--scim-rate-limit",
            "9",
            "--json",
        ],
        &[
            ("CAIRN_RETENTION_DAYS", "20"),
            ("CAIRN_SCIM_RATE_LIMIT", "8"),
            ("CAIRN_DATABASE_URL_FILE", &db_url_file),
        ],
    )
    .ok();
    let shown = out.json();
    assert_eq!(setting(&shown, "scim-rate-limit"), ("9", "flag"), "{shown}");
    assert_eq!(setting(&shown, "retention-days"), ("20", "env"), "{shown}");
    assert_eq!(
        setting(&shown, "data-dir"),
        ("/srv/cairn-from-file", "file"),
        "{shown}"
    );
    assert_eq!(
        setting(&shown, "request-log-days"),
        ("3", "file"),
        "{shown}"
    );
    assert_eq!(
        setting(&shown, "trusted-proxies"),
        ("10.0.0.0/8,192.0.2.1", "file"),
        "{shown}"
    );
    assert_eq!(
        setting(&shown, "header-timeout-secs"),
        ("30", "default"),
        "{shown}"
    );
    assert_eq!(setting(&shown, "log"), ("debug", "file"), "{shown}");
    // Secrets: from a file, and never printed.
    assert_eq!(
        setting(&shown, "database-url"),
        ("postgres://cairn:<redacted>@db.internal/cairn", "env-file"),
        "{shown}"
    );
    assert_eq!(
        setting(&shown, "aws-secret-access-key"),
        ("<redacted>", "file"),
        "{shown}"
    );
    assert!(!out.stdout.contains("hunter2") && !out.stdout.contains("file-secret"));
    assert_eq!(shown["config_file"], config.as_str());

    // The same file through CAIRN_CONFIG, with nothing over it: the file's values.
    let shown = cairn(&["config", "show", "--json"], &[("CAIRN_CONFIG", &config)])
        .ok()
        .json();
    assert_eq!(setting(&shown, "scim-rate-limit"), ("7", "file"), "{shown}");
    assert_eq!(setting(&shown, "retention-days"), ("10", "file"), "{shown}");
    // No file: defaults.
    let shown = cairn(&["config", "show", "--json"], &[]).ok().json();
    assert_eq!(
        setting(&shown, "scim-rate-limit"),
        ("100", "default"),
        "{shown}"
    );
    assert_eq!(shown["config_file"], Value::Null);
}

#[test]
fn the_file_drives_every_command() {
    // The database named only in the file is where `tenant create` writes; a flag given
    // after the subcommand still wins over the file.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("from-file.db");
    let config = write(
        dir.path(),
        "cairn.toml",
        &format!(
            "database-url = \"sqlite:{}\"\nlisten = \"127.0.0.1:1\"\n",
            db.display()
        ),
    );
    cairn(
        &[
            "--config", &config, "tenant", "create", "--name", "Filed", "--json",
        ],
        &[],
    )
    .ok();
    assert!(db.exists(), "the file's database-url was not used");
    let other = dir.path().join("flag.db");
    let listed = cairn(
        &[
            "--config",
            &config,
            "tenant",
            "list",
            "--json",
            "--database-url",
            &format!("sqlite:{}", other.display()),
        ],
        &[],
    )
    .ok()
    .json();
    assert_eq!(listed, serde_json::json!([]), "the flag did not win");
    let listed = cairn(&["tenant", "list", "--json"], &[("CAIRN_CONFIG", &config)])
        .ok()
        .json();
    assert_eq!(listed[0]["name"], "Filed", "{listed}");
}

#[test]
fn bad_settings_files_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |toml: &str, env: &[(&str, &str)], why: &str| {
        let config = write(dir.path(), "bad.toml", toml);
        let out = cairn(&["--config", &config, "config", "show"], env);
        assert!(!out.status.success(), "{toml} accepted: {}", out.stdout);
        assert!(
            out.stderr.contains(why),
            "{toml}: expected {why:?} in {}",
            out.stderr
        );
    };
    refused("lissen = \"0.0.0.0:80\"\n", &[], "unknown setting `lissen`");
    // Options of other commands are not settings.
    refused("tenant = \"x\"\n", &[], "unknown setting `tenant`");
    refused(
        "config = \"/etc/other.toml\"\n",
        &[],
        "unknown setting `config`",
    );
    refused("scim-rate-limit = \"many\"\n", &[], "config file");
    refused("listen = \n", &[], "bad.toml");
    refused("[serve]\nlisten = \"x\"\n", &[], "`serve` is a table");
    let missing = cairn(
        &["--config", "/nonexistent/cairn.toml", "tenant", "list"],
        &[],
    );
    assert!(!missing.status.success());
    assert!(
        missing.stderr.contains("/nonexistent/cairn.toml"),
        "{}",
        missing.stderr
    );
    // A variable and its _FILE twin at once: ambiguous.
    let f = write(dir.path(), "url", "sqlite:/tmp/x.db");
    let both = cairn(
        &["config", "show"],
        &[
            ("CAIRN_DATABASE_URL", "sqlite:/tmp/y.db"),
            ("CAIRN_DATABASE_URL_FILE", &f),
        ],
    );
    assert!(!both.status.success());
    assert!(
        both.stderr
            .contains("CAIRN_DATABASE_URL or CAIRN_DATABASE_URL_FILE"),
        "{}",
        both.stderr
    );
    let unreadable = cairn(
        &["config", "show"],
        &[("AWS_SECRET_ACCESS_KEY_FILE", "/nonexistent/secret")],
    );
    assert!(!unreadable.status.success());
    assert!(
        unreadable.stderr.contains("AWS_SECRET_ACCESS_KEY_FILE"),
        "{}",
        unreadable.stderr
    );
}

#[test]
fn shell_completions_and_examples_in_help() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef cairn"),
        ("fish", "complete -c cairn"),
    ] {
        let out = cairn(&["completions", shell], &[]).ok();
        assert!(out.stdout.contains(marker), "{shell}: {}", out.stdout);
        // fish names long options without their dashes (`-l database-url`).
        for word in ["serve", "tenant", "database-url", "config"] {
            assert!(out.stdout.contains(word), "{shell} completion lacks {word}");
        }
    }
    // The bash script is valid bash.
    let dir = tempfile::tempdir().unwrap();
    let script = write(
        dir.path(),
        "cairn.bash",
        &cairn(&["completions", "bash"], &[]).ok().stdout,
    );
    let check = Command::new("bash").args(["-n", &script]).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    for args in [
        &["serve", "--help"][..],
        &["db", "copy", "--help"],
        &["tenant", "create", "--help"],
        &["config", "show", "--help"],
    ] {
        let out = cairn(args, &[]).ok();
        assert!(
            out.stdout.contains("Example:\n  cairn "),
            "{args:?}: {}",
            out.stdout
        );
    }
    let top = cairn(&["--help"], &[]).ok();
    assert!(top.stdout.contains("--config <FILE>"), "{}", top.stdout);
}
