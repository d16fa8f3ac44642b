//! Access to the backup vault (restic repositories, one per backup account): backup keys,
//! who may open a repository, and the quota that uploads are charged against. The bytes
//! themselves live in `cairn-vault`; this module only decides.

use crate::audit::{Action, Actor, AuditDraft, RequestMeta};
use crate::auth::TokenHash;
use crate::ids::{QuotaGb, TenantId, UserId, UserName};
use crate::query::{Attr, AttrKind, AttrTarget, CompareOp, Filter, ListQuery, Scalar};
use crate::service::{Authority, Services};
use crate::user::{AccountStatus, UserRecord};
use crate::{Error, Result};
use rand::RngCore;
use serde_json::json;
use std::fmt;
use time::OffsetDateTime;

/// A backup key's secret as shown once to an administrator. `Debug` never prints it.
#[derive(Clone)]
pub struct BackupSecret(String);

impl BackupSecret {
    fn generate() -> Self {
        let mut bytes = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        BackupSecret(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
    pub fn new(s: &str) -> Self {
        BackupSecret(s.to_owned())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// 192 random bits: a fast hash is enough (see `TokenHash`).
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

impl fmt::Debug for BackupSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BackupSecret(<redacted>)")
    }
}

/// The stored form of an account's backup key (one per account; a new key replaces it).
#[derive(Debug, Clone)]
pub struct BackupKeyRecord {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    /// The HTTP basic-auth user name (not secret).
    pub key_user: String,
    pub hash: TokenHash,
    pub created_at: OffsetDateTime,
}

/// A freshly generated key, returned once.
#[derive(Debug)]
pub struct NewBackupKey {
    pub account: UserRecord,
    pub key_user: String,
    pub secret: BackupSecret,
}

/// How quota is counted: bytes per "GB" of Account Size. 10^9 in production; tests make
/// it small so that a few megabytes fill an account.
#[derive(Debug, Clone, Copy)]
pub struct QuotaUnit(pub u64);

impl Default for QuotaUnit {
    fn default() -> Self {
        QuotaUnit(1_000_000_000)
    }
}

/// Why a vault request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultDenied {
    /// No or wrong credentials (401 with a challenge).
    Unauthenticated,
    /// Right key, but the account is suspended or deleted (403).
    Suspended,
    Deleted,
}

/// Proof that a request may use one account's repository: only `Services::open_vault`
/// constructs it, after checking the key and the account's status.
#[derive(Debug, Clone)]
pub struct VaultCtx {
    tenant: TenantId,
    user: UserId,
    quota_gb: QuotaGb,
    quota_bytes: i64,
}

impl VaultCtx {
    pub fn tenant_id(&self) -> &TenantId {
        &self.tenant
    }
    pub fn user_id(&self) -> &UserId {
        &self.user
    }
    pub fn quota_gb(&self) -> QuotaGb {
        self.quota_gb
    }
    pub fn quota_bytes(&self) -> i64 {
        self.quota_bytes
    }
}

impl Services {
    /// Generates a new backup key for an account (live, any status); earlier keys of the
    /// account stop working. The secret is returned this once and stored only as a hash.
    pub async fn generate_backup_key(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        user_name: &str,
        meta: &RequestMeta,
    ) -> Result<NewBackupKey> {
        let actor = match who {
            Authority::Operator(_) => Actor::Operator,
            Authority::Dashboard(ctx) => {
                if ctx.tenant_id() != tenant || ctx.role() != crate::store::Role::Administrator {
                    return Err(Error::Forbidden);
                }
                Actor::DashboardUser {
                    id: ctx.user_id().clone(),
                    email: ctx.email().to_owned(),
                }
            }
        };
        let account = self.find_account(tenant, user_name).await?;
        self.issue_backup_key(account, actor, meta).await
    }

    /// Like `generate_backup_key`, for an account already looked up by id (dashboard).
    pub async fn generate_backup_key_by_id(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        id: &UserId,
        meta: &RequestMeta,
    ) -> Result<NewBackupKey> {
        let account = self
            .store
            .get_user(tenant, id)
            .await?
            .ok_or(Error::NotFound("user"))?;
        self.generate_backup_key(who, tenant, account.user_name.as_str(), meta)
            .await
    }

    async fn issue_backup_key(
        &self,
        account: UserRecord,
        actor: Actor,
        meta: &RequestMeta,
    ) -> Result<NewBackupKey> {
        let secret = BackupSecret::generate();
        let key_user = account.id.to_string();
        let record = BackupKeyRecord {
            tenant_id: account.tenant_id.clone(),
            user_id: account.id.clone(),
            key_user: key_user.clone(),
            hash: secret.hash(),
            created_at: self.clock.now(),
        };
        let audit = AuditDraft {
            tenant_id: account.tenant_id.clone(),
            actor,
            action: Action::BackupKeyGenerated,
            target_type: "user",
            target_id: Some(account.id.to_string()),
            target_name: Some(account.user_name.to_string()),
            changes: json!({}),
            meta: meta.clone(),
            at: self.clock.now(),
        };
        self.store.set_backup_key(&record, audit).await?;
        Ok(NewBackupKey {
            account,
            key_user,
            secret,
        })
    }

