//! Device keys on the account page (issue 21): listed with their last use, added by name
//! (shown once, escaped), revoked (the key then gets 401, the other keeps working), for
//! administrators with the CSRF token only; and the last use written at most once a
//! minute per key, whatever the number of vault requests (the clock is the harness's).

use super::*;
use base64::Engine;

fn basic(user: &str, secret: &str) -> String {
    let pair = format!("{user}:{secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

impl Harness {
    /// `GET /backup/{tenant}/{id}/config`-style request with a key: its status.
    async fn vault_get(&self, id: &str, auth: &str) -> StatusCode {
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("/backup/{}/{id}?create=true", self.tenant))
            .header(header::AUTHORIZATION, auth)
            .body(Body::empty())
            .unwrap();
        self.send(req).await.status
    }

    async fn last_uses(&self, id: &str) -> Vec<(String, Option<OffsetDateTime>)> {
        let user = cairn_core::ids::UserId::parse(id).unwrap();
        let account = self.services.store.get_user(&self.tenant, &user).await;
        let keys = self
            .services
            .backup_keys_of(&account.unwrap().unwrap())
            .await
            .unwrap();
        keys.into_iter()
            .map(|k| (k.name.to_string(), k.last_used_at))
            .collect()
    }
}

#[tokio::test]
async fn keys_are_added_listed_and_revoked_on_the_account_page() {
    let h = Harness::new().await;
    let ctx = h.scim_ctx().await;
    let id = h.provision(&ctx, "keys@x.io", "Keys").await;
    let admin = h.sign_in(ADMIN).await;
    let page = h.get(&format!("/accounts/{id}"), Some(&admin)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("No backup keys"), "{}", page.body);
    let csrf = page.csrf();
    let add = |name: &'static str, csrf: String| {
        let (h, admin, id) = (&h, admin.clone(), id.clone());
        async move {
            h.post(
                &format!("/accounts/{id}/backup-key"),
                Some(&admin),
                Some(ORIGIN),
                form(&[("csrf", &csrf), ("name", name)]),
            )
            .await
        }
    };
    // Without the CSRF token nothing is created.
    let r = add("laptop", "wrong".into()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // A name with markup: escaped on the page; the secret shown once, not cached.
    let r = add("<b>laptop</b>", csrf.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    assert!(!r.body.contains("<b>laptop"), "{}", r.body);
    assert!(r.body.contains("&#60;b&#62;laptop"), "{}", r.body);
    let user = field_value(&r.body, "<dt>User</dt><dd><code>");
    let secret = field_value(&r.body, "<dt>Secret</dt><dd><code class=\"secret\">");
    let secret = secret.split('<').next().unwrap().to_owned();
    let user = user.split('<').next().unwrap().to_owned();
    let r2 = add("desktop", csrf.clone()).await;
    assert_eq!(r2.status, StatusCode::OK);
    let user2 = field_value(&r2.body, "<dt>User</dt><dd><code>");
    let user2 = user2.split('<').next().unwrap().to_owned();
    let secret2 = field_value(&r2.body, "<dt>Secret</dt><dd><code class=\"secret\">");
    let secret2 = secret2.split('<').next().unwrap().to_owned();
    // A name the account has: refused with a reason, nothing created.
    let dup = add("DESKTOP", csrf.clone()).await;
    assert_eq!(dup.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        dup.body.contains("already has a backup key named"),
        "{}",
        dup.body
    );
    let blank = add("   ", csrf.clone()).await;
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Both open the repository; the page lists both with their last use, no secrets.
    assert_eq!(
        h.vault_get(&id, &basic(&user, &secret)).await,
        StatusCode::OK
    );
    assert_eq!(
        h.vault_get(&id, &basic(&user2, &secret2)).await,
        StatusCode::OK
    );
    let page = h.get(&format!("/accounts/{id}"), Some(&admin)).await;
    assert_eq!(
        page.body.matches("class=\"key\"").count(),
        2,
        "{}",
        page.body
    );
    assert!(page.body.contains("just now"), "{}", page.body);
    assert!(!page.body.contains(&secret) && !page.body.contains(&secret2));

    // A viewer sees the keys, but no forms, and cannot revoke.
    let viewer = h.sign_in(VIEWER).await;
    let vpage = h.get(&format!("/accounts/{id}"), Some(&viewer)).await;
    assert_eq!(vpage.body.matches("class=\"key\"").count(), 2);
    assert!(!vpage.body.contains("Revoke") && !vpage.body.contains("Add key"));
    let r = h
        .post(
            &format!("/accounts/{id}/backup-key/revoke"),
            Some(&viewer),
            Some(ORIGIN),
            form(&[("csrf", &vpage.csrf()), ("name", "desktop")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Revoking one: 401 for it, the other keeps working.
    let r = h
        .post(
            &format!("/accounts/{id}/backup-key/revoke"),
            Some(&admin),
            Some(ORIGIN),
            form(&[("csrf", &csrf), ("name", "<b>laptop</b>")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body.matches("class=\"key\"").count(), 1);
    assert_eq!(
        h.vault_get(&id, &basic(&user, &secret)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.vault_get(&id, &basic(&user2, &secret2)).await,
        StatusCode::OK
    );
    // The history names the keys.
    let page = h.get(&format!("/accounts/{id}"), Some(&admin)).await;
    assert!(page.body.contains("Backup key created"), "{}", page.body);
    assert!(page.body.contains("Backup key revoked"), "{}", page.body);
}

/// Recording last use must not cost a write per vault request: many requests within a
/// minute write once, the next minute's first request writes again, and only the key
/// used moves.
#[tokio::test]
async fn last_use_is_written_at_most_once_a_minute_per_key() {
    let h = Harness::new().await;
    let ctx = h.scim_ctx().await;
    let id = h.provision(&ctx, "busy@x.io", "Busy").await;
    let op = OperatorCtx::local_operator();
    let mut auth = Vec::new();
    for name in ["a", "b"] {
        let k = h
            .services
            .create_backup_key(
                Authority::Operator(&op),
                &h.tenant,
                "busy@x.io",
                name,
                &RequestMeta::default(),
            )
            .await
            .unwrap();
        auth.push(basic(&k.key_user, k.secret.expose()));
    }
    let t0 = h.clock.now();
    // Stored to the millisecond.
    let ms = |t: OffsetDateTime| t.unix_timestamp_nanos() / 1_000_000;
    let seen = |uses: Vec<(String, Option<OffsetDateTime>)>| {
        uses.into_iter().map(|(_, t)| t.map(ms)).collect::<Vec<_>>()
    };
    assert_eq!(seen(h.last_uses(&id).await), [None, None]);
    let audit_before = h
        .services
        .store
        .list_audit(&h.tenant, &Default::default())
        .await
        .unwrap()
        .len();
    for _ in 0..50 {
        assert_eq!(h.vault_get(&id, &auth[0]).await, StatusCode::OK);
        h.clock.advance(time::Duration::seconds(1));
    }
    // 50 requests over 50 seconds: one write, at the first.
    assert_eq!(seen(h.last_uses(&id).await), [Some(ms(t0)), None]);
    h.clock.advance(time::Duration::seconds(10));
    assert_eq!(h.vault_get(&id, &auth[0]).await, StatusCode::OK);
    let t1 = t0 + time::Duration::seconds(60);
    assert_eq!(seen(h.last_uses(&id).await), [Some(ms(t1)), None]);
    assert_eq!(h.vault_get(&id, &auth[1]).await, StatusCode::OK);
    assert_eq!(seen(h.last_uses(&id).await), [Some(ms(t1)), Some(ms(t1))]);
    // Recording use is not an audited change.
    let audit_after = h
        .services
        .store
        .list_audit(&h.tenant, &Default::default())
        .await
        .unwrap()
        .len();
    assert_eq!(audit_before, audit_after);
}

/// A backup account's session as single sign-on would leave it; the `Cookie` header.
async fn account_session(h: &Harness, id: &str) -> (String, cairn_core::session::SessionSecret) {
    let secret = cairn_core::session::SessionSecret::generate();
    let now = h.clock.now();
    h.services
        .store
        .create_account_session(&cairn_core::sso::AccountSessionRecord {
            id_hash: secret.hash(),
            tenant_id: h.tenant.clone(),
            user_id: cairn_core::ids::UserId::parse(id).unwrap(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + time::Duration::hours(8),
        })
        .await
        .unwrap();
    let cookie = format!(
        "{}={}",
        crate::sso::account_cookie_name(false),
        secret.expose()
    );
    (cookie, secret)
}

/// Self-service on `/me`: the signed-in backup account adds and revokes its own keys
/// (CSRF token and origin checked), and cannot touch another account's.
#[tokio::test]
async fn a_signed_in_account_manages_its_own_keys_only() {
    let h = Harness::new().await;
    let ctx = h.scim_ctx().await;
    let id = h.provision(&ctx, "self@x.io", "Self").await;
    let other = h.provision(&ctx, "other@x.io", "Other").await;
    let (cookie, secret) = account_session(&h, &id).await;
    let (other_cookie, _) = account_session(&h, &other).await;
    let page = h.get("/me", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("No backup keys"), "{}", page.body);
    let csrf = page.csrf();
    assert_eq!(csrf, crate::dashboard::backup_keys::account_csrf(&secret));
    let post = |path: &'static str, cookie: String, origin: Option<&'static str>, body: String| {
        let h = &h;
        async move { h.post(path, Some(&cookie), origin, body).await }
    };
    // Refused: no token, another session's token, another origin.
    let (_, other_secret) = account_session(&h, &id).await;
    for (token, origin) in [
        ("", Some(ORIGIN)),
        (
            crate::dashboard::backup_keys::account_csrf(&other_secret).as_str(),
            Some(ORIGIN),
        ),
        (csrf.as_str(), Some("http://evil.test")),
        (csrf.as_str(), None),
    ] {
        let r = post(
            "/me/backup-key",
            cookie.clone(),
            origin,
            form(&[("csrf", token), ("name", "phone")]),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{token} {origin:?}");
    }
    // Not signed in: refused.
    let r = h
        .post(
            "/me/backup-key",
            None,
            Some(ORIGIN),
            form(&[("csrf", &csrf), ("name", "x")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let r = post(
        "/me/backup-key",
        cookie.clone(),
        Some(ORIGIN),
        form(&[("csrf", &csrf), ("name", "phone")]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    let user = field_value(&r.body, "<dt>User</dt><dd><code>");
    let user = user.split('<').next().unwrap().to_owned();
    let secret_shown = field_value(&r.body, "<dt>Secret</dt><dd><code class=\"secret\">");
    let secret_shown = secret_shown.split('<').next().unwrap().to_owned();
    let auth = basic(&user, &secret_shown);
    assert_eq!(h.vault_get(&id, &auth).await, StatusCode::OK);
    // The key is this account's only: it does not open the other account's repository.
    assert_eq!(h.vault_get(&other, &auth).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.last_uses(&other).await.len(), 0);

    // The other account's session cannot revoke it (it names its own keys only).
    let other_page = h.get("/me", Some(&other_cookie)).await;
    let r = post(
        "/me/backup-key/revoke",
        other_cookie.clone(),
        Some(ORIGIN),
        form(&[("csrf", &other_page.csrf()), ("name", "phone")]),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(h.vault_get(&id, &auth).await, StatusCode::OK);

    let r = post(
        "/me/backup-key/revoke",
        cookie.clone(),
        Some(ORIGIN),
        form(&[("csrf", &csrf), ("name", "phone")]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(h.vault_get(&id, &auth).await, StatusCode::UNAUTHORIZED);
    // Audited as the account itself (single sign-on), with the key's name.
    let events = h
        .services
        .store
        .list_audit(&h.tenant, &Default::default())
        .await
        .unwrap();
    let revoked = events
        .iter()
        .find(|e| e.action == "backup_key_revoked")
        .unwrap();
    assert_eq!(revoked.actor_kind, "sso");
    assert_eq!(revoked.actor_id.as_deref(), Some("self@x.io"));
    assert!(revoked.changes.to_string().contains("phone"));
}
