//! Password sign-in off per tenant once single sign-on works (issue 17 item 6), and the
//! tenant's break-glass administrator.
//!
//! A tenant whose identity provider signs its administrators in can refuse password
//! sign-in to its dashboard users, so that removing a person at the identity provider
//! is enough to lock them out. One named administrator per tenant, set by the operator
//! with `cairn user break-glass` (never from the dashboard: an administrator who could
//! name themselves would defeat the setting), keeps password sign-in for when the
//! identity provider is down or misconfigured; each of their password sign-ins while
//! the setting is off is audited (`break_glass_sign_in`).
//!
//! The setting only has effect while single sign-on (SAML or OpenID Connect) is enabled
//! for administrators: turning single sign-on off, or taking administrators out of its
//! scope, gives password sign-in back at once instead of locking everyone out.

use crate::audit::{Action, Actor, AuditDraft, RequestMeta};
use crate::auth::DashboardCtx;
use crate::ids::{DashboardUserId, TenantId};
use crate::service::Services;
use crate::store::{DashboardUser, Role};
use crate::{Error, Result};
use serde_json::json;
use time::OffsetDateTime;

/// A tenant's password sign-in setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub tenant_id: TenantId,
    /// Whether dashboard users may sign in with a password (the default).
    pub password_sign_in: bool,
    /// The one administrator who keeps password sign-in when it is off.
    pub break_glass: Option<DashboardUserId>,
    /// Their email (read by the store; not written).
    pub break_glass_email: Option<String>,
    pub updated_at: OffsetDateTime,
}

impl PasswordPolicy {
    fn default_for(tenant: &TenantId) -> Self {
        PasswordPolicy {
            tenant_id: tenant.clone(),
            password_sign_in: true,
            break_glass: None,
            break_glass_email: None,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        }
    }
}

/// What Settings → Single Sign-On and `cairn sso show` report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PasswordSignInStatus {
    /// The tenant's setting.
    pub password_sign_in: bool,
    /// Whether single sign-on is enabled for administrators (SAML or OpenID Connect).
    pub sso_covers_admins: bool,
    /// Whether password sign-in is refused right now (setting off and SSO covering admins).
    pub enforced: bool,
    /// The break-glass administrator's email, if one is named.
    pub break_glass: Option<String>,
}

impl Services {
    pub async fn password_policy(&self, tenant: &TenantId) -> Result<PasswordPolicy> {
        Ok(self
            .store
            .get_password_policy(tenant)
            .await?
            .unwrap_or_else(|| PasswordPolicy::default_for(tenant)))
    }

    /// Whether SAML or OpenID Connect sign-in is enabled for the tenant's administrators.
    pub async fn sso_covers_admins(&self, tenant: &TenantId) -> Result<bool> {
        let saml = self
            .store
            .get_saml_config(tenant)
            .await?
            .is_some_and(|c| c.enabled && c.scope.admins && !c.certificates.is_empty());
        if saml {
            return Ok(true);
        }
        Ok(self
            .store
            .get_oidc_config(tenant)
            .await?
            .is_some_and(|c| c.enabled && c.scope.admins))
    }

    pub async fn password_sign_in_status(&self, tenant: &TenantId) -> Result<PasswordSignInStatus> {
        let policy = self.password_policy(tenant).await?;
        let covers = self.sso_covers_admins(tenant).await?;
        Ok(PasswordSignInStatus {
            password_sign_in: policy.password_sign_in,
            sso_covers_admins: covers,
            enforced: !policy.password_sign_in && covers,
            break_glass: policy.break_glass_email,
        })
    }

