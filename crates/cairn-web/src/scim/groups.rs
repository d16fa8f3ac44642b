//! `/Groups` handlers (RFC 7644 §3.3–§3.6) and the root `/.search` over Users and Groups.
//!
//! Members are read only when the response will carry them: `excludedAttributes=members`
//! (Entra's reads) or an `attributes` list without `members` never touches the membership
//! relation. A PATCH answers **204 No Content** (with the new `ETag`) unless the request
//! names `attributes` or `excludedAttributes`, in which case it answers 200 with the
//! group projected accordingly (RFC 7644 §3.5.2); Okta and Entra accept both, and Entra's
//! guidance discourages returning every member after a membership change.

use super::cursor::{keyset_of, RowKeys};
use super::extract::{IfMatch, Meta, Params, Scim, ScimBody};
use super::group_writes::GroupWrite;
use super::response::{set_etag, ApiError, ApiResult, ScimJson};
use super::users::{cursor_request, run_list, ListParams};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_core::group::{GroupRecord, MemberChange};
use cairn_core::query::ListQuery;
use cairn_scim::group::{
    apply_group_patch, group_from_request, patch_member_displays, render_group_with, resource_type,
};
use cairn_scim::user::Projection;
use cairn_scim::{filter, list, patch, query, ScimError};
use serde_json::Value;

fn projection(p: &ListParams) -> Result<Projection, ScimError> {
    Projection::for_resource_type(
        resource_type(),
        p.attributes.as_deref(),
        p.excluded_attributes.as_deref(),
    )
}

fn base_url(ctx: &Scim, state: &AppState) -> String {
    state.services.tenant_url(ctx.0.tenant_id())
}

/// Renders a group, reading its members only if the projection keeps them.
async fn render(
    ctx: &Scim,
    state: &AppState,
    g: &GroupRecord,
    proj: &Projection,
) -> ApiResult<Value> {
    let (members, displays) = if proj.wants("members") {
        (
            Some(state.services.group_members(&ctx.0, &g.id).await?),
            state.services.member_displays(&ctx.0, &g.id).await?,
        )
    } else {
        Default::default()
    };
    let mut v = render_group_with(g, members.as_deref(), &displays, &base_url(ctx, state));
    proj.apply(&mut v);
    Ok(v)
}

/// Renders a group of a list or search page: members only up to the list bound
/// (`GroupLimits::list_members`, `LIST_MEMBERS_MAX` by default); a larger group is
/// listed without the attribute.
async fn render_listed(
    ctx: &Scim,
    state: &AppState,
    g: &GroupRecord,
    proj: &Projection,
) -> ApiResult<Value> {
    let members = if proj.wants("members") {
        let cap = state.group_limits.list_members;
        state
            .services
            .group_members_for_list(&ctx.0, &g.id, cap)
            .await?
    } else {
        None
    };
    let displays = match &members {
        Some(m) if !m.is_empty() => state.services.member_displays(&ctx.0, &g.id).await?,
        _ => Default::default(),
    };
    let mut v = render_group_with(g, members.as_deref(), &displays, &base_url(ctx, state));
    if members.is_none() {
        if let Some(o) = v.as_object_mut() {
            o.remove("members");
        }
    }
    proj.apply(&mut v);
    Ok(v)
}

/// Refuses a group write that names more than `max` members
/// (`GroupLimits::members_per_write`, `MEMBERS_PER_WRITE_MAX` by default; RFC 7644 §3.12:
/// 413, the request is too large); nothing is changed, and the client can send the
/// change in several PATCH requests.
fn check_member_count(n: usize, max: u32) -> Result<(), ScimError> {
    if n > max as usize {
        return Err(ScimError::new(
            413,
            None,
            format!(
                "a group request may name at most {max} members (this one names {n}); \
                 send the change in several PATCH requests"
            ),
        ));
    }
    Ok(())
}

fn member_change_size(m: &MemberChange) -> usize {
    match m {
        MemberChange::Delta { add, remove } => add.len().saturating_add(remove.len()),
        MemberChange::Replace(all) => all.len(),
    }
}

