//! Single sign-on (issue 17): a tenant's SAML 2.0 identity provider, its SSO scope, and
//! what happens once a response has been verified: matching the asserted subject to a
//! dashboard administrator or a backup account *of that tenant only*, single use of the
//! request id, the replay store, subject pinning, and the session.
//!
//! Signature checking lives in `cairn-web` (`sso` module, on `samael` with xmlsec): this
//! module only ever sees a [`VerifiedAssertion`], built from the part of the response a
//! verified signature covered. No account is created here: SCIM does that.

use crate::audit::{Action, Actor, AuditDraft, RequestMeta};
use crate::auth::DashboardCtx;
use crate::auth::PasswordHash;
use crate::ids::DashboardUserId;
use crate::ids::{fold_case, TenantId, UserId};
use crate::service::Services;
use crate::session::{
    random_hex, DashboardSession, SessionHash, SessionSecret, SESSION_ABSOLUTE, SESSION_IDLE,
};
use crate::store::{DashboardUser, Role, SsoGroupRole};
use crate::user::UserRecord;
use crate::{Error, Result};
use serde_json::json;
use time::{Duration, OffsetDateTime};

/// How long an AuthnRequest id stays usable: the time a person has to sign in at the
/// identity provider.
pub const REQUEST_TTL: Duration = Duration::minutes(10);
/// The clock skew allowed between us and the identity provider, both ways. Bounded and
/// small: SAML's own windows are minutes long.
pub const MAX_CLOCK_SKEW: Duration = Duration::seconds(120);
/// The longest an assertion id is remembered, whatever its NotOnOrAfter says: an
/// identity provider cannot make the replay store grow without bound.
pub const MAX_REPLAY_WINDOW: Duration = Duration::hours(24);
/// The most sign-ins in progress kept per tenant and protocol (SAML request ids, OpenID
/// Connect states). `GET /sso/{tenant}/login` needs no credential, so without a cap an
/// anonymous client could add a row per request for [`REQUEST_TTL`]; beyond it the
/// oldest is dropped (its sign-in, if a person was behind it, starts again). A thousand
/// sign-ins begun within ten minutes is far above what one organisation does.
pub const MAX_OUTSTANDING_REQUESTS: usize = 1000;
/// Refused sign-ins audited one by one per tenant and [`REFUSAL_AUDIT_WINDOW`]; beyond,
/// they are counted and written as one entry (`"suppressed": n`) when the window is over,
/// so refused answers posted without any credential cannot grow the audit log without
/// bound.
pub const REFUSAL_AUDITS_PER_WINDOW: u32 = 30;
pub const REFUSAL_AUDIT_WINDOW: Duration = Duration::minutes(1);

/// Whom single sign-on applies to (Infrascale's "Enable SSO for").
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SsoScope {
    /// Dashboard users with the administrator role.
    pub admins: bool,
    /// Every backup account of the tenant.
    pub all_accounts: bool,
    /// These backup accounts (userNames), when not all.
    pub accounts: Vec<String>,
}

