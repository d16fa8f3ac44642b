//! The operator CLI: the exact JSON that scripts rely on, environment-variable forms of
//! the global options, and bad arguments — a non-zero exit with a clear message on stderr,
//! never a panic, and nothing changed.

use crate::support::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};

const NO_TENANT: &str = "00000000-0000-4000-8000-000000000000";

fn cli(d: &Deployment, args: &[&str]) -> Cli {
    run_cli(d, Some("https://backup.example.com/"), args, None)
}

/// Asserts a clean failure: non-zero exit, stderr mentions every needle
/// (case-insensitive), no panic, nothing on stdout.
#[track_caller]
fn assert_fails(c: &Cli, needles: &[&str]) {
    assert!(!c.status.success(), "succeeded: {c:?}");
    assert!(c.status.code().is_some(), "killed by a signal: {c:?}");
    assert!(!c.stderr.contains("panicked"), "{c:?}");
    assert!(!c.stderr.contains("RUST_BACKTRACE"), "{c:?}");
    let err = c.stderr.to_lowercase();
    for n in needles {
        assert!(err.contains(&n.to_lowercase()), "stderr lacks {n:?}: {c:?}");
    }
    assert!(c.stdout.trim().is_empty(), "{c:?}");
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
        })
}

#[test]
fn json_shapes_of_every_command() {
    let d = Deployment::new();
    let t = cli(&d, &["tenant", "create", "--name", "Acme Backup", "--json"])
        .ok()
        .json();
    assert_eq!(keys(&t), ["id", "name", "tenant_url"], "{t}");
    let id = t["id"].as_str().unwrap().to_owned();
    assert!(is_uuid(&id), "{id}");
    assert_eq!(t["name"], "Acme Backup");
    // Generated from the public URL (trailing slash dropped) and the tenant id.
    assert_eq!(
        t["tenant_url"],
        format!("https://backup.example.com/scim/v2/{id}")
    );
    assert!(!t["tenant_url"].as_str().unwrap().contains('_'));

    let out = cli(
        &d,
        &["scim", "enable", "--tenant", &id, "--account-size-gb", "25"],
    )
    .ok();
    assert!(out.stdout.contains("25"), "{out:?}");
    let tok = cli(&d, &["scim", "token", "--tenant", &id, "--json"])
        .ok()
        .json();
    assert_eq!(keys(&tok), ["tenant_url", "token"], "{tok}");
    assert_eq!(tok["tenant_url"], t["tenant_url"]);
    let token = tok["token"].as_str().unwrap();
    let hex = token.strip_prefix("cairn_").expect("recognisable prefix");
    assert_eq!(hex.len(), 64, "256 bits: {token}");
    assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
    let tok2 = cli(&d, &["scim", "token", "--tenant", &id, "--json"])
        .ok()
        .json();
    assert_ne!(tok2["token"], tok["token"]);

    let list = cli(&d, &["tenant", "list", "--json"]).ok().json();
    assert_eq!(
        list,
        json!([{"id": id, "name": "Acme Backup", "tenant_url": t["tenant_url"],
                "scim_enabled": true, "account_size_gb": 25}])
    );

    let out = run_cli(
        &d,
        None,
        &[
            "user",
            "create",
            "--tenant",
            &id,
            "--email",
            "admin@acme.test",
            "--role",
            "administrator",
            "--password-stdin",
        ],
        Some("correct horse battery staple\n"),
    )
    .ok();
    assert!(out.stdout.contains("admin@acme.test"), "{out:?}");
    assert!(!out.stdout.contains("correct horse"), "{out:?}");

    let audit = cli(&d, &["audit", "--tenant", &id, "--json"]).ok().json();
    let events = audit.as_array().unwrap();
    assert_eq!(events.len(), 6, "{audit:#}");
    for e in events {
        assert_eq!(
            keys(e),
            [
                "action",
                "actor_id",
                "actor_kind",
                "at",
                "changes",
                "id",
                "request_id",
                "target_id",
                "target_name",
                "target_type",
                "tenant_id",
                "user_agent"
            ],
            "{e}"
        );
        assert!(e["id"].is_i64(), "{e}");
        assert!(e["changes"].is_object(), "{e}");
        let at = e["at"].as_str().unwrap();
        assert!(
            at.contains('T') && (at.ends_with('Z') || at.contains('+')),
            "{at}"
        );
    }
    assert_eq!(events[0]["action"], "dashboard_user_created");
    assert_eq!(events[5]["action"], "tenant_created");
    let audit_limited = cli(&d, &["audit", "--tenant", &id, "--json", "--limit", "2"])
        .ok()
        .json();
    assert_eq!(audit_limited.as_array().unwrap()[..], events[..2]);

    assert_eq!(
        cli(&d, &["account", "purge-expired", "--json"]).ok().json(),
        json!([])
    );
    // Text forms work too.
    let out = cli(&d, &["audit", "--tenant", &id]).ok();
    assert_eq!(out.stdout.lines().count(), 6, "{out:?}");
    assert!(cli(&d, &["account", "purge-expired"])
        .ok()
        .stdout
        .contains('0'));
}

