//! Dashboard user administration in the store (issue 22): the last active administrator
//! is kept however changes race (two instances on PostgreSQL), one-time links and
//! recovery codes are used once, a TOTP step is accepted once, and disabling, deleting
//! or resetting a password ends the user's sessions.

use crate::support::*;
use cairn_core::audit::Action;
use cairn_core::auth::PasswordHash;
use cairn_core::ids::{DashboardUserId, TenantId};
use cairn_core::people::{LinkPurpose, LinkRecord, UserChange, LAST_ADMINISTRATOR};
use cairn_core::session::{SessionHash, SessionRecord};
use cairn_core::store::{DashboardUser, Role, Store};
use cairn_core::totp::TotpSecret;
use cairn_core::Error;
use cairn_store::PostgresStore;
use std::sync::Arc;
use time::Duration;

async fn second_instance(db: &Db) -> Arc<dyn Store> {
    match &db.pg_url {
        Some(url) => Arc::new(PostgresStore::connect(url).await.expect("connect")),
        None => db.store.clone(),
    }
}

async fn dashboard_user(store: &dyn Store, t: &TenantId, email: &str, role: Role) -> DashboardUser {
    let u = DashboardUser {
        id: DashboardUserId::random(),
        tenant_id: t.clone(),
        email: email.into(),
        role,
        password_hash: PasswordHash::from_phc("$argon2id$x".into()),
        created_at: now(),
        disabled: false,
        second_factor: false,
    };
    store
        .create_dashboard_user(&u, draft(t, Action::DashboardUserCreated))
        .await
        .unwrap();
    u
}

async fn session_of(store: &dyn Store, u: &DashboardUser, n: u8) -> SessionHash {
    let id_hash = SessionHash::from_bytes(&[n; 32]).unwrap();
    store
        .create_session(&SessionRecord {
            id_hash,
            tenant_id: u.tenant_id.clone(),
            user_id: u.id.clone(),
            csrf_token: "c".into(),
            created_at: now(),
            last_seen_at: now(),
            expires_at: now() + Duration::hours(1),
        })
        .await
        .unwrap();
    id_hash
}

fn last_admin() -> Error {
    Error::Invalid {
        field: "role",
        reason: LAST_ADMINISTRATOR.into(),
    }
}

#[tokio::test]
async fn the_last_active_administrator_cannot_be_demoted_disabled_or_deleted() {
    let db = db_async().await;
    let s = &*db.store;
    let t = tenant(s, "acme").await;
    let a = dashboard_user(s, &t.id, "a@acme.test", Role::Administrator).await;
    let v = dashboard_user(s, &t.id, "v@acme.test", Role::Viewer).await;
    // Another tenant's administrator does not count.
    let other = tenant(s, "other").await;
    dashboard_user(s, &other.id, "o@other.test", Role::Administrator).await;
    for change in [
        UserChange::SetRole(Role::Viewer),
        UserChange::Disable,
        UserChange::Delete,
    ] {
        let r = s
            .change_dashboard_user(
                &t.id,
                &a.id,
                &change,
                draft(&t.id, Action::DashboardUserRoleChanged),
            )
            .await;
        assert_eq!(r, Err(last_admin()), "{change:?}");
    }
    // A viewer can be changed freely; with a second administrator, the first can go.
    s.change_dashboard_user(
        &t.id,
        &v.id,
        &UserChange::Disable,
        draft(&t.id, Action::DashboardUserDisabled),
    )
    .await
    .unwrap();
    // A disabled administrator is not an active one.
    s.change_dashboard_user(
        &t.id,
        &v.id,
        &UserChange::SetRole(Role::Administrator),
        draft(&t.id, Action::DashboardUserRoleChanged),
    )
    .await
    .unwrap();
    assert_eq!(
        s.change_dashboard_user(
            &t.id,
            &a.id,
            &UserChange::Delete,
            draft(&t.id, Action::DashboardUserDeleted)
        )
        .await,
        Err(last_admin())
    );
    s.change_dashboard_user(
        &t.id,
        &v.id,
        &UserChange::Enable,
        draft(&t.id, Action::DashboardUserEnabled),
    )
    .await
    .unwrap();
    let before = audit_count(s, &t.id).await;
    s.change_dashboard_user(
        &t.id,
        &a.id,
        &UserChange::Delete,
        draft(&t.id, Action::DashboardUserDeleted),
    )
    .await
    .unwrap();
    assert_eq!(
        audit_count(s, &t.id).await,
        before + 1,
        "the change is audited"
    );
    assert!(s.get_dashboard_user(&t.id, &a.id).await.unwrap().is_none());
    let users = s.list_dashboard_users(&t.id).await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].user.role, Role::Administrator);
    // A user of another tenant is not found through this one.
    assert_eq!(
        s.change_dashboard_user(
            &other.id,
            &v.id,
            &UserChange::Disable,
            draft(&other.id, Action::DashboardUserDisabled)
        )
        .await,
        Err(Error::NotFound("dashboard user"))
    );
}

