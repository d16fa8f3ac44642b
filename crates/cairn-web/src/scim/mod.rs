//! The SCIM 2.0 service provider (RFC 7644) of one tenant, mounted at `/scim/v2/{tenant}`.

pub mod discovery;
pub mod extract;
pub mod group_writes;
pub mod groups;
pub mod inspector;
pub mod rate_limit;
pub mod response;
pub mod users;

use crate::AppState;
use axum::routing::{get, post};
use axum::Router;
use response::{method_not_allowed, not_found};

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
