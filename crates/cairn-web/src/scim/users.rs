//! `/Users` handlers (RFC 7644 §3.3–§3.6): list and search, create, read, replace, patch,
//! delete. Each one authenticates through `Scim`, converts with `cairn_scim`, and calls one
//! `Services` method.

use super::extract::{IfMatch, Meta, Params, Scim, ScimBody};
use super::response::{ApiError, ApiResult, ScimJson};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_core::query::ListQuery;
use cairn_core::user::UserRecord;
use cairn_scim::user::{etag, render_user, Projection};
use cairn_scim::{filter, list, patch, query, user as scim_user, ScimError};
use serde_json::Value;

/// The SCIM parameters of a listing, from the query string or a `.search` body.
#[derive(Default)]
struct ListParams {
    filter: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    start_index: Option<String>,
    count: Option<String>,
    attributes: Option<String>,
    excluded_attributes: Option<String>,
}

impl ListParams {
    fn from_query(p: &Params) -> Self {
        let s = |n: &str| p.get(n).map(str::to_owned);
        ListParams {
            filter: s("filter"),
            sort_by: s("sortBy"),
            sort_order: s("sortOrder"),
            start_index: s("startIndex"),
            count: s("count"),
            attributes: s("attributes"),
            excluded_attributes: s("excludedAttributes"),
        }
    }

