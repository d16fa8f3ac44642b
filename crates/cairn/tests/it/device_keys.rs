//! Device keys (issue 21) end to end with the real restic: two named keys on one account
//! both back up; each key's last use is its own; revoking one leaves the other working
//! (the revoked one gets 401); the CLI's `account key`, `keys` and `revoke-key` with
//! `--json`, the bound on keys per account, name validation, and the audit entries
//! (names, never secrets).

use crate::support::*;
use serde_json::{json, Value};
use std::process::{Command, Output};

const PASSWORD: &str = "correct horse battery staple";

fn restic(repo: &str, args: &[&str]) -> Output {
    Command::new("restic")
        .args(["--no-cache", "-r", repo])
        .args(args)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env_remove("RESTIC_REPOSITORY")
        .env("XDG_CACHE_HOME", std::env::temp_dir())
        .output()
        .expect("restic is installed (apt-get install restic; scripts/deps does)")
}

#[track_caller]
fn ok(o: Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "restic failed: {text}");
    text
}

fn new_key(app: &TestApp, t: &Tenant, user_name: &str, name: &str) -> Cli {
    app.cli(&[
        "account",
        "key",
        "--tenant",
        &t.id,
        "--user-name",
        user_name,
        "--name",
        name,
        "--json",
    ])
}

fn keys(app: &TestApp, t: &Tenant, user_name: &str) -> Vec<Value> {
    let v = app
        .cli(&[
            "account",
            "keys",
            "--tenant",
            &t.id,
            "--user-name",
            user_name,
            "--json",
        ])
        .ok()
        .json();
    v.as_array().unwrap().clone()
}

fn last_used(keys: &[Value], name: &str) -> Value {
    keys.iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("no key {name} in {keys:?}"))["last_used"]
        .clone()
}

