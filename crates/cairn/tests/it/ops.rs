//! Operations: `/healthz`, Prometheus `/metrics`, the request id on every response and in
//! the logs, SCIM 404/405 bodies for unknown paths and methods, and SIGTERM draining
//! in-flight requests before a clean exit.

use crate::support::*;
use reqwest::{header, Method};
use serde_json::json;
use std::time::Duration;

/// The value of the sample of `metric` whose labels include all of `labels`, 0 if none.
fn sample(metrics: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.split(['{', ' '])
                .next()
                .is_some_and(|name| name == metric)
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

async fn metrics(app: &TestApp) -> String {
    let r = app.get("/metrics").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        ct.starts_with("application/openmetrics-text") || ct.starts_with("text/plain"),
        "{ct}"
    );
    r.text().await.unwrap()
}

#[tokio::test]
async fn healthz_and_metrics_count_requests() {
    let app = TestApp::spawn().await;
    let h = app.get("/healthz").send().await.unwrap();
    assert_eq!(h.status(), 200);
    assert!(h.headers().get("x-request-id").is_some());
    assert_eq!(
        h.json::<serde_json::Value>().await.unwrap(),
        json!({"status":"ok"})
    );

    let t = app.tenant("Metered");
    let users_route = [
        ("method", "GET"),
        ("route", "/scim/v2/{tenant}/Users"),
        ("status", "200"),
    ];
    let before = metrics(&app).await;
    let list_before = sample(&before, "cairn_http_requests_total", &users_route);
    for _ in 0..5 {
        assert_eq!(t.get("/Users").await.status, 200);
    }
    for i in 0..3 {
        t.create_user(&json!({"schemas":[USER_URN],"userName":format!("m{i}@metrics.test")}))
            .await;
    }
    let bad = Tenant {
        token: "cairn_wrong".into(),
        ..t.clone()
    };
    for _ in 0..2 {
        assert_eq!(bad.get("/Users").await.status, 401);
    }
    let after = metrics(&app).await;
    assert_eq!(
        sample(&after, "cairn_http_requests_total", &users_route) - list_before,
        5.0,
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "cairn_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/scim/v2/{tenant}/Users"),
                ("status", "201")
            ]
        ),
        3.0,
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "cairn_http_requests_total",
            &[
                ("method", "GET"),
                ("route", "/scim/v2/{tenant}/Users"),
                ("status", "401")
            ]
        ),
        2.0,
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "cairn_provisioning_changes_total",
            &[("action", "user_created")]
        ),
        3.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            "cairn_http_request_duration_seconds_count",
            &[("method", "GET"), ("route", "/scim/v2/{tenant}/Users")]
        ) >= 5.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            "cairn_http_requests_total",
            &[("route", "/healthz")]
        ) >= 1.0
    );
    assert!(after.trim_end().ends_with("# EOF"), "{after}");
    // Labels carry route patterns, never tenant or user ids (unbounded cardinality); the
    // one per-tenant gauge (stale backups, one series per tenant) is the exception.
    let stale = format!("cairn_stale_backup_accounts{{tenant=\"{}\"}} ", t.id);
    assert!(
        after
            .lines()
            .filter(|l| l.contains(&t.id))
            .all(|l| l.starts_with(&stale)),
        "tenant id in metrics: {after}"
    );
    assert!(!after.contains("metrics.test"));
}

