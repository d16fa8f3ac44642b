//! Backup vault storage: device keys (several named keys per account, bounded, revoked
//! one at a time, last use written when stale, tenant-scoped, removed by the purge) and
//! the used-space counter with its atomic quota check.

use crate::support::*;
use cairn_core::audit::Action;
use cairn_core::auth::TokenHash;
use cairn_core::backup_key::{BackupKeyRecord, KeyName};
use cairn_core::ids::UserId;
use cairn_core::vault::ByteCount;
use cairn_core::Error;
use serde_json::json;

fn key(u: &cairn_core::user::UserRecord, name: &str, secret: &str) -> BackupKeyRecord {
    BackupKeyRecord {
        tenant_id: u.tenant_id.clone(),
        user_id: u.id.clone(),
        key_user: UserId::random().to_string(),
        name: KeyName::parse(name).unwrap(),
        hash: TokenHash::of(secret),
        created_at: now(),
        last_used_at: None,
    }
}

fn names(keys: &[BackupKeyRecord]) -> Vec<&str> {
    keys.iter().map(|k| k.name.as_str()).collect()
}

const MAX: usize = 20;

/// Issue 21 (device keys): several named keys per account, each found by its basic-auth
/// user, names unique per account in any letter case, revoked one at a time, scoped to
/// the tenant, kept by a soft delete and removed by the purge.
#[tokio::test]
async fn device_keys_are_named_revoked_alone_scoped_and_purged_with_the_account() {
    let db = db_async().await;
    let s = &db.store;
    let t = tenant(&**s, "acme").await;
    let other = tenant(&**s, "other").await;
    let u = user(&t.id, "alice@x.io", json!({"userName": "alice@x.io"}));
    s.create_user(&u, draft(&t.id, Action::UserCreated))
        .await
        .unwrap();
    assert!(s.backup_keys(&t.id, &u.id).await.unwrap().is_empty());
    let before = audit_count(&**s, &t.id).await;
    let (laptop, desk) = (key(&u, "work laptop", "one"), key(&u, "Desk", "two"));
    for k in [&laptop, &desk] {
        s.create_backup_key(k, MAX, draft(&t.id, Action::BackupKeyGenerated))
            .await
            .unwrap();
    }
    assert_eq!(audit_count(&**s, &t.id).await, before + 2);
    let keys = s.backup_keys(&t.id, &u.id).await.unwrap();
    assert_eq!(names(&keys), ["work laptop", "Desk"]);
    let found = s
        .backup_key(&t.id, &u.id, &desk.key_user)
        .await
        .unwrap()
        .unwrap();
    assert!(found.hash.ct_eq(&TokenHash::of("two")));
    assert_eq!((found.name.as_str(), found.last_used_at), ("Desk", None));
    // A name the account has, in another letter case, is refused, with no audit entry.
    let err = s
        .create_backup_key(
            &key(&u, "WORK LAPTOP", "three"),
            MAX,
            draft(&t.id, Action::BackupKeyGenerated),
        )
        .await
        .unwrap_err();
    assert_eq!(err, Error::Conflict { attribute: "name" });
    assert_eq!(audit_count(&**s, &t.id).await, before + 2);
    // Another tenant does not see them; an unknown account cannot get one.
    assert!(s.backup_keys(&other.id, &u.id).await.unwrap().is_empty());
    assert!(s
        .backup_key(&other.id, &u.id, &desk.key_user)
        .await
        .unwrap()
        .is_none());
    let ghost = user(&t.id, "ghost@x.io", json!({"userName": "ghost@x.io"}));
    let err = s
        .create_backup_key(
            &key(&ghost, "x", "x"),
            MAX,
            draft(&t.id, Action::BackupKeyGenerated),
        )
        .await
        .unwrap_err();
    assert_eq!(err, Error::NotFound("user"));

    // Revoking one (by name, any letter case) leaves the other; a second revoke finds
    // nothing and writes no audit entry.
    let desk_name = KeyName::parse("DESK").unwrap();
    let revoke = |n| s.revoke_backup_key(&t.id, &u.id, n, draft(&t.id, Action::BackupKeyRevoked));
    assert!(revoke(&desk_name).await.unwrap());
    assert!(!revoke(&desk_name).await.unwrap());
    assert_eq!(audit_count(&**s, &t.id).await, before + 3);
    assert!(s
        .backup_key(&t.id, &u.id, &desk.key_user)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .backup_key(&t.id, &u.id, &laptop.key_user)
        .await
        .unwrap()
        .is_some());
    // The name is free again.
    s.create_backup_key(
        &key(&u, "desk", "four"),
        MAX,
        draft(&t.id, Action::BackupKeyGenerated),
    )
    .await
    .unwrap();

    // Soft delete keeps the keys (restore brings access back) and takes no new one; the
    // purge removes them.
    let at = now();
    s.soft_delete_user(
        &t.id,
        &u.id,
        None,
        at,
        at + time::Duration::days(1),
        draft(&t.id, Action::UserDeleted),
    )
    .await
    .unwrap();
    assert_eq!(s.backup_keys(&t.id, &u.id).await.unwrap().len(), 2);
    let err = s
        .create_backup_key(
            &key(&u, "late", "five"),
            MAX,
            draft(&t.id, Action::BackupKeyGenerated),
        )
        .await
        .unwrap_err();
    assert_eq!(err, Error::NotFound("user"));
    let purged = purge(&**s, at + time::Duration::days(2)).await;
    assert_eq!(purged.len(), 1);
    assert!(s.backup_keys(&t.id, &u.id).await.unwrap().is_empty());
}

