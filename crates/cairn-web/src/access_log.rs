//! The access log: one line per request at `info` (target `cairn::access`), with the
//! method, the matched route (its pattern, never the concrete path: `/invite/{token}`
//! carries a secret), the status, the latency, the tenant named in the path and the
//! client's address (through `--trusted-proxies`). Never the query string, headers or
//! bodies. Probes and scrapes (`/livez`, `/readyz`, `/healthz`, `/metrics`) are logged at
//! `debug`, so a health check every few seconds does not drown the log.

use crate::AppState;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use cairn_core::ids::TenantId;
use std::net::SocketAddr;
use std::time::Instant;

/// The log target; `CAIRN_LOG=info,cairn::access=warn` turns the access log off.
pub const TARGET: &str = "cairn::access";

pub async fn log(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let tenant = route
        .as_deref()
        .and_then(|r| tenant_in(r, req.uri().path()))
        .map(|t| t.as_str().to_owned());
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| state.trusted_proxies.client(peer.ip(), req.headers()));
    let method = crate::metrics::method_label(req.method());
    let start = Instant::now();
    let resp = next.run(req).await;
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    let route = route.as_deref().unwrap_or("unmatched");
    let status = resp.status().as_u16();
    let tenant = tenant.as_deref().unwrap_or("-");
    let client = client.map(|c| c.to_string());
    let client = client.as_deref().unwrap_or("-");
    if matches!(route, "/livez" | "/readyz" | "/healthz" | "/metrics") {
        tracing::debug!(target: TARGET, method, route, status, latency_ms, tenant, client, "request");
    } else {
        tracing::info!(target: TARGET, method, route, status, latency_ms, tenant, client, "request");
    }
    resp
}

/// The tenant id in `path` where the route pattern has `{tenant}` (the same segment);
/// `None` when there is none or it is not a tenant id (clients write anything there,
/// and the log must not carry what they wrote).
pub fn tenant_in(route: &str, path: &str) -> Option<TenantId> {
    let at = route.split('/').position(|s| s == "{tenant}")?;
    TenantId::parse(path.split('/').nth(at)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenant_is_read_from_its_segment_only() {
        let id = "0193a0c4-5b6e-7c8d-9e0f-a1b2c3d4e5f6";
        let t = tenant_in(
            "/scim/v2/{tenant}/Users/{id}",
            &format!("/scim/v2/{id}/Users/x"),
        );
        assert_eq!(t.map(|t| t.as_str().to_owned()), Some(id.to_owned()));
        let t = tenant_in(
            "/backup/{tenant}/{account}/config",
            &format!("/backup/{id}/a/config"),
        );
        assert!(t.is_some());
        assert!(tenant_in("/scim/v2/{tenant}/Users", "/scim/v2/<script>/Users").is_none());
        assert!(tenant_in("/invite/{token}", "/invite/secret").is_none());
    }
}