/// Two administrators demote each other at the same moment, through two instances on
/// PostgreSQL: exactly one demotion passes, and one administrator remains. Repeated, since
/// a race that is lost once can be won the next time.
#[tokio::test]
async fn concurrent_demotions_leave_one_administrator() {
    let db = db_async().await;
    let other = second_instance(&db).await;
    for round in 0..20 {
        let t = tenant(&*db.store, &format!("t{round}")).await;
        let a = dashboard_user(
            &*db.store,
            &t.id,
            &format!("a{round}@x.test"),
            Role::Administrator,
        )
        .await;
        let b = dashboard_user(
            &*db.store,
            &t.id,
            &format!("b{round}@x.test"),
            Role::Administrator,
        )
        .await;
        let mut tasks = Vec::new();
        for (store, id, change) in [
            (
                db.store.clone(),
                a.id.clone(),
                UserChange::SetRole(Role::Viewer),
            ),
            (other.clone(), b.id.clone(), UserChange::Disable),
        ] {
            let tid = t.id.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .change_dashboard_user(
                        &tid,
                        &id,
                        &change,
                        draft(&tid, Action::DashboardUserRoleChanged),
                    )
                    .await
            }));
        }
        let mut passed = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => passed += 1,
                Err(e) => assert_eq!(e, last_admin()),
            }
        }
        assert_eq!(passed, 1, "round {round}");
        let active = db
            .store
            .list_dashboard_users(&t.id)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.user.role == Role::Administrator && !e.user.disabled)
            .count();
        assert_eq!(active, 1, "round {round}");
    }
}

#[tokio::test]
async fn disabling_deleting_and_resetting_end_sessions_and_disabled_users_have_none() {
    let db = db_async().await;
    let s = &*db.store;
    let t = tenant(s, "acme").await;
    dashboard_user(s, &t.id, "admin@acme.test", Role::Administrator).await;
    let u = dashboard_user(s, &t.id, "u@acme.test", Role::Viewer).await;
    let link = |n: u8| LinkRecord {
        hash: [n; 32],
        tenant_id: t.id.clone(),
        user_id: u.id.clone(),
        purpose: LinkPurpose::PasswordReset,
        created_at: now(),
        expires_at: now() + Duration::hours(1),
    };
    for (n, change) in [
        (1u8, UserChange::Disable),
        (2, UserChange::ResetPassword(link(100))),
        (3, UserChange::Delete),
    ] {
        if n == 2 {
            s.change_dashboard_user(
                &t.id,
                &u.id,
                &UserChange::Enable,
                draft(&t.id, Action::DashboardUserEnabled),
            )
            .await
            .unwrap();
        }
        let h = session_of(s, &u, n).await;
        assert!(s.get_session(&h).await.unwrap().is_some());
        s.change_dashboard_user(
            &t.id,
            &u.id,
            &change,
            draft(&t.id, Action::DashboardUserDisabled),
        )
        .await
        .unwrap();
        assert!(s.get_session(&h).await.unwrap().is_none(), "{change:?}");
        if n == 2 {
            let found = s.find_dashboard_user("u@acme.test").await.unwrap().unwrap();
            assert!(
                found.password_hash.as_phc().is_empty(),
                "the password is cleared"
            );
            assert!(s.find_link(&[100; 32], now()).await.unwrap().is_some());
        }
    }
    assert!(s
        .find_dashboard_user("u@acme.test")
        .await
        .unwrap()
        .is_none());
    assert!(
        s.find_link(&[100; 32], now()).await.unwrap().is_none(),
        "a deleted user's links go with them"
    );
}

#[tokio::test]
async fn links_are_used_once_and_not_after_they_expire() {
    let db = db_async().await;
    let other = second_instance(&db).await;
    let s = &*db.store;
    let t = tenant(s, "acme").await;
    let u = dashboard_user(s, &t.id, "u@acme.test", Role::Viewer).await;
    let at = now();
    let mk = |n: u8, expires| LinkRecord {
        hash: [n; 32],
        tenant_id: t.id.clone(),
        user_id: u.id.clone(),
        purpose: LinkPurpose::Invite,
        created_at: at,
        expires_at: expires,
    };
    s.put_link(&mk(1, at + Duration::minutes(10)))
        .await
        .unwrap();
    s.put_link(&mk(2, at + Duration::minutes(10)))
        .await
        .unwrap();
    let (found, user) = s.find_link(&[1; 32], at).await.unwrap().unwrap();
    assert_eq!(found.purpose, LinkPurpose::Invite);
    assert_eq!(user.id, u.id);
    // Ten uses at once, through both instances: one wins.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = if i % 2 == 0 {
            db.store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            store.consume_link(&[1; 32], at).await.unwrap()
        }));
    }
    let mut won = 0;
    for task in tasks {
        won += usize::from(task.await.unwrap());
    }
    assert_eq!(won, 1);
    assert!(s.find_link(&[1; 32], at).await.unwrap().is_none(), "used");
    // Expired: neither found nor usable.
    let later = at + Duration::minutes(10);
    assert!(s.find_link(&[2; 32], later).await.unwrap().is_none());
    assert!(!s.consume_link(&[2; 32], later).await.unwrap());
    assert!(
        s.find_link(&[3; 32], at).await.unwrap().is_none(),
        "unknown"
    );
}

