//! The storage interface: one small trait per aggregate, combined into [`Store`]. Every
//! method takes the tenant first, except where the tenant is not known yet (sessions and
//! sign-in throttling, found by hashed keys; dashboard users, found by email; the purge,
//! which runs across tenants). Every implementation keeps each tenant's rows apart and
//! writes the audit entry in the same transaction as the change it describes.
//!
//! Callers import the traits with `use cairn_core::store::*;`.

use crate::audit::{AuditDraft, AuditEvent, AuditQuery};
use crate::auth::{PasswordHash, TokenHash};
use crate::backup_key::{BackupKeyRecord, KeyName};
use crate::dashboard::{AccountQuery, ActivityFilter, DayCount};
use crate::group::{GroupData, GroupRecord, GroupRef, GroupSummary, MemberChange};
use crate::ids::{DashboardUserId, GroupId, QuotaGb, TenantId, TokenId, UserId, UserName};
use crate::mail::{MailOutcome, OutboxMail, WelcomeSettings};
use crate::oidc::{OidcConfig, OidcRequest};
use crate::people::{DashboardUserEntry, LinkRecord, SecondFactor, UserChange};
use crate::query::{ListQuery, Page};
use crate::requests::{RequestEntry, RequestFilter, TokenHealth};
use crate::session::{SessionHash, SessionRecord, ThrottleRule};
use crate::sso::{AccountSessionRecord, PrincipalKind, SamlIdpConfig, SubjectPin};
use crate::tenant::{Tenant, TokenInfo};
use crate::user::{DocJson, UserData, UserRecord};
use crate::vault::ByteCount;
use crate::{Error, Result};
use async_trait::async_trait;
use time::OffsetDateTime;

/// The SCIM settings of a tenant plus the hashes of its live tokens: what authenticating
/// one SCIM request needs, read in one go.
#[derive(Debug, Clone)]
pub struct ScimAuthState {
    pub tenant: Tenant,
    pub tokens: Vec<(TokenId, TokenHash)>,
}

/// A dashboard account (not a backup account).
#[derive(Debug, Clone)]
pub struct DashboardUser {
    pub id: DashboardUserId,
    pub tenant_id: TenantId,
    pub email: String,
    pub role: Role,
    pub password_hash: PasswordHash,
    pub created_at: OffsetDateTime,
    /// Disabled by an administrator: no sign-in, no session.
    pub disabled: bool,
    /// A TOTP second factor is on (enrolment confirmed).
    pub second_factor: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Administrator,
    Viewer,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "administrator" => Some(Role::Administrator),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Administrator => "administrator",
            Role::Viewer => "viewer",
        }
    }
}

/// A change to a tenant's SCIM settings.
#[derive(Debug, Clone, Default)]
pub struct SettingsChange {
    pub scim_enabled: Option<bool>,
    pub account_size_gb: Option<QuotaGb>,
    /// The operator's cap: `Some(None)` removes it.
    pub max_account_size_gb: Option<Option<QuotaGb>>,
    pub stale_days: Option<crate::freshness::StaleDays>,
}

/// A resource whose changes are guarded by a version (its SCIM ETag).
pub trait Versioned {
    fn version(&self) -> i64;
}

impl Versioned for GroupRecord {
    fn version(&self) -> i64 {
        self.version
    }
}

impl<D> Versioned for UserRecord<D> {
    fn version(&self) -> i64 {
        self.version
    }
}

/// Whether a change guarded by `expected` (an `If-Match` version, or none) may go ahead
/// on what the store found (`None`: not found): the resource, or why not. The same
/// decision on every backend.
pub fn check_version<T: Versioned>(
    what: &'static str,
    found: Option<T>,
    expected: Option<i64>,
) -> Result<T> {
    let current = found.ok_or(Error::NotFound(what))?;
    if expected.is_some_and(|v| v != current.version()) {
        return Err(Error::VersionMismatch);
    }
    Ok(current)
}

/// Why a write guarded in its statement (`… AND version = ?` on a live row) changed no
/// row, as the store reads the resource afterwards: still there, so another change came
/// first; or gone.
pub fn missed_write(what: &'static str, still_there: bool) -> Error {
    if still_there {
        Error::VersionMismatch
    } else {
        Error::NotFound(what)
    }
}

/// Tenants and their SCIM settings.
#[async_trait]
pub trait TenantStore: Send + Sync + 'static {
    async fn create_tenant(&self, tenant: &Tenant, audit: AuditDraft) -> Result<()>;
    async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<Tenant>>;
    async fn list_tenants(&self) -> Result<Vec<Tenant>>;
    /// Applies the change and writes one audit entry per entry in `audits`, atomically.
    async fn update_settings(
        &self,
        tenant: &TenantId,
        change: &SettingsChange,
        audits: Vec<AuditDraft>,
    ) -> Result<Tenant>;
}

