//! Replays of what Okta sends (Okta Developer: "SCIM 2.0 protocol reference" and "Build
//! your SCIM API service", which links the SPEC and CRUD test files): the 12 steps of the
//! Okta SCIM 2.0 SPEC test and the CRUD test read-backs, the custom-app (AIW, PUT-based)
//! lifecycle that README "Connecting Okta" sets up, and the OIN catalog-app PATCH
//! lifecycle. Served with the production defaults of the auth cache and the rate limit
//! (`Opts::production`).
//! Tags such as `#14` or `§3.5` in the tests below are labels from the client-requirements
//! checklist these replays were first written from; each test states what it checks.

use crate::support::*;
use reqwest::{header, Method, RequestBuilder};
use serde_json::{json, Value};

/// Percent-encodes a query value the way Okta's clients (and Runscope) do: space `%20`,
/// quotes `%22`, `@` `%40`.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn unique() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}", n % 10_000_000_000)
}

/// The headers of the SPEC test's GET requests (§2.12).
fn spec_get(t: &Tenant, path: &str) -> RequestBuilder {
    t.req(Method::GET, path)
        .header(header::ACCEPT, "application/scim+json")
        .header(header::ACCEPT_CHARSET, "utf-8")
        .header(header::CONTENT_TYPE, "application/scim+json; charset=utf-8")
        .header(header::USER_AGENT, "OKTA SCIM Integration")
}

/// The headers of Okta's provisioning client (§2.2, Okta staff sample).
fn okta_client(t: &Tenant, method: Method, path: &str) -> RequestBuilder {
    t.req(method, path)
        .header(header::ACCEPT, "application/scim+json")
        .header(header::ACCEPT_CHARSET, "utf-8")
        .header(header::CONTENT_TYPE, "application/scim+json; charset=utf-8")
        .header(header::USER_AGENT, "Okta SCIM Client 1.0.0")
        .header(header::ACCEPT_ENCODING, "gzip,deflate")
}

async fn send(rb: RequestBuilder) -> Reply {
    Reply::of(rb.send().await.unwrap()).await
}

async fn okta(t: &Tenant, method: Method, path: &str, body: Option<&Value>) -> Reply {
    let mut rb = okta_client(t, method, path);
    if let Some(b) = body {
        rb = rb.body(b.to_string());
    }
    send(rb).await
}

/// `GET /Users?filter=userName eq "<v>"` as Okta's existence check sends it (§2.4).
async fn okta_lookup(t: &Tenant, user_name: &str) -> Value {
    let path = format!(
        "/Users?filter={}&startIndex=1&count=100",
        enc(&format!("userName eq \"{user_name}\""))
    );
    assert_list(&okta(t, Method::GET, &path, None).await)
}

/// Asserts a single-user response: status, SCIM content type, ETag equal to
/// `meta.version`, and the user shape (#6, #22, #24).
fn assert_user_reply(r: &Reply, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.text);
    assert_scim_content_type(r);
    let u = r.json();
    assert_user_shape(&u);
    assert_eq!(
        r.header("etag"),
        u["meta"]["version"].as_str(),
        "ETag header vs meta.version: {u}"
    );
    u
}

/// Asserts a 201 create: `Location` = `meta.location` = `{Tenant URL}/Users/{id}` (#18,
/// #19).
fn assert_created(t: &Tenant, r: &Reply) -> Value {
    let u = assert_user_reply(r, 201);
    let id = u["id"].as_str().unwrap();
    let expected = format!("{}/Users/{id}", t.url);
    assert_eq!(r.header("location"), Some(expected.as_str()), "{u}");
    assert_eq!(u["meta"]["location"], expected.as_str(), "{u}");
    u
}

