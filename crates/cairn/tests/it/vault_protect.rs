//! Deletion protection (issue 21, item 1) end to end with the real restic: a stolen key
//! runs `forget --prune` and deletes the snapshots over the REST protocol; an
//! administrator undoes it (CLI and dashboard) and restic sees the repository as it was;
//! past the window the purge removes the kept objects and the quota follows. On local
//! storage and on the S3 backend (moto's server).

use crate::support::*;
use crate::vault::{
    account, assert_recount_is_exact, assert_same_tree, make_tree, ok, restic, text, Account,
};
use serde_json::Value;
use std::process::Command;

#[tokio::test]
async fn restic_deletions_are_undone_and_purged_after_the_window() {
    protected_deletions(Deployment::new()).await;
}

#[tokio::test]
async fn restic_deletions_are_undone_and_purged_on_the_s3_backend() {
    protected_deletions(Deployment::new().with_s3_vault()).await;
}

fn audit_actions(app: &TestApp, t: &Tenant) -> Vec<String> {
    let audit = app.cli(&["audit", "--tenant", &t.id, "--json"]).ok().json();
    audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

/// The account's used bytes as the store counts them (a recount that must change
/// nothing).
fn used_bytes(app: &TestApp, t: &Tenant, user_name: &str) -> i64 {
    let r = app
        .cli(&[
            "account",
            "recount",
            "--tenant",
            &t.id,
            "--user-name",
            user_name,
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(r["corrected_by"], 0, "{r}");
    r["used_bytes"].as_i64().unwrap()
}

/// Deletes every snapshot over the REST protocol with the account's key, as an
/// attacker holding it would (no restic, no lock).
async fn delete_snapshots_over_rest(app: &TestApp, t: &Tenant, a: &Account) -> usize {
    let base = format!("{}/backup/{}/{}", app.base, t.id, a.id);
    let list: Value = app
        .client
        .get(format!("{base}/snapshots"))
        .basic_auth(&a.user, Some(&a.secret))
        .header("Accept", "application/vnd.x.restic.rest.v2")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    for name in &names {
        let r = app
            .client
            .delete(format!("{base}/snapshots/{name}"))
            .basic_auth(&a.user, Some(&a.secret))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // Gone for the client: unreadable, not listed.
        let r = app
            .client
            .get(format!("{base}/snapshots/{name}"))
            .basic_auth(&a.user, Some(&a.secret))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    names.len()
}

fn snapshot_count(repo: &str) -> usize {
    let snaps: Value = serde_json::from_str(&ok(restic(repo, &["snapshots", "--json"]))).unwrap();
    snaps.as_array().map_or(0, Vec::len)
}

async fn protected_deletions(deployment: Deployment) {
    let deployment = std::sync::Arc::new(deployment);
    let app = TestApp::spawn_on(deployment.clone(), Opts::default()).await;
    let t = app.tenant("Protect");
    let name = "victim@example.com";
    let a = account(&app, &t, name).await;

    // Bad input is refused with a reason, and nothing is switched on by it.
    for bad in ["0", "3651", "100000"] {
        let r = app.cli(&["vault", "protect", "--tenant", &t.id, "--days", bad]);
        assert!(!r.status.success(), "--days {bad} accepted");
        assert!(r.stderr.contains("between 1 and 3650"), "{}", r.stderr);
    }
    let r = app.cli(&[
        "vault",
        "protect",
        "--tenant",
        &t.id,
        "--days",
        "99999999999",
    ]);
    assert!(!r.status.success());
    assert!(r.stderr.contains("--days"), "{}", r.stderr);
    let r = app.cli(&[
        "vault", "protect", "--tenant", &t.id, "--days", "3", "--off",
    ]);
    assert!(!r.status.success(), "--days with --off accepted");
    let on = app
        .cli(&["vault", "protect", "--tenant", &t.id, "--json"])
        .ok()
        .json();
    assert_eq!(on["protect_days"], 30, "{on}");

    // Two backups of different data, so a prune of the first snapshot deletes packs.
    let work = tempfile::tempdir().unwrap();
    let (src1, src2) = (work.path().join("one"), work.path().join("two"));
    make_tree(&src1, 7, 2 << 20);
    make_tree(&src2, 11, 2 << 20);
    ok(restic(&a.repo, &["init"]));
    ok(restic(&a.repo, &["backup", src1.to_str().unwrap()]));
    ok(restic(&a.repo, &["backup", src2.to_str().unwrap()]));
    assert_eq!(snapshot_count(&a.repo), 2);
    let before: Vec<_> = deployment
        .vault_objects(&t.id, &a.id)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("locks/"))
        .collect();
    let used_before = used_bytes(&app, &t, name);

    // The attack starts after this second.
    let since = app.cli(&["audit", "--tenant", &t.id, "--json"]).ok().json()[0]["at"]
        .as_str()
        .unwrap()
        .to_owned();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ok(restic(
        &a.repo,
        &[
            "forget",
            "--keep-last",
            "1",
            "--group-by",
            "host",
            "--prune",
        ],
    ));
    assert_eq!(snapshot_count(&a.repo), 1);
    assert_eq!(delete_snapshots_over_rest(&app, &t, &a).await, 1);
    assert_eq!(snapshot_count(&a.repo), 0);
    let stored = deployment.vault_objects(&t.id, &a.id);
    let kept: Vec<_> = stored
        .iter()
        .filter(|(k, _)| k.starts_with("trash/"))
        .collect();
    assert!(
        kept.iter().any(|(k, _)| k.starts_with("trash/data/")),
        "{stored:?}"
    );
    assert!(
        kept.iter().any(|(k, _)| k.starts_with("trash/snapshots/")),
        "{stored:?}"
    );
    assert!(
        !kept.iter().any(|(k, _)| k.starts_with("trash/locks/")),
        "locks are not kept: {stored:?}"
    );
    // Kept bytes still count: the prune wrote a new index, nothing was given back.
    assert!(used_bytes(&app, &t, name) >= used_before);

    // Bad undeletes: a time in the future, an unknown account.
    let r = app.cli(&[
        "vault",
        "undelete",
        "--tenant",
        &t.id,
        "--user-name",
        name,
        "--since",
        "2999-01-01T00:00:00Z",
    ]);
    assert!(!r.status.success());
    assert!(r.stderr.contains("is in the future"), "{}", r.stderr);
    let r = app.cli(&[
        "vault",
        "undelete",
        "--tenant",
        &t.id,
        "--user-name",
        "nobody@example.com",
        "--since",
        &since,
    ]);
    assert!(!r.status.success());
    assert!(r.stderr.contains("user not found"), "{}", r.stderr);
    let r = app.cli(&[
        "vault",
        "undelete",
        "--tenant",
        &t.id,
        "--user-name",
        name,
        "--since",
        "last tuesday",
    ]);
    assert!(!r.status.success());
    assert!(r.stderr.contains("RFC 3339"), "{}", r.stderr);

    // The administrator undoes it: restic sees the repository as it was.
    let undone = app
        .cli(&[
            "vault",
            "undelete",
            "--tenant",
            &t.id,
            "--user-name",
            name,
            "--since",
            &since,
            "--json",
        ])
        .ok()
        .json();
    assert!(undone["restored"].as_u64().unwrap() >= 3, "{undone}");
    assert_eq!(snapshot_count(&a.repo), 2);
    ok(restic(&a.repo, &["check", "--read-data"]));
    for (i, src) in [&src1, &src2].into_iter().enumerate() {
        let out = work.path().join(format!("restore{i}"));
        let snaps: Value =
            serde_json::from_str(&ok(restic(&a.repo, &["snapshots", "--json"]))).unwrap();
        let id = snaps
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["paths"][0] == src.to_str().unwrap())
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        ok(restic(
            &a.repo,
            &["restore", &id, "--target", out.to_str().unwrap()],
        ));
        let restored = out.join(src.strip_prefix("/").unwrap());
        assert_same_tree(src, &restored);
        assert_same_tree(&restored, src);
    }
    // Every object of before the attack is back under its name.
    let now_stored = deployment.vault_objects(&t.id, &a.id);
    for obj in &before {
        assert!(now_stored.contains(obj), "{obj:?} not back");
    }
    assert_recount_is_exact(&app, &t, name);

    // Deleted again; past the window the purge removes the kept objects and gives
    // their bytes back to the quota.
    ok(restic(
        &a.repo,
        &[
            "forget",
            "--keep-last",
            "1",
            "--group-by",
            "host",
            "--prune",
        ],
    ));
    delete_snapshots_over_rest(&app, &t, &a).await;
    let used_kept = used_bytes(&app, &t, name);
    let kept_bytes: u64 = deployment
        .vault_objects(&t.id, &a.id)
        .iter()
        .filter(|(k, _)| k.starts_with("trash/"))
        .map(|(_, s)| s)
        .sum();
    assert!(kept_bytes > 1 << 20, "{kept_bytes}");
    // Not yet due: the purge leaves them.
    app.cli(&["account", "purge-expired", "--json"]).ok();
    assert_eq!(used_bytes(&app, &t, name), used_kept);
    let mut args = deployment.global_args();
    args.extend(["account", "purge-expired"].map(String::from));
    let purged: Cli = Command::new(cairn_bin())
        .args(&args)
        .env("CAIRN_CLOCK_OFFSET_SECS", (31 * 86_400).to_string())
        .env_remove("CAIRN_DATABASE_URL")
        .env_remove("CAIRN_DATA_DIR")
        .env("CAIRN_LOG", "warn")
        .envs(deployment.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
        .into();
    let purged = purged.ok();
    assert!(
        purged.stdout.contains("protected deletion(s)"),
        "{}",
        purged.stdout
    );
    let left = deployment.vault_objects(&t.id, &a.id);
    assert!(
        !left.iter().any(|(k, _)| k.starts_with("trash/")),
        "{left:?}"
    );
    let used_after = used_bytes(&app, &t, name);
    assert_eq!(
        used_after,
        used_kept - i64::try_from(kept_bytes).unwrap(),
        "the quota gives back exactly the purged bytes"
    );
    // Nothing to undo any more, and the repository is what the client left.
    let none = app
        .cli(&[
            "vault",
            "undelete",
            "--tenant",
            &t.id,
            "--user-name",
            name,
            "--since",
            &since,
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(none["restored"], 0, "{none}");
    assert_eq!(snapshot_count(&a.repo), 0);

    let actions = audit_actions(&app, &t);
    for action in [
        "vault_protection_changed",
        "vault_undeleted",
        "vault_trash_purged",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
    }

    // Off: deletes destroy at once and give the bytes back.
    app.cli(&["vault", "protect", "--tenant", &t.id, "--off"])
        .ok();
    ok(restic(&a.repo, &["backup", src1.to_str().unwrap()]));
    delete_snapshots_over_rest(&app, &t, &a).await;
    assert!(!deployment
        .vault_objects(&t.id, &a.id)
        .iter()
        .any(|(k, _)| k.starts_with("trash/")));
    assert_recount_is_exact(&app, &t, name);
    let o = restic(&a.repo, &["snapshots"]);
    assert!(o.status.success(), "{}", text(&o));
}

/// The dashboard: Settings → Backups turns protection on (bad values refused with a
/// reason), the account page shows the kept bytes, and its button undoes the deletions.
#[tokio::test]
async fn the_dashboard_sets_protection_shows_kept_bytes_and_undoes() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Dash");
    let password = "dashboard-secret-passphrase";
    app.cli_stdin(
        &[
            "user",
            "create",
            "--tenant",
            &t.id,
            "--email",
            "admin@protect.test",
            "--role",
            "administrator",
            "--password-stdin",
        ],
        Some(&format!("{password}\n")),
    )
    .ok();
    let cookie = app.sign_in("admin@protect.test", password).await;
    let page = |path: String| {
        let (app, cookie) = (&app, cookie.clone());
        async move {
            let r = app
                .get(&path)
                .header("Cookie", cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
            r.text().await.unwrap()
        }
    };
    let post = |path: String, form: Vec<(&'static str, String)>| {
        let (app, cookie) = (&app, cookie.clone());
        async move {
            app.client
                .post(format!("{}{path}", app.base))
                .header("Cookie", cookie)
                .header("Origin", &app.base)
                .form(&form)
                .send()
                .await
                .unwrap()
        }
    };
    let html = page("/settings/backups".into()).await;
    let csrf = csrf_of(&html);
    let r = post(
        "/settings/backups".into(),
        vec![
            ("csrf", csrf.clone()),
            ("enabled", "on".into()),
            ("days", "0".into()),
        ],
    )
    .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("between 1 and 3650"));
    let r = post(
        "/settings/backups".into(),
        vec![
            ("csrf", csrf.clone()),
            ("enabled", "on".into()),
            ("days", "7".into()),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert!(page("/settings/backups?saved=1".into())
        .await
        .contains("kept for 7 days"));

    let a = account(&app, &t, "dash@example.com").await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src, 5, 1 << 20);
    ok(restic(&a.repo, &["init"]));
    ok(restic(&a.repo, &["backup", src.to_str().unwrap()]));
    let html = page(format!("/accounts/{}", a.id)).await;
    assert!(html.contains("kept for 7 days"), "{html}");
    assert!(
        html.contains("<strong class=\"protected-objects\">0</strong>"),
        "{html}"
    );
    delete_snapshots_over_rest(&app, &t, &a).await;
    let html = page(format!("/accounts/{}", a.id)).await;
    assert!(
        html.contains("<strong class=\"protected-objects\">1</strong>"),
        "{html}"
    );
    assert!(html.contains("Undo deletions"), "{html}");
    let csrf = csrf_of(&html);
    // A time in the future is refused with a reason.
    let r = post(
        format!("/accounts/{}/undelete", a.id),
        vec![("csrf", csrf.clone()), ("since", "2999-01-01T00:00".into())],
    )
    .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("is in the future"));
    let r = post(
        format!("/accounts/{}/undelete", a.id),
        vec![("csrf", csrf), ("since", "2000-01-01T00:00".into())],
    )
    .await;
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(to.ends_with("?undeleted=1"), "{to}");
    assert!(page(to).await.contains("1 object(s) put back"));
    assert_eq!(snapshot_count(&a.repo), 1);
    ok(restic(&a.repo, &["check", "--read-data"]));
}
