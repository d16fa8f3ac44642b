//! Operations: `/livez`, `/readyz` (`/healthz`), Prometheus `/metrics` (on its own
//! listener, behind a token), the access log, `cairn healthcheck`, the request id on
//! every response and in the logs, SCIM 404/405 bodies for unknown paths and methods,
//! SIGTERM draining in-flight requests before a clean exit, and test-only settings that
//! a release build ignores.

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
        json!({"status":"ok","checks":{"database":"ok","vault":"ok","migrations":"ok"}})
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
    // per-tenant gauges (stale backups, used bytes: one series per tenant) are the
    // exception.
    let per_tenant = ["cairn_stale_backup_accounts", "cairn_vault_used_bytes"]
        .map(|m| format!("{m}{{tenant=\"{}\"}} ", t.id));
    assert!(
        after
            .lines()
            .filter(|l| l.contains(&t.id))
            .all(|l| per_tenant.iter().any(|p| l.starts_with(p))),
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
    // Liveness does not depend on the database; readiness names what failed.
    assert_eq!(app.get("/livez").send().await.unwrap().status(), 200);
    let r = app.get("/readyz").send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "unavailable", "{body}");
    assert_eq!(body["checks"]["database"], "unavailable", "{body}");
    assert_eq!(body["checks"]["vault"], "ok", "{body}");
    // `cairn healthcheck` (what a container runtime runs) exits 1.
    let hc = healthcheck(&[
        "--url",
        &format!("{}/readyz", app.base),
        "--timeout-secs",
        "10",
    ]);
    assert_eq!(hc.status.code(), Some(1), "{hc:?}");
    assert!(hc.stderr.contains("503"), "{hc:?}");
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
    assert_eq!(app.get("/readyz").send().await.unwrap().status(), 200);
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

/// `cairn healthcheck ARGS`, without a database or server of its own.
fn healthcheck(args: &[&str]) -> Cli {
    healthcheck_env(args, &[])
}

fn healthcheck_env(args: &[&str], env: &[(&str, &str)]) -> Cli {
    let mut cmd = std::process::Command::new(cairn_bin());
    cmd.arg("healthcheck")
        .args(args)
        .env_remove("CAIRN_LISTEN")
        .env_remove("CAIRN_TLS_CERT")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap().into()
}

/// The lines of the access log (target `cairn::access`) in a server's log.
fn access_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("cairn::access"))
        .collect()
}

/// Issue 18: one access log line per request at `info`, naming method, route pattern,
/// status, latency, tenant and client (the proxy's X-Forwarded-For entry when the proxy
/// is trusted); never the token, the query string, the concrete path of a secret link,
/// nor colour codes when stderr is not a terminal.
#[tokio::test]
async fn the_access_log_names_the_request_but_never_its_secrets() {
    let app = TestApp::spawn_with(Opts {
        args: vec!["--trusted-proxies".into(), "127.0.0.1".into()],
        ..Default::default()
    })
    .await;
    let t = app.tenant("Logged");
    let r = Reply::of(
        t.req(Method::GET, "/Users?count=1&access_token=QUERYSECRET42")
            .header("x-forwarded-for", "203.0.113.7")
            .header("x-request-id", "access-log-4711")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let bad = Tenant {
        token: "cairn_wrongtokenvalue".into(),
        ..t.clone()
    };
    assert_eq!(bad.get("/Users").await.status, 401);
    // A one-time link carries its secret in the path.
    let link = app
        .get("/invite/LINKSECRET0123456789")
        .send()
        .await
        .unwrap();
    assert!(link.status().is_client_error() || link.status().is_success());
    assert_eq!(app.get("/nowhere").send().await.unwrap().status(), 404);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let log = app.log();
    let lines = access_lines(&log);
    let ok = lines
        .iter()
        .find(|l| l.contains("access-log-4711"))
        .unwrap_or_else(|| panic!("no access line for the request: {log}"));
    for want in [
        "INFO",
        "method=GET",
        "/scim/v2/{tenant}/Users",
        "status=200",
        "latency_ms=",
        &t.id,
        "203.0.113.7",
    ] {
        assert!(ok.contains(want), "{want} missing: {ok}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("status=401") && l.contains("/scim/v2/{tenant}/Users")),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("/invite/{token}") && l.contains("tenant=\"-\"")),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("unmatched") && l.contains("status=404")),
        "{log}"
    );
    for secret in [
        t.token.as_str(),
        "cairn_wrongtokenvalue",
        "QUERYSECRET42",
        "LINKSECRET0123456789",
    ] {
        assert!(!log.contains(secret), "{secret} is in the log: {log}");
    }
    assert!(!log.contains('\u{1b}'), "colour codes in a log file: {log}");
}