// ---------------------------------------------------------------------------------------
// Okta SCIM 2.0 SPEC test (§2.12; #46)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn okta_spec_test_all_twelve_steps() {
    let app = TestApp::spawn_with(Opts::production()).await;
    let t = app.tenant("Okta Spec");
    let n = unique();
    let invalid_user_email = "abcdefgh@example.com";
    let random_email = format!("spec{n}@example.com");
    let random_given = format!("Given{n}");
    let random_family = format!("Family{n}");
    let random_username = random_email.clone();
    let random_username_caps = random_username.to_uppercase();
    let user_id_that_does_not_exist = "010101001010101011001010101011";

    // Precondition: one user with given/family name, email and active already exists.
    let pre = t
        .create_user(&json!({
            "schemas":[USER_URN],"userName":"existing.user@okta.local",
            "name":{"givenName":"Existing","familyName":"User"},
            "emails":[{"primary":true,"value":"existing.user@okta.local","type":"work"}],
            "active":true
        }))
        .await;

    // Step 1: Required: Test Users endpoint (#11, #8, #24).
    let r = send(spec_get(&t, "/Users?count=1&startIndex=1")).await;
    let v = assert_list(&r);
    assert_eq!(v["startIndex"], 1);
    assert_eq!(v["totalResults"], 1);
    let res = v["Resources"].as_array().unwrap();
    assert_eq!(res.len(), 1, "{v}");
    let first = &res[0];
    assert_user_shape(first);
    for p in [
        "/name/familyName",
        "/name/givenName",
        "/userName",
        "/emails/0/value",
    ] {
        assert!(
            first
                .pointer(p)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty()),
            "{p} empty: {first}"
        );
    }
    let isv_user_id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(isv_user_id, pre["id"].as_str().unwrap());

    // Step 2: Required: Get Users/{id} (#24).
    let r = send(spec_get(&t, &format!("/Users/{isv_user_id}"))).await;
    let u = assert_user_reply(&r, 200);
    assert_eq!(u["id"], isv_user_id.as_str());
    assert_eq!(u["name"]["familyName"], "User");
    assert_eq!(u["name"]["givenName"], "Existing");
    assert_eq!(u["userName"], "existing.user@okta.local");
    assert_eq!(u["emails"][0]["value"], "existing.user@okta.local");
    assert_eq!(u["active"], true);

    // Step 3: Required: Test invalid User by username (#15).
    let r = send(spec_get(
        &t,
        &format!(
            "/Users?filter={}",
            enc(&format!("userName eq \"{invalid_user_email}\""))
        ),
    ))
    .await;
    let v = assert_list(&r);
    assert_eq!(v["totalResults"], 0, "{v}");
    assert_eq!(v["Resources"], json!([]));

    // Step 4: Required: Test invalid User by ID — a numeric, non-UUID id (#17).
    let r = send(spec_get(
        &t,
        &format!("/Users/{user_id_that_does_not_exist}"),
    ))
    .await;
    r.assert_scim_error(404, None);
    assert_scim_content_type(&r);

    // Step 5: Required: Make sure random user doesn't exist (#15).
    let r = send(spec_get(
        &t,
        &format!(
            "/Users?filter={}",
            enc(&format!("userName eq \"{random_email}\""))
        ),
    ))
    .await;
    assert_eq!(assert_list(&r)["totalResults"], 0);

    // Step 6: Required: Create Okta user with realistic values, POSTed as
    // `Content-Type: application/json` (#6, #18, #19).
    let create_body = json!({
        "schemas":[USER_URN],
        "userName": random_username,
        "name":{"givenName": random_given, "familyName": random_family},
        "emails":[{"primary":true,"value": random_email,"type":"work"}],
        "displayName": format!("{random_given} {random_family}"),
        "active":true
    });
    let post = || {
        t.req(Method::POST, "/Users")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/scim+json; charset=utf-8")
            .header(header::USER_AGENT, "OKTA SCIM Integration")
            .body(create_body.to_string())
    };
    let r = send(post()).await;
    let created = assert_created(&t, &r);
    assert_eq!(created["active"], true);
    assert_eq!(created["name"]["familyName"], random_family.as_str());
    assert_eq!(created["name"]["givenName"], random_given.as_str());
    assert_eq!(created["userName"], random_username.as_str());
    assert_eq!(
        created["emails"], create_body["emails"],
        "#18 emails as sent"
    );
    let id_user_one = created["id"].as_str().unwrap().to_owned();
    let random_user_email = created["emails"][0]["value"].as_str().unwrap().to_owned();
    assert_eq!(random_user_email, random_email);

    // Step 7: Required: Verify that user was created.
    let r = send(spec_get(&t, &format!("/Users/{id_user_one}"))).await;
    let u = assert_user_reply(&r, 200);
    assert_eq!(u["userName"], random_username.as_str());
    assert_eq!(u["name"]["familyName"], random_family.as_str());
    assert_eq!(u["name"]["givenName"], random_given.as_str());

    // Step 8: Required: Expect failure when recreating user with same values (#20, #43).
    let r = send(post()).await;
    r.assert_scim_error(409, Some("uniqueness"));
    assert_scim_content_type(&r);
    let all = assert_list(&send(spec_get(&t, "/Users")).await);
    assert_eq!(all["totalResults"], 2, "no second account: {all}");

    // Step 9: Required: Username Case Sensitivity Check — only 200 is asserted by Okta;
    // we also find the user (#13).
    let r = send(spec_get(
        &t,
        &format!(
            "/Users?filter={}",
            enc(&format!("userName eq \"{random_username_caps}\""))
        ),
    ))
    .await;
    let v = assert_list(&r);
    assert_eq!(list_ids(&v), vec![id_user_one.clone()], "{v}");

    // Step 10: Optional: Verify Groups endpoint (#36; Okta wants it within 600 ms:
    // measured by scripts/bench, operation get_groups).
    let r = send(spec_get(&t, "/Groups")).await;
    let v = assert_list(&r);
    assert!(
        v["totalResults"] == 0 || v["Resources"].is_array(),
        "Okta's script: {v}"
    );

    // Step 11: Required: Check status 401 — the literal header `Authorization: non-token`
    // on a filter query (#4).
    let r = send(
        t.anon(
            Method::GET,
            &format!(
                "/Users?filter={}",
                enc(&format!("userName eq \"{invalid_user_email}\""))
            ),
        )
        .header(header::AUTHORIZATION, "non-token")
        .header(header::ACCEPT, "application/scim+json")
        .header(header::ACCEPT_CHARSET, "utf-8")
        .header(header::USER_AGENT, "OKTA SCIM Integration"),
    )
    .await;
    let e = r.assert_scim_error(401, None);
    assert_eq!(e["status"], "401");
    assert!(r.text.contains(ERROR_URN));
    assert_scim_content_type(&r);

    // Step 12: Required: Check status 404 (#17).
    let r = send(spec_get(&t, "/Users/00919288221112222")).await;
    let e = r.assert_scim_error(404, None);
    assert_eq!(e["status"], "404");
    assert_scim_content_type(&r);

    // Nothing the suite did changed the pre-existing user.
    let u = assert_user_reply(
        &send(spec_get(&t, &format!("/Users/{isv_user_id}"))).await,
        200,
    );
    assert_eq!(u["active"], true);
    assert_eq!(u["meta"]["version"], pre["meta"]["version"]);
}

