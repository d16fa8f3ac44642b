//! Cairn's HTTP surface: the SCIM 2.0 service provider under `/scim/v2/{tenant}`, and the
//! backup vault (restic's REST protocol) under `/backup/{tenant}/{account}`, and the
//! operational endpoints `/livez`, `/readyz` (`/healthz`) and `/metrics`. Handlers are
//! thin: they extract, call one `cairn_core::service::Services` method and map the result.

pub mod access_log;
pub mod client_addr;
pub mod dashboard;
pub mod idp_fetch;
pub mod metrics;
pub mod ops;
pub mod restic_commands;
pub mod scim;
pub mod sso;
pub mod sso_oidc;
pub mod vault;
pub mod vault_trash;
pub mod vault_verify;
pub mod welcome;

use axum::extract::Request;
use axum::http::{header, HeaderName, Uri};
use axum::Router;
use cairn_core::service::Services;
use std::sync::Arc;
use tower::Layer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub services: Arc<Services>,
    pub metrics: Arc<metrics::Metrics>,
    /// The backup vault's repositories (restic REST protocol under `/backup`).
    pub vault: Arc<vault::VaultConfig>,
    /// The per-tenant SCIM request budget (`None`: unlimited).
    pub scim_rate_limit: Option<Arc<scim::rate_limit::RateLimiter>>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (sign-in throttling).
    pub trusted_proxies: Arc<client_addr::TrustedProxies>,
    /// Bounds on vault requests in flight.
    pub vault_limits: Arc<vault::VaultLimits>,
    /// Member bounds of group lists and writes, and each tenant's group writes in flight.
    pub group_limits: Arc<scim::group_writes::GroupLimits>,
    /// The provisioning inspector's recorder (`None`: SCIM requests are not logged).
    pub request_log: Option<Arc<scim::inspector::Recorder>>,
    /// OpenID Connect: the HTTP client for providers, their discovery and keys.
    pub oidc: Arc<sso_oidc::Oidc>,
}

/// The application router with its middleware, before path normalisation.
pub fn router(state: AppState) -> Router {
    router_with(state, false)
}

/// [`router`], plus `GET /_bench/floor` when `bench_floor` is set: a trivial JSON handler
/// behind the same middleware, without auth or database, that `cairn-bench` measures as
/// the floor the SCIM operations are compared with. Off unless `cairn serve` is started
/// with the hidden `--bench-floor`.
pub fn router_with(state: AppState, bench_floor: bool) -> Router {
    let metrics = state.metrics.clone();
    let log_state = state.clone();
    let scim = scim::routes().layer(axum::middleware::from_fn_with_state(
        state.clone(),
        scim::inspector::record,
    ));
    let mut routes = Router::new();
    if bench_floor {
        routes = routes.route("/_bench/floor", axum::routing::get(ops::bench_floor));
    }
    routes
        .merge(ops::routes())
        .merge(dashboard::routes())
        .merge(sso::routes())
        .merge(sso_oidc::routes())
        .merge(welcome::routes())
        .merge(vault::routes())
        .nest("/scim/v2/{tenant}", scim)
        .fallback(ops::not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track,
        ))
        .layer(axum::middleware::from_fn_with_state(
            log_state,
            access_log::log,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            ops::panic_response,
        ))
        .layer(axum::middleware::map_response(nosniff))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
}

/// Each request's span: its request id and method. Not its path: some paths carry
/// secrets (`/invite/{token}`), and every line logged inside the span would show it; the
/// access log names the route pattern instead ([`access_log`]).
fn request_span(req: &Request) -> tracing::Span {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("request", method = %req.method(), request_id = %id)
}

/// The service of `--metrics-listen`'s own listener: `/metrics` (with the token check,
/// if any), counted in the metrics like any request; everything else 404.
pub fn metrics_service(state: AppState) -> Service {
    let metrics = state.metrics.clone();
    let router = ops::metrics_routes()
        .fallback(ops::not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track,
        ))
        .layer(axum::middleware::map_response(nosniff));
    let layer = tower::util::MapRequestLayer::new(normalize_path as fn(Request) -> Request);
    layer.layer(router)
}

/// `X-Content-Type-Options: nosniff` on every response (SCIM, vault, health, metrics,
/// errors), so a browser never runs a body as another type than the one declared
/// (<https://fetch.spec.whatwg.org/#x-content-type-options-header>).
async fn nosniff(mut res: axum::response::Response) -> axum::response::Response {
    res.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    res
}

