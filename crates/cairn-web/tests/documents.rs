//! Snapshots of the SCIM documents clients read, as the router serves them: the
//! discovery endpoints (RFC 7644 §4), a full user with the enterprise extension and its
//! groups, a group with members, a ListResponse, a BulkResponse (RFC 7644 §3.7.3) and a
//! cursor page (RFC 9865), and every SCIM error body the service
//! returns (RFC 7644 §3.12). Each snapshot holds the status, the headers clients act on
//! and the body; what differs per run is redacted: the tenant's and resources' ids
//! (named after what they are, so a member still shows whom it points at), times, and
//! versions/ETags. A changed document fails the test: `cargo insta review` (or
//! `INSTA_UPDATE=always`, then `git diff`) to accept an intended change.
//!
//! Runs on the backend under test (`CAIRN_TEST_BACKEND`): both render the same documents.

use axum::body::Body;
use axum::http::{header, Method, Request};
use axum::response::IntoResponse;
use axum::Router;
use cairn_core::auth::OperatorCtx;
use cairn_core::clock::SystemClock;
use cairn_core::service::Services;
use cairn_testkit::TestDb;
use cairn_web::scim::group_writes::GroupLimits;
use cairn_web::scim::rate_limit::RateLimiter;
use cairn_web::{router, AppState};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const PUBLIC_URL: &str = "https://cairn.example";
const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The headers a SCIM client acts on; the rest (`x-request-id`, `content-length`) vary
/// or say nothing about the document.
const HEADERS: [&str; 5] = [
    "content-type",
    "etag",
    "location",
    "www-authenticate",
    "retry-after",
];

/// One tenant with SCIM on and a token, behind the real router.
struct Scim {
    app: Router,
    token: String,
    /// `/scim/v2/{tenant}`
    prefix: String,
    /// Ids in documents and the names they are shown under.
    labels: Vec<(String, String)>,
    _db: TestDb,
}

impl Scim {
    async fn new() -> Scim {
        Scim::with_rate_limit(0).await
    }

    async fn with_rate_limit(per_second: u32) -> Scim {
        let db = TestDb::new("cairn_web_docs").await;
        let services = Arc::new(Services::new(
            db.store.clone(),
            Arc::new(SystemClock::default()),
            time::Duration::days(30),
            PUBLIC_URL.to_owned(),
            Duration::ZERO,
        ));
        let tenant = services
            .create_tenant(&OperatorCtx::local_operator(), "Acme")
            .await
            .unwrap();
        let token = cairn_testkit::enable_scim(&services, &tenant.id).await;
        let state = AppState {
            services,
            metrics: Arc::new(cairn_web::metrics::Metrics::new()),
            vault: Arc::new(cairn_web::vault::VaultConfig {
                vault: cairn_vault::Vault::new(db.dir().join("vault")),
                quota_unit: Default::default(),
            }),
            scim_rate_limit: RateLimiter::per_second(per_second).map(Arc::new),
            trusted_proxies: Default::default(),
            vault_limits: cairn_web::vault::VaultLimits::new(64, 16),
            group_limits: Arc::new(GroupLimits::default()),
            request_log: None,
            oidc: Default::default(),
        };
        Scim {
            app: router(state),
            token,
            prefix: format!("/scim/v2/{}", tenant.id),
            labels: vec![(tenant.id.to_string(), "[tenant]".to_owned())],
            _db: db,
        }
    }

    /// Shows `id` as `[name]` in snapshots.
    fn label(&mut self, id: &str, name: &str) {
        self.labels.push((id.to_owned(), format!("[{name}]")));
    }

