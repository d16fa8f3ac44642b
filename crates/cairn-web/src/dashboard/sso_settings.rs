//! Settings → Single Sign-On (`/settings/sso`), after Infrascale's page: "Enable Single
//! Sign-On (SSO)", "Enable SSO for" (dashboard admins, all backup accounts, individual
//! accounts), the Service Provider Settings to copy into the identity provider, and the
//! Identity Provider Settings, from its metadata XML or by hand (issuer, sign-on URL,
//! signing certificate). Viewers see the page read-only; saving is for administrators
//! (checked in `cairn_core::sso`). A metadata URL is fetched when saved, under the rules
//! of `crate::idp_fetch`, and again on `cairn serve`'s schedule; a metadata file can be
//! uploaded (read into the form by the page's script) or pasted. OpenID Connect has its
//! own form (`POST /settings/sso/oidc`) with a write-only client secret.

use super::csrf::{CheckedForm, Fields};
use super::session::SignedIn;
use super::view::datetime;
use super::{render, see_other, Nav, PageError};
use crate::scim::extract::request_meta;
use crate::sso::{acs_url, login_url, parse_idp_metadata, sp_entity_id};
use crate::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use cairn_core::oidc::ClientSecret;
use cairn_core::sso::{SamlIdpConfig, SsoScope};
use cairn_core::sso_password::PasswordSignInStatus;
use cairn_core::store::{Role, SsoGroupRole};
use serde::Deserialize;

#[derive(Template)]
#[template(path = "sso_settings.html")]
struct SsoPage {
    nav: Option<Nav>,
    csrf: String,
    admin: bool,
    entity_id: String,
    acs: String,
    metadata_url: String,
    sign_on_url: String,
    enabled: bool,
    scope_admins: bool,
    scope_all: bool,
    accounts: String,
    issuer: String,
    sso_url: String,
    certificates: usize,
    updated: String,
    // --- sso-idp: metadata URL and OpenID Connect ---
    idp_metadata_url: String,
    oidc_enabled: bool,
    oidc_issuer: String,
    oidc_client_id: String,
    oidc_secret_set: bool,
    oidc_redirect_uri: String,
    // --- end sso-idp ---
    group_roles: Vec<SsoGroupRole>,
    /// Password sign-in off once SSO works (its own form on the page).
    password: PasswordSignInStatus,
    notice: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct SsoParams {
    saved: Option<String>,
}

async fn page(
    state: &AppState,
    user: &SignedIn,
) -> Result<(SsoPage, Option<SamlIdpConfig>), PageError> {
    let nav = user.nav("settings-sso");
    let config = state
        .services
        .sso_settings(&user.session.ctx)
        .await
        .map_err(|e| PageError::from_error(e, &nav))?;
    let base = &state.services.public_url;
    let tenant = user.session.ctx.tenant_id();
    let group_roles = state
        .services
        .sso_group_roles(tenant)
        .await
        .map_err(|e| PageError::from_error(e, &nav))?;
    // sso-idp: the OpenID Connect settings (the secret only as set / not set).
    let oidc = state
        .services
        .oidc_settings(&user.session.ctx)
        .await
        .map_err(|e| PageError::from_error(e, &nav))?;
    let password = state
        .services
        .password_sign_in_status(tenant)
        .await
        .map_err(|e| PageError::from_error(e, &nav))?;
    let c = config.clone();
    Ok((
        SsoPage {
            csrf: nav.csrf.clone(),
            admin: nav.admin,
            nav: Some(nav),
            entity_id: sp_entity_id(base, tenant),
            acs: acs_url(base, tenant),
            metadata_url: sp_entity_id(base, tenant),
            sign_on_url: login_url(base, tenant),
            enabled: c.as_ref().is_some_and(|c| c.enabled),
            scope_admins: c.as_ref().is_some_and(|c| c.scope.admins),
            scope_all: c.as_ref().is_some_and(|c| c.scope.all_accounts),
            accounts: c
                .as_ref()
                .map(|c| c.scope.accounts.join(", "))
                .unwrap_or_default(),
            issuer: c
                .as_ref()
                .map(|c| c.idp_entity_id.clone())
                .unwrap_or_default(),
            sso_url: c.as_ref().map(|c| c.sso_url.clone()).unwrap_or_default(),
            certificates: c.as_ref().map_or(0, |c| c.certificates.len()),
            updated: c
                .as_ref()
                .map(|c| datetime(c.updated_at))
                .unwrap_or_default(),
            idp_metadata_url: c
                .as_ref()
                .and_then(|c| c.metadata_url.clone())
                .unwrap_or_default(),
            oidc_enabled: oidc.as_ref().is_some_and(|o| o.enabled),
            oidc_issuer: oidc.as_ref().map(|o| o.issuer.clone()).unwrap_or_default(),
            oidc_client_id: oidc
                .as_ref()
                .map(|o| o.client_id.clone())
                .unwrap_or_default(),
            oidc_secret_set: oidc
                .as_ref()
                .is_some_and(|o| !o.client_secret.expose().is_empty()),
            oidc_redirect_uri: crate::sso_oidc::callback_url(base, tenant),
            group_roles,
            password,
            notice: None,
            error: None,
        },
        config,
    ))
}

pub async fn show_sso_settings(
    State(state): State<AppState>,
    user: SignedIn,
    Query(p): Query<SsoParams>,
) -> Response {
    match page(&state, &user).await {
        Ok((mut page, _)) => {
            if p.saved.is_some() {
                page.notice = Some("Single sign-on settings saved.".into());
            }
            render(StatusCode::OK, &page)
        }
        Err(e) => e.into_response(),
    }
}

/// A certificate as pasted: PEM or bare base64 of DER, checked to decode to a DER
/// SEQUENCE. Returns base64 without whitespace.
pub fn parse_certificate(text: &str) -> Result<String, String> {
    let b64: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| "The certificate is not PEM or base64.".to_owned())?;
    if der.first() != Some(&0x30) || der.len() < 64 {
        return Err("The certificate is not an X.509 certificate.".into());
    }
    Ok(b64)
}