impl SsoScope {
    /// User names separated by commas, spaces or semicolons, as the settings page takes them.
    pub fn parse_accounts(list: &str) -> Vec<String> {
        let mut out: Vec<String> = list
            .split([',', ';', ' ', '\t', '\n', '\r'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        out.dedup();
        out
    }

    pub fn includes_account(&self, user_name: &str) -> bool {
        self.all_accounts || {
            let f = fold_case(user_name);
            self.accounts.iter().any(|a| fold_case(a) == f)
        }
    }
}

/// A tenant's SAML identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlIdpConfig {
    pub tenant_id: TenantId,
    pub enabled: bool,
    /// The IdP's entity id: the only Issuer accepted.
    pub idp_entity_id: String,
    /// Where AuthnRequests go (HTTP-Redirect binding).
    pub sso_url: String,
    /// Signing certificates, base64 DER without line breaks. Never empty once saved.
    pub certificates: Vec<String>,
    /// The metadata document it was read from, if any.
    pub metadata_xml: Option<String>,
    /// Where the metadata comes from, if given as a URL: fetched when saved and again on
    /// a schedule (`cairn serve --sso-metadata-refresh-secs`), so a certificate rollover
    /// at the identity provider reaches Cairn without anyone's help.
    pub metadata_url: Option<String>,
    pub scope: SsoScope,
    pub updated_at: OffsetDateTime,
}

impl SamlIdpConfig {
    /// The checks every saved configuration passes. A configuration without a signing
    /// certificate is refused: with none, samael skips signature verification altogether
    /// (docs.rs/samael 0.0.22, `ServiceProvider::parse_xml_response_with_mode`).
    pub fn validate(&self) -> Result<()> {
        let invalid = |field, reason: &str| {
            Err(Error::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.idp_entity_id.trim().is_empty() {
            return invalid("issuer", "the identity provider's entity id is required");
        }
        if !(self.sso_url.starts_with("https://") || self.sso_url.starts_with("http://")) {
            return invalid("sso_url", "the sign-on URL must be an http(s) URL");
        }
        if self.certificates.is_empty() {
            return invalid(
                "certificate",
                "at least one signing certificate of the identity provider is required",
            );
        }
        Ok(())
    }
}

/// An identity provider's SAML metadata as fetched from its URL and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMetadata {
    pub xml: String,
    pub entity_id: String,
    pub sso_url: String,
    pub certificates: Vec<String>,
}

/// What one scheduled metadata refresh did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataRefresh {
    /// Nothing to do: the same values, or the tenant no longer uses that URL.
    Unchanged,
    /// New values saved (audited as `sso_metadata_refreshed`).
    Updated { certificates_changed: bool },
    /// The fetch or the document failed; the last good settings stay (audited as
    /// `sso_metadata_refresh_failed`).
    Failed,
}

/// Which kind of principal a subject is pinned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    DashboardUser,
    Account,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::DashboardUser => "dashboard_user",
            PrincipalKind::Account => "account",
        }
    }
}

/// The identity provider's subject for one principal: required from the first sign-in on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectPin {
    pub issuer: String,
    pub subject: String,
}

/// A backup account's own session (its page only; no dashboard rights).
#[derive(Debug, Clone)]
pub struct AccountSessionRecord {
    pub id_hash: SessionHash,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// What the signature layer hands over: values read only from the verified subtree,
/// with samael's checks (Destination, Recipient, Audience, InResponseTo, time windows,
/// Issuer, status) passed.
#[derive(Debug, Clone)]
pub struct VerifiedAssertion {
    pub issuer: String,
    pub name_id: String,
    pub assertion_id: String,
    /// The request id it answers (checked by samael against the outstanding ids).
    pub request_id: String,
    /// The assertion's latest NotOnOrAfter, if it had one.
    pub not_on_or_after: Option<OffsetDateTime>,
}

/// Refused sign-ins per tenant in the current [`REFUSAL_AUDIT_WINDOW`], on this
/// instance: the first [`REFUSAL_AUDITS_PER_WINDOW`] are audited one by one, the rest
/// only counted. Refusals need no credential (anyone can post to an ACS or callback),
/// so this bounds the audit rows an anonymous client can cause to
/// `REFUSAL_AUDITS_PER_WINDOW + 1` per window and tenant and instance. Only tenants
/// with single sign-on configured reach it.
#[derive(Debug, Default)]
pub struct RefusalAudits {
    windows: std::sync::Mutex<std::collections::HashMap<TenantId, RefusalWindow>>,
}

#[derive(Debug)]
struct RefusalWindow {
    started: OffsetDateTime,
    audited: u32,
    suppressed: u64,
}

impl RefusalAudits {
    /// Whether this refusal is audited, and the window before it (start, count) when
    /// that window counted refusals it did not list.
    pub fn admit(
        &self,
        tenant: &TenantId,
        now: OffsetDateTime,
    ) -> (bool, Option<(OffsetDateTime, u64)>) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= 4096 {
            // Past windows with nothing left to report are forgotten.
            windows.retain(|_, w| w.suppressed > 0 || now - w.started < REFUSAL_AUDIT_WINDOW);
        }
        let w = windows.entry(tenant.clone()).or_insert(RefusalWindow {
            started: now,
            audited: 0,
            suppressed: 0,
        });
        let mut unlisted = None;
        if now - w.started >= REFUSAL_AUDIT_WINDOW {
            if w.suppressed > 0 {
                unlisted = Some((w.started, w.suppressed));
            }
            *w = RefusalWindow {
                started: now,
                audited: 0,
                suppressed: 0,
            };
        }
        let audit = if w.audited < REFUSAL_AUDITS_PER_WINDOW {
            w.audited += 1;
            true
        } else {
            w.suppressed = w.suppressed.saturating_add(1);
            false
        };
        (audit, unlisted)
    }
}

