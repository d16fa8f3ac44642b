//! Access to the backup vault (restic repositories, one per backup account): backup keys,
//! who may open a repository, and the quota that uploads are charged against. The bytes
//! themselves live in `cairn-vault`; this module only decides.

use crate::auth::TokenHash;
use crate::ids::{QuotaGb, TenantId, UserId, UserName};
use crate::query::{Attr, AttrKind, AttrTarget, CompareOp, Filter, ListQuery, Scalar};
use crate::service::Services;
use crate::user::{AccountStatus, UserRecord};
use crate::{Error, Result};
use rand::RngCore;
use std::fmt;
use time::OffsetDateTime;

/// A backup key's secret as shown once to an administrator. `Debug` never prints it.
#[derive(Clone)]
pub struct BackupSecret(String);

impl BackupSecret {
    pub(crate) fn generate() -> Self {
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

/// How quota is counted: bytes per "GB" of Account Size. 10^9 in production; tests make
/// it small so that a few megabytes fill an account. At most [`QuotaUnit::MAX`], so that
/// the largest Account Size in bytes fits the store's counters.
#[derive(Debug, Clone, Copy)]
pub struct QuotaUnit(pub u64);

impl QuotaUnit {
    pub const MAX: u64 = 1_000_000_000;
}

impl Default for QuotaUnit {
    fn default() -> Self {
        QuotaUnit(1_000_000_000)
    }
}

/// A number of bytes the store's signed 64-bit counters can hold (0 to `i64::MAX`). Byte
/// counts from requests and backends become one only through the checked [`ByteCount::new`]:
/// a length above `i64::MAX` cannot wrap into a negative charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteCount(i64);

impl ByteCount {
    pub const ZERO: ByteCount = ByteCount(0);

    pub fn new(bytes: u64) -> Option<ByteCount> {
        i64::try_from(bytes).ok().map(ByteCount)
    }
    pub fn get(self) -> i64 {
        self.0
    }
    pub fn checked_add(self, other: ByteCount) -> Option<ByteCount> {
        self.0.checked_add(other.0).map(ByteCount)
    }
}

/// The largest object the vault accepts. restic writes packs of 16 MiB by default and at
/// most 128 MiB (`--pack-size`, restic's "Tuning Backup Parameters": Pack Size); index,
/// snapshot, key and config files are far smaller. The S3 backend's largest object,
/// `cairn_vault::MAX_REMOTE_OBJECT`, is not smaller (uploads stream; it bounds storage).
pub const MAX_OBJECT_BYTES: u64 = 160 << 20;

/// The largest lock file. restic's are a few hundred bytes (a small JSON document: time,
/// host, user, pid, encrypted).
pub const MAX_LOCK_BYTES: u64 = 64 << 10;

/// How far lock files may take an account past its quota: a full account can still lock
/// its repository to `forget --prune` back under the quota, but lock files cannot be a
/// way to store more than this beyond it.
pub const LOCK_ALLOWANCE_BYTES: u64 = 1 << 20;

// The largest quota a context can carry, plus the lock allowance, fits the store's
// counter, so neither `open_vault` nor a lock's charge can fail on overflow; a lock file
// fits its allowance.
const _: () = assert!(
    QuotaGb::MAX as u64 * QuotaUnit::MAX + LOCK_ALLOWANCE_BYTES <= i64::MAX as u64
        && MAX_LOCK_BYTES <= LOCK_ALLOWANCE_BYTES
);

/// What an upload is, for its size cap and its charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadKind {
    /// Lock files (`locks/`): capped at [`MAX_LOCK_BYTES`], and may use the
    /// [`LOCK_ALLOWANCE_BYTES`] past the quota.
    Lock,
    /// Everything else: capped at [`MAX_OBJECT_BYTES`], within the quota.
    Object,
}

impl UploadKind {
    /// The largest upload of this kind.
    pub fn max_bytes(self) -> u64 {
        match self {
            UploadKind::Lock => MAX_LOCK_BYTES,
            UploadKind::Object => MAX_OBJECT_BYTES,
        }
    }
}

/// An upload's charge against the account's quota (see
/// [`Services::reserve_vault_bytes`]).
#[derive(Debug, Clone, Copy)]
pub struct UploadCharge {
    pub bytes: ByteCount,
    /// The hour its bytes were counted in (`crate::freshness::upload_hour`); `None` for
    /// a lock file, which is not counted.
    pub hour: Option<i64>,
    /// The account's last recorded upload before this one.
    pub last_upload_at: Option<OffsetDateTime>,
}

/// Why an upload is refused before anything is charged or stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadRefused {
    /// The declared length is above what an object of its kind may be (413).
    TooLarge { max: u64 },
    /// The charge would take the account past its quota (507).
    QuotaExceeded,
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
    quota_bytes: ByteCount,
    /// The key that opened it (its basic-auth user), when its last use is due to be
    /// recorded (`Services::record_key_use`).
    key_use_due: Option<String>,
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
    pub fn quota_bytes(&self) -> ByteCount {
        self.quota_bytes
    }
    pub(crate) fn key_use_due(&self) -> Option<&str> {
        self.key_use_due.as_deref()
    }
}

