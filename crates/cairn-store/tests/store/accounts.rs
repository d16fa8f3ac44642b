use crate::support::*;
use cairn_core::audit::Action;
use cairn_core::ids::{UserId, UserName};
use cairn_core::query::ListQuery;
use cairn_core::Error;
use serde_json::json;

#[tokio::test]
async fn create_and_read_back() {
    let db = db_async().await;
    let t = tenant(&*db.store, "acme").await;
    let u = user(
        &t.id,
        "Alice@Example.com",
        json!({"userName": "Alice@Example.com", "emails": [{"value": "alice@example.com"}]}),
    );
    db.store
        .create_user(&u, draft(&t.id, Action::UserCreated))
        .await
        .unwrap();
    let got = db.store.get_user(&t.id, &u.id).await.unwrap().unwrap();
    assert_eq!(got.user_name.as_str(), "Alice@Example.com");
    assert_eq!(got.doc, u.doc);
    assert_eq!(got.created_at, u.created_at);
    assert_eq!(got.version, 1);
    assert_eq!(audit_count(&*db.store, &t.id).await, 2);
}

#[tokio::test]
async fn user_names_are_unique_per_tenant_regardless_of_case() {
    let db = db_async().await;
    let t = tenant(&*db.store, "acme").await;
    let other = tenant(&*db.store, "other").await;
    let a = user(&t.id, "bob@x.io", json!({"userName": "bob@x.io"}));
    db.store
        .create_user(&a, draft(&t.id, Action::UserCreated))
        .await
        .unwrap();
    let before = audit_count(&*db.store, &t.id).await;
    let b = user(&t.id, "BOB@X.IO", json!({"userName": "BOB@X.IO"}));
    let err = db
        .store
        .create_user(&b, draft(&t.id, Action::UserCreated))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Error::Conflict {
            attribute: "userName"
        }
    );
    // The failed create left no audit entry behind: both live in one transaction.
    assert_eq!(audit_count(&*db.store, &t.id).await, before);
    // Another tenant may use the same name.
    let c = user(&other.id, "bob@x.io", json!({"userName": "bob@x.io"}));
    db.store
        .create_user(&c, draft(&other.id, Action::UserCreated))
        .await
        .unwrap();
}

#[tokio::test]
async fn racing_creates_yield_exactly_one_account() {
    let db = db_async().await;
    let t = tenant(&*db.store, "acme").await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = db.store.clone();
        let tid = t.id.clone();
        tasks.push(tokio::spawn(async move {
            let name = if i % 2 == 0 { "Race@X.io" } else { "race@x.IO" };
            let u = user(&tid, name, json!({"userName": name}));
            store
                .create_user(&u, draft(&tid, Action::UserCreated))
                .await
        }));
    }
    let mut ok = 0;
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(Error::Conflict {
                attribute: "userName",
            }) => conflicts += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok, conflicts), (1, 31));
    let page = db
        .store
        .list_users(&t.id, &ListQuery::default())
        .await
        .unwrap();
    assert_eq!(page.total, 1);
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let db = db_async().await;
    let a = tenant(&*db.store, "a").await;
    let b = tenant(&*db.store, "b").await;
    let u = user(&a.id, "x@a.io", json!({"userName": "x@a.io"}));
    db.store
        .create_user(&u, draft(&a.id, Action::UserCreated))
        .await
        .unwrap();
    assert!(db.store.get_user(&b.id, &u.id).await.unwrap().is_none());
    assert_eq!(
        db.store
            .list_users(&b.id, &ListQuery::default())
            .await
            .unwrap()
            .total,
        0
    );
    let mut d = data_of(&u);
    d.active = false;
    let err = db
        .store
        .update_user(
            &b.id,
            &u.id,
            1,
            &d,
            now(),
            draft(&b.id, Action::UserSuspended),
        )
        .await
        .unwrap_err();
    assert_eq!(err, Error::NotFound("user"));
    assert_eq!(
        audit_count(&*db.store, &b.id).await,
        1,
        "only b's tenant_created"
    );
}