/// The application as one service per request (path normalisation, then the router), for
/// an accept loop that inserts `ConnectInfo<SocketAddr>` into each request itself.
pub type Service = tower::util::MapRequest<Router, fn(Request) -> Request>;

/// [`Service`] over [`router_with`].
pub fn service_with(state: AppState, bench_floor: bool) -> Service {
    let layer = tower::util::MapRequestLayer::new(normalize_path as fn(Request) -> Request);
    layer.layer(router_with(state, bench_floor))
}

/// The service `app` returns, for `axum::serve`.
pub type App = axum::extract::connect_info::IntoMakeServiceWithConnectInfo<
    tower::util::MapRequest<Router, fn(Request) -> Request>,
    std::net::SocketAddr,
>;

/// The complete service: path normalisation runs before routing, so `/Users/` and
/// `//Users` (administrators paste base URLs ending in `/`) reach the same handlers, and
/// so does `/users` ([`scim::canonical_endpoint`]).
/// Connections carry the peer address (dashboard sign-in throttling per address).
pub fn app(state: AppState) -> App {
    app_with(state, false)
}

/// [`app`] over [`router_with`].
pub fn app_with(state: AppState, bench_floor: bool) -> App {
    let layer = tower::util::MapRequestLayer::new(normalize_path as fn(Request) -> Request);
    axum::ServiceExt::<Request>::into_make_service_with_connect_info::<std::net::SocketAddr>(
        layer.layer(router_with(state, bench_floor)),
    )
}

fn normalize_path(mut req: Request) -> Request {
    let path = req.uri().path();
    let cleaned = (path.contains("//") || (path.len() > 1 && path.ends_with('/'))).then(|| {
        let mut clean = String::with_capacity(path.len());
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            clean.push('/');
            clean.push_str(seg);
        }
        if clean.is_empty() {
            clean.push('/');
        }
        clean
    });
    let clean = match (
        scim::canonical_endpoint(cleaned.as_deref().unwrap_or(path)),
        cleaned,
    ) {
        (Some(recased), _) => recased,
        (None, Some(cleaned)) => cleaned,
        (None, None) => return req,
    };
    let pq = match req.uri().query() {
        Some(q) => format!("{clean}?{q}"),
        None => clean,
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(p) = pq.parse() {
        parts.path_and_query = Some(p);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> String {
        let req = Request::builder()
            .uri(p)
            .body(axum::body::Body::empty())
            .unwrap();
        normalize_path(req).uri().to_string()
    }

    #[test]
    fn paths_are_normalised() {
        assert_eq!(norm("/scim/v2/t/Users/"), "/scim/v2/t/Users");
        assert_eq!(
            norm("/scim/v2/t//Users?count=1"),
            "/scim/v2/t/Users?count=1"
        );
        assert_eq!(norm("/"), "/");
        assert_eq!(norm("/healthz"), "/healthz");
    }

    #[test]
    fn endpoints_are_routed_without_regard_to_case() {
        assert_eq!(norm("/scim/v2/t/users"), "/scim/v2/t/Users");
        assert_eq!(norm("/scim/v2/t/USERS/AbC?x=1"), "/scim/v2/t/Users/AbC?x=1");
        assert_eq!(norm("/scim/v2/t/groups/"), "/scim/v2/t/Groups");
        assert_eq!(norm("/scim/v2/t/users/.search"), "/scim/v2/t/Users/.search");
        assert_eq!(
            norm("/scim/v2/t//serviceproviderconfig"),
            "/scim/v2/t/ServiceProviderConfig"
        );
        assert_eq!(norm("/scim/v2/t/schemas"), "/scim/v2/t/Schemas");
        assert_eq!(
            norm("/scim/v2/t/resourcetypes/user"),
            "/scim/v2/t/ResourceTypes/user"
        );
        // The tenant, ids and other paths keep their case.
        assert_eq!(norm("/scim/v2/Users/users"), "/scim/v2/Users/Users");
        assert_eq!(norm("/scim/v2/t/Userz"), "/scim/v2/t/Userz");
        assert_eq!(norm("/Scim/v2/t/users"), "/Scim/v2/t/users");
    }
}
