//! SP-initiated SAML 2.0 single sign-on per tenant (issue 17):
//!
//! - `GET /sso/{tenant}/saml/metadata`: our SP metadata (entity id, ACS URL);
//! - `GET /sso/{tenant}/login`: an AuthnRequest over the HTTP-Redirect binding, its id
//!   kept server-side (single use); RelayState is an opaque random value, never a URL;
//! - `POST /sso/{tenant}/saml/acs`: the HTTP-POST response. The signature is verified by
//!   samael/xmlsec1 against the tenant's configured certificates only, and only the
//!   signed subtree is read; samael checks Destination, Recipient, Audience,
//!   InResponseTo, the time windows and the Issuer; `cairn_core::sso` then uses the
//!   request id up, records the assertion id (replay), matches the subject inside the
//!   tenant and starts the session;
//! - `GET /me`: a backup account's own page (status, quota, used space, repository URL).
//! - `POST /me/backup-key`, `POST /me/backup-key/revoke`: its own device keys
//!   (`crate::dashboard::backup_keys`).
//!
//! The ACS receives a cross-site POST, which carries no `SameSite=Strict` cookie, so the
//! pending request is found by its id in the store, not by a cookie. After sign-in the
//! answer is a small page that moves on by `<meta http-equiv="refresh">`: a navigation
//! started by our own page, so the browser sends the new `SameSite=Strict` cookie with it.

use crate::dashboard::session::{cookie, secure, session_cookie, set_cookie};
use crate::dashboard::{render, PageError};
use crate::idp_fetch::{IdpHttp, MAX_METADATA};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use cairn_core::audit::RequestMeta;
use cairn_core::ids::TenantId;
use cairn_core::service::Services;
use cairn_core::session::{random_hex, SessionSecret, SESSION_ABSOLUTE};
use cairn_core::sso::{
    FetchedMetadata, MetadataRefresh, SamlIdpConfig, SsoSignedIn, VerifiedAssertion, MAX_CLOCK_SKEW,
};
use samael::crypto::AllowedSignatureAlgorithm;
use samael::key_info::{KeyInfo, X509Data};
use samael::metadata::{Endpoint, EntityDescriptor, IdpSsoDescriptor, KeyDescriptor};
use samael::schema::Assertion;
use samael::service_provider::{Error as SamlError, ServiceProvider};
use time::OffsetDateTime;

/// The largest SAMLResponse form accepted (base64 inside a form): real responses are a
/// few KiB; the cap bounds what reaches the XML parser.
pub const MAX_ACS_BODY: usize = 256 * 1024;

const HTTP_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
const HTTP_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sso/{tenant}/saml/metadata", get(metadata))
        .route("/sso/{tenant}/login", get(login))
        .route("/sso/{tenant}/saml/acs", post(acs))
        .route("/me", get(my_account))
        .route("/me/logout", post(my_logout))
        // Device keys: the signed-in backup account's own keys.
        .route(
            "/me/backup-key",
            post(crate::dashboard::backup_keys::create_own_backup_key),
        )
        .route(
            "/me/backup-key/revoke",
            post(crate::dashboard::backup_keys::revoke_own_backup_key),
        )
        .layer(axum::middleware::from_fn(
            crate::dashboard::security_headers,
        ))
}

/// Our SP entity id for a tenant (also the URL of its metadata).
pub fn sp_entity_id(public_url: &str, tenant: &TenantId) -> String {
    format!("{public_url}/sso/{tenant}/saml/metadata")
}

/// Our Assertion Consumer Service URL for a tenant (Entra's "Reply URL").
pub fn acs_url(public_url: &str, tenant: &TenantId) -> String {
    format!("{public_url}/sso/{tenant}/saml/acs")
}

/// The SP-initiated sign-on URL for a tenant.
pub fn login_url(public_url: &str, tenant: &TenantId) -> String {
    format!("{public_url}/sso/{tenant}/login")
}