async fn group_response(
    ctx: &Scim,
    state: &AppState,
    status: StatusCode,
    g: &GroupRecord,
    proj: &Projection,
) -> ApiResult<Response> {
    let body = render(ctx, state, g, proj).await?;
    let mut resp = ScimJson(status, body).into_response();
    set_etag(&mut resp, g.version);
    if status == StatusCode::CREATED {
        let loc = format!("{}/Groups/{}", base_url(ctx, state), g.id);
        if let Ok(v) = HeaderValue::from_str(&loc) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
    }
    Ok(resp)
}

fn group_query(p: &ListParams) -> Result<ListQuery, ScimError> {
    let filter = match p.filter.as_deref() {
        Some(f) if !f.trim().is_empty() => Some(query::resolve_group_filter(&filter::parse(f)?)?),
        _ => None,
    };
    let sort = query::resolve_group_sort(p.sort_by.as_deref(), p.sort_order.as_deref())?;
    let (start_index, count) = list::paging(p.start_index.as_deref(), p.count.as_deref())?;
    Ok(ListQuery {
        filter,
        sort,
        start_index,
        count,
        seek: None,
    })
}

async fn run_group_list(ctx: Scim, state: AppState, p: ListParams) -> ApiResult<Response> {
    let proj = projection(&p)?;
    let mut q = group_query(&p)?;
    let cursor = cursor_request(&ctx, &state, &p, "Groups", q.sort.as_ref(), q.count)?;
    if let Some(c) = &cursor {
        q.count = c.fetch();
        q.seek = Some(c.seek.clone());
    }
    let page = state.services.list_groups(&ctx.0, &q).await?;
    let mut items = page.items;
    let cursors = cursor.as_ref().map(|c| {
        c.finish(&mut items, |g| {
            keyset_of(
                q.sort.as_ref(),
                &RowKeys {
                    id: g.id.as_str(),
                    user_name: None,
                    display_name: Some(&g.display_name),
                    external_id: g.external_id.as_deref(),
                    active: None,
                    created: g.created_at,
                    updated: g.updated_at,
                },
            )
        })
    });
    let mut resources = Vec::with_capacity(items.len());
    for g in &items {
        resources.push(render_listed(&ctx, &state, g, &proj).await?);
    }
    let body = match cursors {
        None => list::list_response(page.total, q.start_index, resources),
        Some((next, prev)) => {
            list::cursor_list_response(page.total, next.as_deref(), prev.as_deref(), resources)
        }
    };
    Ok(ScimJson(StatusCode::OK, body).into_response())
}

pub async fn list_groups(
    ctx: Scim,
    State(state): State<AppState>,
    params: Params,
) -> ApiResult<Response> {
    run_group_list(ctx, state, ListParams::from_query(&params)).await
}

pub async fn search_groups(
    ctx: Scim,
    State(state): State<AppState>,
    ScimBody(body): ScimBody,
) -> ApiResult<Response> {
    run_group_list(ctx, state, ListParams::from_search_body(&body)?).await
}

/// `POST /.search` (RFC 7644 §3.4.3): Users, then Groups, as one paged sequence. A filter
/// is applied to each resource type it can be resolved against; a type it names unknown
/// attributes of contributes nothing (and if it resolves against neither, the Users error
/// is returned).
pub async fn search_all(
    ctx: Scim,
    State(state): State<AppState>,
    ScimBody(body): ScimBody,
) -> ApiResult<Response> {
    let p = ListParams::from_search_body(&body)?;
    if p.cursor.is_some() {
        return Err(ApiError(ScimError::invalid_value(
            "cursor paging is offered on /Users and /Groups (and their .search), not on the root /.search",
        )));
    }
    let groups_q = group_query(&p);
    let user_filter_ok = match p.filter.as_deref() {
        Some(f) if !f.trim().is_empty() => {
            query::resolve_user_filter(&filter::parse(f)?).is_ok()
                && query::resolve_user_sort(p.sort_by.as_deref(), p.sort_order.as_deref()).is_ok()
        }
        _ => true,
    };
    let Ok(gq) = groups_q else {
        // Groups cannot answer this search: exactly the Users search.
        return run_list(ctx, state, p).await;
    };
    let gproj = projection(&p)?;
    let (start_index, count) = (gq.start_index, gq.count);
    let (user_total, mut resources) = if user_filter_ok {
        let resp = run_list(ctx.clone(), state.clone(), p).await?;
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .map_err(|e| ApiError(ScimError::new(500, None, format!("search: {e}"))))?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let total = v["totalResults"].as_u64().unwrap_or(0);
        let items = v["Resources"].as_array().cloned().unwrap_or_default();
        (total, items)
    } else {
        (0, Vec::new())
    };
    let remaining = count.saturating_sub(resources.len() as u64);
    let gstart = start_index.saturating_sub(user_total).max(1);
    let mut gq2 = gq.clone();
    gq2.start_index = gstart;
    gq2.count = remaining;
    let page = state.services.list_groups(&ctx.0, &gq2).await?;
    for g in &page.items {
        resources.push(render_listed(&ctx, &state, g, &gproj).await?);
    }
    Ok(ScimJson(
        StatusCode::OK,
        list::list_response(user_total + page.total, start_index, resources),
    )
    .into_response())
}

