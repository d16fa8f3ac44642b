//! Tests of the dashboard through the router (tower `oneshot`), against a real store
//! (SQLite; PostgreSQL with `CAIRN_TEST_BACKEND=postgres`, server from
//! `CAIRN_TEST_POSTGRES_URL`) and a clock the tests move: sessions, expiry, throttling,
//! CSRF and origin checks, roles, the one-time token display, escaping, paging and restore.
//! The same harness checks that SCIM group bounds belong to one application state.

use crate::metrics::Metrics;
use crate::scim::group_writes::{GroupLimits, GroupWrite};
use crate::{router, AppState};
use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use cairn_core::audit::RequestMeta;
use cairn_core::auth::{OperatorCtx, ScimCtx, TokenHash};
use cairn_core::clock::Clock;
use cairn_core::ids::{TenantId, UserName};
use cairn_core::service::{Authority, Services};
use cairn_core::store::{Role, SettingsChange};
use cairn_core::user::UserData;
use cairn_testkit::TestDb;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tower::ServiceExt;

const ORIGIN: &str = "http://cairn.test";
const ADMIN: &str = "admin@acme.test";
const VIEWER: &str = "viewer@acme.test";
const PASSWORD: &str = "correct horse battery";
/// The client address of the harness's requests unless a test says otherwise.
const CLIENT: [u8; 4] = [192, 0, 2, 1];

mod device_keys;

struct TestClock(Mutex<OffsetDateTime>);

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

impl TestClock {
    fn advance(&self, d: time::Duration) {
        *self.0.lock().unwrap() += d;
    }
}

struct Harness {
    app: Router,
    state: AppState,
    services: Arc<Services>,
    clock: Arc<TestClock>,
    tenant: TenantId,
    /// The store's database, and the vault's directory beside it.
    _db: TestDb,
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
    /// The value of the first `name="csrf"` hidden field.
    fn csrf(&self) -> String {
        field_value(&self.body, "name=\"csrf\" value=\"")
    }
}

fn field_value(body: &str, marker: &str) -> String {
    let i = body.find(marker).expect("field in page") + marker.len();
    body[i..].split('"').next().unwrap().to_owned()
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Harness {
    async fn new() -> Harness {
        Harness::with_url(ORIGIN).await
    }

    async fn with_url(public_url: &str) -> Harness {
        let db = TestDb::new("cairn_web_test").await;
        let store = db.store.clone();
        let clock = Arc::new(TestClock(Mutex::new(OffsetDateTime::now_utc())));
        let services = Arc::new(Services::new(
            store,
            clock.clone(),
            time::Duration::days(30),
            public_url.to_owned(),
            Duration::from_millis(0),
        ));
        let op = OperatorCtx::local_operator();
        let tenant = services.create_tenant(&op, "Acme").await.unwrap();
        for (email, role) in [(ADMIN, Role::Administrator), (VIEWER, Role::Viewer)] {
            services
                .create_dashboard_user(&op, &tenant.id, email, role, PASSWORD)
                .await
                .unwrap();
        }
        let state = AppState {
            services: services.clone(),
            metrics: Arc::new(Metrics::new()),
            vault: Arc::new(crate::vault::VaultConfig {
                vault: cairn_vault::Vault::new(db.dir().join("vault")),
                quota_unit: Default::default(),
            }),
            scim_rate_limit: None,
            trusted_proxies: Default::default(),
            vault_limits: crate::vault::VaultLimits::new(64, 16),
            group_limits: Default::default(),
            request_log: None,
            oidc: Default::default(),
        };
        Harness {
            app: router(state.clone()),
            state,
            services,
            clock,
            tenant: tenant.id,
            _db: db,
        }
    }

    async fn send(&self, req: Request<Body>) -> Resp {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 22)
            .await
            .unwrap();
        Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Resp {
        let mut b = Request::builder().method(Method::GET).uri(path);
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }

    async fn post(
        &self,
        path: &str,
        cookie: Option<&str>,
        origin: Option<&str>,
        body: String,
    ) -> Resp {
        self.post_from(CLIENT, path, cookie, origin, body).await
    }

    /// [`Harness::post`] from the client address `from`.
    async fn post_from(
        &self,
        from: [u8; 4],
        path: &str,
        cookie: Option<&str>,
        origin: Option<&str>,
        body: String,
    ) -> Resp {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        let mut req = b.body(Body::from(body)).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((from, 40000))));
        self.send(req).await
    }

    /// Signs in through the login form; returns the response of the POST and the
    /// `name=value` session cookie it set, if any.
    async fn try_sign_in(&self, email: &str, password: &str) -> (Resp, Option<String>) {
        self.try_sign_in_from(CLIENT, email, password).await
    }

    /// [`Harness::try_sign_in`] from the client address `from`.
    async fn try_sign_in_from(
        &self,
        from: [u8; 4],
        email: &str,
        password: &str,
    ) -> (Resp, Option<String>) {
        let page = self.get("/login", None).await;
        assert_eq!(page.status, StatusCode::OK);
        let login_cookie = page.cookies()[0].split(';').next().unwrap().to_owned();
        let res = self
            .post_from(
                from,
                "/login",
                Some(&login_cookie),
                Some(ORIGIN),
                form(&[
                    ("csrf", &page.csrf()),
                    ("email", email),
                    ("password", password),
                    ("next", "/accounts"),
                ]),
            )
            .await;
        let session = res
            .cookies()
            .into_iter()
            .find(|c| c.contains("cairn_session=") && !c.contains("Max-Age=0"))
            .map(|c| c.split(';').next().unwrap().to_owned());
        (res, session)
    }

    async fn sign_in(&self, email: &str) -> String {
        let (res, cookie) = self.try_sign_in(email, PASSWORD).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
        cookie.expect("session cookie")
    }

    /// This harness's state with other group bounds (a second application over the same
    /// services and store, as a second router in one process would be).
    fn state_with(&self, group_limits: Arc<GroupLimits>) -> AppState {
        AppState {
            group_limits,
            ..self.state.clone()
        }
    }

    /// An authenticated SCIM capability, as the SCIM endpoints would get it.
    async fn scim_ctx(&self) -> ScimCtx {
        let token = self.scim_token().await;
        self.services
            .authenticate_scim(
                self.tenant.as_str(),
                Some(&format!("Bearer {token}")),
                Some("Okta SCIM Client 1.0.0"),
            )
            .await
            .unwrap()
    }

    /// Turns SCIM on for the tenant and returns a new SCIM bearer token.
    async fn scim_token(&self) -> String {
        cairn_testkit::enable_scim(&self.services, &self.tenant).await
    }

    async fn provision(&self, ctx: &ScimCtx, user_name: &str, display: &str) -> String {
        let data = UserData {
            user_name: UserName::parse(user_name).unwrap(),
            external_id: None,
            display_name: Some(display.to_owned()),
            email: Some(user_name.to_owned()),
            active: true,
            doc: serde_json::json!({"userName": user_name, "displayName": display}),
        };
        let meta = RequestMeta {
            user_agent: Some("Okta SCIM Client 1.0.0".into()),
            request_id: None,
        };
        self.services
            .create_user(ctx, data, &meta)
            .await
            .unwrap()
            .id
            .to_string()
    }
}

