//! Sign-in throttling in the store: the charge of an attempt is atomic (one verification
//! per allowed attempt however many race, across instances on PostgreSQL), a charge can be
//! given back, old failures expire; and the SCIM auth cache in front of the store.

use crate::support::*;
use cairn_core::auth::{ScimAuthenticator, ScimToken};
use cairn_core::ids::{TenantId, TokenId};
use cairn_core::session::ThrottleRule;
use cairn_core::store::Store;
use cairn_core::tenant::TokenInfo;
use cairn_store::PostgresStore;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

fn key(n: u8) -> [u8; 32] {
    [n; 32]
}

fn rule(k: [u8; 32], max: u32) -> ThrottleRule {
    ThrottleRule {
        key: k,
        max,
        spacing: None,
    }
}

/// Two handles on the database: on PostgreSQL a second connection pool, as a second
/// instance of Cairn has; on SQLite the one store (one process owns the file).
async fn second_instance(db: &Db) -> Arc<dyn Store> {
    match &db.pg_url {
        Some(url) => Arc::new(PostgresStore::connect(url).await.expect("connect")),
        None => db.store.clone(),
    }
}

#[tokio::test]
async fn parallel_charges_never_pass_the_limit() {
    let db = db_async().await;
    let other = second_instance(&db).await;
    let at = now();
    let since = at - time::Duration::minutes(15);
    // 60 attempts at once, half through each instance, against a limit of 5 on one key
    // and 20 on another: exactly 5 may go ahead.
    let rules = [rule(key(1), 5), rule(key(2), 20)];
    let mut tasks = Vec::new();
    for i in 0..60 {
        let store = if i % 2 == 0 {
            db.store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            store.charge_login_attempt(&rules, at, since).await.unwrap()
        }));
    }
    let mut allowed = 0;
    for t in tasks {
        match t.await.unwrap() {
            None => allowed += 1,
            Some(wait) => assert!(wait >= time::Duration::seconds(1), "{wait}"),
        }
    }
    assert_eq!(allowed, 5);
    let (n1, _) = db.store.login_failures_since(&key(1), since).await.unwrap();
    let (n2, _) = db.store.login_failures_since(&key(2), since).await.unwrap();
    assert_eq!((n1, n2), (5, 5), "a refused attempt records nothing");
}

#[tokio::test]
async fn a_credited_charge_is_taken_back_and_spacing_slows_without_locking() {
    let db = db_async().await;
    let t0 = now();
    let since = t0 - time::Duration::minutes(15);
    let rules = [rule(key(3), 2)];
    assert_eq!(
        db.store
            .charge_login_attempt(&rules, t0, since)
            .await
            .unwrap(),
        None
    );
    db.store.credit_login_attempt(&[key(3)], t0).await.unwrap();
    assert_eq!(
        db.store
            .login_failures_since(&key(3), since)
            .await
            .unwrap()
            .0,
        0
    );
    for _ in 0..2 {
        assert_eq!(
            db.store
                .charge_login_attempt(&rules, t0, since)
                .await
                .unwrap(),
            None
        );
    }
    // Locked until the oldest failure leaves the window.
    let wait = db
        .store
        .charge_login_attempt(&rules, t0, since)
        .await
        .unwrap();
    assert_eq!(wait, Some(time::Duration::minutes(15)));

    // A spaced rule allows one attempt per spacing once over its count.
    let spaced = [ThrottleRule {
        key: key(4),
        max: 1,
        spacing: Some(time::Duration::seconds(5)),
    }];
    assert_eq!(
        db.store
            .charge_login_attempt(&spaced, t0, since)
            .await
            .unwrap(),
        None
    );
    let t1 = t0 + time::Duration::seconds(2);
    assert_eq!(
        db.store
            .charge_login_attempt(&spaced, t1, since)
            .await
            .unwrap(),
        Some(time::Duration::seconds(3))
    );
    let t2 = t0 + time::Duration::seconds(5);
    assert_eq!(
        db.store
            .charge_login_attempt(&spaced, t2, since)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn failures_older_than_the_window_are_deleted() {
    let db = db_async().await;
    let t0 = now();
    let old = t0 - time::Duration::minutes(20);
    db.store.record_login_failure(&[key(5)], old).await.unwrap();
    db.store.record_login_failure(&[key(5)], t0).await.unwrap();
    let epoch = OffsetDateTime::UNIX_EPOCH;
    assert_eq!(
        db.store
            .login_failures_since(&key(5), epoch)
            .await
            .unwrap()
            .0,
        2
    );
    db.store
        .delete_expired_sessions(
            t0,
            t0 - time::Duration::minutes(30),
            t0 - time::Duration::minutes(15),
        )
        .await
        .unwrap();
    assert_eq!(
        db.store
            .login_failures_since(&key(5), epoch)
            .await
            .unwrap()
            .0,
        1
    );
}

/// Requests naming random tenants neither clear nor evict the cached state of a real one,
/// and the cache stays bounded.
#[tokio::test]
async fn unknown_tenants_do_not_evict_a_real_tenant_from_the_auth_cache() {
    let db = db_async().await;
    let t = tenant(&*db.store, "acme").await;
    let tok = ScimToken::generate();
    let info = TokenInfo {
        id: TokenId::random(),
        tenant_id: t.id.clone(),
        hint: tok.hint(),
        created_at: now(),
        last_used_at: None,
        last_user_agent: None,
    };
    db.store
        .replace_token(
            &t.id,
            &info,
            &tok.hash(),
            draft(&t.id, cairn_core::audit::Action::TokenGenerated),
        )
        .await
        .unwrap();
    let auth = ScimAuthenticator::new(db.store.clone(), Duration::from_secs(3600));
    let bearer = format!("Bearer {}", tok.expose());
    auth.authenticate(t.id.as_str(), Some(&bearer))
        .await
        .unwrap();
    assert!(auth.is_cached(&t.id));
    // More random tenants than the old cache held before it cleared itself (100,000).
    for _ in 0..100_500 {
        let r = auth
            .authenticate(TenantId::random().as_str(), Some(&bearer))
            .await;
        assert!(r.is_err());
    }
    assert!(auth.is_cached(&t.id), "a real tenant's entry was evicted");
    assert!(
        auth.cached_len() <= 20_000,
        "the cache holds {} entries",
        auth.cached_len()
    );
    auth.authenticate(t.id.as_str(), Some(&bearer))
        .await
        .unwrap();
}
