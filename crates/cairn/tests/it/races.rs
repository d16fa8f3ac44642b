//! Concurrency: racing creates of one userName (any letter case) yield one account and
//! `409 uniqueness` for the rest; `If-Match` is checked atomically with the write; creates
//! of different users and updates without `If-Match` all succeed.

use crate::support::*;
use reqwest::{header, Method};
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

/// `n` differently-cased spellings of `name` (n ≤ 2^letters).
fn case_variants(name: &str, n: usize) -> Vec<String> {
    let letters: Vec<usize> = name
        .char_indices()
        .filter(|(_, c)| c.is_ascii_alphabetic())
        .map(|(i, _)| i)
        .collect();
    assert!(n <= 1 << letters.len().min(20));
    (0..n)
        .map(|mask| {
            let mut s: Vec<u8> = name.as_bytes().to_vec();
            for (bit, &i) in letters.iter().enumerate() {
                if mask >> bit & 1 == 1 {
                    s[i] = s[i].to_ascii_uppercase();
                }
            }
            String::from_utf8(s).unwrap()
        })
        .collect()
}

/// Runs `f(i)` for i in 0..n at once (all start after a barrier); returns the replies in
/// index order.
async fn all_at_once<F, Fut>(n: usize, f: F) -> Vec<Reply>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Reply> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let mut set = JoinSet::new();
    for i in 0..n {
        let fut = f(i);
        let b = barrier.clone();
        set.spawn(async move {
            b.wait().await;
            (i, fut.await)
        });
    }
    let mut out: Vec<Option<Reply>> = (0..n).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, reply) = r.unwrap();
        out[i] = Some(reply);
    }
    out.into_iter().map(Option::unwrap).collect()
}

fn statuses(rs: &[Reply]) -> Vec<u16> {
    rs.iter().map(|r| r.status).collect()
}

fn audit(app: &TestApp, tenant: &str) -> Vec<Value> {
    app.cli(&["audit", "--tenant", tenant, "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn racing_creates_of_one_user_name_make_one_account() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Racers");
    const N: usize = 24;
    let names = case_variants("racer.one@example.test", N);
    let replies = all_at_once(N, |i| {
        let t = t.clone();
        let body = json!({
            "schemas": [USER_URN],
            "userName": names[i],
            "externalId": format!("ext-{i}"),
            "emails": [{"value": names[i], "type": "work", "primary": true}],
            "active": true
        });
        async move { t.post("/Users", &body).await }
    })
    .await;
    let created: Vec<&Reply> = replies.iter().filter(|r| r.status == 201).collect();
    assert_eq!(created.len(), 1, "statuses: {:?}", statuses(&replies));
    for r in replies.iter().filter(|r| r.status != 201) {
        r.assert_scim_error(409, Some("uniqueness"));
    }
    let winner = created[0].json();
    // The winner's spelling is kept exactly as sent.
    assert!(names.iter().any(|n| winner["userName"] == *n), "{winner}");

    let list = t.get("/Users").await.json();
    assert_eq!(list["totalResults"], 1, "{list}");
    assert_eq!(list["Resources"][0]["id"], winner["id"]);
    let r = t
        .get("/Users?filter=userName%20eq%20%22RACER.ONE%40EXAMPLE.TEST%22")
        .await
        .json();
    assert_eq!(r["totalResults"], 1, "{r}");
    let creates = audit(&app, &t.id)
        .into_iter()
        .filter(|e| e["action"] == "user_created")
        .count();
    assert_eq!(creates, 1, "one user_created audit event");

    // A later retry (any case) still conflicts; the account count stays one.
    t.post(
        "/Users",
        &json!({"schemas":[USER_URN],"userName":"RACER.ONE@example.TEST"}),
    )
    .await
    .assert_scim_error(409, Some("uniqueness"));
    assert_eq!(t.get("/Users").await.json()["totalResults"], 1);
}

#[tokio::test]
async fn racing_creates_of_different_users_all_succeed() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Crowd");
    const N: usize = 32;
    let replies = all_at_once(N, |i| {
        let t = t.clone();
        let body = json!({"schemas":[USER_URN],"userName":format!("user{i:02}@crowd.test")});
        async move { t.post("/Users", &body).await }
    })
    .await;
    assert!(
        replies.iter().all(|r| r.status == 201),
        "{:?}: {:?}",
        statuses(&replies),
        replies.iter().find(|r| r.status != 201).map(|r| &r.text)
    );
    let mut ids: Vec<String> = replies
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N);
    let list = t.get("/Users?count=100&sortBy=userName").await.json();
    assert_eq!(list["totalResults"], N, "{list}");
    let names: Vec<&str> = list["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userName"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..N).map(|i| format!("user{i:02}@crowd.test")).collect();
    assert_eq!(names, expected);
}