/// A successful single sign-on.
#[derive(Debug)]
pub enum SsoSignedIn {
    Dashboard(SessionSecret, DashboardSession),
    Account(SessionSecret),
}

/// A backup account signed in for its own page.
#[derive(Debug, Clone)]
pub struct AccountSession {
    pub account: UserRecord,
}

impl Services {
    pub async fn saml_config(&self, tenant: &TenantId) -> Result<Option<SamlIdpConfig>> {
        self.store.get_saml_config(tenant).await
    }

    /// Saves a tenant's SAML settings (validated; see [`SamlIdpConfig::validate`]).
    pub async fn set_saml_config(
        &self,
        actor: Actor,
        mut config: SamlIdpConfig,
        meta: RequestMeta,
    ) -> Result<SamlIdpConfig> {
        if self.store.get_tenant(&config.tenant_id).await?.is_none() {
            return Err(Error::NotFound("tenant"));
        }
        config.validate()?;
        config.updated_at = self.clock.now();
        let audit = AuditDraft {
            tenant_id: config.tenant_id.clone(),
            actor,
            action: Action::SsoSettingsChanged,
            target_type: "sso",
            target_id: None,
            target_name: Some("saml".into()),
            changes: json!({
                "enabled": config.enabled,
                "issuer": config.idp_entity_id,
                "sso_url": config.sso_url,
                "certificates": config.certificates.len(),
                "metadata_url": config.metadata_url,
                "scope": config.scope,
            }),
            meta,
            at: config.updated_at,
        };
        self.store.put_saml_config(&config, audit).await?;
        Ok(config)
    }

    /// Applies one scheduled refresh of the tenant's metadata URL `url`: new values are
    /// saved over the identity provider's part of the settings (on/off and the scope are
    /// kept); a failure keeps the last good settings. Both are audited with
    /// [`Actor::System`]; an unchanged document writes nothing.
    pub async fn apply_metadata_refresh(
        &self,
        tenant: &TenantId,
        url: &str,
        fetched: std::result::Result<FetchedMetadata, String>,
    ) -> Result<MetadataRefresh> {
        let Some(current) = self.store.get_saml_config(tenant).await? else {
            return Ok(MetadataRefresh::Unchanged);
        };
        // Changed by an administrator since the refresh started: theirs wins.
        if current.metadata_url.as_deref() != Some(url) {
            return Ok(MetadataRefresh::Unchanged);
        }
        let now = self.clock.now();
        let draft = |action, changes| AuditDraft {
            tenant_id: tenant.clone(),
            actor: Actor::System,
            action,
            target_type: "sso",
            target_id: None,
            target_name: Some("saml".into()),
            changes,
            meta: RequestMeta::default(),
            at: now,
        };
        let mut next = current.clone();
        let md = match fetched {
            Ok(md) => md,
            Err(reason) => {
                let d = draft(
                    Action::SsoMetadataRefreshFailed,
                    json!({"metadata_url": url, "reason": reason}),
                );
                self.store.record_audit(d).await?;
                return Ok(MetadataRefresh::Failed);
            }
        };
        next.idp_entity_id = md.entity_id;
        next.sso_url = md.sso_url;
        next.certificates = md.certificates;
        next.metadata_xml = Some(md.xml);
        next.updated_at = now;
        if (&next.idp_entity_id, &next.sso_url, &next.certificates)
            == (
                &current.idp_entity_id,
                &current.sso_url,
                &current.certificates,
            )
        {
            return Ok(MetadataRefresh::Unchanged);
        }
        if let Err(e) = next.validate() {
            let d = draft(
                Action::SsoMetadataRefreshFailed,
                json!({"metadata_url": url, "reason": e.to_string()}),
            );
            self.store.record_audit(d).await?;
            return Ok(MetadataRefresh::Failed);
        }
        let certificates_changed = next.certificates != current.certificates;
        let d = draft(
            Action::SsoMetadataRefreshed,
            json!({
                "metadata_url": url,
                "issuer": next.idp_entity_id,
                "sso_url": next.sso_url,
                "certificates": next.certificates.len(),
                "certificates_changed": certificates_changed,
                "issuer_changed": next.idp_entity_id != current.idp_entity_id,
            }),
        );
        self.store.put_saml_config(&next, d).await?;
        Ok(MetadataRefresh::Updated {
            certificates_changed,
        })
    }

