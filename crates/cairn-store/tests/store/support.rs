use cairn_core::audit::{Action, Actor, AuditDraft, RequestMeta};
use cairn_core::ids::{QuotaGb, TenantId, TokenId, UserId, UserName};
use cairn_core::store::Store;
use cairn_core::tenant::Tenant;
use cairn_core::user::{UserData, UserRecord};
use serde_json::{json, Value};
use time::OffsetDateTime;

/// A fresh database of the backend under test (see `cairn_testkit::TestDb`).
pub use cairn_testkit::{backend_is_postgres, TestDb as Db};

/// A new database of the backend under test, dropped with the `Db`.
pub async fn db_async() -> Db {
    Db::new("cairn_test").await
}

pub fn now() -> OffsetDateTime {
    // Millisecond precision, as stored.
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .unwrap()
}

pub fn draft(tenant: &TenantId, action: Action) -> AuditDraft {
    AuditDraft {
        tenant_id: tenant.clone(),
        actor: Actor::Token {
            id: TokenId::random(),
        },
        action,
        target_type: "user",
        target_id: None,
        target_name: None,
        changes: json!({}),
        meta: RequestMeta::default(),
        at: now(),
    }
}

pub async fn tenant(store: &dyn Store, name: &str) -> Tenant {
    let t = Tenant {
        id: TenantId::random(),
        name: name.into(),
        scim_enabled: true,
        account_size_gb: QuotaGb::new(50).unwrap(),
        created_at: now(),
        max_account_size_gb: None,
        stale_days: Default::default(),
    };
    store
        .create_tenant(&t, draft(&t.id, Action::TenantCreated))
        .await
        .unwrap();
    t
}

pub fn user(tenant: &TenantId, user_name: &str, doc: Value) -> UserRecord {
    let email = doc["emails"][0]["value"].as_str().map(str::to_owned);
    UserRecord {
        id: UserId::random(),
        tenant_id: tenant.clone(),
        user_name: UserName::parse(user_name).unwrap(),
        external_id: doc["externalId"].as_str().map(str::to_owned),
        display_name: doc["displayName"].as_str().map(str::to_owned),
        email,
        active: doc["active"].as_bool().unwrap_or(true),
        doc,
        quota_gb: QuotaGb::new(50).unwrap(),
        used_bytes: 0,
        scim_managed: true,
        created_at: now(),
        updated_at: now(),
        version: 1,
        deleted_at: None,
        purge_at: None,
    }
}

pub fn data_of(u: &UserRecord) -> UserData {
    u.data()
}

pub async fn audit_count(store: &dyn Store, tenant: &TenantId) -> usize {
    store
        .list_audit(tenant, &Default::default())
        .await
        .unwrap()
        .len()
}

/// Creates `n` accounts named `{prefix}{i}@x.io` in `tenant`, returning their ids.
pub async fn create_users(
    store: &dyn Store,
    tenant: &TenantId,
    prefix: &str,
    n: usize,
) -> Vec<UserId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}{i}@x.io");
        let u = user(tenant, &name, json!({ "userName": name }));
        store
            .create_user(&u, draft(tenant, Action::UserCreated))
            .await
            .unwrap();
        ids.push(u.id);
    }
    ids
}

/// The retention purge as `Services::purge_expired` runs it, with every repository
/// removal succeeding: marks what is due, then deletes each account (auditing
/// `user_purged`). Returns the accounts this call deleted.
pub async fn purge(store: &dyn Store, now: OffsetDateTime) -> Vec<UserRecord> {
    let mut purged = Vec::new();
    for u in store.begin_purge(now, 1000).await.unwrap() {
        let mut audit = draft(&u.tenant_id, Action::UserPurged);
        audit.actor = Actor::System;
        if store
            .finish_purge(&u.tenant_id, &u.id, vec![audit])
            .await
            .unwrap()
        {
            purged.push(u);
        }
    }
    purged
}
