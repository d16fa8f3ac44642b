//! Device keys: the backup keys of an account, several per account (one per computer),
//! each with a name, created and revoked separately, and the time each was last used.
//! Secrets are stored only as hashes; `crate::vault::Services::open_vault` checks them.

use crate::audit::{Action, Actor, AuditDraft, RequestMeta};
use crate::auth::TokenHash;
use crate::ids::{fold_case, TenantId, UserId};
use crate::service::{Authority, Services};
use crate::sso::AccountSession;
use crate::store::Role;
use crate::user::UserRecord;
use crate::vault::{BackupSecret, VaultCtx};
use crate::{Error, Result};
use serde_json::json;
use time::OffsetDateTime;

/// The most keys one account may hold. A person has a handful of computers; the bound
/// keeps whoever may create keys (an administrator, or the account's owner on their own
/// page) from filling the table and the account page with thousands.
pub const MAX_BACKUP_KEYS: usize = 20;

/// How stale a key's recorded last use may be. Recording every use would add a database
/// write to every vault request (restic sends thousands per backup); instead the time is
/// written only when the stored one is at least this old, so each key costs at most one
/// write per minute however busy it is. The write is conditional in SQL too
/// (`touch_backup_key`), so concurrent requests that all saw an old time change the row
/// once.
pub const LAST_USE_GRANULARITY: time::Duration = time::Duration::minutes(1);

/// A backup key's name ("work laptop"): trimmed, 1 to [`KeyName::MAX_LEN`] characters, no
/// control characters; unique per account without regard to letter case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyName(String);

impl KeyName {
    pub const MAX_LEN: usize = 64;
    /// The name of a key made without one, and of the single key an account held before
    /// accounts could hold several (migration `device_keys`).
    pub const DEFAULT: &'static str = "default";

