//! Settings → Users, one-time password links, and the second factor (issue 22), through
//! the router against a real store (SQLite; PostgreSQL with `CAIRN_TEST_BACKEND=postgres`).

use super::*;
use cairn_core::audit::{Action, AuditQuery};
use cairn_core::totp::{code_at_step, step_of, TotpSecret};

/// RFC 4648 §6 base32 (as the pages show the key: groups of four, spaces between).
fn base32_decode(s: &str) -> Vec<u8> {
    let (mut acc, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in s.chars().filter(|c| !c.is_whitespace()) {
        let v = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".find(c).expect("base32") as u32;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// The key a page shows for the authenticator app.
fn shown_secret(body: &str) -> TotpSecret {
    let i = body.find("id=\"totp-secret\">").expect("key on page") + "id=\"totp-secret\">".len();
    let key = body[i..].split('<').next().unwrap();
    TotpSecret::from_bytes(base32_decode(key))
}

fn cookie_named(res: &Resp, name: &str) -> Option<String> {
    res.cookies()
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")) && !c.contains("Max-Age=0"))
        .map(|c| c.split(';').next().unwrap().to_owned())
}

fn recovery_codes(body: &str) -> Vec<String> {
    body.split("<li><code>")
        .skip(1)
        .map(|s| s.split('<').next().unwrap().to_owned())
        .collect()
}

impl Harness {
    fn code(&self, secret: &TotpSecret) -> String {
        format!("{:06}", code_at_step(secret, step_of(self.clock.now())))
    }

    async fn actions(&self) -> Vec<String> {
        self.services
            .audit_log(&self.tenant, &AuditQuery::default())
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect()
    }

    /// The password step: the response and the second-step challenge cookie.
    async fn password_step(&self, email: &str, password: &str) -> (Resp, String) {
        let (res, session) = self.try_sign_in(email, password).await;
        assert!(session.is_none(), "no session before the second step");
        let challenge = cookie_named(&res, "cairn_2fa").expect("challenge cookie");
        (res, challenge)
    }

    /// Posts `code` to a second-step page (`/login/second-factor` or `/login/enrol`).
    async fn second_step(&self, path: &str, challenge: &str, code: &str) -> (Resp, Option<String>) {
        let page = self
            .get(&format!("{path}?next=/accounts"), Some(challenge))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let form_cookie = cookie_named(&page, "cairn_login").unwrap();
        let res = self
            .post(
                path,
                Some(&format!("{form_cookie}; {challenge}")),
                Some(ORIGIN),
                form(&[
                    ("csrf", &page.csrf()),
                    ("code", code),
                    ("next", "/accounts"),
                ]),
            )
            .await;
        let session = cookie_named(&res, "cairn_session");
        (res, session)
    }

    /// Turns on TOTP for the signed-in user through Settings → Security: the secret and
    /// the recovery codes.
    async fn enrol(&self, cookie: &str) -> (TotpSecret, Vec<String>) {
        let page = self.get("/settings/security", Some(cookie)).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(
            page.body.contains("data:image/svg+xml;base64,"),
            "a QR code"
        );
        let secret = shown_secret(&page.body);
        let res = self
            .post(
                "/settings/security/totp",
                Some(cookie),
                Some(ORIGIN),
                form(&[("csrf", &page.csrf()), ("code", &self.code(&secret))]),
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        let codes = recovery_codes(&res.body);
        assert_eq!(codes.len(), 10);
        (secret, codes)
    }

    /// Posts a form of Settings → Users.
    async fn users_post(&self, cookie: &str, path: &str, pairs: &[(&str, &str)]) -> Resp {
        let page = self.get("/accounts", Some(cookie)).await;
        let mut all = vec![("csrf", page.csrf())];
        all.extend(pairs.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let body = all
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.post(path, Some(cookie), Some(ORIGIN), body).await
    }

    async fn user_id(&self, email: &str) -> String {
        self.services
            .dashboard_user_by_email(
                Authority::Operator(&OperatorCtx::local_operator()),
                &self.tenant,
                email,
            )
            .await
            .unwrap()
            .id
            .to_string()
    }
}

/// The link shown once on the page.
fn shown_link(body: &str) -> String {
    let url = field_value(body, "id=\"new_link\" type=\"text\" value=\"");
    url.strip_prefix(ORIGIN)
        .expect("a link of this site")
        .to_owned()
}

/// Sets a password through a one-time link page.
async fn set_password(h: &Harness, path: &str, password: &str) -> Resp {
    let page = h.get(path, None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let form_cookie = cookie_named(&page, "cairn_login").unwrap();
    h.post(
        path,
        Some(&form_cookie),
        Some(ORIGIN),
        form(&[
            ("csrf", &page.csrf()),
            ("password", password),
            ("password_again", password),
        ]),
    )
    .await
}

#[tokio::test]
async fn administrators_invite_change_disable_reset_and_delete_users_with_audit() {
    let h = Harness::new().await;
    let admin = h.sign_in(ADMIN).await;
    let list = h.get("/settings/users", Some(&admin)).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains(ADMIN) && list.body.contains(VIEWER));
    assert!(list.body.contains("never"), "the viewer has not signed in");

    // Invite: the link is shown once; it sets a password once.
    let res = h
        .users_post(
            &admin,
            "/settings/users/invite",
            &[("email", "new@acme.test"), ("role", "viewer")],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let link = shown_link(&res.body);
    assert!(res.body.contains("invited"));
    assert_eq!(
        h.try_sign_in("new@acme.test", "").await.0.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let short = set_password(&h, &link, "short").await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    let done = set_password(&h, &link, "a long new password").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.location(), "/login?password_set=1");
    assert_eq!(
        h.get(&link, None).await.status,
        StatusCode::GONE,
        "used once"
    );
    let (res, new_session) = h.try_sign_in("new@acme.test", "a long new password").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let new_session = new_session.unwrap();

    // Role change, applied to the open session at once.
    let new_id = h.user_id("new@acme.test").await;
    let res = h
        .users_post(
            &admin,
            &format!("/settings/users/{new_id}"),
            &[("action", "set_role"), ("role", "administrator")],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(
        h.get("/settings/users", Some(&new_session)).await.status,
        StatusCode::OK
    );

    // Disable ends the sessions and refuses the password; enable lets it in again.
    let res = h
        .users_post(
            &admin,
            &format!("/settings/users/{new_id}"),
            &[("action", "disable")],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(
        h.get("/accounts", Some(&new_session)).await.status,
        StatusCode::SEE_OTHER
    );
    let (res, _) = h.try_sign_in("new@acme.test", "a long new password").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    h.users_post(
        &admin,
        &format!("/settings/users/{new_id}"),
        &[("action", "enable")],
    )
    .await;
    let new_session = h
        .try_sign_in("new@acme.test", "a long new password")
        .await
        .1
        .expect("signed in again");

    // A password reset ends the sessions, clears the password, and gives a new link.
    let res = h
        .users_post(
            &admin,
            &format!("/settings/users/{new_id}"),
            &[("action", "reset_password")],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let reset = shown_link(&res.body);
    assert_eq!(
        h.get("/accounts", Some(&new_session)).await.status,
        StatusCode::SEE_OTHER
    );
    let (res, _) = h.try_sign_in("new@acme.test", "a long new password").await;
    assert_eq!(
        res.status,
        StatusCode::UNAUTHORIZED,
        "the old password is gone"
    );
    assert_eq!(
        set_password(&h, &reset, "another long password")
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    assert!(h
        .try_sign_in("new@acme.test", "another long password")
        .await
        .1
        .is_some());

    // Delete.
    let res = h
        .users_post(
            &admin,
            &format!("/settings/users/{new_id}"),
            &[("action", "delete")],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(!res.body.contains("new@acme.test\""), "gone from the list");
    let (res, _) = h
        .try_sign_in("new@acme.test", "another long password")
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);

    let actions = h.actions().await;
    for a in [
        Action::DashboardUserInvited,
        Action::DashboardPasswordSet,
        Action::DashboardUserRoleChanged,
        Action::DashboardUserDisabled,
        Action::DashboardUserEnabled,
        Action::DashboardPasswordReset,
        Action::DashboardUserDeleted,
    ] {
        assert!(
            actions.iter().any(|x| x == a.as_str()),
            "{a:?} audited: {actions:?}"
        );
    }
}

#[tokio::test]
async fn the_last_administrator_cannot_demote_disable_or_delete_themself() {
    let h = Harness::new().await;
    let admin = h.sign_in(ADMIN).await;
    let me = h.user_id(ADMIN).await;
    for pairs in [
        &[("action", "set_role"), ("role", "viewer")][..],
        &[("action", "disable")][..],
        &[("action", "delete")][..],
    ] {
        let res = h
            .users_post(&admin, &format!("/settings/users/{me}"), pairs)
            .await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{pairs:?}");
        assert!(
            res.body.contains("last active administrator"),
            "{}",
            res.body
        );
    }
    // With a second administrator, the first may step down.
    let viewer = h.user_id(VIEWER).await;
    h.users_post(
        &admin,
        &format!("/settings/users/{viewer}"),
        &[("action", "set_role"), ("role", "administrator")],
    )
    .await;
    let res = h
        .users_post(
            &admin,
            &format!("/settings/users/{me}"),
            &[("action", "set_role"), ("role", "viewer")],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.body.contains("is now viewer"));
    // A viewer now: the next request reads the new role.
    assert_eq!(
        h.get("/settings/users", Some(&admin)).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_viewer_gets_403_on_the_users_page_and_every_post() {
    let h = Harness::new().await;
    let viewer = h.sign_in(VIEWER).await;
    let admin_id = h.user_id(ADMIN).await;
    assert_eq!(
        h.get("/settings/users", Some(&viewer)).await.status,
        StatusCode::FORBIDDEN
    );
    let path = format!("/settings/users/{admin_id}");
    let posts: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "/settings/users/invite",
            vec![("email", "x@acme.test"), ("role", "administrator")],
        ),
        (
            "/settings/users/policy",
            vec![("require_second_factor", "on")],
        ),
        (&path, vec![("action", "set_role"), ("role", "viewer")]),
        (&path, vec![("action", "disable")]),
        (&path, vec![("action", "enable")]),
        (&path, vec![("action", "delete")]),
        (&path, vec![("action", "reset_password")]),
        (&path, vec![("action", "reset_second_factor")]),
    ];
    let before = h.actions().await.len();
    for (path, pairs) in posts {
        let res = h.users_post(&viewer, path, &pairs).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{path} {pairs:?}");
    }
    assert_eq!(h.actions().await.len(), before, "nothing changed");
    // Their own Security page is theirs.
    assert_eq!(
        h.get("/settings/security", Some(&viewer)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn totp_enrolment_sign_in_wrong_code_replay_and_recovery_codes() {
    let h = Harness::new().await;
    let admin = h.sign_in(ADMIN).await;
    // A wrong code does not turn it on.
    let page = h.get("/settings/security", Some(&admin)).await;
    let res = h
        .post(
            "/settings/security/totp",
            Some(&admin),
            Some(ORIGIN),
            form(&[("csrf", &page.csrf()), ("code", "000000")]),
        )
        .await;
    if res.status == StatusCode::OK {
        panic!("000000 happened to be right; rerun");
    }
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    let (secret, codes) = h.enrol(&admin).await;
    assert!(h
        .actions()
        .await
        .iter()
        .any(|x| x == "second_factor_enabled"));

    // The password alone no longer signs in.
    let (res, challenge) = h.password_step(ADMIN, PASSWORD).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(res.location().starts_with("/login/second-factor"));
    // A wrong code.
    let wrong = format!(
        "{:06}",
        (code_at_step(&secret, step_of(h.clock.now())) + 1) % 1_000_000
    );
    let (res, session) = h
        .second_step("/login/second-factor", &challenge, &wrong)
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(session.is_none());
    // The code of this step was used to enrol: a replay within its window is refused.
    let (res, session) = h
        .second_step("/login/second-factor", &challenge, &h.code(&secret))
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "replayed");
    assert!(session.is_none());
    // The next step's code signs in.
    h.clock.advance(time::Duration::seconds(30));
    let code = h.code(&secret);
    let (res, session) = h
        .second_step("/login/second-factor", &challenge, &code)
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(res.location(), "/accounts");
    assert_eq!(
        h.get("/accounts", Some(&session.unwrap())).await.status,
        StatusCode::OK
    );
    // The challenge was used up; the same code through a new challenge is a replay.
    let (res, _) = h
        .second_step("/login/second-factor", &challenge, &code)
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(res.location().starts_with("/login?expired"));
    let (_, challenge) = h.password_step(ADMIN, PASSWORD).await;
    let (res, _) = h
        .second_step("/login/second-factor", &challenge, &code)
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "replayed");

    // A recovery code works once.
    let (res, session) = h
        .second_step("/login/second-factor", &challenge, &codes[3].to_uppercase())
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert!(session.is_some());
    let (_, challenge) = h.password_step(ADMIN, PASSWORD).await;
    let (res, session) = h
        .second_step("/login/second-factor", &challenge, &codes[3])
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "used once");
    assert!(session.is_none());
    assert!(h.actions().await.iter().any(|x| x == "recovery_code_used"));
}

#[tokio::test]
async fn throttling_covers_the_second_factor_step() {
    let h = Harness::new().await;
    let admin = h.sign_in(ADMIN).await;
    let (secret, _) = h.enrol(&admin).await;
    h.clock.advance(time::Duration::seconds(30));
    let right = h.code(&secret);
    let wrong = format!(
        "{:06}",
        (code_at_step(&secret, step_of(h.clock.now())) + 7) % 1_000_000
    );
    let (_, challenge) = h.password_step(ADMIN, PASSWORD).await;
    for _ in 0..cairn_core::session::MAX_SECOND_FACTOR_FAILURES {
        let (res, _) = h
            .second_step("/login/second-factor", &challenge, &wrong)
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    // Locked: even the right code is refused, and the password step again does not reset
    // the count.
    let (res, session) = h
        .second_step("/login/second-factor", &challenge, &right)
        .await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers.contains_key(header::RETRY_AFTER));
    assert!(session.is_none());
    let (_, challenge) = h.password_step(ADMIN, PASSWORD).await;
    let (res, _) = h
        .second_step("/login/second-factor", &challenge, &right)
        .await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    // After the window, the right code signs in.
    h.clock.advance(cairn_core::session::THROTTLE_WINDOW);
    let (_, challenge) = h.password_step(ADMIN, PASSWORD).await;
    let (res, session) = h
        .second_step("/login/second-factor", &challenge, &h.code(&secret))
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert!(session.is_some());
}

#[tokio::test]
async fn a_tenant_that_requires_2fa_sends_password_sign_ins_to_enrolment() {
    let h = Harness::new().await;
    let admin = h.sign_in(ADMIN).await;
    let res = h
        .users_post(
            &admin,
            "/settings/users/policy",
            &[("require_second_factor", "on")],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(h
        .actions()
        .await
        .iter()
        .any(|x| x == "second_factor_policy_changed"));
    let (res, challenge) = h.password_step(VIEWER, PASSWORD).await;
    assert!(
        res.location().starts_with("/login/enrol"),
        "{}",
        res.location()
    );
    // The enrolment page shows the QR code and the key; the challenge cannot be used as
    // a second factor (no code yet).
    let page = h.get("/login/enrol", Some(&challenge)).await;
    assert!(page.body.contains("data:image/svg+xml;base64,"));
    let secret = shown_secret(&page.body);
    let (res, _) = h
        .second_step("/login/second-factor", &challenge, &h.code(&secret))
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(res.location().starts_with("/login?expired"));
    let (res, session) = h
        .second_step("/login/enrol", &challenge, &h.code(&secret))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(recovery_codes(&res.body).len(), 10);
    assert_eq!(
        h.get("/accounts", Some(&session.unwrap())).await.status,
        StatusCode::OK
    );
    // From now on, the code is asked for.
    h.clock.advance(time::Duration::seconds(30));
    let (res, challenge) = h.password_step(VIEWER, PASSWORD).await;
    assert!(res.location().starts_with("/login/second-factor"));
    let (res, session) = h
        .second_step("/login/second-factor", &challenge, &h.code(&secret))
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(session.is_some());
}
