//! Cross-site request forgery defence for every dashboard POST, in two layers: the
//! request must come from a page of this dashboard (its `Origin`, or failing that its
//! `Referer`, is the dashboard's own origin), and the form must carry the session's CSRF
//! token (compared in constant time). `SameSite=Strict` on the session cookie is a third.

use super::session::SignedIn;
use super::PageError;
use crate::AppState;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use subtle::ConstantTimeEq;

/// Largest accepted form body; dashboard forms are a few hundred bytes.
const MAX_FORM: usize = 64 * 1024;

/// The fields of an urlencoded form (the first value of each name).
#[derive(Debug, Default)]
pub struct Fields(HashMap<String, String>);

impl Fields {
    pub fn parse(body: &[u8]) -> Self {
        let mut map = HashMap::new();
        for (k, v) in form_urlencoded::parse(body) {
            map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        Fields(map)
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// `scheme://host[:port]` of a URL, lower-cased.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    (!authority.is_empty() && !authority.contains('@'))
        .then(|| format!("{scheme}://{authority}").to_ascii_lowercase())
}

/// Whether the request was sent by a page of this dashboard: its `Origin` (or `Referer`
/// when a browser sends no Origin) must be the public URL's origin, or this server's own
/// origin as the browser addressed it (`Host`, with the public URL's scheme).
pub fn same_origin(headers: &HeaderMap, public_url: &str) -> bool {
    let Some(public) = origin_of(public_url) else {
        return false;
    };
    let presented = match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some("null") => return false,
        Some(o) => origin_of(&format!("{o}/")),
        None => headers
            .get(header::REFERER)
            .and_then(|v| v.to_str().ok())
            .and_then(origin_of),
    };
    let Some(presented) = presented else {
        return false;
    };
    if presented == public {
        return true;
    }
    let scheme = public.split("://").next().unwrap_or("http");
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|host| presented == format!("{scheme}://{host}").to_ascii_lowercase())
}

pub fn tokens_match(a: &str, b: &str) -> bool {
    !a.is_empty() && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The refusal of a forged (or stale) form.
pub fn refused() -> PageError {
    PageError::new(
        StatusCode::FORBIDDEN,
        "Form refused",
        "This form was not sent from a page of this dashboard, or the page is from an earlier \
         session. Nothing was changed. Reload the page and try again.",
    )
}

/// Reads an urlencoded body of at most `MAX_FORM` bytes.
pub async fn read_fields(req: Request) -> Result<Fields, Response> {
    let bytes = axum::body::to_bytes(req.into_body(), MAX_FORM)
        .await
        .map_err(|_| {
            PageError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Form too large",
                "The form was larger than expected.",
            )
            .into_response()
        })?;
    Ok(Fields::parse(&bytes))
}

/// A POSTed form of a signed-in user that passed the origin and CSRF-token checks.
pub struct CheckedForm {
    pub user: SignedIn,
    pub fields: Fields,
}

impl FromRequest<AppState> for CheckedForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let user = SignedIn::from_request_parts(&mut parts, state).await?;
        if !same_origin(&parts.headers, &state.services.public_url) {
            tracing::warn!("dashboard: cross-origin form refused");
            return Err(refused().with_nav(&user.nav("")).into_response());
        }
        let fields = read_fields(Request::from_parts(parts, body)).await?;
        let ok = fields
            .get("csrf")
            .is_some_and(|t| tokens_match(t, &user.session.csrf_token));
        if !ok {
            tracing::warn!("dashboard: form without a valid CSRF token refused");
            return Err(refused().with_nav(&user.nav("")).into_response());
        }
        Ok(CheckedForm { user, fields })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn origins() {
        let p = "https://backup.example.com";
        assert!(same_origin(
            &h(&[("origin", "https://backup.example.com")]),
            p
        ));
        assert!(same_origin(
            &h(&[("origin", "https://BACKUP.example.com")]),
            p
        ));
        assert!(!same_origin(&h(&[("origin", "https://evil.example")]), p));
        assert!(!same_origin(
            &h(&[("origin", "http://backup.example.com")]),
            p
        ));
        assert!(!same_origin(&h(&[("origin", "null")]), p));
        assert!(!same_origin(&h(&[]), p));
        assert!(same_origin(
            &h(&[("referer", "https://backup.example.com/settings/scim")]),
            p
        ));
        assert!(!same_origin(
            &h(&[("referer", "https://backup.example.com.evil.example/x")]),
            p
        ));
        // Addressed by another name of the same server (no public URL configured).
        assert!(same_origin(
            &h(&[
                ("origin", "http://localhost:8080"),
                ("host", "localhost:8080")
            ]),
            "http://127.0.0.1:8080"
        ));
        assert!(!same_origin(
            &h(&[("origin", "http://evil:8080"), ("host", "localhost:8080")]),
            "http://127.0.0.1:8080"
        ));
    }

    #[test]
    fn token_comparison() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("", ""));
        assert!(!tokens_match("ab", "abc"));
    }
}