#[tokio::test]
async fn request_ids_are_returned_echoed_and_logged() {
    let app = TestApp::spawn_with(Opts {
        env: vec![("CAIRN_LOG".into(), "debug".into())],
        ..Default::default()
    })
    .await;
    let t = app.tenant("Traced");
    // Generated: present on every kind of response, unique.
    let mut seen = std::collections::HashSet::new();
    for r in [
        t.get("/Users").await,
        t.get("/Nope").await,
        t.get("/ServiceProviderConfig").await,
    ] {
        let id = r.header("x-request-id").expect("x-request-id").to_owned();
        assert!(!id.is_empty());
        assert!(seen.insert(id), "request ids must differ");
    }
    let r = Reply::of(app.get("/no/such/page").send().await.unwrap()).await;
    assert!(r.header("x-request-id").is_some());
    let r = Reply::of(t.anon(Method::GET, "/Users").send().await.unwrap()).await;
    assert_eq!(r.status, 401);
    assert!(r.header("x-request-id").is_some());

    // A proxy's request id is kept, returned and logged with the request.
    let r = Reply::of(
        t.req(Method::GET, "/Users")
            .header("x-request-id", "proxy-trace-4711")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("proxy-trace-4711"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = app.log();
    assert!(log.contains("proxy-trace-4711"), "{log}");
    assert!(!log.contains(&t.token), "the token is logged");
}

#[tokio::test]
async fn unknown_paths_and_methods_get_scim_errors_under_the_tenant_url() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Routes");
    for p in [
        "/Nope",
        "/users/x/y",
        "/Users/x/y",
        "/Groups/abc/def",
        "/Me/x",
        "/Bulk/x",
        "/Schemas/urn:nope",
        "/ResourceTypes/Nope",
    ] {
        let r = t.get(p).await;
        assert_eq!(r.status, 404, "{p}: {}", r.text);
        r.assert_scim_error(404, None);
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with(SCIM_JSON)),
            "{p}"
        );
    }
    for (m, p) in [
        (Method::DELETE, "/Users"),
        (Method::PUT, "/Users"),
        (Method::PATCH, "/Users"),
        (Method::POST, "/Users/00000000-0000-4000-8000-000000000000"),
        (Method::DELETE, "/ServiceProviderConfig"),
        (Method::PUT, "/Schemas"),
        (Method::GET, "/Users/.search"),
    ] {
        let r = Reply::of(
            t.req(m.clone(), p)
                .header(header::CONTENT_TYPE, SCIM_JSON)
                .body("{}")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(r.status == 405 || r.status == 404, "{m} {p}: {}", r.text);
        r.assert_scim_error(r.status, None);
    }
    // Trailing slashes and doubled slashes reach the same handlers.
    let r = Reply::of(
        app.client
            .get(format!("{}/Users/", t.url))
            .bearer_auth(&t.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = Reply::of(
        app.client
            .get(format!("{}//Users", t.url))
            .bearer_auth(&t.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Outside the SCIM tree a plain 404.
    let r = Reply::of(app.get("/nothing-here").send().await.unwrap()).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut app = TestApp::spawn().await;
    let t = app.tenant("Draining");
    let rest = t.url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());

    // Start a request and leave its body unfinished.
    let body = json!({"schemas":[USER_URN],"userName":"inflight@drain.test"}).to_string();
    let (first, second) = body.split_at(10);
    let mut s = tokio::net::TcpStream::connect(authority).await.unwrap();
    let head = format!(
        "POST {path}/Users HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {}\r\nContent-Type: {SCIM_JSON}\r\nContent-Length: {}\r\n\r\n{first}",
        t.token,
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // SIGTERM while it is in flight.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &app.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The in-flight request completes.
    s.write_all(second.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if String::from_utf8_lossy(&buf).contains("inflight@drain.test") {
                break;
            }
        }
    })
    .await
    .expect("the in-flight request was answered");
    let reply = String::from_utf8_lossy(&buf).into_owned();
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
    drop(s);

    // Then the process exits 0 and stops accepting connections.
    let code = app.terminate();
    assert!(code.success(), "exit status {code}: {}", app.log());
    assert!(tokio::net::TcpStream::connect(authority).await.is_err());

    // The drained write was durable: a restarted server has the user.
    let again = TestApp::spawn_on(app.deployment.clone(), Opts::default()).await;
    let t2 = Tenant {
        url: format!("{}{path}", again.base),
        ..t.clone()
    };
    let r = t2
        .get("/Users?filter=userName%20eq%20%22inflight%40drain.test%22")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["totalResults"], 1);
}

/// PostgreSQL only: while the database refuses connections, SCIM requests fail fast with
/// 503 and a SCIM body, `/healthz` says 503; service resumes when it is back.
#[tokio::test]
async fn database_outage_is_503_and_service_resumes() {
    if !backend_is_postgres() {
        return;
    }
    let app = TestApp::spawn().await;
    let t = app.tenant("Outage");
    let u = t
        .create_user(&json!({"schemas":[USER_URN],"userName":"steady@outage.test"}))
        .await;
    let path = format!("/Users/{}", u["id"].as_str().unwrap());
    let url = app.deployment.database_url.clone().unwrap();
    let db = url.rsplit('/').next().unwrap().to_owned();
    pg_admin(format!(
        "ALTER DATABASE {db} ALLOW_CONNECTIONS false;
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = '{db}' AND pid <> pg_backend_pid();"
    ));

    for p in [path.as_str(), "/Users"] {
        let start = std::time::Instant::now();
        let r = t.get(p).await;
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "took {:?}",
            start.elapsed()
        );
        r.assert_scim_error(503, None);
        assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    }
    let r = t
        .post(
            "/Users",
            &json!({"schemas":[USER_URN],"userName":"lost@outage.test"}),
        )
        .await;
    r.assert_scim_error(503, None);
    let h = app.get("/healthz").send().await.unwrap();
    assert_eq!(h.status(), 503);
    assert!(!app.log().contains("panicked"));

    pg_admin(format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"));
    let start = std::time::Instant::now();
    loop {
        let r = t.get(&path).await;
        if r.status == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "did not recover: {} {}",
            r.status,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.get("/healthz").send().await.unwrap().status(), 200);
    // The write attempted during the outage did not happen; writes work again.
    assert_eq!(t.get("/Users").await.json()["totalResults"], 1);
    t.create_user(&json!({"schemas":[USER_URN],"userName":"after@outage.test"}))
        .await;
}

/// A client that stalls in the middle of its body cannot keep the process alive after
/// SIGTERM: draining ends after `CAIRN_DRAIN_TIMEOUT_SECS` and the exit is still 0.
#[tokio::test]
async fn sigterm_drain_is_bounded_when_a_client_stalls() {
    use tokio::io::AsyncWriteExt;
    let mut app = TestApp::spawn_with(Opts {
        env: vec![("CAIRN_DRAIN_TIMEOUT_SECS".into(), "1".into())],
        ..Default::default()
    })
    .await;
    let t = app.tenant("Stalled");
    let rest = t.url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = tokio::net::TcpStream::connect(authority).await.unwrap();
    let head = format!(
        "POST {path}/Users HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {}\r\nContent-Type: {SCIM_JSON}\r\nContent-Length: 100\r\n\r\n{{",
        t.token
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // An idle keep-alive connection as well.
    assert_eq!(t.get("/Users").await.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = std::time::Instant::now();
    let code = app.terminate();
    assert!(code.success(), "exit status {code}: {}", app.log());
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    drop(s);
}

/// Clients choose the HTTP method freely; made-up methods must not each become a new
/// metrics series (unbounded memory and /metrics size).
#[tokio::test]
async fn made_up_methods_do_not_grow_the_metrics() {
    let app = TestApp::spawn().await;
    for i in 0..20 {
        let m = Method::from_bytes(format!("X{i}FOO").as_bytes()).unwrap();
        for path in ["/healthz", "/nope", "/scim/v2/x/Users"] {
            let r = app
                .client
                .request(m.clone(), format!("{}{path}", app.base))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_client_error(), "{m} {path}: {}", r.status());
        }
    }
    let m = metrics(&app).await;
    assert!(!m.contains("FOO"), "{m}");
    assert!(
        sample(&m, "cairn_http_requests_total", &[("method", "other")]) >= 60.0,
        "{m}"
    );
}

/// Issue 16 finding 12: `X-Content-Type-Options: nosniff` on every surface's responses
/// (health, metrics, SCIM successes and errors, the vault's objects and refusals, the
/// dashboard, unknown paths), not only the dashboard's.
#[tokio::test]
async fn every_response_says_nosniff() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Sniff");
    let a = crate::vault::account(&app, &t, "sniff@example.com").await;
    let repo = format!("{}/backup/{}/{}", app.base, t.id, a.id);
    let with_key = |m: Method, url: String| {
        app.client
            .request(m, url)
            .basic_auth(&a.user, Some(&a.secret))
    };
    let created = with_key(Method::POST, format!("{repo}/?create=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let stored = with_key(Method::POST, format!("{repo}/config"))
        .body("cfg")
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 200);
    let bad = Tenant {
        token: "cairn_wrong".into(),
        ..t.clone()
    };
    let responses = [
        ("healthz", app.get("/healthz").send().await.unwrap()),
        ("metrics", app.get("/metrics").send().await.unwrap()),
        ("unknown path", app.get("/nowhere").send().await.unwrap()),
        ("dashboard", app.get("/login").send().await.unwrap()),
        (
            "SCIM list",
            t.req(Method::GET, "/Users").send().await.unwrap(),
        ),
        (
            "SCIM 401",
            bad.req(Method::GET, "/Users").send().await.unwrap(),
        ),
        (
            "vault object",
            with_key(Method::GET, format!("{repo}/config"))
                .send()
                .await
                .unwrap(),
        ),
        (
            "vault 401",
            app.client
                .get(format!("{repo}/config"))
                .send()
                .await
                .unwrap(),
        ),
    ];
    let mut seen = Vec::new();
    for (what, r) in &responses {
        seen.push((*what, r.status().as_u16()));
        assert_eq!(
            r.headers()
                .get("x-content-type-options")
                .map(|v| v.to_str().unwrap()),
            Some("nosniff"),
            "{what} ({})",
            r.status()
        );
    }
    // The surfaces answered as expected, so the check covered successes and refusals.
    assert_eq!(
        seen,
        [
            ("healthz", 200),
            ("metrics", 200),
            ("unknown path", 404),
            ("dashboard", 200),
            ("SCIM list", 200),
            ("SCIM 401", 401),
            ("vault object", 200),
            ("vault 401", 401),
        ]
    );
}

/// The footer of every dashboard page (AGPL-3.0 section 13): the version, the configured
/// source link (escaped like any other value) and the license, which `/license` serves.
#[tokio::test]
async fn dashboard_footer_links_source_and_license() {
    let app = TestApp::spawn_with(Opts {
        args: vec![
            "--source-url".into(),
            "https://git.example.com/acme/cairn?ref=main&x=\"<b>".into(),
        ],
        ..Opts::default()
    })
    .await;
    let login = app.get("/login").send().await.unwrap();
    assert_eq!(login.status(), 200);
    let html = login.text().await.unwrap();
    let footer = &html[html.find("<footer").expect("a footer")..];
    assert!(
        footer.contains(concat!("Cairn ", env!("CARGO_PKG_VERSION"))),
        "{footer}"
    );
    assert!(
        footer.contains(
            r#"<a href="https://git.example.com/acme/cairn?ref=main&#38;x=&#34;&#60;b&#62;" rel="noopener">Source code</a>"#
        ),
        "{footer}"
    );
    assert!(footer.contains(r#"<a href="/license">"#), "{footer}");

    let license = app.get("/license").send().await.unwrap();
    assert_eq!(license.status(), 200);
    assert_eq!(
        license.headers()[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    let text = license.text().await.unwrap();
    assert!(text.starts_with("                    GNU AFFERO GENERAL PUBLIC LICENSE\n                       Version 3, 19 November 2007\n"));
    assert!(
        text.contains("13. Remote Network Interaction; Use with the GNU General Public License.")
    );
}

/// `--source-url` takes http(s) URLs only: a `javascript:` link in every page's footer
/// is refused before the server starts.
#[test]
fn serve_refuses_a_source_url_that_is_not_http() {
    let d = Deployment::new();
    for bad in ["javascript:alert(1)", "/source", "https://"] {
        let out = run_cli(
            &d,
            None,
            &["serve", "--listen", "127.0.0.1:0", "--source-url", bad],
            None,
        );
        assert_eq!(out.status.code(), Some(2), "{bad}: {out:?}");
        assert!(
            out.stderr.contains("expected an http:// or https:// URL"),
            "{bad}: {}",
            out.stderr
        );
    }
}
