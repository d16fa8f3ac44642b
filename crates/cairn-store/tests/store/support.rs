use cairn_core::audit::{Action, Actor, AuditDraft, RequestMeta};
use cairn_core::ids::{QuotaGb, TenantId, TokenId, UserId, UserName};
use cairn_core::store::Store;
use cairn_core::tenant::Tenant;
use cairn_core::user::{UserData, UserRecord};
use cairn_store::SqliteStore;
use serde_json::{json, Value};
use std::sync::Arc;
use time::OffsetDateTime;

pub struct Db {
    pub store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

pub fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("cairn.db")).unwrap());
    Db { store, _dir: dir }
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