/// The cookie of a backup account's own session.
pub fn account_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-cairn_account"
    } else {
        "cairn_account"
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

pub(crate) fn not_found() -> Response {
    PageError::new(
        StatusCode::NOT_FOUND,
        "Single sign-on is not available",
        "This organisation has not set up single sign-on.",
    )
    .into_response()
}

pub(crate) fn refused_page() -> Response {
    PageError::new(
        StatusCode::FORBIDDEN,
        "Sign-in refused",
        "Your identity provider's answer could not be accepted. Start again from your \
         organisation's sign-in link; if it keeps failing, ask an administrator (the \
         reason is in the organisation's activity log).",
    )
    .into_response()
}

pub(crate) fn unavailable(e: cairn_core::Error) -> Response {
    tracing::error!(error = %e, "single sign-on failed");
    PageError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        "Signing in is not possible right now. Try again in a moment.",
    )
    .into_response()
}

/// The tenant of the path and its enabled SAML configuration, or the page to answer.
async fn enabled_config(
    services: &Services,
    tenant: &str,
) -> Result<(TenantId, SamlIdpConfig), Response> {
    let Some(tenant) = TenantId::parse(tenant) else {
        return Err(not_found());
    };
    match services.saml_config(&tenant).await {
        Ok(Some(c)) if c.enabled && !c.certificates.is_empty() => Ok((tenant, c)),
        Ok(_) => Err(not_found()),
        Err(e) => Err(unavailable(e)),
    }
}

pub async fn metadata(State(state): State<AppState>, Path(tenant): Path<String>) -> Response {
    let Some(tenant) = TenantId::parse(&tenant) else {
        return not_found();
    };
    match state.services.store.get_tenant(&tenant).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_found(),
        Err(e) => return unavailable(e),
    }
    let base = &state.services.public_url;
    let entity = xml_escape(&sp_entity_id(base, &tenant));
    let acs = xml_escape(&acs_url(base, &tenant));
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{entity}">
  <md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:AssertionConsumerService Binding="{HTTP_POST}" Location="{acs}" index="0" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"#
    );
    (
        [(header::CONTENT_TYPE, "application/samlmetadata+xml")],
        xml,
    )
        .into_response()
}

/// Builds samael's view of the tenant's IdP: entity id, SSO URL and signing certificates.
fn idp_metadata(config: &SamlIdpConfig) -> EntityDescriptor {
    EntityDescriptor {
        entity_id: Some(config.idp_entity_id.clone()),
        idp_sso_descriptors: Some(vec![IdpSsoDescriptor {
            protocol_support_enumeration: Some("urn:oasis:names:tc:SAML:2.0:protocol".into()),
            key_descriptors: vec![KeyDescriptor {
                key_use: Some("signing".into()),
                key_info: KeyInfo {
                    id: None,
                    x509_data: Some(X509Data {
                        certificates: config.certificates.clone(),
                    }),
                },
                encryption_methods: None,
            }],
            single_sign_on_services: vec![Endpoint {
                binding: HTTP_REDIRECT.into(),
                location: config.sso_url.clone(),
                response_location: None,
            }],
            id: None,
            valid_until: None,
            cache_duration: None,
            error_url: None,
            signature: None,
            organization: None,
            contact_people: vec![],
            artifact_resolution_service: vec![],
            single_logout_services: vec![],
            manage_name_id_services: vec![],
            name_id_formats: vec![],
            want_authn_requests_signed: None,
            name_id_mapping_services: vec![],
            assertion_id_request_services: vec![],
            attribute_profiles: vec![],
            attributes: vec![],
        }]),
        ..EntityDescriptor::default()
    }
}

fn service_provider(
    public_url: &str,
    tenant: &TenantId,
    config: &SamlIdpConfig,
) -> ServiceProvider {
    ServiceProvider {
        entity_id: Some(sp_entity_id(public_url, tenant)),
        metadata_url: Some(sp_entity_id(public_url, tenant)),
        acs_url: Some(acs_url(public_url, tenant)),
        slo_url: None,
        idp_metadata: idp_metadata(config),
        allow_idp_initiated: false,
        max_clock_skew: chrono_secs(MAX_CLOCK_SKEW.whole_seconds()),
        // SHA-1 is not accepted (RFC 9231 §2.2 lists it as deprecated for signatures).
        allowed_signature_algorithms: Some(vec![
            AllowedSignatureAlgorithm::RsaSha256,
            AllowedSignatureAlgorithm::RsaSha384,
            AllowedSignatureAlgorithm::RsaSha512,
            AllowedSignatureAlgorithm::EcdsaSha256,
            AllowedSignatureAlgorithm::EcdsaSha384,
            AllowedSignatureAlgorithm::EcdsaSha512,
        ]),
        ..ServiceProvider::default()
    }
}

