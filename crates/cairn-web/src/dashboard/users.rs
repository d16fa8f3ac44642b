//! Settings → Users (`/settings/users`): the tenant's dashboard users (email, role,
//! status, last sign-in, 2FA), invitations, role changes, disable/enable, delete, password
//! and second-factor resets, and the tenant's "require 2FA" rule. Administrators only:
//! the service refuses everyone else (`Error::Forbidden`, a 403 page), on the page and on
//! every POST. Links are shown once to the administrator to copy (no mail yet).

use super::csrf::CheckedForm;
use super::session::SignedIn;
use super::view::datetime;
use super::{render, Nav, PageError};
use crate::scim::extract::request_meta;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_core::ids::DashboardUserId;
use cairn_core::people::{LinkPurpose, UserAction};
use cairn_core::service::Authority;
use cairn_core::store::Role;

pub struct UserRow {
    pub id: String,
    pub email: String,
    pub role: &'static str,
    pub status: &'static str,
    pub last_sign_in: String,
    pub second_factor: bool,
    pub disabled: bool,
    pub myself: bool,
}

/// A link to hand over once: whom it is for, what it does, until when.
pub struct NewLink {
    pub email: String,
    pub what: &'static str,
    pub url: String,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    nav: Option<Nav>,
    csrf: String,
    users: Vec<UserRow>,
    require_second_factor: bool,
    link: Option<NewLink>,
    notice: Option<String>,
    error: Option<String>,
}

async fn page(state: &AppState, user: &SignedIn) -> Result<UsersPage, PageError> {
    let nav = user.nav("settings-users");
    let ctx = &user.session.ctx;
    let tenant = ctx.tenant_id();
    let entries = state
        .services
        .list_dashboard_users(Authority::Dashboard(ctx), tenant)
        .await
        .map_err(|e| PageError::from_error(e, &nav))?;
    let require_second_factor = state
        .services
        .second_factor_required(tenant)
        .await
        .map_err(|e| PageError::from_error(e, &nav))?;
    let users = entries
        .iter()
        .map(|e| UserRow {
            id: e.user.id.to_string(),
            email: e.user.email.clone(),
            role: e.user.role.as_str(),
            status: e.status(),
            last_sign_in: e
                .last_sign_in_at
                .map(datetime)
                .unwrap_or_else(|| "never".into()),
            second_factor: e.user.second_factor,
            disabled: e.user.disabled,
            myself: &e.user.id == ctx.user_id(),
        })
        .collect();
    Ok(UsersPage {
        csrf: nav.csrf.clone(),
        nav: Some(nav),
        users,
        require_second_factor,
        link: None,
        notice: None,
        error: None,
    })
}

pub async fn show_users(State(state): State<AppState>, user: SignedIn) -> Response {
    match page(&state, &user).await {
        Ok(p) => render(StatusCode::OK, &p),
        Err(e) => e.into_response(),
    }
}

/// Renders the page after a change: the outcome as a notice, or the refusal (a 403 for a
/// viewer; the last-administrator rule and bad input as a 422 on the page).
async fn after(
    state: &AppState,
    user: &SignedIn,
    outcome: cairn_core::Result<(Option<NewLink>, String)>,
) -> Response {
    let nav = user.nav("settings-users");
    let (status, link, notice, error) = match outcome {
        Ok((link, notice)) => (StatusCode::OK, link, Some(notice), None),
        Err(cairn_core::Error::Invalid { reason, .. }) => {
            (StatusCode::UNPROCESSABLE_ENTITY, None, None, Some(reason))
        }
        Err(cairn_core::Error::Conflict { .. }) => (
            StatusCode::CONFLICT,
            None,
            None,
            Some("A dashboard user with this email already exists.".into()),
        ),
        Err(e) => return PageError::from_error(e, &nav).into_response(),
    };
    match page(state, user).await {
        Ok(mut p) => {
            p.link = link;
            p.notice = notice;
            p.error = error;
            render(status, &p)
        }
        Err(e) => e.into_response(),
    }
}

