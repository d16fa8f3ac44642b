//! Repository health (issue 21, item 4) with the real restic: a healthy repository
//! verifies clean; a byte flipped on disk or an object overwritten in the S3 server
//! (moto's) is reported by `cairn vault verify` (non-zero exit), recorded on the account
//! and shown on its page; the page's "Verify now" is for administrators, with CSRF.

use crate::support::*;
use crate::vault::{account, make_tree, ok, restic, Account};
use serde_json::Value;
use std::sync::Arc;

/// Backs up a small tree into the account's repository.
fn back_up(a: &Account, seed: u64) {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src, seed, 1 << 20);
    ok(restic(&a.repo, &["init"]));
    ok(restic(&a.repo, &["backup", src.to_str().unwrap()]));
}

/// The largest data object of the account's repository (`data/ab/ab12…`).
fn a_data_object(d: &Deployment, t: &Tenant, a: &Account) -> String {
    d.vault_objects(&t.id, &a.id)
        .into_iter()
        .filter(|(k, _)| k.starts_with("data/"))
        .max_by_key(|(_, size)| *size)
        .expect("a data object")
        .0
}

fn verify(app: &TestApp, t: &Tenant, extra: &[&str]) -> (bool, Value) {
    let mut args = vec!["vault", "verify", "--tenant", &t.id, "--json"];
    args.extend_from_slice(extra);
    let r = app.cli(&args);
    let out = r.json();
    (r.status.success(), out)
}

