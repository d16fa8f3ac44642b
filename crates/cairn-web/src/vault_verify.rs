//! Repository health at the edge (see `cairn_vault::verify` and
//! `cairn_core::verification`): one account's check, recorded on the account, shared by
//! `cairn vault verify` (in the foreground) and the account page's "Verify now" (in the
//! background, bounded).

use cairn_core::service::Services;
use cairn_core::user::UserRecord;
use cairn_core::verification::{BadObject, VaultVerification};
use cairn_core::Error;
use cairn_vault::verify::{verify, RateLimit, Verified};
use cairn_vault::{Vault, VaultError};
use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};
use tokio::sync::Semaphore;

/// The read rate of a check when none is given: modest, so that a check of a large
/// repository leaves the disk to the backups it protects.
pub const DEFAULT_MIB_PER_SEC: u64 = 50;

/// Background checks that may run at once in this process; more are refused until one
/// ends (each holds a stream from the storage and a rate of reads).
pub const MAX_BACKGROUND: usize = 2;

/// Checks one account's repository at `bytes_per_sec` (`None`: unlimited) and records
/// the result on the account. A repository not created yet has nothing to check: it
/// verifies clean with no objects.
pub async fn verify_account(
    svc: &Services,
    vault: &Vault,
    account: &UserRecord,
    bytes_per_sec: Option<u64>,
) -> cairn_core::Result<VaultVerification> {
    let repo = vault.repo(account.tenant_id.as_str(), account.id.as_str());
    let mut limit = RateLimit::new(bytes_per_sec);
    let found = match verify(&repo, &mut limit).await {
        Ok(v) => v,
        Err(VaultError::NotFound) => Verified::default(),
        Err(e) => return Err(Error::Internal(format!("checking the repository: {e}"))),
    };
    let mut bad: Vec<BadObject> = found
        .bad
        .into_iter()
        .map(|object| BadObject {
            object,
            reason: "mismatch".into(),
        })
        .collect();
    bad.extend(found.unreadable.into_iter().map(|(object, e)| BadObject {
        object,
        reason: format!("unreadable: {e}"),
    }));
    let v = VaultVerification {
        user_id: account.id.clone(),
        verified_at: svc.clock.now(),
        objects: found.objects,
        bytes: found.bytes,
        bad_count: bad.len() as u64,
        bad,
    };
    svc.record_verification(&account.tenant_id, v.clone())
        .await?;
    Ok(v)
}

/// Accounts (`tenant/id`) whose background check is running.
pub(crate) static RUNNING: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);
pub(crate) static SLOTS: Semaphore = Semaphore::const_new(MAX_BACKGROUND);

/// Why a background check did not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStarted {
    /// A check of this account is running already.
    Running,
    /// [`MAX_BACKGROUND`] checks are running.
    Busy,
}

pub(crate) fn key(account: &UserRecord) -> String {
    format!("{}/{}", account.tenant_id, account.id)
}

/// Whether a background check of the account is running.
pub fn is_running(account: &UserRecord) -> bool {
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&key(account))
}

/// Starts a check of the account on a tokio task at [`DEFAULT_MIB_PER_SEC`]; at most one
/// per account and [`MAX_BACKGROUND`] in all.
pub fn start_background(
    svc: Arc<Services>,
    vault: Vault,
    account: UserRecord,
) -> Result<(), NotStarted> {
    let k = key(&account);
    let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    if running.contains(&k) {
        return Err(NotStarted::Running);
    }
    let Ok(slot) = SLOTS.try_acquire() else {
        return Err(NotStarted::Busy);
    };
    running.insert(k.clone());
    drop(running);
    tokio::spawn(async move {
        let _slot = slot;
        // Leaves the set however the task ends (a panic included).
        struct Done(String);
        impl Drop for Done {
            fn drop(&mut self) {
                RUNNING
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&self.0);
            }
        }
        let _done = Done(k);
        let rate = Some(DEFAULT_MIB_PER_SEC << 20);
        if let Err(e) = verify_account(&svc, &vault, &account, rate).await {
            tracing::warn!(error = %e, account = %account.id, "repository check failed");
        }
    });
    Ok(())
}
