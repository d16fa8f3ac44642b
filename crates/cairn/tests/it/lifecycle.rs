//! Backup-account lifecycle: suspend and resume with `active`, soft delete and restore,
//! a new POST over a soft-deleted userName, the retention purge, and quotas fixed at
//! creation.

use crate::support::*;
use serde_json::{json, Value};

const DAY: i64 = 24 * 3600;

fn full_user(name: &str) -> Value {
    json!({
        "schemas": [USER_URN, ENTERPRISE_URN],
        "userName": name,
        "externalId": format!("ext-{name}"),
        "displayName": "Lena Lifecycle",
        "name": {"givenName": "Lena", "familyName": "Lifecycle"},
        "emails": [{"value": name, "type": "work", "primary": true}],
        ENTERPRISE_URN: {"employeeNumber": "42", "department": "Backups"},
        "active": true
    })
}

/// The attributes a restore or suspension must keep (no `meta`).
fn data_of(u: &Value) -> Value {
    let mut v = u.clone();
    v.as_object_mut().unwrap().remove("meta");
    v.as_object_mut().unwrap().remove("active");
    v
}

fn audit(app: &TestApp, tenant: &str) -> Vec<Value> {
    app.cli(&["audit", "--tenant", tenant, "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .clone()
}

fn filter_eq(attr: &str, v: &str) -> String {
    format!(
        "/Users?filter={attr}%20eq%20%22{}%22",
        v.replace('@', "%40")
    )
}

#[tokio::test]
async fn delete_is_soft_and_restore_brings_back_the_same_account() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Lifecycle");
    let u = t.create_user(&full_user("lena@life.test")).await;
    let id = u["id"].as_str().unwrap().to_owned();
    let path = format!("/Users/{id}");
    let other = t.create_user(&full_user("otto@life.test")).await;

    let r = t.delete(&path).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(r.text.is_empty());
    // SCIM answers 404 from now on, for every method, and lists exclude it.
    t.get(&path).await.assert_scim_error(404, None);
    t.put(&path, &full_user("lena@life.test"))
        .await
        .assert_scim_error(404, None);
    t.patch(
        &path,
        &json!({"schemas":[PATCH_URN],"Operations":[{"op":"replace","path":"active","value":true}]}),
    )
    .await
    .assert_scim_error(404, None);
    t.delete(&path).await.assert_scim_error(404, None);
    let list = t.get("/Users").await.json();
    assert_eq!(list["totalResults"], 1, "{list}");
    assert_eq!(list["Resources"][0]["id"], other["id"]);
    let r = t.get(&filter_eq("userName", "lena@life.test")).await.json();
    assert_eq!(r["totalResults"], 0, "{r}");
    let r = t
        .get(&filter_eq("externalId", "ext-lena@life.test"))
        .await
        .json();
    assert_eq!(r["totalResults"], 0, "{r}");

    // The deletion is audited with the date the data will be purged (30 days default).
    let ev = audit(&app, &t.id);
    let del = ev
        .iter()
        .find(|e| e["action"] == "user_deleted")
        .expect("user_deleted event");
    assert_eq!(del["target_id"], id.as_str());
    assert!(del["changes"]["purgeAt"]["after"].is_string(), "{del}");

    // The operator restores it by userName (any case): same id, same data.
    let out = app
        .cli(&[
            "account",
            "restore",
            "--tenant",
            &t.id,
            "--user-name",
            "LENA@life.test",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(out["id"], id.as_str(), "{out}");
    let back = t.get(&path).await;
    assert_eq!(back.status, 200, "{}", back.text);
    let back = back.json();
    assert_eq!(data_of(&back), data_of(&u));
    assert_eq!(back["active"], true);
    assert_eq!(t.get("/Users").await.json()["totalResults"], 2);
    let ev = audit(&app, &t.id);
    assert_eq!(ev[0]["action"], "user_restored", "{}", ev[0]);
    assert_eq!(ev[0]["target_id"], id.as_str());
    assert_eq!(ev[0]["actor_kind"], "operator");

    // Restoring what is not deleted fails clearly.
    let r = app.cli(&[
        "account",
        "restore",
        "--tenant",
        &t.id,
        "--user-name",
        "lena@life.test",
    ]);
    assert!(!r.status.success(), "{r:?}");
    assert!(r.stderr.contains("error"), "{r:?}");
    assert!(!r.stderr.contains("panicked"), "{r:?}");
    let r = app.cli(&[
        "account",
        "restore",
        "--tenant",
        &t.id,
        "--user-name",
        "nobody@life.test",
    ]);
    assert!(!r.status.success(), "{r:?}");
    assert!(!r.stderr.contains("panicked"), "{r:?}");
}

#[tokio::test]
async fn post_over_a_soft_deleted_user_name_creates_a_new_account() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Lifecycle");
    let old = t.create_user(&full_user("sam@life.test")).await;
    let old_id = old["id"].as_str().unwrap().to_owned();
    assert_eq!(t.delete(&format!("/Users/{old_id}")).await.status, 204);

    // README: a POST whose userName matches a soft-deleted account creates a new account
    // with a new id; the old one stays deleted (and restorable).
    let new = t
        .create_user(&json!({"schemas":[USER_URN],"userName":"SAM@life.test"}))
        .await;
    let new_id = new["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, old_id);
    assert_eq!(new["userName"], "SAM@life.test");
    assert!(new.get("displayName").is_none(), "a clean slate: {new}");
    t.get(&format!("/Users/{old_id}"))
        .await
        .assert_scim_error(404, None);
    let r = t.get(&filter_eq("userName", "sam@life.test")).await.json();
    assert_eq!(r["totalResults"], 1);
    assert_eq!(r["Resources"][0]["id"], new_id.as_str());

    // Restoring the old one while a live account holds the userName is refused.
    let r = app.cli(&[
        "account",
        "restore",
        "--tenant",
        &t.id,
        "--user-name",
        "sam@life.test",
    ]);
    assert!(!r.status.success(), "{r:?}");
    assert!(!r.stderr.contains("panicked"), "{r:?}");
    assert!(!r.stderr.trim().is_empty());
    t.get(&format!("/Users/{old_id}"))
        .await
        .assert_scim_error(404, None);
    assert_eq!(t.get("/Users").await.json()["totalResults"], 1);

    // Once the new one is deleted too, restore brings back the most recently deleted.
    assert_eq!(t.delete(&format!("/Users/{new_id}")).await.status, 204);
    let out = app
        .cli(&[
            "account",
            "restore",
            "--tenant",
            &t.id,
            "--user-name",
            "sam@life.test",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(out["id"], new_id.as_str(), "{out}");
    assert_eq!(t.get(&format!("/Users/{new_id}")).await.status, 200);
    t.get(&format!("/Users/{old_id}"))
        .await
        .assert_scim_error(404, None);
}

fn purge(app: &TestApp, offset_secs: i64) -> Value {
    let mut args: Vec<String> = app.deployment.global_args();
    args.extend(["account", "purge-expired", "--json"].map(String::from));
    let out = std::process::Command::new(cairn_bin())
        .args(&args)
        .env("CAIRN_CLOCK_OFFSET_SECS", offset_secs.to_string())
        .env_remove("CAIRN_DATABASE_URL")
        .env_remove("CAIRN_DATA_DIR")
        .env("CAIRN_LOG", "warn")
        .output()
        .unwrap();
    let cli: Cli = out.into();
    cli.ok().json()
}

#[tokio::test]
async fn retention_purge_removes_only_expired_soft_deleted_accounts() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Retention");
    let other = app.tenant("Bystander");
    let gone = t.create_user(&full_user("gone@life.test")).await;
    let gone_id = gone["id"].as_str().unwrap().to_owned();
    let live = t.create_user(&full_user("live@life.test")).await;
    let suspended = t.create_user(&full_user("paused@life.test")).await;
    let sus_path = format!("/Users/{}", suspended["id"].as_str().unwrap());
    let r = t
        .patch(
            &sus_path,
            &json!({"schemas":[PATCH_URN],"Operations":[{"op":"replace","path":"active","value":false}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let bystander = other.create_user(&full_user("gone@life.test")).await;
    assert_eq!(t.delete(&format!("/Users/{gone_id}")).await.status, 204);

    // Inside the window nothing is purged.
    assert_eq!(purge(&app, 0), json!([]));
    assert_eq!(purge(&app, 29 * DAY), json!([]));
    // Past it (default 30 days) the soft-deleted account goes, nothing else.
    let purged = purge(&app, 31 * DAY);
    assert_eq!(
        purged,
        json!([{"tenant_id": t.id, "id": gone_id, "user_name": "gone@life.test"}])
    );
    assert_eq!(
        purge(&app, 31 * DAY),
        json!([]),
        "a second run finds nothing"
    );

    // It cannot be restored any more; the others are intact.
    let r = app.cli(&[
        "account",
        "restore",
        "--tenant",
        &t.id,
        "--user-name",
        "gone@life.test",
    ]);
    assert!(!r.status.success(), "{r:?}");
    assert_eq!(
        t.get(&format!("/Users/{}", live["id"].as_str().unwrap()))
            .await
            .status,
        200
    );
    let s = t.get(&sus_path).await.json();
    assert_eq!(s["active"], false);
    assert_eq!(data_of(&s), data_of(&suspended));
    let b = other
        .get(&format!("/Users/{}", bystander["id"].as_str().unwrap()))
        .await;
    assert_eq!(b.status, 200);
    assert_eq!(t.get("/Users").await.json()["totalResults"], 2);

    // The purge is audited, by the system, with the account's id and name.
    let ev = audit(&app, &t.id);
    let p = ev
        .iter()
        .find(|e| e["action"] == "user_purged")
        .unwrap_or_else(|| panic!("no user_purged event: {ev:?}"));
    assert_eq!(p["actor_kind"], "system");
    assert_eq!(p["target_id"], gone_id.as_str());
    assert_eq!(p["target_name"], "gone@life.test");
    assert!(
        audit(&app, &other.id)
            .iter()
            .all(|e| e["action"] != "user_purged"),
        "the other tenant has no purge"
    );
}

#[tokio::test]
async fn retention_days_and_the_servers_own_purge() {
    // Retention of 1 day, set on the server that records the deletion.
    let app = TestApp::spawn_with(Opts {
        args: vec!["--retention-days".into(), "1".into()],
        ..Default::default()
    })
    .await;
    let t = app.tenant("Short");
    let u = t.create_user(&full_user("brief@life.test")).await;
    let id = u["id"].as_str().unwrap().to_owned();
    assert_eq!(t.delete(&format!("/Users/{id}")).await.status, 204);
    assert_eq!(purge(&app, DAY / 2), json!([]));

    // A second instance two days later purges it on its own at start-up (the purge runs
    // immediately and then every CAIRN_PURGE_INTERVAL_SECS).
    let later = TestApp::spawn_on(
        app.deployment.clone(),
        Opts {
            env: vec![
                ("CAIRN_CLOCK_OFFSET_SECS".into(), (2 * DAY).to_string()),
                ("CAIRN_PURGE_INTERVAL_SECS".into(), "1".into()),
            ],
            ..Default::default()
        },
    )
    .await;
    let start = std::time::Instant::now();
    loop {
        if audit(&app, &t.id)
            .iter()
            .any(|e| e["action"] == "user_purged" && e["target_id"] == id.as_str())
        {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "not purged by the server:\n{}",
            later.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(purge(&app, 3 * DAY), json!([]));
}

#[tokio::test]
async fn active_false_suspends_and_active_true_resumes_the_same_account() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Suspend");
    let u = t.create_user(&full_user("sue@life.test")).await;
    let id = u["id"].as_str().unwrap().to_owned();
    let path = format!("/Users/{id}");

    // Entra's default form: a capitalised op and a "False" string.
    let r = t
        .patch(
            &path,
            &json!({"schemas":[PATCH_URN],"Operations":[{"op":"Replace","path":"active","value":"False"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["active"], false);
    let s = t.get(&path).await.json();
    assert_eq!(s["active"], false);
    assert_eq!(data_of(&s), data_of(&u), "data kept while suspended");
    let r = t.get("/Users?filter=active%20eq%20false").await.json();
    assert_eq!(r["totalResults"], 1, "{r}");
    assert_eq!(r["Resources"][0]["id"], id.as_str());
    let r = t.get(&filter_eq("userName", "sue@life.test")).await.json();
    assert_eq!(r["Resources"][0]["active"], false, "{r}");
    let ev = audit(&app, &t.id);
    assert_eq!(ev[0]["action"], "user_suspended", "{}", ev[0]);
    assert_eq!(
        ev[0]["changes"]["active"],
        json!({"before": true, "after": false})
    );

    // Okta's form: PUT of the whole user with active true resumes the same account.
    let r = t.put(&path, &full_user("sue@life.test")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["active"], true);
    assert_eq!(data_of(&v), data_of(&u));
    assert_eq!(audit(&app, &t.id)[0]["action"], "user_reactivated");

    // PUT with active false suspends as well; path-less PATCH resumes.
    let mut body = full_user("sue@life.test");
    body["active"] = json!(false);
    assert_eq!(t.put(&path, &body).await.json()["active"], false);
    assert_eq!(audit(&app, &t.id)[0]["action"], "user_suspended");
    let r = t
        .patch(
            &path,
            &json!({"schemas":[PATCH_URN],"Operations":[{"op":"replace","value":{"active":true}}]}),
        )
        .await;
    assert_eq!(r.json()["active"], true, "{}", r.text);
    assert_eq!(audit(&app, &t.id)[0]["action"], "user_reactivated");
    assert_eq!(t.get("/Users").await.json()["totalResults"], 1);

    // A suspended account that is deleted and restored comes back suspended.
    let r = t
        .patch(
            &path,
            &json!({"schemas":[PATCH_URN],"Operations":[{"op":"replace","path":"active","value":false}]}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(t.delete(&path).await.status, 204);
    app.cli(&[
        "account",
        "restore",
        "--tenant",
        &t.id,
        "--user-name",
        "sue@life.test",
    ])
    .ok();
    let v = t.get(&path).await.json();
    assert_eq!(v["active"], false, "{v}");
    assert_eq!(data_of(&v), data_of(&u));
}

/// The quota each account got, from its `user_created` audit event.
fn quota_at_creation(events: &[Value], user_id: &str) -> Value {
    events
        .iter()
        .find(|e| e["action"] == "user_created" && e["target_id"] == user_id)
        .unwrap_or_else(|| panic!("no user_created for {user_id}: {events:?}"))["changes"]
        ["quotaGb"]["after"]
        .clone()
}

#[tokio::test]
async fn quota_is_the_account_size_at_creation() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Quota"); // Account Size 50 GB
    let first = t.create_user(&full_user("first@life.test")).await;
    let first_id = first["id"].as_str().unwrap().to_owned();

    app.cli(&[
        "scim",
        "enable",
        "--tenant",
        &t.id,
        "--account-size-gb",
        "75",
    ])
    .ok();
    let second = t.create_user(&full_user("second@life.test")).await;
    let second_id = second["id"].as_str().unwrap().to_owned();

    let ev = audit(&app, &t.id);
    assert_eq!(quota_at_creation(&ev, &first_id), 50);
    assert_eq!(quota_at_creation(&ev, &second_id), 75);
    let change = ev
        .iter()
        .find(|e| e["action"] == "account_size_changed")
        .expect("account_size_changed event");
    assert_eq!(
        change["changes"]["accountSizeGb"],
        json!({"before": 50, "after": 75})
    );
    // Changing the Account Size touched no existing account: no event targets one.
    for e in &ev {
        if e["target_id"] == first_id.as_str() {
            assert_eq!(e["action"], "user_created", "{e}");
        }
    }
    // Updating an old account keeps it as it was (no quota change recorded).
    let r = t
        .patch(
            &format!("/Users/{first_id}"),
            &json!({"schemas":[PATCH_URN],"Operations":[{"op":"replace","path":"title","value":"Boss"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ev = audit(&app, &t.id);
    assert_eq!(ev[0]["action"], "user_updated");
    assert!(ev[0]["changes"].get("quotaGb").is_none(), "{}", ev[0]);

    // The tenant list shows the current Account Size.
    let tenants = app.cli(&["tenant", "list", "--json"]).ok().json();
    let me = tenants
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == t.id.as_str())
        .unwrap()
        .clone();
    assert_eq!(me["account_size_gb"], 75, "{me}");
}

const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

fn member_ids(g: &Value) -> Vec<String> {
    g["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|x| x["value"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn deleted_restored_and_purged_accounts_in_groups() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Grouped");
    let u = t.create_user(&full_user("member@life.test")).await;
    let keep = t.create_user(&full_user("keep@life.test")).await;
    let (uid, kid) = (
        u["id"].as_str().unwrap().to_owned(),
        keep["id"].as_str().unwrap().to_owned(),
    );
    let r = t
        .post(
            "/Groups",
            &json!({"schemas":[GROUP_URN],"displayName":"Team","members":[{"value":uid},{"value":kid}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let gpath = format!("/Groups/{}", r.json()["id"].as_str().unwrap());

    // A soft-deleted account is not listed as a member (SCIM says it does not exist).
    assert_eq!(t.delete(&format!("/Users/{uid}")).await.status, 204);
    let g = t.get(&gpath).await;
    assert_eq!(g.status, 200, "{}", g.text);
    assert_eq!(member_ids(&g.json()), vec![kid.clone()], "{}", g.text);

    // Restored, it is a member again (nothing an IdP sent removed it).
    app.cli(&[
        "account",
        "restore",
        "--tenant",
        &t.id,
        "--user-name",
        "member@life.test",
    ])
    .ok();
    let mut m = member_ids(&t.get(&gpath).await.json());
    m.sort();
    let mut want = vec![uid.clone(), kid.clone()];
    want.sort();
    assert_eq!(m, want);

    // Deleted again and purged: the purge succeeds and the group keeps its other member.
    assert_eq!(t.delete(&format!("/Users/{uid}")).await.status, 204);
    let purged = purge(&app, 31 * DAY);
    assert_eq!(purged.as_array().map(Vec::len), Some(1), "{purged}");
    assert_eq!(purged[0]["id"], uid.as_str());
    let g = t.get(&gpath).await;
    assert_eq!(g.status, 200, "{}", g.text);
    assert_eq!(member_ids(&g.json()), vec![kid.clone()]);
    // The group can still be changed.
    let r = t
        .patch(
            &gpath,
            &json!({"schemas":[PATCH_URN],"Operations":[{"op":"replace","path":"displayName","value":"Team 2"}]}),
        )
        .await;
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
}
