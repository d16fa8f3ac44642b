//! Deletion protection at the edge (see `cairn_core::protection`): the protected DELETE
//! of the restic protocol, an administrator's undelete, and the purge of protected
//! objects whose window has passed. Shared by the vault routes, the dashboard and the
//! CLI, so each does the same thing.

use cairn_core::audit::RequestMeta;
use cairn_core::ids::{TenantId, UserId};
use cairn_core::protection::UndeleteCounts;
use cairn_core::service::{Authority, Services};
use cairn_core::user::UserRecord;
use cairn_core::vault::VaultCtx;
use cairn_core::Error;
use cairn_vault::{is_protected, Object, Repo, Vault, VaultError};
use time::OffsetDateTime;

/// What a DELETE of the restic protocol does with an object.
pub enum Deleted {
    /// Destroyed; its bytes go back to the quota.
    Removed(u64),
    /// Kept in the trash; its bytes stay charged until the purge.
    Kept(u64),
}

/// Deletes an object for a backup key: kept when the tenant's protection is on and the
/// object is not a lock, destroyed otherwise.
pub async fn delete(
    svc: &Services,
    ctx: &VaultCtx,
    repo: &Repo,
    obj: &Object,
) -> Result<Result<Deleted, VaultError>, Error> {
    let window = if is_protected(obj) {
        svc.protected_delete_window(ctx).await?
    } else {
        None
    };
    Ok(match window {
        Some((now, until)) => repo
            .delete_protected(obj, now, until)
            .await
            .map(Deleted::Kept),
        None => repo.delete(obj).await.map(Deleted::Removed),
    })
}

/// An account's protected objects: how many and their bytes (shown on its page).
pub async fn protected_usage(vault: &Vault, tenant: &TenantId, user: &UserId) -> (u64, u64) {
    match vault.repo(tenant.as_str(), user.as_str()).trash().await {
        Ok(entries) => (entries.len() as u64, entries.iter().map(|e| e.size).sum()),
        Err(e) => {
            tracing::warn!(error = %e, "listing an account's protected deletions failed");
            (0, 0)
        }
    }
}

/// Undoes an account's protected deletions since `since` (audited; see
/// `Services::undelete_vault`).
pub async fn undelete(
    svc: &Services,
    vault: &Vault,
    who: Authority<'_>,
    tenant: &TenantId,
    user_name: &str,
    since: OffsetDateTime,
    meta: &RequestMeta,
) -> cairn_core::Result<(UserRecord, UndeleteCounts)> {
    svc.undelete_vault(who, tenant, user_name, since, meta, async |u, since| {
        let done = vault
            .repo(u.tenant_id.as_str(), u.id.as_str())
            .undelete(since)
            .await
            .map_err(|e| Error::Internal(format!("undeleting: {e}")))?;
        Ok(UndeleteCounts {
            restored: done.restored,
            restored_bytes: done.restored_bytes,
            dropped: done.dropped,
            dropped_bytes: done.dropped_bytes,
        })
    })
    .await
}

/// What one run of [`purge_trash`] did.
#[derive(Debug, Default)]
pub struct TrashReport {
    /// Accounts, objects and bytes removed.
    pub accounts: u64,
    pub objects: u64,
    pub bytes: u64,
    /// Repositories that failed (retried by the next run).
    pub failed: Vec<String>,
}

/// Removes every protected object whose window has passed (by the server's clock),
/// gives its bytes back to the account's quota and audits it. Run by `serve`'s
/// maintenance timer and by `cairn account purge-expired`.
pub async fn purge_trash(svc: &Services, vault: &Vault) -> cairn_core::Result<TrashReport> {
    let now = svc.clock.now().unix_timestamp();
    let (purged, failed) = vault
        .purge_trash(now)
        .await
        .map_err(|e| Error::Internal(format!("purging protected deletions: {e}")))?;
    let mut report = TrashReport {
        failed,
        ..TrashReport::default()
    };
    for p in purged {
        report.accounts += 1;
        report.objects += p.objects;
        report.bytes += p.bytes;
        let (Some(t), Some(u)) = (TenantId::parse(&p.tenant), UserId::parse(&p.account)) else {
            continue;
        };
        if let Err(e) = svc.trash_purged(&t, &u, p.objects, p.bytes).await {
            report.failed.push(format!(
                "{}/{}: recording the purge: {e}",
                p.tenant, p.account
            ));
        }
    }
    Ok(report)
}