    /// Settings → Single Sign-On: the tenant's SAML settings, for any dashboard user of
    /// the tenant (viewers see them read-only).
    pub async fn sso_settings(&self, ctx: &DashboardCtx) -> Result<Option<SamlIdpConfig>> {
        self.store.get_saml_config(ctx.tenant_id()).await
    }

    /// "Save" on Settings → Single Sign-On: administrators only, for their own tenant.
    pub async fn save_sso_settings(
        &self,
        ctx: &DashboardCtx,
        mut config: SamlIdpConfig,
        meta: RequestMeta,
    ) -> Result<SamlIdpConfig> {
        crate::dashboard::require_admin(ctx)?;
        config.tenant_id = ctx.tenant_id().clone();
        let actor = Actor::DashboardUser {
            id: ctx.user_id.clone(),
            email: ctx.email().to_owned(),
        };
        self.set_saml_config(actor, config, meta).await
    }

    /// Remembers a new AuthnRequest id for the tenant (single use, [`REQUEST_TTL`]).
    pub async fn begin_saml_login(&self, tenant: &TenantId, request_id: &str) -> Result<()> {
        let expires = self.clock.now() + REQUEST_TTL;
        self.store
            .create_sso_request(tenant, request_id, expires, MAX_OUTSTANDING_REQUESTS)
            .await
    }

    /// Of the request ids a response names, those still outstanding for this tenant.
    pub async fn outstanding_saml_requests(
        &self,
        tenant: &TenantId,
        ids: &[String],
    ) -> Result<Vec<String>> {
        self.store
            .outstanding_sso_requests(tenant, ids, self.clock.now())
            .await
    }

    /// Audits a refused attempt. `subject` only when a verified assertion named one.
    pub async fn saml_refused(
        &self,
        tenant: &TenantId,
        reason: &str,
        subject: Option<&str>,
        meta: RequestMeta,
    ) -> Result<()> {
        self.sso_refused(tenant, "saml", reason, subject, meta)
            .await
    }

    /// Audits a refused single sign-on attempt of either protocol (never the assertion
    /// or token itself).
    pub(crate) async fn sso_refused(
        &self,
        tenant: &TenantId,
        protocol: &str,
        reason: &str,
        subject: Option<&str>,
        meta: RequestMeta,
    ) -> Result<()> {
        let now = self.clock.now();
        let (audit, unlisted) = self.refusal_audits.admit(tenant, now);
        if let Some((since, n)) = unlisted {
            // What the last window counted but did not list, written once.
            let summary = AuditDraft {
                tenant_id: tenant.clone(),
                actor: Actor::SingleSignOn { subject: None },
                action: Action::SsoSignInRefused,
                target_type: "sso",
                target_id: None,
                target_name: None,
                changes: json!({
                    "reason": "refusals beyond the audit rate, counted only",
                    "suppressed": n,
                    "since": since.format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                }),
                meta: meta.clone(),
                at: now,
            };
            self.store.record_audit(summary).await?;
        }
        if !audit {
            return Ok(());
        }
        let draft = AuditDraft {
            tenant_id: tenant.clone(),
            actor: Actor::SingleSignOn {
                subject: subject.map(str::to_owned),
            },
            action: Action::SsoSignInRefused,
            target_type: "sso",
            target_id: None,
            target_name: subject.map(str::to_owned),
            changes: json!({"protocol": protocol, "reason": reason}),
            meta,
            at: now,
        };
        self.store.record_audit(draft).await
    }

