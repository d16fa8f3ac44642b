//! Dashboard user administration (Settings → Users and `cairn user`), the one-time links
//! it hands out (invitations, password resets, and the pending second sign-in step), and
//! the second factor (TOTP enrolment, recovery codes, the tenant's "require 2FA" rule).
//!
//! Two rules are written here and again, atomically, in each store: a tenant always keeps
//! one active administrator (see [`UserChange::removes_active_admin`]), and a link or a
//! recovery code is used at most once.

use crate::audit::{Action, Actor, AuditDraft, RequestMeta};
use crate::auth::{DashboardCtx, PasswordHash};
use crate::ids::{DashboardUserId, TenantId};
use crate::service::{Authority, Services};
use crate::store::{DashboardUser, Role};
use crate::totp::{self, TotpSecret};
use crate::{Error, Result};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

/// What a one-time link is for. The store keeps them generic: a mailer can later send the
/// same links that administrators copy today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    /// Sets the first password of an invited dashboard user.
    Invite,
    /// Sets a new password after an administrator reset it.
    PasswordReset,
    /// The second step of a password sign-in: the browser holds it between the password
    /// and the code.
    SecondFactor,
    /// Like `SecondFactor`, for a user who must enrol first (the tenant requires 2FA).
    Enrolment,
}

impl LinkPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkPurpose::Invite => "invite",
            LinkPurpose::PasswordReset => "password_reset",
            LinkPurpose::SecondFactor => "second_factor",
            LinkPurpose::Enrolment => "enrolment",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            LinkPurpose::Invite,
            LinkPurpose::PasswordReset,
            LinkPurpose::SecondFactor,
            LinkPurpose::Enrolment,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
    /// How long a link of this purpose is valid.
    pub fn lifetime(self) -> Duration {
        match self {
            LinkPurpose::Invite => Duration::days(7),
            LinkPurpose::PasswordReset => Duration::hours(24),
            LinkPurpose::SecondFactor | LinkPurpose::Enrolment => Duration::minutes(10),
        }
    }
}

/// The random part of a one-time link (64 hex digits, 256 bits). `Debug` never prints it;
/// the store keeps only its SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkSecret(String);

impl LinkSecret {
    pub fn generate() -> Self {
        LinkSecret(crate::session::random_hex())
    }
    /// Accepts only the form Cairn issues.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| LinkSecret(s.to_owned()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }
}

impl fmt::Debug for LinkSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkSecret(<redacted>)")
    }
}

/// A one-time link as stored.
#[derive(Debug, Clone)]
pub struct LinkRecord {
    pub hash: [u8; 32],
    pub tenant_id: TenantId,
    pub user_id: DashboardUserId,
    pub purpose: LinkPurpose,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A dashboard user as Settings → Users lists it.
#[derive(Debug, Clone)]
pub struct DashboardUserEntry {
    pub user: DashboardUser,
    pub last_sign_in_at: Option<OffsetDateTime>,
    /// Created by single sign-on (no password of its own).
    pub single_sign_on: bool,
}

impl DashboardUserEntry {
    pub fn status(&self) -> &'static str {
        if self.user.disabled {
            "disabled"
        } else if self.user.password_hash.as_phc().is_empty() && !self.single_sign_on {
            "invited"
        } else {
            "active"
        }
    }
}

/// A change to a dashboard user.
#[derive(Debug, Clone)]
pub enum UserChange {
    SetRole(Role),
    Disable,
    Enable,
    Delete,
    /// Clears the password and stores a link to set a new one.
    ResetPassword(LinkRecord),
    /// A password set through a link.
    SetPassword(PasswordHash),
    /// Removes the user's TOTP secret and recovery codes (a lost phone).
    ResetSecondFactor,
}

/// The refusal of a change that would leave a tenant without an active administrator.
pub const LAST_ADMINISTRATOR: &str =
    "this is the last active administrator of the organisation: make another user administrator first";

