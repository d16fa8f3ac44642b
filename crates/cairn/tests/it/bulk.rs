//! `POST /Bulk` (RFC 7644 §3.7) against the real binary: the RFC's examples (§3.7.1
//! circular references, §3.7.2 `bulkId` references, §3.7.3 responses and `failOnErrors`),
//! the limits of §3.7.4 (413 with a SCIM error), each operation audited and rate-limited
//! like the same request sent alone, and a request of 1,000 operations.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};

const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn bulk_body(ops: Value, fail_on_errors: Option<u64>) -> Value {
    let mut b = json!({"schemas": [BULK_REQUEST], "Operations": ops});
    if let Some(n) = fail_on_errors {
        b["failOnErrors"] = n.into();
    }
    b
}

/// Sends a bulk request, asserts 200 and a BulkResponse, returns its operations.
async fn bulk(t: &Tenant, ops: Value, fail_on_errors: Option<u64>) -> Vec<Value> {
    let r = t.post("/Bulk", &bulk_body(ops, fail_on_errors)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_scim_content_type(&r);
    let v = r.json();
    assert_eq!(v["schemas"], json!([BULK_RESPONSE]), "{v}");
    v["Operations"].as_array().unwrap().clone()
}

fn id_of(location: &Value) -> String {
    location
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn service_provider_config_advertises_bulk_and_its_limits() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Bulk SPC");
    let spc = t.get("/ServiceProviderConfig").await.json();
    assert_eq!(spc["bulk"]["supported"], true, "{spc}");
    assert_eq!(spc["bulk"]["maxOperations"], 1000, "{spc}");
    assert_eq!(spc["bulk"]["maxPayloadSize"], 1 << 20, "{spc}");
}

/// RFC 7644 §3.7.2: a group created with a member created in the same request, the
/// group's operation placed first; and a user whose manager is created in the same
/// request (a reference inside an extension).
#[tokio::test]
async fn bulk_id_references_resolve_in_any_order() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Bulk refs");
    let ops = bulk(
        &t,
        json!([
            {"method": "POST", "path": "/Groups", "bulkId": "ytrewq",
             "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                      "displayName": "Tour Guides",
                      "members": [{"type": "User", "value": "bulkId:qwerty"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "qwerty",
             "data": {"schemas": [USER_URN], "userName": "Alice"}},
            {"method": "POST", "path": "/Users", "bulkId": "zxcvb",
             "data": {"schemas": [USER_URN, ENTERPRISE], "userName": "Bob",
                      ENTERPRISE: {"manager": {"value": "bulkId:qwerty"}}}},
        ]),
        None,
    )
    .await;
    // Results in request order, each with its bulkId, location and version.
    assert_eq!(ops.len(), 3, "{ops:?}");
    for (op, bulk_id) in ops.iter().zip(["ytrewq", "qwerty", "zxcvb"]) {
        assert_eq!(op["method"], "POST", "{op}");
        assert_eq!(op["bulkId"], bulk_id, "{op}");
        assert_eq!(op["status"], "201", "{op}");
        assert!(
            op["version"].as_str().is_some_and(|v| v.starts_with("W/")),
            "{op}"
        );
        assert!(op.get("response").is_none(), "{op}");
    }
    assert!(ops[0]["location"].as_str().unwrap().contains("/Groups/"));
    let alice = id_of(&ops[1]["location"]);
    let group = t
        .get(&format!("/Groups/{}", id_of(&ops[0]["location"])))
        .await;
    assert_eq!(group.status, 200, "{}", group.text);
    assert_eq!(group.json()["members"][0]["value"], alice.as_str());
    let bob = t
        .get(&format!("/Users/{}", id_of(&ops[2]["location"])))
        .await
        .json();
    assert_eq!(bob[ENTERPRISE]["manager"]["value"], alice.as_str(), "{bob}");
    let a = t.get(&format!("/Users/{alice}")).await.json();
    assert_eq!(a["userName"], "Alice");
    assert_eq!(a["groups"][0]["display"], "Tour Guides", "{a}");

    // A PATCH addressed to a resource through its bulkId.
    let ops = bulk(
        &t,
        json!([
            {"method": "POST", "path": "/Users", "bulkId": "c", "data": {"userName": "Carol"}},
            {"method": "PATCH", "path": "/Users/bulkId:c",
             "data": {"schemas": [PATCH_URN],
                      "Operations": [{"op": "replace", "path": "active", "value": false}]}},
        ]),
        None,
    )
    .await;
    assert_eq!(ops[1]["status"], "200", "{ops:?}");
    assert_eq!(ops[1]["location"], ops[0]["location"]);
    let carol = t
        .get(&format!("/Users/{}", id_of(&ops[0]["location"])))
        .await
        .json();
    assert_eq!(carol["active"], false);
}

/// RFC 7644 §3.7.1: group A has group B as a member and B has A. Cairn answers 409 for
/// both (the RFC allows it instead of resolving the cycle) and creates neither; the other
/// operations of the request still run.
#[tokio::test]
async fn circular_references_are_409_and_nothing_of_the_cycle_is_created() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Bulk cycle");
    let ops = bulk(
        &t,
        json!([
            {"method": "POST", "path": "/Groups", "bulkId": "qwerty",
             "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                      "displayName": "Group A",
                      "members": [{"type": "Group", "value": "bulkId:ytrewq"}]}},
            {"method": "POST", "path": "/Groups", "bulkId": "ytrewq",
             "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                      "displayName": "Group B",
                      "members": [{"type": "Group", "value": "bulkId:qwerty"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "u", "data": {"userName": "outside"}},
            {"method": "POST", "path": "/Users", "bulkId": "m",
             "data": {"userName": "managed", ENTERPRISE: {"manager": {"value": "bulkId:nowhere"}}}},
        ]),
        None,
    )
    .await;
    assert_eq!(ops.len(), 4, "{ops:?}");
    for op in &ops[..2] {
        assert_eq!(op["status"], "409", "{op}");
        assert!(op.get("location").is_none(), "{op}");
        assert_eq!(op["response"]["schemas"], json!([ERROR_URN]), "{op}");
        assert_eq!(op["response"]["status"], "409", "{op}");
        assert!(
            op["response"]["detail"]
                .as_str()
                .unwrap()
                .contains("circular"),
            "{op}"
        );
    }
    assert_eq!(ops[2]["status"], "201", "{ops:?}");
    // A reference to a bulkId no operation declares cannot be resolved: 409 as well.
    assert_eq!(ops[3]["status"], "409", "{ops:?}");
    assert_eq!(ops[3]["response"]["status"], "409");
    let groups = t.get("/Groups").await.json();
    assert_eq!(groups["totalResults"], 0, "{groups}");
    let users = t.get("/Users").await.json();
    assert_eq!(users["totalResults"], 1, "{users}");
}

/// RFC 7644 §3.7.3: POST, PUT with a version, PATCH and DELETE in one request, each
/// answered with its status, location and version; a PUT with a stale version is 412 and
/// the remaining operations are not performed once `failOnErrors` errors occurred.
#[tokio::test]
async fn responses_statuses_and_fail_on_errors() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Bulk 3.7.3");
    let b = t
        .create_user(&json!({"schemas": [USER_URN], "userName": "Barbara"}))
        .await;
    let bid = b["id"].as_str().unwrap().to_owned();
    let bver = b["meta"]["version"].as_str().unwrap().to_owned();
    let d = t
        .create_user(&json!({"schemas": [USER_URN], "userName": "Doomed"}))
        .await;
    let did = d["id"].as_str().unwrap().to_owned();
    let p = t
        .create_user(&json!({"schemas": [USER_URN], "userName": "Patched"}))
        .await;
    let pid = p["id"].as_str().unwrap().to_owned();

    let ops = bulk(
        &t,
        json!([
            {"method": "POST", "path": "/Users", "bulkId": "qwerty",
             "data": {"schemas": [USER_URN], "userName": "Alice"}},
            {"method": "PUT", "path": format!("/Users/{bid}"), "version": bver,
             "data": {"schemas": [USER_URN], "id": bid, "userName": "Barbara",
                      "displayName": "Babs"}},
            {"method": "PATCH", "path": format!("/Users/{pid}"),
             "data": {"schemas": [PATCH_URN],
                      "Operations": [{"op": "add", "path": "nickName", "value": "Pat"}]}},
            {"method": "DELETE", "path": format!("/Users/{did}")},
        ]),
        Some(1),
    )
    .await;
    let statuses: Vec<&str> = ops.iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["201", "200", "200", "204"], "{ops:?}");
    assert!(ops[1]["location"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/Users/{bid}")));
    assert_ne!(
        ops[1]["version"],
        bver.as_str(),
        "a PUT changes the version"
    );
    assert!(ops[3]["location"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/Users/{did}")));
    assert_eq!(t.get(&format!("/Users/{did}")).await.status, 404);
    assert_eq!(
        t.get(&format!("/Users/{bid}")).await.json()["displayName"],
        "Babs"
    );

    // The same PUT again: its version is stale now (412), and with failOnErrors 1 the
    // rest of the request is not performed.
    let ops = bulk(
        &t,
        json!([
            {"method": "PUT", "path": format!("/Users/{bid}"), "version": bver,
             "data": {"schemas": [USER_URN], "userName": "Barbara", "displayName": "Again"}},
            {"method": "POST", "path": "/Users", "bulkId": "never",
             "data": {"schemas": [USER_URN], "userName": "Never"}},
        ]),
        Some(1),
    )
    .await;
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0]["status"], "412", "{ops:?}");
    assert_eq!(ops[0]["response"]["schemas"], json!([ERROR_URN]));
    let r = t
        .get("/Users?filter=userName%20eq%20%22Never%22")
        .await
        .json();
    assert_eq!(r["totalResults"], 0, "{r}");

    // Without failOnErrors every operation runs; an invalid one (no userName) is 400 with
    // its SCIM error, a failed POST has no location, a duplicate userName is 409.
    let ops = bulk(
        &t,
        json!([
            {"method": "POST", "path": "/Users", "bulkId": "bad",
             "data": {"schemas": [USER_URN]}},
            {"method": "POST", "path": "/Users", "bulkId": "dup",
             "data": {"schemas": [USER_URN], "userName": "alice"}},
            {"method": "POST", "path": "/Users", "data": {"userName": "no bulkId"}},
            {"method": "GET", "path": "/Users"},
            {"method": "DELETE", "path": "/Schemas/x"},
            {"method": "POST", "path": "/Users", "bulkId": "ok",
             "data": {"schemas": [USER_URN], "userName": "Fine"}},
        ]),
        None,
    )
    .await;
    let statuses: Vec<&str> = ops.iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(
        statuses,
        ["400", "409", "400", "400", "400", "201"],
        "{ops:?}"
    );
    assert!(ops[0].get("location").is_none());
    assert_eq!(ops[1]["response"]["scimType"], "uniqueness", "{ops:?}");
    for op in &ops[..5] {
        assert_eq!(op["response"]["schemas"], json!([ERROR_URN]), "{op}");
    }
}

#[tokio::test]
async fn limits_are_413_with_a_scim_error_and_bad_requests_400() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Bulk limits");
    let too_many: Vec<Value> = (0..1001)
        .map(|i| json!({"method": "DELETE", "path": format!("/Users/{i}")}))
        .collect();
    let r = t
        .post("/Bulk", &bulk_body(Value::Array(too_many), None))
        .await;
    let e = r.assert_scim_error(413, None);
    assert!(
        e["detail"].as_str().unwrap().contains("maxOperations"),
        "{e}"
    );

    let big = "x".repeat(1 << 20);
    let r = t
        .post(
            "/Bulk",
            &bulk_body(
                json!([{"method": "POST", "path": "/Users", "bulkId": "a",
                        "data": {"userName": "a", "nickName": big}}]),
                None,
            ),
        )
        .await;
    let e = r.assert_scim_error(413, None);
    assert!(
        e["detail"].as_str().unwrap().contains("maxPayloadSize"),
        "{e}"
    );

    let r = t.post("/Bulk", &json!({"schemas": [BULK_REQUEST]})).await;
    r.assert_scim_error(400, Some("invalidSyntax"));
    let r = t.post("/Bulk", &json!([1, 2])).await;
    r.assert_scim_error(400, Some("invalidSyntax"));
    let r = t.post("/Bulk", &bulk_body(json!([]), Some(0))).await;
    r.assert_scim_error(400, Some("invalidValue"));
    let dup = json!([
        {"method": "POST", "path": "/Users", "bulkId": "a", "data": {"userName": "a"}},
        {"method": "POST", "path": "/Users", "bulkId": "a", "data": {"userName": "b"}},
    ]);
    let r = t.post("/Bulk", &bulk_body(dup, None)).await;
    r.assert_scim_error(400, Some("invalidValue"));
    assert_eq!(t.get("/Users").await.json()["totalResults"], 0);
    // Bulk needs the tenant's token like every SCIM endpoint.
    let r = Reply::of(
        t.anon(Method::POST, "/Bulk")
            .header("content-type", SCIM_JSON)
            .body(bulk_body(json!([]), None).to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.assert_scim_error(401, None);
}

/// Each operation is audited like its single-request form, with the bulk request's
/// User-Agent and request id.
#[tokio::test]
async fn each_operation_is_audited_like_the_single_request() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Bulk audit");
    let r = Reply::of(
        t.send(
            Method::POST,
            "/Bulk",
            &bulk_body(
                json!([
                    {"method": "POST", "path": "/Users", "bulkId": "u",
                     "data": {"userName": "audited", "password": "never-in-the-log"}},
                    {"method": "POST", "path": "/Groups", "bulkId": "g",
                     "data": {"displayName": "Audited", "members": [{"value": "bulkId:u"}]}},
                    {"method": "DELETE", "path": "/Users/bulkId:u"},
                ]),
                None,
            ),
        )
        .header("user-agent", "Bulk Client 1.0")
        .header("x-request-id", "bulk-req-0001")
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let log = app.cli(&["audit", "--tenant", &t.id, "--json"]).ok().json();
    let mine: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["request_id"] == "bulk-req-0001")
        .collect();
    let actions: Vec<&str> = mine.iter().map(|e| e["action"].as_str().unwrap()).collect();
    for a in ["user_created", "group_created", "user_deleted"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    for e in &mine {
        assert_eq!(e["user_agent"], "Bulk Client 1.0", "{e}");
        assert_eq!(e["actor_kind"], "token", "{e}");
    }
    assert!(!log.to_string().contains("never-in-the-log"));
}

/// The rate limit is charged per operation: with 1 request/second (bursts of 2), a bulk
/// request of 20 operations cannot have them all performed at once; the refused ones are
/// 429 with a SCIM error, and the request itself still answers 200.
#[tokio::test]
async fn the_rate_limit_is_charged_per_operation() {
    let app = TestApp::spawn_with(Opts {
        args: vec!["--scim-rate-limit".into(), "1".into()],
        ..Default::default()
    })
    .await;
    let t = app.tenant("Bulk limited");
    let list: Vec<Value> = (0..20)
        .map(|i| {
            json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"),
                        "data": {"userName": format!("limited{i}")}})
        })
        .collect();
    let ops = bulk(&t, Value::Array(list), None).await;
    assert_eq!(ops.len(), 20);
    let limited: Vec<&Value> = ops.iter().filter(|o| o["status"] == "429").collect();
    assert!(!limited.is_empty(), "{ops:?}");
    for o in &limited {
        assert_eq!(o["response"]["schemas"], json!([ERROR_URN]), "{o}");
    }
    let created = ops.iter().filter(|o| o["status"] == "201").count();
    assert!(created < 20, "{ops:?}");
}

/// 1,000 operations in one request (the advertised maxOperations): 990 users and 10
/// groups of 99 members each, referenced by bulkId, on either backend.
#[tokio::test]
async fn a_thousand_operations_in_one_request() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Bulk 1000");
    let mut list = Vec::with_capacity(1000);
    for g in 0..10 {
        let members: Vec<Value> = (0..99)
            .map(|i| json!({"value": format!("bulkId:u{}", g * 99 + i)}))
            .collect();
        // Each group before its members: the references reorder the work.
        list.push(
            json!({"method": "POST", "path": "/Groups", "bulkId": format!("g{g}"),
                         "data": {"displayName": format!("group {g}"), "members": members}}),
        );
        for i in 0..99 {
            let n = g * 99 + i;
            list.push(json!({"method": "POST", "path": "/Users", "bulkId": format!("u{n}"),
                             "data": {"schemas": [USER_URN], "userName": format!("bulk{n}@example.test"),
                                      "emails": [{"value": format!("bulk{n}@example.test"), "primary": true}]}}));
        }
    }
    assert_eq!(list.len(), 1000);
    let ops = bulk(&t, Value::Array(list), None).await;
    assert_eq!(ops.len(), 1000);
    assert!(
        ops.iter().all(|o| o["status"] == "201"),
        "{:?}",
        ops.iter().find(|o| o["status"] != "201")
    );
    let users = t.get("/Users?count=1").await.json();
    assert_eq!(users["totalResults"], 990, "{users}");
    let groups = t.get("/Groups?excludedAttributes=members").await.json();
    assert_eq!(groups["totalResults"], 10, "{groups}");
    let g0 = t
        .get(&format!("/Groups/{}", id_of(&ops[0]["location"])))
        .await
        .json();
    assert_eq!(g0["members"].as_array().unwrap().len(), 99, "{g0}");
}