/// #11: the connector test and SPEC step 1 against a tenant without any user yet.
#[tokio::test]
async fn okta_connector_tests_on_an_empty_tenant() {
    let app = TestApp::spawn_with(Opts::production()).await;
    let t = app.tenant("Okta Empty");
    for path in [
        "/Users?startIndex=1&count=2",
        "/Users?count=1&startIndex=1",
        "/Users",
    ] {
        let v = assert_list(&okta(&t, Method::GET, path, None).await);
        assert_eq!(v["totalResults"], 0, "{path}: {v}");
        assert_eq!(v["startIndex"], 1, "{path}: {v}");
        assert_eq!(v["itemsPerPage"], 0, "{path}: {v}");
        assert_eq!(v["Resources"], json!([]), "{path}: {v}");
    }
    // The group listing of the connector sample (§2.3, #36).
    let v = assert_list(&okta(&t, Method::GET, "/Groups?startIndex=1&count=100", None).await);
    assert_eq!(v["totalResults"], 0, "{v}");
}

/// #2, #4: the Authorization header variants integrators saw from Okta's "HTTP Header"
/// mode, and bad credentials.
#[tokio::test]
async fn okta_http_header_auth_variants() {
    let app = TestApp::spawn_with(Opts::production()).await;
    let t = app.tenant("Okta Auth");
    let tok = &t.token;
    for value in [
        format!("Bearer {tok}"),
        format!("bearer {tok}"),
        format!("BEARER {tok}"),
        tok.clone(),
        format!("Bearer Bearer {tok}"),
        format!("  Bearer   {tok}  "),
    ] {
        let r = send(
            t.anon(Method::GET, "/Users?startIndex=1&count=2")
                .header(header::AUTHORIZATION, value.clone()),
        )
        .await;
        assert_eq!(r.status, 200, "{value:?}: {}", r.text);
        assert_list(&r);
    }
    for value in [
        "non-token".to_owned(),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        format!("Bearer {tok}x"),
        format!("Basic {tok}"),
    ] {
        let r = send(
            t.anon(Method::GET, "/Users?startIndex=1&count=2")
                .header(header::AUTHORIZATION, value.clone()),
        )
        .await;
        r.assert_scim_error(401, None);
        assert_scim_content_type(&r);
    }
    let r = send(t.anon(Method::GET, "/Users")).await;
    r.assert_scim_error(401, None);
    assert_scim_content_type(&r);
}