/// The bound on keys per account holds under racing creates: the count and the insert
/// are one atomic step on both backends.
#[tokio::test]
async fn the_number_of_keys_per_account_is_bounded_even_by_racing_creates() {
    let db = db_async().await;
    let t = tenant(&*db.store, "acme").await;
    let u = user(&t.id, "bob@x.io", json!({"userName": "bob@x.io"}));
    db.store
        .create_user(&u, draft(&t.id, Action::UserCreated))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let (s, k, d) = (
                db.store.clone(),
                key(&u, &format!("device {i}"), "s"),
                draft(&t.id, Action::BackupKeyGenerated),
            );
            tokio::spawn(async move { s.create_backup_key(&k, 5, d).await })
        })
        .collect();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => {}
            Err(Error::Invalid { field: "name", .. }) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(refused, 7);
    assert_eq!(db.store.backup_keys(&t.id, &u.id).await.unwrap().len(), 5);
}

/// Last use is written only when the stored time is older than the caller's bound
/// (`LAST_USE_GRANULARITY` in the service), and only on the key that was used.
#[tokio::test]
async fn a_keys_last_use_is_written_only_when_stale_and_only_on_that_key() {
    let db = db_async().await;
    let s = &db.store;
    let t = tenant(&**s, "acme").await;
    let u = user(&t.id, "carol@x.io", json!({"userName": "carol@x.io"}));
    s.create_user(&u, draft(&t.id, Action::UserCreated))
        .await
        .unwrap();
    let (a, b) = (key(&u, "a", "1"), key(&u, "b", "2"));
    for k in [&a, &b] {
        s.create_backup_key(k, MAX, draft(&t.id, Action::BackupKeyGenerated))
            .await
            .unwrap();
    }
    let last = |k: &BackupKeyRecord| {
        let (s, t, u, ku) = (s.clone(), t.id.clone(), u.id.clone(), k.key_user.clone());
        async move {
            s.backup_key(&t, &u, &ku)
                .await
                .unwrap()
                .unwrap()
                .last_used_at
        }
    };
    let minute = time::Duration::minutes(1);
    let t0 = now();
    let touch = |k: &BackupKeyRecord, at: time::OffsetDateTime| {
        let (s, t, u, ku) = (s.clone(), t.id.clone(), u.id.clone(), k.key_user.clone());
        async move { s.touch_backup_key(&t, &u, &ku, at, at - minute).await }
    };
    assert!(touch(&a, t0).await.unwrap());
    assert_eq!((last(&a).await, last(&b).await), (Some(t0), None));
    // Within the minute: nothing written.
    assert!(!touch(&a, t0 + time::Duration::seconds(59)).await.unwrap());
    assert_eq!(last(&a).await, Some(t0));
    // Past it: written.
    let t1 = t0 + time::Duration::seconds(61);
    assert!(touch(&a, t1).await.unwrap());
    assert!(touch(&b, t1).await.unwrap());
    assert_eq!((last(&a).await, last(&b).await), (Some(t1), Some(t1)));
    // An unknown key, or another tenant's view of this one, changes nothing.
    assert!(!s
        .touch_backup_key(&t.id, &u.id, "nobody", t1 + minute * 2, t1 + minute)
        .await
        .unwrap());
    let other = tenant(&**s, "other").await;
    assert!(!s
        .touch_backup_key(&other.id, &u.id, &a.key_user, t1 + minute * 2, t1 + minute)
        .await
        .unwrap());
    assert_eq!(last(&a).await, Some(t1));
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

/// Issue 21 (repository health): an account's last check replaces the one before, is
/// scoped to the tenant, and is not written for an account that is gone.
#[tokio::test]
async fn the_last_repository_check_is_kept_per_account() {
    use cairn_core::verification::{BadObject, VaultVerification};
    let db = db_async().await;
    let s = &db.store;
    let t = tenant(&**s, "acme").await;
    let other = tenant(&**s, "other").await;
    let u = user(&t.id, "alice@x.io", json!({"userName": "alice@x.io"}));
    s.create_user(&u, draft(&t.id, Action::UserCreated))
        .await
        .unwrap();
    assert_eq!(s.vault_verification(&t.id, &u.id).await.unwrap(), None);
    let at = now();
    let first = VaultVerification {
        user_id: u.id.clone(),
        verified_at: at,
        objects: 12,
        bytes: 5 << 30,
        bad_count: 2,
        bad: vec![
            BadObject {
                object: "data/ab".into(),
                reason: "mismatch".into(),
            },
            BadObject {
                object: "index/<b>\"x".into(),
                reason: "unreadable: disk".into(),
            },
        ],
    };
    s.record_vault_verification(&t.id, &first).await.unwrap();
    assert_eq!(
        s.vault_verification(&t.id, &u.id).await.unwrap().as_ref(),
        Some(&first)
    );
    let second = VaultVerification {
        verified_at: at + time::Duration::hours(1),
        objects: 13,
        bad_count: 0,
        bad: vec![],
        ..first.clone()
    };
    s.record_vault_verification(&t.id, &second).await.unwrap();
    assert_eq!(
        s.vault_verification(&t.id, &u.id).await.unwrap(),
        Some(second.clone())
    );
    // Another tenant neither sees it nor writes one for an account it does not hold.
    assert_eq!(s.vault_verification(&other.id, &u.id).await.unwrap(), None);
    s.record_vault_verification(&other.id, &first)
        .await
        .unwrap();
    assert_eq!(s.vault_verification(&other.id, &u.id).await.unwrap(), None);
    let gone = VaultVerification {
        user_id: UserId::random(),
        ..first.clone()
    };
    s.record_vault_verification(&t.id, &gone).await.unwrap();
    assert_eq!(
        s.vault_verification(&t.id, &gone.user_id).await.unwrap(),
        None
    );
}
