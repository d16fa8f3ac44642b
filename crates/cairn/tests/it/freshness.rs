//! Backup freshness end to end (issue 21, item 3): after real restic backups each
//! account's last snapshot, last upload and bytes of the last 24 hours are right (on
//! local and S3 storage; `CAIRN_TEST_BACKEND` picks the database); the stale filter on
//! the dashboard list, `cairn accounts --stale-days`, and the per-tenant gauge on
//! `/metrics`, seen from a server and a CLI whose clocks run 8 days ahead.

use crate::support::*;
use crate::vault::{account, make_tree, ok, restic};
use reqwest::header;
use serde_json::Value;
use std::process::Command;
use time::OffsetDateTime;

const EIGHT_DAYS: i64 = 8 * 86_400;

/// `cairn accounts …` as if run `offset` seconds from now.
fn accounts_at(app: &TestApp, offset: i64, args: &[&str]) -> Value {
    let mut all = app.deployment.global_args();
    all.push("accounts".into());
    all.extend(args.iter().map(|s| s.to_string()));
    all.push("--json".into());
    let out: Cli = Command::new(cairn_bin())
        .args(&all)
        .env("CAIRN_CLOCK_OFFSET_SECS", offset.to_string())
        .env_remove("CAIRN_DATABASE_URL")
        .env_remove("CAIRN_DATA_DIR")
        .env("CAIRN_LOG", "warn")
        .envs(app.deployment.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
        .into();
    out.ok().json()
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| a["user_name"].as_str().unwrap())
        .collect()
}

