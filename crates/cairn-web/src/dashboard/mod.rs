//! The administrator dashboard: sign-in, Settings → SCIM User Management, Backup
//! Accounts, and Provisioning activity, as server-rendered pages (askama templates escape
//! everything they print) with plain forms and one small static script.
//!
//! Security model: every page but `/login` needs a session (`session::SignedIn`); every
//! POST passes `csrf::checked_form` (Origin/Referer check plus the session's CSRF token);
//! role checks happen in `cairn_core::dashboard` (a viewer's attempt to change anything is
//! `Error::Forbidden`, a 403 page); every response carries a strict Content-Security-Policy
//! that allows no inline script or style, and `frame-ancestors 'none'`.

pub mod accounts;
pub mod activity;
pub mod backup_keys;
pub mod backup_settings;
pub mod chart;
pub mod csrf;
pub mod groups;
pub mod health;
pub mod login;
pub mod requests;
pub mod scim_settings;
pub mod second_factor;
pub mod session;
pub mod source;
pub mod sso_settings;
pub mod users;
pub mod view;

#[cfg(test)]
mod tests;

use crate::AppState;
use askama::Template;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use cairn_core::Error;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/accounts") }))
        .route("/login", get(login::show_login).post(login::sign_in))
        .route("/logout", post(login::sign_out))
        .route(
            "/settings/scim",
            get(scim_settings::show_scim_settings).post(scim_settings::change_scim_settings),
        )
        .route(
            "/settings/stale-days",
            post(scim_settings::change_stale_days),
        )
        .route(
            "/settings/sso",
            get(sso_settings::show_sso_settings).post(sso_settings::change_sso_settings),
        )
        .route(
            "/settings/sso/roles",
            post(sso_settings::change_sso_group_role),
        )
        .route(
            "/settings/backups",
            get(backup_settings::show_backup_settings)
                .post(backup_settings::change_backup_settings),
        )
        .route(
            "/settings/welcome",
            post(backup_settings::change_welcome_settings),
        )
        .route(
            "/accounts/{id}/undelete",
            post(backup_settings::undelete_account),
        )
        // sso-idp: OpenID Connect on Settings → Single Sign-On.
        .route(
            "/settings/sso/oidc",
            post(sso_settings::change_oidc_settings),
        )
        .route(
            "/settings/sso/password-sign-in",
            post(sso_settings::change_password_sign_in),
        )
        // Issue 22: dashboard users, the second factor, one-time password links.
        .route(
            "/login/second-factor",
            get(second_factor::show_second_factor).post(second_factor::submit_second_factor),
        )
        .route(
            "/login/enrol",
            get(second_factor::show_enrolment).post(second_factor::submit_enrolment),
        )
        .route(
            "/invite/{token}",
            get(second_factor::show_link).post(second_factor::accept_link),
        )
        .route("/settings/security", get(second_factor::show_security))
        .route("/settings/security/totp", post(second_factor::enrol_totp))
        .route("/settings/users", get(users::show_users))
        .route("/settings/users/invite", post(users::invite_user))
        .route("/settings/users/policy", post(users::set_policy))
        .route("/settings/users/{id}", post(users::change_user))
        .route("/accounts", get(accounts::list_accounts))
        .route("/accounts/{id}", get(accounts::show_account))
        .route("/accounts/{id}/restore", post(accounts::restore_account))
        .route(
            "/accounts/{id}/sign-in-link",
            post(accounts::create_sign_in_link),
        )
        .route(
            "/accounts/{id}/sign-in-link/send",
            post(accounts::send_sign_in_link),
        )
        .route(
            "/accounts/sign-in-links.csv",
            post(accounts::export_sign_in_links),
        )
        .route(
            "/accounts/sign-in-links/send",
            post(accounts::send_sign_in_links),
        )
        // verify: repository health.
        .route("/accounts/{id}/verify", post(health::verify_account))
        .route(
            "/accounts/{id}/backup-key",
            post(backup_keys::create_backup_key),
        )
        .route(
            "/accounts/{id}/backup-key/revoke",
            post(backup_keys::revoke_backup_key),
        )
        .route("/groups", get(groups::list_groups))
        .route("/groups/{id}", get(groups::show_group))
        .route("/groups/{id}/size", post(groups::set_group_size))
        .route("/activity", get(activity::show_activity))
        .route("/requests", get(requests::show_requests))
        .route("/requests/capture", post(requests::set_capture))
        // AGPL §13: the footer's license link (the source link is --source-url).
        .route("/license", get(source::license))
        .route("/static/app.css", get(static_css))
        .route("/static/app.js", get(static_js))
        .route("/static/favicon.svg", get(static_favicon))
        .layer(axum::middleware::from_fn(security_headers))
}

