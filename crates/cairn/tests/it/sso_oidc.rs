//! OpenID Connect sign-in (issue 17 item 3) against the real binary and npm
//! `oidc-provider` (panva, OpenID Certified), started here on 127.0.0.1 from
//! `idp/oidc/provider.mjs` (its packages: `npm ci` there, which `scripts/test` does). The
//! test plays the browser: it follows the redirects from Cairn to the provider and back,
//! keeping the provider's cookies. Each refusal is checked for the refusal page, no
//! session cookie, and the reason in the tenant's audit log.

use crate::support::*;
use reqwest::header;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

const ADMIN: &str = "ada@acme.test";
const BACKUP: &str = "bob@acme.test";
const PASSWORD: &str = "correct horse battery staple";

fn idp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/idp/oidc")
}

fn have_provider() -> bool {
    require(
        "node and the test OpenID provider's packages (npm ci in crates/cairn/tests/it/idp/oidc)",
        Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
            && idp_dir().join("node_modules/oidc-provider").is_dir(),
    )
}

struct Provider {
    child: Child,
    issuer: String,
}

impl Provider {
    async fn start(port: u16, redirect: &str, kid: &str) -> Provider {
        let child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(idp_dir())
            .env("PORT", port.to_string())
            .env("REDIRECT_URI", redirect)
            .env("KID", kid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts");
        // Owned by a Provider at once: dropped (killed and waited for) on every path.
        let p = Provider {
            child,
            issuer: format!("http://127.0.0.1:{port}"),
        };
        let c = reqwest::Client::new();
        for _ in 0..200 {
            if c.get(format!("{}/.well-known/openid-configuration", p.issuer))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return p;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the OpenID provider did not start");
    }

    async fn mode(&self, mode: &str) {
        let r = reqwest::Client::new()
            .post(format!("{}/__mode/{mode}", self.issuer))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Oidc {
    app: TestApp,
    tenant: Tenant,
    port: u16,
    callback: String,
    idp: Option<Provider>,
    browser: reqwest::Client,
}

impl Oidc {
    async fn start() -> Oidc {
        let app = TestApp::spawn_with(Opts {
            args: vec![
                "--sso-allow-insecure-idp".into(),
                "--sso-jwks-refresh-secs".into(),
                "0".into(),
            ],
            ..Opts::default()
        })
        .await;
        let tenant = app.tenant("acme");
        app.cli_stdin(
            &[
                "user",
                "create",
                "--tenant",
                &tenant.id,
                "--email",
                ADMIN,
                "--role",
                "administrator",
                "--password-stdin",
            ],
            Some(&format!("{PASSWORD}\n")),
        )
        .ok();
        tenant
            .create_user(
                &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": BACKUP, "active": true}),
            )
            .await;
        let port = free_port();
        let issuer = format!("http://127.0.0.1:{port}");
        app.cli_stdin(
            &[
                "sso",
                "oidc",
                "--tenant",
                &tenant.id,
                "--issuer",
                &issuer,
                "--client-id",
                "cairn",
                "--client-secret-stdin",
            ],
            Some("test-secret\n"),
        )
        .ok();
        app.cli(&[
            "sso",
            "scope",
            "--tenant",
            &tenant.id,
            "--admins",
            "--all-accounts",
        ])
        .ok();
        let show = app
            .cli(&["sso", "show", "--tenant", &tenant.id, "--json"])
            .ok()
            .json();
        assert_eq!(show["oidc"]["issuer"], issuer.as_str());
        assert!(
            !show.to_string().contains("test-secret"),
            "the client secret is never shown"
        );
        let callback = show["service_provider"]["oidc_redirect_uri"]
            .as_str()
            .unwrap()
            .to_owned();
        let idp = Provider::start(port, &callback, "k1").await;
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Oidc {
            app,
            tenant,
            port,
            callback,
            idp: Some(idp),
            browser,
        }
    }

    fn idp(&self) -> &Provider {
        self.idp.as_ref().unwrap()
    }

    /// Cairn's redirect to the provider's authorization endpoint.
    async fn authorize_url(&self) -> String {
        let r = self
            .browser
            .get(format!("{}/sso/{}/login", self.app.base, self.tenant.id))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_redirection(), "{}", r.status());
        let loc = r.headers()[header::LOCATION].to_str().unwrap().to_owned();
        assert!(
            loc.starts_with(&format!("{}/auth?", self.idp().issuer)),
            "{loc}"
        );
        for p in [
            "code_challenge_method=S256",
            "state=",
            "nonce=",
            "code_challenge=",
        ] {
            assert!(loc.contains(p), "{loc}");
        }
        loc
    }

    /// Follows the provider's redirects (keeping its cookies) until it sends the browser
    /// back to Cairn's callback; returns that URL.
    async fn through_provider(&self, mut url: String) -> String {
        let mut cookies: Vec<(String, String)> = Vec::new();
        for _ in 0..10 {
            if url.starts_with(&self.callback) {
                return url;
            }
            let jar = cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            let r = self
                .browser
                .get(&url)
                .header(header::COOKIE, jar)
                .send()
                .await
                .unwrap();
            for c in r.headers().get_all(header::SET_COOKIE) {
                let pair = c.to_str().unwrap().split(';').next().unwrap();
                let (k, v) = pair.split_once('=').unwrap();
                cookies.retain(|(n, _)| n != k);
                cookies.push((k.to_owned(), v.to_owned()));
            }
            assert!(r.status().is_redirection(), "{url}: {}", r.status());
            let loc = r.headers()[header::LOCATION].to_str().unwrap();
            url = if loc.starts_with('/') {
                format!("{}{loc}", self.idp().issuer)
            } else {
                loc.to_owned()
            };
        }
        panic!("the provider never sent the browser back");
    }

    /// A whole sign-in as the provider's account `who`; returns Cairn's callback answer
    /// and the callback URL (for replays).
    async fn sign_in_as(&self, who: &str) -> (reqwest::Response, String) {
        let url = format!("{}&login_hint={who}", self.authorize_url().await);
        let back = self.through_provider(url).await;
        (self.browser.get(&back).send().await.unwrap(), back)
    }

    fn audit(&self) -> Vec<Value> {
        self.app
            .cli(&["audit", "--tenant", &self.tenant.id, "--json"])
            .ok()
            .json()
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn assert_refused(&self, r: reqwest::Response, reason: &str) {
        let headers = r.headers().clone();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 403, "{reason}: {body}");
        assert!(body.contains("Sign-in refused"), "{body}");
        assert!(
            cookie_set_by(&headers, "cairn_session").is_none()
                && cookie_set_by(&headers, "cairn_account").is_none(),
            "a refusal sets no session cookie"
        );
        let audit = self.audit();
        let last = audit.first().expect("an audit entry");
        assert_eq!(last["action"], "sso_sign_in_refused", "{last}");
        assert_eq!(last["changes"]["protocol"], "oidc", "{last}");
        assert_eq!(last["changes"]["reason"], reason, "{last}");
    }

    async fn assert_signed_in(&self, r: reqwest::Response, cookie: &str, next: &str) -> String {
        let headers = r.headers().clone();
        let body = r.text().await.unwrap();
        assert!(body.contains(next), "{body}");
        let c = cookie_set_by(&headers, cookie).unwrap_or_else(|| panic!("{cookie}: {body}"));
        let last = self.audit().first().cloned().unwrap();
        assert_eq!(last["action"], "sso_sign_in", "{last}");
        assert_eq!(last["changes"]["protocol"], "oidc", "{last}");
        c
    }
}

#[tokio::test]
async fn administrator_and_backup_account_sign_in_and_each_bad_answer_is_refused() {
    if !have_provider() {
        return;
    }
    let o = Oidc::start().await;

    // An administrator: a dashboard session.
    let (r, back) = o.sign_in_as("u-admin").await;
    let session = o.assert_signed_in(r, "cairn_session", "/accounts").await;
    let page = o
        .app
        .get("/accounts")
        .header(header::COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);

    // Code replay: the same callback again (its state is used up; the code is never
    // redeemed twice).
    let again = o.browser.get(&back).send().await.unwrap();
    o.assert_refused(again, "unknown, used or expired state")
        .await;

    // A backup account: its own page.
    let (r, _) = o.sign_in_as("u-backup").await;
    let account = o.assert_signed_in(r, "cairn_account", "/me").await;
    let me = o
        .app
        .get("/me")
        .header(header::COOKIE, &account)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert!(me.text().await.unwrap().contains(BACKUP));

    // Nobody of this tenant.
    let (r, _) = o.sign_in_as("u-stranger").await;
    o.assert_refused(
        r,
        "no dashboard administrator or account of the tenant matches",
    )
    .await;

    // Missing PKCE: the provider refuses the authorization request itself.
    let url = o.authorize_url().await;
    let stripped: String = {
        let u = reqwest::Url::parse(&url).unwrap();
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .into_owned()
            .filter(|(k, _)| !k.starts_with("code_challenge"))
            .collect();
        let mut u2 = u.clone();
        u2.query_pairs_mut().clear().extend_pairs(pairs);
        format!("{u2}&login_hint=u-admin")
    };
    let back = o.through_provider(stripped).await;
    assert!(back.contains("error=invalid_request"), "{back}");
    let r = o.browser.get(&back).send().await.unwrap();
    o.assert_refused(r, "the identity provider returned an error")
        .await;

    // Bad ID tokens, signed by the provider's own key (or, for `kid`, by a key it never
    // published: Cairn refetches the keys, still finds none, and refuses).
    for (mode, reason) in [
        ("iss", "ID token from another issuer"),
        ("aud", "ID token for another audience"),
        ("exp", "ID token expired"),
        ("nonce", "ID token nonce mismatch"),
        // OIDC Core §3.1.3.7: an `azp` must be our client id; several audiences are
        // refused (the crate refuses an audience it was not told to trust).
        ("azp", "ID token for another authorized party"),
        ("multiaud", "ID token for another audience"),
        ("kid", "ID token signed by an unknown key"),
    ] {
        o.idp().mode(mode).await;
        let (r, _) = o.sign_in_as("u-admin").await;
        o.assert_refused(r, reason).await;
    }
    o.idp().mode("normal").await;
    let (r, _) = o.sign_in_as("u-admin").await;
    o.assert_signed_in(r, "cairn_session", "/accounts").await;
}

#[tokio::test]
async fn a_rotated_signing_key_is_fetched_on_its_first_use() {
    if !have_provider() {
        return;
    }
    let mut o = Oidc::start().await;
    let (r, _) = o.sign_in_as("u-admin").await;
    o.assert_signed_in(r, "cairn_session", "/accounts").await;
    // The provider restarts with a new key (another kid); Cairn's cached keys lack it.
    drop(o.idp.take());
    o.idp = Some(Provider::start(o.port, &o.callback, "k2").await);
    let (r, _) = o.sign_in_as("u-admin").await;
    o.assert_signed_in(r, "cairn_session", "/accounts").await;
}

// --- sso-idp: the fetch rules for discovery ---

#[tokio::test]
async fn without_the_operator_flag_a_loopback_issuer_is_never_contacted() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // A listener that only counts connections: the "provider" on loopback.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    let app = TestApp::spawn().await;
    let tenant = app.tenant("acme");
    for issuer in [
        format!("http://127.0.0.1:{port}"),
        format!("https://127.0.0.1:{port}"),
        format!("https://localhost:{port}"),
        format!("https://[::ffff:127.0.0.1]:{port}"),
    ] {
        app.cli_stdin(
            &[
                "sso",
                "oidc",
                "--tenant",
                &tenant.id,
                "--issuer",
                &issuer,
                "--client-id",
                "cairn",
                "--client-secret-stdin",
            ],
            Some("test-secret\n"),
        )
        .ok();
        let r = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(format!("{}/sso/{}/login", app.base, tenant.id))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{issuer}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "nothing reached the listener"
    );
}
// --- end sso-idp ---
/// Issue 17 item 5 through OpenID Connect: the role comes from the account's SCIM
/// groups whatever the protocol. Only administrators are in the SSO scope, so the group
/// mapping alone lets the backup account in, and its removal over SCIM takes it away.
#[tokio::test]
async fn a_group_mapped_member_gets_its_dashboard_role_through_oidc() {
    if !have_provider() {
        return;
    }
    let o = Oidc::start().await;
    o.app
        .cli(&["sso", "scope", "--tenant", &o.tenant.id, "--admins"])
        .ok();
    let list = o
        .tenant
        .get(&format!("/Users?filter=userName eq \"{BACKUP}\""))
        .await
        .json();
    let uid = list["Resources"][0]["id"].as_str().unwrap().to_owned();
    let r = o
        .tenant
        .post(
            "/Groups",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Cairn Admins", "members": [{"value": uid}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let gid = r.json()["id"].as_str().unwrap().to_owned();

    // Before the mapping: outside the scope, refused.
    let (r, _) = o.sign_in_as("u-backup").await;
    o.assert_refused(r, "account is not in the SSO scope").await;

    o.app
        .cli(&[
            "sso",
            "role",
            "--tenant",
            &o.tenant.id,
            "--group",
            "Cairn Admins",
            "--role",
            "administrator",
        ])
        .ok();
    let (r, _) = o.sign_in_as("u-backup").await;
    let session = o.assert_signed_in(r, "cairn_session", "/accounts").await;
    let last = o.audit().first().cloned().unwrap();
    assert_eq!(last["changes"]["role"], "administrator", "{last}");
    let page = |path: &'static str| o.app.get(path).header(header::COOKIE, &session).send();
    assert_eq!(page("/accounts").await.unwrap().status(), 200);
    let settings = page("/settings/sso").await.unwrap().text().await.unwrap();
    assert!(
        settings.contains(r#"<button type="submit" class="primary">Save</button>"#),
        "an administrator's settings page: {settings}"
    );

    // The identity provider removes the account from the group over SCIM.
    let r = o
        .tenant
        .patch(
            &format!("/Groups/{gid}"),
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "remove", "path": format!("members[value eq \"{uid}\"]")}]}),
        )
        .await;
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    assert_eq!(
        page("/accounts").await.unwrap().status(),
        303,
        "the next request has no dashboard role"
    );
    let (r, _) = o.sign_in_as("u-backup").await;
    o.assert_refused(r, "account is not in the SSO scope").await;
}