fn chrono_secs(s: i64) -> chrono::Duration {
    chrono::Duration::seconds(s)
}

pub async fn login(State(state): State<AppState>, Path(tenant): Path<String>) -> Response {
    // A tenant whose OpenID Connect settings are enabled signs in there instead.
    if let Some(t) = TenantId::parse(&tenant) {
        match crate::sso_oidc::enabled_config(&state, &t).await {
            Ok(Some(c)) => return crate::sso_oidc::login(&state, &t, &c).await,
            Ok(None) => {}
            Err(e) => return unavailable(e),
        }
    }
    let (tenant, config) = match enabled_config(&state.services, &tenant).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let sp = service_provider(&state.services.public_url, &tenant, &config);
    let mut request = match sp.make_authentication_request(&config.sso_url) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "building an AuthnRequest failed");
            return unavailable(cairn_core::Error::Internal("authn request".into()));
        }
    };
    // samael's own ids carry 32 random bits; ours carry 256.
    request.id = Services::new_saml_request_id();
    if let Err(e) = state.services.begin_saml_login(&tenant, &request.id).await {
        return unavailable(e);
    }
    match request.redirect(&random_hex()) {
        Ok(Some(url)) => Redirect::to(url.as_str()).into_response(),
        _ => unavailable(cairn_core::Error::Internal("authn request redirect".into())),
    }
}

/// The request ids a response names (`InResponseTo` anywhere in it), read without
/// trusting them: they only select which outstanding ids samael may accept, and samael
/// compares them with the values inside the verified subtree.
fn named_request_ids(xml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find("InResponseTo=") {
        rest = &rest[i + "InResponseTo=".len()..];
        let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        rest = &rest[1..];
        if let Some(end) = rest.find(q) {
            let v = &rest[..end];
            if v.len() <= 128 && !out.iter().any(|o| o == v) {
                out.push(v.to_owned());
            }
            rest = &rest[end..];
        }
        if out.len() >= 8 {
            break;
        }
    }
    out
}

/// How many `Assertion`/`EncryptedAssertion` elements the document has, whatever their
/// prefix.
fn assertion_elements(xml: &str) -> usize {
    xml.match_indices('<')
        .filter(|(i, _)| {
            let name: String = xml[i + 1..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '>' && *c != '/')
                .collect();
            let local = name.rsplit(':').next().unwrap_or("");
            local == "Assertion" || local == "EncryptedAssertion"
        })
        .count()
}

fn reason_of(e: &SamlError) -> &'static str {
    match e {
        SamlError::FailedToValidateSignature => {
            "signature missing or not by the configured certificate"
        }
        SamlError::DestinationValidationError { .. } => "wrong Destination",
        SamlError::AssertionRecipientMismatch { .. } => "wrong Recipient",
        SamlError::AssertionConditionAudienceRestrictionFailed { .. } => "wrong Audience",
        SamlError::AssertionInResponseToInvalid { .. }
        | SamlError::ResponseInResponseToInvalid { .. } => "unsolicited or unknown InResponseTo",
        SamlError::AssertionExpired { .. }
        | SamlError::ResponseExpired { .. }
        | SamlError::AssertionConditionExpired { .. }
        | SamlError::AssertionSubjectConfirmationExpired { .. } => "expired",
        SamlError::AssertionConditionExpiredBefore { .. }
        | SamlError::AssertionSubjectConfirmationExpiredBefore { .. } => "not yet valid",
        SamlError::AssertionIssuerMismatch { .. } | SamlError::ResponseIssuerMismatch { .. } => {
            "wrong Issuer"
        }
        SamlError::ResponseBadStatusCode { .. } => "identity provider reported a failure",
        SamlError::AssertionBearerSubjectConfirmationMissing
        | SamlError::AssertionSubjectConfirmationMissing => "no bearer subject confirmation",
        _ => "response could not be parsed or validated",
    }
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t.timestamp()).ok()
}

