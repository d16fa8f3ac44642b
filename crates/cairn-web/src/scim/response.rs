//! SCIM responses: `application/scim+json` bodies, errors with string statuses, ETags.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_scim::ScimError;
use serde_json::Value;

pub const SCIM_JSON: &str = "application/scim+json";

/// Sets a resource's `ETag` from its version (RFC 7644 §3.14).
pub fn set_etag(resp: &mut Response, version: i64) {
    if let Ok(v) = HeaderValue::from_str(&cairn_scim::user::etag(version)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
}

/// A SCIM resource or list body.
pub struct ScimJson(pub StatusCode, pub Value);

impl IntoResponse for ScimJson {
    fn into_response(self) -> Response {
        // One user renders to about 700 bytes: start there rather than at serde_json's
        // 128 and copying the body through three reallocations.
        let mut body = Vec::with_capacity(1024);
        if serde_json::to_writer(&mut body, &self.1).is_err() {
            body.clear();
        }
        ScimBytes(self.0, body).into_response()
    }
}

/// A SCIM body already serialised.
pub struct ScimBytes(pub StatusCode, pub Vec<u8>);

impl IntoResponse for ScimBytes {
    fn into_response(self) -> Response {
        (
            self.0,
            [(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON))],
            self.1,
        )
            .into_response()
    }
}

/// A SCIM error response (RFC 7644 §3.12).
#[derive(Debug)]
pub struct ApiError(pub ScimError);

impl From<ScimError> for ApiError {
    fn from(e: ScimError) -> Self {
        ApiError(e)
    }
}

impl From<cairn_core::Error> for ApiError {
    fn from(e: cairn_core::Error) -> Self {
        match &e {
            cairn_core::Error::Internal(msg) => tracing::error!(error = %msg, "internal error"),
            cairn_core::Error::Unavailable(msg) => {
                tracing::warn!(error = %msg, "storage unavailable")
            }
            _ => {}
        }
        ApiError(ScimError::from(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = ScimJson(status, self.0.to_body()).into_response();
        // For the provisioning inspector's log.
        resp.extensions_mut().insert(super::inspector::ErrorInfo {
            scim_type: self.0.scim_type.map(|t| t.as_str()),
            detail: self.0.detail,
        });
        let h = resp.headers_mut();
        match status {
            StatusCode::UNAUTHORIZED => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"cairn-scim\""),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

pub async fn not_found() -> ApiError {
    ApiError(ScimError::not_found(
        "no such SCIM endpoint; this service provider serves /Users, /Groups, /ServiceProviderConfig, /Schemas and /ResourceTypes",
    ))
}

pub async fn method_not_allowed() -> ApiError {
    ApiError(ScimError::new(
        405,
        None,
        "this method is not allowed on this endpoint",
    ))
}
