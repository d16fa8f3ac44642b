//! Repository health (see `cairn_vault::verify`): the last check of each backup account,
//! recorded so the account page can show it, and the audit entry of an administrator's
//! "Verify now". `cairn-vault` reads and hashes the objects; this module keeps the result.

use crate::audit::{Action, AuditDraft, RequestMeta};
use crate::ids::{TenantId, UserId};
use crate::service::{Authority, Services};
use crate::user::UserRecord;
use crate::Result;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

/// At most this many bad objects are kept with a check's result (all are counted): a
/// repository rotten through keeps a bounded row, and the first names say enough.
pub const MAX_RECORDED_BAD: usize = 100;

/// An object that failed the check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadObject {
    /// `kind/name`, as the repository lists it.
    pub object: String,
    /// `mismatch` (its content does not hash to its name: bit rot, a truncated or
    /// overwritten object) or `unreadable` (the storage failed to return it).
    pub reason: String,
}

/// The result of one check of an account's repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultVerification {
    pub user_id: UserId,
    pub verified_at: OffsetDateTime,
    pub objects: u64,
    pub bytes: u64,
    /// All bad objects found (`bad` holds at most [`MAX_RECORDED_BAD`] of them).
    pub bad_count: u64,
    pub bad: Vec<BadObject>,
}

impl Services {
    /// Records a check's result on the account (replacing the previous one); keeps at
    /// most [`MAX_RECORDED_BAD`] bad objects.
    pub async fn record_verification(
        &self,
        tenant: &TenantId,
        mut v: VaultVerification,
    ) -> Result<()> {
        v.bad.truncate(MAX_RECORDED_BAD);
        self.store.record_vault_verification(tenant, &v).await
    }

    /// The account's last check, if any.
    pub async fn verification_of(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<VaultVerification>> {
        self.store.vault_verification(tenant, user).await
    }

    /// Audits that an administrator started a check of the account (`Forbidden` for
    /// anyone else): the check itself runs in the background and records its result.
    pub async fn audit_verify_started(
        &self,
        who: Authority<'_>,
        account: &UserRecord,
        meta: &RequestMeta,
    ) -> Result<()> {
        let actor = crate::protection::admin_actor(who, &account.tenant_id)?;
        self.store
            .record_audit(AuditDraft {
                tenant_id: account.tenant_id.clone(),
                actor,
                action: Action::VaultVerifyStarted,
                target_type: "user",
                target_id: Some(account.id.to_string()),
                target_name: Some(account.user_name.to_string()),
                changes: json!({}),
                meta: meta.clone(),
                at: self.clock.now(),
            })
            .await
    }
}
