//! What the administrator dashboard reads and changes: the SCIM settings page, the backup
//! accounts list (server-side search and keyset paging), an account's page with its
//! provisioning history, restore, and the provisioning activity log with per-day counts.
//! Every method takes the `DashboardCtx` of a signed-in user and stays inside its tenant;
//! changes require the administrator role.

use crate::audit::{Action, AuditEvent, RequestMeta};
use crate::auth::{DashboardCtx, ScimToken};
use crate::ids::{fold_case, QuotaGb, TokenId, UserId};
use crate::query::Page;
use crate::service::{Authority, Services};
use crate::store::{Role, SettingsChange};
use crate::tenant::{Tenant, TokenInfo};
use crate::user::{AccountStatus, UserRecord};
use crate::{Error, Result};
use time::{Date, Duration, OffsetDateTime};

/// Accounts per page on `/accounts`.
pub const ACCOUNTS_PER_PAGE: u32 = 50;
/// Events per page on `/activity` and on an account's page.
pub const EVENTS_PER_PAGE: u32 = 50;
/// Days shown in the activity chart.
pub const CHART_DAYS: u32 = 14;

/// A position in the accounts list: accounts are ordered by a key (see [`AccountOrder`]),
/// then id; `key` is the cursor account's.
#[derive(Debug, Clone, PartialEq)]
pub enum AccountCursor {
    After { key: String, id: UserId },
    Before { key: String, id: UserId },
}

/// The order of the accounts list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AccountOrder {
    /// By folded userName (the key is `user_name_fold`).
    #[default]
    Name,
    /// By last snapshot, never-backed-up accounts first, then oldest first (the key is
    /// [`last_backup_key`]).
    LastBackup,
}

/// The sort key of an account's last snapshot: its canonical timestamp (fixed width, so
/// text order is time order), or the empty string (first) for never.
pub fn last_backup_key(at: Option<OffsetDateTime>) -> String {
    at.map(crate::clock::format_ts).unwrap_or_default()
}

/// What the store is asked for on `/accounts`.
#[derive(Debug, Clone, Default)]
pub struct AccountQuery {
    /// Folded search text: prefix of userName, email or display name, or an exact id.
    pub search: Option<String>,
    pub status: Option<AccountStatus>,
    pub cursor: Option<AccountCursor>,
    /// The store returns up to `limit + 1` items, in list order, so the caller can tell
    /// whether there is more in the direction of travel.
    pub limit: u32,
    pub order: AccountOrder,
    /// Only accounts with no snapshot at all or none since this time (stale backups).
    pub snapshot_before: Option<OffsetDateTime>,
}

/// Filters of the activity log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActivityFilter {
    /// Events about this account (by id).
    pub target_id: Option<String>,
    /// Events about accounts with this userName (case-insensitive), purged ones included.
    pub account_name: Option<String>,
    pub action: Option<Action>,
    /// Events whose client User-Agent is exactly this.
    pub client: Option<String>,
}

/// Events of one action on one day (UTC), for the activity chart.
#[derive(Debug, Clone, PartialEq)]
pub struct DayCount {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub action: String,
    pub count: u64,
}

/// The SCIM settings page.
#[derive(Debug, Clone)]
pub struct ScimSettingsView {
    pub tenant: Tenant,
    pub tenant_url: String,
    pub token: Option<TokenInfo>,
}

/// The outcome of "Generate".
#[derive(Debug)]
pub enum TokenGeneration {
    /// A new token, to be shown this once.
    Generated(ScimToken, TokenInfo),
    /// The token the form was generated against is no longer the current one (a repeated
    /// submission, or another administrator): nothing was changed.
    Stale,
}

/// One page of `/accounts`.
#[derive(Debug, Clone)]
pub struct AccountsPage {
    pub total: u64,
    pub items: Vec<UserRecord>,
    /// Cursor ids for the neighbouring pages.
    pub prev: Option<UserId>,
    pub next: Option<UserId>,
    /// Each item's backup freshness, in the order of `items`.
    pub freshness: Vec<crate::freshness::Freshness>,
    /// The tenant's stale threshold, and the time before which a last snapshot is stale.
    pub stale_days: crate::freshness::StaleDays,
    pub stale_cutoff: OffsetDateTime,
}

/// How `/accounts` was asked to page.
#[derive(Debug, Clone, Default)]
pub struct AccountsRequest {
    pub search: Option<String>,
    pub status: Option<AccountStatus>,
    pub after: Option<UserId>,
    pub before: Option<UserId>,
    pub order: AccountOrder,
    /// "No backup for more than N days".
    pub stale_days: Option<crate::freshness::StaleDays>,
}