impl UserChange {
    /// Whether the change takes an active administrator away (demotes, disables or deletes
    /// one): allowed only while another active administrator remains.
    pub fn removes_active_admin(&self, user: &DashboardUser) -> bool {
        user.role == Role::Administrator
            && !user.disabled
            && matches!(
                self,
                UserChange::SetRole(Role::Viewer) | UserChange::Disable | UserChange::Delete
            )
    }
    /// Whether the user's open sessions end with the change.
    pub fn ends_sessions(&self) -> bool {
        matches!(
            self,
            UserChange::Disable
                | UserChange::Delete
                | UserChange::ResetPassword(_)
                | UserChange::SetPassword(_)
        )
    }
    fn action(&self) -> Action {
        match self {
            UserChange::SetRole(_) => Action::DashboardUserRoleChanged,
            UserChange::Disable => Action::DashboardUserDisabled,
            UserChange::Enable => Action::DashboardUserEnabled,
            UserChange::Delete => Action::DashboardUserDeleted,
            UserChange::ResetPassword(_) => Action::DashboardPasswordReset,
            UserChange::SetPassword(_) => Action::DashboardPasswordSet,
            UserChange::ResetSecondFactor => Action::SecondFactorReset,
        }
    }
}

/// The second factor of a dashboard user as stored.
#[derive(Debug, Clone)]
pub struct SecondFactor {
    pub secret: TotpSecret,
    /// `None` while enrolment is pending (the code has not been confirmed yet).
    pub enabled_at: Option<OffsetDateTime>,
    /// The last time step whose code was accepted: a code is never accepted twice.
    pub last_step: Option<i64>,
}

/// What an administrator can do to a user, from the dashboard or the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserAction {
    SetRole(Role),
    Disable,
    Enable,
    Delete,
    ResetSecondFactor,
}

/// Shortest password accepted through a link: the same rule as `cairn user create`.
pub use crate::auth::MIN_PASSWORD_LEN;
/// Longest password: Argon2 time grows with the input.
pub const MAX_PASSWORD_LEN: usize = 1024;

fn email_ok(email: &str) -> bool {
    !email.is_empty()
        && email.contains('@')
        && email.len() <= 254
        && !email.contains(char::is_whitespace)
}