pub async fn create_group(
    write: GroupWrite,
    State(state): State<AppState>,
    Meta(meta): Meta,
    params: Params,
    ScimBody(body): ScimBody,
) -> ApiResult<Response> {
    let ctx = &write.ctx;
    let proj = projection(&ListParams::from_query(&params))?;
    let req = group_from_request(&body)?;
    check_member_count(req.members.len(), state.group_limits.members_per_write)?;
    let g = state
        .services
        .create_group(&ctx.0, req.data, &req.members, &req.displays, &meta)
        .await?;
    state.metrics.provisioning_change("group_created");
    group_response(ctx, &state, StatusCode::CREATED, &g, &proj).await
}

pub async fn get_group(
    ctx: Scim,
    State(state): State<AppState>,
    Path((_tenant, id)): Path<(String, String)>,
    params: Params,
) -> ApiResult<Response> {
    let proj = projection(&ListParams::from_query(&params))?;
    let g = state.services.get_group(&ctx.0, &id).await?;
    group_response(&ctx, &state, StatusCode::OK, &g, &proj).await
}

/// PUT: a full replace of displayName, externalId and the member list (RFC 7644 §3.5.1).
pub async fn replace_group(
    write: GroupWrite,
    State(state): State<AppState>,
    Path((_tenant, id)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    Meta(meta): Meta,
    params: Params,
    ScimBody(body): ScimBody,
) -> ApiResult<Response> {
    let ctx = &write.ctx;
    let proj = projection(&ListParams::from_query(&params))?;
    let req = group_from_request(&body)?;
    check_member_count(req.members.len(), state.group_limits.members_per_write)?;
    let g = state
        .services
        .update_group::<ApiError>(&ctx.0, &id, if_match, &meta, &req.displays, |_| {
            Ok((req.data.clone(), MemberChange::Replace(req.members.clone())))
        })
        .await?;
    state.metrics.provisioning_change("group_replaced");
    group_response(ctx, &state, StatusCode::OK, &g, &proj).await
}

pub async fn patch_group(
    write: GroupWrite,
    State(state): State<AppState>,
    Path((_tenant, id)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    Meta(meta): Meta,
    params: Params,
    ScimBody(body): ScimBody,
) -> ApiResult<Response> {
    let ctx = &write.ctx;
    let proj = projection(&ListParams::from_query(&params))?;
    let req = patch::parse_patch(&body)?;
    let displays = patch_member_displays(&req)?;
    let max = state.group_limits.members_per_write;
    let g = state
        .services
        .update_group::<ApiError>(&ctx.0, &id, if_match, &meta, &displays, |current| {
            let (data, members) = apply_group_patch(&current.data(), &req)?;
            check_member_count(member_change_size(&members), max)?;
            Ok((data, members))
        })
        .await?;
    state.metrics.provisioning_change("group_patched");
    if proj.is_requested() {
        return group_response(ctx, &state, StatusCode::OK, &g, &proj).await;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    set_etag(&mut resp, g.version);
    Ok(resp)
}

/// DELETE: the group and its memberships go; the member accounts stay as they are.
pub async fn delete_group(
    write: GroupWrite,
    State(state): State<AppState>,
    Path((_tenant, id)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    Meta(meta): Meta,
) -> ApiResult<Response> {
    let ctx = &write.ctx;
    state
        .services
        .delete_group(&ctx.0, &id, if_match, &meta)
        .await?;
    state.metrics.provisioning_change("group_deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
