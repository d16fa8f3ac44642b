//! `/Users` handlers (RFC 7644 §3.3–§3.6): list and search, create, read, replace, patch,
//! delete. Each one authenticates through `Scim`, converts with `cairn_scim`, and calls one
//! `Services` method.

use super::extract::{IfMatch, Meta, Params, Scim, ScimBody};
use super::response::{ApiError, ApiResult, ScimJson};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_core::group::GroupRef;
use cairn_core::ids::UserId;
use cairn_core::query::ListQuery;
use cairn_core::user::UserRecord;
use cairn_scim::user::{etag, render_user, Projection};
use cairn_scim::{filter, list, patch, query, user as scim_user, ScimError};
use serde_json::Value;

/// The SCIM parameters of a listing, from the query string or a `.search` body.
#[derive(Default)]
pub(crate) struct ListParams {
    pub(crate) filter: Option<String>,
    pub(crate) sort_by: Option<String>,
    pub(crate) sort_order: Option<String>,
    pub(crate) start_index: Option<String>,
    pub(crate) count: Option<String>,
    pub(crate) attributes: Option<String>,
    pub(crate) excluded_attributes: Option<String>,
}

impl ListParams {
    pub(crate) fn from_query(p: &Params) -> Self {
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
    pub(crate) fn from_search_body(body: &Value) -> Result<Self, ScimError> {
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

/// Fills the read-only `groups` attribute (RFC 7643 §4.1.2) of rendered users, with one
/// store read for all of them, when the projection keeps it.
async fn add_groups(
    ctx: &Scim,
    state: &AppState,
    proj: &Projection,
    users: &[&UserRecord],
    rendered: &mut [Value],
) -> ApiResult<()> {
    if !proj.wants("groups") || users.is_empty() {
        return Ok(());
    }
    let ids: Vec<_> = users.iter().map(|u| u.id.clone()).collect();
    let groups = state.services.groups_of_users(&ctx.0, &ids).await?;
    attach_groups(ctx, state, users, rendered, groups);
    Ok(())
}

/// Puts memberships already read into the rendered users.
fn attach_groups(
    ctx: &Scim,
    state: &AppState,
    users: &[&UserRecord],
    rendered: &mut [Value],
    groups: Vec<(UserId, GroupRef)>,
) {
    if groups.is_empty() {
        return;
    }
    // One pass over the memberships, grouped by user: a page of 1,000 users is not
    // compared against every membership of the page.
    let base = base_url(ctx, state);
    let mut by_user: std::collections::HashMap<_, Vec<Value>> = std::collections::HashMap::new();
    for (uid, g) in groups {
        by_user.entry(uid).or_default().push(serde_json::json!({
            "value": g.id.as_str(),
            "$ref": format!("{base}/Groups/{}", g.id),
            "display": g.display_name,
            "type": "direct",
        }));
    }
    for (u, r) in users.iter().zip(rendered.iter_mut()) {
        if let (Some(mine), Some(o)) = (by_user.remove(&u.id), r.as_object_mut()) {
            o.insert("groups".into(), Value::Array(mine));
        }
    }
}

pub(crate) async fn run_list(ctx: Scim, state: AppState, p: ListParams) -> ApiResult<Response> {
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
    let (page, groups) = state
        .services
        .list_users_with_groups(&ctx.0, &q, proj.wants("groups"))
        .await?;
    let base = base_url(&ctx, &state);
    let mut resources: Vec<Value> = page.items.iter().map(|u| render_user(u, &base)).collect();
    let refs: Vec<&UserRecord> = page.items.iter().collect();
    attach_groups(&ctx, &state, &refs, &mut resources, groups);
    for r in &mut resources {
        proj.apply(r);
    }
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

/// One user with its `ETag` (and `Location` for creates), and its groups: `groups` when
/// the caller read them with the user, otherwise read here (a new user has none).
async fn user_response(
    ctx: &Scim,
    state: &AppState,
    status: StatusCode,
    u: &UserRecord,
    proj: &Projection,
    groups: Option<Vec<GroupRef>>,
) -> ApiResult<Response> {
    let base = &base_url(ctx, state);
    let mut body = [render_user(u, base)];
    match groups {
        Some(gs) => {
            let gs = gs.into_iter().map(|g| (u.id.clone(), g)).collect();
            attach_groups(ctx, state, &[u], &mut body, gs);
        }
        None if status != StatusCode::CREATED => {
            add_groups(ctx, state, proj, &[u], &mut body).await?;
        }
        None => {}
    }
    let [mut body] = body;
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
    Ok(resp)
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
    user_response(&ctx, &state, StatusCode::CREATED, &u, &proj, None).await
}

pub async fn get_user(
    ctx: Scim,
    State(state): State<AppState>,
    Path((_tenant, id)): Path<(String, String)>,
    params: Params,
) -> ApiResult<Response> {
    let proj = projection(&ListParams::from_query(&params))?;
    let (u, groups) = state
        .services
        .get_user_with_groups(&ctx.0, &id, proj.wants("groups"))
        .await?;
    user_response(&ctx, &state, StatusCode::OK, &u, &proj, Some(groups)).await
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
    user_response(&ctx, &state, StatusCode::OK, &u, &proj, None).await
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
    user_response(&ctx, &state, StatusCode::OK, &u, &proj, None).await
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