#[tokio::test]
async fn updates_check_the_version_atomically() {
    let db = db_async().await;
    let t = tenant(&*db.store, "acme").await;
    let u = user(&t.id, "v@x.io", json!({"userName": "v@x.io"}));
    db.store
        .create_user(&u, draft(&t.id, Action::UserCreated))
        .await
        .unwrap();
    let mut d = data_of(&u);
    d.display_name = Some("V".into());
    d.doc =
        json!({"userName": "v@x.io", "displayName": "V", "name": {"givenName": "Vé"}, "n": 1.5});
    let v2 = db
        .store
        .update_user(
            &t.id,
            &u.id,
            1,
            &d,
            now(),
            draft(&t.id, Action::UserUpdated),
        )
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.display_name.as_deref(), Some("V"));
    // The record returned is the one stored, document included.
    let stored = db.store.get_user(&t.id, &u.id).await.unwrap().unwrap();
    assert_eq!((&v2.doc, v2.version), (&d.doc, 2));
    assert_eq!(stored.doc, v2.doc);
    assert_eq!(stored.updated_at, v2.updated_at);
    let before = audit_count(&*db.store, &t.id).await;
    let err = db
        .store
        .update_user(
            &t.id,
            &u.id,
            1,
            &d,
            now(),
            draft(&t.id, Action::UserUpdated),
        )
        .await
        .unwrap_err();
    assert_eq!(err, Error::VersionMismatch);
    assert_eq!(audit_count(&*db.store, &t.id).await, before);
}

#[tokio::test]
async fn rename_into_a_taken_name_conflicts() {
    let db = db_async().await;
    let t = tenant(&*db.store, "acme").await;
    let a = user(&t.id, "a@x.io", json!({"userName": "a@x.io"}));
    let b = user(&t.id, "b@x.io", json!({"userName": "b@x.io"}));
    db.store
        .create_user(&a, draft(&t.id, Action::UserCreated))
        .await
        .unwrap();
    db.store
        .create_user(&b, draft(&t.id, Action::UserCreated))
        .await
        .unwrap();
    let mut d = data_of(&b);
    d.user_name = UserName::parse("A@X.io").unwrap();
    let err = db
        .store
        .update_user(
            &t.id,
            &b.id,
            1,
            &d,
            now(),
            draft(&t.id, Action::UserUpdated),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Error::Conflict {
            attribute: "userName"
        }
    );
}