    /// The rest of a SAML sign-in once the signature and samael's checks passed: single
    /// use of the request id, the replay store, matching inside the tenant, the scope,
    /// account state, the subject pin, then a new session. `Err(reason)` (outer `Ok`) for
    /// a refusal, already audited; nothing is created then.
    pub async fn finish_saml_login(
        &self,
        tenant: &TenantId,
        verified: &VerifiedAssertion,
        previous: Option<&SessionSecret>,
        meta: RequestMeta,
    ) -> Result<std::result::Result<SsoSignedIn, &'static str>> {
        let outcome = self.saml_match(tenant, verified).await?;
        let subject = Some(verified.name_id.as_str());
        let principal = match outcome {
            Ok(p) => p,
            Err(reason) => {
                self.saml_refused(tenant, reason, subject, meta).await?;
                return Ok(Err(reason));
            }
        };
        self.start_sso_session(
            tenant,
            principal,
            previous,
            &verified.name_id,
            json!({"protocol": "saml", "issuer": verified.issuer}),
            meta,
        )
        .await
    }

    /// A new session for a matched principal (the previous one ended: no fixation), and
    /// its `sso_sign_in` audit entry. Shared by SAML and OpenID Connect.
    pub(crate) async fn start_sso_session(
        &self,
        tenant: &TenantId,
        principal: Principal,
        previous: Option<&SessionSecret>,
        subject: &str,
        changes: serde_json::Value,
        meta: RequestMeta,
    ) -> Result<std::result::Result<SsoSignedIn, &'static str>> {
        let now = self.clock.now();
        if let Principal::Mapped(account, role) = principal {
            return self
                .finish_mapped_login(subject, changes, account, role, previous, meta)
                .await;
        }
        let (signed_in, actor, target_type, target_id, target_name) = match principal {
            Principal::Mapped(..) => unreachable!("handled above"),
            Principal::Admin(user) => {
                let (secret, session) = self.start_dashboard_session(&user, previous).await?;
                let actor = Actor::DashboardUser {
                    id: user.id.clone(),
                    email: user.email.clone(),
                };
                (
                    SsoSignedIn::Dashboard(secret, session),
                    actor,
                    "dashboard_user",
                    user.id.to_string(),
                    user.email,
                )
            }
            Principal::Account(account) => {
                if let Some(prev) = previous {
                    self.store.delete_account_session(&prev.hash()).await?;
                }
                let secret = SessionSecret::generate();
                self.store
                    .create_account_session(&AccountSessionRecord {
                        id_hash: secret.hash(),
                        tenant_id: tenant.clone(),
                        user_id: account.id.clone(),
                        created_at: now,
                        last_seen_at: now,
                        expires_at: now + SESSION_ABSOLUTE,
                    })
                    .await?;
                (
                    SsoSignedIn::Account(secret),
                    Actor::SingleSignOn {
                        subject: Some(subject.to_owned()),
                    },
                    "user",
                    account.id.to_string(),
                    account.user_name.as_str().to_owned(),
                )
            }
        };
        let draft = AuditDraft {
            tenant_id: tenant.clone(),
            actor,
            action: Action::SsoSignIn,
            target_type,
            target_id: Some(target_id),
            target_name: Some(target_name),
            changes,
            meta,
            at: now,
        };
        self.store.record_audit(draft).await?;
        Ok(Ok(signed_in))
    }

    async fn saml_match(
        &self,
        tenant: &TenantId,
        v: &VerifiedAssertion,
    ) -> Result<std::result::Result<Principal, &'static str>> {
        let now = self.clock.now();
        let Some(config) = self.store.get_saml_config(tenant).await? else {
            return Ok(Err("single sign-on is not configured"));
        };
        if !config.enabled {
            return Ok(Err("single sign-on is disabled"));
        }
        if v.issuer != config.idp_entity_id {
            return Ok(Err("issuer is not the tenant's identity provider"));
        }
        // Single use, checked after the signature so a forged response cannot burn the
        // id of a sign-in in progress.
        if !self
            .store
            .take_sso_request(tenant, &v.request_id, now)
            .await?
        {
            return Ok(Err("response to an unknown, used or expired request"));
        }
        let keep_until = v
            .not_on_or_after
            .map(|t| t + MAX_CLOCK_SKEW)
            .unwrap_or(now + MAX_REPLAY_WINDOW)
            .min(now + MAX_REPLAY_WINDOW)
            .max(now + MAX_CLOCK_SKEW);
        if !self
            .store
            .record_assertion_id(tenant, &v.assertion_id, keep_until, now)
            .await?
        {
            return Ok(Err("assertion already used (replay)"));
        }
        let name = v.name_id.trim();
        if name.is_empty() {
            return Ok(Err("assertion names no subject"));
        }
        let pin = SubjectPin {
            issuer: v.issuer.clone(),
            subject: name.to_owned(),
        };
        self.match_in_tenant(tenant, &config.scope, name, &pin)
            .await
    }

    /// Matching inside the tenant (shared by SAML and OpenID Connect): `name` equals an
    /// administrator's email (when the scope has admins) or an in-scope, active account's
    /// userName, ignoring case; then the identity provider's subject is pinned to it, or
    /// must equal the one pinned at the first sign-in.
    pub(crate) async fn match_in_tenant(
        &self,
        tenant: &TenantId,
        scope: &SsoScope,
        name: &str,
        pin: &SubjectPin,
    ) -> Result<std::result::Result<Principal, &'static str>> {
        let now = self.clock.now();
        let mut principal = None;
        if scope.admins {
            if let Some(user) = self.store.find_dashboard_user(name).await? {
                // Dashboard emails are unique across tenants; a match in another tenant
                // is no match here.
                // A dashboard user single sign-on made for a group-mapped account is no
                // local administrator: its role comes from its account's groups, below.
                if &user.tenant_id == tenant
                    && user.role == Role::Administrator
                    && self.sso_role_now(&user).await?.is_none()
                {
                    principal = Some(Principal::Admin(user));
                }
            }
        }
        if principal.is_none() {
            if let Some(account) = self.store.find_account_by_user_name(tenant, name).await? {
                if !account.active {
                    return Ok(Err("account is suspended"));
                }
                // A group mapped to a dashboard role is an administrator's explicit grant:
                // it applies whatever the account scope says.
                if let Some(role) = self.store.account_group_role(tenant, &account.id).await? {
                    principal = Some(Principal::Mapped(account, role));
                } else if !scope.includes_account(account.user_name.as_str()) {
                    return Ok(Err("account is not in the SSO scope"));
                } else {
                    principal = Some(Principal::Account(account));
                }
            }
        }
        let Some(principal) = principal else {
            return Ok(Err(
                "no dashboard administrator or account of the tenant matches",
            ));
        };
        let (kind, id) = match &principal {
            Principal::Admin(u) => (PrincipalKind::DashboardUser, u.id.to_string()),
            Principal::Account(a) | Principal::Mapped(a, _) => {
                (PrincipalKind::Account, a.id.to_string())
            }
        };
        let pinned = self
            .store
            .pin_sso_subject(tenant, kind, &id, pin, now)
            .await?;
        if &pinned != pin {
            return Ok(Err(
                "subject differs from the one pinned at the first sign-in",
            ));
        }
        Ok(Ok(principal))
    }

    /// Sign-in of an account that holds a group mapped to a dashboard role: its own
    /// dashboard user (created at the first such sign-in, never with a password; the
    /// role updated at each) and a dashboard session. The role is checked again on every
    /// request ([`Self::sso_role_now`]), so it goes when the identity provider removes
    /// the account from the group.
    async fn finish_mapped_login(
        &self,
        subject: &str,
        changes: serde_json::Value,
        account: UserRecord,
        role: Role,
        previous: Option<&SessionSecret>,
        meta: RequestMeta,
    ) -> Result<std::result::Result<SsoSignedIn, &'static str>> {
        let tenant = &account.tenant_id.clone();
        let now = self.clock.now();
        let email = account.user_name.as_str().to_owned();
        let linked = self
            .store
            .sso_dashboard_user_of(tenant, &account.id)
            .await?;
        // The sign-in page finds dashboard users by email across all tenants: an email
        // held by another dashboard user (a local one, or another tenant's) is not taken
        // over.
        if let Some(holder) = self.store.find_dashboard_user(&email).await? {
            if linked.as_ref() != Some(&holder.id) {
                let reason = "the account's user name is another dashboard user's email";
                let protocol = changes["protocol"].as_str().unwrap_or("sso");
                self.sso_refused(tenant, protocol, reason, Some(subject), meta)
                    .await?;
                return Ok(Err(reason));
            }
        }
        let created = linked.is_none();
        let user = DashboardUser {
            id: linked.unwrap_or_else(DashboardUserId::random),
            tenant_id: tenant.clone(),
            email,
            role,
            password_hash: PasswordHash::from_phc(String::new()),
            created_at: now,
            disabled: false,
            second_factor: false,
        };
        let draft = AuditDraft {
            tenant_id: tenant.clone(),
            actor: Actor::DashboardUser {
                id: user.id.clone(),
                email: user.email.clone(),
            },
            action: Action::SsoSignIn,
            target_type: "dashboard_user",
            target_id: Some(user.id.to_string()),
            target_name: Some(user.email.clone()),
            changes: json!({
                "protocol": changes["protocol"],
                "issuer": changes["issuer"],
                "role": role,
                "role_from_groups": true,
                "account_id": account.id.to_string(),
                "dashboard_user_created": created,
            }),
            meta,
            at: now,
        };
        self.store
            .put_sso_dashboard_user(&user, &account.id, draft)
            .await?;
        let (secret, session) = self.start_dashboard_session(&user, previous).await?;
        Ok(Ok(SsoSignedIn::Dashboard(secret, session)))
    }

    /// For a dashboard user created by single sign-on for a group-mapped account, the
    /// role its account's groups grant now (`Some(None)`: none any more). `None` for
    /// every other dashboard user, whose stored role stands.
    pub(crate) async fn sso_role_now(&self, user: &DashboardUser) -> Result<Option<Option<Role>>> {
        Ok(self
            .store
            .sso_dashboard_role(&user.id)
            .await?
            .map(|linked| linked.role))
    }

    /// Maps a group of the tenant (by display name) to a dashboard role, or removes the
    /// mapping (`None`). Audited.
    pub async fn set_sso_group_role(
        &self,
        actor: Actor,
        tenant: &TenantId,
        group_name: &str,
        role: Option<Role>,
        meta: RequestMeta,
    ) -> Result<SsoGroupRole> {
        if self.store.get_tenant(tenant).await?.is_none() {
            return Err(Error::NotFound("tenant"));
        }
        let Some(group) = self
            .store
            .find_group_by_name(tenant, group_name.trim())
            .await?
        else {
            return Err(Error::NotFound("group"));
        };
        let now = self.clock.now();
        let audit = AuditDraft {
            tenant_id: tenant.clone(),
            actor,
            action: Action::SsoSettingsChanged,
            target_type: "group",
            target_id: Some(group.id.to_string()),
            target_name: Some(group.display_name.clone()),
            changes: json!({"dashboard_role": role}),
            meta,
            at: now,
        };
        self.store
            .set_sso_group_role(tenant, &group.id, role, now, audit)
            .await?;
        Ok(SsoGroupRole {
            group_id: group.id,
            display_name: group.display_name,
            role: role.unwrap_or(Role::Viewer),
        })
    }

    /// The tenant's groups mapped to dashboard roles.
    pub async fn sso_group_roles(&self, tenant: &TenantId) -> Result<Vec<SsoGroupRole>> {
        self.store.sso_group_roles(tenant).await
    }

    /// Settings → Single Sign-On, "Dashboard roles from groups": administrators only.
    pub async fn save_sso_group_role(
        &self,
        ctx: &DashboardCtx,
        group_name: &str,
        role: Option<Role>,
        meta: RequestMeta,
    ) -> Result<SsoGroupRole> {
        crate::dashboard::require_admin(ctx)?;
        let actor = Actor::DashboardUser {
            id: ctx.user_id.clone(),
            email: ctx.email().to_owned(),
        };
        self.set_sso_group_role(actor, ctx.tenant_id(), group_name, role, meta)
            .await
    }

    /// The backup account behind an account session, if the session is live and the
    /// account still active and not deleted.
    pub async fn account_session(&self, secret: &SessionSecret) -> Result<Option<AccountSession>> {
        let now = self.clock.now();
        let hash = secret.hash();
        let Some(rec) = self.store.get_account_session(&hash).await? else {
            return Ok(None);
        };
        if now >= rec.expires_at || now - rec.last_seen_at >= SESSION_IDLE {
            self.store.delete_account_session(&hash).await?;
            return Ok(None);
        }
        let Some(account) = self.store.get_user(&rec.tenant_id, &rec.user_id).await? else {
            self.store.delete_account_session(&hash).await?;
            return Ok(None);
        };
        if !account.active {
            self.store.delete_account_session(&hash).await?;
            return Ok(None);
        }
        if now - rec.last_seen_at >= Duration::seconds(60) {
            self.store.touch_account_session(&hash, now).await?;
        }
        Ok(Some(AccountSession { account }))
    }

    pub async fn end_account_session(&self, secret: &SessionSecret) -> Result<()> {
        self.store.delete_account_session(&secret.hash()).await
    }

    /// A fresh random SAML request id (an XML NCName: it must not start with a digit).
    pub fn new_saml_request_id() -> String {
        format!("_{}", random_hex())
    }
}