impl Services {
    pub(crate) async fn find_account(
        &self,
        tenant: &TenantId,
        user_name: &str,
    ) -> Result<UserRecord> {
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

    /// Checks a request's basic-auth credentials against the account's backup keys (the
    /// basic-auth user names the key) and the account's status. Soft-deleted accounts keep
    /// their keys (restore brings access back) but are refused, as are suspended ones.
    pub async fn open_vault(
        &self,
        tenant: &TenantId,
        user: &UserId,
        key_user: &str,
        secret: &BackupSecret,
        unit: QuotaUnit,
    ) -> Result<std::result::Result<VaultCtx, VaultDenied>> {
        let Some(key) = self.store.backup_key(tenant, user, key_user).await? else {
            return Ok(Err(VaultDenied::Unauthenticated));
        };
        if !key.hash.ct_eq(&secret.hash()) {
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
        let quota_bytes = u64::from(account.quota_gb.get())
            .checked_mul(unit.0)
            .and_then(ByteCount::new)
            .ok_or_else(|| {
                Error::Internal(format!(
                    "quota of {} GB in bytes overflows",
                    account.quota_gb
                ))
            })?;
        Ok(Ok(VaultCtx {
            tenant: tenant.clone(),
            user: user.clone(),
            quota_gb: account.quota_gb,
            quota_bytes,
            key_use_due: crate::backup_key::key_use_due(key.last_used_at, self.clock.now())
                .then_some(key.key_user),
        }))
    }

    /// Charges an upload's declared length against the account's quota before its body is
    /// read. Refused when the length is above what its kind may be (nothing is charged)
    /// or when the charge would take the account past its quota, plus
    /// [`LOCK_ALLOWANCE_BYTES`] for a lock file. Concurrent uploads are charged
    /// atomically, so they cannot overshoot together. Returns the charge, to be given back
    /// with [`Services::release_vault_charge`] if the upload fails or confirmed with
    /// [`Services::confirm_upload`] when it succeeds. The charge also counts the bytes
    /// towards the account's last 24 hours (`crate::freshness`), in the same statement.
    pub async fn reserve_vault_bytes(
        &self,
        ctx: &VaultCtx,
        declared: u64,
        kind: UploadKind,
    ) -> Result<std::result::Result<UploadCharge, UploadRefused>> {
        let max = kind.max_bytes();
        let Some(bytes) = ByteCount::new(declared).filter(|_| declared <= max) else {
            return Ok(Err(UploadRefused::TooLarge { max }));
        };
        let limit = match kind {
            UploadKind::Object => Some(ctx.quota_bytes),
            UploadKind::Lock => ByteCount::new(LOCK_ALLOWANCE_BYTES)
                .and_then(|allowance| ctx.quota_bytes.checked_add(allowance)),
        };
        let Some(limit) = limit else {
            return Err(Error::Internal(
                "quota plus lock allowance overflows".into(),
            ));
        };
        // A lock is written by every restic command, reads included: not backup data.
        let hour = match kind {
            UploadKind::Object => Some(crate::freshness::upload_hour(self.clock.now())),
            UploadKind::Lock => None,
        };
        let charged = self
            .store
            .charge_upload(&ctx.tenant, &ctx.user, bytes, limit, hour)
            .await?;
        Ok(match charged {
            Some(last_upload_at) => Ok(UploadCharge {
                bytes,
                hour,
                last_upload_at,
            }),
            None => Err(UploadRefused::QuotaExceeded),
        })
    }

    /// Gives back a charge made by [`Services::reserve_vault_bytes`] (the upload failed).
    /// `false` when the account's counter held less than the charge: it has drifted (a
    /// recount ran during the upload), and is left as it is for the next recount rather
    /// than clamped.
    pub async fn release_vault_charge(
        &self,
        ctx: &VaultCtx,
        charge: &UploadCharge,
    ) -> Result<bool> {
        self.store
            .refund_upload(&ctx.tenant, &ctx.user, charge.bytes, charge.hour)
            .await
    }

    /// Records a charged upload's success for the account's freshness: always for a
    /// snapshot, otherwise only when the last recorded upload is older than
    /// [`crate::freshness::UPLOAD_TIME_GRANULARITY`] (most uploads of a backup then need
    /// no write beyond their charge).
    pub async fn confirm_upload(
        &self,
        ctx: &VaultCtx,
        charge: &UploadCharge,
        snapshot: bool,
    ) -> Result<()> {
        let now = self.clock.now();
        let recent = charge
            .last_upload_at
            .is_some_and(|t| now - t < crate::freshness::UPLOAD_TIME_GRANULARITY);
        if snapshot || !recent {
            self.store
                .record_upload(&ctx.tenant, &ctx.user, now, snapshot)
                .await?;
        }
        Ok(())
    }

    /// Gives back a deleted object's bytes; `false` as for
    /// [`Services::release_vault_charge`].
    pub async fn release_vault_bytes(&self, ctx: &VaultCtx, bytes: u64) -> Result<bool> {
        let bytes = ByteCount::new(bytes)
            .ok_or_else(|| Error::Internal(format!("object size {bytes} overflows")))?;
        self.store
            .refund_used_bytes(&ctx.tenant, &ctx.user, bytes)
            .await
    }

    /// Sets an account's used space to what its repository holds (`actual`, measured by
    /// the caller), e.g. after a crash left an interrupted upload's charge counted. Run it
    /// while the account is idle: an upload in flight would be counted twice or not at
    /// all (a charge or give-back between the measurement and the correction makes the
    /// correction fail with `VersionMismatch` when it would take the counter below 0).
    /// Returns the account and the correction applied.
    pub async fn recount_vault(
        &self,
        _op: &crate::auth::OperatorCtx,
        tenant: &TenantId,
        user_name: &str,
        actual: impl AsyncFnOnce(&UserRecord) -> Result<u64>,
    ) -> Result<(UserRecord, i64)> {
        let account = self.find_account(tenant, user_name).await?;
        let bytes = actual(&account).await?;
        let actual = ByteCount::new(bytes)
            .ok_or_else(|| Error::Internal(format!("repository size {bytes} overflows")))?;
        let delta = actual
            .get()
            .checked_sub(account.used_bytes)
            .ok_or_else(|| Error::Internal("used space out of range".into()))?;
        let change = ByteCount::new(delta.unsigned_abs())
            .ok_or_else(|| Error::Internal("used space out of range".into()))?;
        let applied = match delta.signum() {
            0 => true,
            1 => {
                self.store
                    .charge_used_bytes(tenant, &account.id, change, None)
                    .await?
            }
            _ => {
                self.store
                    .refund_used_bytes(tenant, &account.id, change)
                    .await?
            }
        };
        if !applied {
            return Err(Error::VersionMismatch);
        }
        Ok((account, delta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_are_checked_conversions() {
        let max = i64::MAX as u64;
        assert_eq!(ByteCount::new(max).map(ByteCount::get), Some(i64::MAX));
        assert_eq!(ByteCount::new(max + 1), None);
        assert_eq!(ByteCount::new(u64::MAX), None);
        let one = ByteCount::new(1).unwrap();
        assert_eq!(ByteCount::new(max).unwrap().checked_add(one), None);
    }
}