impl Services {
    fn people_actor(&self, who: Authority<'_>, tenant: &TenantId) -> Result<Actor> {
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

    fn people_draft(
        &self,
        tenant: &TenantId,
        actor: Actor,
        action: Action,
        user: &DashboardUser,
        changes: serde_json::Value,
        meta: &RequestMeta,
    ) -> AuditDraft {
        AuditDraft {
            tenant_id: tenant.clone(),
            actor,
            action,
            target_type: "dashboard_user",
            target_id: Some(user.id.to_string()),
            target_name: Some(user.email.clone()),
            changes,
            meta: meta.clone(),
            at: self.clock.now(),
        }
    }

    /// The tenant's dashboard users (administrators only).
    pub async fn list_dashboard_users(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
    ) -> Result<Vec<DashboardUserEntry>> {
        self.people_actor(who, tenant)?;
        self.store.list_dashboard_users(tenant).await
    }

    /// The tenant's dashboard user with this email.
    pub async fn dashboard_user_by_email(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        email: &str,
    ) -> Result<DashboardUser> {
        self.people_actor(who, tenant)?;
        self.store
            .find_dashboard_user(email)
            .await?
            .filter(|u| &u.tenant_id == tenant)
            .ok_or(Error::NotFound("dashboard user"))
    }

    /// Creates a dashboard user without a password and a one-time link (valid
    /// [`LinkPurpose::Invite`]`.lifetime()`) with which they set one.
    pub async fn invite_dashboard_user(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        email: &str,
        role: Role,
        meta: &RequestMeta,
    ) -> Result<(DashboardUser, LinkSecret)> {
        let actor = self.people_actor(who, tenant)?;
        self.tenant(tenant).await?;
        let email = email.trim();
        if !email_ok(email) {
            return Err(Error::Invalid {
                field: "email",
                reason: "must be an email address".into(),
            });
        }
        let now = self.clock.now();
        let user = DashboardUser {
            id: DashboardUserId::random(),
            tenant_id: tenant.clone(),
            email: email.to_owned(),
            role,
            password_hash: PasswordHash::from_phc(String::new()),
            created_at: now,
            disabled: false,
            second_factor: false,
        };
        let (secret, link) = self.new_link(&user, LinkPurpose::Invite);
        let audit = self.people_draft(
            tenant,
            actor,
            Action::DashboardUserInvited,
            &user,
            json!({"role": {"after": role.as_str()},
                   "link_expires_at": {"after": link.expires_at.unix_timestamp()}}),
            meta,
        );
        self.store
            .invite_dashboard_user(&user, &link, audit)
            .await?;
        Ok((user, secret))
    }

    fn new_link(&self, user: &DashboardUser, purpose: LinkPurpose) -> (LinkSecret, LinkRecord) {
        let now = self.clock.now();
        let secret = LinkSecret::generate();
        let record = LinkRecord {
            hash: secret.hash(),
            tenant_id: user.tenant_id.clone(),
            user_id: user.id.clone(),
            purpose,
            created_at: now,
            expires_at: now + purpose.lifetime(),
        };
        (secret, record)
    }

    /// The URL of a link of `purpose` (invitations and resets: `/invite/…`).
    pub fn link_url(&self, secret: &LinkSecret) -> String {
        format!(
            "{}/invite/{}",
            self.public_url.trim_end_matches('/'),
            secret.expose()
        )
    }

    /// Changes a dashboard user. Refused when it would leave the tenant without an active
    /// administrator: checked here, and again by the store in the change's transaction,
    /// so that two concurrent demotions cannot both pass.
    pub async fn change_dashboard_user(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        id: &DashboardUserId,
        action: UserAction,
        meta: &RequestMeta,
    ) -> Result<DashboardUser> {
        let change = match action {
            UserAction::SetRole(r) => UserChange::SetRole(r),
            UserAction::Disable => UserChange::Disable,
            UserAction::Enable => UserChange::Enable,
            UserAction::Delete => UserChange::Delete,
            UserAction::ResetSecondFactor => UserChange::ResetSecondFactor,
        };
        self.apply_user_change(who, tenant, id, change, meta).await
    }

    /// Clears the user's password, ends their sessions, and returns a one-time link with
    /// which they set a new one.
    pub async fn reset_dashboard_password(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        id: &DashboardUserId,
        meta: &RequestMeta,
    ) -> Result<(DashboardUser, LinkSecret)> {
        let user = self.user_in(tenant, id).await?;
        let (secret, link) = self.new_link(&user, LinkPurpose::PasswordReset);
        let user = self
            .apply_user_change(who, tenant, id, UserChange::ResetPassword(link), meta)
            .await?;
        Ok((user, secret))
    }

    async fn user_in(&self, tenant: &TenantId, id: &DashboardUserId) -> Result<DashboardUser> {
        self.store
            .get_dashboard_user(tenant, id)
            .await?
            .ok_or(Error::NotFound("dashboard user"))
    }

    async fn apply_user_change(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        id: &DashboardUserId,
        change: UserChange,
        meta: &RequestMeta,
    ) -> Result<DashboardUser> {
        let actor = self.people_actor(who, tenant)?;
        let user = self.user_in(tenant, id).await?;
        if change.removes_active_admin(&user) {
            let others = self
                .store
                .list_dashboard_users(tenant)
                .await?
                .iter()
                .filter(|e| {
                    e.user.id != user.id && e.user.role == Role::Administrator && !e.user.disabled
                })
                .count();
            if others == 0 {
                return Err(Error::Invalid {
                    field: "role",
                    reason: LAST_ADMINISTRATOR.into(),
                });
            }
        }
        let changes = match &change {
            UserChange::SetRole(r) => {
                json!({"role": {"before": user.role.as_str(), "after": r.as_str()}})
            }
            UserChange::Disable => json!({"disabled": {"before": user.disabled, "after": true}}),
            UserChange::Enable => json!({"disabled": {"before": user.disabled, "after": false}}),
            UserChange::Delete => json!({"role": {"before": user.role.as_str()}}),
            UserChange::ResetPassword(l) => {
                json!({"link_expires_at": {"after": l.expires_at.unix_timestamp()}})
            }
            UserChange::SetPassword(_) => json!({}),
            UserChange::ResetSecondFactor => {
                json!({"second_factor": {"before": user.second_factor, "after": false}})
            }
        };
        let audit = self.people_draft(tenant, actor, change.action(), &user, changes, meta);
        self.store
            .change_dashboard_user(tenant, id, &change, audit)
            .await?;
        let mut after = user;
        match change {
            UserChange::SetRole(r) => after.role = r,
            UserChange::Disable => after.disabled = true,
            UserChange::Enable => after.disabled = false,
            UserChange::ResetSecondFactor => after.second_factor = false,
            _ => {}
        }
        Ok(after)
    }

    /// The live link behind `secret` for setting a password, with the email it is for.
    pub async fn password_link(
        &self,
        secret: &LinkSecret,
    ) -> Result<Option<(LinkPurpose, String)>> {
        Ok(self
            .live_link(secret)
            .await?
            .filter(|(l, _)| matches!(l.purpose, LinkPurpose::Invite | LinkPurpose::PasswordReset))
            .map(|(l, u)| (l.purpose, u.email)))
    }

    /// The unused, unexpired link behind `secret`. The store finds it by the SHA-256 of
    /// the secret; the hash found is compared again in constant time.
    pub(crate) async fn live_link(
        &self,
        secret: &LinkSecret,
    ) -> Result<Option<(LinkRecord, DashboardUser)>> {
        let hash = secret.hash();
        Ok(self
            .store
            .find_link(&hash, self.clock.now())
            .await?
            .filter(|(l, _)| bool::from(l.hash.ct_eq(&hash))))
    }

    /// Sets the password of the user an invitation or reset link is for, and uses the link
    /// up. Returns the user's email.
    pub async fn accept_password_link(
        &self,
        secret: &LinkSecret,
        password: String,
    ) -> Result<String> {
        let n = password.chars().count();
        if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&n) {
            return Err(Error::Invalid {
                field: "password",
                reason: format!(
                    "must be between {MIN_PASSWORD_LEN} and {MAX_PASSWORD_LEN} characters"
                ),
            });
        }
        let Some((link, user)) = self
            .live_link(secret)
            .await?
            .filter(|(l, _)| matches!(l.purpose, LinkPurpose::Invite | LinkPurpose::PasswordReset))
        else {
            return Err(Error::NotFound("link"));
        };
        // Argon2id off the async runtime, under the sign-in gate's bound (see SignInGate).
        let hash = self.sign_in_gate.hash(password).await?;
        if !self
            .store
            .consume_link(&link.hash, self.clock.now())
            .await?
        {
            return Err(Error::NotFound("link"));
        }
        let actor = Actor::DashboardUser {
            id: user.id.clone(),
            email: user.email.clone(),
        };
        let audit = self.people_draft(
            &user.tenant_id,
            actor,
            Action::DashboardPasswordSet,
            &user,
            json!({"link": {"after": link.purpose.as_str()}}),
            &RequestMeta::default(),
        );
        self.store
            .change_dashboard_user(
                &user.tenant_id,
                &user.id,
                &UserChange::SetPassword(hash),
                audit,
            )
            .await?;
        Ok(user.email)
    }

