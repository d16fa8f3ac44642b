//! Bad input never yields a 5xx, a panic or a partial write: every malformed request gets
//! a 4xx SCIM error body and the stored data (users and audit log) is unchanged afterwards.

use crate::support::*;
use reqwest::{header, Method};
use serde_json::{json, Value};

/// One bad request and what it must get.
struct Case {
    what: String,
    method: Method,
    /// Under the Tenant URL.
    path: String,
    headers: Vec<(&'static str, String)>,
    /// Sent verbatim (no body when `None`).
    body: Option<String>,
    status: u16,
    scim_type: Option<&'static str>,
}

fn case(what: impl Into<String>, method: Method, path: impl Into<String>) -> Case {
    Case {
        what: what.into(),
        method,
        path: path.into(),
        headers: Vec::new(),
        body: None,
        status: 400,
        scim_type: None,
    }
}

impl Case {
    fn body(mut self, b: impl Into<String>) -> Self {
        self.body = Some(b.into());
        self
    }
    fn json(self, v: Value) -> Self {
        self.body(v.to_string())
    }
    fn header(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }
    fn expect(mut self, status: u16, scim_type: Option<&'static str>) -> Self {
        self.status = status;
        self.scim_type = scim_type;
        self
    }
}

/// Everything a client can observe of the tenant's data, plus the audit log.
async fn snapshot(app: &TestApp, t: &Tenant, ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let r = t.get("/Users?count=1000&sortBy=userName").await;
    assert_eq!(r.status, 200, "{}", r.text);
    out.push(r.text);
    let r = t.get("/Groups?count=1000").await;
    assert_eq!(r.status, 200, "{}", r.text);
    out.push(r.text);
    // User ids, or paths of other resources.
    for id in ids {
        let path = if id.starts_with('/') {
            id.clone()
        } else {
            format!("/Users/{id}")
        };
        let r = t.get(&path).await;
        out.push(format!("{} {:?} {}", r.status, r.header("etag"), r.text));
    }
    out.push(app.cli(&["audit", "--tenant", &t.id, "--json"]).ok().stdout);
    out
}

/// Sends every case; collects every deviation (wrong status, not a SCIM error body, a
/// change to the stored data) and fails once with all of them.
async fn run_cases(app: &TestApp, t: &Tenant, ids: &[String], cases: Vec<Case>) {
    let mut before = snapshot(app, t, ids).await;
    let mut failures = Vec::new();
    for c in cases {
        let mut rb = t
            .req(c.method.clone(), &c.path)
            .header(header::USER_AGENT, "bad-input-test");
        let mut has_ct = false;
        for (k, v) in &c.headers {
            has_ct |= k.eq_ignore_ascii_case("content-type");
            rb = rb.header(*k, v);
        }
        if let Some(b) = &c.body {
            if !has_ct {
                rb = rb.header(header::CONTENT_TYPE, SCIM_JSON);
            }
            rb = rb.body(b.clone());
        }
        let r = Reply::of(rb.send().await.unwrap()).await;
        let label = format!("{} {} {}", c.method, c.path, c.what);
        let after = snapshot(app, t, ids).await;
        if after != before {
            failures.push(format!(
                "{label}: stored data changed (status {}):\nbefore {before:?}\nafter  {after:?}",
                r.status
            ));
            before = after;
        }
        if r.status >= 500 {
            failures.push(format!("{label}: 5xx {}: {}", r.status, r.text));
            continue;
        }
        if r.status != c.status {
            failures.push(format!(
                "{label}: status {} (want {}): {}",
                r.status, c.status, r.text
            ));
            continue;
        }
        let ct = r.header("content-type").unwrap_or("");
        if !ct.starts_with(SCIM_JSON) {
            failures.push(format!("{label}: content-type {ct:?}"));
        }
        match serde_json::from_str::<Value>(&r.text) {
            Err(e) => failures.push(format!("{label}: body not JSON ({e}): {}", r.text)),
            Ok(v) => {
                if v["schemas"] != json!([ERROR_URN])
                    || v["status"].as_str() != Some(c.status.to_string().as_str())
                    || v["detail"].as_str().is_none_or(str::is_empty)
                {
                    failures.push(format!("{label}: not a SCIM error body: {v}"));
                }
                if let Some(st) = c.scim_type {
                    if v["scimType"] != st {
                        failures.push(format!("{label}: scimType {} (want {st})", v["scimType"]));
                    }
                }
            }
        }
    }
    assert!(
        !app.log().contains("panicked"),
        "the server panicked:\n{}",
        app.log()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

async fn setup(app: &TestApp) -> (Tenant, Vec<String>) {
    let t = app.tenant("Garbage In");
    let mut ids = Vec::new();
    for (n, name) in ["ann@bad.test", "ben@bad.test"].iter().enumerate() {
        let u = t
            .create_user(&json!({
                "schemas": [USER_URN, ENTERPRISE_URN],
                "userName": name,
                "displayName": format!("User {n}"),
                "name": {"givenName": "Given", "familyName": "Family"},
                "emails": [{"value": name, "type": "work", "primary": true}],
                ENTERPRISE_URN: {"employeeNumber": format!("{n}")},
                "active": true
            }))
            .await;
        ids.push(u["id"].as_str().unwrap().to_owned());
    }
    (t, ids)
}

#[tokio::test]
async fn malformed_and_mistyped_bodies_are_400_and_change_nothing() {
    let app = TestApp::spawn().await;
    let (t, ids) = setup(&app).await;
    let user_path = format!("/Users/{}", ids[0]);
    let mut cases = Vec::new();
    for (what, body) in [
        ("truncated JSON", r#"{"schemas":["#.to_owned()),
        ("not JSON", "userName=x".to_owned()),
        ("empty body", String::new()),
        (
            "trailing garbage",
            r#"{"userName":"x@bad.test"} xyz"#.to_owned(),
        ),
        ("array", "[]".to_owned()),
        ("string", r#""x@bad.test""#.to_owned()),
        ("null", "null".to_owned()),
        ("number", "42".to_owned()),
        (
            "invalid UTF-8 escape",
            r#"{"userName":"\ud800"}"#.to_owned(),
        ),
        (
            "deep nesting",
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)),
        ),
    ] {
        cases.push(case(what, Method::POST, "/Users").body(body.clone()));
        cases.push(case(what, Method::PUT, user_path.clone()).body(body.clone()));
        cases.push(case(what, Method::PATCH, user_path.clone()).body(body.clone()));
        cases.push(case(what, Method::POST, "/.search").body(body));
    }
    for (what, v) in [
        ("userName missing", json!({"schemas":[USER_URN]})),
        (
            "userName empty",
            json!({"schemas":[USER_URN],"userName":""}),
        ),
        (
            "userName blank",
            json!({"schemas":[USER_URN],"userName":"   "}),
        ),
        (
            "userName number",
            json!({"schemas":[USER_URN],"userName":123}),
        ),
        (
            "userName null",
            json!({"schemas":[USER_URN],"userName":null}),
        ),
        (
            "userName array",
            json!({"schemas":[USER_URN],"userName":["a@bad.test"]}),
        ),
        (
            "userName object",
            json!({"schemas":[USER_URN],"userName":{"v":"a"}}),
        ),
        (
            "userName too long",
            json!({"schemas":[USER_URN],"userName":"x".repeat(5000)}),
        ),
        (
            "active not a boolean",
            json!({"schemas":[USER_URN],"userName":"n1@bad.test","active":"maybe"}),
        ),
        (
            "active number",
            json!({"schemas":[USER_URN],"userName":"n2@bad.test","active":7}),
        ),
        (
            "name a string",
            json!({"schemas":[USER_URN],"userName":"n3@bad.test","name":"Ann"}),
        ),
        (
            "emails a number",
            json!({"schemas":[USER_URN],"userName":"n4@bad.test","emails":5}),
        ),
        (
            "email value a number",
            json!({"schemas":[USER_URN],"userName":"n5@bad.test","emails":[{"value":5}]}),
        ),
        (
            "displayName an object",
            json!({"schemas":[USER_URN],"userName":"n6@bad.test","displayName":{"a":1}}),
        ),
    ] {
        cases.push(case(what, Method::POST, "/Users").json(v.clone()));
        cases.push(case(what, Method::PUT, user_path.clone()).json(v));
    }
    run_cases(&app, &t, &ids, cases).await;
}

#[tokio::test]
async fn invalid_filters_paging_sorting_and_searches_are_400() {
    let app = TestApp::spawn().await;
    let (t, ids) = setup(&app).await;
    let q = |k: &str, v: &str| format!("/Users?{}", form_encode(&[(k, v)]));
    let mut cases = Vec::new();
    for f in [
        "userName eq",
        "userName eq \"x",
        "(userName eq \"x\"",
        "userName eq \"x\")",
        "userName zz \"x\"",
        "userName eq \"x\" and",
        "and userName eq \"x\"",
        "emails[type eq \"work\"",
        "emails[type eq \"work\"]]",
        "userName eq x y",
        "userName pr pr",
        "not userName eq \"x\"",
        "\"x\" eq userName",
        "userName eq \"x\" or or userName eq \"y\"",
        "noSuchAttribute eq \"x\"",
        "name.noSuchSub eq \"x\"",
        "emails[noSuch eq \"x\"].value eq \"y\"",
        "meta.created gt \"not a date\"",
        "userName gt 5 and",
        "\u{0}",
        &"(".repeat(2000),
    ] {
        cases.push(
            case(format!("filter {f:?}"), Method::GET, q("filter", f))
                .expect(400, Some("invalidFilter")),
        );
        cases.push(
            case(format!("search filter {f:?}"), Method::POST, "/Users/.search")
                .json(json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"filter":f}))
                .expect(400, Some("invalidFilter")),
        );
    }
    for (k, v) in [
        ("count", "abc"),
        ("count", "1.5"),
        ("count", "1e3"),
        ("count", "0x10"),
        ("count", "--1"),
        ("startIndex", "abc"),
        ("startIndex", "1,2"),
        ("startIndex", "∞"),
        ("sortBy", "noSuchAttribute"),
        ("sortBy", "emails"),
        ("sortBy", "name"),
        ("sortBy", "password"),
        ("sortBy", "userName)"),
    ] {
        cases
            .push(case(format!("{k}={v}"), Method::GET, q(k, v)).expect(400, Some("invalidValue")));
    }
    cases.push(
        case(
            "sortOrder bogus",
            Method::GET,
            "/Users?sortBy=userName&sortOrder=sideways",
        )
        .expect(400, Some("invalidValue")),
    );
    cases.push(
        case("count twice", Method::GET, "/Users?count=1&count=2")
            .expect(400, Some("invalidValue")),
    );
    for (what, v) in [
        ("count a string", json!({"count":"abc"})),
        ("count an object", json!({"count":{"n":1}})),
        ("attributes numbers", json!({"attributes":[1,2]})),
        ("filter a boolean", json!({"filter":true})),
    ] {
        cases.push(
            case(what, Method::POST, "/Users/.search")
                .json(v)
                .expect(400, Some("invalidValue")),
        );
    }
    run_cases(&app, &t, &ids, cases).await;
}

/// `application/x-www-form-urlencoded` for one query.
fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&pct(k));
        out.push('=');
        out.push_str(&pct(v));
    }
    out
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn absurd_paging_is_clamped_with_correct_metadata() {
    let app = TestApp::spawn().await;
    let (t, _ids) = setup(&app).await;
    for (query, start, items) in [
        ("count=-1", 1u64, 0usize),
        ("count=-99999999999999999999999", 1, 0),
        ("count=0", 1, 0),
        ("count=99999999999999999999999999", 1, 2),
        ("count=%2B1", 1, 1),
        ("startIndex=0", 1, 2),
        ("startIndex=-5", 1, 2),
        ("startIndex=-99999999999999999999999", 1, 2),
        ("startIndex=2", 2, 1),
        ("startIndex=3", 3, 0),
        ("startIndex=9223372036854775807", 9223372036854775807, 0),
        (
            "startIndex=99999999999999999999999&count=99999999999999999999",
            9223372036854775807,
            0,
        ),
        ("startIndex=&count=", 1, 2),
    ] {
        let r = t.get(&format!("/Users?{query}")).await;
        assert_eq!(r.status, 200, "{query}: {}", r.text);
        let v = r.json();
        assert_eq!(v["totalResults"], 2, "{query}: {v}");
        assert_eq!(v["startIndex"], start, "{query}: {v}");
        assert_eq!(v["itemsPerPage"], items, "{query}: {v}");
        assert_eq!(
            v["Resources"].as_array().map(Vec::len),
            Some(items),
            "{query}: {v}"
        );
    }
}

