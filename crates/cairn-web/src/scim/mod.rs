//! The SCIM 2.0 service provider (RFC 7644) of one tenant, mounted at `/scim/v2/{tenant}`.

pub mod bulk;
pub mod cursor;
pub mod discovery;
pub mod extract;
pub mod group_writes;
pub mod groups;
pub mod rate_limit;
pub mod response;
pub mod users;

use crate::AppState;
use axum::routing::{get, post};
use axum::Router;
use response::{method_not_allowed, not_found};

/// The endpoints under a tenant's base URL, as routed. RFC 7644 §3.2 names them in this
/// case, but clients send `/users` or `/groups` too (a vendor's published SCIM test
/// collection does), and RFC 3986 §6.2.2.1 leaves path case to the server:
/// [`canonical_endpoint`] routes them without regard to case.
const ENDPOINTS: [&str; 6] = [
    "Users",
    "Groups",
    "ServiceProviderConfig",
    "Schemas",
    "ResourceTypes",
    ".search",
];

/// The path with the endpoint segment after `/scim/v2/{tenant}/` in its routed case, or
/// `None` when it already is (or names no endpoint). Ids and the rest are left as sent.
pub fn canonical_endpoint(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/scim/v2/")?;
    let (_tenant, rest) = rest.split_once('/')?;
    let segment = rest.split('/').next()?;
    let canonical = ENDPOINTS
        .iter()
        .find(|e| e.eq_ignore_ascii_case(segment) && **e != segment)?;
    let start = path.len() - rest.len();
    let mut out = String::with_capacity(path.len());
    out.push_str(&path[..start]);
    out.push_str(canonical);
    out.push_str(&path[start + segment.len()..]);
    Some(out)
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/Users", get(users::list_users).post(users::create_user))
        .route("/Users/.search", post(users::search_users))
        .route(
            "/Users/{id}",
            get(users::get_user)
                .put(users::replace_user)
                .patch(users::patch_user)
                .delete(users::delete_user),
        )
        .route("/.search", post(groups::search_all))
        .route(
            "/Groups",
            get(groups::list_groups).post(groups::create_group),
        )
        .route("/Groups/.search", post(groups::search_groups))
        .route(
            "/Groups/{id}",
            get(groups::get_group)
                .put(groups::replace_group)
                .patch(groups::patch_group)
                .delete(groups::delete_group),
        )
        .route("/Bulk", post(bulk::bulk))
        .route(
            "/ServiceProviderConfig",
            get(discovery::service_provider_config),
        )
        .route("/Schemas", get(discovery::schemas))
        .route("/Schemas/{id}", get(discovery::schema))
        .route("/ResourceTypes", get(discovery::resource_types))
        .route("/ResourceTypes/{id}", get(discovery::resource_type))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(extract::MAX_BODY))
}
