//! Operational endpoints: liveness/readiness and Prometheus metrics; and the responses
//! for unknown paths and panics.

use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

/// 200 when the database answers, 503 otherwise.
async fn healthz(State(state): State<AppState>) -> Response {
    match state.services.store.ping().await {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable"})),
            )
                .into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.refresh_stale(&state.services).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))).into_response()
}

/// A panic becomes a 500 with a SCIM error body; the panic itself is logged by the
/// tracing layer and never shown to the client.
pub fn panic_response(_err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    crate::scim::response::ApiError(cairn_scim::ScimError::new(500, None, "internal error"))
        .into_response()
}

/// `GET /_bench/floor` (only with `cairn serve --bench-floor`): the cheapest JSON answer
/// the stack can give, the baseline `cairn-bench` divides every SCIM operation by.
pub async fn bench_floor() -> Response {
    Json(json!({"ok": true})).into_response()
}
