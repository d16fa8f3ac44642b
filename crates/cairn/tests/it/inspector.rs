//! The provisioning inspector (issue 20, items 5 and 6): what `cairn serve` records of
//! each SCIM request, body capture with redaction, retention by count and age, tenant
//! isolation, the `cairn requests` CLI and the dashboard page.
//!
//! Entries are written off the request path, so each test waits until the log holds
//! what it sent (bounded by `DEADLINE`; the condition, not a duration, is asserted).

use crate::support::*;
use reqwest::{header, Method};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);
const PW: &str = "correct horse battery staple";

/// `cairn requests --tenant ID --json` plus `extra`, once it lists at least `n` entries
/// and `done` holds.
async fn requests_until(
    app: &TestApp,
    tenant: &str,
    extra: &[&str],
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let mut args = vec!["requests", "--tenant", tenant, "--json"];
        args.extend_from_slice(extra);
        let v = app.cli(&args).ok().json();
        let list = v.as_array().unwrap().clone();
        if done(&list) {
            return list;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the request log never got there: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn admin(app: &TestApp, tenant: &str, email: &str, role: &str) {
    app.cli_stdin(
        &[
            "user",
            "create",
            "--tenant",
            tenant,
            "--email",
            email,
            "--role",
            role,
            "--password-stdin",
        ],
        Some(&format!("{PW}\n")),
    )
    .ok();
}

#[tokio::test]
async fn requests_are_recorded_with_client_outcome_and_notes() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Acme");
    let entra = "Azure AD SCIM Provisioning";
    let r = t
        .send(
            Method::POST,
            "/Users?aadOptscim062020",
            &json!({
                "schemas": [USER_URN],
                "userName": "ann@example.com",
                "active": "False",
                "password": "hunter2-secret",
                "urn:ietf:params:scim:schemas:extension:acme:2.0:User": {"costCenter": "7"}
            }),
        )
        .header(header::USER_AGENT, entra)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dup = t
        .send(
            Method::POST,
            "/Users",
            &json!({"userName": "ANN@example.com"}),
        )
        .header(header::USER_AGENT, "Okta SCIM Client 1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 409);
    assert_eq!(t.get(&format!("/Users/{id}")).await.status, 200);
    // Not authenticated: not recorded (see the recorder's documentation).
    let anon = t.anon(Method::GET, "/Users").send().await.unwrap();
    assert_eq!(anon.status(), 401);

    let list = requests_until(&app, &t.id, &[], |l| l.len() >= 3).await;
    assert_eq!(list.len(), 3, "{list:#?}");
    let (get, conflict, create) = (&list[0], &list[1], &list[2]);
    assert_eq!(create["method"], "POST");
    assert_eq!(create["path"], "/Users?aadOptscim062020");
    assert_eq!(create["client"], "entra");
    assert_eq!(create["dialect"], "Entra with aadOptscim062020");
    assert_eq!(create["status"], 201);
    assert_eq!(create["resource_type"], "User");
    assert_eq!(create["resource_id"], id.as_str());
    assert!(create["latency_us"].as_i64().unwrap() > 0);
    let notes: Vec<&str> = create["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    for n in [
        "active sent as the string \"False\"; treated as false",
        "unknown attribute urn:ietf:params:scim:schemas:extension:acme:2.0:User:costCenter ignored",
        "password accepted and not stored",
    ] {
        assert!(notes.contains(&n), "{n:?} not in {notes:?}");
    }
    assert_eq!(conflict["client"], "okta");
    assert_eq!(conflict["status"], 409);
    assert_eq!(conflict["scim_type"], "uniqueness");
    assert!(conflict["error"].as_str().unwrap().contains("userName"));
    assert_eq!(get["path"], format!("/Users/{id}"));
    assert_eq!(get["resource_id"], id.as_str());
    // Bodies are not kept by default, and no secret is anywhere.
    for e in &list {
        assert!(e["request_body"].is_null() && e["response_body"].is_null());
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    // Filters.
    let only_4xx = app
        .cli(&["requests", "--tenant", &t.id, "--status", "4xx", "--json"])
        .ok()
        .json();
    assert_eq!(only_4xx.as_array().unwrap().len(), 1);
    let touching = app
        .cli(&["requests", "--tenant", &t.id, "--account", &id, "--json"])
        .ok()
        .json();
    assert_eq!(touching.as_array().unwrap().len(), 2);
    let okta = app
        .cli(&["requests", "--tenant", &t.id, "--client", "okta", "--json"])
        .ok()
        .json();
    assert_eq!(okta.as_array().unwrap().len(), 1);
    let future = app
        .cli(&[
            "requests",
            "--tenant",
            &t.id,
            "--since",
            "2999-01-01T00:00:00Z",
            "--json",
        ])
        .ok()
        .json();
    assert!(future.as_array().unwrap().is_empty());
    let recent = app
        .cli(&["requests", "--tenant", &t.id, "--since", "1h", "--json"])
        .ok()
        .json();
    assert_eq!(recent.as_array().unwrap().len(), 3);
    let bad = app.cli(&["requests", "--tenant", &t.id, "--status", "nope"]);
    assert!(
        !bad.status.success() && bad.stderr.contains("--status"),
        "{}",
        bad.stderr
    );
    let text = app.cli(&["requests", "--tenant", &t.id]).ok().stdout;
    assert!(
        text.contains("Microsoft Entra ID") && text.contains("409"),
        "{text}"
    );

    let metrics = app
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("cairn_request_log_dropped_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_request_log_recorded_total 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn one_tenant_never_sees_another_tenants_requests() {
    let app = TestApp::spawn().await;
    let a = app.tenant("A");
    let b = app.tenant("B");
    a.create_user(&json!({"userName": "only-in-a@example.com"}))
        .await;
    b.create_user(&json!({"userName": "only-in-b@example.com"}))
        .await;
    // B's token on A's URL: refused, and recorded nowhere.
    let cross = a
        .anon(Method::GET, "/Users")
        .header(header::AUTHORIZATION, format!("Bearer {}", b.token))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 401);
    let in_a = requests_until(&app, &a.id, &[], |l| !l.is_empty()).await;
    let in_b = requests_until(&app, &b.id, &[], |l| !l.is_empty()).await;
    // Let anything still queued land before concluding.
    b.get("/ServiceProviderConfig").await;
    let in_b = requests_until(&app, &b.id, &[], |l| l.len() > in_b.len()).await;
    let in_a_again = app
        .cli(&["requests", "--tenant", &a.id, "--json"])
        .ok()
        .json();
    assert_eq!(in_a_again.as_array().unwrap().len(), in_a.len());
    assert!(in_a.iter().all(|e| e["tenant_id"] == a.id.as_str()));
    assert!(in_b.iter().all(|e| e["tenant_id"] == b.id.as_str()));

    // The dashboard of A shows A's requests only, and only to administrators.
    admin(&app, &a.id, "admin@a.test", "administrator");
    admin(&app, &a.id, "viewer@a.test", "viewer");
    let cookie = app.sign_in("admin@a.test", PW).await;
    let page = app
        .get("/requests")
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("POST") && html.contains("/Users"), "{html}");
    let b_user = in_b.iter().find_map(|e| e["resource_id"].as_str()).unwrap();
    assert!(!html.contains(b_user), "B's account id on A's page");
    let viewer = app.sign_in("viewer@a.test", PW).await;
    let denied = app
        .get("/requests")
        .header(header::COOKIE, &viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    // Filtering by B's account on A's page finds nothing.
    let probe = app
        .get(&format!("/requests?account={b_user}"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(probe.contains("No SCIM requests match"), "{probe}");
}

#[tokio::test]
async fn body_capture_redacts_secrets_and_ends() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Acme");
    admin(&app, &t.id, "admin@acme.test", "administrator");
    let cookie = app.sign_in("admin@acme.test", PW).await;
    let page = app
        .get("/requests")
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let csrf = csrf_of(&page.text().await.unwrap());
    let capture = |minutes: &'static str| {
        app.client
            .post(format!("{}/requests/capture", app.base))
            .header(header::ORIGIN, &app.base)
            .header(header::COOKIE, &cookie)
            .form(&[("csrf", csrf.as_str()), ("minutes", minutes)])
            .send()
    };
    assert_eq!(capture("15").await.unwrap().status(), 303);
    let html = app
        .get("/requests")
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("being captured until"), "{html}");

    let u = t
        .create_user(&json!({"userName": "bo@example.com", "password": "hunter2-secret"}))
        .await;
    let id = u["id"].as_str().unwrap();
    let r = t
        .patch(
            &format!("/Users/{id}"),
            &json!({"schemas": [PATCH_URN], "Operations": [
                {"op": "replace", "path": "password", "value": "hunter3-secret"},
                {"op": "replace", "path": "displayName", "value": "Bo"}
            ]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let list = requests_until(&app, &t.id, &[], |l| l.len() >= 2).await;
    let (patch, create) = (&list[0], &list[1]);
    let req = create["request_body"]
        .as_str()
        .expect("request body captured");
    assert!(
        req.contains("bo@example.com") && req.contains("[redacted]"),
        "{req}"
    );
    let resp = create["response_body"]
        .as_str()
        .expect("response body captured");
    assert!(resp.contains(id), "{resp}");
    let preq = patch["request_body"].as_str().unwrap();
    assert!(preq.contains("Bo") && preq.contains("[redacted]"), "{preq}");
    for e in &list {
        assert!(!e.to_string().contains("hunter"), "a secret was kept: {e}");
    }

    // Switched off: bodies are no longer kept.
    assert_eq!(capture("0").await.unwrap().status(), 303);
    t.get(&format!("/Users/{id}")).await;
    let list = requests_until(&app, &t.id, &[], |l| l.len() >= 3).await;
    assert!(list[0]["request_body"].is_null() && list[0]["response_body"].is_null());
    // Anything but 0, 15 or 60 minutes is refused.
    assert_eq!(capture("999").await.unwrap().status(), 403);
    let audit = app.cli(&["audit", "--tenant", &t.id, "--json"]).ok().json();
    let switches = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "body_capture_changed")
        .count();
    assert_eq!(switches, 2);
}

#[tokio::test]
async fn the_log_is_bounded_by_count_per_tenant() {
    let app = TestApp::spawn_with(Opts {
        args: vec![
            "--request-log-max-per-tenant".into(),
            "3".into(),
            "--purge-interval-secs".into(),
            "1".into(),
        ],
        ..Opts::default()
    })
    .await;
    let t = app.tenant("Acme");
    let other = app.tenant("Other");
    other.get("/Users").await;
    for i in 0..6 {
        t.get(&format!("/Users?count={i}")).await;
    }
    let list = requests_until(&app, &t.id, &[], |l| {
        l.len() == 3 && l[0]["path"] == "/Users?count=5"
    })
    .await;
    let paths: Vec<&str> = list.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        ["/Users?count=5", "/Users?count=4", "/Users?count=3"]
    );
    let kept = app
        .cli(&["requests", "--tenant", &other.id, "--json"])
        .ok()
        .json();
    assert_eq!(
        kept.as_array().unwrap().len(),
        1,
        "another tenant's entries stay"
    );
}

/// Between the hourly maintenance runs the writer keeps the bound too: a burst of
/// requests leaves at most about twice the bound, not an hour of traffic.
#[tokio::test]
async fn a_burst_is_pruned_without_waiting_for_maintenance() {
    let app = TestApp::spawn_with(Opts {
        // The maintenance run happens at start-up and then only after an hour.
        args: vec!["--request-log-max-per-tenant".into(), "3".into()],
        ..Opts::default()
    })
    .await;
    let t = app.tenant("Acme");
    for i in 0..20 {
        t.get(&format!("/Users?count={i}")).await;
    }
    let list = requests_until(&app, &t.id, &[], |l| {
        l.first().is_some_and(|e| e["path"] == "/Users?count=19") && l.len() <= 6
    })
    .await;
    assert!(list.len() >= 3, "the newest entries stay: {list:#?}");
}

#[tokio::test]
async fn the_log_is_bounded_by_age() {
    const DAY: i64 = 86_400;
    let deployment = std::sync::Arc::new(Deployment::new());
    // Entries recorded by a server whose clock is 8 days behind.
    let mut old = TestApp::spawn_on(
        deployment.clone(),
        Opts {
            env: vec![("CAIRN_CLOCK_OFFSET_SECS".into(), (-8 * DAY).to_string())],
            ..Opts::default()
        },
    )
    .await;
    let t = old.tenant("Acme");
    t.get("/Users?old=1").await;
    requests_until(&old, &t.id, &[], |l| l.len() == 1).await;
    old.terminate();
    let app = TestApp::spawn_on(
        deployment,
        Opts {
            args: vec!["--purge-interval-secs".into(), "1".into()],
            ..Opts::default()
        },
    )
    .await;
    let t = crate::support::Tenant {
        url: t.url.replace(&old.base, &app.base),
        ..t
    };
    t.get("/Users?new=1").await;
    let list = requests_until(&app, &t.id, &[], |l| {
        l.len() == 1 && l[0]["path"] == "/Users?new=1"
    })
    .await;
    assert_eq!(list.len(), 1);
}

/// A graceful shutdown (SIGTERM) stores the entries still queued for the writer.
#[tokio::test]
async fn shutdown_stores_the_queued_entries() {
    // The writer stores the first entry at once, then pauses far longer than the test:
    // the entries after it stay queued until shutdown.
    let mut app = TestApp::spawn_with(Opts {
        env: vec![("CAIRN_REQUEST_LOG_FLUSH_MS".into(), "600000".into())],
        ..Opts::default()
    })
    .await;
    let t = app.tenant("Acme");
    assert_eq!(t.get("/Users?count=1").await.status, 200);
    requests_until(&app, &t.id, &[], |l| l.len() == 1).await;
    for i in 0..5 {
        let r = t.get(&format!("/Users?count=1&startIndex={}", i + 2)).await;
        assert_eq!(r.status, 200);
    }
    // Queued, not stored: the pause has not ended.
    let stored = app
        .cli(&["requests", "--tenant", &t.id, "--json"])
        .ok()
        .json();
    assert_eq!(stored.as_array().unwrap().len(), 1, "{stored:#}");

    let started = Instant::now();
    let status = app.terminate();
    assert!(status.success(), "{status:?}\n{}", app.log());
    // Stopped without waiting for the pause to end.
    assert!(started.elapsed() < Duration::from_secs(60));
    let stored = app
        .cli(&["requests", "--tenant", &t.id, "--json"])
        .ok()
        .json();
    let paths: Vec<&str> = stored
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), 6, "{paths:?}\n{}", app.log());
    assert!(paths.contains(&"/Users?count=1&startIndex=6"), "{paths:?}");
}

/// `cairn requests capture`: the operator switches body capture on for a while and off,
/// audited; a running server follows (it re-reads the switches every few seconds).
#[tokio::test]
async fn the_cli_switches_body_capture() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Acme");
    let on = app
        .cli(&[
            "requests",
            "capture",
            "--tenant",
            &t.id,
            "--minutes",
            "15",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(on["tenant"], t.id.as_str(), "{on:#}");
    let until = on["capture_until"].as_str().expect("an end time");
    let until =
        time::OffsetDateTime::parse(until, &time::format_description::well_known::Rfc3339).unwrap();
    let left = until - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::minutes(14) && left <= time::Duration::minutes(15),
        "{on:#}"
    );

    // The server picks the switch up: a later request's body is kept (redacted).
    let start = Instant::now();
    loop {
        t.create_user(&json!({
            "userName": format!("u{}@example.com", start.elapsed().as_nanos()),
            "password": "hunter2-secret"
        }))
        .await;
        let list = app
            .cli(&["requests", "--tenant", &t.id, "--json"])
            .ok()
            .json();
        let newest = &list.as_array().unwrap()[0];
        if let Some(body) = newest["request_body"].as_str() {
            assert!(
                body.contains("[redacted]") && !body.contains("hunter2"),
                "{body}"
            );
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "bodies never captured: {newest:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let off = app
        .cli(&["requests", "capture", "--tenant", &t.id, "--off", "--json"])
        .ok()
        .json();
    assert_eq!(off, json!({"tenant": t.id, "capture_until": null}));
    let text = app
        .cli(&["requests", "capture", "--tenant", &t.id, "--off"])
        .ok()
        .stdout;
    assert!(text.contains("off"), "{text}");

    // Refused cleanly, nothing changed: out of range, both or neither of the switches.
    for bad in [
        &["--minutes", "61"][..],
        &["--minutes", "-1"],
        &["--minutes", "5", "--off"],
        &[],
    ] {
        let mut args = vec!["requests", "capture", "--tenant", &t.id];
        args.extend_from_slice(bad);
        let c = app.cli(&args);
        assert!(!c.status.success() && c.stdout.is_empty(), "{bad:?}: {c:?}");
        assert!(!c.stderr.contains("panicked"), "{c:?}");
    }
    let c = app.cli(&[
        "requests",
        "capture",
        "--tenant",
        NO_SUCH_TENANT,
        "--minutes",
        "5",
    ]);
    assert!(!c.status.success(), "{c:?}");

    let audit = app.cli(&["audit", "--tenant", &t.id, "--json"]).ok().json();
    let switches: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "body_capture_changed")
        .collect();
    assert_eq!(switches.len(), 3, "{audit:#}");
    assert!(
        switches.iter().all(|e| e["actor_kind"] == "operator"),
        "{switches:#?}"
    );
}

const NO_SUCH_TENANT: &str = "00000000-0000-4000-8000-000000000000";