    /// The id labelled `[name]`.
    fn id(&self, name: &str) -> String {
        let label = format!("[{name}]");
        self.labels
            .iter()
            .find(|(_, l)| *l == label)
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| panic!("no id labelled {label}"))
    }

    /// A request to `{tenant}{path}` with the tenant's token, the body sent as
    /// `application/scim+json`.
    fn request(&self, method: Method, path: &str, body: Option<&Value>) -> Request<Body> {
        let b = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/scim+json")
                .body(Body::from(v.to_string())),
            None => b.body(Body::empty()),
        }
        .unwrap()
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Value {
        self.send(self.request(method, path, body)).await
    }

    /// Status, the [`HEADERS`] present, and the body (JSON, or the text when it is not),
    /// with the labelled ids replaced.
    async fn send(&self, req: Request<Body>) -> Value {
        let res = self.app.clone().oneshot(req).await.unwrap();
        self.document(res).await
    }

    async fn document(&self, res: axum::response::Response) -> Value {
        let status = res.status().as_u16();
        let mut headers = Map::new();
        for name in HEADERS {
            if let Some(v) = res.headers().get(name) {
                headers.insert(name.to_owned(), json!(v.to_str().unwrap()));
            }
        }
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 24)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
        let mut text = json!({"status": status, "headers": headers, "body": body}).to_string();
        for (id, name) in &self.labels {
            text = text.replace(id.as_str(), name);
        }
        serde_json::from_str(&text).unwrap()
    }

    /// Creates a resource (asserting 201), labels its id and returns the whole reply.
    async fn create(&mut self, path: &str, body: &Value, name: &str) -> Value {
        let doc = self.call(Method::POST, path, Some(body)).await;
        assert_eq!(doc["status"], 201, "{doc}");
        let id = doc["body"]["id"].as_str().unwrap().to_owned();
        self.label(&id, name);
        let mut text = doc.to_string();
        text = text.replace(&id, &format!("[{name}]"));
        serde_json::from_str(&text).unwrap()
    }
}

/// Redacts what changes from run to run in a resource or ListResponse reply: times,
/// versions and ETags (ids are labelled by [`Scim`]).
macro_rules! assert_document {
    ($name:expr, $doc:expr) => {
        insta::assert_json_snapshot!($name, $doc, {
            ".headers.etag" => "[etag]",
            ".body.meta.created" => "[time]",
            ".body.meta.lastModified" => "[time]",
            ".body.meta.version" => "[version]",
            ".body.Resources[].meta.created" => "[time]",
            ".body.Resources[].meta.lastModified" => "[time]",
            ".body.Resources[].meta.version" => "[version]",
        })
    };
}

/// Asserts what every SCIM error carries, then snapshots it.
macro_rules! assert_error {
    ($name:expr, $doc:expr, $status:expr, $scim_type:expr) => {{
        let doc: Value = $doc;
        assert_eq!(doc["status"], $status, "{doc}");
        assert_eq!(doc["body"]["schemas"], json!([ERROR_URN]), "{doc}");
        assert_eq!(doc["body"]["status"], $status.to_string(), "{doc}");
        let scim_type: Option<&str> = $scim_type;
        assert_eq!(doc["body"]["scimType"].as_str(), scim_type, "{doc}");
        insta::assert_json_snapshot!($name, doc);
    }};
}

