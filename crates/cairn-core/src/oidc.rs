//! OpenID Connect sign-in (issue 17 item 3): a tenant's OpenID provider and what follows
//! a verified ID token. The token itself (signature, `iss`, `aud`, `exp`, nonce) is
//! checked in `cairn-web` (`sso_oidc` module, on the `openidconnect` crate); this module
//! keeps the authorization requests (state, nonce, PKCE verifier: server-side, single
//! use) and matches the verified claims exactly as SAML does (`crate::sso`): inside the
//! tenant, in scope, active, subject pinned. No account is created here.

use crate::audit::{Action, Actor, AuditDraft, RequestMeta};
use crate::auth::DashboardCtx;
use crate::ids::TenantId;
use crate::service::Services;
use crate::session::{random_hex, SessionSecret};
use crate::sso::{SsoScope, SsoSignedIn, SubjectPin, REQUEST_TTL};
use crate::{Error, Result};
use serde_json::json;
use time::OffsetDateTime;

/// A client secret: never printed by `Debug`, never rendered back.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn new(s: impl Into<String>) -> Self {
        ClientSecret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret(…)")
    }
}

/// A tenant's OpenID provider. When enabled, `/sso/{tenant}/login` uses it instead of
/// SAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    pub tenant_id: TenantId,
    pub enabled: bool,
    /// The issuer: discovery is read from `{issuer}/.well-known/openid-configuration`,
    /// and ID tokens must carry exactly this `iss`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: ClientSecret,
    pub scope: SsoScope,
    pub updated_at: OffsetDateTime,
}

impl OidcConfig {
    pub fn validate(&self) -> Result<()> {
        let invalid = |field, reason: &str| {
            Err(Error::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if !(self.issuer.starts_with("https://") || self.issuer.starts_with("http://")) {
            return invalid("issuer", "the issuer must be an http(s) URL");
        }
        if self.client_id.trim().is_empty() {
            return invalid("client_id", "the client id is required");
        }
        if self.client_secret.expose().is_empty() {
            return invalid("client_secret", "the client secret is required");
        }
        Ok(())
    }
}

/// An authorization request in progress, found by its `state`.
#[derive(Clone, PartialEq, Eq)]
pub struct OidcRequest {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub expires_at: OffsetDateTime,
}

impl std::fmt::Debug for OidcRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcRequest")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What the token layer hands over: claims of an ID token whose signature, issuer,
/// audience, expiry and nonce were checked (userinfo claims only for the same `sub`).
#[derive(Debug, Clone)]
pub struct VerifiedIdToken {
    pub issuer: String,
    pub subject: String,
    pub preferred_username: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
}

impl VerifiedIdToken {
    /// The names to match, in order: `preferred_username`, then `email` only when the
    /// provider says it is verified (sso reference §5.4; OIDC Core §5.1 `email_verified`).
    pub fn candidate_names(&self) -> Vec<&str> {
        let mut out = Vec::new();
        if let Some(p) = self.preferred_username.as_deref().map(str::trim) {
            if !p.is_empty() {
                out.push(p);
            }
        }
        if self.email_verified {
            if let Some(e) = self.email.as_deref().map(str::trim) {
                if !e.is_empty() && !out.iter().any(|o| o.eq_ignore_ascii_case(e)) {
                    out.push(e);
                }
            }
        }
        out
    }
}

const NO_MATCH: &str = "no dashboard administrator or account of the tenant matches";

impl Services {
    pub async fn oidc_config(&self, tenant: &TenantId) -> Result<Option<OidcConfig>> {
        self.store.get_oidc_config(tenant).await
    }

    /// Saves a tenant's OpenID Connect settings. The audit entry never holds the secret.
    pub async fn set_oidc_config(
        &self,
        actor: Actor,
        mut config: OidcConfig,
        meta: RequestMeta,
    ) -> Result<OidcConfig> {
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
            target_name: Some("oidc".into()),
            changes: json!({
                "enabled": config.enabled,
                "issuer": config.issuer,
                "client_id": config.client_id,
                "scope": config.scope,
            }),
            meta,
            at: config.updated_at,
        };
        self.store.put_oidc_config(&config, audit).await?;
        Ok(config)
    }

    /// Settings → Single Sign-On: the tenant's OpenID Connect settings, for any dashboard
    /// user of the tenant (the page shows only whether a secret is set).
    pub async fn oidc_settings(&self, ctx: &DashboardCtx) -> Result<Option<OidcConfig>> {
        self.store.get_oidc_config(ctx.tenant_id()).await
    }

    /// "Save OpenID Connect" on Settings → Single Sign-On: administrators only, for their
    /// own tenant. The client secret is write-only: `None` keeps the saved one. The scope
    /// carries over from the saved OpenID or SAML settings (set it with the SAML form's
    /// scope or `cairn sso scope`).
    pub async fn save_oidc_settings(
        &self,
        ctx: &DashboardCtx,
        enabled: bool,
        issuer: String,
        client_id: String,
        client_secret: Option<ClientSecret>,
        meta: RequestMeta,
    ) -> Result<OidcConfig> {
        crate::dashboard::require_admin(ctx)?;
        let tenant = ctx.tenant_id().clone();
        let saved = self.store.get_oidc_config(&tenant).await?;
        let scope = match &saved {
            Some(c) => c.scope.clone(),
            None => self
                .store
                .get_saml_config(&tenant)
                .await?
                .map(|c| c.scope)
                .unwrap_or_default(),
        };
        let client_secret = match (client_secret, saved) {
            (Some(s), _) => s,
            (None, Some(c)) => c.client_secret,
            (None, None) => ClientSecret::new(""),
        };
        let actor = Actor::DashboardUser {
            id: ctx.user_id.clone(),
            email: ctx.email().to_owned(),
        };
        let config = OidcConfig {
            tenant_id: tenant,
            enabled,
            issuer,
            client_id,
            client_secret,
            scope,
            updated_at: self.clock.now(),
        };
        self.set_oidc_config(actor, config, meta).await
    }

    /// The "Enable SSO for" part of Settings → Single Sign-On, for the tenant's OpenID
    /// Connect settings (administrators only). `false` when the tenant has none; an
    /// unchanged scope writes nothing.
    pub async fn save_oidc_scope(
        &self,
        ctx: &DashboardCtx,
        scope: SsoScope,
        meta: RequestMeta,
    ) -> Result<bool> {
        crate::dashboard::require_admin(ctx)?;
        let Some(mut config) = self.store.get_oidc_config(ctx.tenant_id()).await? else {
            return Ok(false);
        };
        if config.scope != scope {
            config.scope = scope;
            let actor = Actor::DashboardUser {
                id: ctx.user_id.clone(),
                email: ctx.email().to_owned(),
            };
            self.set_oidc_config(actor, config, meta).await?;
        }
        Ok(true)
    }

    /// A new authorization request for the tenant: random state and nonce, the PKCE
    /// verifier given by the caller, stored for [`REQUEST_TTL`].
    pub async fn begin_oidc_login(
        &self,
        tenant: &TenantId,
        pkce_verifier: String,
    ) -> Result<OidcRequest> {
        let req = OidcRequest {
            state: random_hex(),
            nonce: random_hex(),
            pkce_verifier,
            expires_at: self.clock.now() + REQUEST_TTL,
        };
        self.store
            .create_oidc_request(tenant, &req, crate::sso::MAX_OUTSTANDING_REQUESTS)
            .await?;
        Ok(req)
    }

    /// Uses up the request a callback's `state` names (before the code is redeemed).
    pub async fn take_oidc_request(
        &self,
        tenant: &TenantId,
        state: &str,
    ) -> Result<Option<OidcRequest>> {
        self.store
            .take_oidc_request(tenant, state, self.clock.now())
            .await
    }

    /// Audits a refused OpenID Connect attempt.
    pub async fn oidc_refused(
        &self,
        tenant: &TenantId,
        reason: &str,
        subject: Option<&str>,
        meta: RequestMeta,
    ) -> Result<()> {
        self.sso_refused(tenant, "oidc", reason, subject, meta)
            .await
    }

    /// The rest of an OpenID Connect sign-in once the ID token was verified: the issuer
    /// is the tenant's, then matching as for SAML, pinning `(iss, sub)`, a new session.
    /// `Err(reason)` (outer `Ok`) for a refusal, already audited; nothing is created then.
    pub async fn finish_oidc_login(
        &self,
        tenant: &TenantId,
        token: &VerifiedIdToken,
        previous: Option<&SessionSecret>,
        meta: RequestMeta,
    ) -> Result<std::result::Result<SsoSignedIn, &'static str>> {
        let outcome = self.oidc_match(tenant, token).await?;
        let subject = Some(token.subject.as_str());
        let principal = match outcome {
            Ok(p) => p,
            Err(reason) => {
                self.oidc_refused(tenant, reason, subject, meta).await?;
                return Ok(Err(reason));
            }
        };
        self.start_sso_session(
            tenant,
            principal,
            previous,
            &token.subject,
            json!({"protocol": "oidc", "issuer": token.issuer}),
            meta,
        )
        .await
    }