    /// RFC 7644 §3.4.3: a SearchRequest body carries the same parameters as JSON.
    fn from_search_body(body: &Value) -> Result<Self, ScimError> {
        let obj = body
            .as_object()
            .ok_or_else(|| ScimError::invalid_syntax("a SearchRequest must be a JSON object"))?;
        let mut p = ListParams::default();
        for (k, v) in obj {
            let text = |v: &Value| -> Result<String, ScimError> {
                match v {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    Value::Array(items) => items
                        .iter()
                        .map(|i| {
                            i.as_str().map(str::to_owned).ok_or_else(|| {
                                ScimError::invalid_value(format!("{k} must list attribute names"))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map(|v| v.join(",")),
                    _ => Err(ScimError::invalid_value(format!("{k} has the wrong type"))),
                }
            };
            let slot = match k.to_ascii_lowercase().as_str() {
                "filter" => &mut p.filter,
                "sortby" => &mut p.sort_by,
                "sortorder" => &mut p.sort_order,
                "startindex" => &mut p.start_index,
                "count" => &mut p.count,
                "attributes" => &mut p.attributes,
                "excludedattributes" => &mut p.excluded_attributes,
                _ => continue,
            };
            if !v.is_null() {
                *slot = Some(text(v)?);
            }
        }
        Ok(p)
    }
}

fn projection(p: &ListParams) -> Result<Projection, ScimError> {
    Projection::from_params(p.attributes.as_deref(), p.excluded_attributes.as_deref())
}

fn base_url(ctx: &Scim, state: &AppState) -> String {
    state.services.tenant_url(ctx.0.tenant_id())
}

async fn run_list(ctx: Scim, state: AppState, p: ListParams) -> ApiResult<Response> {
    let proj = projection(&p)?;
    let filter = match p.filter.as_deref() {
        Some(f) if !f.trim().is_empty() => Some(query::resolve_user_filter(&filter::parse(f)?)?),
        _ => None,
    };
    let sort = query::resolve_user_sort(p.sort_by.as_deref(), p.sort_order.as_deref())?;
    let (start_index, count) = list::paging(p.start_index.as_deref(), p.count.as_deref())?;
    let q = ListQuery {
        filter,
        sort,
        start_index,
        count,
    };
    let page = state.services.list_users(&ctx.0, &q).await?;
    let base = base_url(&ctx, &state);
    let resources = page
        .items
        .iter()
        .map(|u| {
            let mut r = render_user(u, &base);
            proj.apply(&mut r);
            r
        })
        .collect();
    Ok(ScimJson(
        StatusCode::OK,
        list::list_response(page.total, start_index, resources),
    )
    .into_response())
}

pub async fn list_users(
    ctx: Scim,
    State(state): State<AppState>,
    params: Params,
) -> ApiResult<Response> {
    run_list(ctx, state, ListParams::from_query(&params)).await
}

pub async fn search_users(
    ctx: Scim,
    State(state): State<AppState>,
    ScimBody(body): ScimBody,
) -> ApiResult<Response> {
    run_list(ctx, state, ListParams::from_search_body(&body)?).await
}

/// One user with its `ETag` (and `Location` for creates).
fn user_response(status: StatusCode, u: &UserRecord, base: &str, proj: &Projection) -> Response {
    let mut body = render_user(u, base);
    proj.apply(&mut body);
    let mut resp = ScimJson(status, body).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag(u.version)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED {
        if let Ok(v) = HeaderValue::from_str(&format!("{base}/Users/{}", u.id)) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
    }
    resp
}

pub async fn create_user(
    ctx: Scim,
    State(state): State<AppState>,
    Meta(meta): Meta,
    params: Params,
    ScimBody(body): ScimBody,
) -> ApiResult<Response> {
    let proj = projection(&ListParams::from_query(&params))?;
    let data = scim_user::user_from_request(&body)?;
    let u = state.services.create_user(&ctx.0, data, &meta).await?;
    state.metrics.provisioning_change("user_created");
    Ok(user_response(
        StatusCode::CREATED,
        &u,
        &base_url(&ctx, &state),
        &proj,
    ))
}

pub async fn get_user(
    ctx: Scim,
    State(state): State<AppState>,
    Path((_tenant, id)): Path<(String, String)>,
    params: Params,
) -> ApiResult<Response> {
    let proj = projection(&ListParams::from_query(&params))?;
    let u = state.services.get_user(&ctx.0, &id).await?;
    Ok(user_response(
        StatusCode::OK,
        &u,
        &base_url(&ctx, &state),
        &proj,
    ))
}

pub async fn replace_user(
    ctx: Scim,
    State(state): State<AppState>,
    Path((_tenant, id)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    Meta(meta): Meta,
    params: Params,
    ScimBody(body): ScimBody,
) -> ApiResult<Response> {
    let proj = projection(&ListParams::from_query(&params))?;
    // PUT is a full replace (RFC 7644 §3.5.1); `id`, `meta`, `groups` and `password` in
    // the body are ignored by the mapping, `active` is honoured (Okta custom apps
    // deactivate and reactivate with PUT).
    let data = scim_user::user_from_request(&body)?;
    let u = state
        .services
        .update_user::<ApiError>(&ctx.0, &id, if_match, &meta, |_| Ok(data.clone()))
        .await?;
    state.metrics.provisioning_change("user_replaced");
    Ok(user_response(
        StatusCode::OK,
        &u,
        &base_url(&ctx, &state),
        &proj,
    ))
}

pub async fn patch_user(
    ctx: Scim,
    State(state): State<AppState>,
    Path((_tenant, id)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    Meta(meta): Meta,
    params: Params,
    ScimBody(body): ScimBody,
) -> ApiResult<Response> {
    let proj = projection(&ListParams::from_query(&params))?;
    let req = patch::parse_patch(&body)?;
    let u = state
        .services
        .update_user::<ApiError>(&ctx.0, &id, if_match, &meta, |current| {
            Ok(patch::apply_user_patch(&current.doc, &req)?)
        })
        .await?;
    state.metrics.provisioning_change("user_patched");
    // Both Okta and Entra accept 200 with the full resource (RFC 7644 §3.5.2).
    Ok(user_response(
        StatusCode::OK,
        &u,
        &base_url(&ctx, &state),
        &proj,
    ))
}

pub async fn delete_user(
    ctx: Scim,
    State(state): State<AppState>,
    Path((_tenant, id)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    Meta(meta): Meta,
) -> ApiResult<Response> {
    state
        .services
        .delete_user(&ctx.0, &id, if_match, &meta)
        .await?;
    state.metrics.provisioning_change("user_deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Groups are not provisioned yet; Okta's SPEC test and Entra's probes still list them, and
/// expect an empty ListResponse rather than an error (idp-clients.md §6 item 36).
pub async fn list_groups(_ctx: Scim, params: Params) -> ApiResult<Response> {
    let (start_index, _) = list::paging(params.get("startIndex"), params.get("count"))?;
    Ok(ScimJson(
        StatusCode::OK,
        list::list_response(0, start_index, Vec::new()),
    )
    .into_response())
}

pub async fn groups_unsupported(_ctx: Scim) -> ApiError {
    ApiError(ScimError::new(
        501,
        None,
        "group provisioning is not supported by this service provider yet",
    ))
}