fn time_of(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(
        v.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

/// The gauge's value for a tenant; `None` when the tenant has no sample.
fn stale_gauge(metrics: &str, tenant: &str) -> Option<f64> {
    let prefix = format!("cairn_stale_backup_accounts{{tenant=\"{tenant}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

async fn metrics(app: &TestApp) -> String {
    let r = app.get("/metrics").send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

#[tokio::test]
async fn freshness_is_right_after_restic_backups() {
    freshness_after_backups(Deployment::new()).await;
}

#[tokio::test]
async fn freshness_is_right_after_restic_backups_on_the_s3_backend() {
    freshness_after_backups(Deployment::new().with_s3_vault()).await;
}

async fn freshness_after_backups(deployment: Deployment) {
    let app = TestApp::spawn_on(std::sync::Arc::new(deployment), Opts::default()).await;
    let t = app.tenant("Fresh");
    let alice = account(&app, &t, "alice@example.com").await;
    let _bob = account(&app, &t, "bob@example.com").await;
    let list = accounts_at(&app, 0, &["--tenant", &t.id]);
    assert_eq!(names(&list), ["alice@example.com", "bob@example.com"]);
    for a in list.as_array().unwrap() {
        assert_eq!(a["never_backed_up"], true, "{a}");
        assert_eq!(a["last_upload_at"], Value::Null, "{a}");
        assert_eq!(a["bytes_24h"], 0, "{a}");
    }

    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src, 21, 2 << 20);
    // Stored timestamps have millisecond precision.
    let start = OffsetDateTime::now_utc() - time::Duration::milliseconds(1);
    ok(restic(&alice.repo, &["init"]));
    ok(restic(&alice.repo, &["backup", src.to_str().unwrap()]));
    let first_done = OffsetDateTime::now_utc();

    let list = accounts_at(&app, 0, &["--tenant", &t.id]);
    let a = &list[0];
    assert_eq!(a["user_name"], "alice@example.com");
    assert_eq!(a["never_backed_up"], false, "{a}");
    let snap = time_of(&a["last_snapshot_at"]);
    let upload = time_of(&a["last_upload_at"]);
    assert!(start <= snap && snap <= first_done, "{a}");
    assert!(start <= upload && upload <= snap, "{a}");
    // Nothing was deleted but lock files, which are not counted: every byte written in
    // the last 24 hours is still stored.
    let used = a["used_bytes"].as_i64().unwrap();
    assert!(used > 1 << 20, "{a}");
    assert_eq!(a["bytes_24h"], used, "{a}");
    assert_eq!(list[1]["never_backed_up"], true, "{list}");

    // A second backup of a change: a later snapshot, a few more bytes.
    std::fs::write(src.join("a/new.txt"), vec![7u8; 100_000]).unwrap();
    ok(restic(&alice.repo, &["backup", src.to_str().unwrap()]));
    let second_done = OffsetDateTime::now_utc();
    let a = &accounts_at(&app, 0, &["--tenant", &t.id])[0];
    let snap2 = time_of(&a["last_snapshot_at"]);
    assert!(first_done <= snap2 && snap2 <= second_done, "{a}");
    let used2 = a["used_bytes"].as_i64().unwrap();
    assert!(used2 > used, "{a}");
    assert_eq!(a["bytes_24h"], used2, "{a}");
    // Reading (which writes lock files) is not backup activity.
    ok(restic(&alice.repo, &["snapshots"]));
    let a2 = &accounts_at(&app, 0, &["--tenant", &t.id])[0];
    assert_eq!(a2["last_upload_at"], a["last_upload_at"], "{a2}");
    assert_eq!(a2["bytes_24h"], used2, "{a2}");
    // A day later the bytes are out of the window; the times stay.
    let a3 = &accounts_at(&app, 86_400, &["--tenant", &t.id])[0];
    assert_eq!(a3["bytes_24h"], 0, "{a3}");
    assert_eq!(a3["last_snapshot_at"], a["last_snapshot_at"], "{a3}");
}

#[tokio::test]
async fn stale_accounts_are_filtered_listed_and_counted() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Stale");
    let empty = app.tenant("Empty");
    let alice = account(&app, &t, "alice@example.com").await;
    let _bob = account(&app, &t, "bob@example.com").await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src, 3, 1 << 20);
    ok(restic(&alice.repo, &["init"]));
    ok(restic(&alice.repo, &["backup", src.to_str().unwrap()]));

    // Today: only bob (never backed up) is stale; every tenant has a sample.
    let m = metrics(&app).await;
    assert_eq!(stale_gauge(&m, &t.id), Some(1.0), "{m}");
    assert_eq!(stale_gauge(&m, &empty.id), Some(0.0), "{m}");
    let stale = accounts_at(&app, 0, &["--tenant", &t.id, "--stale-days"]);
    assert_eq!(names(&stale), ["bob@example.com"]);
    assert_eq!(stale[0]["never_backed_up"], true);

    // Eight days on: alice too (past the default 7 days), after bob (never first).
    let stale = accounts_at(&app, EIGHT_DAYS, &["--tenant", &t.id, "--stale-days"]);
    assert_eq!(names(&stale), ["bob@example.com", "alice@example.com"]);
    assert_eq!(stale[1]["never_backed_up"], false);
    let stale = accounts_at(&app, EIGHT_DAYS, &["--tenant", &t.id, "--stale-days", "10"]);
    assert_eq!(names(&stale), ["bob@example.com"]);
    let bad = app.cli(&["accounts", "--tenant", &t.id, "--stale-days", "0"]);
    assert!(!bad.status.success(), "{bad:?}");

    // A server whose clock runs eight days ahead: the gauge and the dashboard agree.
    let deployment = app.deployment.clone();
    drop(app);
    let opts = Opts {
        env: vec![("CAIRN_CLOCK_OFFSET_SECS".into(), EIGHT_DAYS.to_string())],
        ..Opts::default()
    };
    let app = TestApp::spawn_on(deployment, opts).await;
    let m = metrics(&app).await;
    assert_eq!(stale_gauge(&m, &t.id), Some(2.0), "{m}");
    assert!(
        m.contains("# TYPE cairn_stale_backup_accounts gauge"),
        "{m}"
    );

    let pw = "dashboard password 21";
    app.cli_stdin(
        &[
            "user",
            "create",
            "--tenant",
            &t.id,
            "--email",
            "admin@stale.test",
            "--role",
            "administrator",
            "--password-stdin",
        ],
        Some(pw),
    )
    .ok();
    let cookie = app.sign_in("admin@stale.test", pw).await;
    let page = |path: String| {
        let (app, cookie) = (&app, &cookie);
        async move {
            let r = app
                .get(&path)
                .header(header::COOKIE, cookie)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, html) = page("/accounts?sort=last-backup&stale=7".into()).await;
    assert_eq!(status, 200, "{html}");
    let (bob_at, alice_at) = (
        html.find("bob@example.com</a>").expect("bob listed"),
        html.find("alice@example.com</a>").expect("alice listed"),
    );
    assert!(bob_at < alice_at, "never backed up first");
    assert!(html.contains("Never backed up"), "{html}");
    assert!(html.contains("class=\"badge stale\""), "{html}");
    let (_, html) = page("/accounts?stale=10".into()).await;
    assert!(html.contains("bob@example.com</a>"), "{html}");
    assert!(!html.contains("alice@example.com</a>"), "{html}");
    let (status, html) = page("/accounts?stale=0".into()).await;
    assert_eq!(status, 422, "{html}");
    assert!(html.contains("whole number from 1 to 3650"), "{html}");
    let (_, html) = page(format!("/accounts/{}", alice.id)).await;
    assert!(html.contains("Written in the last 24 hours"), "{html}");

    // A longer threshold (the CLI; the Settings form is the dashboard's way): at the next
    // count nobody backed up within 30 days is missing but bob.
    let set = app
        .cli(&[
            "vault",
            "stale-days",
            "--tenant",
            &t.id,
            "--days",
            "30",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(set["stale_days"], 30);
    tokio::time::sleep(cairn_web::metrics::STALE_REFRESH).await;
    let m = metrics(&app).await;
    assert_eq!(stale_gauge(&m, &t.id), Some(1.0), "{m}");
    let stale = accounts_at(&app, EIGHT_DAYS, &["--tenant", &t.id, "--stale-days"]);
    assert_eq!(names(&stale), ["bob@example.com"]);
    let audit = app.cli(&["audit", "--tenant", &t.id, "--json"]).ok().json();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "stale_days_changed"),
        "{audit}"
    );
}
