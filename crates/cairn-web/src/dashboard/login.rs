//! `/login` and `/logout`. Sign-in forms are protected from login CSRF by the origin check
//! and a double-submit token (a random cookie repeated in the form), since no session
//! exists yet.

use super::csrf::{read_fields, refused, same_origin, tokens_match};
use super::session::{
    clear_session_cookie, cookie, presented_secret, secure, session_cookie, set_cookie,
};
use super::{render, see_other};
use crate::AppState;
use askama::Template;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_core::session::{random_hex, SignInError, SignInOutcome};
use serde::Deserialize;
use std::net::SocketAddr;

const LOGIN_CSRF_COOKIE: &str = "cairn_login";

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Option<super::Nav>,
    csrf: String,
    email: String,
    next: String,
    error: Option<String>,
    notice: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginParams {
    next: Option<String>,
    signed_out: Option<String>,
    /// Set by the second-factor and password-link pages (issue 22).
    expired: Option<String>,
    password_set: Option<String>,
}

/// Where to go after sign-in: only paths of this site (no `//host`, no `/\host`).
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.starts_with("/login")
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/accounts".to_owned(),
    }
}

fn login_page(
    state: &AppState,
    status: StatusCode,
    email: &str,
    next: &str,
    error: Option<String>,
    notice: Option<String>,
) -> Response {
    let csrf = random_hex();
    let sec = secure(&state.services.public_url);
    let mut res = render(
        status,
        &LoginPage {
            nav: None,
            csrf: csrf.clone(),
            email: email.to_owned(),
            next: next.to_owned(),
            error,
            notice,
        },
    );
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_CSRF_COOKIE, &csrf, 3600, sec),
    );
    res
}

pub async fn show_login(
    State(state): State<AppState>,
    Query(p): Query<LoginParams>,
    headers: HeaderMap,
) -> Response {
    let next = safe_next(p.next.as_deref());
    // Already signed in: straight on.
    if let Some(secret) = presented_secret(&headers, &state.services.public_url) {
        if let Ok(Some(_)) = state.services.dashboard_session(&secret).await {
            return see_other(&next);
        }
    }
    let notice = p
        .signed_out
        .map(|_| "You have been signed out.".to_owned())
        .or(p.expired.map(|_| {
            "Your sign-in took too long or was already completed. Sign in again.".to_owned()
        }))
        .or(p
            .password_set
            .map(|_| "Your password is set. Sign in with it now.".to_owned()));
    login_page(&state, StatusCode::OK, "", &next, None, notice)
}

/// The client's address for throttling: the TCP peer, or behind a trusted reverse proxy
/// the address it forwarded (see [`crate::client_addr`]).
pub(crate) fn client_addr(state: &AppState, req: &Request) -> String {
    match req.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(c) => state
            .trusted_proxies
            .client(c.0.ip(), req.headers())
            .to_string(),
        None => "unknown".into(),
    }
}

pub async fn sign_in(State(state): State<AppState>, req: Request) -> Response {
    let headers = req.headers().clone();
    let client = client_addr(&state, &req);
    if !same_origin(&headers, &state.services.public_url) {
        return refused().into_response();
    }
    let fields = match read_fields(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let cookie_token = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or("");
    if !fields
        .get("csrf")
        .is_some_and(|t| tokens_match(t, cookie_token))
    {
        return refused().into_response();
    }
    let email = fields.get("email").unwrap_or("").trim().to_owned();
    let password = fields.get("password").unwrap_or("").to_owned();
    let next = safe_next(fields.get("next"));
    if email.is_empty() || password.is_empty() {
        return login_page(
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            &email,
            &next,
            Some("Enter your email and password.".into()),
            None,
        );
    }
    let previous = presented_secret(&headers, &state.services.public_url);
    match state
        .services
        .sign_in(&email, password, &client, previous.as_ref())
        .await
    {
        // Second factor (issue 22): the code, or enrolment, comes next.
        Ok(SignInOutcome::SecondFactor { challenge, enrol }) => {
            let step = if enrol { "enrol" } else { "second-factor" };
            let q: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
            let mut res = see_other(&format!("/login/{step}?next={q}"));
            res.headers_mut().append(
                header::SET_COOKIE,
                super::second_factor::challenge_cookie(
                    &challenge,
                    secure(&state.services.public_url),
                ),
            );
            res
        }
        Ok(SignInOutcome::Session(secret, _)) => {
            let sec = secure(&state.services.public_url);
            let mut res = see_other(&next);
            let h = res.headers_mut();
            h.append(header::SET_COOKIE, session_cookie(&secret, sec));
            h.append(
                header::SET_COOKIE,
                set_cookie(LOGIN_CSRF_COOKIE, "", 0, sec),
            );
            res
        }
        Err(SignInError::InvalidCredentials | SignInError::Expired) => login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            &email,
            &next,
            Some("The email or password is incorrect.".into()),
            None,
        ),
        Err(SignInError::Throttled { retry_after }) => {
            let minutes = (retry_after.whole_seconds() + 59) / 60;
            let when = if minutes <= 1 {
                "a minute".to_owned()
            } else {
                format!("{minutes} minutes")
            };
            let mut res = login_page(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                &email,
                &next,
                Some(format!(
                    "Too many failed sign-in attempts for this account or from your network. \
                     For your security, sign-in is paused: try again in {when}. \
                     If you forgot your password, ask your operator to reset it."
                )),
                None,
            );
            if let Ok(v) = retry_after.whole_seconds().to_string().parse() {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            res
        }
        Err(SignInError::Busy { retry_after }) => {
            let mut res = login_page(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                &email,
                &next,
                Some(
                    "Many people are signing in right now. Wait a few seconds and try again."
                        .into(),
                ),
                None,
            );
            if let Ok(v) = retry_after.whole_seconds().max(1).to_string().parse() {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            // Shed for load (`cairn_rate_limited_total{surface="dashboard"}`).
            res.extensions_mut().insert(crate::metrics::Shed);
            res
        }
        Err(SignInError::PasswordSignInOff { tenant }) => login_page(
            &state,
            StatusCode::FORBIDDEN,
            &email,
            &next,
            Some(format!(
                "Your organisation has turned password sign-in off: sign in through single \
                 sign-on at {}.",
                crate::sso::login_url(&state.services.public_url, &tenant)
            )),
            None,
        ),
        Err(SignInError::Failed(e)) => {
            tracing::error!(error = %e, "sign-in failed");
            login_page(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                &email,
                &next,
                Some("Signing in is not possible right now. Try again in a moment.".into()),
                None,
            )
        }
    }
}

/// Ends the session (CSRF-checked: a forged sign-out is a nuisance, but still a change).
pub async fn sign_out(State(state): State<AppState>, form: super::csrf::CheckedForm) -> Response {
    if let Err(e) = state.services.sign_out(&form.user.secret).await {
        tracing::warn!(error = %e, "sign-out failed");
    }
    let mut res = see_other("/login?signed_out=1");
    res.headers_mut().append(
        header::SET_COOKIE,
        clear_session_cookie(secure(&state.services.public_url)),
    );
    res
}