/// The identity provider's values as (issuer, sign-on URL, certificates, metadata XML,
/// metadata URL).
type IdpValues = (String, String, Vec<String>, Option<String>, Option<String>);

/// The identity provider's values from the form: the metadata URL when given (fetched
/// now), else the metadata XML, else the fields typed by hand, else what is saved.
async fn idp_from(
    state: &AppState,
    fields: &Fields,
    saved: Option<&SamlIdpConfig>,
) -> Result<IdpValues, String> {
    // sso-idp: a metadata URL, fetched server-side with the SSRF rules.
    let url = fields.get("metadata_url").unwrap_or("").trim();
    if !url.is_empty() {
        if url.len() > 2048 {
            return Err("The metadata URL is too long.".into());
        }
        // The URL already saved: its values stay (the schedule refreshes them), so that
        // changing the scope does not depend on the identity provider answering now.
        if let Some(c) = saved.filter(|c| c.metadata_url.as_deref() == Some(url)) {
            return Ok((
                c.idp_entity_id.clone(),
                c.sso_url.clone(),
                c.certificates.clone(),
                c.metadata_xml.clone(),
                c.metadata_url.clone(),
            ));
        }
        let md = crate::sso::fetch_idp_metadata(state.oidc.http(), url).await?;
        return Ok((
            md.entity_id,
            md.sso_url,
            md.certificates,
            Some(md.xml),
            Some(url.to_owned()),
        ));
    }
    let metadata = fields.get("metadata_xml").unwrap_or("").trim();
    if !metadata.is_empty() {
        let md = parse_idp_metadata(metadata)?;
        return Ok((
            md.entity_id,
            md.sso_url,
            md.certificates,
            Some(metadata.to_owned()),
            None,
        ));
    }
    let issuer = fields.get("issuer").unwrap_or("").trim().to_owned();
    let sso_url = fields.get("sso_url").unwrap_or("").trim().to_owned();
    let cert = fields.get("certificate").unwrap_or("").trim();
    let certificates = if cert.is_empty() {
        saved.map(|c| c.certificates.clone()).unwrap_or_default()
    } else {
        vec![parse_certificate(cert)?]
    };
    let metadata_xml = saved.and_then(|c| c.metadata_xml.clone());
    // Typed by hand: no longer refreshed from a URL.
    Ok((issuer, sso_url, certificates, metadata_xml, None))
}

