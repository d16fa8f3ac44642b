//! Discovery endpoints (RFC 7644 §4), generated from the schema registry in `cairn_scim`.

use super::extract::Scim;
use super::response::{ApiResult, ScimJson};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cairn_scim::{discovery, ScimError};

fn base(ctx: &Scim, state: &AppState) -> String {
    state.services.tenant_url(ctx.0.tenant_id())
}

pub async fn service_provider_config(ctx: Scim, State(state): State<AppState>) -> ScimJson {
    ScimJson(
        StatusCode::OK,
        discovery::service_provider_config(&base(&ctx, &state)),
    )
}

pub async fn schemas(ctx: Scim, State(state): State<AppState>) -> ScimJson {
    ScimJson(StatusCode::OK, discovery::schemas(&base(&ctx, &state)))
}

pub async fn schema(
    ctx: Scim,
    State(state): State<AppState>,
    Path((_tenant, id)): Path<(String, String)>,
) -> ApiResult<ScimJson> {
    discovery::schema(&base(&ctx, &state), &id)
        .map(|s| ScimJson(StatusCode::OK, s))
        .ok_or_else(|| ScimError::not_found(format!("no schema {id}")).into())
}

pub async fn resource_types(ctx: Scim, State(state): State<AppState>) -> ScimJson {
    ScimJson(
        StatusCode::OK,
        discovery::resource_types(&base(&ctx, &state)),
    )
}

pub async fn resource_type(
    ctx: Scim,
    State(state): State<AppState>,
    Path((_tenant, id)): Path<(String, String)>,
) -> ApiResult<ScimJson> {
    discovery::resource_type(&base(&ctx, &state), &id)
        .map(|s| ScimJson(StatusCode::OK, s))
        .ok_or_else(|| ScimError::not_found(format!("no resource type {id}")).into())
}
