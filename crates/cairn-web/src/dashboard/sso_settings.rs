//! Settings → Single Sign-On (`/settings/sso`), after Infrascale's page: "Enable Single
//! Sign-On (SSO)", "Enable SSO for" (dashboard admins, all backup accounts, individual
//! accounts), the Service Provider Settings to copy into the identity provider, and the
//! Identity Provider Settings, from its metadata XML or by hand (issuer, sign-on URL,
//! signing certificate). Viewers see the page read-only; saving is for administrators
//! (checked in `cairn_core::sso`). Metadata URLs are not fetched yet.

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

/// The identity provider's values from the form: the metadata XML when given, else the
/// fields typed by hand, else what is saved.
fn idp_from(
    fields: &Fields,
    saved: Option<&SamlIdpConfig>,
) -> Result<(String, String, Vec<String>, Option<String>), String> {
    let metadata = fields.get("metadata_xml").unwrap_or("").trim();
    if !metadata.is_empty() {
        let md = parse_idp_metadata(metadata)?;
        return Ok((
            md.entity_id,
            md.sso_url,
            md.certificates,
            Some(metadata.to_owned()),
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
    Ok((issuer, sso_url, certificates, metadata_xml))
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
    let (issuer, sso_url, certificates, metadata_xml) = match idp_from(&fields, saved.as_ref()) {
        Ok(v) => v,
        Err(msg) => {
            page.error = Some(msg);
            return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    page.issuer = issuer.clone();
    page.sso_url = sso_url.clone();
    let config = SamlIdpConfig {
        tenant_id: user.session.ctx.tenant_id().clone(),
        enabled,
        idp_entity_id: issuer,
        sso_url,
        certificates,
        metadata_xml,
        metadata_url: None,
        scope,
        updated_at: state.services.clock.now(),
    };
    match state
        .services
        .save_sso_settings(&user.session.ctx, config, request_meta(&headers))
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