/// Every attribute of RFC 7643 §4.1 and §4.3 that a client can write.
fn full_user() -> Value {
    json!({
        "schemas": [USER_URN, ENTERPRISE_URN],
        "externalId": "00u1a2b3c4",
        "userName": "bjensen@example.com",
        "name": {
            "formatted": "Ms. Barbara J Jensen, III",
            "familyName": "Jensen",
            "givenName": "Barbara",
            "middleName": "Jane",
            "honorificPrefix": "Ms.",
            "honorificSuffix": "III"
        },
        "displayName": "Babs Jensen",
        "nickName": "Babs",
        "profileUrl": "https://login.example.com/bjensen",
        "title": "Tour Guide",
        "userType": "Employee",
        "preferredLanguage": "en-US",
        "locale": "en-US",
        "timezone": "America/Los_Angeles",
        "active": true,
        "password": "t1meMa$heen",
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "phoneNumbers": [
            {"value": "555-555-5555", "type": "work"},
            {"value": "555-555-4444", "type": "mobile"}
        ],
        "ims": [{"value": "someaimhandle", "type": "aim"}],
        "photos": [{"value": "https://photos.example.com/profilephoto/72930000000Ccne/F", "type": "photo"}],
        "addresses": [{
            "type": "work",
            "streetAddress": "100 Universal City Plaza",
            "locality": "Hollywood",
            "region": "CA",
            "postalCode": "91608",
            "country": "USA",
            "formatted": "100 Universal City Plaza\nHollywood, CA 91608 USA",
            "primary": true
        }],
        "entitlements": [{"value": "backup-plus"}],
        "roles": [{"value": "tour-guide"}],
        "x509Certificates": [{"value": "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAwTjELMAkGA1UEBhMCVVMx"}],
        ENTERPRISE_URN: {
            "employeeNumber": "701984",
            "costCenter": "4130",
            "organization": "Universal Studios",
            "division": "Theme Park",
            "department": "Tour Operations",
            "manager": {"value": "26118915-6090-4610-87a4-49d0767a7ab4"}
        }
    })
}

fn plain_user(user_name: &str) -> Value {
    json!({"schemas": [USER_URN], "userName": user_name})
}

#[tokio::test]
async fn discovery_documents() {
    let s = Scim::new().await;
    for (name, path) in [
        ("service_provider_config", "/ServiceProviderConfig"),
        ("resource_types", "/ResourceTypes"),
        ("resource_type_user", "/ResourceTypes/User"),
        ("schemas", "/Schemas"),
        ("schema_user", &format!("/Schemas/{USER_URN}")),
        (
            "schema_enterprise_user",
            &format!("/Schemas/{ENTERPRISE_URN}"),
        ),
    ] {
        let doc = s.call(Method::GET, path, None).await;
        assert_eq!(doc["status"], 200, "{path}: {doc}");
        assert_document!(name, doc);
    }
}

#[tokio::test]
async fn a_full_user_a_group_with_members_and_a_list() {
    let mut s = Scim::new().await;
    let created = s.create("/Users", &full_user(), "bjensen").await;
    assert_document!("user_full_created", created);
    s.create("/Users", &plain_user("adam@example.com"), "adam")
        .await;
    s.create("/Users", &plain_user("zoe@example.com"), "zoe")
        .await;

    let users = [s.id("bjensen"), s.id("adam")];
    let group = json!({
        "schemas": [GROUP_URN],
        "displayName": "Tour Guides",
        "externalId": "grp-tour-guides",
        "members": [{"value": users[0]}, {"value": users[1]}]
    });
    let group = s.create("/Groups", &group, "tour-guides").await;
    assert_document!("group_with_members_created", group);

    let got = s
        .call(
            Method::GET,
            &format!("/Groups/{}", s.id("tour-guides")),
            None,
        )
        .await;
    assert_document!("group_with_members", got);

    // Read back: the user now lists its group.
    let got = s
        .call(Method::GET, &format!("/Users/{}", users[0]), None)
        .await;
    assert_document!("user_full", got);

    let list = s
        .call(
            Method::GET,
            "/Users?sortBy=userName&startIndex=1&count=2",
            None,
        )
        .await;
    assert_eq!(list["body"]["totalResults"], 3, "{list}");
    assert_document!("list_response_users", list);

    let groups = s.call(Method::GET, "/Groups", None).await;
    assert_document!("list_response_groups", groups);
}