/// `--log-format json`: the access line is a JSON object with the same fields.
#[tokio::test]
async fn the_access_log_in_json() {
    let app = TestApp::spawn_with(Opts {
        args: vec!["--log-format".into(), "json".into()],
        ..Default::default()
    })
    .await;
    let t = app.tenant("Json");
    assert_eq!(t.get("/Users").await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = app.log();
    let line = access_lines(&log)
        .into_iter()
        .find(|l| l.contains("/scim/v2/{tenant}/Users"))
        .unwrap_or_else(|| panic!("{log}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["level"], "INFO", "{v}");
    assert_eq!(v["target"], "cairn::access", "{v}");
    let f = &v["fields"];
    assert_eq!(f["method"], "GET", "{v}");
    assert_eq!(f["route"], "/scim/v2/{tenant}/Users", "{v}");
    assert_eq!(f["status"], 200, "{v}");
    assert_eq!(f["tenant"], t.id.as_str(), "{v}");
    assert_eq!(f["client"], "127.0.0.1", "{v}");
    assert!(f["latency_ms"].is_number(), "{v}");
}

/// The address `--metrics-listen` bound, from the server's log.
fn metrics_addr(app: &TestApp) -> String {
    let log = app.log();
    let line = log
        .lines()
        .find(|l| l.contains("metrics listening"))
        .unwrap_or_else(|| panic!("no metrics listener: {log}"));
    let at = line.find("addr=").unwrap() + 5;
    line[at..].split_whitespace().next().unwrap().to_owned()
}

/// `--metrics-listen` moves `/metrics` to a listener of its own (the main one answers
/// 404 there) and `--metrics-token-file` makes it ask for a bearer token (401 without
/// or with a wrong one); the token never reaches the log.
#[tokio::test]
async fn metrics_on_their_own_listener_and_behind_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics-token");
    std::fs::write(&token_file, "scrape-token-93f1\n").unwrap();
    let app = TestApp::spawn_with(Opts {
        args: vec![
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
            "--metrics-token-file".into(),
            token_file.display().to_string(),
        ],
        ..Default::default()
    })
    .await;
    let m = format!("http://{}/metrics", metrics_addr(&app));
    assert_eq!(app.get("/metrics").send().await.unwrap().status(), 404);
    let r = app.client.get(&m).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
    let r = app
        .client
        .get(&m)
        .bearer_auth("scrape-token-93f")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .get(&m)
        .bearer_auth("scrape-token-93f1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    for name in [
        "cairn_build_info{",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_start_time_seconds ",
        "cairn_http_requests_total{",
        "cairn_auth_failures_total{",
    ] {
        assert!(text.contains(name), "{name} missing: {text}");
    }
    let backend = if backend_is_postgres() {
        "cairn_postgres_pool_in_use "
    } else {
        "cairn_sqlite_writer_queue "
    };
    assert!(text.contains(backend), "{backend} missing: {text}");
    assert_eq!(
        sample(
            &text,
            "cairn_auth_failures_total",
            &[("surface", "metrics")]
        ),
        2.0,
        "{text}"
    );
    // Only `/metrics` there; the main listener still serves the rest.
    let other = app
        .client
        .get(m.replace("/metrics", "/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    assert_eq!(app.get("/readyz").send().await.unwrap().status(), 200);
    assert!(!app.log().contains("scrape-token-93f1"));

    // A token without a listener of its own: on the main listener, behind the token.
    let app = TestApp::spawn_with(Opts {
        args: vec![
            "--metrics-token-file".into(),
            token_file.display().to_string(),
        ],
        ..Default::default()
    })
    .await;
    assert_eq!(app.get("/metrics").send().await.unwrap().status(), 401);
    let r = app
        .get("/metrics")
        .bearer_auth("scrape-token-93f1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // An empty token file stops `serve` with a message instead of a metrics endpoint
    // open to all.
    std::fs::write(&token_file, " \n").unwrap();
    let out: Cli = std::process::Command::new(cairn_bin())
        .args(app.deployment.global_args())
        .args(["serve", "--listen", "127.0.0.1:0", "--metrics-token-file"])
        .arg(&token_file)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
        .into();
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("empty"), "{out:?}");
}

/// The vault's traffic, quota refusals and per-tenant use, SCIM rate-limit refusals and
/// auth failures by surface, and latency buckets up to a minute.
#[tokio::test]
async fn vault_refusal_and_auth_metrics() {
    // A GB of Account Size is 1,000 bytes here: the tenant's 50 GB are 50,000 bytes.
    let app = TestApp::spawn_with(Opts {
        env: vec![("CAIRN_VAULT_QUOTA_UNIT_BYTES".into(), "1000".into())],
        args: vec!["--scim-rate-limit".into(), "1".into()],
        ..Default::default()
    })
    .await;
    let t = app.tenant("Counted");
    let a = crate::vault::account(&app, &t, "counted@example.com").await;
    let repo = format!("{}/backup/{}/{}", app.base, t.id, a.id);
    let post = |url: String, body: Vec<u8>| {
        app.client
            .post(url)
            .basic_auth(&a.user, Some(&a.secret))
            .body(body)
            .send()
    };
    assert_eq!(
        post(format!("{repo}/?create=true"), Vec::new())
            .await
            .unwrap()
            .status(),
        200
    );
    let small = vec![7u8; 30_000];
    let name = crate::vault::sha256_hex(&small);
    let r = post(format!("{repo}/data/{name}"), small.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // 30,000 more bytes would pass the 50,000-byte quota.
    let more = vec![8u8; 30_000];
    let r = post(
        format!("{repo}/data/{}", crate::vault::sha256_hex(&more)),
        more,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 507);
    let got = app
        .client
        .get(format!("{repo}/data/{name}"))
        .basic_auth(&a.user, Some(&a.secret))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().len(), small.len());
    let wrong = app
        .client
        .get(format!("{repo}/config"))
        .basic_auth(&a.user, Some("not-the-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // One request per second with bursts of two: some of ten at once are refused.
    let mut refused = 0;
    for _ in 0..10 {
        if t.get("/Users").await.status == 429 {
            refused += 1;
        }
    }
    assert!(refused > 0);

    let m = metrics(&app).await;
    assert_eq!(
        sample(&m, "cairn_vault_objects_written_total", &[]),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "cairn_vault_received_bytes_total", &[]),
        30_000.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "cairn_vault_sent_bytes_total", &[]),
        30_000.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "cairn_vault_quota_refusals_total", &[]),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "cairn_vault_used_bytes", &[("tenant", &t.id)]),
        30_000.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "cairn_auth_failures_total", &[("surface", "vault")]),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "cairn_rate_limited_total", &[("surface", "scim")]),
        f64::from(refused),
        "{m}"
    );
    assert!(
        m.lines().any(
            |l| l.starts_with("cairn_http_request_duration_seconds_bucket{")
                && l.contains("le=\"60.0\"")
        ),
        "{m}"
    );
}

