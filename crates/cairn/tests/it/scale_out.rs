//! Scale-out on PostgreSQL (issue 5): several instances on one database, `cairn db copy`
//! between backends, and a database outage. These tests use PostgreSQL whatever
//! `CAIRN_TEST_BACKEND` says (the server at `CAIRN_TEST_POSTGRES_URL`).

use crate::support::*;
use reqwest::{header, Method};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn user(name: &str) -> Value {
    json!({"schemas":[USER_URN],"userName":name,
        "name":{"givenName":"Ada","familyName":"Lovelace"},
        "emails":[{"value":format!("{}@example.com", name.to_lowercase()),"type":"work","primary":true}],
        "active":true})
}

/// The tenant's users as SCIM renders them, by userName (sorted, full representation).
async fn all_users(t: &Tenant) -> Vec<Value> {
    let r = t.get("/Users?count=1000&sortBy=userName").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["Resources"].as_array().unwrap().clone()
}

fn audit(app: &TestApp, t: &Tenant) -> Value {
    app.cli(&["audit", "--tenant", &t.id, "--json"]).ok().json()
}

/// A tenant made on `app`'s deployment, plus a spread of state: active, suspended and
/// soft-deleted accounts, a dashboard user, settings changes (all audited).
async fn populate(app: &TestApp) -> Tenant {
    let t = app.tenant("Copy Co");
    for i in 0..25 {
        t.create_user(&user(&format!("user{i:02}@copy.test"))).await;
    }
    let list = all_users(&t).await;
    let id = |i: usize| list[i]["id"].as_str().unwrap().to_owned();
    let r = t
        .patch(
            &format!("/Users/{}", id(3)),
            &json!({"schemas":[PATCH_URN],"Operations":[{"op":"replace","value":{"active":false}}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(t.delete(&format!("/Users/{}", id(4))).await.status, 204);
    let members: Vec<Value> = (5..15).map(|i| json!({"value": id(i)})).collect();
    let g = t
        .post(
            "/Groups",
            &json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName":"Engineering","members":members}),
        )
        .await;
    assert_eq!(g.status, 201, "{}", g.text);
    app.cli(&[
        "group",
        "size",
        "--tenant",
        &t.id,
        "--group",
        "Engineering",
        "--gb",
        "200",
    ])
    .ok();
    app.cli_stdin(
        &[
            "user",
            "create",
            "--tenant",
            &t.id,
            "--email",
            "admin@copy.test",
            "--role",
            "administrator",
            "--password-stdin",
        ],
        Some("correct horse battery staple\n"),
    )
    .ok();
    t
}

#[tokio::test]
async fn db_copy_moves_a_deployment_to_postgres_and_back() {
    // 1. A deployment on SQLite.
    let sqlite = Arc::new(Deployment::sqlite());
    let mut app = TestApp::spawn_on(sqlite.clone(), Opts::default()).await;
    let t = populate(&app).await;
    let users_before = all_users(&t).await;
    let audit_before = audit(&app, &t);
    assert!(audit_before.as_array().unwrap().len() >= 28);
    // Each live account's last repository check (none has a repository: clean, empty).
    let checked = app
        .cli(&["vault", "verify", "--tenant", &t.id, "--json"])
        .ok()
        .json()["accounts"]
        .as_array()
        .unwrap()
        .len();
    assert!(checked > 0);
    assert!(app.terminate().success());

    // 2. Copy to a new PostgreSQL database.
    let pg = Arc::new(Deployment::postgres());
    let out = run_cli(
        &sqlite,
        None,
        &[
            "db",
            "copy",
            "--from",
            &sqlite.url(),
            "--to",
            &pg.url(),
            "--json",
        ],
        None,
    )
    .ok()
    .json();
    assert_eq!(out["verified"], true, "{out}");
    assert_eq!(out["tables"]["tenants"], 1, "{out}");
    assert_eq!(out["tables"]["users"], 25, "{out}");
    assert_eq!(out["tables"]["scim_tokens"], 1, "{out}");
    assert_eq!(out["tables"]["dashboard_users"], 1, "{out}");
    assert_eq!(out["tables"]["groups"], 1, "{out}");
    assert_eq!(out["tables"]["group_members"], 10, "{out}");
    assert_eq!(out["tables"]["vault_verifications"], checked, "{out}");
    assert_eq!(
        out["tables"]["audit_events"],
        audit_before.as_array().unwrap().len(),
        "{out}"
    );
    assert!(!out.to_string().contains("password"), "{out}");

    // 3. The same tenant, token, accounts and audit log served from PostgreSQL (the
    //    Tenant URL holds only the tenant id, so it is the same on the new server apart
    //    from its address).
    let app = TestApp::spawn_on(pg.clone(), Opts::default()).await;
    let on_pg = Tenant {
        url: t
            .url
            .replace(&t.url[..t.url.find("/scim/").unwrap()], &app.base),
        ..t.clone()
    };
    // The same resource as served from another address (meta.location, groups.$ref).
    let base_of = |u: &Value, base: &str| -> Value {
        let loc = u["meta"]["location"].as_str().unwrap();
        let old = &loc[..loc.find("/scim/").unwrap()];
        serde_json::from_str(&u.to_string().replace(old, base)).unwrap()
    };
    let users_pg = all_users(&on_pg).await;
    assert_eq!(users_pg.len(), users_before.len());
    for (a, b) in users_before.iter().zip(&users_pg) {
        assert_eq!(base_of(a, &app.base), *b);
    }
    assert_eq!(audit(&app, &on_pg), audit_before);
    let groups_before = {
        // Read from the SQLite deployment's copy on PostgreSQL and compare with a fresh
        // read of the same group there: the members and the group-based quota came along.
        let g = on_pg
            .get("/Groups?filter=displayName%20eq%20%22Engineering%22")
            .await;
        assert_eq!(g.status, 200, "{}", g.text);
        let g = g.json()["Resources"][0].clone();
        assert_eq!(g["members"].as_array().map(Vec::len), Some(10), "{g}");
        g
    };
    let member = groups_before["members"][0]["value"].as_str().unwrap();
    let audit_quota = audit(&app, &on_pg)
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "quota_changed" && e["target_id"] == member);
    assert!(audit_quota, "the quota change of a member was copied");
    // The soft-deleted account came along: restore works on the new backend.
    app.cli(&[
        "account",
        "restore",
        "--tenant",
        &t.id,
        "--user-name",
        "user04@copy.test",
    ])
    .ok();
    // Sequences continue after the copied rows.
    on_pg.create_user(&user("after-copy@copy.test")).await;
    let audit_pg = audit(&app, &on_pg);
    assert_eq!(
        audit_pg.as_array().unwrap().len(),
        audit_before.as_array().unwrap().len() + 2
    );
    let users_pg = all_users(&on_pg).await;
    assert_eq!(users_pg.len(), 26);
    drop(app);

    // 4. And back to a new SQLite database.
    let back = Deployment::sqlite();
    let out = run_cli(
        &back,
        None,
        &[
            "db",
            "copy",
            "--from",
            &pg.url(),
            "--to",
            &back.url(),
            "--json",
        ],
        None,
    )
    .ok()
    .json();
    assert_eq!(out["tables"]["users"], 26, "{out}");
    let back = Arc::new(back);
    let app = TestApp::spawn_on(back.clone(), Opts::default()).await;
    let on_back = Tenant {
        url: t
            .url
            .replace(&t.url[..t.url.find("/scim/").unwrap()], &app.base),
        ..t.clone()
    };
    let users_back = all_users(&on_back).await;
    for (a, b) in users_pg.iter().zip(&users_back) {
        assert_eq!(base_of(a, &app.base), *b);
    }
    assert_eq!(audit(&app, &on_back), audit_pg);
}

#[tokio::test]
async fn db_copy_refuses_a_non_empty_target_and_writes_nothing() {
    let a = Deployment::sqlite();
    let b = Deployment::postgres();
    for d in [&a, &b] {
        run_cli(
            d,
            None,
            &["tenant", "create", "--name", "X", "--json"],
            None,
        )
        .ok();
    }
    let out = run_cli(
        &a,
        None,
        &["db", "copy", "--from", &a.url(), "--to", &b.url()],
        None,
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("not empty"), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let tenants = run_cli(&b, None, &["tenant", "list", "--json"], None)
        .ok()
        .json();
    assert_eq!(tenants.as_array().unwrap().len(), 1);

    let same = run_cli(
        &a,
        None,
        &["db", "copy", "--from", &a.url(), "--to", &a.url()],
        None,
    );
    assert!(!same.status.success());
    assert!(same.stderr.contains("same database"), "{}", same.stderr);
    let bad = run_cli(
        &a,
        None,
        &["db", "copy", "--from", "mysql://x", "--to", &a.url()],
        None,
    );
    assert!(!bad.status.success());
    assert!(bad.stderr.contains("--from"), "{}", bad.stderr);
}

/// Two instances of one deployment on PostgreSQL, each tenant handle pointing at one.
async fn two_instances(opts: Opts) -> (TestApp, TestApp, Tenant, Tenant) {
    let pg = Arc::new(Deployment::postgres());
    let a = TestApp::spawn_on(pg.clone(), opts.clone()).await;
    let b = TestApp::spawn_on(pg, opts).await;
    let ta = a.tenant("Two Instances");
    let tb = Tenant {
        url: ta.url.replace(&a.base, &b.base),
        ..ta.clone()
    };
    (a, b, ta, tb)
}

#[tokio::test]
async fn racing_creates_on_two_instances_yield_one_account() {
    let (_a, _b, ta, tb) = two_instances(Opts::default()).await;
    for round in 0..5 {
        let name = format!("race{round}@two.test");
        let mut tasks = Vec::new();
        for i in 0..16 {
            let t = if i % 2 == 0 { ta.clone() } else { tb.clone() };
            let n = if i % 3 == 0 {
                name.to_uppercase()
            } else {
                name.clone()
            };
            tasks.push(tokio::spawn(
                async move { t.post("/Users", &user(&n)).await },
            ));
        }
        let mut created = 0;
        for task in tasks {
            let r = task.await.unwrap();
            match r.status {
                201 => created += 1,
                409 => {
                    r.assert_scim_error(409, Some("uniqueness"));
                }
                s => panic!("unexpected {s}: {}", r.text),
            }
        }
        assert_eq!(created, 1, "round {round}");
        let found = ta
            .get(&format!("/Users?filter=userName%20eq%20%22{name}%22"))
            .await
            .json();
        assert_eq!(found["totalResults"], 1);
    }
}

#[tokio::test]
async fn a_regenerated_token_stops_working_on_every_instance_within_two_seconds() {
    // The default lookup cache (2 s), as deployed.
    let opts = Opts {
        env: vec![("CAIRN_AUTH_CACHE_MS".into(), "2000".into())],
        ..Opts::default()
    };
    let (a, _b, ta, tb) = two_instances(opts).await;
    // Warm both instances' caches with the old token.
    assert_eq!(ta.get("/Users?count=1").await.status, 200);
    assert_eq!(tb.get("/Users?count=1").await.status, 200);
    let fresh = a
        .cli(&["scim", "token", "--tenant", &ta.id, "--json"])
        .ok()
        .json();
    let regenerated = Instant::now();
    let new_token = fresh["token"].as_str().unwrap().to_owned();
    // The new token is honoured on both instances (a refusal on a cached view is checked
    // again against the database once that view is 250 ms old).
    for t in [&ta, &tb] {
        let t = Tenant {
            token: new_token.clone(),
            ..t.clone()
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while t.get("/Users?count=1").await.status != 200 {
            assert!(
                Instant::now() < deadline,
                "the new token is refused on {}",
                t.url
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Two seconds after the regeneration the old one is refused everywhere.
    tokio::time::sleep(Duration::from_millis(2100).saturating_sub(regenerated.elapsed())).await;
    for t in [&ta, &tb] {
        t.get("/Users?count=1").await.assert_scim_error(401, None);
    }
}

#[tokio::test]
async fn a_session_opened_on_one_instance_is_valid_on_the_other() {
    let (a, b, ta, _tb) = two_instances(Opts::default()).await;
    ta.create_user(&user("visible@two.test")).await;
    a.cli_stdin(
        &[
            "user",
            "create",
            "--tenant",
            &ta.id,
            "--email",
            "admin@two.test",
            "--role",
            "administrator",
            "--password-stdin",
        ],
        Some("correct horse battery staple\n"),
    )
    .ok();
    let cookie = a
        .sign_in("admin@two.test", "correct horse battery staple")
        .await;
    for app in [&a, &b] {
        let r = app
            .get("/accounts")
            .header(header::COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", app.base);
        assert!(r.text().await.unwrap().contains("visible@two.test"));
    }
    // Without the cookie the other instance sends the visitor to sign in.
    let r = b.get("/accounts").send().await.unwrap();
    assert_eq!(r.status(), 303);
}

/// A TCP proxy in front of PostgreSQL whose connections can be cut and refused.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (up2, cut2) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound); // refused: the client sees the connection close
                    continue;
                }
                let mut rx = cut2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.changed() => {} // cut: both sockets dropped
                    }
                });
            }
        });
        Proxy { port, up, cut }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

// Multi-threaded: the proxy runs on this runtime while the harness blocks on start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_fails_fast_with_503_and_service_resumes_with_nothing_lost() {
    let pg = Arc::new(Deployment::postgres());
    let url = pg.database_url.clone().unwrap();
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let proxied = url.replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(proxied, url, "the test server URL must name 127.0.0.1:5432");
    let app = TestApp::spawn_on(
        pg.clone(),
        Opts {
            database_url: Some(proxied),
            ..Opts::default()
        },
    )
    .await;
    let t = app.tenant("Outage");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let t = Tenant { client, ..t };

    // Four writers create users until told to stop, recording every answer.
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let statuses = Arc::new(Mutex::new(Vec::<(u16, Duration, String)>::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (t, stop, ack, statuses) = (
            t.clone(),
            stop.clone(),
            acknowledged.clone(),
            statuses.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) && i < 2000 {
                let name = format!("w{w}-{i}@outage.test");
                let started = Instant::now();
                let sent = t
                    .send(Method::POST, "/Users", &user(&name))
                    .send()
                    .await
                    .expect("no answer: the request hung or the connection broke");
                let status = sent.status().as_u16();
                let body = sent.text().await.unwrap_or_default();
                if status == 201 {
                    ack.lock().unwrap().insert(name);
                }
                statuses
                    .lock()
                    .unwrap()
                    .push((status, started.elapsed(), body));
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    proxy.cut();
    let cut_at = statuses.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    // While the database is away, health says so.
    let h = app.get("/healthz").send().await.unwrap();
    assert_eq!(h.status(), 503);
    proxy.restore();
    // Service resumes by itself: a create succeeds again within 30 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = t.post("/Users", &user("after-outage@outage.test")).await;
        if r.status == 201 {
            acknowledged
                .lock()
                .unwrap()
                .insert("after-outage@outage.test".into());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery: {} {}",
            r.status,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }

    let statuses = std::mem::take(&mut *statuses.lock().unwrap());
    let during: Vec<_> = statuses[cut_at..].iter().collect();
    let unavailable: Vec<_> = during.iter().filter(|(s, _, _)| *s == 503).collect();
    assert!(
        !unavailable.is_empty(),
        "no 503 seen during the outage: {:?}",
        during.iter().map(|s| s.0).collect::<Vec<_>>()
    );
    for (status, took, body) in statuses.iter() {
        assert!(
            *status == 201 || *status == 503,
            "unexpected status {status}: {body}"
        );
        if *status == 503 {
            let v: Value = serde_json::from_str(body).expect("SCIM error body");
            assert_eq!(v["schemas"], json!([ERROR_URN]), "{v}");
            assert_eq!(v["status"], "503", "{v}");
            // Fail fast: the pool's timeouts are 3 s; allow scheduling slack.
            assert!(*took < Duration::from_secs(8), "a 503 took {took:?}");
        }
    }
    // Nothing acknowledged was lost.
    let acked = acknowledged.lock().unwrap().clone();
    let stored: BTreeSet<String> = {
        let mut names = BTreeSet::new();
        let mut start = 1;
        loop {
            let page = t
                .get(&format!(
                    "/Users?startIndex={start}&count=1000&attributes=userName"
                ))
                .await
                .json();
            let res = page["Resources"].as_array().cloned().unwrap_or_default();
            if res.is_empty() {
                break;
            }
            start += res.len();
            names.extend(
                res.iter()
                    .map(|u| u["userName"].as_str().unwrap().to_owned()),
            );
        }
        names
    };
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert!(acked.len() > 5);
}

#[tokio::test]
async fn instances_starting_together_migrate_a_new_database_once() {
    let pg = Arc::new(Deployment::postgres());
    // Six processes open the empty database at the same moment; each runs the embedded
    // migrations at start-up, under PostgreSQL's advisory lock.
    let runs: Vec<_> = (0..6)
        .map(|i| {
            let pg = pg.clone();
            std::thread::spawn(move || {
                run_cli(
                    &pg,
                    None,
                    &["tenant", "create", "--name", &format!("T{i}"), "--json"],
                    None,
                )
            })
        })
        .collect();
    for r in runs {
        r.join().unwrap().ok();
    }
    let tenants = run_cli(&pg, None, &["tenant", "list", "--json"], None)
        .ok()
        .json();
    assert_eq!(tenants.as_array().unwrap().len(), 6);
    // Two servers started together on it both serve.
    let (a, b) = tokio::join!(
        TestApp::spawn_on(pg.clone(), Opts::default()),
        TestApp::spawn_on(pg.clone(), Opts::default())
    );
    for app in [&a, &b] {
        assert_eq!(app.get("/healthz").send().await.unwrap().status(), 200);
    }
}