    async fn find_account(&self, tenant: &TenantId, user_name: &str) -> Result<UserRecord> {
        self.tenant(tenant).await?;
        let name = UserName::parse(user_name).map_err(|reason| Error::Invalid {
            field: "userName",
            reason,
        })?;
        let query = ListQuery {
            filter: Some(Filter::Compare {
                attr: Attr {
                    target: AttrTarget::UserName,
                    kind: AttrKind::String,
                    case_exact: false,
                },
                op: CompareOp::Eq,
                value: Scalar::String(name.to_string()),
            }),
            count: 1,
            ..ListQuery::default()
        };
        let page = self.store.list_users(tenant, &query).await?;
        page.items.into_iter().next().ok_or(Error::NotFound("user"))
    }

    /// The repository URL of an account, with the key's credentials when given.
    pub fn repository_url(
        &self,
        tenant: &TenantId,
        user: &UserId,
        creds: Option<(&str, &BackupSecret)>,
    ) -> String {
        let base = self.public_url.as_str();
        let (scheme, host) = base.split_once("://").unwrap_or(("http", base));
        match creds {
            Some((u, s)) => format!(
                "rest:{scheme}://{u}:{}@{host}/backup/{tenant}/{user}/",
                s.expose()
            ),
            None => format!("rest:{scheme}://{host}/backup/{tenant}/{user}/"),
        }
    }

    /// Checks a request's basic-auth credentials against the account's backup key and the
    /// account's status. Soft-deleted accounts keep their key (restore brings access back)
    /// but are refused, as are suspended ones.
    pub async fn open_vault(
        &self,
        tenant: &TenantId,
        user: &UserId,
        key_user: &str,
        secret: &BackupSecret,
        unit: QuotaUnit,
    ) -> Result<std::result::Result<VaultCtx, VaultDenied>> {
        let Some(key) = self.store.backup_key(tenant, user).await? else {
            return Ok(Err(VaultDenied::Unauthenticated));
        };
        let user_ok: bool =
            subtle::ConstantTimeEq::ct_eq(key.key_user.as_bytes(), key_user.as_bytes()).into();
        if !(user_ok & key.hash.ct_eq(&secret.hash())) {
            return Ok(Err(VaultDenied::Unauthenticated));
        }
        let Some(account) = self.store.get_user_any(tenant, user).await? else {
            return Ok(Err(VaultDenied::Unauthenticated));
        };
        match account.status() {
            AccountStatus::Active => {}
            AccountStatus::Suspended => return Ok(Err(VaultDenied::Suspended)),
            AccountStatus::Deleted => return Ok(Err(VaultDenied::Deleted)),
        }
        // The operator's cap on the tenant holds over any larger quota set before it.
        let mut account = account;
        account.quota_gb = self.tenant(tenant).await?.effective_quota(account.quota_gb);
        Ok(Ok(VaultCtx {
            tenant: tenant.clone(),
            user: user.clone(),
            quota_gb: account.quota_gb,
            quota_bytes: i64::from(account.quota_gb.get()).saturating_mul(unit.0 as i64),
        }))
    }

    /// Charges `bytes` against the account's quota before an upload is stored. With
    /// `enforce` (everything but lock files) the charge is refused (`false`) when it would
    /// take the account past its quota; concurrent uploads are charged atomically, so
    /// they cannot overshoot together.
    pub async fn reserve_vault_bytes(
        &self,
        ctx: &VaultCtx,
        bytes: u64,
        enforce: bool,
    ) -> Result<bool> {
        let limit = enforce.then_some(ctx.quota_bytes);
        self.store
            .add_used_bytes(&ctx.tenant, &ctx.user, bytes as i64, limit)
            .await
    }

    /// Gives back bytes: a refused or failed upload's charge, or a deleted object.
    pub async fn release_vault_bytes(&self, ctx: &VaultCtx, bytes: u64) -> Result<()> {
        self.store
            .add_used_bytes(&ctx.tenant, &ctx.user, -(bytes as i64), None)
            .await
            .map(|_| ())
    }

    /// Sets an account's used space to what its repository holds (`actual`, measured by
    /// the caller), e.g. after a crash left an interrupted upload's charge counted. Run it
    /// while the account is idle: an upload in flight would be counted twice or not at
    /// all. Returns the account and the correction applied.
    pub async fn recount_vault(
        &self,
        _op: &crate::auth::OperatorCtx,
        tenant: &TenantId,
        user_name: &str,
        actual: impl AsyncFnOnce(&UserRecord) -> Result<u64>,
    ) -> Result<(UserRecord, i64)> {
        let account = self.find_account(tenant, user_name).await?;
        let bytes = actual(&account).await?;
        let delta = bytes as i64 - account.used_bytes;
        if delta != 0 {
            self.store
                .add_used_bytes(tenant, &account.id, delta, None)
                .await?;
        }
        Ok((account, delta))
    }
}
