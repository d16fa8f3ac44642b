//! Single sign-on in the store (issue 17): SAML settings per tenant, request ids used at
//! most once (across instances on PostgreSQL), the replay store of assertion ids, subject
//! pins, account lookup by userName inside one tenant, and backup accounts' sessions.

use crate::support::*;
use cairn_core::audit::Action;
use cairn_core::oidc::OidcRequest;
use cairn_core::session::SessionSecret;
use cairn_core::sso::{AccountSessionRecord, PrincipalKind, SamlIdpConfig, SsoScope, SubjectPin};
use cairn_core::store::*;
use cairn_store::PostgresStore;
use serde_json::json;
use std::sync::Arc;
use time::Duration;

fn config(tenant: &cairn_core::ids::TenantId) -> SamlIdpConfig {
    SamlIdpConfig {
        tenant_id: tenant.clone(),
        enabled: true,
        idp_entity_id: "https://idp.example.test/metadata".into(),
        sso_url: "https://idp.example.test/sso".into(),
        certificates: vec!["MIIBcert".into(), "MIIBnext".into()],
        metadata_xml: Some("<EntityDescriptor/>".into()),
        metadata_url: None,
        scope: SsoScope {
            admins: true,
            all_accounts: false,
            accounts: vec!["a@x.io".into(), "b@x.io".into()],
        },
        updated_at: now(),
    }
}

async fn second_instance(db: &Db) -> Arc<dyn Store> {
    match &db.pg_url {
        Some(url) => Arc::new(PostgresStore::connect(url).await.expect("connect")),
        None => db.store.clone(),
    }
}

#[tokio::test]
async fn saml_settings_round_trip_per_tenant_and_are_audited() {
    let db = db_async().await;
    let s = &*db.store;
    let t1 = tenant(s, "one").await;
    let t2 = tenant(s, "two").await;
    assert!(s.get_saml_config(&t1.id).await.unwrap().is_none());
    let before = audit_count(s, &t1.id).await;
    let c = config(&t1.id);
    s.put_saml_config(&c, draft(&t1.id, Action::SsoSettingsChanged))
        .await
        .unwrap();
    assert_eq!(s.get_saml_config(&t1.id).await.unwrap(), Some(c.clone()));
    assert!(s.get_saml_config(&t2.id).await.unwrap().is_none());
    assert_eq!(audit_count(s, &t1.id).await, before + 1);

    // Replacing keeps one row per tenant.
    let mut c2 = c.clone();
    c2.enabled = false;
    c2.certificates = vec!["MIIBonly".into()];
    c2.scope = SsoScope {
        admins: false,
        all_accounts: true,
        accounts: vec![],
    };
    c2.metadata_xml = None;
    s.put_saml_config(&c2, draft(&t1.id, Action::SsoSettingsChanged))
        .await
        .unwrap();
    assert_eq!(s.get_saml_config(&t1.id).await.unwrap(), Some(c2));
}