/// Values for the core from samael's verified assertion, with the checks samael leaves
/// optional made mandatory: an AudienceRestriction naming us, a NameID, and a bearer
/// confirmation answering one of the outstanding requests.
fn verified(
    a: &Assertion,
    entity_id: &str,
    outstanding: &[String],
) -> Result<VerifiedAssertion, &'static str> {
    let conditions = a.conditions.as_ref().ok_or("no Conditions")?;
    let audience_ok = conditions
        .audience_restrictions
        .iter()
        .flatten()
        .any(|r| r.audience.iter().any(|x| x == entity_id));
    if !audience_ok {
        return Err("wrong Audience");
    }
    let subject = a.subject.as_ref().ok_or("no Subject")?;
    let name_id = subject
        .name_id
        .as_ref()
        .map(|n| n.value.trim().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or("no NameID")?;
    let mut request_id = None;
    let mut not_on_or_after = conditions.not_on_or_after.and_then(ts);
    for c in subject.subject_confirmations.iter().flatten() {
        let Some(d) = &c.subject_confirmation_data else {
            continue;
        };
        if let Some(id) = d
            .in_response_to
            .as_ref()
            .filter(|i| outstanding.contains(i))
        {
            request_id = Some(id.clone());
            if let Some(t) = d.not_on_or_after.and_then(ts) {
                not_on_or_after = Some(not_on_or_after.map_or(t, |n| n.max(t)));
            }
        }
    }
    Ok(VerifiedAssertion {
        issuer: a.issuer.value.clone().unwrap_or_default(),
        name_id,
        assertion_id: a.id.clone(),
        request_id: request_id.ok_or("unsolicited or unknown InResponseTo")?,
        not_on_or_after,
    })
}

pub(crate) fn meta_of(headers: &HeaderMap) -> RequestMeta {
    RequestMeta {
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
        request_id: headers
            .get(crate::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

#[derive(Template)]
#[template(path = "sso_done.html")]
struct DonePage {
    nav: Option<crate::dashboard::Nav>,
    next: String,
}

pub async fn acs(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    req: Request,
) -> Response {
    let services = &state.services;
    let (tenant, config) = match enabled_config(services, &tenant).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let headers = req.headers().clone();
    let meta = meta_of(&headers);
    let refuse = |reason: &'static str, subject: Option<String>| {
        let services = services.clone();
        let tenant = tenant.clone();
        let meta = meta.clone();
        async move {
            tracing::info!(%tenant, reason, "single sign-on refused");
            match services
                .saml_refused(&tenant, reason, subject.as_deref(), meta)
                .await
            {
                Ok(()) => refused_page(),
                Err(e) => unavailable(e),
            }
        }
    };
    let Ok(body) = axum::body::to_bytes(req.into_body(), MAX_ACS_BODY).await else {
        return refuse("response too large", None).await;
    };
    let Some(encoded) = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "SAMLResponse")
        .map(|(_, v)| v.into_owned())
    else {
        return refuse("no SAMLResponse", None).await;
    };
    let encoded: String = encoded.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(xml) = base64::engine::general_purpose::STANDARD
        .decode(encoded.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return refuse("SAMLResponse is not base64 of UTF-8 XML", None).await;
    };
    // SAML never needs a DTD; refusing one keeps entity tricks (XXE, billion laughs)
    // away from libxml2 (OWASP SAML Security Cheat Sheet).
    if xml.contains("<!DOCTYPE") || xml.contains("<!ENTITY") {
        return refuse("document type declaration", None).await;
    }
    let named = named_request_ids(&xml);
    let outstanding = match services.outstanding_saml_requests(&tenant, &named).await {
        Ok(o) => o,
        Err(e) => return unavailable(e),
    };
    if outstanding.is_empty() {
        return refuse("unsolicited or unknown InResponseTo", None).await;
    }
    if config.certificates.is_empty() {
        // samael would skip verification (footgun 1); never reached: configs without
        // a certificate are not saved and not enabled.
        return refuse("no signing certificate configured", None).await;
    }
    let sp = service_provider(&services.public_url, &tenant, &config);
    let entity_id = sp_entity_id(&services.public_url, &tenant);
    let ids = outstanding.clone();
    let xml_for_check = xml.clone();
    let parsed = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        sp.parse_xml_response(&xml_for_check, Some(&refs))
            .map_err(|e| reason_of(&e))
    })
    .await;
    let assertion = match parsed {
        Ok(Ok(a)) => a,
        Ok(Err(reason)) => return refuse(reason, None).await,
        Err(e) => return unavailable(cairn_core::Error::Internal(format!("saml task: {e}"))),
    };
    // Defence in depth beside samael's reduction to the signed subtree: exactly one
    // assertion in the whole document (OWASP: reject multiple assertions).
    if assertion_elements(&xml) != 1 {
        return refuse("more than one assertion", None).await;
    }
    // samael checks the Response's Destination only when the Response itself is signed
    // (it drops an unsigned wrapper). When only the assertion is signed, the signed
    // Recipient is what binds it to us; a Destination naming someone else still means
    // the response was not meant for this ACS (SAML Bindings §3.5.5.2), so refuse it.
    match xml.parse::<samael::schema::Response>() {
        Ok(r)
            if r.destination
                .as_deref()
                .is_some_and(|d| d != acs_url(&services.public_url, &tenant)) =>
        {
            return refuse("wrong Destination", None).await;
        }
        _ => {}
    }
    let v = match verified(&assertion, &entity_id, &outstanding) {
        Ok(v) => v,
        Err(reason) => return refuse(reason, None).await,
    };
    let previous = previous_secret(&headers, &services.public_url);
    match services
        .finish_saml_login(&tenant, &v, previous.as_ref(), meta.clone())
        .await
    {
        Ok(Ok(signed_in)) => signed_in_response(&services.public_url, signed_in),
        Ok(Err(_)) => refused_page(),
        Err(e) => unavailable(e),
    }
}

