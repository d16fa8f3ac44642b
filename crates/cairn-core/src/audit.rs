//! The audit log: every provisioning change and every settings or token change, written
//! in the same transaction as the change itself.

use crate::ids::{DashboardUserId, TenantId, TokenId};
use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// A provisioning client authenticated by a SCIM API token.
    Token { id: TokenId },
    /// A signed-in dashboard user.
    DashboardUser { id: DashboardUserId, email: String },
    /// The `cairn` command line, run by whoever operates the deployment.
    Operator,
    /// Cairn itself (retention purges).
    System,
    /// A single sign-on attempt, named by the subject the identity provider asserted
    /// (`None` when nothing verified named one).
    SingleSignOn { subject: Option<String> },
}

impl Actor {
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Token { .. } => "token",
            Actor::DashboardUser { .. } => "dashboard_user",
            Actor::Operator => "operator",
            Actor::System => "system",
            Actor::SingleSignOn { .. } => "sso",
        }
    }
    pub fn id(&self) -> Option<String> {
        match self {
            Actor::Token { id } => Some(id.to_string()),
            Actor::DashboardUser { email, .. } => Some(email.clone()),
            Actor::Operator | Actor::System => None,
            Actor::SingleSignOn { subject } => subject.clone(),
        }
    }
}

/// Where a request came from, for the audit log.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RequestMeta {
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// What kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    TenantCreated,
    ScimEnabled,
    ScimDisabled,
    AccountSizeChanged,
    TokenGenerated,
    DashboardUserCreated,
    UserCreated,
    UserUpdated,
    UserSuspended,
    UserReactivated,
    UserDeleted,
    UserRestored,
    UserPurged,
    GroupCreated,
    GroupUpdated,
    GroupDeleted,
    GroupSizeChanged,
    QuotaChanged,
    BackupKeyGenerated,
    /// A backup key of an account was revoked (its name is in `changes`).
    BackupKeyRevoked,
    VaultPurged,
    /// A purged account's repository could not be removed; the next run retries.
    VaultPurgeFailed,
    /// The operator set or removed the cap on a tenant's Account Size and group sizes.
    TenantLimitChanged,
    /// A tenant's single sign-on settings changed (identity provider, scope, on/off).
    SsoSettingsChanged,
    /// A tenant's stale-backup threshold ("no backup for more than N days") changed.
    StaleDaysChanged,
    /// Someone signed in through the tenant's identity provider.
    SsoSignIn,
    /// A single sign-on attempt was refused (the reason is in `changes`).
    SsoSignInRefused,
    /// An administrator switched the provisioning inspector's body capture on or off.
    BodyCaptureChanged,
    /// A dashboard session of a group-mapped single sign-on user was ended because the
    /// account no longer holds a mapped group (or is suspended, deleted or gone).
    SsoSessionEnded,
    /// An administrator turned a tenant's deletion protection on, off, or changed its
    /// window.
    VaultProtectionChanged,
    /// An administrator undid an account's protected deletions since a point in time.
    VaultUndeleted,
    /// The purge removed protected deletions whose window had passed.
    VaultTrashPurged,
    /// A scheduled refresh of a SAML metadata URL changed the identity provider's
    /// settings (a certificate rollover, most often).
    SsoMetadataRefreshed,
    /// A scheduled refresh of a SAML metadata URL failed; the last good settings stay.
    SsoMetadataRefreshFailed,
    /// Password sign-in to the tenant's dashboard was turned off or on.
    PasswordSignInChanged,
    /// The operator named (or un-named) the tenant's break-glass administrator.
    BreakGlassChanged,
    /// The break-glass administrator signed in with a password while password sign-in
    /// was off.
    BreakGlassSignIn,
    /// An administrator invited a dashboard user (a one-time link to set a password).
    DashboardUserInvited,
    DashboardUserRoleChanged,
    DashboardUserDisabled,
    DashboardUserEnabled,
    DashboardUserDeleted,
    /// An administrator cleared a dashboard user's password and made a link to set a new one.
    DashboardPasswordReset,
    /// A dashboard user set their password through an invitation or reset link.
    DashboardPasswordSet,
    SecondFactorEnabled,
    /// An administrator removed a dashboard user's second factor (a lost phone).
    SecondFactorReset,
    RecoveryCodeUsed,
    /// An administrator changed whether the tenant requires a second factor.
    SecondFactorPolicyChanged,
    /// An administrator started a health check of an account's backup repository.
    VaultVerifyStarted,
    /// A one-time sign-in link for a backup account was made (its expiry is in `changes`).
    AccountSignInLinkCreated,
    /// A backup account signed in with a one-time link.
    AccountSignInLinkUsed,
    /// An administrator turned "Welcome new accounts" on or off, or changed its reminder.
    WelcomeSettingsChanged,
    /// An administrator queued sign-in link mails (how many is in `changes`).
    SignInMailQueued,
    /// A mail to an account was given up (the reason is in `changes`).
    MailFailed,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::TenantCreated => "tenant_created",
            Action::ScimEnabled => "scim_enabled",
            Action::ScimDisabled => "scim_disabled",
            Action::AccountSizeChanged => "account_size_changed",
            Action::TokenGenerated => "token_generated",
            Action::DashboardUserCreated => "dashboard_user_created",
            Action::UserCreated => "user_created",
            Action::UserUpdated => "user_updated",
            Action::UserSuspended => "user_suspended",
            Action::UserReactivated => "user_reactivated",
            Action::UserDeleted => "user_deleted",
            Action::UserRestored => "user_restored",
            Action::UserPurged => "user_purged",
            Action::GroupCreated => "group_created",
            Action::GroupUpdated => "group_updated",
            Action::GroupDeleted => "group_deleted",
            Action::GroupSizeChanged => "group_size_changed",
            Action::QuotaChanged => "quota_changed",
            Action::BackupKeyGenerated => "backup_key_generated",
            Action::BackupKeyRevoked => "backup_key_revoked",
            Action::VaultPurged => "vault_purged",
            Action::VaultPurgeFailed => "vault_purge_failed",
            Action::TenantLimitChanged => "tenant_limit_changed",
            Action::SsoSettingsChanged => "sso_settings_changed",
            Action::StaleDaysChanged => "stale_days_changed",
            Action::SsoSignIn => "sso_sign_in",
            Action::SsoSignInRefused => "sso_sign_in_refused",
            Action::BodyCaptureChanged => "body_capture_changed",
            Action::SsoSessionEnded => "sso_session_ended",
            Action::VaultProtectionChanged => "vault_protection_changed",
            Action::VaultUndeleted => "vault_undeleted",
            Action::VaultTrashPurged => "vault_trash_purged",
            Action::SsoMetadataRefreshed => "sso_metadata_refreshed",
            Action::SsoMetadataRefreshFailed => "sso_metadata_refresh_failed",
            Action::PasswordSignInChanged => "password_sign_in_changed",
            Action::BreakGlassChanged => "break_glass_changed",
            Action::BreakGlassSignIn => "break_glass_sign_in",
            Action::DashboardUserInvited => "dashboard_user_invited",
            Action::DashboardUserRoleChanged => "dashboard_user_role_changed",
            Action::DashboardUserDisabled => "dashboard_user_disabled",
            Action::DashboardUserEnabled => "dashboard_user_enabled",
            Action::DashboardUserDeleted => "dashboard_user_deleted",
            Action::DashboardPasswordReset => "dashboard_password_reset",
            Action::DashboardPasswordSet => "dashboard_password_set",
            Action::SecondFactorEnabled => "second_factor_enabled",
            Action::SecondFactorReset => "second_factor_reset",
            Action::RecoveryCodeUsed => "recovery_code_used",
            Action::SecondFactorPolicyChanged => "second_factor_policy_changed",
            Action::VaultVerifyStarted => "vault_verify_started",
            Action::AccountSignInLinkCreated => "account_sign_in_link_created",
            Action::AccountSignInLinkUsed => "account_sign_in_link_used",
            Action::WelcomeSettingsChanged => "welcome_settings_changed",
            Action::SignInMailQueued => "sign_in_mail_queued",
            Action::MailFailed => "mail_failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        ALL_ACTIONS.iter().copied().find(|a| a.as_str() == s)
    }
}