/// Response headers for every dashboard response. The CSP forbids inline scripts and
/// styles (so an injected `<script>` or `onerror=` cannot run even if escaping failed),
/// framing (clickjacking), and form posts to other origins.
pub(crate) async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
             object-src 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // `same-origin` still sends Referer to ourselves: the CSRF check falls back to it.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    // Pages are per-user and may show a token once: never cache them.
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

fn static_asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

async fn static_css() -> Response {
    static_asset(
        include_str!("../../static/app.css"),
        "text/css; charset=utf-8",
    )
}

async fn static_js() -> Response {
    static_asset(
        include_str!("../../static/app.js"),
        "text/javascript; charset=utf-8",
    )
}

async fn static_favicon() -> Response {
    static_asset(include_str!("../../static/favicon.svg"), "image/svg+xml")
}

/// Renders a template as an HTML response.
pub(crate) fn render<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// The menu and the signed-in user, shown on every page after sign-in.
#[derive(Debug, Clone)]
pub struct Nav {
    pub email: String,
    pub role: &'static str,
    pub admin: bool,
    pub csrf: String,
    /// Which menu entry is current: `accounts`, `groups`, `activity`, `settings` (SCIM)
    /// or `settings-sso`.
    pub section: &'static str,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    nav: Option<Nav>,
    title: String,
    message: String,
}

/// A failed dashboard request, shown as a page.
pub struct PageError {
    pub status: StatusCode,
    pub title: String,
    pub message: String,
    pub nav: Option<Nav>,
}

impl PageError {
    pub fn new(status: StatusCode, title: &str, message: impl Into<String>) -> Self {
        PageError {
            status,
            title: title.to_owned(),
            message: message.into(),
            nav: None,
        }
    }

    pub fn with_nav(mut self, nav: &Nav) -> Self {
        self.nav = Some(nav.clone());
        self
    }

    /// Maps a domain outcome to a page. Internal failures show a generic message with the
    /// request id; the details go to the log.
    pub fn from_error(e: Error, nav: &Nav) -> Self {
        let p = match e {
            Error::Forbidden => PageError::new(
                StatusCode::FORBIDDEN,
                "Not allowed",
                "Your role does not allow this. Ask an administrator of your organisation.",
            ),
            Error::NotFound(what) => PageError::new(
                StatusCode::NOT_FOUND,
                "Not found",
                format!("This {what} does not exist (or was purged)."),
            ),
            Error::Conflict { attribute } => PageError::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!("Another live account already has this {attribute}."),
            ),
            Error::Invalid { reason, .. } => {
                PageError::new(StatusCode::UNPROCESSABLE_ENTITY, "Cannot do that", reason)
            }
            Error::Unavailable(detail) => {
                tracing::warn!(%detail, "dashboard: storage unavailable");
                PageError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Temporarily unavailable",
                    "The service is busy or its database is unavailable. Try again in a moment.",
                )
            }
            other => {
                tracing::error!(error = %other, "dashboard request failed");
                PageError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "An internal error occurred. If it persists, give your operator the request id from the X-Request-Id response header.",
                )
            }
        };
        p.with_nav(nav)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        render(
            self.status,
            &ErrorPage {
                nav: self.nav,
                title: self.title,
                message: self.message,
            },
        )
    }
}

/// 303 See Other: the answer to a successful form POST.
pub(crate) fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}