pub(crate) fn require_admin(ctx: &DashboardCtx) -> Result<()> {
    if ctx.role() == Role::Administrator {
        Ok(())
    } else {
        Err(Error::Forbidden)
    }
}

/// The provisioning actions the chart and the activity filter offer.
pub fn is_provisioning(action: &str) -> bool {
    action.starts_with("user_")
}

impl Services {
    // --- Settings → SCIM User Management ------------------------------------------------

    pub async fn scim_settings(&self, ctx: &DashboardCtx) -> Result<ScimSettingsView> {
        require_admin(ctx)?;
        let tenant = self.tenant(ctx.tenant_id()).await?;
        let token = self.store.token_info(ctx.tenant_id()).await?;
        Ok(ScimSettingsView {
            tenant_url: self.tenant_url(&tenant.id),
            tenant,
            token,
        })
    }

    /// "Save": applies the checkbox and the Account Size (only what changed is audited).
    pub async fn save_scim_settings(
        &self,
        ctx: &DashboardCtx,
        enabled: bool,
        account_size: QuotaGb,
        meta: &RequestMeta,
    ) -> Result<Tenant> {
        require_admin(ctx)?;
        let change = SettingsChange {
            scim_enabled: Some(enabled),
            account_size_gb: Some(account_size),
            max_account_size_gb: None,
            stale_days: None,
        };
        self.update_settings(Authority::Dashboard(ctx), ctx.tenant_id(), change, meta)
            .await
    }

    /// "Generate": a new token, if the current token is still `expected` (`None`: no
    /// token yet). The check makes a resubmitted form harmless: it neither cuts off the
    /// token it already generated nor shows any token again.
    pub async fn generate_scim_token(
        &self,
        ctx: &DashboardCtx,
        expected: Option<&TokenId>,
        meta: &RequestMeta,
    ) -> Result<TokenGeneration> {
        require_admin(ctx)?;
        let current = self.store.token_info(ctx.tenant_id()).await?;
        if current.as_ref().map(|t| &t.id) != expected {
            return Ok(TokenGeneration::Stale);
        }
        let (token, info) = self
            .generate_token(Authority::Dashboard(ctx), ctx.tenant_id(), meta)
            .await?;
        Ok(TokenGeneration::Generated(token, info))
    }

    // --- Backup Accounts -------------------------------------------------------------------