#[tokio::test]
async fn invalid_patches_are_rejected_atomically() {
    let app = TestApp::spawn().await;
    let (t, ids) = setup(&app).await;
    let path = format!("/Users/{}", ids[0]);
    let patch = |ops: Value| json!({"schemas":[PATCH_URN],"Operations":ops});
    let mut cases = Vec::new();
    for (what, p) in [
        ("unknown attribute", "noSuchAttribute"),
        ("unknown sub-attribute", "name.noSuchSub"),
        ("unclosed filter", "emails[type eq \"work\""),
        ("empty filter", "emails[].value"),
        ("double dot", "name..givenName"),
        ("trailing dot", "name."),
        (
            "unknown sub after filter",
            "emails[type eq \"work\"].noSuch",
        ),
        (
            "core URN unknown attr",
            "urn:ietf:params:scim:schemas:core:2.0:User:noSuch",
        ),
        (
            "enterprise unknown attr",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:noSuch",
        ),
        ("garbage", "!!!"),
    ] {
        cases.push(
            case(format!("path {what}"), Method::PATCH, path.clone())
                .json(patch(json!([{"op":"replace","path":p,"value":"v"}])))
                .expect(400, Some("invalidPath")),
        );
    }
    cases.push(
        case(
            "path filter on an unknown attribute",
            Method::PATCH,
            path.clone(),
        )
        .json(patch(
            json!([{"op":"replace","path":"emails[noSuch eq \"x\"].value","value":"v"}]),
        ))
        .expect(400, Some("invalidFilter")),
    );
    // An empty path is a path-less operation, whose value must be an object.
    cases.push(
        case("empty path", Method::PATCH, path.clone())
            .json(patch(json!([{"op":"replace","path":"","value":"v"}])))
            .expect(400, Some("invalidValue")),
    );
    // A valid operation before an invalid one: nothing is applied (all or nothing).
    cases.push(
        case("valid then invalid path", Method::PATCH, path.clone())
            .json(patch(json!([
                {"op":"replace","path":"displayName","value":"Changed"},
                {"op":"replace","path":"noSuchAttribute","value":"v"}
            ])))
            .expect(400, Some("invalidPath")),
    );
    cases.push(
        case("valid then wrong type", Method::PATCH, path.clone())
            .json(patch(json!([
                {"op":"replace","path":"displayName","value":"Changed"},
                {"op":"replace","path":"active","value":"perhaps"}
            ])))
            .expect(400, Some("invalidValue")),
    );
    cases.push(
        case("valid then remove userName", Method::PATCH, path.clone())
            .json(patch(json!([
                {"op":"replace","path":"displayName","value":"Changed"},
                {"op":"remove","path":"userName"}
            ])))
            .expect(400, None),
    );
    for (what, ops, st) in [
        (
            "unknown op",
            json!([{"op":"frobnicate","path":"displayName","value":"x"}]),
            "invalidSyntax",
        ),
        (
            "op missing",
            json!([{"path":"displayName","value":"x"}]),
            "invalidSyntax",
        ),
        (
            "op a number",
            json!([{"op":1,"path":"displayName","value":"x"}]),
            "invalidSyntax",
        ),
        ("Operations empty", json!([]), "invalidSyntax"),
        (
            "Operations an object",
            json!({"op":"replace"}),
            "invalidSyntax",
        ),
        ("operation a string", json!(["replace"]), "invalidSyntax"),
        (
            "replace without value",
            json!([{"op":"replace","path":"displayName"}]),
            "invalidSyntax",
        ),
        ("remove without path", json!([{"op":"remove"}]), "noTarget"),
        (
            "path a number",
            json!([{"op":"replace","path":5,"value":"x"}]),
            "invalidPath",
        ),
        (
            "path-less with a string",
            json!([{"op":"replace","value":"x"}]),
            "invalidValue",
        ),
        (
            "read-only id",
            json!([{"op":"replace","path":"id","value":"x"}]),
            "mutability",
        ),
        (
            "read-only meta",
            json!([{"op":"replace","path":"meta.created","value":"2020-01-01T00:00:00Z"}]),
            "mutability",
        ),
    ] {
        cases.push(
            case(what, Method::PATCH, path.clone())
                .json(patch(ops))
                .expect(400, Some(st)),
        );
    }
    cases.push(
        case("wrong schemas", Method::PATCH, path.clone())
            .json(json!({"schemas":[USER_URN],"Operations":[{"op":"replace","path":"displayName","value":"x"}]}))
            .expect(400, None),
    );
    let too_many: Vec<Value> = (0..1001)
        .map(|i| json!({"op":"replace","path":"displayName","value":format!("v{i}")}))
        .collect();
    cases.push(
        case("1001 operations", Method::PATCH, path.clone())
            .json(patch(json!(too_many)))
            .expect(400, None),
    );
    run_cases(&app, &t, &ids, cases).await;
}

