//! Extractors for SCIM requests: the tenant capability from the bearer token, JSON bodies
//! (either JSON media type, at most 1 MiB), query parameters, `If-Match`, request metadata.

use super::response::ApiError;
use crate::{AppState, REQUEST_ID};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use cairn_core::audit::RequestMeta;
use cairn_core::auth::ScimCtx;
use cairn_scim::ScimError;
use serde_json::Value;

/// Most query parameters accepted on one request.
const MAX_PARAMS: usize = 32;

/// Largest accepted request body.
pub const MAX_BODY: usize = 1 << 20;

/// The authenticated tenant of a SCIM request. Every SCIM handler takes one, so no route
/// can be reached without a live token of the tenant named in the URL.
#[derive(Clone)]
pub struct Scim(pub ScimCtx);

impl FromRequestParts<AppState> for Scim {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Inside `nest`, axum strips the matched prefix from `parts.uri`; the tenant is in
        // the original URI.
        let path = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or(parts.uri.path(), |u| u.0.path());
        let tenant = tenant_segment(path).unwrap_or_default();
        let auth = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let ua = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        let ctx = state.services.authenticate_scim(tenant, auth, ua).await?;
        super::inspector::authenticated(ctx.token_id().as_str());
        // Charged after authentication: see `rate_limit` for why.
        if let Some(limit) = &state.scim_rate_limit {
            if let Err(wait) = limit.check(ctx.tenant_id(), std::time::Instant::now()) {
                tracing::debug!(tenant = %ctx.tenant_id(), "SCIM rate limit exceeded");
                return Err(ApiError(ScimError::new(
                    429,
                    None,
                    format!(
                        "this tenant is sending more than {} SCIM requests per second; retry after {} s",
                        limit.rate(),
                        super::rate_limit::retry_after_secs(wait)
                    ),
                )));
            }
        }
        Ok(Scim(ctx))
    }
}

/// The tenant id in `/scim/v2/{tenant}/…`. Read from the path directly because the
/// extractor also runs for the fallback routes that have no `{tenant}` capture.
fn tenant_segment(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/scim/v2/")?;
    Some(rest.split('/').next().unwrap_or(rest))
}

/// Audit metadata of the request.
pub struct Meta(pub RequestMeta);

impl<S: Send + Sync> FromRequestParts<S> for Meta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Meta(request_meta(&parts.headers)))
    }
}

pub fn request_meta(h: &HeaderMap) -> RequestMeta {
    let get = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect::<String>())
    };
    RequestMeta {
        user_agent: get(header::USER_AGENT.as_str()),
        request_id: get(REQUEST_ID.as_str()),
    }
}

/// Query parameters, names matched case-insensitively (RFC 7644 treats parameter names
/// like attribute names). `+` decodes to a space, as Entra encodes filters. A request
/// carries a handful: a list compared without allocating beats a hash map here.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(q) = parts.uri.query() else {
            return Ok(Params(Vec::new()));
        };
        let mut list: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            // SCIM defines seven; the bound keeps the duplicate check linear in practice.
            if list.len() >= MAX_PARAMS {
                return Err(ApiError(ScimError::invalid_value(format!(
                    "more than {MAX_PARAMS} query parameters"
                ))));
            }
            if list.iter().any(|(seen, _)| seen.eq_ignore_ascii_case(&k)) {
                return Err(ApiError(ScimError::invalid_value(format!(
                    "query parameter {} is given more than once",
                    k.to_ascii_lowercase()
                ))));
            }
            list.push((k.into_owned(), v.into_owned()));
        }
        Ok(Params(list))
    }
}

/// `If-Match`, parsed into the version it names (`None`: absent or `*`).
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.headers.get(header::IF_MATCH) {
            None => Ok(IfMatch(None)),
            Some(v) => {
                let s = v.to_str().map_err(|_| {
                    ApiError(ScimError::invalid_value("If-Match is not a valid ETag"))
                })?;
                Ok(IfMatch(cairn_scim::user::parse_if_match(s)?))
            }
        }
    }
}

/// A JSON request body. Accepts `application/scim+json` and `application/json` (with any
/// parameters; Okta's SPEC test posts `application/json`) or no Content-Type at all.
pub struct ScimBody(pub Value);

impl FromRequest<AppState> for ScimBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or("").trim();
            if !matches!(
                essence,
                "application/scim+json" | "application/json" | "text/json" | ""
            ) {
                return Err(ApiError(ScimError::new(
                    415,
                    None,
                    "send the body as application/scim+json or application/json",
                )));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError(ScimError::new(
                    413,
                    None,
                    format!("the request body is larger than {MAX_BODY} bytes"),
                ))
            } else {
                ApiError(ScimError::invalid_syntax(format!(
                    "cannot read the body: {e}"
                )))
            }
        })?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError(ScimError::invalid_syntax(format!(
                "the body is not valid JSON: {e}"
            )))
        })?;
        Ok(ScimBody(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn params(uri: &str) -> Result<Params, ApiError> {
        let (mut parts, ()) = axum::http::Request::builder()
            .uri(uri)
            .body(())
            .unwrap()
            .into_parts();
        Params::from_request_parts(&mut parts, &()).await
    }

    #[tokio::test]
    async fn names_match_without_case_and_plus_is_a_space() {
        let p = params("/Users?Filter=userName+eq+%22a%22&COUNT=5")
            .await
            .unwrap();
        assert_eq!(p.get("filter"), Some("userName eq \"a\""));
        assert_eq!(p.get("count"), Some("5"));
        assert_eq!(p.get("startIndex"), None);
        assert_eq!(params("/Users").await.unwrap().get("filter"), None);
    }

    #[tokio::test]
    async fn a_repeated_name_or_too_many_names_is_a_400() {
        let e = params("/Users?count=1&Count=2").await.err().unwrap();
        assert_eq!(e.0.status, 400);
        assert!(e.0.detail.contains("count"), "{}", e.0.detail);
        let many: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("p{i}=1")).collect();
        let e = params(&format!("/Users?{}", many.join("&")))
            .await
            .err()
            .unwrap();
        assert_eq!(e.0.status, 400);
        let enough: Vec<String> = (0..MAX_PARAMS).map(|i| format!("p{i}=1")).collect();
        assert!(params(&format!("/Users?{}", enough.join("&")))
            .await
            .is_ok());
    }
}
