//! One-time sign-in links for backup accounts (issue 22; `cairn_core::welcome`):
//!
//! - `GET /me/link/{secret}`: a page naming the account, with a "Continue" button. The
//!   GET changes nothing: mail scanners and link previews that fetch it do not use the
//!   link up.
//! - `POST /me/link/{secret}`: origin-checked (no other site can sign a browser in to an
//!   account of its choosing); uses the link up and starts the account's session, then
//!   moves on to `/me`.
//!
//! A used or expired link answers 410, a malformed or unknown one 400; neither starts a
//! session.

use crate::dashboard::csrf::{refused, same_origin};
use crate::dashboard::view::datetime;
use crate::dashboard::{render, PageError};
use crate::sso::{meta_of, previous_secret, signed_in_response, unavailable};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cairn_core::people::LinkSecret;
use cairn_core::sso::SsoSignedIn;
use cairn_core::welcome::AccountLinkState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/me/link/{token}", get(show_link).post(use_link))
        .layer(axum::middleware::from_fn(
            crate::dashboard::security_headers,
        ))
}

#[derive(Template)]
#[template(path = "my_link.html")]
struct LinkPage {
    nav: Option<crate::dashboard::Nav>,
    user_name: String,
    expires: String,
    token: String,
}

/// The page for a link that cannot be used.
fn not_usable(state: &AccountLinkState) -> Response {
    let (status, title, message) = match state {
        AccountLinkState::Used => (
            StatusCode::GONE,
            "This sign-in link was used already",
            "Each sign-in link works once. Ask an administrator of your organisation for a \
             new one.",
        ),
        AccountLinkState::Expired => (
            StatusCode::GONE,
            "This sign-in link has expired",
            "Ask an administrator of your organisation for a new one.",
        ),
        AccountLinkState::Live(..) | AccountLinkState::Unknown => (
            StatusCode::BAD_REQUEST,
            "This sign-in link is not valid",
            "Check that the whole link was copied, or ask an administrator of your \
             organisation for a new one.",
        ),
    };
    PageError::new(status, title, message).into_response()
}

pub async fn show_link(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let Some(secret) = LinkSecret::parse(&token) else {
        return not_usable(&AccountLinkState::Unknown);
    };
    match state.services.account_link_state(&secret).await {
        Ok(AccountLinkState::Live(account, expires_at)) => render(
            StatusCode::OK,
            &LinkPage {
                nav: None,
                user_name: account.user_name.to_string(),
                expires: datetime(expires_at),
                token: secret.expose().to_owned(),
            },
        ),
        Ok(other) => not_usable(&other),
        Err(e) => unavailable(e),
    }
}

pub async fn use_link(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !same_origin(&headers, &state.services.public_url) {
        return refused().into_response();
    }
    let Some(secret) = LinkSecret::parse(&token) else {
        return not_usable(&AccountLinkState::Unknown);
    };
    let previous = previous_secret(&headers, &state.services.public_url);
    match state
        .services
        .use_account_sign_in_link(&secret, previous.as_ref(), &meta_of(&headers))
        .await
    {
        Ok(Ok(session)) => {
            signed_in_response(&state.services.public_url, SsoSignedIn::Account(session))
        }
        Ok(Err(s)) => not_usable(&s),
        Err(e) => unavailable(e),
    }
}