/// A healthy repository verifies clean, every stored object of the checked kinds read
/// (not `config`, locks or the trash); returns its one account's result.
fn assert_clean(app: &TestApp, d: &Deployment, t: &Tenant, a: &Account) -> Value {
    let (success, out) = verify(app, t, &[]);
    assert!(success, "{out}");
    assert_eq!(out["bad_count"], 0, "{out}");
    let acc = out["accounts"][0].clone();
    let stored: Vec<_> = d
        .vault_objects(&t.id, &a.id)
        .into_iter()
        .filter(|(k, _)| {
            ["keys/", "snapshots/", "index/", "data/"]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .collect();
    assert_eq!(acc["objects"], stored.len(), "{out} {stored:?}");
    assert_eq!(
        acc["bytes"],
        stored.iter().map(|(_, s)| s).sum::<u64>(),
        "{out}"
    );
    assert_eq!(acc["bad"], Value::Array(vec![]), "{out}");
    acc
}

/// The check's report of exactly `object` as `reason`.
fn assert_reports(out: &Value, object: &str, reason: &str) {
    let acc = &out["accounts"][0];
    assert_eq!(out["bad_count"], 1, "{out}");
    assert_eq!(acc["bad"][0]["object"], object, "{out}");
    assert_eq!(acc["bad"][0]["reason"], reason, "{out}");
}

#[tokio::test]
async fn verify_finds_a_flipped_byte_on_disk_and_nothing_in_a_healthy_repository() {
    let d = Arc::new(Deployment::new());
    let app = TestApp::spawn_on(d.clone(), Opts::default()).await;
    let t = app.tenant("Verify");
    let a = account(&app, &t, "disk@example.com").await;
    let admin = dashboard_user(&app, &t, "disk-admin@verify.test", "administrator").await;
    back_up(&a, 3);
    let clean = assert_clean(&app, &d, &t, &a);
    assert_eq!(clean["user_name"], "disk@example.com");
    // The same for one account, with the rate limit off; an unknown account is refused.
    let (success, one) = verify(
        &app,
        &t,
        &["--user-name", "disk@example.com", "--max-mib-per-sec", "0"],
    );
    assert!(success, "{one}");
    assert_eq!(one["accounts"][0]["objects"], clean["objects"]);
    let r = app.cli(&[
        "vault",
        "verify",
        "--tenant",
        &t.id,
        "--user-name",
        "nobody@example.com",
    ]);
    assert!(!r.status.success());
    assert!(r.stderr.contains("no account"), "{}", r.stderr);

    // Bit rot: one byte of a pack flipped.
    let key = a_data_object(&d, &t, &a);
    let path = d
        .data_dir
        .path()
        .join("vault")
        .join(&t.id)
        .join(&a.id)
        .join(&key);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let name = key.rsplit('/').next().unwrap();
    let (success, out) = verify(&app, &t, &[]);
    assert!(!success, "a bad object must fail the command: {out}");
    assert_reports(&out, &format!("data/{name}"), "mismatch");
    // The text output names it too.
    let r = app.cli(&["vault", "verify", "--tenant", &t.id]);
    assert!(!r.status.success());
    assert!(
        r.stdout.contains(&format!("data/{name} (mismatch)")),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("1 bad object(s)"), "{}", r.stderr);

    // A file truncated by a disk fault.
    std::fs::write(&path, &bytes[..100]).unwrap();
    let (success, out) = verify(&app, &t, &[]);
    assert!(!success);
    assert_reports(&out, &format!("data/{name}"), "mismatch");
    // restic agrees that the repository is damaged.
    assert!(!restic(&a.repo, &["check", "--read-data"]).status.success());

    // Recorded on the account: its page shows the bad object (a client of its own: the
    // test's pooled connection may have been idle for longer than the server keeps it).
    let html = reqwest::Client::new()
        .get(format!("{}/accounts/{}", app.base, a.id))
        .header("Cookie", &admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(&format!("<code>data/{name}</code>")),
        "{html}"
    );
    assert!(html.contains("1 bad object(s)"), "{html}");
}

#[tokio::test]
async fn verify_finds_an_overwritten_object_on_the_s3_backend() {
    let d = Arc::new(Deployment::new().with_s3_vault());
    let app = TestApp::spawn_on(d.clone(), Opts::default()).await;
    let t = app.tenant("VerifyS3");
    let a = account(&app, &t, "bucket@example.com").await;
    back_up(&a, 9);
    assert_clean(&app, &d, &t, &a);
    let key = a_data_object(&d, &t, &a);
    let (server, bucket) = d.s3().unwrap();
    server.put(
        bucket,
        &format!("vault/{}/{}/{key}", t.id, a.id),
        b"not the pack restic wrote",
    );
    let name = key.rsplit('/').next().unwrap();
    let (success, out) = verify(&app, &t, &[]);
    assert!(!success, "{out}");
    assert_reports(&out, &format!("data/{name}"), "mismatch");
}

async fn dashboard_user(app: &TestApp, t: &Tenant, email: &str, role: &str) -> String {
    let password = "dashboard-secret-passphrase";
    app.cli_stdin(
        &[
            "user",
            "create",
            "--tenant",
            &t.id,
            "--email",
            email,
            "--role",
            role,
            "--password-stdin",
        ],
        Some(&format!("{password}\n")),
    )
    .ok();
    app.sign_in(email, password).await
}

async fn get_page(app: &TestApp, cookie: &str, path: &str) -> String {
    let r = app.get(path).header("Cookie", cookie).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.text().await.unwrap()
}

#[tokio::test]
async fn verify_now_is_for_administrators_and_shows_the_result() {
    let d = Arc::new(Deployment::new());
    let app = TestApp::spawn_on(d.clone(), Opts::default()).await;
    let t = app.tenant("VerifyDash");
    let a = account(&app, &t, "page@example.com").await;
    back_up(&a, 5);
    let admin = dashboard_user(&app, &t, "admin@verify.test", "administrator").await;
    let viewer = dashboard_user(&app, &t, "viewer@verify.test", "viewer").await;
    let path = format!("/accounts/{}", a.id);
    let html = get_page(&app, &admin, &path).await;
    assert!(html.contains("has not been verified yet"), "{html}");
    assert!(html.contains("Verify now"), "{html}");
    let csrf = csrf_of(&html);
    let post = |cookie: String, form: Vec<(&'static str, String)>| {
        let app = &app;
        let url = format!("{}/accounts/{}/verify", app.base, a.id);
        async move {
            app.client
                .post(url)
                .header("Cookie", cookie)
                .header("Origin", &app.base)
                .form(&form)
                .send()
                .await
                .unwrap()
        }
    };
    // A viewer sees the block but has no button, and a forged post is refused.
    let html = get_page(&app, &viewer, &path).await;
    assert!(html.contains("Repository health"), "{html}");
    assert!(!html.contains("Verify now"), "{html}");
    let viewer_csrf = csrf_of(&html);
    let r = post(viewer.clone(), vec![("csrf", viewer_csrf)]).await;
    assert_eq!(r.status(), 403);
    // No CSRF token: refused.
    let r = post(admin.clone(), vec![]).await;
    assert_eq!(r.status(), 403);
    assert!(!app
        .cli(&["audit", "--tenant", &t.id, "--json"])
        .ok()
        .stdout
        .contains("vault_verify_started"));

    // Flip a byte, then the administrator starts a check.
    let key = a_data_object(&d, &t, &a);
    let file = d
        .data_dir
        .path()
        .join("vault")
        .join(&t.id)
        .join(&a.id)
        .join(&key);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[7] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let r = post(admin.clone(), vec![("csrf", csrf)]).await;
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(to.ends_with("?verify=started"), "{to}");
    let name = key.rsplit('/').next().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let html = loop {
        let html = get_page(&app, &admin, &path).await;
        if html.contains("class=\"verified-at\"") {
            break html;
        }
        assert!(std::time::Instant::now() < deadline, "no result: {html}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        html.contains(&format!("<code>data/{name}</code>")),
        "{html}"
    );
    assert!(html.contains("mismatch"), "{html}");
    let audit = app.cli(&["audit", "--tenant", &t.id, "--json"]).ok().json();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "vault_verify_started"
                && e["target_id"].as_str() == Some(a.id.as_str())),
        "{audit}"
    );
    // The viewer sees the recorded result.
    let html = get_page(&app, &viewer, &path).await;
    assert!(
        html.contains(&format!("<code>data/{name}</code>")),
        "{html}"
    );
}