/// An account whose retention window has ended cannot be restored even before the
/// purge has run (issue 20 #8): the refusal says why; within the window it can.
#[tokio::test]
async fn an_account_past_its_retention_window_cannot_be_restored() {
    let db = db_async().await;
    let t = tenant(&*db.store, "acme").await;
    let u = user(&t.id, "late@x.io", json!({"userName": "late@x.io"}));
    db.store
        .create_user(&u, draft(&t.id, Action::UserCreated))
        .await
        .unwrap();
    let at = now() - time::Duration::days(31);
    let purge_at = at + time::Duration::days(30);
    db.store
        .soft_delete_user(
            &t.id,
            &u.id,
            None,
            at,
            purge_at,
            draft(&t.id, Action::UserDeleted),
        )
        .await
        .unwrap();
    let name = UserName::parse("late@x.io").unwrap();
    let err = db
        .store
        .restore_user(&t.id, &name, now(), draft(&t.id, Action::UserRestored))
        .await
        .unwrap_err();
    match &err {
        Error::Invalid { field, reason } => {
            assert_eq!(*field, "account");
            assert!(reason.contains("retention window ended"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Nothing changed: still deleted, still due.
    let any = db.store.get_user_any(&t.id, &u.id).await.unwrap().unwrap();
    assert_eq!(any.purge_at, Some(purge_at));
    assert!(any.deleted_at.is_some());
    // At a time inside the window the same account is restored.
    let back = db
        .store
        .restore_user(
            &t.id,
            &name,
            purge_at - time::Duration::seconds(1),
            draft(&t.id, Action::UserRestored),
        )
        .await
        .unwrap();
    assert_eq!(back.id, u.id);
}

#[tokio::test]
async fn soft_delete_restore_and_purge() {
    let db = db_async().await;
    let t = tenant(&*db.store, "acme").await;
    let u = user(
        &t.id,
        "gone@x.io",
        json!({"userName": "gone@x.io", "title": "keep me"}),
    );
    db.store
        .create_user(&u, draft(&t.id, Action::UserCreated))
        .await
        .unwrap();
    let at = now();
    let purge_at = at + time::Duration::days(30);
    db.store
        .soft_delete_user(
            &t.id,
            &u.id,
            None,
            at,
            purge_at,
            draft(&t.id, Action::UserDeleted),
        )
        .await
        .unwrap();
    assert!(db.store.get_user(&t.id, &u.id).await.unwrap().is_none());
    let any = db.store.get_user_any(&t.id, &u.id).await.unwrap().unwrap();
    assert_eq!(any.purge_at, Some(purge_at));
    assert_eq!(
        db.store
            .list_users(&t.id, &ListQuery::default())
            .await
            .unwrap()
            .total,
        0
    );

    // A new account may take the name while the old one waits for purge...
    let newer = user(&t.id, "GONE@x.io", json!({"userName": "GONE@x.io"}));
    db.store
        .create_user(&newer, draft(&t.id, Action::UserCreated))
        .await
        .unwrap();
    // ...and then the old one cannot be restored under it.
    let name = UserName::parse("gone@x.io").unwrap();
    let err = db
        .store
        .restore_user(&t.id, &name, now(), draft(&t.id, Action::UserRestored))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Error::Conflict {
            attribute: "userName"
        }
    );
    db.store
        .soft_delete_user(
            &t.id,
            &newer.id,
            None,
            now(),
            purge_at,
            draft(&t.id, Action::UserDeleted),
        )
        .await
        .unwrap();
    let restored = db
        .store
        .restore_user(&t.id, &name, now(), draft(&t.id, Action::UserRestored))
        .await
        .unwrap();
    // The most recently deleted account with that name comes back.
    assert_eq!(restored.id, newer.id);

    // Purge removes only accounts past their window.
    assert!(purge(&*db.store, now()).await.is_empty());
    let purged = purge(&*db.store, purge_at + time::Duration::seconds(1)).await;
    assert_eq!(
        purged.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        vec![u.id.clone()]
    );
    assert!(db.store.get_user_any(&t.id, &u.id).await.unwrap().is_none());
    let events = db
        .store
        .list_audit(&t.id, &Default::default())
        .await
        .unwrap();
    assert_eq!(events[0].action, "user_purged");
    assert_eq!(events[0].actor_kind, "system");
}

#[tokio::test]
async fn unknown_ids_are_not_found() {
    let db = db_async().await;
    let t = tenant(&*db.store, "acme").await;
    assert!(db
        .store
        .get_user(&t.id, &UserId::random())
        .await
        .unwrap()
        .is_none());
}

/// Every instance runs the retention purge; run at once, they purge each expired account
/// exactly once between them (PostgreSQL claims rows with `FOR UPDATE SKIP LOCKED`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_purges_purge_each_account_once() {
    let db = db_async().await;
    let t = tenant(&*db.store, "acme").await;
    let at = now();
    for i in 0..60 {
        let name = format!("old{i}@x.io");
        let u = user(&t.id, &name, json!({ "userName": name }));
        db.store
            .create_user(&u, draft(&t.id, Action::UserCreated))
            .await
            .unwrap();
        db.store
            .soft_delete_user(
                &t.id,
                &u.id,
                None,
                at,
                at,
                draft(&t.id, Action::UserDeleted),
            )
            .await
            .unwrap();
    }
    let later = at + time::Duration::seconds(1);
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let store = db.store.clone();
            tokio::spawn(async move { purge(&*store, later).await })
        })
        .collect();
    let mut purged = Vec::new();
    for r in runs {
        purged.extend(r.await.unwrap().into_iter().map(|u| u.id));
    }
    let total = purged.len();
    purged.sort();
    purged.dedup();
    assert_eq!(total, 60, "each account purged once in all");
    assert_eq!(purged.len(), 60);
    assert!(purge(&*db.store, later).await.is_empty());
}