    // --- the second factor ------------------------------------------------------------

    /// Whether the tenant requires a second factor for every password sign-in.
    pub async fn second_factor_required(&self, tenant: &TenantId) -> Result<bool> {
        self.store.second_factor_required(tenant).await
    }

    pub async fn set_second_factor_required(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        required: bool,
        meta: &RequestMeta,
    ) -> Result<()> {
        let actor = self.people_actor(who, tenant)?;
        let before = self.store.second_factor_required(tenant).await?;
        let audit = AuditDraft {
            tenant_id: tenant.clone(),
            actor,
            action: Action::SecondFactorPolicyChanged,
            target_type: "tenant",
            target_id: Some(tenant.to_string()),
            target_name: None,
            changes: json!({"require_second_factor": {"before": before, "after": required}}),
            meta: meta.clone(),
            at: self.clock.now(),
        };
        self.store
            .set_second_factor_required(tenant, required, audit)
            .await
    }

    /// Starts (or resumes) TOTP enrolment for `user`: the pending secret, kept until a
    /// code confirms it. Refused when a second factor is already on.
    pub(crate) async fn pending_totp(&self, user: &DashboardUser) -> Result<TotpSecret> {
        match self.store.second_factor(&user.tenant_id, &user.id).await? {
            Some(f) if f.enabled_at.is_some() => Err(Error::Invalid {
                field: "second_factor",
                reason: "two-factor authentication is already on".into(),
            }),
            Some(f) => Ok(f.secret),
            None => {
                let secret = TotpSecret::generate();
                self.store
                    .set_pending_totp(&user.tenant_id, &user.id, &secret)
                    .await?;
                Ok(secret)
            }
        }
    }

