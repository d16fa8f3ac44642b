//! Operational endpoints: liveness (`/livez`), readiness (`/readyz`, and `/healthz`
//! as its alias), Prometheus metrics; and the responses for unknown paths and panics.

use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::time::{Duration, Instant};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/healthz", get(readyz))
        .route("/metrics", get(metrics_on_main))
}

/// The router of `--metrics-listen`'s own listener: `/metrics` only.
pub fn metrics_routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// The longest a readiness probe waits for each of the database and the vault store.
pub const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// 200 whenever the process answers: nothing is checked, so an orchestrator restarts
/// the process only when it is stuck, never for an outage of a dependency.
async fn livez() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// 200 when the database answers and the vault's store is reachable, 503 naming what
/// failed otherwise (details go to the log, not to the unauthenticated client).
/// Migrations have run by then: `serve` applies them before it answers any request.
async fn readyz(State(state): State<AppState>) -> Response {
    // The route needs no credential: however many probes arrive at once, one check runs
    // and the others take its result, so a flood costs one database ping and one vault
    // probe at a time (and during an outage one warning, not one per request). A probe
    // takes only a result that was finished after it arrived, so a probe sent after an
    // outage ends never sees the answer from before.
    let asked = Instant::now();
    let mut last = state.metrics.readiness.lock().await;
    let (db, vault) = match *last {
        Some((finished, db, vault)) if finished >= asked => (db, vault),
        _ => {
            let (db, vault) = check_readiness(&state).await;
            *last = Some((Instant::now(), db, vault));
            (db, vault)
        }
    };
    drop(last);
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let body = json!({
        "status": word(db && vault),
        "checks": {"database": word(db), "vault": word(vault), "migrations": "ok"},
    });
    if db && vault {
        Json(body).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// Whether the database answers and the vault's store is reachable, each within
/// [`READY_TIMEOUT`].
async fn check_readiness(state: &AppState) -> (bool, bool) {
    let db = async {
        match tokio::time::timeout(READY_TIMEOUT, state.services.store.ping()).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: the database does not answer");
                false
            }
            Err(_) => {
                tracing::warn!("readiness: the database did not answer in time");
                false
            }
        }
    };
    let vault = async {
        match state.vault.vault.probe(READY_TIMEOUT).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "readiness: the vault store is unreachable");
                false
            }
        }
    };
    tokio::join!(db, vault)
}

/// `/metrics` on the main listener: 404 when it has a listener of its own.
async fn metrics_on_main(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.metrics.access.own_listener {
        return not_found().await;
    }
    metrics(State(state), headers).await
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.metrics.access.allows(&headers) {
        let mut r = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"cairn metrics\""),
        );
        return r;
    }
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