#[tokio::test]
async fn a_totp_step_and_a_recovery_code_are_accepted_once() {
    let db = db_async().await;
    let other = second_instance(&db).await;
    let s = &*db.store;
    let t = tenant(s, "acme").await;
    let u = dashboard_user(s, &t.id, "u@acme.test", Role::Viewer).await;
    assert!(s.second_factor(&t.id, &u.id).await.unwrap().is_none());
    let secret = TotpSecret::generate();
    s.set_pending_totp(&t.id, &u.id, &secret).await.unwrap();
    let f = s.second_factor(&t.id, &u.id).await.unwrap().unwrap();
    assert_eq!(f.secret, secret);
    assert!(f.enabled_at.is_none());
    assert!(
        !s.use_totp_step(&t.id, &u.id, 5).await.unwrap(),
        "pending: no sign-in"
    );
    let codes = [[1u8; 32], [2; 32]];
    assert!(s
        .enable_totp(
            &t.id,
            &u.id,
            100,
            &codes,
            now(),
            draft(&t.id, Action::SecondFactorEnabled)
        )
        .await
        .unwrap());
    assert!(
        !s.enable_totp(
            &t.id,
            &u.id,
            100,
            &codes,
            now(),
            draft(&t.id, Action::SecondFactorEnabled)
        )
        .await
        .unwrap(),
        "enabled once"
    );
    assert!(
        s.get_dashboard_user(&t.id, &u.id)
            .await
            .unwrap()
            .unwrap()
            .second_factor
    );
    // A confirmed secret is not replaced by a new pending one.
    s.set_pending_totp(&t.id, &u.id, &TotpSecret::generate())
        .await
        .unwrap();
    assert_eq!(
        s.second_factor(&t.id, &u.id).await.unwrap().unwrap().secret,
        secret
    );
    // The enrolment's step is used; the same or older steps are replays.
    assert!(!s.use_totp_step(&t.id, &u.id, 100).await.unwrap());
    assert!(!s.use_totp_step(&t.id, &u.id, 99).await.unwrap());
    // The next step, tried ten times at once through both instances: accepted once.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = if i % 2 == 0 {
            db.store.clone()
        } else {
            other.clone()
        };
        let (tid, uid) = (t.id.clone(), u.id.clone());
        tasks.push(tokio::spawn(async move {
            store.use_totp_step(&tid, &uid, 101).await.unwrap()
        }));
    }
    let mut won = 0;
    for task in tasks {
        won += usize::from(task.await.unwrap());
    }
    assert_eq!(won, 1);
    assert_eq!(s.recovery_codes_left(&t.id, &u.id).await.unwrap(), 2);
    let before = audit_count(s, &t.id).await;
    assert!(s
        .use_recovery_code(
            &t.id,
            &u.id,
            &[1; 32],
            now(),
            draft(&t.id, Action::RecoveryCodeUsed)
        )
        .await
        .unwrap());
    assert!(!s
        .use_recovery_code(
            &t.id,
            &u.id,
            &[1; 32],
            now(),
            draft(&t.id, Action::RecoveryCodeUsed)
        )
        .await
        .unwrap());
    assert!(!s
        .use_recovery_code(
            &t.id,
            &u.id,
            &[9; 32],
            now(),
            draft(&t.id, Action::RecoveryCodeUsed)
        )
        .await
        .unwrap());
    assert_eq!(
        audit_count(s, &t.id).await,
        before + 1,
        "only the use is audited"
    );
    assert_eq!(s.recovery_codes_left(&t.id, &u.id).await.unwrap(), 1);
    // An administrator's reset removes the factor and the codes.
    s.change_dashboard_user(
        &t.id,
        &u.id,
        &UserChange::ResetSecondFactor,
        draft(&t.id, Action::SecondFactorReset),
    )
    .await
    .unwrap();
    assert!(s.second_factor(&t.id, &u.id).await.unwrap().is_none());
    assert_eq!(s.recovery_codes_left(&t.id, &u.id).await.unwrap(), 0);
    assert!(
        !s.get_dashboard_user(&t.id, &u.id)
            .await
            .unwrap()
            .unwrap()
            .second_factor
    );
}

#[tokio::test]
async fn the_second_factor_rule_is_per_tenant() {
    let db = db_async().await;
    let s = &*db.store;
    let t = tenant(s, "acme").await;
    let o = tenant(s, "other").await;
    assert!(!s.second_factor_required(&t.id).await.unwrap());
    for on in [true, false, true] {
        s.set_second_factor_required(&t.id, on, draft(&t.id, Action::SecondFactorPolicyChanged))
            .await
            .unwrap();
        assert_eq!(s.second_factor_required(&t.id).await.unwrap(), on);
    }
    assert!(!s.second_factor_required(&o.id).await.unwrap());
}