    /// Turns password sign-in on or off for the tenant's dashboard users. Off only while
    /// single sign-on is enabled for administrators.
    pub async fn set_password_sign_in(
        &self,
        actor: Actor,
        tenant: &TenantId,
        on: bool,
        meta: RequestMeta,
    ) -> Result<PasswordSignInStatus> {
        if self.store.get_tenant(tenant).await?.is_none() {
            return Err(Error::NotFound("tenant"));
        }
        if !on && !self.sso_covers_admins(tenant).await? {
            return Err(Error::Invalid {
                field: "password_sign_in",
                reason: "password sign-in can only be turned off while single sign-on is \
                         enabled for dashboard administrators"
                    .into(),
            });
        }
        let mut policy = self.password_policy(tenant).await?;
        let before = policy.password_sign_in;
        policy.password_sign_in = on;
        policy.updated_at = self.clock.now();
        let audit = AuditDraft {
            tenant_id: tenant.clone(),
            actor,
            action: Action::PasswordSignInChanged,
            target_type: "sso",
            target_id: None,
            target_name: Some("password sign-in".into()),
            changes: json!({"password_sign_in": {"before": before, "after": on}}),
            meta,
            at: policy.updated_at,
        };
        self.store.put_password_policy(&policy, audit).await?;
        self.password_sign_in_status(tenant).await
    }

    /// The toggle on Settings → Single Sign-On: administrators only, own tenant.
    pub async fn save_password_sign_in(
        &self,
        ctx: &DashboardCtx,
        on: bool,
        meta: RequestMeta,
    ) -> Result<PasswordSignInStatus> {
        crate::dashboard::require_admin(ctx)?;
        let actor = Actor::DashboardUser {
            id: ctx.user_id.clone(),
            email: ctx.email().to_owned(),
        };
        self.set_password_sign_in(actor, ctx.tenant_id(), on, meta)
            .await
    }

    /// Names (or, with `on` false, un-names) the tenant's break-glass administrator: an
    /// administrator with a password. Operator only (the CLI). Naming another replaces
    /// the previous one: there is at most one per tenant.
    pub async fn set_break_glass(
        &self,
        tenant: &TenantId,
        email: &str,
        on: bool,
    ) -> Result<PasswordSignInStatus> {
        let user = self
            .store
            .find_dashboard_user(email)
            .await?
            .filter(|u| &u.tenant_id == tenant)
            .ok_or(Error::NotFound("dashboard user"))?;
        let mut policy = self.password_policy(tenant).await?;
        if on {
            if user.role != Role::Administrator || user.password_hash.as_phc().is_empty() {
                return Err(Error::Invalid {
                    field: "email",
                    reason: "the break-glass administrator must be an administrator with a \
                             password"
                        .into(),
                });
            }
            policy.break_glass = Some(user.id.clone());
        } else if policy.break_glass.as_ref() == Some(&user.id) {
            policy.break_glass = None;
        } else {
            return Err(Error::Invalid {
                field: "email",
                reason: "not the tenant's break-glass administrator".into(),
            });
        }
        policy.updated_at = self.clock.now();
        let audit = AuditDraft {
            tenant_id: tenant.clone(),
            actor: Actor::Operator,
            action: Action::BreakGlassChanged,
            target_type: "dashboard_user",
            target_id: Some(user.id.to_string()),
            target_name: Some(user.email.clone()),
            changes: json!({"break_glass": on}),
            meta: RequestMeta::default(),
            at: policy.updated_at,
        };
        self.store.put_password_policy(&policy, audit).await?;
        self.password_sign_in_status(tenant).await
    }

    /// After the password was verified: whether the tenant lets `user` in with it. The
    /// break-glass administrator always may, and each such sign-in while password
    /// sign-in is off is audited.
    pub(crate) async fn password_sign_in_allowed(
        &self,
        user: &DashboardUser,
        client: &str,
    ) -> Result<bool> {
        let policy = self.password_policy(&user.tenant_id).await?;
        if policy.password_sign_in || !self.sso_covers_admins(&user.tenant_id).await? {
            return Ok(true);
        }
        if policy.break_glass.as_ref() != Some(&user.id) {
            return Ok(false);
        }
        let audit = AuditDraft {
            tenant_id: user.tenant_id.clone(),
            actor: Actor::DashboardUser {
                id: user.id.clone(),
                email: user.email.clone(),
            },
            action: Action::BreakGlassSignIn,
            target_type: "dashboard_user",
            target_id: Some(user.id.to_string()),
            target_name: Some(user.email.clone()),
            changes: json!({"client": client}),
            meta: RequestMeta::default(),
            at: self.clock.now(),
        };
        self.store.record_audit(audit).await?;
        Ok(true)
    }
}
