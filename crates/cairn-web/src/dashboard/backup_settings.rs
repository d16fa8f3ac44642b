//! Settings → Backups (deletion protection and "Welcome new accounts", per tenant) and
//! the account page's undo of protected deletions. The rules and the audit are `cairn_core::protection`'s; the
//! bytes move through `crate::vault_trash`.

use super::csrf::CheckedForm;
use super::session::SignedIn;
use super::{render, see_other, Nav, PageError};
use crate::scim::extract::request_meta;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_core::protection::{DEFAULT_PROTECT_DAYS, MAX_PROTECT_DAYS};
use cairn_core::service::Authority;
use cairn_core::store::Role;
use serde::Deserialize;

#[derive(Template)]
#[template(path = "backup_settings.html")]
struct BackupSettingsPage {
    nav: Option<Nav>,
    csrf: String,
    enabled: bool,
    days: String,
    max_days: u32,
    notice: Option<String>,
    error: Option<String>,
    /// "Welcome new accounts" (issue 22).
    welcome: WelcomeForm,
}

/// The "Welcome new accounts" form.
struct WelcomeForm {
    enabled: bool,
    /// "Remind after N days" as shown ("" when off).
    remind_days: String,
    max_remind_days: u32,
    /// Whether a mail relay is set up (else the setting has no effect yet).
    mail_enabled: bool,
    error: Option<String>,
}

async fn welcome_form(
    state: &AppState,
    tenant: &cairn_core::ids::TenantId,
) -> cairn_core::Result<WelcomeForm> {
    let w = state.services.welcome_settings(tenant).await?;
    Ok(WelcomeForm {
        enabled: w.enabled,
        remind_days: w.remind_days.map(|d| d.to_string()).unwrap_or_default(),
        max_remind_days: cairn_core::mail::MAX_REMIND_DAYS,
        mail_enabled: state.services.mail_enabled,
        error: None,
    })
}

#[derive(Deserialize)]
pub struct SavedParams {
    saved: Option<String>,
    welcome: Option<String>,
}

/// A refusal page for anyone but an administrator.
fn refuse_non_admin(user: &SignedIn, nav: &Nav) -> Option<Response> {
    (user.session.ctx.role() != Role::Administrator)
        .then(|| PageError::from_error(cairn_core::Error::Forbidden, nav).into_response())
}

pub async fn show_backup_settings(
    State(state): State<AppState>,
    user: SignedIn,
    Query(p): Query<SavedParams>,
) -> Response {
    let nav = user.nav("settings-backups");
    if let Some(r) = refuse_non_admin(&user, &nav) {
        return r;
    }
    let days = match state
        .services
        .vault_protection(user.session.ctx.tenant_id())
        .await
    {
        Ok(d) => d,
        Err(e) => return PageError::from_error(e, &nav).into_response(),
    };
    let welcome = match welcome_form(&state, user.session.ctx.tenant_id()).await {
        Ok(w) => w,
        Err(e) => return PageError::from_error(e, &nav).into_response(),
    };
    let notice = p
        .saved
        .map(|_| match days {
            Some(d) => format!("Saved. Deleted backup data is kept for {d} days."),
            None => "Saved. Deletion protection is off.".to_owned(),
        })
        .or(p.welcome.map(|_| {
            if welcome.enabled {
                "Saved. New accounts with an email get a welcome mail with a sign-in link."
                    .to_owned()
            } else {
                "Saved. New accounts get no welcome mail.".to_owned()
            }
        }));
    render(
        StatusCode::OK,
        &BackupSettingsPage {
            csrf: nav.csrf.clone(),
            nav: Some(nav),
            enabled: days.is_some(),
            days: days.unwrap_or(DEFAULT_PROTECT_DAYS).to_string(),
            max_days: MAX_PROTECT_DAYS,
            notice,
            error: None,
            welcome,
        },
    )
}

/// "Welcome new accounts" and its single reminder (administrators; CSRF-checked).
pub async fn change_welcome_settings(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let CheckedForm { user, fields } = form;
    let nav = user.nav("settings-backups");
    let ctx = &user.session.ctx;
    let enabled = fields.get("welcome") == Some("on");
    let typed = fields.get("remind_days").unwrap_or("").trim().to_owned();
    let remind_days = if typed.is_empty() {
        None
    } else {
        // Anything that is not a whole number in range gets the same message as 0.
        Some(typed.parse::<u32>().unwrap_or(0))
    };
    match state
        .services
        .set_welcome_settings(
            Authority::Dashboard(ctx),
            ctx.tenant_id(),
            enabled,
            remind_days,
            &request_meta(&headers),
        )
        .await
    {
        Ok(_) => see_other("/settings/backups?welcome=1"),
        Err(cairn_core::Error::Invalid { reason, .. }) => {
            let days = match state.services.vault_protection(ctx.tenant_id()).await {
                Ok(d) => d,
                Err(e) => return PageError::from_error(e, &nav).into_response(),
            };
            render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &BackupSettingsPage {
                    csrf: nav.csrf.clone(),
                    nav: Some(nav),
                    enabled: days.is_some(),
                    days: days.unwrap_or(DEFAULT_PROTECT_DAYS).to_string(),
                    max_days: MAX_PROTECT_DAYS,
                    notice: None,
                    error: None,
                    welcome: WelcomeForm {
                        enabled,
                        remind_days: typed,
                        max_remind_days: cairn_core::mail::MAX_REMIND_DAYS,
                        mail_enabled: state.services.mail_enabled,
                        error: Some(format!("Remind after: {reason}.")),
                    },
                },
            )
        }
        Err(e) => PageError::from_error(e, &nav).into_response(),
    }
}