#[tokio::test]
async fn restore_json_shape() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Restorer");
    let u = t
        .create_user(&json!({"schemas":[USER_URN],"userName":"Back@Again.test"}))
        .await;
    let id = u["id"].as_str().unwrap();
    assert_eq!(t.delete(&format!("/Users/{id}")).await.status, 204);
    let out = app
        .cli(&[
            "account",
            "restore",
            "--tenant",
            &t.id,
            "--user-name",
            "back@again.test",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(keys(&out), ["id", "status", "user_name"], "{out}");
    assert_eq!(out["id"], id);
    assert_eq!(out["user_name"], "Back@Again.test");
    assert!(out["status"].is_string(), "{out}");
}

#[test]
fn global_options_from_the_environment() {
    let d = Deployment::new();
    let run = |args: &[&str]| -> Cli {
        let mut cmd = Command::new(cairn_bin());
        cmd.args(args)
            .env("CAIRN_DATA_DIR", d.data_dir.path())
            .env("CAIRN_PUBLIC_URL", "https://env.example.com")
            .env("CAIRN_LOG", "warn")
            .env_remove("CAIRN_DATABASE_URL")
            .stdin(Stdio::null());
        if let Some(url) = &d.database_url {
            cmd.env("CAIRN_DATABASE_URL", url);
        }
        cmd.output().unwrap().into()
    };
    let t = run(&["tenant", "create", "--name", "Env", "--json"])
        .ok()
        .json();
    let id = t["id"].as_str().unwrap();
    assert_eq!(
        t["tenant_url"],
        format!("https://env.example.com/scim/v2/{id}")
    );
    // The same deployment through the flags sees it.
    let list = cli(&d, &["tenant", "list", "--json"]).ok().json();
    assert_eq!(list[0]["id"], id);
    // Flags win over the environment.
    let tok = {
        let mut cmd = Command::new(cairn_bin());
        cmd.args(d.global_args())
            .args(["--public-url", "https://flag.example.com"])
            .args(["scim", "token", "--tenant", id, "--json"])
            .env("CAIRN_PUBLIC_URL", "https://env.example.com")
            .env("CAIRN_LOG", "warn")
            .env_remove("CAIRN_DATABASE_URL")
            .env_remove("CAIRN_DATA_DIR");
        Cli::from(cmd.output().unwrap()).ok().json()
    };
    assert_eq!(
        tok["tenant_url"],
        format!("https://flag.example.com/scim/v2/{id}")
    );
}

#[test]
fn bad_arguments_fail_clearly_and_change_nothing() {
    let d = Deployment::new();
    let id = cli(&d, &["tenant", "create", "--name", "Keep", "--json"])
        .ok()
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    cli(
        &d,
        &["scim", "enable", "--tenant", &id, "--account-size-gb", "40"],
    )
    .ok();
    let state = |d: &Deployment| {
        (
            cli(d, &["tenant", "list", "--json"]).ok().stdout,
            cli(d, &["audit", "--tenant", &id, "--json"]).ok().stdout,
        )
    };
    let before = state(&d);

    // Unknown and malformed tenants, for every command that takes one.
    for t in [
        NO_TENANT,
        "nope",
        "",
        "5C29F110-98A2-4C97-806F-2496C8A28909",
    ] {
        let needle = if t == NO_TENANT {
            "tenant not found"
        } else {
            "not a tenant id"
        };
        for args in [
            vec!["scim", "enable", "--tenant", t, "--account-size-gb", "5"],
            vec!["scim", "disable", "--tenant", t],
            vec!["scim", "token", "--tenant", t, "--json"],
            vec!["audit", "--tenant", t, "--json"],
            vec![
                "account",
                "restore",
                "--tenant",
                t,
                "--user-name",
                "x@y.test",
            ],
        ] {
            assert_fails(&cli(&d, &args), &[needle]);
        }
        let c = run_cli(
            &d,
            None,
            &[
                "user",
                "create",
                "--tenant",
                t,
                "--email",
                "a@b.test",
                "--role",
                "viewer",
                "--password-stdin",
            ],
            Some("a long enough password\n"),
        );
        assert_fails(&c, &[needle]);
    }

    // Account sizes.
    for (size, needle) in [
        ("0", "at least 1"),
        ("-1", "at least 1"),
        ("-99999999999", "at least 1"),
        ("abc", "abc"),
        ("1.5", "1.5"),
        ("", "account-size-gb"),
        ("1000001", "at most"),
        ("99999999999999999999999", "account-size-gb"),
    ] {
        let c = cli(
            &d,
            &["scim", "enable", "--tenant", &id, "--account-size-gb", size],
        );
        assert_fails(&c, &[needle]);
    }
    assert_fails(
        &cli(&d, &["scim", "enable", "--tenant", &id]),
        &["account-size-gb"],
    );

    // Dashboard users: bad email, bad role, no or short password, missing flag.
    let user = |email: &str, role: &str, stdin: Option<&str>, flag: bool| {
        let mut args = vec![
            "user", "create", "--tenant", &id, "--email", email, "--role", role,
        ];
        if flag {
            args.push("--password-stdin");
        }
        run_cli(&d, None, &args, stdin)
    };
    let pw = Some("twelve chars or more\n");
    for email in ["not-an-email", "", "a b@c.test", "   "] {
        assert_fails(&user(email, "viewer", pw, true), &["email"]);
    }
    assert_fails(&user("a@b.test", "god", pw, true), &["role"]);
    assert_fails(&user("a@b.test", "viewer", None, true), &["password"]);
    assert_fails(&user("a@b.test", "viewer", Some(""), true), &["password"]);
    assert_fails(&user("a@b.test", "viewer", Some("short\n"), true), &["12"]);
    assert_fails(
        &user("a@b.test", "viewer", pw, false),
        &["--password-stdin"],
    );

    // Tenant names, restore arguments, retention, unknown commands.
    assert_fails(
        &cli(&d, &["tenant", "create", "--name", "", "--json"]),
        &["name"],
    );
    assert_fails(&cli(&d, &["tenant", "create", "--json"]), &["--name"]);
    assert_fails(
        &cli(
            &d,
            &["account", "restore", "--tenant", &id, "--user-name", ""],
        ),
        &["username"],
    );
    assert_fails(
        &cli(
            &d,
            &[
                "account",
                "restore",
                "--tenant",
                &id,
                "--user-name",
                "nobody@x.test",
            ],
        ),
        &["not found"],
    );
    for days in ["0", "-1", "abc", "99999"] {
        assert_fails(
            &cli(&d, &["--retention-days", days, "account", "purge-expired"]),
            &["retention-days"],
        );
    }
    assert_fails(&cli(&d, &["frobnicate"]), &["frobnicate"]);
    assert_fails(
        &cli(&d, &["--log-format", "xml", "tenant", "list"]),
        &["log-format"],
    );

    assert_eq!(state(&d), before, "a failed command changed something");
}

/// Runs `cairn` with explicit global options only (no deployment).
fn raw(args: &[&str]) -> Cli {
    Command::new(cairn_bin())
        .args(args)
        .env("CAIRN_LOG", "warn")
        .env_remove("CAIRN_DATABASE_URL")
        .env_remove("CAIRN_DATA_DIR")
        .env_remove("CAIRN_PUBLIC_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .into()
}

#[test]
fn bad_databases_and_listen_addresses_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let dd = dir.path().display().to_string();
    for url in ["mysql://root@localhost/x", "sqlite:", "", "postgres:/nope"] {
        let c = raw(&["--data-dir", &dd, "--database-url", url, "tenant", "list"]);
        assert_fails(&c, &["database-url"]);
    }
    // Nothing listens on port 1: the connection fails quickly and clearly.
    let start = std::time::Instant::now();
    let c = raw(&[
        "--data-dir",
        &dd,
        "--database-url",
        "postgres://postgres@127.0.0.1:1/cairn",
        "tenant",
        "list",
    ]);
    assert_fails(&c, &["postgresql"]);
    assert!(start.elapsed() < std::time::Duration::from_secs(15));
    // A data directory that cannot be created.
    let c = raw(&["--data-dir", "/proc/cairn-cannot-be-here", "tenant", "list"]);
    assert_fails(&c, &["/proc/cairn-cannot-be-here"]);
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "x").unwrap();
    let c = raw(&[
        "--data-dir",
        &blocker.display().to_string(),
        "tenant",
        "list",
    ]);
    assert_fails(&c, &["a-file"]);
    // A file that is not a database.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'j'; 8192]).unwrap();
    let c = raw(&[
        "--database-url",
        &format!("sqlite:{}", junk.display()),
        "tenant",
        "list",
    ]);
    assert_fails(&c, &[]);
    // serve: a listen address that is not one, and one already in use.
    let c = raw(&["--data-dir", &dd, "serve", "--listen", "not-an-address"]);
    assert_fails(&c, &["not-an-address"]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let c = raw(&["--data-dir", &dd, "serve", "--listen", &addr]);
    assert_fails(&c, &[&addr]);
}

/// `cairn audit --json | head -1` and the like: a reader that goes away early is an
/// ordinary error, not a panic.
#[test]
fn a_closed_standard_output_is_an_error_not_a_panic() {
    let d = Deployment::new();
    let id = cli(&d, &["tenant", "create", "--name", "Piped", "--json"])
        .ok()
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for args in [
        vec!["audit", "--tenant", id.as_str(), "--json"],
        vec!["audit", "--tenant", id.as_str()],
        vec!["tenant", "list", "--json"],
        vec!["scim", "token", "--tenant", id.as_str(), "--json"],
    ] {
        let mut child = Command::new(cairn_bin())
            .args(d.global_args())
            .args(&args)
            .env("CAIRN_LOG", "warn")
            .env_remove("CAIRN_DATABASE_URL")
            .env_remove("CAIRN_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before anything is written
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("standard output"), "{args:?}: {stderr}");
    }
}

/// `cairn man --dir D` (the .deb's manual pages): one page per command, each flag with
/// its environment variable, hidden commands and flags left out.
#[test]
fn man_pages_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(cairn_bin())
        .args(["man", "--dir"])
        .arg(dir.path().join("man1"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut pages: Vec<String> = std::fs::read_dir(dir.path().join("man1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    pages.sort();
    for want in [
        "cairn.1",
        "cairn-serve.1",
        "cairn-tenant.1",
        "cairn-tenant-create.1",
        "cairn-vault-verify.1",
        "cairn-db-copy.1",
    ] {
        assert!(pages.iter().any(|p| p == want), "{want} missing: {pages:?}");
    }
    assert!(!pages.iter().any(|p| p == "cairn-man.1"), "{pages:?}");
    assert!(!pages.iter().any(|p| p.contains("help")), "{pages:?}");

    let serve = std::fs::read_to_string(dir.path().join("man1/cairn-serve.1")).unwrap();
    assert!(serve.contains("\n.TH cairn-serve 1 "), "{serve}");
    for want in [
        "listen",
        "CAIRN_LISTEN",
        "source\\-url",
        "CAIRN_SOURCE_URL",
        "data\\-dir",
    ] {
        assert!(serve.contains(want), "cairn-serve.1 lacks {want}");
    }
    // Hidden test-only flags stay out of the manual.
    assert!(!serve.contains("CAIRN_CLOCK_OFFSET_SECS"), "{serve}");
    assert!(!serve.contains("bench\\-floor"), "{serve}");
}