fn patch_display_name(v: &str) -> Value {
    json!({"schemas":[PATCH_URN],"Operations":[{"op":"replace","path":"displayName","value":v}]})
}

#[tokio::test]
async fn if_match_races_let_exactly_one_writer_win() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Etags");
    let u = t
        .create_user(
            &json!({"schemas":[USER_URN],"userName":"etag@example.test","displayName":"start"}),
        )
        .await;
    let path = format!("/Users/{}", u["id"].as_str().unwrap());
    let first = t.get(&path).await;
    let etag = first.header("etag").expect("ETag header").to_owned();
    assert_eq!(first.json()["meta"]["version"], etag.as_str());

    // PATCH with the same If-Match from 16 clients at once.
    const N: usize = 16;
    let replies = all_at_once(N, |i| {
        let t = t.clone();
        let (path, etag) = (path.clone(), etag.clone());
        async move {
            Reply::of(
                t.send(
                    Method::PATCH,
                    &path,
                    &patch_display_name(&format!("patch-{i}")),
                )
                .header(header::IF_MATCH, etag)
                .send()
                .await
                .unwrap(),
            )
            .await
        }
    })
    .await;
    let ok: Vec<usize> = (0..N).filter(|&i| replies[i].status == 200).collect();
    assert_eq!(ok.len(), 1, "statuses {:?}", statuses(&replies));
    for (i, r) in replies.iter().enumerate() {
        if i != ok[0] {
            r.assert_scim_error(412, None);
        }
    }
    let now = t.get(&path).await;
    let v = now.json();
    assert_eq!(v["displayName"], format!("patch-{}", ok[0]));
    assert_eq!(
        replies[ok[0]].header("etag"),
        now.header("etag"),
        "the winner's ETag is the current one"
    );
    assert_ne!(now.header("etag").unwrap(), etag);

    // The same with PUT.
    let etag2 = now.header("etag").unwrap().to_owned();
    let replies = all_at_once(N, |i| {
        let t = t.clone();
        let (path, etag) = (path.clone(), etag2.clone());
        let body = json!({"schemas":[USER_URN],"userName":"etag@example.test","displayName":format!("put-{i}")});
        async move {
            Reply::of(
                t.send(Method::PUT, &path, &body)
                    .header(header::IF_MATCH, etag)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    })
    .await;
    let ok: Vec<usize> = (0..N).filter(|&i| replies[i].status == 200).collect();
    assert_eq!(ok.len(), 1, "statuses {:?}", statuses(&replies));
    for (i, r) in replies.iter().enumerate() {
        if i != ok[0] {
            r.assert_scim_error(412, None);
        }
    }
    assert_eq!(
        t.get(&path).await.json()["displayName"],
        format!("put-{}", ok[0])
    );

    // A stale ETag is refused afterwards, and so is a DELETE with it.
    let r = Reply::of(
        t.send(Method::PATCH, &path, &patch_display_name("late"))
            .header(header::IF_MATCH, &etag)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.assert_scim_error(412, None);
    let r = Reply::of(
        t.req(Method::DELETE, &path)
            .header(header::IF_MATCH, &etag)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.assert_scim_error(412, None);
    assert_eq!(t.get(&path).await.status, 200);
}

#[tokio::test]
async fn concurrent_updates_without_if_match_all_land() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Merge");
    let u = t
        .create_user(&json!({"schemas":[USER_URN],"userName":"merge@example.test"}))
        .await;
    let path = format!("/Users/{}", u["id"].as_str().unwrap());
    let ops = [
        ("title", "Engineer"),
        ("nickName", "Mo"),
        ("displayName", "Merge Me"),
        ("userType", "Employee"),
        ("name.givenName", "Merge"),
        ("name.familyName", "Example"),
    ];
    let replies = all_at_once(ops.len(), |i| {
        let t = t.clone();
        let path = path.clone();
        let (p, v) = ops[i];
        let body =
            json!({"schemas":[PATCH_URN],"Operations":[{"op":"replace","path":p,"value":v}]});
        async move { t.patch(&path, &body).await }
    })
    .await;
    assert!(
        replies.iter().all(|r| r.status == 200),
        "{:?}",
        replies
            .iter()
            .map(|r| (r.status, &r.text))
            .collect::<Vec<_>>()
    );
    let v = t.get(&path).await.json();
    assert_eq!(v["title"], "Engineer", "{v}");
    assert_eq!(v["nickName"], "Mo", "{v}");
    assert_eq!(v["displayName"], "Merge Me", "{v}");
    assert_eq!(v["userType"], "Employee", "{v}");
    assert_eq!(v["name"]["givenName"], "Merge", "{v}");
    assert_eq!(v["name"]["familyName"], "Example", "{v}");
    assert_eq!(
        v["meta"]["version"],
        format!("W/\"{}\"", 1 + ops.len()),
        "{v}"
    );

    // Racing DELETEs of one user: one 204, the rest 404; the account is soft-deleted once.
    let replies = all_at_once(8, |_| {
        let t = t.clone();
        let path = path.clone();
        async move { t.delete(&path).await }
    })
    .await;
    assert_eq!(
        replies.iter().filter(|r| r.status == 204).count(),
        1,
        "{:?}",
        statuses(&replies)
    );
    for r in replies.iter().filter(|r| r.status != 204) {
        r.assert_scim_error(404, None);
    }
    let deletes = audit(&app, &t.id)
        .into_iter()
        .filter(|e| e["action"] == "user_deleted")
        .count();
    assert_eq!(deletes, 1);
}

#[tokio::test]
async fn unicode_case_variants_conflict_and_match_on_every_backend() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Unicode");
    for (name, variant) in [
        ("ÅSA@Example.test", "åsa@example.TEST"),
        ("ÉMILE@x.test", "émile@X.test"),
        ("ΣΊΣΥΦΟΣ@x.test", "σίσυφος@x.test"),
        ("ЖЕНЯ@x.test", "женя@x.test"),
        ("ǅemal@x.test", "ǆemal@x.test"),
    ] {
        t.create_user(&json!({"schemas":[USER_URN],"userName":name}))
            .await;
        let q = |op: &str, v: &str| {
            let f = format!("userName {op} \"{v}\"");
            let enc: String = f
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            format!("/Users?filter={enc}")
        };
        let r = t.get(&q("eq", variant)).await.json();
        assert_eq!(r["totalResults"], 1, "{name} eq {variant}: {r}");
        assert_eq!(r["Resources"][0]["userName"], name);
        let prefix: String = variant.chars().take(3).collect();
        let r = t.get(&q("sw", &prefix)).await.json();
        assert_eq!(r["totalResults"], 1, "{name} sw {prefix}: {r}");
        t.post("/Users", &json!({"schemas":[USER_URN],"userName":variant}))
            .await
            .assert_scim_error(409, Some("uniqueness"));
    }
    assert_eq!(t.get("/Users").await.json()["totalResults"], 5);
}

#[tokio::test]
async fn racing_renames_and_cross_tenant_creates() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Renames");
    const N: usize = 12;
    let mut paths = Vec::new();
    for i in 0..N {
        let u = t
            .create_user(&json!({"schemas":[USER_URN],"userName":format!("old{i}@x.test")}))
            .await;
        paths.push(format!("/Users/{}", u["id"].as_str().unwrap()));
    }
    // Every user is renamed to one userName (varied case) at once: one wins.
    let replies = all_at_once(N, |i| {
        let t = t.clone();
        let path = paths[i].clone();
        let body = json!({"schemas":[USER_URN],
            "userName": if i % 2 == 0 { "Taken@X.test" } else { "taken@x.TEST" }});
        async move { t.put(&path, &body).await }
    })
    .await;
    assert_eq!(
        replies.iter().filter(|r| r.status == 200).count(),
        1,
        "{:?}",
        statuses(&replies)
    );
    for r in replies.iter().filter(|r| r.status != 200) {
        r.assert_scim_error(409, Some("uniqueness"));
    }
    let r = t
        .get("/Users?filter=userName%20eq%20%22taken%40x.test%22")
        .await
        .json();
    assert_eq!(r["totalResults"], 1, "{r}");
    assert_eq!(t.get("/Users").await.json()["totalResults"], N);

    // The same userName created at once in different tenants: all succeed.
    let tenants: Vec<Tenant> = (0..6).map(|i| app.tenant(&format!("T{i}"))).collect();
    let replies = all_at_once(tenants.len(), |i| {
        let t = tenants[i].clone();
        async move {
            t.post(
                "/Users",
                &json!({"schemas":[USER_URN],"userName":"everywhere@x.test"}),
            )
            .await
        }
    })
    .await;
    assert!(
        replies.iter().all(|r| r.status == 201),
        "{:?}",
        statuses(&replies)
    );
    for t in &tenants {
        assert_eq!(t.get("/Users").await.json()["totalResults"], 1);
    }
}

