//! Backup freshness storage: the charge counts an upload's bytes in its hour (a refund
//! takes them back), successful uploads and snapshots are recorded and never move
//! backwards, the 24-hour window and its pruning, the accounts list sorted and filtered
//! by last backup, and the per-tenant stale counts held to `StaleDays::cutoff`.

use crate::support::*;
use cairn_core::audit::Action;
use cairn_core::dashboard::{last_backup_key, AccountCursor, AccountOrder, AccountQuery};
use cairn_core::freshness::{upload_hour, window_start_hour, Freshness, StaleDays};
use cairn_core::ids::{TenantId, UserId};
use cairn_core::store::{SettingsChange, Store};
use cairn_core::user::{AccountStatus, UserRecord};
use cairn_core::vault::ByteCount;
use serde_json::json;
use time::{Duration, OffsetDateTime};

fn b(n: u64) -> ByteCount {
    ByteCount::new(n).unwrap()
}

async fn account(store: &dyn Store, t: &TenantId, name: &str) -> UserRecord {
    let u = user(t, name, json!({ "userName": name }));
    store
        .create_user(&u, draft(t, Action::UserCreated))
        .await
        .unwrap();
    u
}

async fn freshness(store: &dyn Store, t: &TenantId, u: &UserId, at: OffsetDateTime) -> Freshness {
    let mut f = store
        .account_freshness(t, std::slice::from_ref(u), window_start_hour(at))
        .await
        .unwrap();
    assert_eq!(f.len(), 1, "{f:?}");
    f.remove(0).1
}