pub async fn change_sso_settings(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let CheckedForm { user, fields } = form;
    let (mut page, saved) = match page(&state, &user).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let nav = user.nav("settings-sso");
    let scope = SsoScope {
        admins: fields.get("scope_admins").is_some(),
        all_accounts: fields.get("scope_all").is_some(),
        accounts: SsoScope::parse_accounts(fields.get("accounts").unwrap_or("")),
    };
    let enabled = fields.get("enabled").is_some();
    // Keep what was typed on the page if it comes back with an error.
    page.enabled = enabled;
    page.scope_admins = scope.admins;
    page.scope_all = scope.all_accounts;
    page.accounts = scope.accounts.join(", ");
    page.idp_metadata_url = fields.get("metadata_url").unwrap_or("").trim().to_owned();
    let (issuer, sso_url, certificates, metadata_xml, metadata_url) =
        match idp_from(&state, &fields, saved.as_ref()).await {
            Ok(v) => v,
            Err(msg) => {
                page.error = Some(msg);
                return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
            }
        };
    page.issuer = issuer.clone();
    page.sso_url = sso_url.clone();
    // sso-idp: the scope applies to OpenID Connect too (as with `cairn sso scope`). A
    // tenant on OpenID Connect alone, with no SAML values, saves just the scope here.
    let oidc_only = saved.is_none() && issuer.is_empty() && certificates.is_empty();
    if oidc_only {
        match state
            .services
            .save_oidc_scope(&user.session.ctx, scope.clone(), request_meta(&headers))
            .await
        {
            Ok(true) => return see_other("/settings/sso?saved=1"),
            Ok(false) => {}
            Err(e) => return PageError::from_error(e, &nav).into_response(),
        }
    }
    let oidc_scope = scope.clone();
    let config = SamlIdpConfig {
        tenant_id: user.session.ctx.tenant_id().clone(),
        enabled,
        idp_entity_id: issuer,
        sso_url,
        certificates,
        metadata_xml,
        metadata_url,
        scope,
        updated_at: state.services.clock.now(),
    };
    match state
        .services
        .save_sso_settings(&user.session.ctx, config, request_meta(&headers))
        .await
    {
        Ok(_) => match state
            .services
            .save_oidc_scope(&user.session.ctx, oidc_scope, request_meta(&headers))
            .await
        {
            Ok(_) => see_other("/settings/sso?saved=1"),
            Err(e) => PageError::from_error(e, &nav).into_response(),
        },
        Err(cairn_core::Error::Invalid { reason, .. }) => {
            page.error = Some(format!("Not saved: {reason}."));
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(e) => PageError::from_error(e, &nav).into_response(),
    }
}

/// "Map group" on Settings → Single Sign-On: a group's dashboard role (administrators
/// only, checked in `cairn_core::sso`).
pub async fn change_sso_group_role(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let CheckedForm { user, fields } = form;
    let (mut page, _) = match page(&state, &user).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let nav = user.nav("settings-sso");
    let group = fields.get("group").unwrap_or("").trim().to_owned();
    let role = match fields.get("role").unwrap_or("") {
        "none" => None,
        other => match Role::parse(other) {
            Some(r) => Some(r),
            None => {
                page.error = Some("Choose administrator, viewer or none.".into());
                return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
            }
        },
    };
    match state
        .services
        .save_sso_group_role(&user.session.ctx, &group, role, request_meta(&headers))
        .await
    {
        Ok(_) => see_other("/settings/sso?saved=1"),
        Err(cairn_core::Error::NotFound("group")) => {
            page.error = Some(format!("No group is named “{group}”."));
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(e) => PageError::from_error(e, &nav).into_response(),
    }
}

// --- sso-idp: OpenID Connect on Settings → Single Sign-On ---

/// "Save OpenID Connect" on Settings → Single Sign-On (administrators only, checked in
/// `cairn_core::oidc`). The client secret is write-only: an empty field keeps the saved
/// one, and the page only ever says whether one is set.
pub async fn change_oidc_settings(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let CheckedForm { user, fields } = form;
    let (mut page, _) = match page(&state, &user).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let nav = user.nav("settings-sso");
    let enabled = fields.get("oidc_enabled").is_some();
    let issuer = fields
        .get("oidc_issuer")
        .unwrap_or("")
        .trim()
        .trim_end_matches('/')
        .to_owned();
    let client_id = fields.get("oidc_client_id").unwrap_or("").trim().to_owned();
    let secret = fields.get("oidc_client_secret").unwrap_or("");
    page.oidc_enabled = enabled;
    page.oidc_issuer = issuer.clone();
    page.oidc_client_id = client_id.clone();
    if issuer.len() > 2048 || client_id.len() > 512 || secret.len() > 4096 {
        page.error = Some("Not saved: a value is too long.".into());
        return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    // The issuer is fetched from (discovery) at sign-in: refuse what the fetch rules
    // would refuse then, now, where the administrator sees why.
    if let Err(e) = state.oidc.http().check_url(&issuer) {
        page.error = Some(format!("Not saved: the issuer: {e}."));
        return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    let secret = (!secret.is_empty()).then(|| ClientSecret::new(secret));
    match state
        .services
        .save_oidc_settings(
            &user.session.ctx,
            enabled,
            issuer,
            client_id,
            secret,
            request_meta(&headers),
        )
        .await
    {
        Ok(_) => see_other("/settings/sso?saved=1"),
        Err(cairn_core::Error::Invalid { reason, .. }) => {
            page.error = Some(format!("Not saved: {reason}."));
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(e) => PageError::from_error(e, &nav).into_response(),
    }
}
// --- end sso-idp ---

/// "Password sign-in" on Settings → Single Sign-On: off only while single sign-on is
/// enabled for administrators (administrators only; both checked in
/// `cairn_core::sso_password`).
pub async fn change_password_sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let CheckedForm { user, fields } = form;
    let (mut page, _) = match page(&state, &user).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let nav = user.nav("settings-sso");
    let on = match fields.get("password_sign_in").unwrap_or("") {
        "on" => true,
        "off" => false,
        _ => {
            page.error = Some("Choose on or off.".into());
            return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    match state
        .services
        .save_password_sign_in(&user.session.ctx, on, request_meta(&headers))
        .await
    {
        Ok(_) => see_other("/settings/sso?saved=1"),
        Err(cairn_core::Error::Invalid { reason, .. }) => {
            page.error = Some(format!("Not saved: {reason}."));
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(e) => PageError::from_error(e, &nav).into_response(),
    }
}