pub(crate) enum Principal {
    Admin(DashboardUser),
    Account(UserRecord),
    /// An account holding a group mapped to a dashboard role.
    Mapped(UserRecord, Role),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists_split_on_commas_spaces_and_semicolons() {
        assert_eq!(
            SsoScope::parse_accounts(" a@x.test, b@x.test;c@x.test  d@x.test;;"),
            vec!["a@x.test", "b@x.test", "c@x.test", "d@x.test"]
        );
        let s = SsoScope {
            accounts: vec!["Alice@X.test".into()],
            ..Default::default()
        };
        assert!(s.includes_account("alice@x.TEST"));
        assert!(!s.includes_account("bob@x.test"));
    }

    #[test]
    fn refusals_beyond_the_rate_are_counted_then_reported_once() {
        let r = RefusalAudits::default();
        let t = TenantId::random();
        let other = TenantId::random();
        let at = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let limit = REFUSAL_AUDITS_PER_WINDOW as usize;
        let audited = (0..limit + 500).filter(|_| r.admit(&t, at).0).count();
        assert_eq!(audited, limit, "the rest are only counted");
        assert_eq!(r.admit(&other, at), (true, None), "per tenant");
        // The next window reports the count once, and lists refusals again.
        let next = at + REFUSAL_AUDIT_WINDOW + Duration::seconds(1);
        assert_eq!(r.admit(&t, next), (true, Some((at, 500))));
        assert_eq!(r.admit(&t, next), (true, None));
    }
}