#[tokio::test]
async fn uploads_are_counted_per_hour_recorded_and_pruned() {
    let db = db_async().await;
    let s = &*db.store;
    let t = tenant(s, "acme").await;
    let other = tenant(s, "other").await;
    let u = account(s, &t.id, "alice@x.io").await;
    let t0 = now();
    let h = upload_hour(t0);
    assert_eq!(freshness(s, &t.id, &u.id, t0).await, Freshness::default());

    // A refused charge counts nothing; an applied one reports the last upload so far.
    assert_eq!(
        s.charge_upload(&t.id, &u.id, b(2000), b(1000), Some(h))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.charge_upload(&t.id, &u.id, b(300), b(1000), Some(h))
            .await
            .unwrap(),
        Some(None)
    );
    // Counting is not recording: no upload time until one succeeded.
    let f = freshness(s, &t.id, &u.id, t0).await;
    assert_eq!((f.bytes_24h, f.last_upload_at), (300, None));
    s.record_upload(&t.id, &u.id, t0, false).await.unwrap();
    assert_eq!(
        s.charge_upload(&t.id, &u.id, b(200), b(1000), Some(h))
            .await
            .unwrap(),
        Some(Some(t0))
    );
    assert_eq!(
        s.get_user(&t.id, &u.id).await.unwrap().unwrap().used_bytes,
        500
    );
    // A failed upload is taken back from its hour and from the quota.
    assert!(s
        .refund_upload(&t.id, &u.id, b(200), Some(h))
        .await
        .unwrap());
    assert_eq!(
        s.get_user(&t.id, &u.id).await.unwrap().unwrap().used_bytes,
        300
    );
    // A lock file (no hour) is charged to the quota only.
    assert_eq!(
        s.charge_upload(&t.id, &u.id, b(10), b(1000), None)
            .await
            .unwrap(),
        Some(Some(t0))
    );
    assert_eq!(
        s.get_user(&t.id, &u.id).await.unwrap().unwrap().used_bytes,
        310
    );
    assert_eq!(freshness(s, &t.id, &u.id, t0).await.bytes_24h, 300);
    assert!(s.refund_upload(&t.id, &u.id, b(10), None).await.unwrap());
    let f = freshness(s, &t.id, &u.id, t0).await;
    assert_eq!(
        f,
        Freshness {
            last_snapshot_at: None,
            last_upload_at: Some(t0),
            bytes_24h: 300
        }
    );

    // A snapshot; a late, older record never moves either time backwards.
    let t1 = t0 + Duration::seconds(90);
    s.record_upload(&t.id, &u.id, t1, true).await.unwrap();
    s.record_upload(&t.id, &u.id, t0, true).await.unwrap();
    let f = freshness(s, &t.id, &u.id, t1).await;
    assert_eq!((f.last_snapshot_at, f.last_upload_at), (Some(t1), Some(t1)));

    // 23 hours later the bytes are still in the window; 24 hours later they are out of
    // it, and the purge's pruning removes their row.
    s.charge_upload(&t.id, &u.id, b(50), b(1000), Some(h + 23))
        .await
        .unwrap();
    let later = t0 + Duration::hours(23);
    assert_eq!(freshness(s, &t.id, &u.id, later).await.bytes_24h, 350);
    let day_later = t0 + Duration::hours(24);
    assert_eq!(freshness(s, &t.id, &u.id, day_later).await.bytes_24h, 50);
    assert_eq!(
        s.prune_upload_hours(window_start_hour(day_later))
            .await
            .unwrap(),
        1
    );
    assert_eq!(freshness(s, &t.id, &u.id, t0).await.bytes_24h, 50);

    // Another tenant sees nothing of it; an unknown account is left out.
    assert!(s
        .account_freshness(&other.id, std::slice::from_ref(&u.id), h - 23)
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .account_freshness(&t.id, &[UserId::random()], h - 23)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.charge_upload(&t.id, &UserId::random(), b(1), b(1000), Some(h))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn the_list_sorts_and_filters_by_last_backup_and_counts_stale_accounts() {
    let db = db_async().await;
    let s = &*db.store;
    let t = tenant(s, "acme").await;
    let quiet = tenant(s, "quiet").await;
    let now = now();
    // Stale after 3 days in this tenant; the other keeps the default of 7.
    let change = SettingsChange {
        stale_days: Some(StaleDays::new(3).unwrap()),
        ..SettingsChange::default()
    };
    let updated = s
        .update_settings(&t.id, &change, vec![draft(&t.id, Action::StaleDaysChanged)])
        .await
        .unwrap();
    assert_eq!(updated.stale_days.get(), 3);
    assert_eq!(
        s.get_tenant(&quiet.id).await.unwrap().unwrap().stale_days,
        StaleDays::DEFAULT
    );
    let cutoff = updated.stale_days.cutoff(now);

    // Never backed up; just before the cutoff (stale); just after it (fresh); fresh.
    let never = account(s, &t.id, "never@x.io").await;
    let old = account(s, &t.id, "old@x.io").await;
    let edge = account(s, &t.id, "edge@x.io").await;
    let recent = account(s, &t.id, "recent@x.io").await;
    let ms = Duration::milliseconds(1);
    for (u, at) in [(&old, cutoff - ms), (&edge, cutoff + ms), (&recent, now)] {
        s.record_upload(&t.id, &u.id, at, true).await.unwrap();
    }
    // A suspended account and a deleted one, never backed up: listed with their status,
    // not counted as stale.
    let mut sus = user(&t.id, "sus@x.io", json!({"userName": "sus@x.io"}));
    sus.active = false;
    s.create_user(&sus, draft(&t.id, Action::UserCreated))
        .await
        .unwrap();
    let gone = account(s, &t.id, "gone@x.io").await;
    s.soft_delete_user(
        &t.id,
        &gone.id,
        None,
        now,
        now + Duration::days(30),
        draft(&t.id, Action::UserDeleted),
    )
    .await
    .unwrap();

    let names = |items: &[UserRecord]| -> Vec<String> {
        items.iter().map(|u| u.user_name.to_string()).collect()
    };
    let stale = AccountQuery {
        status: Some(AccountStatus::Active),
        order: AccountOrder::LastBackup,
        snapshot_before: Some(cutoff),
        limit: 10,
        ..AccountQuery::default()
    };
    let page = s.list_accounts(&t.id, &stale).await.unwrap();
    assert_eq!(names(&page.items), ["never@x.io", "old@x.io"]);
    assert_eq!(page.total, 2);

    // Sorted by last backup: never first (ids break the tie), then oldest first; the
    // cursor pages through it in both directions.
    let all = AccountQuery {
        order: AccountOrder::LastBackup,
        limit: 10,
        ..AccountQuery::default()
    };
    let page = s.list_accounts(&t.id, &all).await.unwrap();
    let mut nevers = vec![never.clone(), sus.clone(), gone.clone()];
    nevers.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    let mut expected = names(&nevers);
    expected.extend(["old@x.io", "edge@x.io", "recent@x.io"].map(String::from));
    assert_eq!(names(&page.items), expected);
    let key = last_backup_key(Some(cutoff - ms));
    let after = AccountQuery {
        cursor: Some(AccountCursor::After {
            key: key.clone(),
            id: old.id.clone(),
        }),
        limit: 1,
        ..all.clone()
    };
    assert_eq!(
        names(&s.list_accounts(&t.id, &after).await.unwrap().items),
        ["edge@x.io", "recent@x.io"]
    );
    let before = AccountQuery {
        cursor: Some(AccountCursor::Before {
            key,
            id: old.id.clone(),
        }),
        limit: 1,
        ..all
    };
    assert_eq!(
        names(&s.list_accounts(&t.id, &before).await.unwrap().items),
        expected[1..3].to_vec()
    );

    // The SQL cutoff per tenant is the Rust one: `never` and `old` in the 3-day tenant,
    // nothing in the quiet one (no accounts), every tenant listed.
    let counts = s.stale_account_counts(now).await.unwrap();
    let count = |id: &TenantId| counts.iter().find(|(t, _)| t == id).map(|(_, n)| *n);
    assert_eq!(count(&t.id), Some(2), "{counts:?}");
    assert_eq!(count(&quiet.id), Some(0), "{counts:?}");
    // The same accounts as the stale list, a moment later: `edge` turns stale.
    let later = now + Duration::milliseconds(2);
    let counts = s.stale_account_counts(later).await.unwrap();
    assert_eq!(
        counts.iter().find(|(id, _)| *id == t.id).map(|(_, n)| *n),
        Some(3)
    );
    let q = AccountQuery {
        snapshot_before: Some(updated.stale_days.cutoff(later)),
        ..stale
    };
    assert_eq!(s.list_accounts(&t.id, &q).await.unwrap().total, 3);
}