pub async fn change_backup_settings(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let CheckedForm { user, fields } = form;
    let nav = user.nav("settings-backups");
    let ctx = &user.session.ctx;
    let enabled = fields.get("enabled") == Some("on");
    let typed = fields.get("days").unwrap_or("").trim().to_owned();
    let days = if enabled {
        // Anything that is not a whole number in range gets the same message as 0.
        Some(typed.parse::<u32>().unwrap_or(0))
    } else {
        None
    };
    match state
        .services
        .set_vault_protection(
            Authority::Dashboard(ctx),
            ctx.tenant_id(),
            days,
            &request_meta(&headers),
        )
        .await
    {
        Ok(()) => see_other("/settings/backups?saved=1"),
        Err(cairn_core::Error::Invalid { reason, .. }) => {
            let welcome = match welcome_form(&state, ctx.tenant_id()).await {
                Ok(w) => w,
                Err(e) => return PageError::from_error(e, &nav).into_response(),
            };
            render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &BackupSettingsPage {
                    csrf: nav.csrf.clone(),
                    nav: Some(nav),
                    enabled,
                    days: typed,
                    max_days: MAX_PROTECT_DAYS,
                    notice: None,
                    error: Some(format!("Days to keep deleted data: {reason}.")),
                    welcome,
                },
            )
        }
        Err(e) => PageError::from_error(e, &nav).into_response(),
    }
}

/// What the account page shows of deletion protection.
pub struct AccountProtection {
    /// The tenant's window, `None` when protection is off.
    pub days: Option<u32>,
    pub objects: u64,
    pub bytes: String,
    /// A default for the undo form: 24 hours ago, `YYYY-MM-DDTHH:MM` (UTC).
    pub since_default: String,
}

/// The account page's protection section (administrators only).
pub async fn account_protection(
    state: &AppState,
    account: &cairn_core::user::UserRecord,
) -> cairn_core::Result<AccountProtection> {
    let days = state.services.vault_protection(&account.tenant_id).await?;
    let (objects, bytes) =
        crate::vault_trash::protected_usage(&state.vault.vault, &account.tenant_id, &account.id)
            .await;
    let since = state.services.clock.now() - time::Duration::days(1);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    Ok(AccountProtection {
        days,
        objects,
        bytes: super::view::bytes(i64::try_from(bytes).unwrap_or(i64::MAX)),
        since_default: since.format(&fmt).unwrap_or_default(),
    })
}

/// "Undo deletions since": the time comes from a `datetime-local` field, read as UTC
/// (`YYYY-MM-DDTHH:MM`, seconds optional), or RFC 3339.
fn parse_since(s: &str) -> Option<time::OffsetDateTime> {
    let s = s.trim();
    if let Some(t) = cairn_core::clock::parse_ts(s) {
        return Some(t);
    }
    let long = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let short = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    time::PrimitiveDateTime::parse(s, &long)
        .or_else(|_| time::PrimitiveDateTime::parse(s, &short))
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

pub async fn undelete_account(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let CheckedForm { user, fields } = form;
    let nav = user.nav("accounts");
    let ctx = &user.session.ctx;
    let Some(since) = parse_since(fields.get("since").unwrap_or("")) else {
        return PageError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Cannot do that",
            "Give the time (UTC) from which to undo deletions, as YYYY-MM-DDTHH:MM.",
        )
        .with_nav(&nav)
        .into_response();
    };
    let account = match state.services.account(ctx, &id).await {
        Ok((a, _)) => a,
        Err(e) => return PageError::from_error(e, &nav).into_response(),
    };
    match crate::vault_trash::undelete(
        &state.services,
        &state.vault.vault,
        Authority::Dashboard(ctx),
        ctx.tenant_id(),
        account.user_name.as_str(),
        since,
        &request_meta(&headers),
    )
    .await
    {
        Ok((u, done)) => see_other(&format!("/accounts/{}?undeleted={}", u.id, done.restored)),
        Err(e) => PageError::from_error(e, &nav).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_times_are_read_as_utc() {
        let t = parse_since("2026-12-01T10:30").unwrap();
        assert_eq!(cairn_core::clock::format_ts(t), "2026-12-01T10:30:00.000Z");
        assert!(parse_since("2026-12-01T10:30:15").is_some());
        assert!(parse_since("2026-12-01T10:30:00Z").is_some());
        assert!(parse_since("yesterday").is_none());
        assert!(parse_since("").is_none());
    }
}