#[tokio::test]
async fn error_bodies() {
    let mut s = Scim::new().await;
    s.create("/Users", &plain_user("taken@example.com"), "taken")
        .await;
    let user = format!("/Users/{}", s.id("taken"));
    let patch = |ops: Value| json!({"schemas": [PATCH_URN], "Operations": ops});

    let doc = s
        .call(Method::GET, "/Users?filter=userName%20eq", None)
        .await;
    assert_error!("error_400_invalid_filter", doc, 400, Some("invalidFilter"));

    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("{}/Users", s.prefix))
        .header(header::AUTHORIZATION, format!("Bearer {}", s.token))
        .header(header::CONTENT_TYPE, "application/scim+json")
        .body(Body::from("{\"userName\": "))
        .unwrap();
    let doc = s.send(req).await;
    assert_error!("error_400_invalid_syntax", doc, 400, Some("invalidSyntax"));

    let doc = s
        .call(
            Method::PATCH,
            &user,
            Some(&patch(json!([{"op": "replace", "value": "x"}]))),
        )
        .await;
    assert_error!("error_400_invalid_value", doc, 400, Some("invalidValue"));

    let doc = s
        .call(
            Method::PATCH,
            &user,
            Some(&patch(
                json!([{"op": "replace", "path": "nosuch", "value": "x"}]),
            )),
        )
        .await;
    assert_error!("error_400_invalid_path", doc, 400, Some("invalidPath"));

    let doc = s
        .call(
            Method::PATCH,
            &user,
            Some(&patch(json!([{"op": "remove"}]))),
        )
        .await;
    assert_error!("error_400_no_target", doc, 400, Some("noTarget"));

    let doc = s
        .call(
            Method::PATCH,
            &user,
            Some(&patch(
                json!([{"op": "replace", "path": "id", "value": "x"}]),
            )),
        )
        .await;
    assert_error!("error_400_mutability", doc, 400, Some("mutability"));

    let ops: Vec<Value> = (0..1001)
        .map(|i| json!({"op": "replace", "path": "displayName", "value": format!("v{i}")}))
        .collect();
    let doc = s.call(Method::PATCH, &user, Some(&patch(json!(ops)))).await;
    assert_error!("error_400_too_many", doc, 400, Some("tooMany"));

    let mut anonymous = s.request(Method::GET, "/Users", None);
    anonymous.headers_mut().remove(header::AUTHORIZATION);
    let doc = s.send(anonymous).await;
    assert_error!("error_401", doc, 401, None);

    let doc = s
        .call(
            Method::GET,
            "/Users/6f1c0000-0000-4000-8000-000000000000",
            None,
        )
        .await;
    assert_error!("error_404_user", doc, 404, None);
    let doc = s.call(Method::GET, "/Nothing", None).await;
    assert_error!("error_404_endpoint", doc, 404, None);
    let doc = s.call(Method::GET, "/Schemas/urn:nothing", None).await;
    assert_error!("error_404_schema", doc, 404, None);

    let doc = s
        .call(Method::PUT, "/Users", Some(&plain_user("x@example.com")))
        .await;
    assert_error!("error_405", doc, 405, None);

    let doc = s
        .call(
            Method::POST,
            "/Users",
            Some(&plain_user("Taken@example.com")),
        )
        .await;
    assert_error!("error_409_uniqueness", doc, 409, Some("uniqueness"));

    let mut stale = s.request(
        Method::PATCH,
        &user,
        Some(&patch(
            json!([{"op": "replace", "path": "title", "value": "x"}]),
        )),
    );
    stale
        .headers_mut()
        .insert(header::IF_MATCH, "W/\"999\"".parse().unwrap());
    let doc = s.send(stale).await;
    assert_error!("error_412", doc, 412, None);

    let big = json!({"schemas": [USER_URN], "userName": "big@example.com", "displayName": "x".repeat((1 << 20) + 10)});
    let doc = s.call(Method::POST, "/Users", Some(&big)).await;
    assert_error!("error_413", doc, 413, None);

    let mut xml = s.request(Method::POST, "/Users", Some(&plain_user("x@example.com")));
    xml.headers_mut()
        .insert(header::CONTENT_TYPE, "application/xml".parse().unwrap());
    let doc = s.send(xml).await;
    assert_error!("error_415", doc, 415, None);
}

