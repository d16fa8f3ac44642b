//! Backup vault storage: backup keys (replaced, tenant-scoped, removed by the purge) and
//! the used-space counter with its atomic quota check.

use crate::support::*;
use cairn_core::audit::Action;
use cairn_core::auth::TokenHash;
use cairn_core::ids::UserId;
use cairn_core::vault::{BackupKeyRecord, ByteCount};
use cairn_core::Error;
use serde_json::json;

fn key(u: &cairn_core::user::UserRecord, secret: &str) -> BackupKeyRecord {
    BackupKeyRecord {
        tenant_id: u.tenant_id.clone(),
        user_id: u.id.clone(),
        key_user: u.id.to_string(),
        hash: TokenHash::of(secret),
        created_at: now(),
    }
}

#[tokio::test]
async fn backup_keys_are_replaced_scoped_and_purged_with_the_account() {
    let db = db_async().await;
    let t = tenant(&*db.store, "acme").await;
    let other = tenant(&*db.store, "other").await;
    let u = user(&t.id, "alice@x.io", json!({"userName": "alice@x.io"}));
    db.store
        .create_user(&u, draft(&t.id, Action::UserCreated))
        .await
        .unwrap();
    assert!(db.store.backup_key(&t.id, &u.id).await.unwrap().is_none());
    let before = audit_count(&*db.store, &t.id).await;
    db.store
        .set_backup_key(&key(&u, "one"), draft(&t.id, Action::BackupKeyGenerated))
        .await
        .unwrap();
    db.store
        .set_backup_key(&key(&u, "two"), draft(&t.id, Action::BackupKeyGenerated))
        .await
        .unwrap();
    assert_eq!(audit_count(&*db.store, &t.id).await, before + 2);
    let k = db.store.backup_key(&t.id, &u.id).await.unwrap().unwrap();
    assert!(k.hash.ct_eq(&TokenHash::of("two")));
    assert_eq!(k.key_user, u.id.to_string());
    // Another tenant does not see it; an unknown account cannot get one.
    assert!(db
        .store
        .backup_key(&other.id, &u.id)
        .await
        .unwrap()
        .is_none());
    let ghost = user(&t.id, "ghost@x.io", json!({"userName": "ghost@x.io"}));
    let err = db
        .store
        .set_backup_key(&key(&ghost, "x"), draft(&t.id, Action::BackupKeyGenerated))
        .await
        .unwrap_err();
    assert_eq!(err, Error::NotFound("user"));

    // Soft delete keeps the key (restore brings access back); the purge removes it.
    let at = now();
    db.store
        .soft_delete_user(
            &t.id,
            &u.id,
            None,
            at,
            at + time::Duration::days(1),
            draft(&t.id, Action::UserDeleted),
        )
        .await
        .unwrap();
    assert!(db.store.backup_key(&t.id, &u.id).await.unwrap().is_some());
    let purged = purge(&*db.store, at + time::Duration::days(2)).await;
    assert_eq!(purged.len(), 1);
    assert!(db.store.backup_key(&t.id, &u.id).await.unwrap().is_none());
}

#[tokio::test]
async fn used_bytes_are_charged_within_the_limit_and_never_move_the_wrong_way() {
    let db = db_async().await;
    let t = tenant(&*db.store, "acme").await;
    let u = user(&t.id, "bob@x.io", json!({"userName": "bob@x.io"}));
    db.store
        .create_user(&u, draft(&t.id, Action::UserCreated))
        .await
        .unwrap();
    let used = |db: &Db| {
        let (s, t, id) = (db.store.clone(), t.id.clone(), u.id.clone());
        async move { s.get_user(&t, &id).await.unwrap().unwrap().used_bytes }
    };
    let b = |n: u64| ByteCount::new(n).unwrap();
    let max = b(i64::MAX as u64);
    let s = &db.store;
    let charge = |n, limit| s.charge_used_bytes(&t.id, &u.id, n, limit);
    assert!(charge(b(600), Some(b(1000))).await.unwrap());
    assert!(!charge(b(401), Some(b(1000))).await.unwrap());
    assert!(charge(b(400), Some(b(1000))).await.unwrap());
    assert_eq!(used(&db).await, 1000);
    // A charge larger than the limit itself, or as large as the counter can be, is
    // refused without arithmetic overflow in SQL.
    assert!(!charge(b(1001), Some(b(1000))).await.unwrap());
    assert!(!charge(max, Some(max)).await.unwrap());
    assert!(!charge(max, None).await.unwrap());
    assert_eq!(used(&db).await, 1000);
    // Without a limit (a recount) the charge lands, up to the counter's range.
    assert!(charge(b(5), None).await.unwrap());
    assert!(charge(b(i64::MAX as u64 - 1005), None).await.unwrap());
    assert_eq!(used(&db).await, i64::MAX);
    assert!(!charge(b(1), None).await.unwrap());
    let refund = |n| s.refund_used_bytes(&t.id, &u.id, n);
    assert!(refund(b(i64::MAX as u64 - 1005)).await.unwrap());
    assert_eq!(used(&db).await, 1005);
    // A give-back larger than the counter is refused, not clamped: the counter stays.
    assert!(!refund(b(2000)).await.unwrap());
    assert_eq!(used(&db).await, 1005);
    assert!(refund(b(1005)).await.unwrap());
    assert_eq!(used(&db).await, 0);
    assert!(refund(ByteCount::ZERO).await.unwrap());
    // An unknown account is not charged.
    assert!(!s
        .charge_used_bytes(&t.id, &UserId::random(), b(1), None)
        .await
        .unwrap());
    // The version (SCIM ETag) does not change with usage.
    assert_eq!(s.get_user(&t.id, &u.id).await.unwrap().unwrap().version, 1);
}