/// The session a browser presents (dashboard or account), ended when SSO starts a new one.
pub(crate) fn previous_secret(headers: &HeaderMap, public_url: &str) -> Option<SessionSecret> {
    let sec = secure(public_url);
    crate::dashboard::session::presented_secret(headers, public_url)
        .or_else(|| cookie(headers, account_cookie_name(sec)).and_then(SessionSecret::parse))
}

/// The page that sets the new session's cookie and moves on (dashboard or `/me`).
pub(crate) fn signed_in_response(public_url: &str, signed_in: SsoSignedIn) -> Response {
    let sec = secure(public_url);
    match signed_in {
        SsoSignedIn::Dashboard(secret, _) => {
            let mut res = render(
                StatusCode::OK,
                &DonePage {
                    nav: None,
                    next: "/accounts".into(),
                },
            );
            let h = res.headers_mut();
            h.append(header::SET_COOKIE, session_cookie(&secret, sec));
            h.append(
                header::SET_COOKIE,
                set_cookie(account_cookie_name(sec), "", 0, sec),
            );
            res
        }
        SsoSignedIn::Account(secret) => {
            let mut res = render(
                StatusCode::OK,
                &DonePage {
                    nav: None,
                    next: "/me".into(),
                },
            );
            let h = res.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(
                    account_cookie_name(sec),
                    secret.expose(),
                    SESSION_ABSOLUTE.whole_seconds(),
                    sec,
                ),
            );
            h.append(
                header::SET_COOKIE,
                crate::dashboard::session::clear_session_cookie(sec),
            );
            res
        }
    }
}

#[derive(Template)]
#[template(path = "my_account.html")]
pub(crate) struct MyAccountPage {
    nav: Option<crate::dashboard::Nav>,
    account: crate::dashboard::view::AccountRow,
    repository: String,
    notice: Option<String>,
    /// The account's own backup keys (device keys), with the forms to add and revoke.
    pub(crate) keys: crate::dashboard::backup_keys::KeysSection,
    /// Backup freshness (last snapshot, last upload).
    backup: crate::dashboard::view::BackupView,
    /// restic commands with the repository filled in (the placeholder for the key until
    /// [`MyAccountPage::with_new_key`]).
    pub(crate) restic: crate::restic_commands::ResticCommands,
}