/// A hostile client with no credential at all: thousands of `GET /sso/{tenant}/login`
/// keep at most `MAX_OUTSTANDING_REQUESTS` sign-ins in progress (the oldest goes, and
/// its callback is refused), and a flood of forged callbacks writes at most
/// `REFUSAL_AUDITS_PER_WINDOW` refusals to the audit log per minute.
#[tokio::test]
async fn a_no_credential_flood_keeps_bounded_rows_and_audit_entries() {
    if !have_provider() {
        return;
    }
    use cairn_core::sso::{MAX_OUTSTANDING_REQUESTS, REFUSAL_AUDITS_PER_WINDOW};
    let o = Oidc::start().await;
    let first = o.authorize_url().await;
    let login = format!("{}/sso/{}/login", o.app.base, o.tenant.id);
    for _ in 0..MAX_OUTSTANDING_REQUESTS {
        let r = o.browser.get(&login).send().await.unwrap();
        assert!(r.status().is_redirection(), "{}", r.status());
    }
    // The first sign-in was the oldest of MAX_OUTSTANDING_REQUESTS + 1: dropped.
    let back = o
        .through_provider(format!("{first}&login_hint=u-admin"))
        .await;
    let r = o.browser.get(&back).send().await.unwrap();
    o.assert_refused(r, "unknown, used or expired state").await;
    // The latest ones still work.
    let (r, _) = o.sign_in_as("u-admin").await;
    o.assert_signed_in(r, "cairn_session", "/accounts").await;

    for i in 0..200 {
        let r = o
            .browser
            .get(format!("{}?state=forged{i}&code=forged", o.callback))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    let refusals = o
        .audit()
        .iter()
        .filter(|e| e["action"] == "sso_sign_in_refused")
        .count();
    assert_eq!(refusals, REFUSAL_AUDITS_PER_WINDOW as usize);
}

/// A password sign-in to the dashboard: the raw answer (303 with a session, or the
/// login page again).
async fn password_sign_in(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    let page = app.get("/login").send().await.unwrap();
    let login_cookie = cookie_set_by(page.headers(), "cairn_login").expect("login CSRF cookie");
    let csrf = csrf_of(&page.text().await.unwrap());
    app.client
        .post(format!("{}/login", app.base))
        .header(header::ORIGIN, &app.base)
        .header(header::COOKIE, login_cookie)
        .form(&[("email", email), ("password", password), ("csrf", &csrf)])
        .send()
        .await
        .unwrap()
}

/// Issue 17 item 6: once single sign-on covers administrators, a tenant turns password
/// sign-in off; only its break-glass administrator keeps it, audited on each use, and
/// it comes back by itself when single sign-on stops covering administrators.
#[tokio::test]
async fn password_sign_in_off_leaves_only_the_audited_break_glass_administrator() {
    if !have_provider() {
        return;
    }
    const ROOT: &str = "root@acme.test";
    let o = Oidc::start().await;
    let t = &o.tenant.id;
    o.app
        .cli_stdin(
            &[
                "user",
                "create",
                "--tenant",
                t,
                "--email",
                ROOT,
                "--role",
                "administrator",
                "--password-stdin",
            ],
            Some(&format!("{PASSWORD}\n")),
        )
        .ok();

    // Not while single sign-on leaves administrators out.
    o.app
        .cli(&["sso", "scope", "--tenant", t, "--all-accounts"])
        .ok();
    let r = o
        .app
        .cli(&["sso", "password-sign-in", "--tenant", t, "--off"]);
    assert!(!r.status.success(), "{}", r.stdout);
    assert!(
        r.stderr.contains("only be turned off while single sign-on"),
        "{}",
        r.stderr
    );
    o.app
        .cli(&["sso", "scope", "--tenant", t, "--admins", "--all-accounts"])
        .ok();
    o.app
        .cli(&["sso", "password-sign-in", "--tenant", t, "--off"])
        .ok();
    let audit = o.audit();
    assert_eq!(
        audit[0]["action"], "password_sign_in_changed",
        "{}",
        audit[0]
    );
    assert_eq!(audit[0]["changes"]["password_sign_in"]["after"], false);

    // The right password no longer opens a session; a wrong one still says so.
    for (who, status) in [(ADMIN, 403), (ROOT, 403)] {
        let r = password_sign_in(&o.app, who, PASSWORD).await;
        let headers = r.headers().clone();
        assert_eq!(r.status(), status, "{who}");
        assert!(r.text().await.unwrap().contains("password sign-in off"));
        assert!(cookie_set_by(&headers, "cairn_session").is_none_or(|c| c.ends_with('=')));
    }
    assert_eq!(password_sign_in(&o.app, ADMIN, "wrong").await.status(), 401);
    // Single sign-on still works for the administrator.
    let (r, _) = o.sign_in_as("u-admin").await;
    o.assert_signed_in(r, "cairn_session", "/accounts").await;

    // The break-glass administrator: named by the operator, audited on each use.
    let r = o.app.cli(&[
        "user",
        "break-glass",
        "--tenant",
        t,
        "--email",
        "nobody@acme.test",
    ]);
    assert!(!r.status.success());
    o.app
        .cli(&["user", "break-glass", "--tenant", t, "--email", ROOT])
        .ok();
    let show = o
        .app
        .cli(&["sso", "show", "--tenant", t, "--json"])
        .ok()
        .json();
    assert_eq!(show["password_sign_in"]["enforced"], true, "{show}");
    assert_eq!(show["password_sign_in"]["break_glass"], ROOT, "{show}");
    assert_eq!(o.audit()[0]["action"], "break_glass_changed");
    assert_eq!(
        password_sign_in(&o.app, ADMIN, PASSWORD).await.status(),
        403
    );
    for _ in 0..2 {
        let r = password_sign_in(&o.app, ROOT, PASSWORD).await;
        assert_eq!(r.status(), 303);
        let audit = o.audit();
        assert_eq!(audit[0]["action"], "break_glass_sign_in", "{}", audit[0]);
        assert_eq!(audit[0]["target_name"], ROOT);
    }

    // Single sign-on off: password sign-in is back (no lock-out), without a break-glass
    // audit entry.
    o.app.cli(&["sso", "disable", "--tenant", t]).ok();
    assert_eq!(
        password_sign_in(&o.app, ADMIN, PASSWORD).await.status(),
        303
    );
    assert_eq!(password_sign_in(&o.app, ROOT, PASSWORD).await.status(), 303);
    assert_ne!(o.audit()[0]["action"], "break_glass_sign_in");
    o.app
        .cli(&["sso", "password-sign-in", "--tenant", t, "--on"])
        .ok();
    assert_eq!(o.audit()[0]["changes"]["password_sign_in"]["after"], true);
}

/// The password sign-in form of Settings → Single Sign-On: administrators only, and
/// refused (nothing saved) while single sign-on leaves administrators out.
#[tokio::test]
async fn only_an_administrator_turns_password_sign_in_off_on_the_settings_page() {
    if !have_provider() {
        return;
    }
    const VIEWER: &str = "vera@acme.test";
    let o = Oidc::start().await;
    let t = &o.tenant.id;
    o.app
        .cli_stdin(
            &[
                "user",
                "create",
                "--tenant",
                t,
                "--email",
                VIEWER,
                "--role",
                "viewer",
                "--password-stdin",
            ],
            Some(&format!("{PASSWORD}\n")),
        )
        .ok();
    let post = |cookie: String, csrf: String, value: &'static str| {
        o.app
            .client
            .post(format!("{}/settings/sso/password-sign-in", o.app.base))
            .header(header::ORIGIN, &o.app.base)
            .header(header::COOKIE, cookie)
            .form(&[("password_sign_in", value), ("csrf", &csrf)])
            .send()
    };
    let page = |cookie: String| {
        o.app
            .get("/settings/sso")
            .header(header::COOKIE, cookie)
            .send()
    };
    let viewer = o.app.sign_in(VIEWER, PASSWORD).await;
    let csrf = csrf_of(&page(viewer.clone()).await.unwrap().text().await.unwrap());
    let r = post(viewer, csrf, "off").await.unwrap();
    assert_eq!(r.status(), 403);

    let admin = o.app.sign_in(ADMIN, PASSWORD).await;
    let html = page(admin.clone()).await.unwrap().text().await.unwrap();
    let csrf = csrf_of(&html);
    o.app
        .cli(&["sso", "scope", "--tenant", t, "--all-accounts"])
        .ok();
    let r = post(admin.clone(), csrf.clone(), "off").await.unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("only be turned off while"));
    assert_ne!(o.audit()[0]["action"], "password_sign_in_changed");
    o.app.cli(&["sso", "scope", "--tenant", t, "--admins"]).ok();
    let r = post(admin.clone(), csrf, "off").await.unwrap();
    assert_eq!(r.status(), 303);
    let last = o.audit()[0].clone();
    assert_eq!(last["action"], "password_sign_in_changed", "{last}");
    assert_eq!(last["actor_kind"], "dashboard_user", "{last}");
    let show = o
        .app
        .cli(&["sso", "show", "--tenant", t, "--json"])
        .ok()
        .json();
    assert_eq!(show["password_sign_in"]["enforced"], true, "{show}");
    // The viewer's password no longer works; the open administrator session does.
    assert_eq!(
        password_sign_in(&o.app, VIEWER, PASSWORD).await.status(),
        403
    );
    assert_eq!(page(admin).await.unwrap().status(), 200);
}