    async fn oidc_match(
        &self,
        tenant: &TenantId,
        t: &VerifiedIdToken,
    ) -> Result<std::result::Result<crate::sso::Principal, &'static str>> {
        let Some(config) = self.store.get_oidc_config(tenant).await? else {
            return Ok(Err("single sign-on is not configured"));
        };
        if !config.enabled {
            return Ok(Err("single sign-on is disabled"));
        }
        if t.issuer != config.issuer {
            return Ok(Err("issuer is not the tenant's identity provider"));
        }
        if t.subject.is_empty() {
            return Ok(Err("ID token names no subject"));
        }
        let pin = SubjectPin {
            issuer: t.issuer.clone(),
            subject: t.subject.clone(),
        };
        let names = t.candidate_names();
        if names.is_empty() {
            return Ok(Err(
                "ID token has no preferred_username and no verified email",
            ));
        }
        for name in names {
            match self
                .match_in_tenant(tenant, &config.scope, name, &pin)
                .await?
            {
                Err(NO_MATCH) => continue,
                other => return Ok(other),
            }
        }
        Ok(Err(NO_MATCH))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_counts_only_when_verified() {
        let mut t = VerifiedIdToken {
            issuer: "https://idp.test".into(),
            subject: "s".into(),
            preferred_username: None,
            email: Some("a@x.test".into()),
            email_verified: false,
        };
        assert!(t.candidate_names().is_empty());
        t.email_verified = true;
        assert_eq!(t.candidate_names(), vec!["a@x.test"]);
        t.preferred_username = Some("A@x.test".into());
        assert_eq!(t.candidate_names(), vec!["A@x.test"]);
    }

    #[test]
    fn secrets_are_not_debug_printed() {
        let s = ClientSecret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