impl MyAccountPage {
    pub(crate) async fn load(
        state: &AppState,
        session: &cairn_core::sso::AccountSession,
        secret: &SessionSecret,
        notice: Option<String>,
    ) -> cairn_core::Result<Self> {
        let a = &session.account;
        let svc = &state.services;
        let keys = svc.backup_keys_of(a).await?;
        let tenant = svc.tenant(&a.tenant_id).await?;
        let now = svc.clock.now();
        let freshness = svc
            .freshness_of(&a.tenant_id, std::slice::from_ref(&a.id))
            .await?
            .into_iter()
            .next()
            .map(|(_, f)| f)
            .unwrap_or_default();
        let repository = svc.repository_url(&a.tenant_id, &a.id, None);
        Ok(MyAccountPage {
            nav: None,
            account: crate::dashboard::view::AccountRow::of(a),
            backup: crate::dashboard::view::BackupView::of(
                &freshness,
                now,
                tenant.stale_days.cutoff(now),
            ),
            restic: crate::restic_commands::ResticCommands::new(
                &crate::restic_commands::with_placeholder(&repository),
                false,
            ),
            repository,
            notice,
            keys: crate::dashboard::backup_keys::KeysSection::new(
                &keys,
                state.services.clock.now(),
                "/me".into(),
                crate::dashboard::backup_keys::account_csrf(secret),
                true,
                a.active,
            ),
        })
    }
}

impl MyAccountPage {
    /// Shows a key made by this request once: in the key section and in the commands.
    pub(crate) fn with_new_key(mut self, key: crate::dashboard::backup_keys::NewKeyView) -> Self {
        self.restic = crate::restic_commands::ResticCommands::new(&key.repository, true);
        self.keys.new_key = Some(key);
        self
    }
}

/// The signed-in backup account of a request to `/me…`, with its cookie's secret.
pub(crate) async fn my_session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(cairn_core::sso::AccountSession, SessionSecret), Response> {
    let sec = secure(&state.services.public_url);
    let Some(secret) = cookie(headers, account_cookie_name(sec)).and_then(SessionSecret::parse)
    else {
        return Err(not_signed_in());
    };
    match state.services.account_session(&secret).await {
        Ok(Some(s)) => Ok((s, secret)),
        Ok(None) => Err(not_signed_in()),
        Err(e) => Err(unavailable(e)),
    }
}

/// A backup account's own page, for its session from single sign-on.
pub async fn my_account(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (s, secret) = match my_session(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match MyAccountPage::load(&state, &s, &secret, None).await {
        Ok(page) => render(StatusCode::OK, &page),
        Err(e) => unavailable(e),
    }
}

fn not_signed_in() -> Response {
    PageError::new(
        StatusCode::UNAUTHORIZED,
        "Not signed in",
        "Sign in through your organisation's single sign-on link to see your backup account.",
    )
    .into_response()
}

/// Ends a backup account's session (origin-checked, like every POST).
pub async fn my_logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !crate::dashboard::csrf::same_origin(&headers, &state.services.public_url) {
        return crate::dashboard::csrf::refused().into_response();
    }
    let sec = secure(&state.services.public_url);
    if let Some(secret) = cookie(&headers, account_cookie_name(sec)).and_then(SessionSecret::parse)
    {
        if let Err(e) = state.services.end_account_session(&secret).await {
            tracing::warn!(error = %e, "account sign-out failed");
        }
    }
    let mut res =
        PageError::new(StatusCode::OK, "Signed out", "You have been signed out.").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(account_cookie_name(sec), "", 0, sec),
    );
    res
}

/// What an identity provider's metadata says about signing in to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpMetadata {
    pub entity_id: String,
    /// The SingleSignOnService with the HTTP-Redirect binding.
    pub sso_url: String,
    /// Signing certificates (base64 DER, whitespace removed).
    pub certificates: Vec<String>,
}