#[tokio::test]
async fn oversized_bodies_content_types_and_if_match_garbage() {
    let app = TestApp::spawn().await;
    let (t, ids) = setup(&app).await;
    let path = format!("/Users/{}", ids[0]);
    let big = "x".repeat((1 << 20) + 10);
    let big_user = json!({"schemas":[USER_URN],"userName":"big@bad.test","displayName":big});
    let mut cases = vec![
        case("body over 1 MiB", Method::POST, "/Users")
            .json(big_user.clone())
            .expect(413, None),
        case("body over 1 MiB", Method::PUT, path.clone())
            .json(big_user.clone())
            .expect(413, None),
        case("body over 1 MiB", Method::PATCH, path.clone())
            .json(json!({"schemas":[PATCH_URN],"Operations":[{"op":"replace","path":"displayName","value":big}]}))
            .expect(413, None),
        case("body over 1 MiB", Method::POST, "/.search")
            .json(json!({"filter":big}))
            .expect(413, None),
    ];
    let good = json!({"schemas":[USER_URN],"userName":"ann@bad.test","displayName":"Other"});
    for ct in [
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
    ] {
        cases.push(
            case(format!("content type {ct}"), Method::POST, "/Users")
                .json(json!({"schemas":[USER_URN],"userName":"ct@bad.test"}))
                .header("content-type", ct)
                .expect(415, None),
        );
        cases.push(
            case(format!("content type {ct}"), Method::PUT, path.clone())
                .json(good.clone())
                .header("content-type", ct)
                .expect(415, None),
        );
    }
    for im in [
        "garbage",
        "W/",
        "\"unterminated",
        "W/\"1\" junk",
        "\"a\"b\"",
    ] {
        for m in [Method::PUT, Method::PATCH] {
            let body = if m == Method::PUT {
                good.clone()
            } else {
                json!({"schemas":[PATCH_URN],"Operations":[{"op":"replace","path":"displayName","value":"x"}]})
            };
            cases.push(
                case(format!("If-Match {im:?}"), m, path.clone())
                    .json(body)
                    .header("if-match", im)
                    .expect(400, Some("invalidValue")),
            );
        }
        cases.push(
            case(format!("If-Match {im:?}"), Method::DELETE, path.clone())
                .header("if-match", im)
                .expect(400, Some("invalidValue")),
        );
    }
    // Well-formed ETags that no version has: 412.
    for im in [
        "\"abc\"",
        "W/\"999\"",
        "W/\"-1\"",
        "W/\"99999999999999999999999\"",
    ] {
        cases.push(
            case(format!("If-Match {im:?}"), Method::PUT, path.clone())
                .json(good.clone())
                .header("if-match", im)
                .expect(412, None),
        );
        cases.push(
            case(format!("If-Match {im:?}"), Method::DELETE, path.clone())
                .header("if-match", im)
                .expect(412, None),
        );
    }
    // Ids that do not exist or are not ids.
    for id in [
        "nope",
        "00000000-0000-4000-8000-000000000000",
        &ids[0].to_uppercase(),
        "%2e%2e",
    ] {
        cases.push(case(format!("id {id}"), Method::GET, format!("/Users/{id}")).expect(404, None));
        cases.push(
            case(format!("id {id}"), Method::PUT, format!("/Users/{id}"))
                .json(good.clone())
                .expect(404, None),
        );
        cases.push(
            case(format!("id {id}"), Method::DELETE, format!("/Users/{id}")).expect(404, None),
        );
    }
    // Writes to discovery endpoints.
    for p in ["/ServiceProviderConfig", "/Schemas", "/ResourceTypes"] {
        cases.push(
            case("write", Method::POST, p)
                .json(json!({}))
                .expect(405, None),
        );
    }
    // A uniqueness conflict by PUT: renaming ann to ben.
    cases.push(
        case("PUT to another user's userName", Method::PUT, path.clone())
            .json(json!({"schemas":[USER_URN],"userName":"BEN@bad.test"}))
            .expect(409, Some("uniqueness")),
    );
    run_cases(&app, &t, &ids, cases).await;

    // The oversized body is refused even when sent chunked (no Content-Length).
    let (status, text) = post_chunked(&t, 20, 64 * 1024).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains(ERROR_URN), "{text}");
    assert_eq!(t.get("/Users").await.json()["totalResults"], 2);
}