#[tokio::test]
async fn restore_racing_a_new_create_never_yields_two_live_accounts() {
    let app = Arc::new(TestApp::spawn().await);
    let t = app.tenant("Revive");
    let u = t
        .create_user(&json!({"schemas":[USER_URN],"userName":"phoenix@x.test"}))
        .await;
    assert_eq!(
        t.delete(&format!("/Users/{}", u["id"].as_str().unwrap()))
            .await
            .status,
        204
    );
    // A POST of the same userName and an operator restore at the same moment.
    let restore = {
        let app = app.clone();
        let tid = t.id.clone();
        tokio::task::spawn_blocking(move || {
            app.cli(&[
                "account",
                "restore",
                "--tenant",
                &tid,
                "--user-name",
                "PHOENIX@x.test",
            ])
        })
    };
    let posts = all_at_once(4, |_| {
        let t = t.clone();
        async move {
            t.post(
                "/Users",
                &json!({"schemas":[USER_URN],"userName":"Phoenix@X.test"}),
            )
            .await
        }
    })
    .await;
    let restore = restore.await.unwrap();
    assert!(!restore.stderr.contains("panicked"), "{restore:?}");
    let created = posts.iter().filter(|r| r.status == 201).count();
    for r in posts.iter().filter(|r| r.status != 201) {
        r.assert_scim_error(409, Some("uniqueness"));
    }
    // Exactly one live account, whichever side won.
    let live = t
        .get("/Users?filter=userName%20eq%20%22phoenix%40x.test%22")
        .await
        .json();
    assert_eq!(
        live["totalResults"],
        1,
        "{live} {restore:?} {:?}",
        statuses(&posts)
    );
    assert_eq!(
        created + usize::from(restore.status.success()),
        1,
        "{restore:?} {:?}",
        statuses(&posts)
    );
}