/// SCIM API tokens, stored only as hashes.
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Stores a new token hash and revokes every earlier token of the tenant.
    async fn replace_token(
        &self,
        tenant: &TenantId,
        token: &TokenInfo,
        hash: &TokenHash,
        audit: AuditDraft,
    ) -> Result<()>;
    async fn scim_auth_state(&self, tenant: &TenantId) -> Result<Option<ScimAuthState>>;
    async fn token_info(&self, tenant: &TenantId) -> Result<Option<TokenInfo>>;
    async fn touch_token(
        &self,
        tenant: &TenantId,
        token: &TokenId,
        at: OffsetDateTime,
        user_agent: Option<&str>,
    ) -> Result<()>;
}

/// Backup accounts: the SCIM users, their soft deletion, restore and purge.
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Creates an account. A live account with the same folded userName yields
    /// `Error::Conflict { attribute: "userName" }`.
    async fn create_user(&self, user: &UserRecord, audit: AuditDraft) -> Result<()>;
    /// A live (not soft-deleted) account by id.
    async fn get_user(&self, tenant: &TenantId, id: &UserId) -> Result<Option<UserRecord>>;
    /// Any account by id, soft-deleted ones included (dashboard, restore).
    async fn get_user_any(&self, tenant: &TenantId, id: &UserId) -> Result<Option<UserRecord>>;
    async fn list_users(&self, tenant: &TenantId, query: &ListQuery) -> Result<Page<UserRecord>>;
    /// A live account and, with `with_groups`, its groups (the read-only `groups`
    /// attribute), read together: a GET is one trip to the database, not two. The
    /// document comes as stored (these reads only render it).
    async fn get_user_with_groups(
        &self,
        tenant: &TenantId,
        id: &UserId,
        with_groups: bool,
    ) -> Result<Option<(UserRecord<DocJson>, Vec<GroupRef>)>>;
    /// A page of live accounts and, with `with_groups`, their groups, read together.
    async fn list_users_with_groups(
        &self,
        tenant: &TenantId,
        query: &ListQuery,
        with_groups: bool,
    ) -> Result<(Page<UserRecord<DocJson>>, Vec<(UserId, GroupRef)>)>;
    /// Replaces the client-controlled attributes of a live account if its version is still
    /// `expected_version`; otherwise `Error::VersionMismatch`. Returns the new record.
    async fn update_user(
        &self,
        tenant: &TenantId,
        id: &UserId,
        expected_version: i64,
        data: &UserData,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<UserRecord>;
    /// Marks a live account deleted, to be purged at `purge_at`.
    async fn soft_delete_user(
        &self,
        tenant: &TenantId,
        id: &UserId,
        expected_version: Option<i64>,
        at: OffsetDateTime,
        purge_at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<()>;
    /// Brings back the most recently deleted account with this userName. A live account
    /// holding the userName yields `Error::Conflict`.
    async fn restore_user(
        &self,
        tenant: &TenantId,
        user_name: &UserName,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<UserRecord>;
    /// The first step of the retention purge: marks up to `limit` soft-deleted accounts
    /// whose retention window ended before `now` as being purged (from then on they
    /// cannot be restored) and returns them, oldest first. Accounts marked by an earlier
    /// run that did not finish them are returned again.
    async fn begin_purge(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<UserRecord>>;
    /// The last step, once the account's repository is gone: deletes an account marked
    /// by `begin_purge`, with `audits` in the same transaction. `false` when there is no
    /// such account (another instance finished it).
    async fn finish_purge(
        &self,
        tenant: &TenantId,
        id: &UserId,
        audits: Vec<AuditDraft>,
    ) -> Result<bool>;
    /// Accounts of the dashboard list, soft-deleted ones included (see `AccountQuery`).
    /// `total` counts all matches regardless of the cursor.
    async fn list_accounts(
        &self,
        tenant: &TenantId,
        query: &AccountQuery,
    ) -> Result<Page<UserRecord>>;
}

/// Groups, their members and their Account Size (see `crate::group`).
#[async_trait]
pub trait GroupStore: Send + Sync + 'static {
    /// Creates a group with these members, and the `display` a client sent for some of
    /// them (RFC 7643 §4.2 `members.display`; an account that is not a member is skipped),
    /// in one transaction. A group with the same folded displayName yields
    /// `Error::Conflict { attribute: "displayName" }`; a member that is not a live account
    /// of the tenant yields `Error::Invalid { field: "members" }`.
    async fn create_group(
        &self,
        group: &GroupRecord,
        members: &[UserId],
        displays: &[(UserId, String)],
        audit: AuditDraft,
    ) -> Result<()>;
    async fn get_group(&self, tenant: &TenantId, id: &GroupId) -> Result<Option<GroupRecord>>;
    /// The group whose displayName equals `name` ignoring letter case.
    async fn find_group_by_name(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<Option<GroupRecord>>;
    /// Groups matching the query; filters and sorts use the same `Filter` as users
    /// (`id`, `displayName`, `externalId`, `meta.created`, `meta.lastModified`).
    async fn list_groups(&self, tenant: &TenantId, query: &ListQuery) -> Result<Page<GroupRecord>>;
    /// The live (not soft-deleted) members of a group, ordered by id: all of them (no
    /// group comes near `u32::MAX` members).
    async fn group_members(&self, tenant: &TenantId, id: &GroupId) -> Result<Vec<UserId>> {
        self.group_members_up_to(tenant, id, u32::MAX).await
    }
    /// The first `limit` live members of a group by id (fewer when it has fewer).
    async fn group_members_up_to(
        &self,
        tenant: &TenantId,
        id: &GroupId,
        limit: u32,
    ) -> Result<Vec<UserId>>;
    /// The groups of each of these accounts (for the read-only `groups` attribute).
    async fn groups_of_users(
        &self,
        tenant: &TenantId,
        users: &[UserId],
    ) -> Result<Vec<(UserId, GroupRef)>>;
    /// Applies a change of attributes (if `data` is given) and of members, atomically. With
    /// `expected_version`, only if the group is still at that version
    /// (`Error::VersionMismatch`). Members to add must be live accounts of the tenant;
    /// removing a non-member is a no-op. Recomputes the quota of the accounts whose
    /// membership changed when the group has a size. Nothing changes (and nothing is
    /// audited) when neither the attributes nor any membership change. The audit entry's
    /// time is the change's time; the store adds the member counts and ids to it.
    /// `displays` are recorded on the memberships in the same transaction (as by
    /// [`GroupStore::create_group`]); they change neither the version nor the audit.
    #[allow(clippy::too_many_arguments)]
    async fn update_group(
        &self,
        tenant: &TenantId,
        id: &GroupId,
        expected_version: Option<i64>,
        data: Option<&GroupData>,
        members: &MemberChange,
        displays: &[(UserId, String)],
        audit: AuditDraft,
    ) -> Result<GroupRecord>;
    /// Deletes a group and its memberships (never the accounts), recomputing the quota of
    /// its members when it had a size.
    async fn delete_group(
        &self,
        tenant: &TenantId,
        id: &GroupId,
        expected_version: Option<i64>,
        audit: AuditDraft,
    ) -> Result<()>;
    /// Sets or clears a group's Account Size and recomputes its members' quotas.
    async fn set_group_size(
        &self,
        tenant: &TenantId,
        id: &GroupId,
        size: Option<QuotaGb>,
        audit: AuditDraft,
    ) -> Result<GroupRecord>;
    /// Groups by displayName with their live member counts, for the dashboard.
    async fn group_summaries(&self, tenant: &TenantId) -> Result<Vec<GroupSummary>>;
    /// The `display` values recorded for a group's members.
    async fn member_displays(
        &self,
        tenant: &TenantId,
        id: &GroupId,
    ) -> Result<std::collections::HashMap<UserId, String>>;
}

/// Dashboard identities: dashboard users, their sessions and sign-in throttling. Sessions
/// are found by the hash of their id before the tenant is known.
#[async_trait]
pub trait IdentityStore: Send + Sync + 'static {
    async fn create_dashboard_user(&self, user: &DashboardUser, audit: AuditDraft) -> Result<()>;
    async fn find_dashboard_user(&self, email: &str) -> Result<Option<DashboardUser>>;
    // Sessions are found by the hash of their id before the tenant is known.
    async fn create_session(&self, session: &SessionRecord) -> Result<()>;
    /// The session and its dashboard user.
    async fn get_session(&self, id: &SessionHash)
        -> Result<Option<(SessionRecord, DashboardUser)>>;
    async fn touch_session(&self, id: &SessionHash, at: OffsetDateTime) -> Result<()>;
    async fn delete_session(&self, id: &SessionHash) -> Result<()>;
    /// Deletes sessions past their absolute expiry (`now`) or idle since before
    /// `idle_before`, and sign-in failures older than `failures_before`.
    async fn delete_expired_sessions(
        &self,
        now: OffsetDateTime,
        idle_before: OffsetDateTime,
        failures_before: OffsetDateTime,
    ) -> Result<()>;
    /// Records one failed sign-in under each of the (hashed) throttle keys.
    async fn record_login_failure(&self, keys: &[[u8; 32]], at: OffsetDateTime) -> Result<()>;
    /// Failures under `key` since `since`: how many, and when the oldest of them was.
    async fn login_failures_since(
        &self,
        key: &[u8; 32],
        since: OffsetDateTime,
    ) -> Result<(u32, Option<OffsetDateTime>)>;
    async fn clear_login_failures(&self, key: &[u8; 32]) -> Result<()>;
    /// Charges one sign-in attempt atomically (across instances on PostgreSQL): reads the
    /// failures under every rule's key since `since`, asks [`ThrottleRule::verdict`], and
    /// only when every rule allows it records one failure under each key at `now`.
    /// Returns `Some(retry_after)` when a rule refused (nothing recorded).
    async fn charge_login_attempt(
        &self,
        rules: &[ThrottleRule],
        now: OffsetDateTime,
        since: OffsetDateTime,
    ) -> Result<Option<time::Duration>>;
    /// Takes back one failure recorded at `at` under each key (a charged attempt that
    /// succeeded).
    async fn credit_login_attempt(&self, keys: &[[u8; 32]], at: OffsetDateTime) -> Result<()>;

    // --- user administration, one-time links, second factor (see `crate::people`) ---

    /// The tenant's dashboard users, by email, with their last sign-in.
    async fn list_dashboard_users(&self, tenant: &TenantId) -> Result<Vec<DashboardUserEntry>>;
    async fn get_dashboard_user(
        &self,
        tenant: &TenantId,
        id: &DashboardUserId,
    ) -> Result<Option<DashboardUser>>;
    /// Creates a dashboard user without a password, with the link to set one.
    async fn invite_dashboard_user(
        &self,
        user: &DashboardUser,
        link: &LinkRecord,
        audit: AuditDraft,
    ) -> Result<()>;
    /// Applies `change` with its audit entry, ending the user's sessions when
    /// [`UserChange::ends_sessions`]. When [`UserChange::removes_active_admin`], the
    /// change is refused (`Error::Invalid`, [`crate::people::LAST_ADMINISTRATOR`]) unless
    /// another active administrator of the tenant remains, checked atomically with the
    /// change (concurrent changes on several instances cannot all pass).
    /// `Error::NotFound` for a user not in the tenant.
    async fn change_dashboard_user(
        &self,
        tenant: &TenantId,
        id: &DashboardUserId,
        change: &UserChange,
        audit: AuditDraft,
    ) -> Result<()>;
    /// Stores a one-time link (only its hash).
    async fn put_link(&self, link: &LinkRecord) -> Result<()>;
    /// The unused link with this hash that expires after `now`, with its user.
    async fn find_link(
        &self,
        hash: &[u8; 32],
        now: OffsetDateTime,
    ) -> Result<Option<(LinkRecord, DashboardUser)>>;
    /// Marks the link used if it is unused and unexpired at `now`; true exactly once.
    async fn consume_link(&self, hash: &[u8; 32], now: OffsetDateTime) -> Result<bool>;
    /// The user's TOTP secret and state, if enrolment has started.
    async fn second_factor(
        &self,
        tenant: &TenantId,
        user: &DashboardUserId,
    ) -> Result<Option<SecondFactor>>;
    /// Stores a pending (unconfirmed) TOTP secret; a confirmed one is left alone.
    async fn set_pending_totp(
        &self,
        tenant: &TenantId,
        user: &DashboardUserId,
        secret: &crate::totp::TotpSecret,
    ) -> Result<()>;
    /// Confirms the pending secret (its code matched `step`) and replaces the recovery
    /// codes with `recovery` (hashes), with the audit entry. False when no pending secret.
    async fn enable_totp(
        &self,
        tenant: &TenantId,
        user: &DashboardUserId,
        step: i64,
        recovery: &[[u8; 32]],
        now: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<bool>;
    /// Records `step` as the last used, only if it is later than the last used one
    /// (atomic): false for a replayed or older code.
    async fn use_totp_step(
        &self,
        tenant: &TenantId,
        user: &DashboardUserId,
        step: i64,
    ) -> Result<bool>;
    /// Marks the unused recovery code with this hash used (atomic, with the audit entry);
    /// false when there is none.
    async fn use_recovery_code(
        &self,
        tenant: &TenantId,
        user: &DashboardUserId,
        hash: &[u8; 32],
        now: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<bool>;
    /// Unused recovery codes left.
    async fn recovery_codes_left(&self, tenant: &TenantId, user: &DashboardUserId) -> Result<u32>;
    async fn second_factor_required(&self, tenant: &TenantId) -> Result<bool>;
    async fn set_second_factor_required(
        &self,
        tenant: &TenantId,
        required: bool,
        audit: AuditDraft,
    ) -> Result<()>;
}

/// The audit log: entries without a row change of their own, and every way of reading it.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Writes an audit entry that has no row change of its own (the vault purge).
    async fn record_audit(&self, audit: AuditDraft) -> Result<()>;
    /// Audit events matching `query`, newest first: the activity listing of
    /// [`AuditQuery::as_activity`], so that each backend has one way to list events.
    async fn list_audit(&self, tenant: &TenantId, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let (filter, limit) = query.as_activity();
        self.list_activity(tenant, &filter, None, limit).await
    }
    /// Audit events matching `filter`, newest first, with ids below `before_id`.
    async fn list_activity(
        &self,
        tenant: &TenantId,
        filter: &ActivityFilter,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>>;
    /// Events matching `filter` since `since`, counted per UTC day and action.
    async fn activity_per_day(
        &self,
        tenant: &TenantId,
        filter: &ActivityFilter,
        since: OffsetDateTime,
    ) -> Result<Vec<DayCount>>;
    /// Distinct client User-Agents among the tenant's recent events.
    async fn activity_clients(&self, tenant: &TenantId) -> Result<Vec<String>>;
}

/// Backup vault accounting (see `crate::vault`): backup keys and used bytes.
#[async_trait]
pub trait VaultStore: Send + Sync + 'static {
    // --- Device keys (`crate::backup_key`): several named keys per account. ---
    /// Adds a key to a live account, with its audit entry, if the account holds fewer than
    /// `max_keys` (checked atomically with the insert: racing creates cannot pass it).
    /// `NotFound("user")` for no live account, `Invalid` at the bound, `Conflict` for a
    /// name the account already has (in any letter case).
    async fn create_backup_key(
        &self,
        key: &BackupKeyRecord,
        max_keys: usize,
        audit: AuditDraft,
    ) -> Result<()>;
    /// The key an account's request names by its basic-auth user (soft-deleted accounts
    /// keep theirs).
    async fn backup_key(
        &self,
        tenant: &TenantId,
        user: &UserId,
        key_user: &str,
    ) -> Result<Option<BackupKeyRecord>>;
    /// All of an account's keys, oldest first.
    async fn backup_keys(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<BackupKeyRecord>>;
    /// Removes the account's key of that name (in any letter case), with its audit entry.
    /// `false` (nothing written) when there is none.
    async fn revoke_backup_key(
        &self,
        tenant: &TenantId,
        user: &UserId,
        name: &KeyName,
        audit: AuditDraft,
    ) -> Result<bool>;
    /// Sets a key's last use to `at` if it is unset or at or before `stale_before`; `false` when
    /// it was recent enough already (or the key is gone).
    async fn touch_backup_key(
        &self,
        tenant: &TenantId,
        user: &UserId,
        key_user: &str,
        at: OffsetDateTime,
        stale_before: OffsetDateTime,
    ) -> Result<bool>;
    // --- end of device keys ---
    /// Records the account's last repository health check, replacing the previous one
    /// (nothing for an account that is gone).
    async fn record_vault_verification(
        &self,
        tenant: &TenantId,
        v: &crate::verification::VaultVerification,
    ) -> Result<()>;
    /// The account's last repository health check.
    async fn vault_verification(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<crate::verification::VaultVerification>>;
    /// Adds `bytes` to the account's `used_bytes`, atomically, only if the result stays
    /// within `limit` (when given) and within the counter's range. Returns whether it was
    /// applied (never for an unknown account).
    async fn charge_used_bytes(
        &self,
        tenant: &TenantId,
        user: &UserId,
        bytes: ByteCount,
        limit: Option<ByteCount>,
    ) -> Result<bool>;
    /// Takes `bytes` off the account's `used_bytes`, atomically, only if it holds at least
    /// that many: a counter that would go below 0 has drifted and is left unchanged (for
    /// `cairn account recount`), never clamped. Returns whether it was applied.
    async fn refund_used_bytes(
        &self,
        tenant: &TenantId,
        user: &UserId,
        bytes: ByteCount,
    ) -> Result<bool>;

    // --- Backup freshness (see `crate::freshness`) ---
    /// [`VaultStore::charge_used_bytes`] for an upload: in the same statement (SQLite: the
    /// same write) adds `bytes` to the account's uploads of `hour` (if given). `None` when
    /// refused; otherwise the account's last upload time before this charge.
    async fn charge_upload(
        &self,
        tenant: &TenantId,
        user: &UserId,
        bytes: ByteCount,
        limit: ByteCount,
        hour: Option<i64>,
    ) -> Result<Option<Option<OffsetDateTime>>>;
    /// Gives back a failed upload's charge and takes it off the uploads of `hour` (as
    /// [`VaultStore::refund_used_bytes`]: not applied to a counter that would go below 0).
    async fn refund_upload(
        &self,
        tenant: &TenantId,
        user: &UserId,
        bytes: ByteCount,
        hour: Option<i64>,
    ) -> Result<bool>;
    /// Records a successful upload at `at` (and a snapshot written, if `snapshot`); a time
    /// never moves backwards.
    async fn record_upload(
        &self,
        tenant: &TenantId,
        user: &UserId,
        at: OffsetDateTime,
        snapshot: bool,
    ) -> Result<()>;
    /// The freshness of these accounts (unknown ids left out), counting uploads from
    /// `since_hour` on.
    async fn account_freshness(
        &self,
        tenant: &TenantId,
        users: &[UserId],
        since_hour: i64,
    ) -> Result<Vec<(UserId, crate::freshness::Freshness)>>;
    /// For every tenant, its live active accounts whose last snapshot is missing or older
    /// than the tenant's `stale_days` before `now`.
    async fn stale_account_counts(&self, now: OffsetDateTime) -> Result<Vec<(TenantId, u64)>>;
    /// Removes the hourly upload counts of hours before `hour`; returns how many.
    async fn prune_upload_hours(&self, before_hour: i64) -> Result<u64>;
}

/// Deletion protection of backup repositories (see `crate::protection`): each tenant's
/// setting. The protected objects themselves live in the vault's trash.
#[async_trait]
pub trait ProtectionStore: Send + Sync + 'static {
    /// Days a protected delete is kept, or `None` when protection is off.
    async fn vault_protection(&self, tenant: &TenantId) -> Result<Option<u32>>;
    /// Sets (`Some(days)`) or removes (`None`) the tenant's protection, with its audit
    /// entry.
    async fn set_vault_protection(
        &self,
        tenant: &TenantId,
        days: Option<u32>,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<()>;
}

/// Single sign-on (see `crate::sso`): each tenant's SAML identity provider and SSO scope,
/// the outstanding AuthnRequest ids, the assertion ids already used (the replay store,
/// in the database so every instance shares it), the identity provider's subject pinned
/// to each dashboard user or account, and the sessions of backup accounts.
#[async_trait]
pub trait SsoStore: Send + Sync + 'static {
    /// Creates or replaces the tenant's SAML settings, with its audit entry.
    async fn put_saml_config(&self, config: &SamlIdpConfig, audit: AuditDraft) -> Result<()>;
    async fn get_saml_config(&self, tenant: &TenantId) -> Result<Option<SamlIdpConfig>>;
    /// Remembers an AuthnRequest id until `expires_at`, keeping at most `keep` of the
    /// tenant's ids (the ones expiring first are dropped).
    async fn create_sso_request(
        &self,
        tenant: &TenantId,
        request_id: &str,
        expires_at: OffsetDateTime,
        keep: usize,
    ) -> Result<()>;
    /// Those of `ids` that are outstanding (issued for this tenant, unused, unexpired).
    async fn outstanding_sso_requests(
        &self,
        tenant: &TenantId,
        ids: &[String],
        now: OffsetDateTime,
    ) -> Result<Vec<String>>;
    /// Uses up a request id: `true` only for the one caller that removed an outstanding,
    /// unexpired id (single use, across instances). Also drops expired ids.
    async fn take_sso_request(
        &self,
        tenant: &TenantId,
        request_id: &str,
        now: OffsetDateTime,
    ) -> Result<bool>;
    /// Records an assertion id until `keep_until`: `false` when it was already recorded
    /// (a replay). Also drops ids whose time is over.
    async fn record_assertion_id(
        &self,
        tenant: &TenantId,
        assertion_id: &str,
        keep_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool>;
    /// The subject pinned to a dashboard user or account, if any.
    async fn sso_subject(
        &self,
        tenant: &TenantId,
        kind: PrincipalKind,
        principal_id: &str,
    ) -> Result<Option<SubjectPin>>;
    /// Pins `pin` to the principal unless one is pinned already; returns the pin in force.
    async fn pin_sso_subject(
        &self,
        tenant: &TenantId,
        kind: PrincipalKind,
        principal_id: &str,
        pin: &SubjectPin,
        at: OffsetDateTime,
    ) -> Result<SubjectPin>;
    /// The live (not soft-deleted) account whose userName equals `user_name` ignoring case.
    async fn find_account_by_user_name(
        &self,
        tenant: &TenantId,
        user_name: &str,
    ) -> Result<Option<UserRecord>>;
    async fn create_account_session(&self, session: &AccountSessionRecord) -> Result<()>;
    async fn get_account_session(&self, id: &SessionHash) -> Result<Option<AccountSessionRecord>>;
    async fn touch_account_session(&self, id: &SessionHash, at: OffsetDateTime) -> Result<()>;
    async fn delete_account_session(&self, id: &SessionHash) -> Result<()>;

    // Password sign-in off per tenant, and its break-glass administrator.

    /// The tenant's password sign-in setting, if it was ever set.
    async fn get_password_policy(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<crate::sso_password::PasswordPolicy>>;
    /// Creates or replaces it (`break_glass_email` is not written), with its audit entry.
    async fn put_password_policy(
        &self,
        policy: &crate::sso_password::PasswordPolicy,
        audit: AuditDraft,
    ) -> Result<()>;

    // Dashboard roles from the identity provider's groups (migration 0011).

    /// Maps a group of the tenant to a dashboard role, or removes its mapping (`None`),
    /// with its audit entry.
    async fn set_sso_group_role(
        &self,
        tenant: &TenantId,
        group: &GroupId,
        role: Option<Role>,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<()>;
    /// The tenant's mapped groups, by display name.
    async fn sso_group_roles(&self, tenant: &TenantId) -> Result<Vec<SsoGroupRole>>;
    /// The highest role the account's current groups grant, if any.
    async fn account_group_role(&self, tenant: &TenantId, account: &UserId)
        -> Result<Option<Role>>;
    /// The dashboard user single sign-on created for `account`, if any.
    async fn sso_dashboard_user_of(
        &self,
        tenant: &TenantId,
        account: &UserId,
    ) -> Result<Option<DashboardUserId>>;
    /// Creates the dashboard user (no password) linked to `account`, or updates the
    /// linked user's email and role; `audit` is written with it.
    async fn put_sso_dashboard_user(
        &self,
        user: &DashboardUser,
        account: &UserId,
        audit: AuditDraft,
    ) -> Result<()>;
    /// For a dashboard user created by single sign-on: the role the linked account's
    /// current groups grant (`Some(None)`: none, or the account is suspended, deleted or
    /// gone). `None` for every other dashboard user.
    async fn sso_dashboard_role(&self, user: &DashboardUserId) -> Result<Option<SsoLinkedRole>>;
    /// Creates or replaces the tenant's OpenID Connect settings, with its audit entry.
    async fn put_oidc_config(&self, config: &OidcConfig, audit: AuditDraft) -> Result<()>;
    async fn get_oidc_config(&self, tenant: &TenantId) -> Result<Option<OidcConfig>>;
    /// Remembers an authorization request (state, nonce, PKCE verifier) until it expires,
    /// keeping at most `keep` of the tenant's requests (the ones expiring first are
    /// dropped).
    async fn create_oidc_request(
        &self,
        tenant: &TenantId,
        request: &OidcRequest,
        keep: usize,
    ) -> Result<()>;
    /// Uses up the request with this state: `Some` only for the one caller that removed
    /// an unexpired row (single use, across instances). Also drops expired requests.
    async fn take_oidc_request(
        &self,
        tenant: &TenantId,
        state: &str,
        now: OffsetDateTime,
    ) -> Result<Option<OidcRequest>>;
}

/// A group mapped to a dashboard role.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SsoGroupRole {
    pub group_id: GroupId,
    pub display_name: String,
    pub role: Role,
}

/// What [`SsoStore::sso_dashboard_role`] finds for a dashboard user created by single
/// sign-on: its account and the role that account holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoLinkedRole {
    pub account_id: UserId,
    pub role: Option<Role>,
}

/// The provisioning inspector's request log (see `crate::requests`). Entries arrive in
/// batches from the recorder, never inside a request's transaction. Writing, pruning and
/// reading the capture switches work across tenants (one background writer and one
/// maintenance run serve them all); every read of entries takes the tenant.
#[async_trait]
pub trait RequestLogStore: Send + Sync + 'static {
    /// Appends encoded entries, of any tenants, in one transaction: one row per tenant.
    /// Their ids run from 0 to the number of entries less one ([`encode_batch`] and the
    /// recorder number them so); the store shifts them past every id it gave before.
    /// Takes the batch by value so that a backend can move it to its writer thread.
    ///
    /// [`encode_batch`]: crate::reqlog::encode_batch
    async fn record_batches(&self, groups: Vec<crate::reqlog::Encoded>) -> Result<()>;
    /// Appends entries, of any tenants, in one transaction.
    async fn record_requests(&self, entries: Vec<RequestEntry>) -> Result<()> {
        self.record_batches(crate::reqlog::encode_batch(&entries, 0))
            .await
    }
    /// The tenant's entries matching `filter`, newest first.
    async fn list_requests(
        &self,
        tenant: &TenantId,
        filter: &RequestFilter,
    ) -> Result<Vec<RequestEntry>>;
    /// Deletes entries older than `before` and, per tenant, all but the newest
    /// `keep_per_tenant`. Returns how many went.
    async fn prune_requests(&self, before: OffsetDateTime, keep_per_tenant: u32) -> Result<u64>;
    /// Per token of the tenant: the last request, the last success and its client, and
    /// the requests, failures and most common failure since `since`.
    async fn token_health(
        &self,
        tenant: &TenantId,
        since: OffsetDateTime,
    ) -> Result<Vec<TokenHealth>>;
    /// Switches body capture on until `until`, or off, with its audit entry.
    async fn set_body_capture(
        &self,
        tenant: &TenantId,
        until: Option<OffsetDateTime>,
        audit: AuditDraft,
    ) -> Result<()>;
    /// Every tenant whose body capture is on at `now`, and until when.
    async fn body_captures(&self, now: OffsetDateTime) -> Result<Vec<(TenantId, OffsetDateTime)>>;
}

/// One gauge of the backend's load for `/metrics`: `cairn_<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadGauge {
    pub name: &'static str,
    pub help: &'static str,
    pub value: i64,
}

/// Getting people started (see `crate::welcome`): one-time sign-in links for backup
/// accounts.
#[async_trait]
pub trait WelcomeStore: Send + Sync + 'static {
    /// Stores a link (only its hash) with its audit entry; links that expired before
    /// `forget_before` go at the same time (the table stays bounded).
    async fn create_account_link(
        &self,
        link: &crate::welcome::AccountLinkRecord,
        forget_before: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<()>;
    /// The link with this hash, used or not.
    async fn get_account_link(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<crate::welcome::AccountLinkRecord>>;
    /// Marks the link used if it is unused and unexpired at `now` and, in the same
    /// transaction, creates `session` and writes `audit`; true exactly once per link
    /// (across instances on PostgreSQL).
    async fn use_account_link(
        &self,
        hash: &[u8; 32],
        now: OffsetDateTime,
        session: &AccountSessionRecord,
        audit: AuditDraft,
    ) -> Result<bool>;

    // Mail to backup accounts (see `crate::mail`).

    /// Queues a mail (with `audit`, if any); false when a welcome or reminder for the
    /// account is queued already (one of each per account).
    async fn queue_mail(&self, mail: &OutboxMail, audit: Option<AuditDraft>) -> Result<bool>;
    /// Queues several mails and one audit entry, in one transaction.
    async fn queue_mails(&self, mails: &[OutboxMail], audit: AuditDraft) -> Result<()>;
    /// Queues, at `now`, the welcome mails of accounts created since their tenant turned
    /// welcomes on that have none yet (and no backup), and the single reminder of
    /// welcomed accounts with no backup `remind_days` after their creation. Returns how
    /// many were queued.
    async fn queue_due_mail(&self, now: OffsetDateTime) -> Result<u64>;
    /// Claims up to `limit` pending rows due at `now` and not claimed by a live lease:
    /// each gets the lease `until` and one more attempt. Rows one caller claims are not
    /// claimed by another before the lease ends (across instances on PostgreSQL).
    async fn claim_mail(
        &self,
        now: OffsetDateTime,
        until: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<OutboxMail>>;
    /// Records an attempt's outcome (and `audit`), releasing the claim.
    async fn finish_mail(
        &self,
        id: &str,
        now: OffsetDateTime,
        outcome: &MailOutcome,
        audit: Option<AuditDraft>,
    ) -> Result<()>;
    /// The tenant's outbox, newest first.
    async fn list_mail(&self, tenant: &TenantId, limit: usize) -> Result<Vec<OutboxMail>>;
    async fn welcome_settings(&self, tenant: &TenantId) -> Result<Option<WelcomeSettings>>;
    /// Creates or replaces the tenant's setting, with its audit entry.
    async fn put_welcome_settings(&self, s: &WelcomeSettings, audit: AuditDraft) -> Result<()>;
    /// The tenant's live, active accounts with no snapshot yet, by userName.
    async fn never_backed_up(&self, tenant: &TenantId, limit: usize) -> Result<Vec<UserRecord>>;
}

/// The backend itself.
#[async_trait]
pub trait HealthStore: Send + Sync + 'static {
    /// Cheap liveness check of the backend.
    async fn ping(&self) -> Result<()>;

    /// The backend's load as gauges (SQLite: writes waiting for the writer; PostgreSQL:
    /// the connection pool's use), read at each scrape: no I/O.
    fn load_gauges(&self) -> Vec<LoadGauge> {
        Vec::new()
    }

    /// Every tenant's used bytes (the sum of its accounts' used space, deleted accounts
    /// awaiting purge included: their repositories are still stored), by tenant id.
    async fn used_bytes_per_tenant(&self) -> Result<Vec<(TenantId, u64)>>;
}

/// Everything a backend provides. Implemented for every type that implements each
/// aggregate's trait; code holds an `Arc<dyn Store>`.
pub trait Store:
    TenantStore
    + TokenStore
    + UserStore
    + GroupStore
    + IdentityStore
    + AuditStore
    + VaultStore
    + ProtectionStore
    + SsoStore
    + RequestLogStore
    + WelcomeStore
    + HealthStore
{
}

impl<T> Store for T where
    T: TenantStore
        + TokenStore
        + UserStore
        + GroupStore
        + IdentityStore
        + AuditStore
        + VaultStore
        + ProtectionStore
        + SsoStore
        + RequestLogStore
        + WelcomeStore
        + HealthStore
{
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(version: i64) -> GroupRecord {
        let now = OffsetDateTime::now_utc();
        GroupRecord {
            id: GroupId::random(),
            tenant_id: TenantId::random(),
            display_name: "g".into(),
            external_id: None,
            doc: serde_json::json!({}),
            size_gb: None,
            created_at: now,
            updated_at: now,
            version,
        }
    }

    #[test]
    fn a_guarded_change_goes_ahead_only_on_a_found_resource_at_the_version() {
        let v = |r: Result<GroupRecord>| r.map(|g| g.version);
        assert_eq!(
            v(check_version("group", None, None)),
            Err(Error::NotFound("group"))
        );
        assert_eq!(
            v(check_version("group", None, Some(3))),
            Err(Error::NotFound("group"))
        );
        assert_eq!(
            v(check_version("group", Some(group(3)), Some(2))),
            Err(Error::VersionMismatch)
        );
        assert_eq!(v(check_version("group", Some(group(3)), Some(3))), Ok(3));
        assert_eq!(v(check_version("group", Some(group(3)), None)), Ok(3));
    }

    #[test]
    fn a_missed_write_is_a_conflict_while_the_resource_exists() {
        assert_eq!(missed_write("user", true), Error::VersionMismatch);
        assert_eq!(missed_write("user", false), Error::NotFound("user"));
    }
}