/// Reads an IdP's SAML metadata document (an `EntityDescriptor` with an
/// `IDPSSODescriptor`). Refuses documents with a DTD, and ones without a signing
/// certificate or an HTTP-Redirect sign-on URL.
pub fn parse_idp_metadata(xml: &str) -> Result<IdpMetadata, String> {
    if xml.contains("<!DOCTYPE") || xml.contains("<!ENTITY") {
        return Err("the metadata has a document type declaration".into());
    }
    let ed: EntityDescriptor = xml
        .parse()
        .map_err(|e| format!("not SAML metadata (an EntityDescriptor): {e}"))?;
    let entity_id = ed
        .entity_id
        .clone()
        .filter(|e| !e.trim().is_empty())
        .ok_or("the metadata has no entityID")?;
    let idp = ed
        .idp_sso_descriptors
        .as_ref()
        .and_then(|d| d.first())
        .ok_or("the metadata describes no identity provider (IDPSSODescriptor)")?;
    let sso_url = idp
        .single_sign_on_services
        .iter()
        .find(|e| e.binding == HTTP_REDIRECT)
        .map(|e| e.location.clone())
        .ok_or("the identity provider has no HTTP-Redirect SingleSignOnService")?;
    let signing =
        |k: &&KeyDescriptor| matches!(k.key_use.as_deref(), Some("signing") | None | Some(""));
    let certificates: Vec<String> = idp
        .key_descriptors
        .iter()
        .filter(signing)
        .filter_map(|k| k.key_info.x509_data.as_ref())
        .flat_map(|d| d.certificates.iter())
        .map(|c| c.chars().filter(|c| !c.is_whitespace()).collect::<String>())
        .filter(|c| !c.is_empty())
        .collect();
    if certificates.is_empty() {
        return Err("the identity provider's metadata has no signing certificate".into());
    }
    Ok(IdpMetadata {
        entity_id,
        sso_url,
        certificates,
    })
}

/// Fetches an identity provider's SAML metadata from its URL under the rules of
/// [`crate::idp_fetch`] (https, no internal addresses, no redirects, at most
/// [`MAX_METADATA`] bytes, a time limit) and parses it.
pub async fn fetch_idp_metadata(http: &IdpHttp, url: &str) -> Result<FetchedMetadata, String> {
    let body = http
        .get(url, MAX_METADATA)
        .await
        .map_err(|e| format!("fetching the metadata URL failed: {e}"))?;
    let xml = String::from_utf8(body).map_err(|_| "the metadata is not UTF-8".to_owned())?;
    let md = parse_idp_metadata(&xml)?;
    Ok(FetchedMetadata {
        xml,
        entity_id: md.entity_id,
        sso_url: md.sso_url,
        certificates: md.certificates,
    })
}

/// One round of the scheduled metadata refresh (`cairn serve`): every tenant whose SAML
/// settings come from a metadata URL gets it fetched again, one tenant at a time.
pub async fn refresh_idp_metadata(services: &Services, http: &IdpHttp) -> cairn_core::Result<()> {
    for tenant in services.store.list_tenants().await? {
        let Some(url) = services
            .saml_config(&tenant.id)
            .await?
            .and_then(|c| c.metadata_url)
        else {
            continue;
        };
        let fetched = fetch_idp_metadata(http, &url).await;
        if let Err(reason) = &fetched {
            tracing::warn!(tenant = %tenant.id, %url, %reason,
                "refreshing the identity provider's metadata failed; the last good settings stay");
        }
        match services
            .apply_metadata_refresh(&tenant.id, &url, fetched)
            .await?
        {
            MetadataRefresh::Updated {
                certificates_changed,
            } => tracing::info!(tenant = %tenant.id, %url, certificates_changed,
                "the identity provider's metadata changed; new settings saved"),
            MetadataRefresh::Unchanged | MetadataRefresh::Failed => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_read_with_either_quote_and_bounded() {
        let xml = r#"<R InResponseTo="_a"><A><S InResponseTo='_b'/><S InResponseTo="_a"/></A></R>"#;
        assert_eq!(named_request_ids(xml), vec!["_a", "_b"]);
        let many: String = (0..20)
            .map(|i| format!("<x InResponseTo=\"_{i}\"/>"))
            .collect();
        assert_eq!(named_request_ids(&many).len(), 8);
        assert!(named_request_ids("InResponseTo=").is_empty());
    }

    #[test]
    fn assertions_are_counted_whatever_their_prefix() {
        assert_eq!(
            assertion_elements("<a:Assertion/><Assertion></Assertion>"),
            2
        );
        assert_eq!(assertion_elements("<saml2:EncryptedAssertion x='1'/>"), 1);
        assert_eq!(assertion_elements("<AssertionX/><p:Response/>"), 0);
    }
}