#[tokio::test]
async fn racing_token_regenerations_leave_exactly_one_live_token() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Tokens");
    for _round in 0..3 {
        // Several operators (or dashboard sessions) press "Generate" at once.
        let barrier = Arc::new(std::sync::Barrier::new(6));
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let d = app.deployment.clone();
                let base = app.base.clone();
                let id = t.id.clone();
                let b = barrier.clone();
                std::thread::spawn(move || {
                    b.wait();
                    run_cli(
                        &d,
                        Some(&base),
                        &["scim", "token", "--tenant", &id, "--json"],
                        None,
                    )
                })
            })
            .collect();
        let tokens: Vec<String> = handles
            .into_iter()
            .map(|h| {
                h.join().unwrap().ok().json()["token"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let mut live = Vec::new();
        for tok in &tokens {
            let c = Tenant {
                token: tok.clone(),
                ..t.clone()
            };
            let r = c.get("/Users").await;
            match r.status {
                200 => live.push(tok.clone()),
                401 => {}
                s => panic!("{s}: {}", r.text),
            }
        }
        assert_eq!(
            live.len(),
            1,
            "every generation revokes all earlier tokens; {} of {} still work",
            live.len(),
            tokens.len()
        );
        t.get("/Users").await.assert_scim_error(401, None);
    }
}
