//! Backup freshness: when each account last wrote a snapshot and last uploaded anything,
//! and how many bytes it wrote in the last 24 hours, kept by the store as uploads happen
//! (never by scanning repositories); and which accounts are stale ("no backup for more
//! than N days", a per-tenant setting).

use crate::dashboard::{last_backup_key, AccountCursor, AccountOrder, AccountQuery};
use crate::ids::{TenantId, UserId};
use crate::query::Page;
use crate::service::Services;
use crate::user::{AccountStatus, UserRecord};
use crate::{Error, Result};
use serde::Serialize;
use time::{Duration, OffsetDateTime};

/// What "stale" means for a tenant: no snapshot written for more than this many days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StaleDays(u16);

impl StaleDays {
    pub const DEFAULT: StaleDays = StaleDays(7);
    /// Ten years: beyond it "stale" means nothing, and the cutoff stays far from the
    /// limits of the date arithmetic.
    pub const MAX: u16 = 3650;

    pub fn new(days: i64) -> Result<StaleDays> {
        u16::try_from(days)
            .ok()
            .filter(|d| (1..=Self::MAX).contains(d))
            .map(StaleDays)
            .ok_or_else(|| Error::Invalid {
                field: "staleDays",
                reason: format!("must be a whole number of days from 1 to {}", Self::MAX),
            })
    }
    pub fn get(self) -> u16 {
        self.0
    }
    /// The time before which an account's last snapshot makes it stale at `now`.
    pub fn cutoff(self, now: OffsetDateTime) -> OffsetDateTime {
        now - Duration::days(i64::from(self.0))
    }
}

impl Default for StaleDays {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl std::fmt::Display for StaleDays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The uploads are counted per hour (UTC, hours since the Unix epoch): "the last 24
/// hours" is the current hour and the 23 before it, so a figure is exact to the hour
/// and the store keeps at most a day of rows per account (the purge drops older ones).
pub fn upload_hour(at: OffsetDateTime) -> i64 {
    at.unix_timestamp().div_euclid(3600)
}

/// The first hour inside the 24-hour window at `now`.
pub fn window_start_hour(now: OffsetDateTime) -> i64 {
    upload_hour(now) - 23
}

/// A successful upload's time is written at most once a minute per account (and always
/// for a snapshot): the charge already reads the account's last upload time, so most of
/// a backup's uploads need no write beyond the charge.
pub const UPLOAD_TIME_GRANULARITY: Duration = Duration::minutes(1);

/// An account's backup freshness.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Freshness {
    /// The last snapshot written (a successful upload into `snapshots/`); `None`: never.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_snapshot_at: Option<OffsetDateTime>,
    /// The last successful upload of any object (to the minute, see
    /// [`UPLOAD_TIME_GRANULARITY`]).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_upload_at: Option<OffsetDateTime>,
    /// Bytes of successful uploads in the current hour and the 23 before it.
    pub bytes_24h: i64,
}

impl Freshness {
    /// No snapshot at all, or the last one before `cutoff`.
    pub fn is_stale(&self, cutoff: OffsetDateTime) -> bool {
        self.last_snapshot_at.is_none_or(|t| t < cutoff)
    }
}

/// An account with its backup freshness (`cairn accounts`).
#[derive(Debug, Clone, Serialize)]
pub struct AccountFreshness {
    pub account: UserRecord,
    pub freshness: Freshness,
}

/// Most accounts `backup_freshness` reads per store query.
const PAGE: u32 = 500;

impl Services {
    /// The freshness of these accounts of the tenant (unknown ids are left out).
    pub async fn freshness_of(
        &self,
        tenant: &TenantId,
        users: &[UserId],
    ) -> Result<Vec<(UserId, Freshness)>> {
        let since = window_start_hour(self.clock.now());
        self.store.account_freshness(tenant, users, since).await
    }

