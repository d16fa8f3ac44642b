//! The operations the protocols call. Each names the capability it needs, builds the audit
//! entry and lets the store write both in one transaction.

use crate::audit::{diff, Action, Actor, AuditDraft, AuditEvent, AuditQuery, RequestMeta};
use crate::auth::{
    hash_password, DashboardCtx, OperatorCtx, ScimAuthenticator, ScimCtx, ScimToken,
};
use crate::clock::Clock;
use crate::group::{GroupData, GroupRecord, GroupRef, GroupSummary, MemberChange};
use crate::ids::{DashboardUserId, GroupId, QuotaGb, TenantId, TokenId, UserId, UserName};
use crate::query::{ListQuery, Page};
use crate::store::{DashboardUser, Role, SettingsChange, Store};
use crate::tenant::{validate_tenant_name, Tenant, TokenInfo};
use crate::user::{purge_audits, system_audit, DocJson, UserData, UserRecord};
use crate::{Error, Result};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Who is changing tenant settings: the operator (CLI) or a dashboard administrator.
#[derive(Debug, Clone, Copy)]
pub enum Authority<'a> {
    Operator(&'a OperatorCtx),
    Dashboard(&'a DashboardCtx),
}

pub struct Services {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub auth: ScimAuthenticator,
    /// How long a soft-deleted account's data is kept before it is purged.
    pub retention: time::Duration,
    /// The externally visible base URL, for Tenant URLs and `Location` headers.
    pub public_url: String,
    /// The bound on concurrent password verifications (dashboard sign-in).
    pub sign_in_gate: crate::session::SignInGate,
    /// The rate of refused single sign-on attempts written to the audit log.
    pub refusal_audits: crate::sso::RefusalAudits,
    /// How long a one-time sign-in link for a backup account stays valid.
    pub account_link_lifetime: time::Duration,
    /// Whether a mail relay is set up (`cairn serve --smtp-url`): "Send" buttons and
    /// welcome mails need it.
    pub mail_enabled: bool,
    /// Wakes the mail sender when a mail is queued (`crate::mail`).
    pub mail_wake: tokio::sync::Notify,
}

/// How many times an update is retried when another request changed the account between
/// our read and our write (only when the client sent no `If-Match`).
const UPDATE_RETRIES: usize = 8;

impl Services {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        retention: time::Duration,
        public_url: String,
        auth_ttl: Duration,
    ) -> Self {
        Services {
            auth: ScimAuthenticator::new(store.clone(), auth_ttl),
            store,
            clock,
            retention,
            public_url: public_url.trim_end_matches('/').to_owned(),
            sign_in_gate: Default::default(),
            refusal_audits: Default::default(),
            account_link_lifetime: crate::welcome::ACCOUNT_LINK_LIFETIME,
            mail_enabled: false,
            mail_wake: tokio::sync::Notify::new(),
        }
    }

    pub fn tenant_url(&self, tenant: &TenantId) -> String {
        crate::tenant::tenant_url(&self.public_url, tenant)
    }

    fn draft(
        &self,
        tenant: &TenantId,
        actor: Actor,
        action: Action,
        target: (&'static str, Option<String>, Option<String>),
        changes: serde_json::Value,
        meta: &RequestMeta,
    ) -> AuditDraft {
        AuditDraft {
            tenant_id: tenant.clone(),
            actor,
            action,
            target_type: target.0,
            target_id: target.1,
            target_name: target.2,
            changes,
            meta: meta.clone(),
            at: self.clock.now(),
        }
    }

    fn admin_actor(&self, who: Authority<'_>, tenant: &TenantId) -> Result<Actor> {
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

    // --- tenants and settings ---------------------------------------------------------

    pub async fn create_tenant(&self, _op: &OperatorCtx, name: &str) -> Result<Tenant> {
        let name = validate_tenant_name(name).map_err(|reason| Error::Invalid {
            field: "name",
            reason,
        })?;
        let tenant = Tenant {
            id: TenantId::random(),
            name: name.clone(),
            scim_enabled: false,
            account_size_gb: QuotaGb::default(),
            created_at: self.clock.now(),
            max_account_size_gb: None,
            stale_days: crate::freshness::StaleDays::DEFAULT,
        };
        let audit = self.draft(
            &tenant.id,
            Actor::Operator,
            Action::TenantCreated,
            ("tenant", Some(tenant.id.to_string()), Some(name)),
            json!({}),
            &RequestMeta::default(),
        );
        self.store.create_tenant(&tenant, audit).await?;
        Ok(tenant)
    }

    pub async fn tenant(&self, tenant: &TenantId) -> Result<Tenant> {
        self.store
            .get_tenant(tenant)
            .await?
            .ok_or(Error::NotFound("tenant"))
    }

    pub async fn list_tenants(&self, _op: &OperatorCtx) -> Result<Vec<Tenant>> {
        self.store.list_tenants().await
    }

    /// Changes "Enable SCIM user management", "Account Size" and/or the stale-backup
    /// threshold. Only what actually changes is applied and audited.
    pub async fn update_settings(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        change: SettingsChange,
        meta: &RequestMeta,
    ) -> Result<Tenant> {
        let actor = self.admin_actor(who, tenant)?;
        let current = self.tenant(tenant).await?;
        let mut effective = SettingsChange::default();
        let mut audits = Vec::new();
        let target = || {
            (
                "tenant",
                Some(tenant.to_string()),
                Some(current.name.clone()),
            )
        };
        if let Some(enabled) = change.scim_enabled.filter(|e| *e != current.scim_enabled) {
            effective.scim_enabled = Some(enabled);
            let action = if enabled {
                Action::ScimEnabled
            } else {
                Action::ScimDisabled
            };
            audits.push(self.draft(
                tenant,
                actor.clone(),
                action,
                target(),
                json!({"scimEnabled": {"before": current.scim_enabled, "after": enabled}}),
                meta,
            ));
        }
        if let Some(size) = change
            .account_size_gb
            .filter(|s| *s != current.account_size_gb)
        {
            current.check_size(size)?;
            effective.account_size_gb = Some(size);
            audits.push(self.draft(
                tenant,
                actor.clone(),
                Action::AccountSizeChanged,
                target(),
                json!({"accountSizeGb": {"before": current.account_size_gb.get(), "after": size.get()}}),
                meta,
            ));
        }
        if let Some(days) = change.stale_days.filter(|d| *d != current.stale_days) {
            effective.stale_days = Some(days);
            audits.push(self.draft(
                tenant,
                actor.clone(),
                Action::StaleDaysChanged,
                target(),
                json!({"staleDays": {"before": current.stale_days, "after": days}}),
                meta,
            ));
        }
        if audits.is_empty() {
            return Ok(current);
        }
        let updated = self
            .store
            .update_settings(tenant, &effective, audits)
            .await?;
        self.auth.invalidate(tenant);
        Ok(updated)
    }

    /// Sets (or with `None` removes) the operator's cap on the tenant's Account Size and
    /// group sizes (`cairn tenant limit`). Larger sizes are refused from then on; quotas
    /// already above it count as the cap (see `Tenant::effective_quota`).
    pub async fn set_tenant_limit(
        &self,
        _op: &OperatorCtx,
        tenant: &TenantId,
        cap: Option<QuotaGb>,
    ) -> Result<Tenant> {
        let current = self.tenant(tenant).await?;
        if current.max_account_size_gb == cap {
            return Ok(current);
        }
        let audit = self.draft(
            tenant,
            Actor::Operator,
            Action::TenantLimitChanged,
            (
                "tenant",
                Some(tenant.to_string()),
                Some(current.name.clone()),
            ),
            json!({"maxAccountSizeGb": {
                "before": current.max_account_size_gb.map(QuotaGb::get),
                "after": cap.map(QuotaGb::get),
            }}),
            &RequestMeta::default(),
        );
        let change = SettingsChange {
            max_account_size_gb: Some(cap),
            ..SettingsChange::default()
        };
        let updated = self
            .store
            .update_settings(tenant, &change, vec![audit])
            .await?;
        self.auth.invalidate(tenant);
        Ok(updated)
    }

    /// Generates a new SCIM API token; every earlier token of the tenant stops working.
    /// The token is returned this once and stored only as a hash.
    pub async fn generate_token(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        meta: &RequestMeta,
    ) -> Result<(ScimToken, TokenInfo)> {
        let actor = self.admin_actor(who, tenant)?;
        let t = self.tenant(tenant).await?;
        let token = ScimToken::generate();
        let info = TokenInfo {
            id: TokenId::random(),
            tenant_id: tenant.clone(),
            hint: token.hint(),
            created_at: self.clock.now(),
            last_used_at: None,
            last_user_agent: None,
        };
        let audit = self.draft(
            tenant,
            actor,
            Action::TokenGenerated,
            ("tenant", Some(tenant.to_string()), Some(t.name)),
            json!({"token": {"after": info.hint}}),
            meta,
        );
        self.store
            .replace_token(tenant, &info, &token.hash(), audit)
            .await?;
        self.auth.invalidate(tenant);
        Ok((token, info))
    }

    pub async fn token_info(&self, tenant: &TenantId) -> Result<Option<TokenInfo>> {
        self.store.token_info(tenant).await
    }

    /// Creates a dashboard account. Hashing runs on the caller's thread: call from a
    /// blocking context or accept the cost (the CLI does).
    pub async fn create_dashboard_user(
        &self,
        _op: &OperatorCtx,
        tenant: &TenantId,
        email: &str,
        role: Role,
        password: &str,
    ) -> Result<DashboardUser> {
        let t = self.tenant(tenant).await?;
        let email = email.trim();
        if email.is_empty()
            || !email.contains('@')
            || email.len() > 254
            || email.contains(char::is_whitespace)
        {
            return Err(Error::Invalid {
                field: "email",
                reason: "must be an email address".into(),
            });
        }
        let hash = hash_password(password)?;
        let user = DashboardUser {
            id: DashboardUserId::random(),
            tenant_id: tenant.clone(),
            email: email.to_owned(),
            role,
            password_hash: hash,
            created_at: self.clock.now(),
            disabled: false,
            second_factor: false,
        };
        let audit = self.draft(
            tenant,
            Actor::Operator,
            Action::DashboardUserCreated,
            (
                "dashboard_user",
                Some(user.id.to_string()),
                Some(user.email.clone()),
            ),
            json!({"role": {"after": role.as_str()}, "tenant": {"after": t.name}}),
            &RequestMeta::default(),
        );
        self.store.create_dashboard_user(&user, audit).await?;
        Ok(user)
    }

    pub async fn audit_log(
        &self,
        tenant: &TenantId,
        query: &AuditQuery,
    ) -> Result<Vec<AuditEvent>> {
        self.store.list_audit(tenant, query).await
    }

    /// Brings back a soft-deleted account (same id, same data) within its retention window.
    pub async fn restore_user(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        user_name: &str,
        meta: &RequestMeta,
    ) -> Result<UserRecord> {
        let actor = self.admin_actor(who, tenant)?;
        self.tenant(tenant).await?;
        let user_name = UserName::parse(user_name).map_err(|reason| Error::Invalid {
            field: "userName",
            reason,
        })?;
        let audit = self.draft(
            tenant,
            actor,
            Action::UserRestored,
            ("user", None, Some(user_name.to_string())),
            json!({"status": {"before": "deleted", "after": "restored"}}),
            meta,
        );
        self.store
            .restore_user(tenant, &user_name, self.clock.now(), audit)
            .await
    }

    /// Purges accounts whose retention window has ended (run periodically by `serve`):
    /// each is marked as being purged, its backup repository removed by `remove_repo`
    /// (returning the bytes it held), then its row deleted with `vault_purged` and
    /// `user_purged` audited. A removal that fails is audited (`vault_purge_failed`),
    /// leaves the account marked for the next run, and does not stop the rest.
    pub async fn purge_expired(
        &self,
        remove_repo: impl Fn(&UserRecord) -> RemoveRepo,
    ) -> Result<PurgeReport> {
        let now = self.clock.now();
        let mut report = PurgeReport::default();
        for u in self.store.begin_purge(now, PURGE_BATCH).await? {
            let outcome = match remove_repo(&u).await {
                Ok(bytes) => self
                    .store
                    .finish_purge(&u.tenant_id, &u.id, purge_audits(&u, bytes, now))
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(true) => report.purged.push(u),
                // Another instance finished this account.
                Ok(false) => {}
                Err(reason) => {
                    let audit = system_audit(
                        &u,
                        Action::VaultPurgeFailed,
                        json!({"error": {"after": reason}}),
                        now,
                    );
                    // The account stays marked either way; a failure to audit the failure
                    // is reported with it.
                    let reason = match self.store.record_audit(audit).await {
                        Ok(()) => reason,
                        Err(e) => format!("{reason} (not audited: {e})"),
                    };
                    report.failed.push((u, reason));
                }
            }
        }
        Ok(report)
    }

    // --- SCIM ---------------------------------------------------------------------------

    pub async fn authenticate_scim(
        &self,
        tenant_in_url: &str,
        authorization: Option<&str>,
        user_agent: Option<&str>,
    ) -> Result<ScimCtx> {
        let (ctx, touch_due) = self.auth.authenticate(tenant_in_url, authorization).await?;
        if touch_due {
            // A failed last-used write must not fail the request.
            let _ = self
                .store
                .touch_token(
                    ctx.tenant_id(),
                    ctx.token_id(),
                    self.clock.now(),
                    user_agent,
                )
                .await;
        }
        Ok(ctx)
    }

    fn token_actor(ctx: &ScimCtx) -> Actor {
        Actor::Token {
            id: ctx.token_id().clone(),
        }
    }

    /// Creates a backup account with the tenant's current Account Size as its quota.
    pub async fn create_user(
        &self,
        ctx: &ScimCtx,
        data: UserData,
        meta: &RequestMeta,
    ) -> Result<UserRecord> {
        let now = self.clock.now();
        let tenant = ctx.tenant();
        let user = UserRecord {
            id: UserId::random(),
            tenant_id: tenant.id.clone(),
            user_name: data.user_name,
            external_id: data.external_id,
            display_name: data.display_name,
            email: data.email,
            active: data.active,
            doc: data.doc,
            quota_gb: tenant.account_size_gb,
            used_bytes: 0,
            scim_managed: true,
            created_at: now,
            updated_at: now,
            version: 1,
            deleted_at: None,
            purge_at: None,
        };
        let mut changes = diff(&json!({}), &user.doc);
        changes["quotaGb"] = json!({"after": user.quota_gb.get()});
        let audit = self.draft(
            &tenant.id,
            Self::token_actor(ctx),
            Action::UserCreated,
            (
                "user",
                Some(user.id.to_string()),
                Some(user.user_name.to_string()),
            ),
            changes,
            meta,
        );
        self.store.create_user(&user, audit).await?;
        // "Welcome new accounts": queued after the commit, never holding up the create.
        if user.email.is_some() {
            self.queue_welcome(&user).await;
        }
        Ok(user)
    }

    pub async fn get_user(&self, ctx: &ScimCtx, id: &str) -> Result<UserRecord> {
        let id = UserId::parse(id).ok_or(Error::NotFound("user"))?;
        self.store
            .get_user(ctx.tenant_id(), &id)
            .await?
            .ok_or(Error::NotFound("user"))
    }

    pub async fn list_users(&self, ctx: &ScimCtx, query: &ListQuery) -> Result<Page<UserRecord>> {
        self.store.list_users(ctx.tenant_id(), query).await
    }

    /// A live account and, with `with_groups`, its groups, in one store read.
    pub async fn get_user_with_groups(
        &self,
        ctx: &ScimCtx,
        id: &str,
        with_groups: bool,
    ) -> Result<(UserRecord<DocJson>, Vec<GroupRef>)> {
        let id = UserId::parse(id).ok_or(Error::NotFound("user"))?;
        self.store
            .get_user_with_groups(ctx.tenant_id(), &id, with_groups)
            .await?
            .ok_or(Error::NotFound("user"))
    }

    /// A page of live accounts and, with `with_groups`, their groups, in one store read.
    pub async fn list_users_with_groups(
        &self,
        ctx: &ScimCtx,
        query: &ListQuery,
        with_groups: bool,
    ) -> Result<(Page<UserRecord<DocJson>>, Vec<(UserId, GroupRef)>)> {
        self.store
            .list_users_with_groups(ctx.tenant_id(), query, with_groups)
            .await
    }

    /// Read-modify-write of one account. `change` computes the new attributes from the
    /// current record (a PUT ignores it, a PATCH applies its operations to it). With
    /// `if_match`, the write happens only if the stored version is still that one
    /// (RFC 7644 §3.14), checked in the same transaction as the write; without it,
    /// a concurrent change makes us re-read and re-apply.
    pub async fn update_user<E>(
        &self,
        ctx: &ScimCtx,
        id: &str,
        if_match: Option<i64>,
        meta: &RequestMeta,
        mut change: impl FnMut(&UserRecord) -> Result<UserData, E>,
    ) -> Result<UserRecord, E>
    where
        E: From<Error>,
    {
        let id = UserId::parse(id).ok_or(Error::NotFound("user"))?;
        for _ in 0..UPDATE_RETRIES {
            let current = self
                .store
                .get_user(ctx.tenant_id(), &id)
                .await?
                .ok_or(Error::NotFound("user"))?;
            if let Some(v) = if_match {
                if v != current.version {
                    return Err(Error::VersionMismatch.into());
                }
            }
            let data = change(&current)?;
            if data == current.data() {
                return Ok(current);
            }
            let action = match (current.active, data.active) {
                (true, false) => Action::UserSuspended,
                (false, true) => Action::UserReactivated,
                _ => Action::UserUpdated,
            };
            let mut changes = diff(&current.doc, &data.doc);
            if current.active != data.active && changes.get("active").is_none() {
                changes["active"] = json!({"before": current.active, "after": data.active});
            }
            let audit = self.draft(
                ctx.tenant_id(),
                Self::token_actor(ctx),
                action,
                (
                    "user",
                    Some(id.to_string()),
                    Some(data.user_name.to_string()),
                ),
                changes,
                meta,
            );
            match self
                .store
                .update_user(
                    ctx.tenant_id(),
                    &id,
                    current.version,
                    &data,
                    self.clock.now(),
                    audit,
                )
                .await
            {
                Err(Error::VersionMismatch) if if_match.is_none() => continue,
                other => return other.map_err(E::from),
            }
        }
        Err(Error::Unavailable("too many concurrent changes to one account".into()).into())
    }

    /// Soft delete: SCIM answers 404 from now on, the data is kept for the retention
    /// window and an administrator can restore the account.
    pub async fn delete_user(
        &self,
        ctx: &ScimCtx,
        id: &str,
        if_match: Option<i64>,
        meta: &RequestMeta,
    ) -> Result<()> {
        let id = UserId::parse(id).ok_or(Error::NotFound("user"))?;
        let current = self
            .store
            .get_user(ctx.tenant_id(), &id)
            .await?
            .ok_or(Error::NotFound("user"))?;
        let now = self.clock.now();
        let purge_at = now + self.retention;
        let audit = self.draft(
            ctx.tenant_id(),
            Self::token_actor(ctx),
            Action::UserDeleted,
            (
                "user",
                Some(id.to_string()),
                Some(current.user_name.to_string()),
            ),
            json!({"purgeAt": {"after": crate::clock::format_ts(purge_at)}}),
            meta,
        );
        self.store
            .soft_delete_user(ctx.tenant_id(), &id, if_match, now, purge_at, audit)
            .await
    }

    // --- groups -------------------------------------------------------------------------

    fn group_target(g: &GroupRecord) -> (&'static str, Option<String>, Option<String>) {
        (
            "group",
            Some(g.id.to_string()),
            Some(g.display_name.clone()),
        )
    }

    /// Creates a group with these members (accounts of the tenant) and the `display`
    /// values the client sent for them (RFC 7643 §4.2), in one transaction.
    pub async fn create_group(
        &self,
        ctx: &ScimCtx,
        data: GroupData,
        members: &[UserId],
        displays: &[(UserId, String)],
        meta: &RequestMeta,
    ) -> Result<GroupRecord> {
        let now = self.clock.now();
        let g = GroupRecord {
            id: GroupId::random(),
            tenant_id: ctx.tenant_id().clone(),
            display_name: data.display_name,
            external_id: data.external_id,
            doc: data.doc,
            size_gb: None,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let audit = self.draft(
            ctx.tenant_id(),
            Self::token_actor(ctx),
            Action::GroupCreated,
            Self::group_target(&g),
            diff(&json!({}), &g.doc),
            meta,
        );
        self.store
            .create_group(&g, members, displays, audit)
            .await?;
        Ok(g)
    }

    pub async fn get_group(&self, ctx: &ScimCtx, id: &str) -> Result<GroupRecord> {
        let id = GroupId::parse(id).ok_or(Error::NotFound("group"))?;
        self.store
            .get_group(ctx.tenant_id(), &id)
            .await?
            .ok_or(Error::NotFound("group"))
    }

    pub async fn list_groups(&self, ctx: &ScimCtx, query: &ListQuery) -> Result<Page<GroupRecord>> {
        self.store.list_groups(ctx.tenant_id(), query).await
    }

    /// The live members of a group: O(size of the group); called only when the client
    /// asked for `members`.
    pub async fn group_members(&self, ctx: &ScimCtx, id: &GroupId) -> Result<Vec<UserId>> {
        self.store.group_members(ctx.tenant_id(), id).await
    }

    /// The `display` values recorded for a group's members.
    pub async fn member_displays(
        &self,
        ctx: &ScimCtx,
        id: &GroupId,
    ) -> Result<std::collections::HashMap<UserId, String>> {
        self.store.member_displays(ctx.tenant_id(), id).await
    }

    /// The members of a group as a list response carries them: all of them when there
    /// are at most `cap` (by default [`LIST_MEMBERS_MAX`]), `None` for a larger group
    /// (listed without `members`; `GET /Groups/{id}` has them all). Reads at most one
    /// more than the cap.
    pub async fn group_members_for_list(
        &self,
        ctx: &ScimCtx,
        id: &GroupId,
        cap: u32,
    ) -> Result<Option<Vec<UserId>>> {
        let members = self
            .store
            .group_members_up_to(ctx.tenant_id(), id, cap.saturating_add(1))
            .await?;
        Ok((members.len() <= cap as usize).then_some(members))
    }

    /// The groups of these accounts (the read-only `groups` attribute of a User).
    pub async fn groups_of_users(
        &self,
        ctx: &ScimCtx,
        users: &[UserId],
    ) -> Result<Vec<(UserId, GroupRef)>> {
        self.store.groups_of_users(ctx.tenant_id(), users).await
    }

    /// Changes a group: `change` computes the new attributes and the member change from
    /// the current record (PUT ignores it, PATCH applies its operations). Membership deltas
    /// commute, so only a change of attributes without `If-Match` is re-read and re-applied
    /// when another request changed the group in between; with `if_match` the write
    /// happens only at that version (412 otherwise). `displays` (members' `display`
    /// values) are recorded in the same transaction as the member change.
    pub async fn update_group<E>(
        &self,
        ctx: &ScimCtx,
        id: &str,
        if_match: Option<i64>,
        meta: &RequestMeta,
        displays: &[(UserId, String)],
        mut change: impl FnMut(&GroupRecord) -> Result<(GroupData, MemberChange), E>,
    ) -> Result<GroupRecord, E>
    where
        E: From<Error>,
    {
        let id = GroupId::parse(id).ok_or(Error::NotFound("group"))?;
        for _ in 0..UPDATE_RETRIES {
            let current = self
                .store
                .get_group(ctx.tenant_id(), &id)
                .await?
                .ok_or(Error::NotFound("group"))?;
            if let Some(v) = if_match {
                if v != current.version {
                    return Err(Error::VersionMismatch.into());
                }
            }
            let (data, members) = change(&current)?;
            let renamed = data != current.data();
            if !renamed && members.is_none() && displays.is_empty() {
                return Ok(current);
            }
            let expected = if_match.or(renamed.then_some(current.version));
            let changes = if renamed {
                diff(&current.doc, &data.doc)
            } else {
                json!({})
            };
            let audit = self.draft(
                ctx.tenant_id(),
                Self::token_actor(ctx),
                Action::GroupUpdated,
                Self::group_target(&current),
                changes,
                meta,
            );
            let data = renamed.then_some(&data);
            match self
                .store
                .update_group(
                    ctx.tenant_id(),
                    &id,
                    expected,
                    data,
                    &members,
                    displays,
                    audit,
                )
                .await
            {
                Err(Error::VersionMismatch) if if_match.is_none() => continue,
                other => return other.map_err(E::from),
            }
        }
        Err(Error::Unavailable("too many concurrent changes to one group".into()).into())
    }

    /// Deletes a group. Its members' accounts are neither deleted nor suspended; their
    /// quotas fall back if the group had a size.
    pub async fn delete_group(
        &self,
        ctx: &ScimCtx,
        id: &str,
        if_match: Option<i64>,
        meta: &RequestMeta,
    ) -> Result<()> {
        let g = self.get_group(ctx, id).await?;
        let audit = self.draft(
            ctx.tenant_id(),
            Self::token_actor(ctx),
            Action::GroupDeleted,
            Self::group_target(&g),
            json!({"displayName": {"before": g.display_name}}),
            meta,
        );
        self.store
            .delete_group(ctx.tenant_id(), &g.id, if_match, audit)
            .await
    }

    /// Sets (or with `None` clears) a group's own Account Size; its members' quotas are
    /// recomputed (see `crate::group`).
    pub async fn set_group_size(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        group: &GroupId,
        size: Option<QuotaGb>,
        meta: &RequestMeta,
    ) -> Result<GroupRecord> {
        let actor = self.admin_actor(who, tenant)?;
        if let Some(size) = size {
            self.tenant(tenant).await?.check_size(size)?;
        }
        let g = self
            .store
            .get_group(tenant, group)
            .await?
            .ok_or(Error::NotFound("group"))?;
        let audit = self.draft(
            tenant,
            actor,
            Action::GroupSizeChanged,
            Self::group_target(&g),
            json!({"sizeGb": {"before": g.size_gb.map(QuotaGb::get), "after": size.map(QuotaGb::get)}}),
            meta,
        );
        self.store.set_group_size(tenant, group, size, audit).await
    }

    /// A group of the tenant by displayName (any letter case), for the CLI.
    pub async fn find_group(&self, tenant: &TenantId, name: &str) -> Result<GroupRecord> {
        self.store
            .find_group_by_name(tenant, name)
            .await?
            .ok_or(Error::NotFound("group"))
    }

    /// A group's dashboard page: the group, its number of live members and the first
    /// `limit` of them (by id).
    pub async fn group_page(
        &self,
        ctx: &DashboardCtx,
        id: &str,
        limit: usize,
    ) -> Result<(GroupRecord, usize, Vec<UserRecord>)> {
        let id = GroupId::parse(id).ok_or(Error::NotFound("group"))?;
        let tenant = ctx.tenant_id();
        let g = self
            .store
            .get_group(tenant, &id)
            .await?
            .ok_or(Error::NotFound("group"))?;
        let ids = self.store.group_members(tenant, &id).await?;
        let mut users = Vec::with_capacity(limit.min(ids.len()));
        for u in ids.iter().take(limit) {
            if let Some(r) = self.store.get_user(tenant, u).await? {
                users.push(r);
            }
        }
        Ok((g, ids.len(), users))
    }

    /// Every group of the tenant with its member count, for the dashboard.
    pub async fn group_summaries(&self, tenant: &TenantId) -> Result<Vec<GroupSummary>> {
        self.store.group_summaries(tenant).await
    }
}

/// The most members a group carries in a list or search response (`GET /Groups`,
/// `POST /.search`) unless `serve` sets another (`--scim-list-members-max`); a larger
/// group is listed without `members`, so one page of up to 1,000 groups reads at most
/// 1,000 × 101 member ids. RFC 7644 §3.4.2 lets a list return
/// fewer attributes than a read of the resource; Okta and Entra list groups with
/// `excludedAttributes=members` anyway (README, Groups).
pub const LIST_MEMBERS_MAX: u32 = 100;

/// Members one group write (POST, PUT or PATCH of a group) may name, counted over all
/// its operations, unless `serve` sets another (`--scim-members-per-write-max`): the membership change of one request is written in one transaction,
/// and the single SQLite writer is shared by every tenant (README, Groups).
pub const MEMBERS_PER_WRITE_MAX: u32 = 10_000;

/// Accounts one purge run takes on at most; the rest wait for the next run.
const PURGE_BATCH: u32 = 1000;

/// The removal of one account's repository, as `Services::purge_expired` is given it:
/// the bytes it held, or why it failed. Owned (`'static`), so the purge can run in a
/// spawned task.
pub type RemoveRepo =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::result::Result<u64, String>> + Send>>;

/// What one run of the retention purge did.
#[derive(Debug, Default)]
pub struct PurgeReport {
    /// Accounts whose repository and row are gone.
    pub purged: Vec<UserRecord>,
    /// Accounts whose repository could not be removed, with the reason; they stay marked
    /// and the next run retries them.
    pub failed: Vec<(UserRecord, String)>,
}