    /// Confirms enrolment with a code from the app; returns the recovery codes (shown
    /// once; only their hashes are kept). `None`: the code is wrong.
    pub(crate) async fn confirm_totp(
        &self,
        user: &DashboardUser,
        code: &str,
    ) -> Result<Option<Vec<String>>> {
        let Some(f) = self.store.second_factor(&user.tenant_id, &user.id).await? else {
            return Ok(None);
        };
        if f.enabled_at.is_some() {
            return Ok(None);
        }
        let now = self.clock.now();
        let Some(step) = totp::matching_step(&f.secret, code, now) else {
            return Ok(None);
        };
        let codes: Vec<String> = (0..totp::RECOVERY_CODES)
            .map(|_| totp::generate_recovery_code())
            .collect();
        let hashes: Vec<[u8; 32]> = codes.iter().map(|c| totp::recovery_code_hash(c)).collect();
        let actor = Actor::DashboardUser {
            id: user.id.clone(),
            email: user.email.clone(),
        };
        let audit = self.people_draft(
            &user.tenant_id,
            actor,
            Action::SecondFactorEnabled,
            user,
            json!({"second_factor": {"before": false, "after": true},
                   "recovery_codes": {"after": hashes.len()}}),
            &RequestMeta::default(),
        );
        let enabled = self
            .store
            .enable_totp(&user.tenant_id, &user.id, step, &hashes, now, audit)
            .await?;
        Ok(enabled.then_some(codes))
    }

    /// Checks a TOTP code (or a recovery code) of `user` and uses it up: a TOTP code's
    /// step is recorded so the code is refused again within its window; a recovery code
    /// is marked used.
    pub(crate) async fn check_second_factor(
        &self,
        user: &DashboardUser,
        code: &str,
    ) -> Result<bool> {
        let now = self.clock.now();
        if totp::looks_like_recovery_code(code) {
            let actor = Actor::DashboardUser {
                id: user.id.clone(),
                email: user.email.clone(),
            };
            let audit = self.people_draft(
                &user.tenant_id,
                actor,
                Action::RecoveryCodeUsed,
                user,
                json!({}),
                &RequestMeta::default(),
            );
            return self
                .store
                .use_recovery_code(
                    &user.tenant_id,
                    &user.id,
                    &totp::recovery_code_hash(code),
                    now,
                    audit,
                )
                .await;
        }
        let Some(f) = self.store.second_factor(&user.tenant_id, &user.id).await? else {
            return Ok(false);
        };
        if f.enabled_at.is_none() {
            return Ok(false);
        }
        let Some(step) = totp::matching_step(&f.secret, code, now) else {
            return Ok(false);
        };
        // Atomic in the store: only a step later than the last one used is accepted.
        self.store
            .use_totp_step(&user.tenant_id, &user.id, step)
            .await
    }

    /// The signed-in user's own TOTP enrolment (Settings → Security): the pending secret.
    pub async fn begin_own_enrolment(&self, ctx: &DashboardCtx) -> Result<TotpSecret> {
        let user = self.user_in(ctx.tenant_id(), ctx.user_id()).await?;
        self.pending_totp(&user).await
    }

    /// Confirms the signed-in user's own enrolment; `None`: wrong code.
    pub async fn confirm_own_enrolment(
        &self,
        ctx: &DashboardCtx,
        code: &str,
    ) -> Result<Option<Vec<String>>> {
        let user = self.user_in(ctx.tenant_id(), ctx.user_id()).await?;
        self.confirm_totp(&user, code).await
    }

    /// Whether the signed-in user has a second factor on.
    pub async fn own_second_factor(&self, ctx: &DashboardCtx) -> Result<bool> {
        Ok(self
            .user_in(ctx.tenant_id(), ctx.user_id())
            .await?
            .second_factor)
    }
}