#[tokio::test]
async fn two_device_keys_back_up_alone_and_revoking_one_leaves_the_other() {
    let app = TestApp::spawn().await;
    let t = app.tenant("DeviceKeys");
    let name = "dev@example.com";
    let created = t
        .post(
            "/Users",
            &json!({"schemas": [USER_URN], "userName": name, "active": true}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json()["id"].as_str().unwrap().to_owned();

    let laptop = new_key(&app, &t, name, "work laptop").ok().json();
    let desktop = new_key(&app, &t, name, "  home desktop ").ok().json();
    assert_eq!(laptop["name"], "work laptop");
    assert_eq!(desktop["name"], "home desktop", "the name is trimmed");
    assert_eq!(laptop["account_id"], id.as_str());
    assert_ne!(laptop["user"], desktop["user"]);
    let repo = |k: &Value| k["repository"].as_str().unwrap().to_owned();
    let (repo_a, repo_b) = (repo(&laptop), repo(&desktop));
    // Both name the same repository, each with its own credentials.
    let tail = format!("/backup/{}/{id}/", t.id);
    assert!(
        repo_a.ends_with(&tail) && repo_b.ends_with(&tail),
        "{repo_a}"
    );

    // Listed without secrets, never used yet.
    let listed = keys(&app, &t, name);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["name"], "work laptop");
    assert!(listed.iter().all(|k| k["last_used"].is_null()
        && k["created"].is_string()
        && k.get("secret").is_none()));
    let text = serde_json::to_string(&listed).unwrap();
    for k in [&laptop, &desktop] {
        assert!(!text.contains(k["secret"].as_str().unwrap()));
    }

    // The laptop backs up: its last use is recorded, the desktop's is not.
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a.txt"), b"from the laptop").unwrap();
    ok(restic(&repo_a, &["init"]));
    ok(restic(&repo_a, &["backup", src.path().to_str().unwrap()]));
    let after_a = keys(&app, &t, name);
    let used_a = last_used(&after_a, "work laptop");
    assert!(used_a.is_string(), "{after_a:?}");
    assert!(last_used(&after_a, "home desktop").is_null(), "{after_a:?}");

    // The desktop backs up into the same repository: its own last use, the laptop's
    // unchanged.
    std::fs::write(src.path().join("b.txt"), b"from the desktop").unwrap();
    ok(restic(&repo_b, &["backup", src.path().to_str().unwrap()]));
    let after_b = keys(&app, &t, name);
    assert!(
        last_used(&after_b, "home desktop").is_string(),
        "{after_b:?}"
    );
    assert_eq!(last_used(&after_b, "work laptop"), used_a);

    // Revoking the laptop's key: it gets 401, the desktop keeps working.
    let revoked = app
        .cli(&[
            "account",
            "revoke-key",
            "--tenant",
            &t.id,
            "--user-name",
            name,
            "--name",
            "WORK LAPTOP",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(revoked["revoked"], true, "{revoked}");
    let config = |k: &Value| {
        app.client
            .get(format!("{}/backup/{}/{id}/config", app.base, t.id))
            .basic_auth(k["user"].as_str().unwrap(), k["secret"].as_str())
            .send()
    };
    assert_eq!(config(&laptop).await.unwrap().status(), 401);
    assert_eq!(config(&desktop).await.unwrap().status(), 200);
    let refused = restic(&repo_a, &["snapshots"]);
    assert!(!refused.status.success());
    let snaps = ok(restic(&repo_b, &["snapshots", "--json"]));
    let snaps: Value = serde_json::from_str(snaps.lines().last().unwrap()).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 2, "{snaps}");
    ok(restic(&repo_b, &["check"]));
    let left = keys(&app, &t, name);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["name"], "home desktop");
    // Revoking it again: nothing to revoke.
    let again = app.cli(&[
        "account",
        "revoke-key",
        "--tenant",
        &t.id,
        "--user-name",
        name,
        "--name",
        "work laptop",
    ]);
    assert!(!again.status.success());

    // Audited with the key's name, never a secret.
    let audit = app.cli(&["audit", "--tenant", &t.id, "--json"]).ok();
    for k in [&laptop, &desktop] {
        assert!(!audit.stdout.contains(k["secret"].as_str().unwrap()));
    }
    let events = audit.json();
    let of = |action: &str| -> Vec<Value> {
        events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == action)
            .cloned()
            .collect()
    };
    assert_eq!(of("backup_key_generated").len(), 2);
    let rev = of("backup_key_revoked");
    assert_eq!(rev.len(), 1);
    assert!(
        rev[0]["changes"].to_string().contains("work laptop"),
        "{rev:?}"
    );
}

#[tokio::test]
async fn key_names_are_validated_unique_and_keys_bounded_per_account() {
    let app = TestApp::spawn().await;
    let t = app.tenant("KeyBounds");
    let name = "bound@example.com";
    let created = t
        .post(
            "/Users",
            &json!({"schemas": [USER_URN], "userName": name, "active": true}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);

    // Without --name: the key named "default"; a second one of that name is refused.
    let first = app
        .cli(&[
            "account",
            "key",
            "--tenant",
            &t.id,
            "--user-name",
            name,
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(first["name"], "default");
    let dup = new_key(&app, &t, name, "DEFAULT");
    assert!(!dup.status.success());
    assert!(
        dup.stderr.contains("already has a backup key named"),
        "{}",
        dup.stderr
    );
    for bad in ["", "   ", &"x".repeat(65), "tab\there"] {
        let r = new_key(&app, &t, name, bad);
        assert!(!r.status.success(), "{bad:?} accepted");
    }
    assert!(new_key(&app, &t, name, &"é".repeat(64)).status.success());
    // Up to 20 keys, then refused until one is revoked.
    for i in 3..=20 {
        new_key(&app, &t, name, &format!("device {i}")).ok();
    }
    assert_eq!(keys(&app, &t, name).len(), 20);
    let over = new_key(&app, &t, name, "one too many");
    assert!(!over.status.success());
    assert!(over.stderr.contains("at most 20"), "{}", over.stderr);
    assert_eq!(keys(&app, &t, name).len(), 20);
    app.cli(&[
        "account",
        "revoke-key",
        "--tenant",
        &t.id,
        "--user-name",
        name,
        "--name",
        "device 7",
    ])
    .ok();
    new_key(&app, &t, name, "one too many").ok();
}