/// Readiness looks at the vault's store too: with the S3 endpoint unreachable `/readyz`
/// (and `/healthz`) say 503 within the probe's time limit while `/livez` says 200; with a
/// reachable bucket all are 200.
#[tokio::test]
async fn readiness_follows_the_s3_store() {
    // An endpoint that takes connections into its backlog and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut deployment = Deployment::new();
    deployment.env.extend(
        [
            ("CAIRN_VAULT_URL", "s3://cairn-it/vault".to_owned()),
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{port}")),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
            ("AWS_ACCESS_KEY_ID", "cairn-test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "cairn-test-secret".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let app = TestApp::spawn_on(std::sync::Arc::new(deployment), Opts::default()).await;
    assert_eq!(app.get("/livez").send().await.unwrap().status(), 200);
    let started = std::time::Instant::now();
    let r = app.get("/readyz").send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["checks"]["vault"], "unavailable", "{body}");
    assert_eq!(body["checks"]["database"], "ok", "{body}");
    assert_eq!(app.get("/healthz").send().await.unwrap().status(), 503);
    assert!(app.log().contains("vault store is unreachable"));
    // A flood of probes (the route needs no credential) shares checks: 30 at once cost
    // a few checks (one per check in flight when they arrive), and as many warnings,
    // not 30. The bound leaves room for a loaded machine spreading the arrivals.
    let warnings = || app.log().matches("vault store is unreachable").count();
    let before = warnings();
    let probes: Vec<_> = (0..30).map(|_| app.get("/readyz").send()).collect();
    for r in futures_util::future::join_all(probes).await {
        assert_eq!(r.unwrap().status(), 503);
    }
    let checks = warnings() - before;
    assert!((1..=10).contains(&checks), "{checks} checks for 30 probes");
    drop(silent);

    let app = TestApp::spawn_on(
        std::sync::Arc::new(Deployment::new().with_s3_vault()),
        Opts::default(),
    )
    .await;
    let r = app.get("/readyz").send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", app.log());
}

/// `cairn healthcheck` exits 0 on a ready server (by `--url` or by `CAIRN_LISTEN`), 1 on
/// any other answer or none.
#[tokio::test]
async fn healthcheck_exit_codes() {
    let app = TestApp::spawn().await;
    let hc = healthcheck(&["--url", &format!("{}/readyz", app.base)]);
    assert_eq!(hc.status.code(), Some(0), "{hc:?}");
    assert!(hc.stdout.contains("200"), "{hc:?}");
    let listen = app.base.strip_prefix("http://").unwrap();
    let hc = healthcheck_env(&[], &[("CAIRN_LISTEN", listen)]);
    assert_eq!(hc.status.code(), Some(0), "{hc:?}");
    let hc = healthcheck(&["--url", &format!("{}/no-such-probe", app.base)]);
    assert_eq!(hc.status.code(), Some(1), "{hc:?}");
    assert!(hc.stderr.contains("404"), "{hc:?}");
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let hc = healthcheck(&["--url", &format!("http://127.0.0.1:{closed_port}/readyz")]);
    assert_eq!(hc.status.code(), Some(1), "{hc:?}");
}

/// Issue 18 item 8: a release build ignores the test-only settings and says so once.
/// Needs a release binary (`cargo build --release -p cairn`) named by `CAIRN_RELEASE_BIN`;
/// the debug binary the other tests run honours them, and the release branch is also
/// covered in this build by the unit test `a_release_build_resets_the_knobs_and_says_which`.
#[tokio::test]
async fn a_release_build_ignores_the_test_knobs() {
    let Ok(bin) = std::env::var("CAIRN_RELEASE_BIN") else {
        println!("SKIPPED a_release_build_ignores_the_test_knobs: set CAIRN_RELEASE_BIN");
        return;
    };
    let d = Deployment::sqlite();
    let run = |bin: &str| -> Cli {
        std::process::Command::new(bin)
            .args(d.global_args())
            .args(["tenant", "create", "--name", "Knobs", "--json"])
            .env("CAIRN_CLOCK_OFFSET_SECS", (400 * 86_400).to_string())
            .env("CAIRN_VAULT_QUOTA_UNIT_BYTES", "1000")
            .env("CAIRN_LOG", "warn")
            .output()
            .unwrap()
            .into()
    };
    // The audit log's time of the creation: a year ahead only where the offset applies.
    let created_year = |out: &Cli| -> i64 {
        let id = out.json()["id"].as_str().unwrap().to_owned();
        let audit: Cli = std::process::Command::new(cairn_bin())
            .args(d.global_args())
            .args(["audit", "--tenant", &id, "--json"])
            .env("CAIRN_LOG", "warn")
            .output()
            .unwrap()
            .into();
        let audit = audit.ok().json();
        let at = audit[0]["at"].as_str().unwrap_or_else(|| panic!("{audit}"));
        at[..4].parse().unwrap()
    };
    let release = run(&bin).ok();
    assert!(
        release.stderr.contains("CAIRN_CLOCK_OFFSET_SECS")
            && release.stderr.contains("CAIRN_VAULT_QUOTA_UNIT_BYTES"),
        "{release:?}"
    );
    assert_eq!(release.stderr.matches("warning:").count(), 1, "{release:?}");
    let debug = run(cairn_bin()).ok();
    assert!(!debug.stderr.contains("ignored"), "{debug:?}");
    assert!(
        created_year(&debug) > created_year(&release),
        "the offset moved the debug build's clock only"
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