/// POSTs `/Users` with `Transfer-Encoding: chunked`: `n` chunks of `size` spaces, then a
/// small JSON object. Returns the status and the raw rest of the reply.
async fn post_chunked(t: &Tenant, n: usize, size: usize) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = t.url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = tokio::net::TcpStream::connect(authority).await.unwrap();
    let head = format!(
        "POST {path}/Users HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {}\r\nContent-Type: {SCIM_JSON}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        t.token
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{size:x}\r\n{}\r\n", " ".repeat(size));
    for _ in 0..n {
        // The server may answer and close early; later writes may fail.
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let tail = r#"{"userName":"chunk@bad.test"}"#;
    let _ = s
        .write_all(format!("{:x}\r\n{tail}\r\n0\r\n\r\n", tail.len()).as_bytes())
        .await;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    (status, text)
}

const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

#[tokio::test]
async fn bad_group_requests_are_4xx_and_change_nothing() {
    let app = TestApp::spawn().await;
    let (t, mut ids) = setup(&app).await;
    let r = t
        .post(
            "/Groups",
            &json!({"schemas":[GROUP_URN],"displayName":"Engineering","members":[{"value":ids[0]}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let gid = r.json()["id"].as_str().unwrap().to_owned();
    let gpath = format!("/Groups/{gid}");
    // The snapshot reads the group too.
    let member = ids[0].clone();
    ids.push(gpath.clone());
    let mut cases = Vec::new();
    for (what, body) in [
        ("truncated JSON", r#"{"displayName":"#.to_owned()),
        ("array", "[]".to_owned()),
        ("empty", String::new()),
    ] {
        cases.push(case(what, Method::POST, "/Groups").body(body.clone()));
        cases.push(case(what, Method::PUT, gpath.clone()).body(body.clone()));
        cases.push(case(what, Method::PATCH, gpath.clone()).body(body));
    }
    for (what, v) in [
        ("displayName missing", json!({"schemas":[GROUP_URN]})),
        (
            "displayName a number",
            json!({"schemas":[GROUP_URN],"displayName":5}),
        ),
        (
            "displayName empty",
            json!({"schemas":[GROUP_URN],"displayName":""}),
        ),
        (
            "member value a number",
            json!({"schemas":[GROUP_URN],"displayName":"X","members":[{"value":5}]}),
        ),
        (
            "member without value",
            json!({"schemas":[GROUP_URN],"displayName":"X","members":[{}]}),
        ),
        (
            "unknown member",
            json!({"schemas":[GROUP_URN],"displayName":"X","members":[{"value":"00000000-0000-4000-8000-000000000000"}]}),
        ),
        (
            "member not an id",
            json!({"schemas":[GROUP_URN],"displayName":"X","members":[{"value":"garbage"}]}),
        ),
        (
            "a valid and an unknown member",
            json!({"schemas":[GROUP_URN],"displayName":"X","members":[{"value":member},{"value":"nope"}]}),
        ),
    ] {
        cases.push(case(what, Method::POST, "/Groups").json(v.clone()));
        cases.push(case(what, Method::PUT, gpath.clone()).json(v));
    }
    cases.push(
        case("duplicate displayName", Method::POST, "/Groups")
            .json(json!({"schemas":[GROUP_URN],"displayName":"ENGINEERING"}))
            .expect(409, Some("uniqueness")),
    );
    let patch = |ops: Value| json!({"schemas":[PATCH_URN],"Operations":ops});
    for (what, ops, st) in [
        (
            "unknown path",
            json!([{"op":"replace","path":"nope","value":1}]),
            Some("invalidPath"),
        ),
        (
            "unclosed member filter",
            json!([{"op":"remove","path":"members[value eq"}]),
            None,
        ),
        (
            "unknown op",
            json!([{"op":"x","path":"displayName","value":"y"}]),
            Some("invalidSyntax"),
        ),
        (
            "displayName a number",
            json!([{"op":"replace","path":"displayName","value":5}]),
            Some("invalidValue"),
        ),
        (
            "add an unknown member",
            json!([{"op":"add","path":"members","value":[{"value":"00000000-0000-4000-8000-000000000000"}]}]),
            Some("invalidValue"),
        ),
        (
            "remove all members, then a bad path",
            json!([{"op":"remove","path":"members"},{"op":"replace","path":"nope","value":1}]),
            Some("invalidPath"),
        ),
        (
            "rename, then a bad op",
            json!([{"op":"replace","path":"displayName","value":"Renamed"},{"op":"frob"}]),
            Some("invalidSyntax"),
        ),
    ] {
        cases.push(
            case(what, Method::PATCH, gpath.clone())
                .json(patch(ops))
                .expect(400, st),
        );
    }
    for (k, v) in [("count", "abc"), ("startIndex", "x"), ("sortBy", "nope")] {
        cases.push(
            case(format!("{k}={v}"), Method::GET, format!("/Groups?{k}={v}"))
                .expect(400, Some("invalidValue")),
        );
    }
    cases.push(
        case("bad filter", Method::GET, "/Groups?filter=displayName%20eq")
            .expect(400, Some("invalidFilter")),
    );
    cases.push(
        case("body over 1 MiB", Method::POST, "/Groups")
            .json(json!({"schemas":[GROUP_URN],"displayName":"x".repeat(1 << 20)}))
            .expect(413, None),
    );
    cases.push(
        case(
            "unknown id",
            Method::GET,
            "/Groups/00000000-0000-4000-8000-000000000000",
        )
        .expect(404, None),
    );
    cases.push(case("unknown id", Method::DELETE, "/Groups/nope").expect(404, None));
    run_cases(&app, &t, &ids, cases).await;
}

/// NUL characters (valid in JSON strings, rejected by PostgreSQL text columns) and other
/// control characters in attribute values and filters: a 4xx or an accepted value, never
/// a 5xx, on either backend.
#[tokio::test]
async fn nul_and_control_characters_never_cause_a_5xx() {
    let app = TestApp::spawn().await;
    let (t, ids) = setup(&app).await;
    let path = format!("/Users/{}", ids[0]);
    let mut seen = Vec::new();
    let mut failures = Vec::new();
    for (what, r) in [
        ("POST userName", t.post("/Users", &json!({"schemas":[USER_URN],"userName":"nul\u{0}@bad.test"})).await),
        ("POST displayName", t.post("/Users", &json!({"schemas":[USER_URN],"userName":"nul2@bad.test","displayName":"a\u{0}b"})).await),
        ("POST email", t.post("/Users", &json!({"schemas":[USER_URN],"userName":"nul3@bad.test","emails":[{"value":"x\u{0}@bad.test","type":"work"}]})).await),
        ("POST externalId", t.post("/Users", &json!({"schemas":[USER_URN],"userName":"nul4@bad.test","externalId":"e\u{0}"})).await),
        ("POST title", t.post("/Users", &json!({"schemas":[USER_URN],"userName":"nul5@bad.test","title":"t\u{0}"})).await),
        ("POST enterprise", t.post("/Users", &json!({"schemas":[USER_URN],"userName":"nul6@bad.test",ENTERPRISE_URN:{"department":"d\u{0}"}})).await),
        ("POST key", t.post("/Users", &json!({"schemas":[USER_URN],"userName":"nul7@bad.test","x\u{0}y":"z"})).await),
        ("PUT displayName", t.put(&path, &json!({"schemas":[USER_URN],"userName":"ann@bad.test","displayName":"\u{0}"})).await),
        ("PATCH title", t.patch(&path, &json!({"schemas":[PATCH_URN],"Operations":[{"op":"replace","path":"title","value":"\u{0}"}]})).await),
        ("filter eq", t.get("/Users?filter=userName%20eq%20%22%00%22").await),
        ("filter co", t.get("/Users?filter=displayName%20co%20%22a%00%22").await),
        ("filter sw", t.get("/Users?filter=emails.value%20sw%20%22%00%22").await),
        ("filter externalId", t.get("/Users?filter=externalId%20eq%20%22%00%22").await),
        ("search", t.post("/Users/.search", &json!({"filter":"title eq \"\u{0}\""})).await),
        ("group", t.post("/Groups", &json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"g\u{0}"})).await),
        ("group filter", t.get("/Groups?filter=displayName%20eq%20%22%00%22").await),
        ("sortBy", t.get("/Users?sortBy=%00").await),
        ("attributes", t.get("/Users?attributes=%00").await),
    ] {
        seen.push(format!("{what}: {}", r.status));
        if r.status >= 500 {
            failures.push(format!("{what}: {} {}", r.status, r.text));
        } else if r.status >= 400 {
            r.assert_scim_error(r.status, None);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Whatever was accepted reads back.
    let r = t.get("/Users?count=1000").await;
    assert_eq!(r.status, 200, "{seen:?}: {}", r.text);
    assert!(!app.log().contains("panicked"));
}

/// Long values of indexed attributes (externalId, the primary email, displayName; group
/// displayName) up to the documented string limit: stored or refused with a 4xx, never a
/// 5xx (PostgreSQL B-tree entries are limited to about 2.7 kB).
#[tokio::test]
async fn long_indexed_values_never_cause_a_5xx() {
    let app = TestApp::spawn().await;
    let (t, ids) = setup(&app).await;
    // Incompressible text: index entries cannot be shrunk by compression.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut noise = |n: usize| -> String {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(x % 36) as usize])
            })
            .collect()
    };
    let mut failures = Vec::new();
    for n in [3000, 9000, 60_000] {
        let long = noise(n);
        for (what, r) in [
            ("externalId", t.post("/Users", &json!({"schemas":[USER_URN],"userName":format!("ext{n}@bad.test"),"externalId":long})).await),
            ("displayName", t.post("/Users", &json!({"schemas":[USER_URN],"userName":format!("dn{n}@bad.test"),"displayName":long})).await),
            ("email", t.post("/Users", &json!({"schemas":[USER_URN],"userName":format!("em{n}@bad.test"),"emails":[{"value":format!("{long}@bad.test"),"type":"work","primary":true}]})).await),
            ("PATCH displayName", t.patch(&format!("/Users/{}", ids[0]), &json!({"schemas":[PATCH_URN],"Operations":[{"op":"replace","path":"displayName","value":long}]})).await),
            ("group displayName", t.post("/Groups", &json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":long})).await),
            ("filter", t.post("/Users/.search", &json!({"filter":format!("displayName eq \"{}\"", &long[..long.len().min(4000)])})).await),
        ] {
            if r.status >= 500 {
                failures.push(format!("{what} ({n} chars): {} {}", r.status, r.text));
            } else if r.status >= 400 {
                r.assert_scim_error(r.status, None);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(t.get("/Users?count=1000").await.status, 200);
}