    pub async fn accounts(
        &self,
        ctx: &DashboardCtx,
        req: &AccountsRequest,
    ) -> Result<AccountsPage> {
        let tenant = ctx.tenant_id();
        let search = req
            .search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| fold_case(&s.chars().take(256).collect::<String>()));
        let (cursor_id, after) = match (&req.after, &req.before) {
            (Some(id), _) => (Some(id), true),
            (None, Some(id)) => (Some(id), false),
            (None, None) => (None, true),
        };
        let mut cursor = None;
        if let Some(id) = cursor_id {
            if let Some(u) = self.store.get_user_any(tenant, id).await? {
                let key = match req.order {
                    AccountOrder::Name => u.user_name.folded(),
                    AccountOrder::LastBackup => {
                        let f = self
                            .freshness_of(tenant, std::slice::from_ref(&u.id))
                            .await?;
                        last_backup_key(f.first().and_then(|(_, f)| f.last_snapshot_at))
                    }
                };
                let id = u.id;
                cursor = Some(if after {
                    AccountCursor::After { key, id }
                } else {
                    AccountCursor::Before { key, id }
                });
            }
        }
        let stale_days = self.tenant(tenant).await?.stale_days;
        let stale_cutoff = stale_days.cutoff(self.clock.now());
        let query = AccountQuery {
            search,
            status: req.status,
            cursor: cursor.clone(),
            limit: ACCOUNTS_PER_PAGE,
            order: req.order,
            snapshot_before: req.stale_days.map(|d| d.cutoff(self.clock.now())),
        };
        let Page { total, mut items } = self.store.list_accounts(tenant, &query).await?;
        let more = items.len() > ACCOUNTS_PER_PAGE as usize;
        let (has_prev, has_next) = match cursor {
            None => (false, more),
            Some(AccountCursor::After { .. }) => {
                items.truncate(ACCOUNTS_PER_PAGE as usize);
                (true, more)
            }
            Some(AccountCursor::Before { .. }) => {
                // The store returned the rows nearest the cursor; drop the extra one at the
                // far (first) end.
                if more {
                    items.remove(0);
                }
                (more, true)
            }
        };
        items.truncate(ACCOUNTS_PER_PAGE as usize);
        let ids: Vec<UserId> = items.iter().map(|u| u.id.clone()).collect();
        let mut found = self.freshness_of(tenant, &ids).await?;
        let freshness = items
            .iter()
            .map(|u| {
                found
                    .iter()
                    .position(|(id, _)| *id == u.id)
                    .map(|i| found.swap_remove(i).1)
                    .unwrap_or_default()
            })
            .collect();
        Ok(AccountsPage {
            freshness,
            stale_days,
            stale_cutoff,
            total,
            prev: has_prev
                .then(|| items.first().map(|u| u.id.clone()))
                .flatten(),
            next: has_next
                .then(|| items.last().map(|u| u.id.clone()))
                .flatten(),
            items,
        })
    }

    /// An account (soft-deleted ones included) and its history, newest first.
    pub async fn account(
        &self,
        ctx: &DashboardCtx,
        id: &str,
    ) -> Result<(UserRecord, Vec<AuditEvent>)> {
        let id = UserId::parse(id).ok_or(Error::NotFound("account"))?;
        let user = self
            .store
            .get_user_any(ctx.tenant_id(), &id)
            .await?
            .ok_or(Error::NotFound("account"))?;
        let filter = ActivityFilter {
            target_id: Some(id.to_string()),
            ..Default::default()
        };
        let events = self
            .store
            .list_activity(ctx.tenant_id(), &filter, None, 200)
            .await?;
        Ok((user, events))
    }

    /// "Restore" on an account's page: brings back this soft-deleted account.
    pub async fn restore_account(
        &self,
        ctx: &DashboardCtx,
        id: &str,
        meta: &RequestMeta,
    ) -> Result<UserRecord> {
        require_admin(ctx)?;
        let id = UserId::parse(id).ok_or(Error::NotFound("account"))?;
        let user = self
            .store
            .get_user_any(ctx.tenant_id(), &id)
            .await?
            .ok_or(Error::NotFound("account"))?;
        if user.deleted_at.is_none() {
            return Err(Error::Invalid {
                field: "account",
                reason: "this account is not deleted".into(),
            });
        }
        // The store restores the most recently deleted account of a userName; make sure
        // that is this one rather than restoring a different account.
        let newer = AccountQuery {
            search: Some(user.user_name.folded()),
            status: Some(AccountStatus::Deleted),
            limit: 100,
            ..AccountQuery::default()
        };
        let newest = self
            .store
            .list_accounts(ctx.tenant_id(), &newer)
            .await?
            .items
            .into_iter()
            .filter(|u| u.user_name == user.user_name)
            .max_by_key(|u| u.deleted_at);
        if newest.map(|u| u.id) != Some(user.id.clone()) {
            return Err(Error::Invalid {
                field: "account",
                reason:
                    "a more recently deleted account has the same user name; restore that one first"
                        .into(),
            });
        }
        self.restore_user(
            Authority::Dashboard(ctx),
            ctx.tenant_id(),
            user.user_name.as_str(),
            meta,
        )
        .await
    }

    // --- Provisioning activity ---------------------------------------------------------------

    /// One page of the audit log, newest first, and the cursor of the next (older) page.
    pub async fn activity(
        &self,
        ctx: &DashboardCtx,
        filter: &ActivityFilter,
        before_id: Option<i64>,
    ) -> Result<(Vec<AuditEvent>, Option<i64>)> {
        let mut events = self
            .store
            .list_activity(ctx.tenant_id(), filter, before_id, EVENTS_PER_PAGE + 1)
            .await?;
        let next = if events.len() > EVENTS_PER_PAGE as usize {
            events.truncate(EVENTS_PER_PAGE as usize);
            events.last().map(|e| e.id)
        } else {
            None
        };
        Ok((events, next))
    }

    /// Events per day and action over the last `CHART_DAYS` days (UTC), today included.
    /// Returns the first day and the counts.
    pub async fn activity_per_day(
        &self,
        ctx: &DashboardCtx,
        filter: &ActivityFilter,
    ) -> Result<(Date, Vec<DayCount>)> {
        let today = self.clock.now().to_offset(time::UtcOffset::UTC).date();
        let first = today - Duration::days(i64::from(CHART_DAYS) - 1);
        let since = OffsetDateTime::new_utc(first, time::Time::MIDNIGHT);
        let counts = self
            .store
            .activity_per_day(ctx.tenant_id(), filter, since)
            .await?;
        Ok((first, counts))
    }

    /// The client User-Agents seen recently, for the activity filter.
    pub async fn activity_clients(&self, ctx: &DashboardCtx) -> Result<Vec<String>> {
        self.store.activity_clients(ctx.tenant_id()).await
    }
}