    pub fn parse(s: &str) -> Result<Self> {
        let invalid = |reason: String| Error::Invalid {
            field: "name",
            reason,
        };
        let s = s.trim();
        if s.is_empty() {
            return Err(invalid("a backup key needs a name".into()));
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(invalid(format!(
                "a backup key's name is at most {} characters",
                Self::MAX_LEN
            )));
        }
        if s.chars().any(char::is_control) {
            return Err(invalid(
                "a backup key's name must not contain control characters".into(),
            ));
        }
        Ok(KeyName(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The form uniqueness is checked on.
    pub fn folded(&self) -> String {
        fold_case(&self.0)
    }
    /// For names read back from storage, which holds only parsed names.
    pub fn from_trusted(s: String) -> Self {
        KeyName(s)
    }
}

impl std::fmt::Display for KeyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The stored form of one backup key.
#[derive(Debug, Clone)]
pub struct BackupKeyRecord {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    /// The HTTP basic-auth user name (not secret), unique per account: a fresh UUID for
    /// each key, the account's id for a key from before device keys.
    pub key_user: String,
    pub name: KeyName,
    pub hash: TokenHash,
    pub created_at: OffsetDateTime,
    /// Within [`LAST_USE_GRANULARITY`] of the key's last authenticated vault request.
    pub last_used_at: Option<OffsetDateTime>,
}

/// A freshly created key, returned once.
#[derive(Debug)]
pub struct NewBackupKey {
    pub account: UserRecord,
    pub name: KeyName,
    pub key_user: String,
    pub secret: BackupSecret,
}

impl Services {
    /// Who may create and revoke an account's keys: the operator, or an administrator of
    /// the account's tenant.
    fn key_manager(who: Authority<'_>, tenant: &TenantId) -> Result<Actor> {
        match who {
            Authority::Operator(_) => Ok(Actor::Operator),
            Authority::Dashboard(ctx) => {
                if ctx.tenant_id() != tenant || ctx.role() != Role::Administrator {
                    return Err(Error::Forbidden);
                }
                Ok(Actor::DashboardUser {
                    id: ctx.user_id().clone(),
                    email: ctx.email().to_owned(),
                })
            }
        }
    }

    /// A live account by id (any status), for the dashboard and the account's own page.
    async fn live_account(&self, tenant: &TenantId, id: &UserId) -> Result<UserRecord> {
        self.store
            .get_user(tenant, id)
            .await?
            .ok_or(Error::NotFound("user"))
    }

    /// Creates a named backup key for an account (live, any status). The account's other
    /// keys keep working. The secret is returned this once and stored only as a hash.
    pub async fn create_backup_key(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        user_name: &str,
        name: &str,
        meta: &RequestMeta,
    ) -> Result<NewBackupKey> {
        let actor = Self::key_manager(who, tenant)?;
        let name = KeyName::parse(name)?;
        let account = self.find_account(tenant, user_name).await?;
        self.issue_backup_key(account, name, actor, meta).await
    }

    /// Like `create_backup_key`, for an account already looked up by id (dashboard).
    pub async fn create_backup_key_by_id(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        id: &UserId,
        name: &str,
        meta: &RequestMeta,
    ) -> Result<NewBackupKey> {
        let actor = Self::key_manager(who, tenant)?;
        let name = KeyName::parse(name)?;
        let account = self.live_account(tenant, id).await?;
        self.issue_backup_key(account, name, actor, meta).await
    }

    /// The signed-in backup account creates a key for itself (its own page).
    pub async fn create_own_backup_key(
        &self,
        session: &AccountSession,
        name: &str,
        meta: &RequestMeta,
    ) -> Result<NewBackupKey> {
        let name = KeyName::parse(name)?;
        let account = &session.account;
        let account = self.live_account(&account.tenant_id, &account.id).await?;
        let actor = Actor::SingleSignOn {
            subject: Some(account.user_name.to_string()),
        };
        self.issue_backup_key(account, name, actor, meta).await
    }

    async fn issue_backup_key(
        &self,
        account: UserRecord,
        name: KeyName,
        actor: Actor,
        meta: &RequestMeta,
    ) -> Result<NewBackupKey> {
        // Checked here for a readable answer; the store checks both again atomically.
        let existing = self
            .store
            .backup_keys(&account.tenant_id, &account.id)
            .await?;
        if existing.iter().any(|k| k.name.folded() == name.folded()) {
            return Err(Error::Invalid {
                field: "name",
                reason: format!("this account already has a backup key named \"{name}\""),
            });
        }
        if existing.len() >= MAX_BACKUP_KEYS {
            return Err(too_many_keys());
        }
        let secret = BackupSecret::generate();
        let key_user = UserId::random().to_string();
        let now = self.clock.now();
        let record = BackupKeyRecord {
            tenant_id: account.tenant_id.clone(),
            user_id: account.id.clone(),
            key_user: key_user.clone(),
            name: name.clone(),
            hash: secret.hash(),
            created_at: now,
            last_used_at: None,
        };
        let audit = key_audit(
            &account,
            actor,
            Action::BackupKeyGenerated,
            &name,
            meta,
            now,
        );
        self.store
            .create_backup_key(&record, MAX_BACKUP_KEYS, audit)
            .await?;
        Ok(NewBackupKey {
            account,
            name,
            key_user,
            secret,
        })
    }

    /// An account's keys (never their secrets), oldest first, for the operator or a
    /// dashboard user of its tenant (any role: the account page shows them).
    pub async fn backup_keys(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        user_name: &str,
    ) -> Result<(UserRecord, Vec<BackupKeyRecord>)> {
        if let Authority::Dashboard(ctx) = who {
            if ctx.tenant_id() != tenant {
                return Err(Error::Forbidden);
            }
        }
        let account = self.find_account(tenant, user_name).await?;
        let keys = self.store.backup_keys(tenant, &account.id).await?;
        Ok((account, keys))
    }

    /// The keys of an account already looked up by id (any state), for its pages.
    pub async fn backup_keys_of(&self, account: &UserRecord) -> Result<Vec<BackupKeyRecord>> {
        self.store
            .backup_keys(&account.tenant_id, &account.id)
            .await
    }

    /// Revokes an account's key by name: from the next request on it gets 401. The
    /// account's other keys keep working.
    pub async fn revoke_backup_key(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        user_name: &str,
        name: &str,
        meta: &RequestMeta,
    ) -> Result<UserRecord> {
        let actor = Self::key_manager(who, tenant)?;
        let name = KeyName::parse(name)?;
        let account = self.find_account(tenant, user_name).await?;
        self.withdraw_backup_key(account, name, actor, meta).await
    }

    /// Like `revoke_backup_key`, for an account looked up by id (dashboard); a deleted
    /// account's keys can be revoked too (a stolen key should not wait for a restore).
    pub async fn revoke_backup_key_by_id(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        id: &UserId,
        name: &str,
        meta: &RequestMeta,
    ) -> Result<UserRecord> {
        let actor = Self::key_manager(who, tenant)?;
        let name = KeyName::parse(name)?;
        let account = self
            .store
            .get_user_any(tenant, id)
            .await?
            .ok_or(Error::NotFound("user"))?;
        self.withdraw_backup_key(account, name, actor, meta).await
    }

    /// The signed-in backup account revokes one of its own keys.
    pub async fn revoke_own_backup_key(
        &self,
        session: &AccountSession,
        name: &str,
        meta: &RequestMeta,
    ) -> Result<UserRecord> {
        let name = KeyName::parse(name)?;
        let account = &session.account;
        let account = self.live_account(&account.tenant_id, &account.id).await?;
        let actor = Actor::SingleSignOn {
            subject: Some(account.user_name.to_string()),
        };
        self.withdraw_backup_key(account, name, actor, meta).await
    }

    async fn withdraw_backup_key(
        &self,
        account: UserRecord,
        name: KeyName,
        actor: Actor,
        meta: &RequestMeta,
    ) -> Result<UserRecord> {
        // The audit entry names the key as it was created, whatever case the caller used.
        let name = self
            .store
            .backup_keys(&account.tenant_id, &account.id)
            .await?
            .into_iter()
            .map(|k| k.name)
            .find(|n| n.folded() == name.folded())
            .ok_or(Error::NotFound("backup key"))?;
        let now = self.clock.now();
        let audit = key_audit(&account, actor, Action::BackupKeyRevoked, &name, meta, now);
        let revoked = self
            .store
            .revoke_backup_key(&account.tenant_id, &account.id, &name, audit)
            .await?;
        if !revoked {
            return Err(Error::NotFound("backup key"));
        }
        Ok(account)
    }

    /// Records that the key of an opened vault request was used, if its recorded last
    /// use is older than [`LAST_USE_GRANULARITY`] (see there); otherwise does nothing.
    pub async fn record_key_use(&self, ctx: &VaultCtx) -> Result<()> {
        let Some(key_user) = ctx.key_use_due() else {
            return Ok(());
        };
        let now = self.clock.now();
        self.store
            .touch_backup_key(
                ctx.tenant_id(),
                ctx.user_id(),
                key_user,
                now,
                now - LAST_USE_GRANULARITY,
            )
            .await
            .map(drop)
    }
}

fn too_many_keys() -> Error {
    Error::Invalid {
        field: "name",
        reason: format!(
            "an account holds at most {MAX_BACKUP_KEYS} backup keys; revoke one it no longer \
             needs first"
        ),
    }
}

/// The audit entry of a key created or revoked: the key's name, never its secret.
fn key_audit(
    account: &UserRecord,
    actor: Actor,
    action: Action,
    name: &KeyName,
    meta: &RequestMeta,
    at: OffsetDateTime,
) -> AuditDraft {
    let change = match action {
        Action::BackupKeyRevoked => json!({ "before": name.as_str() }),
        _ => json!({ "after": name.as_str() }),
    };
    AuditDraft {
        tenant_id: account.tenant_id.clone(),
        actor,
        action,
        target_type: "user",
        target_id: Some(account.id.to_string()),
        target_name: Some(account.user_name.to_string()),
        changes: json!({ "backup key": change }),
        meta: meta.clone(),
        at,
    }
}

/// Whether a key last used at `last_used` should have its use recorded at `now`.
pub fn key_use_due(last_used: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    last_used.is_none_or(|t| now - t >= LAST_USE_GRANULARITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_trimmed_bounded_and_printable() {
        assert_eq!(
            KeyName::parse("  work laptop ").unwrap().as_str(),
            "work laptop"
        );
        assert!(KeyName::parse("   ").is_err());
        assert!(KeyName::parse("").is_err());
        assert!(KeyName::parse("a\u{7}b").is_err());
        assert!(KeyName::parse("line\nbreak").is_err());
        let longest = "é".repeat(KeyName::MAX_LEN);
        assert!(KeyName::parse(&longest).is_ok());
        assert!(KeyName::parse(&format!("{longest}x")).is_err());
        assert_eq!(
            KeyName::parse("Work Laptop").unwrap().folded(),
            "work laptop"
        );
        // Markup is a name like any other; the templates escape it.
        assert!(KeyName::parse("<b>x</b>").is_ok());
    }

    #[test]
    fn last_use_is_recorded_at_most_once_a_minute() {
        let t = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        assert!(key_use_due(None, t));
        assert!(!key_use_due(Some(t), t));
        assert!(!key_use_due(Some(t), t + time::Duration::seconds(59)));
        assert!(key_use_due(Some(t), t + time::Duration::seconds(60)));
        // A clock that went backwards does not write on every request either.
        assert!(!key_use_due(Some(t), t - time::Duration::seconds(5)));
    }
}
