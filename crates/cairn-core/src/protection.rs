//! Deletion protection of backup repositories, per tenant: while it is on, a backup
//! key's DELETE of anything but a lock keeps the object (in the vault's trash) for the
//! tenant's number of days instead of destroying it, and an administrator can undo an
//! account's deletions since a point in time. This module decides who may do what and
//! what is audited; `cairn-vault` moves the bytes.
//!
//! Protected bytes stay charged to the account's quota until the purge removes them.
//! Otherwise a stolen key could store without bound (upload, delete, upload again: each
//! deleted copy kept for days at no cost to the account), and the tenant's disk, not the
//! account, would pay. The cost falls on the account's own `forget --prune`, which frees
//! its quota only once the window has passed; an administrator who needs the room sooner
//! shortens the window or raises the quota.

use crate::audit::{Action, Actor, AuditDraft, RequestMeta};
use crate::ids::{TenantId, UserId};
use crate::service::{Authority, Services};
use crate::store::Role;
use crate::user::UserRecord;
use crate::vault::{ByteCount, VaultCtx};
use crate::{Error, Result};
use serde_json::json;
use time::OffsetDateTime;

/// The window when an administrator turns protection on without naming one.
pub const DEFAULT_PROTECT_DAYS: u32 = 30;

/// The longest window: ten years. Longer ones are mistakes (a typo of a few zeros) that
/// would keep every deleted byte, charged, for ever.
pub const MAX_PROTECT_DAYS: u32 = 3650;

/// Checks a window's length: 1 to [`MAX_PROTECT_DAYS`] days.
pub fn check_days(days: u32) -> Result<u32> {
    if (1..=MAX_PROTECT_DAYS).contains(&days) {
        Ok(days)
    } else {
        Err(Error::Invalid {
            field: "days",
            reason: format!(
                "must be between 1 and {MAX_PROTECT_DAYS} (turn protection off instead of 0)"
            ),
        })
    }
}

/// What one undelete did (the vault's counts, in the core's terms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UndeleteCounts {
    pub restored: u64,
    pub restored_bytes: u64,
    /// Entries whose object was back already (same name, same content): removed, and
    /// their bytes given back to the quota.
    pub dropped: u64,
    pub dropped_bytes: u64,
}

/// The actor of an administrator's protection action; `Forbidden` for anyone else.
pub(crate) fn admin_actor(who: Authority<'_>, tenant: &TenantId) -> Result<Actor> {
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

impl Services {
    /// The tenant's window in days, or `None` when protection is off.
    pub async fn vault_protection(&self, tenant: &TenantId) -> Result<Option<u32>> {
        self.store.vault_protection(tenant).await
    }

    /// Turns protection on for `days` (checked by [`check_days`]) or off (`None`).
    /// Audited `vault_protection_changed` with the window before and after.
    pub async fn set_vault_protection(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        days: Option<u32>,
        meta: &RequestMeta,
    ) -> Result<()> {
        let actor = admin_actor(who, tenant)?;
        let days = days.map(check_days).transpose()?;
        self.tenant(tenant).await?;
        let before = self.store.vault_protection(tenant).await?;
        let at = self.clock.now();
        let audit = AuditDraft {
            tenant_id: tenant.clone(),
            actor,
            action: Action::VaultProtectionChanged,
            target_type: "tenant",
            target_id: Some(tenant.to_string()),
            target_name: None,
            changes: json!({"protectDays": {"before": before, "after": days}}),
            meta: meta.clone(),
            at,
        };
        self.store
            .set_vault_protection(tenant, days, at, audit)
            .await
    }

    /// For a backup key's DELETE: `(now, until)` in Unix seconds when the object must be
    /// kept, `None` when the tenant's protection is off.
    pub async fn protected_delete_window(&self, ctx: &VaultCtx) -> Result<Option<(i64, i64)>> {
        let Some(days) = self.store.vault_protection(ctx.tenant_id()).await? else {
            return Ok(None);
        };
        let now = self.clock.now();
        let until = now + time::Duration::days(i64::from(days));
        Ok(Some((now.unix_timestamp(), until.unix_timestamp())))
    }

    /// Undoes an account's deletions since `since` (not in the future): `run` puts the
    /// objects back and reports what it did; the bytes of entries it dropped are given
    /// back to the quota, and the whole is audited `vault_undeleted`.
    pub async fn undelete_vault(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        user_name: &str,
        since: OffsetDateTime,
        meta: &RequestMeta,
        run: impl AsyncFnOnce(&UserRecord, i64) -> Result<UndeleteCounts>,
    ) -> Result<(UserRecord, UndeleteCounts)> {
        let actor = admin_actor(who, tenant)?;
        let now = self.clock.now();
        if since > now {
            return Err(Error::Invalid {
                field: "since",
                reason: format!(
                    "{} is in the future (now is {})",
                    crate::clock::format_ts(since),
                    crate::clock::format_ts(now)
                ),
            });
        }
        let account = self.find_account(tenant, user_name).await?;
        let counts = run(&account, since.unix_timestamp()).await?;
        if counts.dropped_bytes > 0 {
            self.give_back(tenant, &account.id, counts.dropped_bytes)
                .await?;
        }
        let audit = AuditDraft {
            tenant_id: tenant.clone(),
            actor,
            action: Action::VaultUndeleted,
            target_type: "user",
            target_id: Some(account.id.to_string()),
            target_name: Some(account.user_name.to_string()),
            // The audit log's shape for values without a before: `{"after": …}`.
            changes: json!({
                "since": {"after": crate::clock::format_ts(since)},
                "restored": {"after": counts.restored},
                "restoredBytes": {"after": counts.restored_bytes},
                "dropped": {"after": counts.dropped},
                "droppedBytes": {"after": counts.dropped_bytes},
            }),
            meta: meta.clone(),
            at: self.clock.now(),
        };
        self.store.record_audit(audit).await?;
        Ok((account, counts))
    }

    /// Records the purge of an account's protected objects whose window had passed:
    /// their bytes go back to the quota, audited `vault_trash_purged` (actor `system`).
    /// An account that no longer exists (its repository purged with it) is skipped.
    pub async fn trash_purged(
        &self,
        tenant: &TenantId,
        user: &UserId,
        objects: u64,
        bytes: u64,
    ) -> Result<()> {
        let Some(account) = self.store.get_user_any(tenant, user).await? else {
            return Ok(());
        };
        self.give_back(tenant, user, bytes).await?;
        let audit = crate::user::system_audit(
            &account,
            Action::VaultTrashPurged,
            json!({"objects": {"after": objects}, "bytes": {"after": bytes}}),
            self.clock.now(),
        );
        self.store.record_audit(audit).await
    }

    async fn give_back(&self, tenant: &TenantId, user: &UserId, bytes: u64) -> Result<()> {
        let b = ByteCount::new(bytes)
            .ok_or_else(|| Error::Internal(format!("{bytes} bytes overflow the counter")))?;
        // A counter below the bytes has drifted (a recount ran meanwhile); it is left
        // as it is for the next recount, as `release_vault_bytes` does.
        self.store.refund_used_bytes(tenant, user, b).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_one_day_to_ten_years() {
        assert!(check_days(0).is_err());
        assert_eq!(check_days(1).unwrap(), 1);
        assert_eq!(check_days(MAX_PROTECT_DAYS).unwrap(), MAX_PROTECT_DAYS);
        let e = check_days(MAX_PROTECT_DAYS + 1).unwrap_err();
        assert!(e.to_string().contains("between 1 and 3650"), "{e}");
    }
}