pub const ALL_ACTIONS: [Action; 54] = [
    Action::TenantCreated,
    Action::ScimEnabled,
    Action::ScimDisabled,
    Action::AccountSizeChanged,
    Action::TokenGenerated,
    Action::DashboardUserCreated,
    Action::UserCreated,
    Action::UserUpdated,
    Action::UserSuspended,
    Action::UserReactivated,
    Action::UserDeleted,
    Action::UserRestored,
    Action::UserPurged,
    Action::GroupCreated,
    Action::GroupUpdated,
    Action::GroupDeleted,
    Action::GroupSizeChanged,
    Action::QuotaChanged,
    Action::BackupKeyGenerated,
    Action::BackupKeyRevoked,
    Action::VaultPurged,
    Action::VaultPurgeFailed,
    Action::TenantLimitChanged,
    Action::SsoSettingsChanged,
    Action::SsoSignIn,
    Action::SsoSignInRefused,
    Action::BodyCaptureChanged,
    Action::SsoSessionEnded,
    Action::StaleDaysChanged,
    Action::VaultProtectionChanged,
    Action::VaultUndeleted,
    Action::VaultTrashPurged,
    Action::SsoMetadataRefreshed,
    Action::SsoMetadataRefreshFailed,
    Action::PasswordSignInChanged,
    Action::BreakGlassChanged,
    Action::BreakGlassSignIn,
    Action::DashboardUserInvited,
    Action::DashboardUserRoleChanged,
    Action::DashboardUserDisabled,
    Action::DashboardUserEnabled,
    Action::DashboardUserDeleted,
    Action::DashboardPasswordReset,
    Action::DashboardPasswordSet,
    Action::SecondFactorEnabled,
    Action::SecondFactorReset,
    Action::RecoveryCodeUsed,
    Action::SecondFactorPolicyChanged,
    Action::VaultVerifyStarted,
    Action::AccountSignInLinkCreated,
    Action::AccountSignInLinkUsed,
    Action::WelcomeSettingsChanged,
    Action::SignInMailQueued,
    Action::MailFailed,
];

