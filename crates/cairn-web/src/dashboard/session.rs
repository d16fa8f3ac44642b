//! The session cookie and the `SignedIn` extractor that every page but `/login` takes.
//!
//! The cookie holds a random id (the store keeps only its SHA-256); it is `HttpOnly`
//! (scripts cannot read it), `SameSite=Strict` (other sites cannot make the browser send
//! it), `Secure` and `__Host-`-prefixed when the public URL is https, and lives no longer
//! than the session's absolute lifetime.

use super::Nav;
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Redirect, Response};
use cairn_core::session::{DashboardSession, SessionSecret, SESSION_ABSOLUTE};
use cairn_core::store::Role;

/// Whether cookies must be `Secure`: when the dashboard is served over https.
pub fn secure(public_url: &str) -> bool {
    public_url
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
}

/// The session cookie's name. The `__Host-` prefix (https only) makes browsers refuse it
/// unless it is Secure, host-only and for path `/`.
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-cairn_session"
    } else {
        "cairn_session"
    }
}

/// The value of cookie `name` in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value. `max_age` zero deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{secure}"
    ))
    .expect("cookie values are ASCII")
}

pub fn session_cookie(secret: &SessionSecret, secure: bool) -> HeaderValue {
    set_cookie(
        session_cookie_name(secure),
        secret.expose(),
        SESSION_ABSOLUTE.whole_seconds(),
        secure,
    )
}

pub fn clear_session_cookie(secure: bool) -> HeaderValue {
    set_cookie(session_cookie_name(secure), "", 0, secure)
}

/// The session id the browser presented, if well-formed.
pub fn presented_secret(headers: &HeaderMap, public_url: &str) -> Option<SessionSecret> {
    cookie(headers, session_cookie_name(secure(public_url))).and_then(SessionSecret::parse)
}

/// A signed-in dashboard user. Requests without a live session are sent to `/login`
/// (and come back to the page they asked for afterwards).
pub struct SignedIn {
    pub session: DashboardSession,
    pub secret: SessionSecret,
}

impl SignedIn {
    pub fn nav(&self, section: &'static str) -> Nav {
        let role = self.session.ctx.role();
        Nav {
            email: self.session.ctx.email().to_owned(),
            role: role.as_str(),
            admin: role == Role::Administrator,
            csrf: self.session.csrf_token.clone(),
            section,
        }
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let services = &state.services;
        let to_login = || {
            let next = if parts.method == Method::GET {
                parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/")
            } else {
                "/"
            };
            let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
            Redirect::to(&format!("/login?next={next}")).into_response()
        };
        let Some(secret) = presented_secret(&parts.headers, &services.public_url) else {
            return Err(backup_user_refused(parts, state)
                .await
                .unwrap_or_else(to_login));
        };
        match services.dashboard_session(&secret).await {
            Ok(Some(session)) => Ok(SignedIn { session, secret }),
            Ok(None) => Err(backup_user_refused(parts, state)
                .await
                .unwrap_or_else(to_login)),
            Err(e) => {
                tracing::warn!(error = %e, "session lookup failed");
                Err(super::PageError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "Temporarily unavailable",
                    "Your session could not be checked right now. Try again in a moment.",
                )
                .into_response())
            }
        }
    }
}

/// A 403 for a browser signed in as a backup account (its own page only, `/me`) that
/// asks for a dashboard page: it is signed in, just not allowed there. `None` for
/// everyone else (they are sent to sign in).
async fn backup_user_refused(parts: &Parts, state: &AppState) -> Option<Response> {
    let sec = secure(&state.services.public_url);
    let secret = cookie(&parts.headers, crate::sso::account_cookie_name(sec))
        .and_then(SessionSecret::parse)?;
    match state.services.account_session(&secret).await {
        Ok(Some(_)) => Some(
            super::PageError::new(
                axum::http::StatusCode::FORBIDDEN,
                "Not allowed",
                "You are signed in to your own backup account, which does not open the \
                 administrators' dashboard. Your backup is on your own page: /me.",
            )
            .into_response(),
        ),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "account session lookup failed");
            None
        }
    }
}