fn new_link(
    state: &AppState,
    email: &str,
    purpose: LinkPurpose,
    secret: &cairn_core::people::LinkSecret,
) -> NewLink {
    let what = match purpose {
        LinkPurpose::Invite => "set their password and sign in",
        _ => "set a new password",
    };
    NewLink {
        email: email.to_owned(),
        what,
        url: state.services.link_url(secret),
        expires: datetime(state.services.clock.now() + purpose.lifetime()),
    }
}

pub async fn invite_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let CheckedForm { user, fields } = form;
    let ctx = &user.session.ctx;
    let role = fields
        .get("role")
        .and_then(Role::parse)
        .unwrap_or(Role::Viewer);
    let email = fields.get("email").unwrap_or("");
    let outcome = state
        .services
        .invite_dashboard_user(
            Authority::Dashboard(ctx),
            ctx.tenant_id(),
            email,
            role,
            &request_meta(&headers),
        )
        .await
        .map(|(u, secret)| {
            let link = new_link(&state, &u.email, LinkPurpose::Invite, &secret);
            let notice = format!("Invited {} as {}.", u.email, u.role.as_str());
            (Some(link), notice)
        });
    after(&state, &user, outcome).await
}

pub async fn change_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let CheckedForm { user, fields } = form;
    let nav = user.nav("settings-users");
    let ctx = &user.session.ctx;
    let who = Authority::Dashboard(ctx);
    let meta = request_meta(&headers);
    let Some(id) = DashboardUserId::parse(&id) else {
        return PageError::from_error(cairn_core::Error::NotFound("dashboard user"), &nav)
            .into_response();
    };
    let svc = &state.services;
    let action = match fields.get("action").unwrap_or("") {
        "set_role" => match fields.get("role").and_then(Role::parse) {
            Some(r) => UserAction::SetRole(r),
            None => {
                return after(
                    &state,
                    &user,
                    Err(cairn_core::Error::Invalid {
                        field: "role",
                        reason: "Choose administrator or viewer.".into(),
                    }),
                )
                .await
            }
        },
        "disable" => UserAction::Disable,
        "enable" => UserAction::Enable,
        "delete" => UserAction::Delete,
        "reset_second_factor" => UserAction::ResetSecondFactor,
        "reset_password" => {
            let outcome = svc
                .reset_dashboard_password(who, ctx.tenant_id(), &id, &meta)
                .await
                .map(|(u, secret)| {
                    let link = new_link(&state, &u.email, LinkPurpose::PasswordReset, &secret);
                    let notice = format!(
                        "The password of {} was reset and their sessions ended.",
                        u.email
                    );
                    (Some(link), notice)
                });
            return after(&state, &user, outcome).await;
        }
        _ => {
            return PageError::new(
                StatusCode::BAD_REQUEST,
                "Unknown action",
                "The form asked for an action this page does not offer.",
            )
            .with_nav(&nav)
            .into_response()
        }
    };
    let outcome = svc
        .change_dashboard_user(who, ctx.tenant_id(), &id, action, &meta)
        .await
        .map(|u| {
            let notice = match action {
                UserAction::SetRole(r) => format!("{} is now {}.", u.email, r.as_str()),
                UserAction::Disable => {
                    format!("{} is disabled and their sessions ended.", u.email)
                }
                UserAction::Enable => format!("{} can sign in again.", u.email),
                UserAction::Delete => format!("{} was deleted.", u.email),
                UserAction::ResetSecondFactor => format!(
                    "Two-factor authentication of {} was removed; they set it up again at their next sign-in if the organisation requires it.",
                    u.email
                ),
            };
            (None, notice)
        });
    after(&state, &user, outcome).await
}

pub async fn set_policy(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let CheckedForm { user, fields } = form;
    let ctx = &user.session.ctx;
    let required = fields.get("require_second_factor").is_some();
    let outcome = state
        .services
        .set_second_factor_required(
            Authority::Dashboard(ctx),
            ctx.tenant_id(),
            required,
            &request_meta(&headers),
        )
        .await
        .map(|()| {
            let notice = if required {
                "Two-factor authentication is now required for every password sign-in."
            } else {
                "Two-factor authentication is now optional."
            };
            (None, notice.to_owned())
        });
    after(&state, &user, outcome).await
}
