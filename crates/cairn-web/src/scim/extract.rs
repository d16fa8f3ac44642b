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
use std::collections::HashMap;

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
/// like attribute names). `+` decodes to a space, as Entra encodes filters.
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        let mut map = HashMap::new();
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            let k = k.to_ascii_lowercase();
            if map.contains_key(&k) {
                return Err(ApiError(ScimError::invalid_value(format!(
                    "query parameter {k} is given more than once"
                ))));
            }
            map.insert(k, v.into_owned());
        }
        Ok(Params(map))
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