#[tokio::test]
async fn request_ids_are_single_use_per_tenant_and_expire() {
    let db = db_async().await;
    let s = &*db.store;
    let t1 = tenant(s, "one").await;
    let t2 = tenant(s, "two").await;
    let at = now();
    s.create_sso_request(&t1.id, "_r1", at + Duration::minutes(10), 100)
        .await
        .unwrap();
    s.create_sso_request(&t1.id, "_old", at + Duration::seconds(1), 100)
        .await
        .unwrap();
    let ids = vec!["_r1".to_owned(), "_old".to_owned(), "_nope".to_owned()];
    let mut found = s.outstanding_sso_requests(&t1.id, &ids, at).await.unwrap();
    found.sort();
    assert_eq!(found, vec!["_old", "_r1"]);
    assert!(s
        .outstanding_sso_requests(&t2.id, &ids, at)
        .await
        .unwrap()
        .is_empty());
    // Another tenant cannot use it; the right tenant can, once.
    assert!(!s.take_sso_request(&t2.id, "_r1", at).await.unwrap());
    assert!(s.take_sso_request(&t1.id, "_r1", at).await.unwrap());
    assert!(!s.take_sso_request(&t1.id, "_r1", at).await.unwrap());
    // Expired: refused.
    let later = at + Duration::seconds(2);
    assert!(!s.take_sso_request(&t1.id, "_old", later).await.unwrap());
    assert!(s
        .outstanding_sso_requests(&t1.id, &ids, later)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn racing_instances_take_a_request_id_once() {
    let db = db_async().await;
    let other = second_instance(&db).await;
    let t = tenant(&*db.store, "one").await;
    let at = now();
    db.store
        .create_sso_request(&t.id, "_race", at + Duration::minutes(10), 100)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 {
            db.store.clone()
        } else {
            other.clone()
        };
        let id = t.id.clone();
        tasks.push(tokio::spawn(async move {
            store.take_sso_request(&id, "_race", at).await.unwrap()
        }));
    }
    let mut won = 0;
    for task in tasks {
        won += usize::from(task.await.unwrap());
    }
    assert_eq!(won, 1);
}

#[tokio::test]
async fn assertion_ids_are_refused_again_until_their_time_is_over() {
    let db = db_async().await;
    let other = second_instance(&db).await;
    let s = &*db.store;
    let t1 = tenant(s, "one").await;
    let t2 = tenant(s, "two").await;
    let at = now();
    let until = at + Duration::minutes(5);
    assert!(s
        .record_assertion_id(&t1.id, "_a1", until, at)
        .await
        .unwrap());
    // A replay, through this instance or another.
    assert!(!s
        .record_assertion_id(&t1.id, "_a1", until, at)
        .await
        .unwrap());
    assert!(!other
        .record_assertion_id(&t1.id, "_a1", until, at)
        .await
        .unwrap());
    // Kept apart per tenant.
    assert!(s
        .record_assertion_id(&t2.id, "_a1", until, at)
        .await
        .unwrap());
    // After keep_until the id is forgotten (its assertion has expired by then).
    let after = until + Duration::seconds(1);
    assert!(s
        .record_assertion_id(&t1.id, "_a1", after + Duration::minutes(5), after)
        .await
        .unwrap());
}

#[tokio::test]
async fn subject_pins_are_kept_once_set() {
    let db = db_async().await;
    let s = &*db.store;
    let t = tenant(s, "one").await;
    let first = SubjectPin {
        issuer: "https://idp".into(),
        subject: "a@x.io".into(),
    };
    let second = SubjectPin {
        issuer: "https://other".into(),
        subject: "a@x.io".into(),
    };
    assert!(s
        .sso_subject(&t.id, PrincipalKind::Account, "u1")
        .await
        .unwrap()
        .is_none());
    let got = s
        .pin_sso_subject(&t.id, PrincipalKind::Account, "u1", &first, now())
        .await
        .unwrap();
    assert_eq!(got, first);
    let got = s
        .pin_sso_subject(&t.id, PrincipalKind::Account, "u1", &second, now())
        .await
        .unwrap();
    assert_eq!(got, first, "the first pin stays");
    // The same id as another kind of principal is another pin.
    let got = s
        .pin_sso_subject(&t.id, PrincipalKind::DashboardUser, "u1", &second, now())
        .await
        .unwrap();
    assert_eq!(got, second);
}

#[tokio::test]
async fn accounts_are_found_by_user_name_ignoring_case_inside_their_tenant() {
    let db = db_async().await;
    let s = &*db.store;
    let t1 = tenant(s, "one").await;
    let t2 = tenant(s, "two").await;
    let u = user(&t1.id, "Alice@X.io", json!({"userName": "Alice@X.io"}));
    s.create_user(&u, draft(&t1.id, Action::UserCreated))
        .await
        .unwrap();
    let found = s
        .find_account_by_user_name(&t1.id, "alice@x.IO")
        .await
        .unwrap()
        .expect("found");
    assert_eq!(found.id, u.id);
    assert!(s
        .find_account_by_user_name(&t2.id, "alice@x.io")
        .await
        .unwrap()
        .is_none());
    // Soft-deleted accounts are not found.
    s.soft_delete_user(
        &t1.id,
        &u.id,
        None,
        now(),
        now() + Duration::days(30),
        draft(&t1.id, Action::UserDeleted),
    )
    .await
    .unwrap();
    assert!(s
        .find_account_by_user_name(&t1.id, "alice@x.io")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn account_sessions_round_trip_and_go_with_a_purged_account() {
    let db = db_async().await;
    let s = &*db.store;
    let t = tenant(s, "one").await;
    let u = user(&t.id, "a@x.io", json!({"userName": "a@x.io"}));
    s.create_user(&u, draft(&t.id, Action::UserCreated))
        .await
        .unwrap();
    let secret = SessionSecret::generate();
    let at = now();
    let rec = AccountSessionRecord {
        id_hash: secret.hash(),
        tenant_id: t.id.clone(),
        user_id: u.id.clone(),
        created_at: at,
        last_seen_at: at,
        expires_at: at + Duration::hours(12),
    };
    s.create_account_session(&rec).await.unwrap();
    let got = s
        .get_account_session(&secret.hash())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.user_id, u.id);
    assert_eq!(got.expires_at, rec.expires_at);
    let later = at + Duration::minutes(3);
    s.touch_account_session(&secret.hash(), later)
        .await
        .unwrap();
    assert_eq!(
        s.get_account_session(&secret.hash())
            .await
            .unwrap()
            .unwrap()
            .last_seen_at,
        later
    );
    s.delete_account_session(&secret.hash()).await.unwrap();
    assert!(s
        .get_account_session(&secret.hash())
        .await
        .unwrap()
        .is_none());

    // A purged account takes its sessions with it (and the purge is not blocked).
    s.create_account_session(&rec).await.unwrap();
    s.soft_delete_user(
        &t.id,
        &u.id,
        None,
        at,
        at,
        draft(&t.id, Action::UserDeleted),
    )
    .await
    .unwrap();
    let purged = purge(s, at + Duration::seconds(1)).await;
    assert_eq!(purged.len(), 1);
    assert!(s
        .get_account_session(&secret.hash())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn oidc_settings_round_trip_and_requests_are_single_use() {
    use cairn_core::oidc::{ClientSecret, OidcConfig};
    let db = db_async().await;
    let s = &*db.store;
    let t1 = tenant(s, "one").await;
    let t2 = tenant(s, "two").await;
    assert_eq!(s.get_oidc_config(&t1.id).await.unwrap(), None);
    let mut cfg = OidcConfig {
        tenant_id: t1.id.clone(),
        enabled: true,
        issuer: "https://idp.example.test".into(),
        client_id: "cairn".into(),
        client_secret: ClientSecret::new("s3cret"),
        scope: SsoScope {
            admins: true,
            all_accounts: false,
            accounts: vec!["a@x.test".into()],
        },
        updated_at: now(),
    };
    s.put_oidc_config(&cfg, draft(&t1.id, Action::SsoSettingsChanged))
        .await
        .unwrap();
    assert_eq!(s.get_oidc_config(&t1.id).await.unwrap(), Some(cfg.clone()));
    cfg.client_secret = ClientSecret::new("rotated");
    cfg.enabled = false;
    s.put_oidc_config(&cfg, draft(&t1.id, Action::SsoSettingsChanged))
        .await
        .unwrap();
    assert_eq!(s.get_oidc_config(&t1.id).await.unwrap(), Some(cfg));
    assert_eq!(s.get_oidc_config(&t2.id).await.unwrap(), None);

    let at = now();
    let req = OidcRequest {
        state: "st1".into(),
        nonce: "n1".into(),
        pkce_verifier: "v1".into(),
        expires_at: at + Duration::minutes(10),
    };
    s.create_oidc_request(&t1.id, &req, 100).await.unwrap();
    let old = OidcRequest {
        state: "old".into(),
        expires_at: at + Duration::seconds(1),
        ..req.clone()
    };
    s.create_oidc_request(&t1.id, &old, 100).await.unwrap();
    // Another tenant cannot use it; the right tenant can, once.
    assert_eq!(s.take_oidc_request(&t2.id, "st1", at).await.unwrap(), None);
    assert_eq!(
        s.take_oidc_request(&t1.id, "st1", at).await.unwrap(),
        Some(req)
    );
    assert_eq!(s.take_oidc_request(&t1.id, "st1", at).await.unwrap(), None);
    // Expired: refused.
    let later = at + Duration::seconds(2);
    assert_eq!(
        s.take_oidc_request(&t1.id, "old", later).await.unwrap(),
        None
    );
}

/// An anonymous flood of `GET /sso/{tenant}/login` (issue 17): each tenant keeps at most
/// `keep` sign-ins in progress per protocol, the latest ones; other tenants' are untouched.
#[tokio::test]
async fn sign_ins_in_progress_are_capped_per_tenant() {
    let db = db_async().await;
    let s = &*db.store;
    let t1 = tenant(s, "one").await;
    let t2 = tenant(s, "two").await;
    let at = now();
    s.create_sso_request(&t2.id, "_other", at + Duration::minutes(10), 5)
        .await
        .unwrap();
    let other = OidcRequest {
        state: "other".into(),
        nonce: "n".into(),
        pkce_verifier: "v".into(),
        expires_at: at + Duration::minutes(10),
    };
    s.create_oidc_request(&t2.id, &other, 5).await.unwrap();
    let ids: Vec<String> = (0..40).map(|i| format!("_r{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let expires = at + Duration::minutes(10) + Duration::seconds(i as i64);
        s.create_sso_request(&t1.id, id, expires, 5).await.unwrap();
        let req = OidcRequest {
            state: format!("st{i:02}"),
            expires_at: expires,
            ..other.clone()
        };
        s.create_oidc_request(&t1.id, &req, 5).await.unwrap();
    }
    let mut kept = s.outstanding_sso_requests(&t1.id, &ids, at).await.unwrap();
    kept.sort();
    assert_eq!(kept, ids[35..].to_vec(), "the five latest");
    assert!(s
        .take_oidc_request(&t1.id, "st34", at)
        .await
        .unwrap()
        .is_none());
    for i in 35..40 {
        let st = format!("st{i}");
        assert!(
            s.take_oidc_request(&t1.id, &st, at)
                .await
                .unwrap()
                .is_some(),
            "{st}"
        );
    }
    assert_eq!(
        s.outstanding_sso_requests(&t2.id, &["_other".to_owned()], at)
            .await
            .unwrap(),
        vec!["_other"]
    );
    assert!(s
        .take_oidc_request(&t2.id, "other", at)
        .await
        .unwrap()
        .is_some());
}

/// Password sign-in off per tenant (issue 17 item 6): one row per tenant, replaced on
/// each change with its audit entry, its break-glass administrator read back with their
/// email.
#[tokio::test]
async fn password_policies_name_one_break_glass_administrator_per_tenant() {
    use cairn_core::auth::PasswordHash;
    use cairn_core::ids::DashboardUserId;
    use cairn_core::sso_password::PasswordPolicy;
    let db = db_async().await;
    let s = &*db.store;
    let t1 = tenant(s, "one").await;
    let t2 = tenant(s, "two").await;
    assert_eq!(s.get_password_policy(&t1.id).await.unwrap(), None);
    let root = DashboardUser {
        id: DashboardUserId::random(),
        tenant_id: t1.id.clone(),
        email: "root@one.test".into(),
        role: Role::Administrator,
        password_hash: PasswordHash::from_phc(
            "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        ),
        created_at: now(),
        disabled: false,
        second_factor: false,
    };
    s.create_dashboard_user(&root, draft(&t1.id, Action::DashboardUserCreated))
        .await
        .unwrap();
    let mut p = PasswordPolicy {
        tenant_id: t1.id.clone(),
        password_sign_in: false,
        break_glass: Some(root.id.clone()),
        break_glass_email: None,
        updated_at: now(),
    };
    s.put_password_policy(&p, draft(&t1.id, Action::PasswordSignInChanged))
        .await
        .unwrap();
    let got = s.get_password_policy(&t1.id).await.unwrap().unwrap();
    assert_eq!(got.break_glass_email.as_deref(), Some("root@one.test"));
    assert_eq!(
        got,
        PasswordPolicy {
            break_glass_email: Some("root@one.test".into()),
            ..p.clone()
        }
    );
    assert_eq!(s.get_password_policy(&t2.id).await.unwrap(), None);
    // Replaced, not added.
    p.password_sign_in = true;
    p.break_glass = None;
    s.put_password_policy(&p, draft(&t1.id, Action::BreakGlassChanged))
        .await
        .unwrap();
    assert_eq!(s.get_password_policy(&t1.id).await.unwrap(), Some(p));
    let audit = s.list_audit(&t1.id, &Default::default()).await.unwrap();
    assert_eq!(audit[0].action, "break_glass_changed");
    assert_eq!(audit[1].action, "password_sign_in_changed");
}