/// An audit entry before the store gives it an id; the store writes it in the same
/// transaction as the change it describes.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDraft {
    pub tenant_id: TenantId,
    pub actor: Actor,
    pub action: Action,
    pub target_type: &'static str,
    pub target_id: Option<String>,
    pub target_name: Option<String>,
    /// `{"attribute": {"before": …, "after": …}}`; never contains secrets.
    pub changes: Value,
    pub meta: RequestMeta,
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub id: i64,
    pub tenant_id: TenantId,
    /// Fixed-width UTC with milliseconds (`2026-11-29T04:20:00.120Z`), as stored.
    #[serde(serialize_with = "serialize_ts")]
    pub at: OffsetDateTime,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub target_name: Option<String>,
    pub changes: Value,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

pub(crate) fn serialize_ts<S: serde::Serializer>(
    t: &OffsetDateTime,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::clock::format_ts(*t))
}

pub(crate) fn serialize_opt_ts<S: serde::Serializer>(
    t: &Option<OffsetDateTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize_ts(t, s),
        None => s.serialize_none(),
    }
}

/// Filters for reading the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub target_id: Option<String>,
    pub action: Option<Action>,
    pub limit: u32,
}

/// Most events one `AuditQuery` returns when it names no limit.
pub const DEFAULT_AUDIT_LIMIT: u32 = 1000;

impl AuditQuery {
    /// The same listing as the dashboard's activity view describes it: the filter, and
    /// how many events (newest first). Every store lists audit events one way.
    pub fn as_activity(&self) -> (crate::dashboard::ActivityFilter, u32) {
        let filter = crate::dashboard::ActivityFilter {
            target_id: self.target_id.clone(),
            action: self.action,
            ..Default::default()
        };
        let limit = if self.limit == 0 {
            DEFAULT_AUDIT_LIMIT
        } else {
            self.limit
        };
        (filter, limit)
    }
}

/// Attribute-level differences between two resource documents: top-level attributes, and
/// the sub-attributes of complex single-valued ones (`name.givenName`). Values that are
/// equal are left out.
pub fn diff(before: &Value, after: &Value) -> Value {
    let mut out = Map::new();
    diff_into(&mut out, "", before, after);
    Value::Object(out)
}

fn diff_into(out: &mut Map<String, Value>, prefix: &str, before: &Value, after: &Value) {
    let empty = Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let bv = b.get(k).unwrap_or(&Value::Null);
        let av = a.get(k).unwrap_or(&Value::Null);
        if bv == av {
            continue;
        }
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if prefix.is_empty() && (bv.is_object() || av.is_object()) {
            diff_into(out, &name, bv, av);
        } else {
            out.insert(
                name,
                serde_json::json!({"before": bv.clone(), "after": av.clone()}),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_lists_changed_attributes_only() {
        let b =
            json!({"userName": "a", "name": {"givenName": "A", "familyName": "X"}, "active": true});
        let a = json!({"userName": "a", "name": {"givenName": "B", "familyName": "X"}, "active": false, "title": "t"});
        let d = diff(&b, &a);
        assert_eq!(
            d,
            json!({
                "active": {"before": true, "after": false},
                "name.givenName": {"before": "A", "after": "B"},
                "title": {"before": null, "after": "t"}
            })
        );
    }

    #[test]
    fn an_audit_query_is_an_activity_listing() {
        let q = AuditQuery {
            target_id: Some("u1".into()),
            action: Some(Action::UserUpdated),
            limit: 7,
        };
        let (f, limit) = q.as_activity();
        assert_eq!(
            f,
            crate::dashboard::ActivityFilter {
                target_id: Some("u1".into()),
                account_name: None,
                action: Some(Action::UserUpdated),
                client: None,
            }
        );
        assert_eq!(limit, 7);
        let (f, limit) = AuditQuery::default().as_activity();
        assert_eq!(f, Default::default());
        assert_eq!(limit, DEFAULT_AUDIT_LIMIT);
    }

    #[test]
    fn event_times_serialise_fixed_width() {
        let at = time::macros::datetime!(2026-11-29 04:20:06.210 UTC);
        let e = AuditEvent {
            id: 1,
            tenant_id: TenantId::random(),
            at,
            actor_kind: "token".into(),
            actor_id: None,
            action: "user_created".into(),
            target_type: "user".into(),
            target_id: None,
            target_name: None,
            changes: json!({}),
            user_agent: None,
            request_id: None,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["at"], "2026-11-29T04:20:06.210Z");
    }
}