/// The tenant's SCIM request budget spent: 429 with `Retry-After`.
#[tokio::test]
async fn error_body_of_the_rate_limit() {
    let s = Scim::with_rate_limit(1).await;
    // A burst of 2 at 1 request/second: the third request in a row is refused unless a
    // whole second passes between them; the loop's bound only covers a stalled machine.
    for _ in 0..50 {
        let doc = s.call(Method::GET, "/ServiceProviderConfig", None).await;
        if doc["status"] == 429 {
            assert_error!("error_429", doc, 429, None);
            return;
        }
        assert_eq!(doc["status"], 200, "{doc}");
    }
    panic!("50 requests in a row and none refused");
}

/// The two server-side failures, rendered as the router renders them: a handler's panic
/// (the catch-panic layer) and storage that is unavailable. Neither can be provoked
/// through the router without injecting a fault; it/faults.rs does that end to end.
#[tokio::test]
async fn error_bodies_of_server_failures() {
    let s = Scim::new().await;
    let res = cairn_web::ops::panic_response(Box::new("boom"));
    assert_error!("error_500_panic", s.document(res).await, 500, None);

    let res = cairn_web::scim::response::ApiError::from(cairn_core::Error::Internal(
        "disk on fire".into(),
    ))
    .into_response();
    let doc = s.document(res).await;
    assert!(!doc.to_string().contains("disk on fire"), "{doc}");
    assert_error!("error_500_internal", doc, 500, None);

    let res = cairn_web::scim::response::ApiError::from(cairn_core::Error::Unavailable(
        "database is locked".into(),
    ))
    .into_response();
    let doc = s.document(res).await;
    assert!(!doc.to_string().contains("locked"), "{doc}");
    assert_error!("error_503", doc, 503, None);
}

/// A BulkResponse (RFC 7644 §3.7.3): created resources with their locations and versions,
/// a failed operation with its error; and a cursor page (RFC 9865) with its errors.
#[tokio::test]
async fn a_bulk_response_and_a_cursor_page() {
    let mut s = Scim::new().await;
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Groups", "bulkId": "ytrewq",
             "data": {"schemas": [GROUP_URN], "displayName": "Tour Guides",
                      "members": [{"type": "User", "value": "bulkId:qwerty"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "qwerty",
             "data": {"schemas": [USER_URN], "userName": "alice"}},
            {"method": "POST", "path": "/Users", "bulkId": "invalid",
             "data": {"schemas": [USER_URN]}},
        ]
    });
    let doc = s.call(Method::POST, "/Bulk", Some(&body)).await;
    for (i, name) in [(0, "tour-guides"), (1, "alice")] {
        let loc = doc["body"]["Operations"][i]["location"].as_str().unwrap();
        s.label(loc.rsplit('/').next().unwrap(), name);
    }
    let mut text = doc.to_string();
    for (id, name) in &s.labels {
        text = text.replace(id.as_str(), name);
    }
    let doc: Value = serde_json::from_str(&text).unwrap();
    insta::assert_json_snapshot!("bulk_response", doc, {
        ".body.Operations[].version" => "[version]",
    });

    s.create("/Users", &plain_user("bob@example.com"), "bob")
        .await;
    let page = s.call(Method::GET, "/Users?cursor=&count=1", None).await;
    assert!(page["body"]["nextCursor"].is_string(), "{page}");
    insta::assert_json_snapshot!("cursor_page_users", page, {
        ".body.nextCursor" => "[cursor]",
        ".body.Resources[].meta.created" => "[time]",
        ".body.Resources[].meta.lastModified" => "[time]",
        ".body.Resources[].meta.version" => "[version]",
    });
    assert_error!(
        "error_invalid_cursor",
        s.call(Method::GET, "/Users?cursor=forged&count=1", None)
            .await,
        400,
        Some("invalidCursor")
    );
    assert_error!(
        "error_invalid_count",
        s.call(Method::GET, "/Users?cursor=&count=0", None).await,
        400,
        Some("invalidCount")
    );
}