#[tokio::test]
async fn pages_need_a_session() {
    let h = Harness::new().await;
    for path in [
        "/accounts",
        "/activity",
        "/settings/scim",
        "/accounts/6f1c0000-0000-4000-8000-000000000000",
    ] {
        let r = h.get(path, None).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        assert!(r.location().starts_with("/login?next=%2F"), "{path}");
    }
    let forged = h
        .get(
            "/accounts",
            Some(&format!("cairn_session={}", "a".repeat(64))),
        )
        .await;
    assert_eq!(forged.status, StatusCode::SEE_OTHER);
    assert_eq!(h.get("/login", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn sign_in_sets_a_strict_cookie_rotates_the_id_and_sign_out_ends_it() {
    let h = Harness::new().await;
    let (res, cookie) = h.try_sign_in(ADMIN, PASSWORD).await;
    assert_eq!(res.location(), "/accounts");
    let set = res
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("cairn_session="))
        .unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
    assert!(!set.contains("Secure"), "plain http: no Secure attribute");
    let first = cookie.unwrap();
    let page = h.get("/accounts", Some(&first)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(ADMIN));

    // Signing in again while holding a session yields a new id and ends the old one.
    let login = h.get("/login", None).await;
    let login_cookie = login.cookies()[0].split(';').next().unwrap().to_owned();
    let res = h
        .post(
            "/login",
            Some(&format!("{login_cookie}; {first}")),
            Some(ORIGIN),
            form(&[
                ("csrf", &login.csrf()),
                ("email", ADMIN),
                ("password", PASSWORD),
            ]),
        )
        .await;
    let second = res
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("cairn_session="))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .unwrap();
    assert_ne!(first, second);
    assert_eq!(
        h.get("/accounts", Some(&first)).await.status,
        StatusCode::SEE_OTHER
    );
    let page = h.get("/accounts", Some(&second)).await;
    assert_eq!(page.status, StatusCode::OK);

    let out = h
        .post(
            "/logout",
            Some(&second),
            Some(ORIGIN),
            form(&[("csrf", &page.csrf())]),
        )
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.cookies().iter().any(|c| c.contains("Max-Age=0")));
    assert_eq!(
        h.get("/accounts", Some(&second)).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn https_public_url_gives_a_secure_host_cookie() {
    let h = Harness::with_url("https://backup.example.com").await;
    let page = h.get("/login", None).await;
    let login_cookie = page.cookies()[0].split(';').next().unwrap().to_owned();
    let res = h
        .post(
            "/login",
            Some(&login_cookie),
            Some("https://backup.example.com"),
            form(&[
                ("csrf", &page.csrf()),
                ("email", ADMIN),
                ("password", PASSWORD),
            ]),
        )
        .await;
    let set = res
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-cairn_session="))
        .expect("__Host- cookie");
    assert!(set.contains("; Secure") && set.contains("Path=/"));
}

#[tokio::test]
async fn sessions_expire_when_idle_and_after_twelve_hours() {
    let h = Harness::new().await;
    let c = h.sign_in(ADMIN).await;
    h.clock.advance(time::Duration::minutes(29));
    assert_eq!(h.get("/accounts", Some(&c)).await.status, StatusCode::OK);
    h.clock.advance(time::Duration::minutes(31));
    assert_eq!(
        h.get("/accounts", Some(&c)).await.status,
        StatusCode::SEE_OTHER,
        "idle for 31 minutes"
    );

    let c = h.sign_in(ADMIN).await;
    for _ in 0..35 {
        h.clock.advance(time::Duration::minutes(20));
        assert_eq!(h.get("/accounts", Some(&c)).await.status, StatusCode::OK);
    }
    h.clock.advance(time::Duration::minutes(20));
    assert_eq!(
        h.get("/accounts", Some(&c)).await.status,
        StatusCode::SEE_OTHER,
        "past the absolute lifetime"
    );
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_account_and_per_address() {
    let h = Harness::new().await;
    for _ in 0..5 {
        let (r, c) = h.try_sign_in(ADMIN, "wrong password!!").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.body.contains("The email or password is incorrect."));
        assert!(c.is_none());
    }
    // Even the right password is refused now, with a helpful message.
    let (r, c) = h.try_sign_in(ADMIN, PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        r.body.contains("Too many failed sign-in attempts"),
        "{}",
        r.body
    );
    assert!(r.body.contains("try again in 15 minutes"), "{}", r.body);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    assert!(c.is_none());
    // Another account from the same address is not affected yet.
    h.sign_in(VIEWER).await;
    h.clock.advance(time::Duration::minutes(16));
    h.sign_in(ADMIN).await;

    // Per address: many unknown emails from one address.
    for i in 0..20 {
        let (r, _) = h
            .try_sign_in(&format!("nobody{i}@acme.test"), "whatever password")
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let (r, _) = h.try_sign_in(VIEWER, PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}

/// Issue 16, finding 9: failures from one address lock that address out of the account,
/// not the account; failures from many addresses slow the account (one attempt per
/// `ACCOUNT_SLOW_SPACING`) without locking it.
#[tokio::test]
async fn failures_elsewhere_slow_but_do_not_lock_out_an_account() {
    use cairn_core::session::{ACCOUNT_SLOW_AFTER, ACCOUNT_SLOW_SPACING};
    let h = Harness::new().await;
    let attacker = [203, 0, 113, 9];
    for _ in 0..5 {
        let (r, _) = h
            .try_sign_in_from(attacker, ADMIN, "wrong password!!")
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let (r, _) = h.try_sign_in_from(attacker, ADMIN, PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // The administrator, from their own address, is not locked out.
    h.sign_in(ADMIN).await;

    // Failures from many addresses (two each) past the account-wide count: the account
    // is slowed, even for the right password from a clean address...
    for i in 0..ACCOUNT_SLOW_AFTER {
        let from = [198, 51, 100, (i / 2) as u8];
        let (r, _) = h.try_sign_in_from(from, ADMIN, "wrong password!!").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let (r, _) = h.try_sign_in(ADMIN, PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: i64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry <= ACCOUNT_SLOW_SPACING.whole_seconds(), "{retry}");
    // ...but not locked: after the spacing it goes through.
    h.clock.advance(ACCOUNT_SLOW_SPACING);
    h.sign_in(ADMIN).await;
}

#[tokio::test]
async fn posts_without_csrf_token_or_from_another_origin_are_refused() {
    let h = Harness::new().await;
    let c = h.sign_in(ADMIN).await;
    let page = h.get("/settings/scim", Some(&c)).await;
    let csrf = page.csrf();
    let save = |token: &str| {
        form(&[
            ("csrf", token),
            ("scim_enabled", "on"),
            ("account_size_gb", "77"),
            ("action", "save"),
        ])
    };
    let r = h
        .post("/settings/scim", Some(&c), Some(ORIGIN), save(""))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("Form refused"));
    let r = h
        .post(
            "/settings/scim",
            Some(&c),
            Some(ORIGIN),
            save(&"0".repeat(64)),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = h
        .post(
            "/settings/scim",
            Some(&c),
            Some("https://evil.example"),
            save(&csrf),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = h.post("/settings/scim", Some(&c), None, save(&csrf)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no Origin and no Referer");
    assert_eq!(
        h.services
            .tenant(&h.tenant)
            .await
            .unwrap()
            .account_size_gb
            .get(),
        10,
        "nothing changed"
    );

    let r = h
        .post("/settings/scim", Some(&c), Some(ORIGIN), save(&csrf))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        h.services
            .tenant(&h.tenant)
            .await
            .unwrap()
            .account_size_gb
            .get(),
        77
    );

    // Sign-in itself: the double-submit token must match its cookie.
    let login = h.get("/login", None).await;
    let r = h
        .post(
            "/login",
            Some(&format!("cairn_login={}", "1".repeat(64))),
            Some(ORIGIN),
            form(&[
                ("csrf", &login.csrf()),
                ("email", ADMIN),
                ("password", PASSWORD),
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn viewers_may_look_but_not_change_settings_or_restore() {
    let h = Harness::new().await;
    let ctx = h.scim_ctx().await;
    let id = h.provision(&ctx, "gone@acme.test", "Gone").await;
    h.services
        .delete_user(&ctx, &id, None, &RequestMeta::default())
        .await
        .unwrap();

    let c = h.sign_in(VIEWER).await;
    let accounts = h.get("/accounts", Some(&c)).await;
    assert_eq!(accounts.status, StatusCode::OK);
    assert!(
        !accounts.body.contains("SCIM User Management"),
        "menu hides it"
    );
    assert!(accounts.body.contains("viewer"));
    assert_eq!(h.get("/activity", Some(&c)).await.status, StatusCode::OK);
    let account = h.get(&format!("/accounts/{id}"), Some(&c)).await;
    assert_eq!(account.status, StatusCode::OK);
    assert!(!account.body.contains(">Restore<"));

    let r = h.get("/settings/scim", Some(&c)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let csrf = accounts.csrf();
    let r = h
        .post(
            "/settings/scim",
            Some(&c),
            Some(ORIGIN),
            form(&[
                ("csrf", &csrf),
                ("scim_enabled", "on"),
                ("account_size_gb", "5"),
                ("action", "save"),
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = h
        .post(
            "/settings/scim",
            Some(&c),
            Some(ORIGIN),
            form(&[("csrf", &csrf), ("action", "generate-confirmed")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = h
        .post(
            &format!("/accounts/{id}/restore"),
            Some(&c),
            Some(ORIGIN),
            form(&[("csrf", &csrf)]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let admin = h.sign_in(ADMIN).await;
    let page = h.get("/accounts", Some(&admin)).await;
    assert!(page.body.contains("SCIM User Management"));
}

#[tokio::test]
async fn the_token_is_shown_once_and_stored_only_as_a_hash() {
    let h = Harness::new().await;
    let c = h.sign_in(ADMIN).await;
    let page = h.get("/settings/scim", Some(&c)).await;
    assert!(page.body.contains("No token yet"));
    let csrf = page.csrf();
    let r = h
        .post(
            "/settings/scim",
            Some(&c),
            Some(ORIGIN),
            form(&[
                ("csrf", &csrf),
                ("token_id", ""),
                ("scim_enabled", "on"),
                ("account_size_gb", "50"),
                ("action", "generate"),
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let token = field_value(&r.body, "id=\"new_token\" type=\"text\" value=\"");
    assert!(token.starts_with("cairn_") && token.len() == 70);
    assert!(r.body.contains("will not be shown again"));
    assert!(
        r.body.contains("unsaved changes"),
        "typed values survive Generate"
    );
    assert!(r
        .body
        .contains("name=\"scim_enabled\" value=\"on\" checked"));
    assert_eq!(r.headers.get(header::CACHE_CONTROL).unwrap(), "no-store");

    // Stored: SHA-256 only.
    let state = h
        .services
        .store
        .scim_auth_state(&h.tenant)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.tokens.len(), 1);
    assert!(state.tokens[0].1.ct_eq(&TokenHash::of(&token)));
    assert_ne!(&state.tokens[0].1.as_bytes()[..], token.as_bytes());

    // A reload never shows it again.
    let reload = h.get("/settings/scim", Some(&c)).await;
    assert!(!reload.body.contains(&token));
    assert!(!reload.body.contains("new_token"));
    assert!(reload.body.contains("Not used yet"));
    let token_id = field_value(&reload.body, "name=\"token_id\" value=\"");

    // Resubmitting the same "Generate" (browser reload of the POST) changes nothing and
    // shows no token.
    let again = h
        .post(
            "/settings/scim",
            Some(&c),
            Some(ORIGIN),
            form(&[
                ("csrf", &csrf),
                ("token_id", ""),
                ("action", "generate-confirmed"),
            ]),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(!again.body.contains("new_token"));

    // With a token in place, Generate asks first (without the script's confirm()).
    let ask = h
        .post(
            "/settings/scim",
            Some(&c),
            Some(ORIGIN),
            form(&[
                ("csrf", &csrf),
                ("token_id", &token_id),
                ("action", "generate"),
            ]),
        )
        .await;
    assert!(ask.body.contains("Generate a new token?"));
    assert!(!ask.body.contains("new_token"));
    let still = h.services.token_info(&h.tenant).await.unwrap().unwrap();
    assert_eq!(still.id.to_string(), token_id);

    let confirmed = h
        .post(
            "/settings/scim",
            Some(&c),
            Some(ORIGIN),
            form(&[
                ("csrf", &csrf),
                ("token_id", &token_id),
                ("action", "generate-confirmed"),
            ]),
        )
        .await;
    let second = field_value(&confirmed.body, "id=\"new_token\" type=\"text\" value=\"");
    assert_ne!(second, token);

    // "Okta last connected …" after the token is used.
    h.services
        .update_settings(
            Authority::Operator(&OperatorCtx::local_operator()),
            &h.tenant,
            SettingsChange {
                scim_enabled: Some(true),
                account_size_gb: None,
                max_account_size_gb: None,
                stale_days: None,
            },
            &RequestMeta::default(),
        )
        .await
        .unwrap();
    h.services
        .authenticate_scim(
            h.tenant.as_str(),
            Some(&second),
            Some("Okta SCIM Client 1.0.0"),
        )
        .await
        .unwrap();
    h.clock.advance(time::Duration::minutes(2));
    let page = h.get("/settings/scim", Some(&c)).await;
    assert!(
        page.body.contains("Okta last connected 2 minutes ago"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn account_size_is_validated_inline() {
    let h = Harness::new().await;
    let c = h.sign_in(ADMIN).await;
    let csrf = h.get("/settings/scim", Some(&c)).await.csrf();
    for bad in ["0", "abc", "5.5", "-1", "2000000", ""] {
        let r = h
            .post(
                "/settings/scim",
                Some(&c),
                Some(ORIGIN),
                form(&[
                    ("csrf", &csrf),
                    ("account_size_gb", bad),
                    ("action", "save"),
                ]),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert!(r.body.contains("class=\"field-error\""), "{bad}");
        assert!(r.body.contains("aria-invalid=\"true\""), "{bad}");
    }
    let saved = h.get("/settings/scim?saved=1", Some(&c)).await;
    assert!(saved.body.contains("Settings saved"));
    assert_eq!(
        h.services
            .tenant(&h.tenant)
            .await
            .unwrap()
            .account_size_gb
            .get(),
        10
    );
}

#[tokio::test]
async fn identity_provider_values_are_escaped_everywhere() {
    let h = Harness::new().await;
    let ctx = h.scim_ctx().await;
    let payload = "<img src=x onerror=alert(1)>";
    let id = h.provision(&ctx, "xss@acme.test", payload).await;
    let c = h.sign_in(ADMIN).await;
    for path in [
        "/accounts".to_owned(),
        format!("/accounts/{id}"),
        "/activity".to_owned(),
        format!("/accounts?q={}", enc(payload)),
    ] {
        let r = h.get(&path, Some(&c)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(!r.body.contains("<img"), "{path}");
        let csp = r.headers.get(header::CONTENT_SECURITY_POLICY).unwrap();
        assert!(csp.to_str().unwrap().contains("frame-ancestors 'none'"));
        assert!(!r.body.contains("<script>"), "no inline script");
    }
    let r = h.get("/accounts", Some(&c)).await;
    assert!(r.body.contains("&#60;img src=x onerror=alert(1)&#62;"));
}

#[tokio::test]
async fn accounts_are_searched_and_paged_on_the_server() {
    let h = Harness::new().await;
    let ctx = h.scim_ctx().await;
    for i in 0..120 {
        h.provision(&ctx, &format!("user{i:03}@acme.test"), &format!("User {i}"))
            .await;
    }
    let c = h.sign_in(VIEWER).await;
    let p1 = h.get("/accounts", Some(&c)).await;
    assert!(p1.body.contains("120 accounts"));
    assert_eq!(p1.body.matches("<tr class=\"status-").count(), 50);
    assert!(p1.body.contains("user000@") && !p1.body.contains("user050@"));
    assert!(!p1.body.contains("rel=\"prev\""));
    let href = |body: &str, rel: &str| {
        let i = body.find(&format!("rel=\"{rel}\"")).unwrap();
        let start = body[..i].rfind("href=\"").unwrap() + 6;
        body[start..]
            .split('"')
            .next()
            .unwrap()
            .replace("&#38;", "&")
            .replace("&amp;", "&")
    };
    let p2 = h.get(&href(&p1.body, "next"), Some(&c)).await;
    assert!(p2.body.contains("user050@") && p2.body.contains("user099@"));
    assert!(!p2.body.contains("user049@") && !p2.body.contains("user100@"));
    let p3 = h.get(&href(&p2.body, "next"), Some(&c)).await;
    assert_eq!(p3.body.matches("<tr class=\"status-").count(), 20);
    assert!(!p3.body.contains("rel=\"next\""));
    let back = h.get(&href(&p3.body, "prev"), Some(&c)).await;
    assert!(back.body.contains("user050@") && back.body.contains("user099@"));
    let back1 = h.get(&href(&back.body, "prev"), Some(&c)).await;
    assert!(back1.body.contains("user000@") && !back1.body.contains("rel=\"prev\""));

    let s = h.get("/accounts?q=USER11", Some(&c)).await;
    assert!(s.body.contains("10 accounts match"), "{}", s.body);
    let s = h.get("/accounts?q=user%2011&status=active", Some(&c)).await;
    // "User 11" and "User 110" … "User 119".
    assert!(s.body.contains("11 accounts match"), "display name prefix");
    let s = h.get("/accounts?status=suspended", Some(&c)).await;
    assert!(s.body.contains("0 accounts match"));
}

#[tokio::test]
async fn a_deleted_account_is_listed_and_restored_from_its_page() {
    let h = Harness::new().await;
    let ctx = h.scim_ctx().await;
    let id = h.provision(&ctx, "pat@acme.test", "Pat").await;
    h.services
        .delete_user(&ctx, &id, None, &RequestMeta::default())
        .await
        .unwrap();
    let c = h.sign_in(ADMIN).await;
    let list = h.get("/accounts?status=deleted", Some(&c)).await;
    assert!(list.body.contains("pat@acme.test"));
    assert!(list.body.contains("data purged on"));
    let page = h.get(&format!("/accounts/{id}"), Some(&c)).await;
    assert!(page.body.contains(">Restore<"));
    assert!(page.body.contains("Account deleted"));
    assert!(page.body.contains("Account created"));
    let r = h
        .post(
            &format!("/accounts/{id}/restore"),
            Some(&c),
            Some(ORIGIN),
            form(&[("csrf", &page.csrf())]),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = h.get(r.location(), Some(&c)).await;
    assert!(page.body.contains("Account restored"));
    assert!(page.body.contains("status active"));
    assert!(!page.body.contains(">Restore<"));

    let act = h
        .get(
            "/activity?action=user_restored&account=PAT%40acme.test",
            Some(&c),
        )
        .await;
    assert!(act.body.contains("Account restored"));
    assert!(act.body.contains("<svg class=\"chart\""));
    let none = h.get("/activity?action=user_purged", Some(&c)).await;
    assert!(none.body.contains("No activity matches these filters"));
}

#[tokio::test]
async fn groups_page_lists_groups_and_administrators_set_their_size() {
    use cairn_core::group::GroupData;
    use cairn_core::ids::UserId;
    let h = Harness::new().await;
    let ctx = h.scim_ctx().await;
    let u = h.provision(&ctx, "member@acme.test", "Member").await;
    let g = h
        .services
        .create_group(
            &ctx,
            GroupData {
                display_name: "<Engineering>".into(),
                external_id: None,
                doc: serde_json::json!({"displayName": "<Engineering>"}),
            },
            &[UserId::parse(&u).unwrap()],
            &[],
            &RequestMeta::default(),
        )
        .await
        .unwrap();

    // Viewers see the page, without the form, and cannot post it.
    let v = h.sign_in(VIEWER).await;
    let page = h.get("/groups", Some(&v)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("&#60;Engineering&#62;"), "escaped");
    assert!(!page.body.contains("<Engineering>"));
    assert!(!page.body.contains("name=\"size_gb\""));
    let r = h
        .post(
            &format!("/groups/{}/size", g.id),
            Some(&v),
            Some(ORIGIN),
            form(&[("csrf", &page.csrf()), ("size_gb", "200")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let a = h.sign_in(ADMIN).await;
    let page = h.get("/groups", Some(&a)).await;
    assert!(page.body.contains("name=\"size_gb\""));
    assert!(page.body.contains(">1<"), "member count: {}", page.body);
    // Without the CSRF token: refused.
    let r = h
        .post(
            &format!("/groups/{}/size", g.id),
            Some(&a),
            Some(ORIGIN),
            form(&[("size_gb", "200")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Invalid size: shown inline, nothing saved.
    let r = h
        .post(
            &format!("/groups/{}/size", g.id),
            Some(&a),
            Some(ORIGIN),
            form(&[("csrf", &page.csrf()), ("size_gb", "lots")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = h
        .post(
            &format!("/groups/{}/size", g.id),
            Some(&a),
            Some(ORIGIN),
            form(&[("csrf", &page.csrf()), ("size_gb", "200")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/groups?saved=1");
    let user = h.services.get_user(&ctx, &u).await.unwrap();
    assert_eq!(user.quota_gb.get(), 200);
    let page = h.get("/groups?saved=1", Some(&a)).await;
    assert!(page.body.contains("value=\"200\""));
    // Clear: back to the tenant's Account Size at creation.
    let r = h
        .post(
            &format!("/groups/{}/size", g.id),
            Some(&a),
            Some(ORIGIN),
            form(&[
                ("csrf", &page.csrf()),
                ("size_gb", "200"),
                ("action", "clear"),
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let user = h.services.get_user(&ctx, &u).await.unwrap();
    assert_eq!(user.quota_gb.get(), 10);
    // The activity page names the new actions.
    let act = h.get("/activity", Some(&a)).await;
    assert!(act.body.contains("Quota changed"));
    // The group's page lists its members, for viewers too.
    let gp = h.get(&format!("/groups/{}", g.id), Some(&v)).await;
    assert_eq!(gp.status, StatusCode::OK);
    assert!(gp.body.contains("member@acme.test"));
    assert!(gp.body.contains("1 member"));
    let missing = h
        .get("/groups/6f1c0000-0000-4000-8000-000000000000", Some(&v))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

/// A vault upload whose handler is dropped mid-body (its connection closed under it by a
/// timeout or a shutdown) still gives its quota charge back once the body ends: the
/// charge, the upload and the give-back do not depend on the handler being polled.
#[tokio::test]
async fn a_vault_upload_dropped_mid_body_gives_its_charge_back() {
    use base64::Engine;
    let h = Harness::new().await;
    let ctx = h.scim_ctx().await;
    let id = h.provision(&ctx, "upload@x.io", "Upload").await;
    let op = OperatorCtx::local_operator();
    let key = h
        .services
        .create_backup_key(
            Authority::Operator(&op),
            &h.tenant,
            "upload@x.io",
            "default",
            &RequestMeta::default(),
        )
        .await
        .unwrap();
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            key.key_user,
            key.secret.expose()
        ))
    );
    let base = format!("/backup/{}/{id}", h.tenant);
    let create = Request::builder()
        .method(Method::POST)
        .uri(format!("{base}?create=true"))
        .header(header::AUTHORIZATION, &auth)
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(create).await.status, StatusCode::OK);
    let user = cairn_core::ids::UserId::parse(&id).unwrap();
    let used = || async {
        let u = h.services.store.get_user(&h.tenant, &user).await.unwrap();
        u.unwrap().used_bytes
    };

    let (mut tx, body) = http_body_util::channel::Channel::<axum::body::Bytes>::new(1);
    let upload = Request::builder()
        .method(Method::POST)
        .uri(format!("{base}/data/{}", "ab".repeat(32)))
        .header(header::AUTHORIZATION, &auth)
        .header(header::CONTENT_LENGTH, "1000")
        .body(Body::new(body))
        .unwrap();
    let mut handler = Box::pin(h.app.clone().oneshot(upload));
    tx.send_data(vec![0u8; 100].into()).await.unwrap();
    // Drive the handler until it has charged the upload and waits for more body.
    for _ in 0..500 {
        if used().await == 1000 {
            break;
        }
        tokio::select! {
            r = &mut handler => panic!("answered before the body ended: {:?}", r.map(|r| r.status())),
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
    assert_eq!(used().await, 1000);
    drop(handler);
    drop(tx);
    for _ in 0..500 {
        if used().await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        used().await,
        0,
        "the dropped upload's charge stayed counted"
    );
}

/// Issue 16, finding 12: above the operator's cap (`cairn tenant limit`), the Account
/// Size form and a group's size form are refused with the reason, and nothing changes.
#[tokio::test]
async fn sizes_above_the_operators_limit_are_refused() {
    let h = Harness::new().await;
    let cap = cairn_core::ids::QuotaGb::new(20).unwrap();
    h.services
        .set_tenant_limit(&OperatorCtx::local_operator(), &h.tenant, Some(cap))
        .await
        .unwrap();
    let c = h.sign_in(ADMIN).await;
    let csrf = h.get("/settings/scim", Some(&c)).await.csrf();
    let save = |gb: &'static str| {
        form(&[
            ("csrf", &csrf),
            ("scim_enabled", "on"),
            ("account_size_gb", gb),
            ("action", "save"),
        ])
    };
    let r = h
        .post("/settings/scim", Some(&c), Some(ORIGIN), save("21"))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body
            .contains("21 GB is above the limit of 20 GB set by the operator"),
        "{}",
        r.body
    );
    let t = h.services.tenant(&h.tenant).await.unwrap();
    assert_ne!(t.account_size_gb.get(), 21);
    let r = h
        .post("/settings/scim", Some(&c), Some(ORIGIN), save("20"))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        h.services.tenant(&h.tenant).await.unwrap().account_size_gb,
        cap
    );
}

/// Two applications in one process (the state `serve` builds, or this harness's) keep
/// their own group bounds and their own group-write slots: one with small bounds, one
/// with large ones, over the same services and the same tenant, each answering by its own.
#[tokio::test]
async fn two_states_keep_their_own_group_limits_and_slots() {
    use axum::extract::FromRequestParts;
    let h = Harness::new().await;
    let ctx = h.scim_ctx().await;
    let token = h.scim_token().await;
    let a = h.state_with(GroupLimits::new(1, 1, 1));
    let b = h.state_with(GroupLimits::new(10, 10, 1));
    let (app_a, app_b) = (router(a.clone()), router(b.clone()));
    let m1 = h.provision(&ctx, "m1@x.io", "M1").await;
    let m2 = h.provision(&ctx, "m2@x.io", "M2").await;
    let groups = format!("/scim/v2/{}/Groups", h.tenant);
    let scim = |method: Method, uri: &str, body: Option<serde_json::Value>| {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if body.is_some() {
            b = b.header(header::CONTENT_TYPE, "application/scim+json");
        }
        b.body(body.map_or_else(Body::empty, |v| Body::from(v.to_string())))
            .unwrap()
    };
    let send = |app: &Router, req: Request<Body>| {
        let app = app.clone();
        async move {
            let res = app.oneshot(req).await.unwrap();
            let status = res.status();
            let bytes = axum::body::to_bytes(res.into_body(), 1 << 22)
                .await
                .unwrap();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&bytes).ok(),
            )
        }
    };
    let group = |name: &str| {
        serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": name,
            "members": [{"value": m1}, {"value": m2}],
        })
    };

    // Members per write: A refuses two members, B takes them.
    let (status, _) = send(&app_a, scim(Method::POST, &groups, Some(group("A")))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "A's bound is 1");
    let (status, _) = send(&app_b, scim(Method::POST, &groups, Some(group("B")))).await;
    assert_eq!(status, StatusCode::CREATED, "B's bound is 10");

    // List members: A lists the two-member group without members, B with both.
    let list = |app: &Router| {
        let req = scim(Method::GET, &groups, None);
        let app = app.clone();
        async move {
            let (status, body) = send(&app, req).await;
            assert_eq!(status, StatusCode::OK);
            let body = body.unwrap();
            body["Resources"][0]["members"].as_array().map(Vec::len)
        }
    };
    assert_eq!(list(&app_a).await, None, "A lists at most 1 member");
    assert_eq!(list(&app_b).await, Some(2), "B lists up to 10 members");

    // Group-write slots: A's one slot held does not take B's.
    let (mut parts, ()) = Request::builder()
        .method(Method::POST)
        .uri(&groups)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(())
        .unwrap()
        .into_parts();
    let held = GroupWrite::from_request_parts(&mut parts, &a)
        .await
        .unwrap_or_else(|e| panic!("A's first slot: {}", e.0.detail));
    let (status, _) = send(&app_b, scim(Method::POST, &groups, Some(group("B2")))).await;
    assert_eq!(status, StatusCode::CREATED, "B's slot is its own");
    let (status, _) = send(&app_a, scim(Method::POST, &groups, Some(group("A2")))).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "A's one slot is held"
    );
    drop(held);
    let one = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "A3",
        "members": [{"value": m1}],
    });
    let (status, _) = send(&app_a, scim(Method::POST, &groups, Some(one))).await;
    assert_eq!(status, StatusCode::CREATED, "A's slot is free again");
}

/// A self-signed certificate (RSA 1024, CN=test-idp) pasted into the SSO settings; only
/// its shape is checked there (signatures are tested in it/sso_saml.rs).
const TEST_IDP_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIICAjCCAWugAwIBAgIUTZYC2ETAYOgmYl0U9slvMGR+xxwwDQYJKoZIhvcNAQEL\nBQAwEzERMA8GA1UEAwwIdGVzdC1pZHAwHhcNMjYxMjA2MTAwMTQyWhcNMzYxMjAz\nMTAwMTQyWjATMREwDwYDVQQDDAh0ZXN0LWlkcDCBnzANBgkqhkiG9w0BAQEFAAOB\njQAwgYkCgYEAzHLgDMjZKCKGQZl+wVAOZOMNRJvPQ/UZQ/asnBv0tLi9TM2bl0Kk\nmx5CAAM+CaaH6i8pcF6sCaUo6AjxVOSKMW+m1MTUBOT1/ASxxcpLUY45MKISD/+e\nP7TRLR7JDlhmHoZj1M3OFNHDzFAMJdRzrLwzI/KT1X4qUtiF+UPzQ/cCAwEAAaNT\nMFEwHQYDVR0OBBYEFKifydlrOydywc78BtFDRjrqvRjGMB8GA1UdIwQYMBaAFKif\nydlrOydywc78BtFDRjrqvRjGMA8GA1UdEwEB/wQFMAMBAf8wDQYJKoZIhvcNAQEL\nBQADgYEAAC9K7TE8elO98NkXL9Fx7vq+wDyBuPpuejYHJyCGCE6bXMl3GrhUqtBv\n/Ffts7LEIg586oZT9juMDV+G+Cy00Ar2OUmuu3o/f1LMRB0behLYr7TXfG4blEId\nRY51tkwAYlwELcMqr/RkPIR3tS+dqGSMmE5jau6uNcB2134leDA=\n-----END CERTIFICATE-----";

#[tokio::test]
async fn administrators_set_up_single_sign_on_and_viewers_only_look() {
    let h = Harness::new().await;
    let admin = h.sign_in(ADMIN).await;
    let page = h.get("/settings/sso", Some(&admin)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page
        .body
        .contains(&format!("{ORIGIN}/sso/{}/saml/acs", h.tenant)));
    assert!(page
        .body
        .contains(&format!("{ORIGIN}/sso/{}/saml/metadata", h.tenant)));
    assert!(page.body.contains("No identity provider yet"));
    let csrf = page.csrf();

    // Enabling without a signing certificate is refused (an IdP without one would let
    // unsigned responses through samael), and nothing is saved.
    let r = h
        .post(
            "/settings/sso",
            Some(&admin),
            Some(ORIGIN),
            form(&[
                ("csrf", &csrf),
                ("enabled", "on"),
                ("issuer", "https://idp.test/x"),
                ("sso_url", "https://idp.test/sso"),
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("certificate"), "{}", r.body);
    let ctx_view = h.services.store.get_saml_config(&h.tenant).await.unwrap();
    assert!(ctx_view.is_none());

    // A bad certificate is refused too.
    let r = h
        .post(
            "/settings/sso",
            Some(&admin),
            Some(ORIGIN),
            form(&[
                ("csrf", &csrf),
                ("enabled", "on"),
                ("issuer", "https://idp.test/x"),
                ("sso_url", "https://idp.test/sso"),
                ("certificate", "not a certificate"),
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // By hand, with an issuer that tries markup: saved, audited, shown escaped.
    let issuer = "https://idp.test/<script>alert(1)</script>";
    let r = h
        .post(
            "/settings/sso",
            Some(&admin),
            Some(ORIGIN),
            form(&[
                ("csrf", &csrf),
                ("enabled", "on"),
                ("scope_admins", "on"),
                ("accounts", "a@acme.test; b@acme.test c@acme.test"),
                ("issuer", issuer),
                ("sso_url", "https://idp.test/sso"),
                ("certificate", TEST_IDP_CERT),
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let saved = h
        .services
        .store
        .get_saml_config(&h.tenant)
        .await
        .unwrap()
        .expect("saved");
    assert!(saved.enabled);
    assert_eq!(saved.idp_entity_id, issuer);
    assert_eq!(saved.certificates.len(), 1);
    assert!(saved.scope.admins && !saved.scope.all_accounts);
    assert_eq!(
        saved.scope.accounts,
        vec!["a@acme.test", "b@acme.test", "c@acme.test"]
    );
    let audit = h
        .services
        .store
        .list_audit(&h.tenant, &Default::default())
        .await
        .unwrap();
    assert_eq!(audit[0].action, "sso_settings_changed");
    assert_eq!(audit[0].actor_id.as_deref(), Some(ADMIN));
    let page = h.get("/settings/sso", Some(&admin)).await;
    assert!(!page.body.contains("<script>alert"), "escaped");
    assert!(
        page.body.contains("&#60;script&#62;alert(1)"),
        "{}",
        page.body
    );

    // Without the CSRF token: refused, unchanged.
    let r = h
        .post(
            "/settings/sso",
            Some(&admin),
            Some(ORIGIN),
            form(&[("enabled", "")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // A viewer sees the page read-only and cannot save.
    let viewer = h.sign_in(VIEWER).await;
    let page = h.get("/settings/sso", Some(&viewer)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("only administrators can change them"));
    assert!(page.body.contains("<fieldset disabled>"));
    let r = h
        .post(
            "/settings/sso",
            Some(&viewer),
            Some(ORIGIN),
            form(&[("csrf", &page.csrf()), ("scope_all", "on")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let after = h
        .services
        .store
        .get_saml_config(&h.tenant)
        .await
        .unwrap()
        .unwrap();
    assert!(after.enabled && !after.scope.all_accounts, "unchanged");
}

// --- sso-idp: OpenID Connect and metadata URLs on Settings → Single Sign-On ---

#[tokio::test]
async fn administrators_set_up_openid_connect_with_a_write_only_secret() {
    let h = Harness::new().await;
    let admin = h.sign_in(ADMIN).await;
    let page = h.get("/settings/sso", Some(&admin)).await;
    assert!(page
        .body
        .contains(&format!("{ORIGIN}/sso/{}/oidc/callback", h.tenant)));
    assert!(
        page.body.contains("Client secret (not set)"),
        "{}",
        page.body
    );
    let csrf = page.csrf();
    let oidc = |issuer: &'static str, secret: &'static str| {
        vec![
            ("oidc_enabled", "on"),
            ("oidc_issuer", issuer),
            ("oidc_client_id", "cairn-client"),
            ("oidc_client_secret", secret),
        ]
    };
    let post = |fields: Vec<(&'static str, &'static str)>, who: String, csrf: String| {
        let h = &h;
        async move {
            let mut all = vec![("csrf", csrf.as_str())];
            all.extend(fields.iter().map(|(k, v)| (*k, *v)));
            h.post("/settings/sso/oidc", Some(&who), Some(ORIGIN), form(&all))
                .await
        }
    };

    // Issuers the fetch rules would refuse at sign-in are refused now.
    for (issuer, why) in [
        ("http://idp.example.com", "https"),
        ("https://127.0.0.1:8443", "loopback"),
        ("https://[::ffff:169.254.169.254]", "link-local"),
        ("https://10.0.0.7/realms/x", "private"),
    ] {
        let r = post(oidc(issuer, "s3cret-value"), admin.clone(), csrf.clone()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{issuer}");
        assert!(r.body.contains(why), "{issuer}: {}", r.body);
    }
    // No secret the first time: refused.
    let r = post(
        oidc("https://idp.example.com", ""),
        admin.clone(),
        csrf.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("client secret"), "{}", r.body);
    assert!(h
        .services
        .store
        .get_oidc_config(&h.tenant)
        .await
        .unwrap()
        .is_none());

    let r = post(
        oidc("https://idp.example.com/", "s3cret-value"),
        admin.clone(),
        csrf.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let saved = h
        .services
        .store
        .get_oidc_config(&h.tenant)
        .await
        .unwrap()
        .unwrap();
    assert!(saved.enabled);
    assert_eq!(saved.issuer, "https://idp.example.com");
    assert_eq!(saved.client_id, "cairn-client");
    assert_eq!(saved.client_secret.expose(), "s3cret-value");
    let audit = h
        .services
        .store
        .list_audit(&h.tenant, &Default::default())
        .await
        .unwrap();
    assert_eq!(audit[0].action, "sso_settings_changed");
    assert_eq!(audit[0].target_name.as_deref(), Some("oidc"));
    assert_eq!(audit[0].actor_id.as_deref(), Some(ADMIN));
    assert!(!audit[0].changes.to_string().contains("s3cret"));

    // The page says "set", never the secret.
    let page = h.get("/settings/sso", Some(&admin)).await;
    assert!(
        page.body.contains("Client secret (set; leave empty"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("s3cret-value"));
    assert!(page.body.contains("cairn-client"));

    // On OpenID Connect alone, the scope above is saved for it (no SAML settings made).
    let r = h
        .post(
            "/settings/sso",
            Some(&admin),
            Some(ORIGIN),
            form(&[("csrf", &csrf), ("scope_all", "on"), ("scope_admins", "on")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let saved = h
        .services
        .store
        .get_oidc_config(&h.tenant)
        .await
        .unwrap()
        .unwrap();
    assert!(saved.scope.all_accounts && saved.scope.admins);
    assert!(h
        .services
        .store
        .get_saml_config(&h.tenant)
        .await
        .unwrap()
        .is_none());

    // Saving with the field empty keeps the secret.
    let r = post(
        vec![
            ("oidc_issuer", "https://idp.example.com"),
            ("oidc_client_id", "cairn-client-2"),
            ("oidc_client_secret", ""),
        ],
        admin.clone(),
        csrf.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let saved = h
        .services
        .store
        .get_oidc_config(&h.tenant)
        .await
        .unwrap()
        .unwrap();
    assert!(!saved.enabled);
    assert_eq!(saved.client_id, "cairn-client-2");
    assert_eq!(saved.client_secret.expose(), "s3cret-value");

    // Without the CSRF token, and as a viewer: refused, unchanged.
    let r = h
        .post(
            "/settings/sso/oidc",
            Some(&admin),
            Some(ORIGIN),
            form(&[("oidc_issuer", "https://evil.example.com")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let viewer = h.sign_in(VIEWER).await;
    let vpage = h.get("/settings/sso", Some(&viewer)).await;
    assert!(!vpage.body.contains("s3cret-value"));
    let r = post(
        oidc("https://evil.example.com", "other"),
        viewer.clone(),
        vpage.csrf(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let after = h
        .services
        .store
        .get_oidc_config(&h.tenant)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.issuer, "https://idp.example.com");
    assert_eq!(after.client_secret.expose(), "s3cret-value");
}

#[tokio::test]
async fn metadata_urls_to_internal_addresses_are_refused_without_a_request() {
    let h = Harness::new().await;
    let admin = h.sign_in(ADMIN).await;
    let csrf = h.get("/settings/sso", Some(&admin)).await.csrf();
    for (url, why) in [
        ("http://idp.example.com/metadata", "https"),
        ("https://127.0.0.1/metadata", "loopback"),
        ("https://[::1]/metadata", "loopback"),
        ("https://[::ffff:127.0.0.1]/metadata", "loopback"),
        ("https://0.0.0.0/metadata", "loopback"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://100.64.0.1/metadata", "private"),
        ("https://192.168.1.10/metadata", "private"),
        ("https://[fd00::1]/metadata", "private"),
        ("https://[fe80::1]/metadata", "link-local"),
        ("https://localhost/metadata", "loopback"),
    ] {
        let r = h
            .post(
                "/settings/sso",
                Some(&admin),
                Some(ORIGIN),
                form(&[("csrf", &csrf), ("enabled", "on"), ("metadata_url", url)]),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        assert!(r.body.contains(why), "{url}: {}", r.body);
        // What was typed comes back.
        assert!(r.body.contains("value=\"https://") || r.body.contains("value=\"http://"));
    }
    assert!(h
        .services
        .store
        .get_saml_config(&h.tenant)
        .await
        .unwrap()
        .is_none());
}
// --- end sso-idp ---

/// A request-log entry of the harness's tenant, `ago` before the harness clock.
fn logged(h: &Harness, token: &str, ago: time::Duration, status: u16) -> RequestEntry {
    RequestEntry {
        id: 0,
        tenant_id: h.tenant.clone(),
        at: h.clock.now() - ago,
        token_id: Some(token.to_owned()),
        method: "PATCH".into(),
        path: "/Users/u-1?aadOptscim062020".into(),
        client: RequestClient::Entra,
        dialect: Some("Entra with aadOptscim062020".into()),
        user_agent: None,
        status,
        scim_type: (status == 409).then(|| "uniqueness".into()),
        error: (status >= 400).then(|| "userName <b>taken</b>".into()),
        latency_us: 2500,
        resource_type: Some("User".into()),
        resource_id: Some("u-1".into()),
        notes: vec!["active sent as the string \"False\"; treated as false <script>".into()],
        request_body: None,
        response_body: None,
    }
}

use cairn_core::requests::{Client as RequestClient, RequestEntry};

#[tokio::test]
async fn the_request_inspector_is_for_administrators_and_filters() {
    let h = Harness::new().await;
    let ctx = h.scim_ctx().await;
    let account = h.provision(&ctx, "ann@acme.test", "Ann").await;
    let token = ctx.token_id().to_string();
    let mut ok = logged(&h, &token, time::Duration::minutes(3), 200);
    ok.resource_id = Some(account.clone());
    ok.client = RequestClient::Okta;
    ok.dialect = None;
    let failed = logged(&h, &token, time::Duration::minutes(2), 409);
    // Another tenant's entry, for isolation.
    let other = h
        .services
        .create_tenant(&OperatorCtx::local_operator(), "Other")
        .await
        .unwrap();
    let mut theirs = logged(&h, &token, time::Duration::minutes(1), 500);
    theirs.tenant_id = other.id.clone();
    theirs.path = "/Users/theirs-only".into();
    h.services
        .store
        .record_requests(vec![ok, failed, theirs])
        .await
        .unwrap();

    let admin = h.sign_in(ADMIN).await;
    let page = h.get("/requests", Some(&admin)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("/Users/u-1?aadOptscim062020"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Entra with aadOptscim062020"));
    assert!(page.body.contains("uniqueness"));
    assert!(
        !page.body.contains("theirs-only"),
        "another tenant's request"
    );
    // What the client sent is escaped.
    assert!(!page.body.contains("<script>") && !page.body.contains("<b>taken"));
    assert!(page.body.contains("userName &#60;b&#62;taken"));
    assert!(page.body.contains(&format!("href=\"/accounts/{account}\"")));

    let only_errors = h.get("/requests?status=4xx", Some(&admin)).await;
    let okta_row = "data-label=\"Client\">Okta";
    assert!(only_errors.body.contains("uniqueness") && !only_errors.body.contains(okta_row));
    let okta = h.get("/requests?client=okta", Some(&admin)).await;
    assert!(okta.body.contains(okta_row) && !okta.body.contains("uniqueness"));
    let by_account = h
        .get(&format!("/requests?account={account}"), Some(&admin))
        .await;
    assert!(by_account.body.contains(okta_row) && !by_account.body.contains("uniqueness"));
    let bad = h.get("/requests?status=abc", Some(&admin)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // The account's page links to the requests that touched it, for administrators.
    let acc = h.get(&format!("/accounts/{account}"), Some(&admin)).await;
    assert!(acc
        .body
        .contains(&format!("href=\"/requests?account={account}\"")));
    let viewer = h.sign_in(VIEWER).await;
    let acc = h.get(&format!("/accounts/{account}"), Some(&viewer)).await;
    assert!(!acc.body.contains("/requests?account="));
    assert_eq!(
        h.get("/requests", Some(&viewer)).await.status,
        StatusCode::FORBIDDEN
    );
    // Viewers cannot switch body capture on either.
    let page = h.get("/accounts", Some(&viewer)).await;
    let r = h
        .post(
            "/requests/capture",
            Some(&viewer),
            Some(ORIGIN),
            form(&[("csrf", &page.csrf()), ("minutes", "15")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(h
        .services
        .store
        .body_captures(h.clock.now())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn settings_show_connection_health_and_a_silent_entra() {
    let h = Harness::new().await;
    let ctx = h.scim_ctx().await;
    let token = ctx.token_id().to_string();
    let admin = h.sign_in(ADMIN).await;
    let page = h.get("/settings/scim", Some(&admin)).await;
    assert!(
        !page.body.contains("Connection health"),
        "nothing logged yet"
    );

    let entries = [
        logged(&h, &token, time::Duration::hours(3), 200),
        logged(&h, &token, time::Duration::hours(2), 409),
        logged(&h, &token, time::Duration::hours(2), 409),
        logged(&h, &token, time::Duration::minutes(90), 400),
    ];
    h.services
        .store
        .record_requests(entries.to_vec())
        .await
        .unwrap();
    let page = h.get("/settings/scim", Some(&admin)).await;
    assert!(page.body.contains("Connection health"), "{}", page.body);
    assert!(
        page.body.contains("Microsoft Entra ID, 3 hours ago"),
        "{}",
        page.body
    );
    assert!(page
        .body
        .contains("3 of 4 requests failed in the last 24 hours (75.0 %)"));
    assert!(page.body.contains("Most common error: 409 uniqueness (2×)"));
    assert!(
        page.body.contains("usually calls every 40 minutes"),
        "{}",
        page.body
    );

    // A recent call: no warning.
    h.services
        .store
        .record_requests(vec![logged(&h, &token, time::Duration::minutes(10), 200)])
        .await
        .unwrap();
    let page = h.get("/settings/scim", Some(&admin)).await;
    assert!(!page.body.contains("usually calls every"), "{}", page.body);
    assert!(page.body.contains("10 minutes ago"));
}

/// Settings → Users and the second factor (issue 22).
mod people;
/// One-time sign-in links for backup accounts and My Backup (issue 22).
mod welcome;
/// Issue 21 (repository health): "Verify now" is for administrators with a CSRF token,
/// runs at most once per account and [`crate::vault_verify::MAX_BACKGROUND`] at a time,
/// is audited, and the page shows the recorded result with its names escaped.
#[tokio::test]
async fn verify_now_is_bounded_audited_and_its_result_escaped() {
    use cairn_core::ids::UserId;
    use cairn_core::verification::{BadObject, VaultVerification};
    let h = Harness::new().await;
    let ctx = h.scim_ctx().await;
    let id = h.provision(&ctx, "rot@acme.test", "Rot").await;
    let path = format!("/accounts/{id}");
    let verify = format!("/accounts/{id}/verify");
    let admin = h.sign_in(ADMIN).await;
    let viewer = h.sign_in(VIEWER).await;
    let page = h.get(&path, Some(&viewer)).await;
    assert!(
        page.body.contains("has not been verified yet"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Verify now"));
    let r = h
        .post(
            &verify,
            Some(&viewer),
            Some(ORIGIN),
            form(&[("csrf", &page.csrf())]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let page = h.get(&path, Some(&admin)).await;
    assert!(page.body.contains("Verify now"));
    let csrf = page.csrf();
    let r = h.post(&verify, Some(&admin), Some(ORIGIN), form(&[])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let act = h
        .get("/activity?action=vault_verify_started", Some(&admin))
        .await;
    assert!(act.body.contains("No activity matches these filters"));

    // A check of this account running already, then every slot taken: nothing starts.
    let key = format!("{}/{id}", ctx.tenant_id());
    crate::vault_verify::RUNNING
        .lock()
        .unwrap()
        .insert(key.clone());
    let r = h
        .post(
            &verify,
            Some(&admin),
            Some(ORIGIN),
            form(&[("csrf", &csrf)]),
        )
        .await;
    assert!(
        r.location().ends_with("?verify=running"),
        "{}",
        r.location()
    );
    assert!(h
        .get(&path, Some(&admin))
        .await
        .body
        .contains("A check is running"));
    crate::vault_verify::RUNNING.lock().unwrap().remove(&key);
    {
        let _all = crate::vault_verify::SLOTS
            .acquire_many(crate::vault_verify::MAX_BACKGROUND as u32)
            .await
            .unwrap();
        let r = h
            .post(
                &verify,
                Some(&admin),
                Some(ORIGIN),
                form(&[("csrf", &csrf)]),
            )
            .await;
        assert!(r.location().ends_with("?verify=busy"), "{}", r.location());
    }
    // Started: an account with no repository yet verifies clean with no objects.
    let r = h
        .post(
            &verify,
            Some(&admin),
            Some(ORIGIN),
            form(&[("csrf", &csrf)]),
        )
        .await;
    assert!(
        r.location().ends_with("?verify=started"),
        "{}",
        r.location()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let page = loop {
        let page = h.get(&path, Some(&admin)).await;
        if page.body.contains("class=\"verified-at\"") {
            break page;
        }
        assert!(std::time::Instant::now() < deadline, "{}", page.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        page.body.contains("All objects match their names"),
        "{}",
        page.body
    );
    let act = h
        .get("/activity?action=vault_verify_started", Some(&admin))
        .await;
    assert!(!act.body.contains("No activity matches these filters"));
    assert!(act.body.contains("rot@acme.test"), "{}", act.body);

    // A recorded result with a hostile name is shown escaped, to viewers too.
    let payload = "data/<img src=x onerror=alert(1)>";
    h.services
        .record_verification(
            ctx.tenant_id(),
            VaultVerification {
                user_id: UserId::parse(&id).unwrap(),
                verified_at: h.clock.now(),
                objects: 3,
                bytes: 2048,
                bad_count: 1,
                bad: vec![BadObject {
                    object: payload.into(),
                    reason: "mismatch".into(),
                }],
            },
        )
        .await
        .unwrap();
    let page = h.get(&path, Some(&viewer)).await;
    assert!(!page.body.contains("<img"), "{}", page.body);
    assert!(page
        .body
        .contains("data/&#60;img src=x onerror=alert(1)&#62;"));
    assert!(page.body.contains("1 bad object(s)"));
    assert!(
        page.body.contains("2.0 KiB") || page.body.contains("2 KiB"),
        "{}",
        page.body
    );
}