    /// The tenant's accounts with their freshness: all of them by userName, or with
    /// `stale`, the active ones with no snapshot for more than that many days,
    /// never-backed-up ones first, then oldest backup first.
    pub async fn backup_freshness(
        &self,
        _op: &crate::auth::OperatorCtx,
        tenant: &TenantId,
        stale: Option<StaleDays>,
    ) -> Result<Vec<AccountFreshness>> {
        self.tenant(tenant).await?;
        let mut query = match stale {
            Some(days) => AccountQuery {
                status: Some(AccountStatus::Active),
                order: AccountOrder::LastBackup,
                snapshot_before: Some(days.cutoff(self.clock.now())),
                ..AccountQuery::default()
            },
            None => AccountQuery::default(),
        };
        query.limit = PAGE;
        let mut out = Vec::new();
        loop {
            let Page { mut items, .. } = self.store.list_accounts(tenant, &query).await?;
            let more = items.len() > PAGE as usize;
            items.truncate(PAGE as usize);
            let ids: Vec<UserId> = items.iter().map(|u| u.id.clone()).collect();
            let mut found = self.freshness_of(tenant, &ids).await?;
            let Some(last) = items.last() else { break };
            let key = match query.order {
                AccountOrder::Name => last.user_name.folded(),
                AccountOrder::LastBackup => last_backup_key(
                    found
                        .iter()
                        .find(|(id, _)| *id == last.id)
                        .and_then(|(_, f)| f.last_snapshot_at),
                ),
            };
            query.cursor = Some(AccountCursor::After {
                key,
                id: last.id.clone(),
            });
            for account in items {
                let freshness = found
                    .iter()
                    .position(|(id, _)| *id == account.id)
                    .map(|i| found.swap_remove(i).1)
                    .unwrap_or_default();
                out.push(AccountFreshness { account, freshness });
            }
            if !more {
                break;
            }
        }
        Ok(out)
    }

    /// Sets what "stale" means for the tenant (Settings, administrators; or the
    /// operator's `cairn vault stale-days`).
    pub async fn set_stale_days(
        &self,
        who: crate::service::Authority<'_>,
        tenant: &TenantId,
        days: StaleDays,
        meta: &crate::audit::RequestMeta,
    ) -> Result<crate::tenant::Tenant> {
        let change = crate::store::SettingsChange {
            stale_days: Some(days),
            ..Default::default()
        };
        self.update_settings(who, tenant, change, meta).await
    }

    /// Per tenant (every tenant, zero included), how many active accounts are stale by
    /// the tenant's own setting, for `/metrics`.
    pub async fn stale_account_counts(&self) -> Result<Vec<(TenantId, u64)>> {
        self.store.stale_account_counts(self.clock.now()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_days_are_bounded() {
        assert!(StaleDays::new(0).is_err());
        assert!(StaleDays::new(-1).is_err());
        assert!(StaleDays::new(3651).is_err());
        assert_eq!(StaleDays::new(3650).unwrap().get(), 3650);
        assert_eq!(StaleDays::default().get(), 7);
    }

    #[test]
    fn the_window_is_the_current_hour_and_the_23_before() {
        let t = OffsetDateTime::from_unix_timestamp(100 * 3600 + 59).unwrap();
        assert_eq!(upload_hour(t), 100);
        assert_eq!(window_start_hour(t), 77);
        let before_epoch = OffsetDateTime::from_unix_timestamp(-1).unwrap();
        assert_eq!(upload_hour(before_epoch), -1);
    }

    #[test]
    fn never_backed_up_is_stale() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let cutoff = StaleDays::DEFAULT.cutoff(now);
        assert!(Freshness::default().is_stale(cutoff));
        let recent = Freshness {
            last_snapshot_at: Some(now - Duration::days(6)),
            ..Freshness::default()
        };
        assert!(!recent.is_stale(cutoff));
        let old = Freshness {
            last_snapshot_at: Some(now - Duration::days(8)),
            ..Freshness::default()
        };
        assert!(old.is_stale(cutoff));
    }
}