/// PostgreSQL: after a burst of creates the store refreshes the statistics itself, so a
/// lookup by id uses the `(tenant_id, id)` index instead of reading the tenant through
/// another index (what PostgreSQL did on a table it had no statistics for).
#[tokio::test]
async fn postgres_lookups_by_id_use_the_id_index_after_a_burst_of_creates() {
    if !backend_is_postgres() {
        return; // SQLite's planner needs no statistics to pick the unique index.
    }
    let db = db_async().await;
    let t = tenant(&*db.store, "acme").await;
    let ids = create_users(&*db.store, &t.id, "u", 100).await;
    let (client, conn) =
        tokio_postgres::connect(db.pg_url.as_deref().unwrap(), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    // `last_analyze` is set by an explicit ANALYZE only (autovacuum sets
    // `last_autoanalyze`): the store ran it.
    let mut analyzed = false;
    for _ in 0..100 {
        let row = client
            .query_one(
                "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'users'",
                &[],
            )
            .await
            .unwrap();
        if row.get::<_, bool>(0) {
            analyzed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        analyzed,
        "no ANALYZE of users within 10 s of the 100th create"
    );
    // With statistics the planner reads 100 rows directly or through the id index, never
    // the tenant through another index.
    let explain = format!(
        "EXPLAIN SELECT * FROM users u WHERE u.tenant_id = '{}' AND u.id = '{}' AND u.deleted_at IS NULL",
        t.id, ids[50]
    );
    let plan = client
        .query(&explain, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        plan.contains("users_tenant_id_id_key") || !plan.contains("Index"),
        "{plan}"
    );
}

/// A PostgreSQL database that already holds accounts when migration 0007 arrives starts
/// its live count from them (soft-deleted ones left out), and the triggers keep it from
/// there.
#[tokio::test]
async fn postgres_live_count_starts_from_existing_accounts() {
    if !backend_is_postgres() {
        return; // SQLite's migration is tested in `sqlite::conn`.
    }
    let db = db_async().await;
    let t = tenant(&*db.store, "acme").await;
    let ids = create_users(&*db.store, &t.id, "m", 5).await;
    for id in &ids[..2] {
        db.store
            .soft_delete_user(
                &t.id,
                id,
                None,
                now(),
                now() + time::Duration::days(30),
                draft(&t.id, Action::UserDeleted),
            )
            .await
            .unwrap();
    }
    // Back to the schema before 0007 (later migrations undone too), accounts in place.
    let url = db.pg_url.clone().unwrap();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "DROP TRIGGER users_list_state_insert_delete ON users;
             DROP TRIGGER users_list_state_update ON users;
             DROP FUNCTION users_list_state();
             DROP TABLE user_list_state;
             ALTER TABLE users DROP COLUMN purging_since;
             ALTER TABLE tenants DROP COLUMN max_account_size_gb;
             DROP TABLE sso_saml_configs, sso_requests, sso_assertions, sso_subjects,
                 account_sessions, scim_requests, scim_request_capture, sso_group_roles,
                 sso_dashboard_users, sso_oidc_configs, sso_oidc_requests, dashboard_links,
                 dashboard_recovery_codes, dashboard_policies;
             ALTER TABLE dashboard_users DROP COLUMN disabled_at, DROP COLUMN last_sign_in_at,
                 DROP COLUMN totp_secret, DROP COLUMN totp_enabled_at, DROP COLUMN totp_last_step;
             DROP INDEX dashboard_users_tenant_id_role_idx;
             ALTER TABLE group_members DROP COLUMN display;
             DELETE FROM schema_migrations WHERE version >= 7;",
        )
        .await
        .unwrap();
    let store: std::sync::Arc<dyn cairn_core::store::Store> =
        std::sync::Arc::new(cairn_store::PostgresStore::connect(&url).await.unwrap());
    let q = ListQuery::default();
    assert_eq!(store.list_users(&t.id, &q).await.unwrap().total, 3);
    let u = user(&t.id, "late@x.io", json!({ "userName": "late@x.io" }));
    store
        .create_user(&u, draft(&t.id, Action::UserCreated))
        .await
        .unwrap();
    assert_eq!(store.list_users(&t.id, &q).await.unwrap().total, 4);
}

/// Issue 16, finding 8: the purge marks an account before its repository is removed.
/// A marked account cannot be restored (its repository may be half gone), stays until
/// `finish_purge` (a failed removal leaves it for the next run, which gets it again),
/// and is deleted once.
#[tokio::test]
async fn an_account_marked_for_purging_is_kept_until_finished_and_cannot_be_restored() {
    let db = db_async().await;
    let t = tenant(&*db.store, "acme").await;
    let at = now();
    let mut ids = Vec::new();
    for name in ["gone@x.io", "stays@x.io"] {
        let u = user(&t.id, name, json!({ "userName": name }));
        db.store
            .create_user(&u, draft(&t.id, Action::UserCreated))
            .await
            .unwrap();
        db.store
            .soft_delete_user(
                &t.id,
                &u.id,
                None,
                at,
                at,
                draft(&t.id, Action::UserDeleted),
            )
            .await
            .unwrap();
        ids.push(u.id);
    }
    let later = at + time::Duration::seconds(1);
    let marked = db.store.begin_purge(later, 1000).await.unwrap();
    assert_eq!(marked.len(), 2);
    let name = UserName::parse("gone@x.io").unwrap();
    let restored = db
        .store
        .restore_user(&t.id, &name, later, draft(&t.id, Action::UserRestored))
        .await;
    assert!(matches!(restored, Err(Error::NotFound(_))), "{restored:?}");
    // Nothing deleted yet: both rows are there, and a new run gets both again.
    for id in &ids {
        assert!(db.store.get_user_any(&t.id, id).await.unwrap().is_some());
    }
    assert_eq!(db.store.begin_purge(later, 1000).await.unwrap().len(), 2);
    // One finished (its removal worked), one not (its removal failed).
    assert!(db
        .store
        .finish_purge(&t.id, &ids[0], vec![draft(&t.id, Action::UserPurged)])
        .await
        .unwrap());
    assert!(!db
        .store
        .finish_purge(&t.id, &ids[0], vec![draft(&t.id, Action::UserPurged)])
        .await
        .unwrap());
    assert!(db
        .store
        .get_user_any(&t.id, &ids[0])
        .await
        .unwrap()
        .is_none());
    let again = db.store.begin_purge(later, 1000).await.unwrap();
    assert_eq!(
        again.iter().map(|u| u.id.clone()).collect::<Vec<_>>(),
        vec![ids[1].clone()]
    );
    // finish_purge deletes only a marked account: a live one is left alone.
    let live = user(&t.id, "live@x.io", json!({"userName": "live@x.io"}));
    db.store
        .create_user(&live, draft(&t.id, Action::UserCreated))
        .await
        .unwrap();
    assert!(!db
        .store
        .finish_purge(&t.id, &live.id, vec![])
        .await
        .unwrap());
    assert!(db.store.get_user(&t.id, &live.id).await.unwrap().is_some());
}