/// #12: the existence-check filter with spaces as `%20` or `+`, quotes as `%22`, `@` raw
/// or `%40` — each finds the user, each miss is an empty ListResponse. Sent verbatim over a
/// socket, so no URL library re-encodes them. (Raw `"` in the request target is refused
/// with an empty 400 by the HTTP parser (httparse) before the application sees it; real
/// clients percent-encode quotes, so that form is not replayed here.)
#[tokio::test]
async fn okta_filter_encodings() {
    let app = TestApp::spawn_with(Opts::production()).await;
    let t = app.tenant("Okta Filters");
    let u = t
        .create_user(&json!({"schemas":[USER_URN],"userName":"test.user@okta.local",
            "name":{"givenName":"Test","familyName":"User"},
            "emails":[{"primary":true,"value":"test.user@okta.local","type":"work"}],"active":true}))
        .await;
    let id = u["id"].as_str().unwrap();
    let auth = format!("Bearer {}", t.token);
    let prefix = t.url.strip_prefix(&app.base).unwrap();
    for (q, hit) in [
        ("userName%20eq%20%22test.user%40okta.local%22", true),
        ("userName+eq+%22test.user%40okta.local%22", true),
        ("userName+eq+%22test.user@okta.local%22", true),
        ("userName%20eq%20%22test.user@okta.local%22", true),
        ("userName%20eq%20%22TEST.USER%40OKTA.LOCAL%22", true),
        ("userName+eq+%22nobody%40okta.local%22", false),
        ("userName%20eq%20%22nobody%40okta.local%22", false),
    ] {
        let target = format!("{prefix}/Users?filter={q}&startIndex=1&count=100");
        let r = raw_request(
            &app.base,
            "GET",
            &target,
            &[
                ("Authorization", &auth),
                ("Accept", "application/scim+json"),
                ("User-Agent", "Okta SCIM Client 1.0.0"),
            ],
            "",
        )
        .await;
        let v = assert_list(&r);
        if hit {
            assert_eq!(list_ids(&v), vec![id.to_owned()], "{q}: {v}");
            assert_user_shape(&v["Resources"][0]);
        } else {
            assert_eq!(v["totalResults"], 0, "{q}: {v}");
            assert_eq!(v["Resources"], json!([]), "{q}: {v}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Custom app (AIW): every update is a PUT of the full object (§2.1, §2.7–§2.10)
// ---------------------------------------------------------------------------------------

fn okta_create_body(user_name: &str, okta_id: &str) -> Value {
    json!({"schemas":[USER_URN],
        "userName": user_name,
        "name":{"givenName":"Test","familyName":"User"},
        "emails":[{"primary":true,"value": user_name,"type":"work"}],
        "displayName":"Test User","locale":"en-US","externalId": okta_id,
        "groups":[],"password":"1mz050nq","active":true})
}

#[tokio::test]
async fn okta_aiw_put_lifecycle() {
    let app = TestApp::spawn_with(Opts::production()).await;
    let t = app.tenant("Okta AIW");
    let un = "test.user@okta.local";

    // Test Connector Configuration (§2.3, #11).
    let v = assert_list(&okta(&t, Method::GET, "/Users?startIndex=1&count=2", None).await);
    assert_eq!(v["totalResults"], 0);

    // Push New Users: existence check, then create (§2.4; #15, #18, #19, #21, #22).
    assert_eq!(okta_lookup(&t, un).await["totalResults"], 0);
    let body = okta_create_body(un, "00ujl29u0le5T6Aj10h7");
    let r = okta(&t, Method::POST, "/Users", Some(&body)).await;
    let created = assert_created(&t, &r);
    assert!(!r.text.contains("1mz050nq"), "password echoed: {}", r.text);
    for k in [
        "userName",
        "name",
        "emails",
        "displayName",
        "locale",
        "externalId",
    ] {
        assert_eq!(created[k], body[k], "#18/#23 {k} as sent: {created}");
    }
    assert_eq!(created["active"], true);
    let id = created["id"].as_str().unwrap().to_owned();
    let etag1 = r.header("etag").unwrap().to_owned();

    // The existence check now links to the same object (§2.4).
    let v = okta_lookup(&t, un).await;
    assert_eq!(list_ids(&v), vec![id.clone()]);
    assert_eq!(v["Resources"][0]["externalId"], "00ujl29u0le5T6Aj10h7");

    // Push Profile Updates: GET, change the mapped attributes, PUT everything back
    // including id, meta, groups, emails[].display (§2.7; #26, #21).
    let r = okta(&t, Method::GET, &format!("/Users/{id}"), None).await;
    let mut obj = assert_user_reply(&r, 200);
    obj["name"] = json!({"givenName":"Another","middleName":"Excited","familyName":"User"});
    obj["emails"] = json!([{"primary":true,"value":un,"type":"work","display":un}]);
    obj["groups"] = json!([]);
    let r = okta(&t, Method::PUT, &format!("/Users/{id}"), Some(&obj)).await;
    let u = assert_user_reply(&r, 200);
    assert_eq!(u["id"], id.as_str());
    assert_eq!(u["name"], obj["name"]);
    assert_eq!(u["emails"], obj["emails"], "#23 display kept as sent");
    assert_eq!(u["active"], true);
    let etag2 = r.header("etag").unwrap().to_owned();
    assert_ne!(etag1, etag2, "ETag must change on update");
    let got = assert_user_reply(
        &okta(&t, Method::GET, &format!("/Users/{id}"), None).await,
        200,
    );
    assert_eq!(got["name"]["givenName"], "Another");
    assert_eq!(got["name"]["middleName"], "Excited");
    assert_eq!(r.header("etag"), got["meta"]["version"].as_str());

    // CRUD test step 6: the read-back shows the new givenName (§2.13).
    // Deactivate: PUT the full object with active=false (§2.8; #26, #32).
    let mut obj = got.clone();
    obj["active"] = json!(false);
    let r = okta(&t, Method::PUT, &format!("/Users/{id}"), Some(&obj)).await;
    let u = assert_user_reply(&r, 200);
    assert_eq!(u["active"], false);
    assert_eq!(u["name"]["givenName"], "Another", "profile kept: {u}");
    // CRUD test step 8: still 200 by id, with active false; and by filter (#32).
    let got = assert_user_reply(
        &okta(&t, Method::GET, &format!("/Users/{id}"), None).await,
        200,
    );
    assert_eq!(got["active"], false);
    let v = okta_lookup(&t, un).await;
    assert_eq!(
        list_ids(&v),
        vec![id.clone()],
        "deactivated user still found: {v}"
    );
    assert_eq!(v["Resources"][0]["active"], false);
    // And in the plain listing (Import, §2.5).
    let v = assert_list(&okta(&t, Method::GET, "/Users?startIndex=1&count=100", None).await);
    assert_eq!(v["Resources"][0]["active"], false, "{v}");
    // A retried deactivate yields the same state (#43).
    let r = okta(&t, Method::PUT, &format!("/Users/{id}"), Some(&obj)).await;
    assert_eq!(assert_user_reply(&r, 200)["active"], false);

    // Reactivate: PUT with active=true, same id, no new account (§2.9; #33; CRUD step 10).
    let mut obj = got.clone();
    obj["active"] = json!(true);
    let r = okta(&t, Method::PUT, &format!("/Users/{id}"), Some(&obj)).await;
    let u = assert_user_reply(&r, 200);
    assert_eq!(u["active"], true);
    assert_eq!(u["id"], id.as_str());
    let got = assert_user_reply(
        &okta(&t, Method::GET, &format!("/Users/{id}"), None).await,
        200,
    );
    assert_eq!(got["active"], true);
    assert_eq!(got["meta"]["created"], created["meta"]["created"]);
    let v = assert_list(&okta(&t, Method::GET, "/Users", None).await);
    assert_eq!(
        v["totalResults"], 1,
        "reactivation made no second account: {v}"
    );

    // Password sync as PUT (§2.10): accepted, ignored, never returned (#21, #22).
    let mut obj = got.clone();
    obj["password"] = json!("n3wSecret!");
    let r = okta(&t, Method::PUT, &format!("/Users/{id}"), Some(&obj)).await;
    assert_user_reply(&r, 200);
    assert!(!r.text.contains("n3wSecret"), "{}", r.text);
    let r = okta(&t, Method::GET, &format!("/Users/{id}"), None).await;
    assert!(!r.text.contains("n3wSecret") && !r.text.contains("1mz050nq"));

    // A PUT that leaves `active` out keeps the account active (Okta always sends it, but a
    // PUT without it must not suspend anybody: Delinea's warning in §2.1).
    let mut obj = assert_user_reply(&r, 200);
    obj.as_object_mut().unwrap().remove("active");
    let r = okta(&t, Method::PUT, &format!("/Users/{id}"), Some(&obj)).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // userName change via PUT keeps the id; a clash is 409 (#34).
    let other = t
        .create_user(&okta_create_body("other.user@okta.local", "00uother"))
        .await;
    let mut obj = assert_user_reply(
        &okta(&t, Method::GET, &format!("/Users/{id}"), None).await,
        200,
    );
    obj["userName"] = json!("renamed.user@okta.local");
    let r = okta(&t, Method::PUT, &format!("/Users/{id}"), Some(&obj)).await;
    let u = assert_user_reply(&r, 200);
    assert_eq!(u["id"], id.as_str());
    assert_eq!(u["userName"], "renamed.user@okta.local");
    assert_eq!(okta_lookup(&t, un).await["totalResults"], 0);
    assert_eq!(
        list_ids(&okta_lookup(&t, "renamed.user@okta.local").await),
        vec![id.clone()]
    );
    obj["userName"] = json!("OTHER.USER@okta.local");
    let r = okta(&t, Method::PUT, &format!("/Users/{id}"), Some(&obj)).await;
    r.assert_scim_error(409, Some("uniqueness"));
    let got = assert_user_reply(
        &okta(&t, Method::GET, &format!("/Users/{id}"), None).await,
        200,
    );
    assert_eq!(got["userName"], "renamed.user@okta.local");
    let got = assert_user_reply(
        &okta(
            &t,
            Method::GET,
            &format!("/Users/{}", other["id"].as_str().unwrap()),
            None,
        )
        .await,
        200,
    );
    assert_eq!(got["userName"], "other.user@okta.local");
}

/// §2.7: enterprise-extension blocks in a PUT are applied, not dropped (#26, #21).
#[tokio::test]
async fn okta_put_applies_enterprise_extension() {
    let app = TestApp::spawn_with(Opts::production()).await;
    let t = app.tenant("Okta Ext");
    let u = t
        .create_user(&okta_create_body("ext.user@okta.local", "00uext"))
        .await;
    let id = u["id"].as_str().unwrap();
    let mut obj = u.clone();
    obj["schemas"] = json!([USER_URN, ENTERPRISE_URN]);
    obj[ENTERPRISE_URN] = json!({"employeeNumber":"E-1","department":"Backup Ops",
        "manager":{"value":"mgr-1"}});
    obj["title"] = json!("Engineer");
    let r = okta(&t, Method::PUT, &format!("/Users/{id}"), Some(&obj)).await;
    let got = assert_user_reply(&r, 200);
    assert_eq!(got[ENTERPRISE_URN]["employeeNumber"], "E-1", "{got}");
    assert_eq!(got[ENTERPRISE_URN]["department"], "Backup Ops", "{got}");
    assert_eq!(got[ENTERPRISE_URN]["manager"]["value"], "mgr-1", "{got}");
    assert!(got["schemas"]
        .as_array()
        .unwrap()
        .contains(&json!(ENTERPRISE_URN)));
    let got = assert_user_reply(
        &okta(&t, Method::GET, &format!("/Users/{id}"), None).await,
        200,
    );
    assert_eq!(got[ENTERPRISE_URN]["employeeNumber"], "E-1", "{got}");
    assert_eq!(got["title"], "Engineer");
}

// ---------------------------------------------------------------------------------------
// OIN catalog app: PUT for profiles, path-less PATCH for (de)activation and password
// ---------------------------------------------------------------------------------------

fn patch_op(ops: Value) -> Value {
    json!({"schemas":[PATCH_URN],"Operations": ops})
}

/// PATCH answers 200 with the full user (#31); 204 would also be fine for Okta, but this
/// server promises 200.
async fn okta_patch(t: &Tenant, id: &str, ops: Value) -> Value {
    let r = okta(
        t,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(&patch_op(ops)),
    )
    .await;
    assert_user_reply(&r, 200)
}

#[tokio::test]
async fn okta_oin_patch_lifecycle() {
    let app = TestApp::spawn_with(Opts::production()).await;
    let t = app.tenant("Okta OIN");
    let un = "oin.user@okta.local";
    assert_eq!(okta_lookup(&t, un).await["totalResults"], 0);
    let r = okta(
        &t,
        Method::POST,
        "/Users",
        Some(&okta_create_body(un, "00uoin")),
    )
    .await;
    let created = assert_created(&t, &r);
    let id = created["id"].as_str().unwrap().to_owned();

    // Profile update: PUT (§2.1).
    let mut obj = created.clone();
    obj["name"]["givenName"] = json!("Changed");
    let u = assert_user_reply(
        &okta(&t, Method::PUT, &format!("/Users/{id}"), Some(&obj)).await,
        200,
    );
    assert_eq!(u["name"]["givenName"], "Changed");

    // Deactivate: path-less replace of active (§2.8; #28, #32).
    let u = okta_patch(&t, &id, json!([{"op":"replace","value":{"active":false}}])).await;
    assert_eq!(u["active"], false);
    assert_eq!(u["name"]["givenName"], "Changed", "profile kept: {u}");
    let got = assert_user_reply(
        &okta(&t, Method::GET, &format!("/Users/{id}"), None).await,
        200,
    );
    assert_eq!(got["active"], false);
    let v = okta_lookup(&t, un).await;
    assert_eq!(list_ids(&v), vec![id.clone()]);
    assert_eq!(v["Resources"][0]["active"], false);
    // Retried (#43).
    let u = okta_patch(&t, &id, json!([{"op":"replace","value":{"active":false}}])).await;
    assert_eq!(u["active"], false);

    // Reactivate: same id (§2.9; #33).
    let u = okta_patch(&t, &id, json!([{"op":"replace","value":{"active":true}}])).await;
    assert_eq!(u["active"], true);
    assert_eq!(u["id"], id.as_str());
    let got = assert_user_reply(
        &okta(&t, Method::GET, &format!("/Users/{id}"), None).await,
        200,
    );
    assert_eq!(got["active"], true);
    assert_eq!(got["meta"]["created"], created["meta"]["created"]);
    assert_eq!(
        assert_list(&okta(&t, Method::GET, "/Users", None).await)["totalResults"],
        1
    );

    // Password sync via PATCH (§2.10): accepted, ignored, never returned (#21, #22).
    let r = okta(
        &t,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(&patch_op(
            json!([{"op":"replace","value":{"password":"t0pSecret"}}]),
        )),
    )
    .await;
    assert_user_reply(&r, 200);
    assert!(!r.text.contains("t0pSecret"));
    let r = okta(&t, Method::GET, &format!("/Users/{id}"), None).await;
    assert!(!r.text.contains("t0pSecret"));
    assert_eq!(assert_user_reply(&r, 200)["active"], true);

    // PATCH on an unknown id: 404 SCIM error (#17).
    let r = okta(
        &t,
        Method::PATCH,
        "/Users/00919288221112222",
        Some(&patch_op(
            json!([{"op":"replace","value":{"active":false}}]),
        )),
    )
    .await;
    r.assert_scim_error(404, None);
}

/// Import (§2.5; #8, #9, #10): paging with count=100 / startIndex=1,101,201 sees every
/// user exactly once, in the same order as one big page.
#[tokio::test]
async fn okta_import_paging_is_stable() {
    let app = TestApp::spawn_with(Opts::production()).await;
    let t = app.tenant("Okta Import");
    let total = 205;
    for i in 0..total {
        let un = format!("import{i:03}@okta.local");
        let r = t
            .post("/Users", &okta_create_body(&un, &format!("00u{i}")))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let mut paged = Vec::new();
    let mut start = 1;
    loop {
        let v = assert_list(
            &okta(
                &t,
                Method::GET,
                &format!("/Users?startIndex={start}&count=100"),
                None,
            )
            .await,
        );
        assert_eq!(v["totalResults"], total);
        assert_eq!(v["startIndex"], start);
        let ids = list_ids(&v);
        assert!(ids.len() <= 100);
        for u in v["Resources"].as_array().unwrap() {
            assert_user_shape(u);
        }
        paged.extend(ids);
        start += 100;
        if start > total {
            break;
        }
    }
    assert_eq!(paged.len(), total);
    let mut dedup = paged.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), total, "a user appeared twice");
    let v = assert_list(&okta(&t, Method::GET, "/Users?startIndex=1&count=1000", None).await);
    assert_eq!(list_ids(&v), paged, "same order regardless of count");
    // count=0 gives only totalResults; startIndex past the end gives an empty page.
    let v = assert_list(&okta(&t, Method::GET, "/Users?count=0", None).await);
    assert_eq!(v["totalResults"], total);
    assert_eq!(v["Resources"], json!([]));
    let v = assert_list(&okta(&t, Method::GET, "/Users?startIndex=1000&count=100", None).await);
    assert_eq!(v["totalResults"], total);
    assert_eq!(v["itemsPerPage"], 0);
    // Without parameters: startIndex 1 and a page of at least 100 (#7, #9).
    let v = assert_list(&okta(&t, Method::GET, "/Users", None).await);
    assert_eq!(v["startIndex"], 1);
    assert!(v["itemsPerPage"].as_u64().unwrap() >= 100, "default count");
    assert_eq!(list_ids(&v), paged[..list_ids(&v).len()].to_vec());
    // Over-large counts are clamped, not refused (#9).
    let v = assert_list(&okta(&t, Method::GET, "/Users?startIndex=1&count=100000", None).await);
    assert_eq!(list_ids(&v), paged);
    // startIndex < 1 is treated as 1.
    let v = assert_list(&okta(&t, Method::GET, "/Users?startIndex=0&count=2", None).await);
    assert_eq!(v["startIndex"], 1);
    assert_eq!(list_ids(&v), paged[..2].to_vec());
}

/// §2.7 details of Okta's PUT echo (#26): the body's `id`, stale `meta`, `groups` and
/// `password` are ignored, `middleName: ""` is stored as sent (#23), a userName that only
/// changes letter case is no conflict with itself (#34), and a PUT of a stale echo after
/// another change still applies (Okta sends no If-Match).
#[tokio::test]
async fn okta_put_echo_details() {
    let app = TestApp::spawn_with(Opts::production()).await;
    let t = app.tenant("Okta Echo");
    let r = okta(
        &t,
        Method::POST,
        "/Users",
        Some(&okta_create_body("echo.user@okta.local", "00uecho")),
    )
    .await;
    let created = assert_created(&t, &r);
    let id = created["id"].as_str().unwrap().to_owned();
    let stale = created.clone();

    // Another change lands first (e.g. an admin's PATCH).
    let r = okta(
        &t,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(&json!({"schemas":[PATCH_URN],"Operations":[{"op":"replace","path":"displayName","value":"Changed Elsewhere"}]})),
    )
    .await;
    assert_user_reply(&r, 200);

    // Okta PUTs its (stale) copy: old meta, a foreign id, groups, password, middleName "".
    let mut obj = stale.clone();
    obj["id"] = json!("ffffffff-ffff-ffff-ffff-ffffffffffff");
    obj["meta"] = json!({"resourceType":"User","version":"W/\"1\"","created":"2001-01-01T00:00:00Z",
        "lastModified":"2001-01-01T00:00:00Z","location":"https://elsewhere.example/Users/x"});
    obj["groups"] = json!([{"value":"g1","display":"Group One"}]);
    obj["password"] = json!("pw");
    obj["name"] = json!({"givenName":"Echo","middleName":"","familyName":"User"});
    obj["userName"] = json!("Echo.User@OKTA.local");
    let r = okta(&t, Method::PUT, &format!("/Users/{id}"), Some(&obj)).await;
    let u = assert_user_reply(&r, 200);
    assert_eq!(u["id"], id.as_str(), "id from the URL, not the body");
    assert_eq!(u["meta"]["created"], created["meta"]["created"]);
    assert_ne!(u["meta"]["version"], "W/\"1\"");
    assert_eq!(
        u["meta"]["location"],
        format!("{}/Users/{id}", t.url).as_str()
    );
    assert!(
        u.get("groups").is_none_or(|g| g == &json!([])),
        "groups are read-only: {u}"
    );
    assert_eq!(
        u["userName"], "Echo.User@OKTA.local",
        "#34 case-only rename"
    );
    assert_eq!(u["name"], obj["name"], "#23 as sent");
    assert_eq!(u["displayName"], "Test User", "full replace: {u}");
    assert!(u.get("password").is_none());
    let got = assert_user_reply(
        &okta(&t, Method::GET, &format!("/Users/{id}"), None).await,
        200,
    );
    assert_eq!(got["userName"], "Echo.User@OKTA.local");
    assert_eq!(
        list_ids(&okta_lookup(&t, "echo.user@okta.local").await),
        vec![id.clone()]
    );
    assert_eq!(
        assert_list(&okta(&t, Method::GET, "/Users", None).await)["totalResults"],
        1
    );
    // The foreign id did not become a resource.
    let r = okta(
        &t,
        Method::GET,
        "/Users/ffffffff-ffff-ffff-ffff-ffffffffffff",
        None,
    )
    .await;
    r.assert_scim_error(404, None);
    // PUT to an unknown id is 404, never an upsert.
    let r = okta(&t, Method::PUT, "/Users/00919288221112222", Some(&obj)).await;
    r.assert_scim_error(404, None);
    assert_eq!(
        assert_list(&okta(&t, Method::GET, "/Users", None).await)["totalResults"],
        1
    );
}

/// #13, #20 beyond ASCII: user names with non-ASCII letters and `+` tags match and clash
/// case-insensitively on every backend.
#[tokio::test]
async fn okta_user_names_beyond_ascii() {
    let app = TestApp::spawn_with(Opts::production()).await;
    let t = app.tenant("Okta Unicode");
    let un = "élise.müller+backup@exämple.test";
    let r = okta(
        &t,
        Method::POST,
        "/Users",
        Some(&okta_create_body(un, "00uelise")),
    )
    .await;
    let u = assert_created(&t, &r);
    let id = u["id"].as_str().unwrap().to_owned();
    assert_eq!(u["userName"], un, "#23 stored as sent");
    for q in [
        un.to_owned(),
        un.to_uppercase(),
        "ÉLISE.müller+backup@exämple.test".to_owned(),
    ] {
        let v = okta_lookup(&t, &q).await;
        assert_eq!(list_ids(&v), vec![id.clone()], "{q}: {v}");
    }
    let r = okta(
        &t,
        Method::POST,
        "/Users",
        Some(&okta_create_body(&un.to_uppercase(), "00uelise2")),
    )
    .await;
    r.assert_scim_error(409, Some("uniqueness"));
    // `+` must be %2B-encoded to survive; a `+` left raw means a space, so no match.
    let v = okta_lookup(&t, "élise.müller backup@exämple.test").await;
    assert_eq!(v["totalResults"], 0, "{v}");
}

/// The Okta SCIM 2.0 CRUD test (§2.13; #46): what Okta sends (AIW: PUT) between the
/// steps, and the read-backs the suite asserts with `{{SCIMAuth}}`.
#[tokio::test]
async fn okta_crud_test_read_backs() {
    let app = TestApp::spawn_with(Opts::production()).await;
    let t = app.tenant("Okta CRUD");
    let email = "crud.user@okta.local";
    // Steps 2–3: user created in Okta and assigned (givenName, familyName, email, work).
    assert_eq!(okta_lookup(&t, email).await["totalResults"], 0);
    let mut body = okta_create_body(email, "00ucrud");
    body["name"] = json!({"givenName":"Crud","familyName":"Tester"});
    let created = assert_created(&t, &okta(&t, Method::POST, "/Users", Some(&body)).await);

    // Step 4: filter by userName; Resources[0] carries the same email and names.
    let v = okta_lookup(&t, email).await;
    let r0 = &v["Resources"][0];
    assert_eq!(r0["userName"], email);
    assert_eq!(r0["emails"][0]["value"], email);
    assert_eq!(r0["name"]["familyName"], "Tester");
    assert_eq!(r0["name"]["givenName"], "Crud");
    let scim_id = r0["id"].as_str().unwrap().to_owned();
    assert_eq!(created["id"], scim_id.as_str());
    let path = format!("/Users/{scim_id}");

    // Step 5: firstName changed in Okta ⇒ PUT; step 6 reads the new givenName.
    let mut obj = assert_user_reply(&okta(&t, Method::GET, &path, None).await, 200);
    obj["name"]["givenName"] = json!("Changed");
    assert_user_reply(&okta(&t, Method::PUT, &path, Some(&obj)).await, 200);
    let got = assert_user_reply(&okta(&t, Method::GET, &path, None).await, 200);
    assert_eq!(got["name"]["givenName"], "Changed");

    // Step 7: Okta user deactivated ⇒ PUT active=false; step 8: still 200, active false.
    let mut obj = got.clone();
    obj["active"] = json!(false);
    assert_user_reply(&okta(&t, Method::PUT, &path, Some(&obj)).await, 200);
    let got = assert_user_reply(&okta(&t, Method::GET, &path, None).await, 200);
    assert_eq!(got["active"], false);

    // Step 9: reactivated and re-assigned ⇒ the existence check finds the same user and
    // Okta PUTs active=true; step 10: same id, active true.
    let v = okta_lookup(&t, email).await;
    assert_eq!(list_ids(&v), vec![scim_id.clone()]);
    let mut obj = v["Resources"][0].clone();
    obj["active"] = json!(true);
    assert_user_reply(&okta(&t, Method::PUT, &path, Some(&obj)).await, 200);
    let got = assert_user_reply(&okta(&t, Method::GET, &path, None).await, 200);
    assert_eq!(got["active"], true);
    assert_eq!(got["id"], scim_id.as_str());

    // Step 11: app assignment removed ⇒ PUT active=false (never DELETE); step 12: 200,
    // active false.
    let mut obj = got.clone();
    obj["active"] = json!(false);
    assert_user_reply(&okta(&t, Method::PUT, &path, Some(&obj)).await, 200);
    let got = assert_user_reply(&okta(&t, Method::GET, &path, None).await, 200);
    assert_eq!(got["active"], false);
    assert_eq!(got["name"]["givenName"], "Changed");
    assert_eq!(got["meta"]["created"], created["meta"]["created"]);
}
