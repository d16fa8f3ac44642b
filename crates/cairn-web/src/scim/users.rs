//! `/Users` handlers (RFC 7644 §3.3–§3.6): list and search, create, read, replace, patch,
//! delete. Each one authenticates through `Scim`, converts with `cairn_scim`, and calls one
//! `Services` method.

use super::cursor::{keyset_of, CursorRequest, RowKeys};
use super::extract::{IfMatch, Meta, Params, Scim, ScimBody};
use super::response::{set_etag, ApiError, ApiResult, ScimBytes, ScimJson};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_core::group::GroupRef;
use cairn_core::ids::UserId;
use cairn_core::query::ListQuery;
use cairn_core::user::{DocJson, UserRecord};
use cairn_scim::user::{render_user_doc, Projection};
use cairn_scim::user_json::write_user;
use cairn_scim::{filter, list, patch, query, user as scim_user, ScimError};
use serde_json::Value;
use std::collections::HashMap;

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
    /// RFC 9865's `cursor` (present, even empty: cursor paging).
    pub(crate) cursor: Option<String>,
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
            cursor: s("cursor"),
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
                "cursor" => &mut p.cursor,
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
    let mut by_user = groups_by_user(&base, groups);
    for (u, r) in users.iter().zip(rendered.iter_mut()) {
        if let (Some(mine), Some(o)) = (by_user.remove(&u.id), r.as_object_mut()) {
            o.insert("groups".into(), Value::Array(mine));
        }
    }
}

/// One user's entry in another's `groups` attribute, grouped by user.
fn groups_by_user(base: &str, groups: Vec<(UserId, GroupRef)>) -> HashMap<UserId, Vec<Value>> {
    let mut by_user: HashMap<UserId, Vec<Value>> = HashMap::new();
    for (uid, g) in groups {
        by_user.entry(uid).or_default().push(group_value(base, &g));
    }
    by_user
}

/// A membership as the `groups` attribute shows it (RFC 7643 §4.1.2).
fn group_value(base: &str, g: &GroupRef) -> Value {
    serde_json::json!({
        "value": g.id.as_str(),
        "$ref": format!("{base}/Groups/{}", g.id),
        "display": g.display_name,
        "type": "direct",
    })
}

/// A stored-form record with its document parsed, for the general renderer.
fn parsed(u: UserRecord<DocJson>) -> ApiResult<UserRecord> {
    u.parsed().map_err(|e| {
        ApiError::from(cairn_core::Error::Internal(format!(
            "stored user document is not valid JSON: {e}"
        )))
    })
}

/// Appends one user of a list or GET: written from its stored document when the
/// projection is the default one and the document allows it (`user_json`), otherwise
/// rendered, given its groups, projected and serialised.
fn write_resource(
    out: &mut Vec<u8>,
    u: UserRecord<DocJson>,
    groups: Vec<Value>,
    proj: &Projection,
    base: &str,
) -> ApiResult<()> {
    if !proj.is_requested() && write_user(&u, &groups, base, out) {
        return Ok(());
    }
    let mut u = parsed(u)?;
    let doc = std::mem::take(&mut u.doc);
    let mut r = render_user_doc(&u, doc, base);
    if let (false, Some(o)) = (groups.is_empty(), r.as_object_mut()) {
        o.insert("groups".into(), Value::Array(groups));
    }
    proj.apply(&mut r);
    serde_json::to_writer(&mut *out, &r)
        .map_err(|e| ApiError::from(cairn_core::Error::Internal(e.to_string())))
}

pub(crate) async fn run_list(ctx: Scim, state: AppState, p: ListParams) -> ApiResult<Response> {
    let proj = projection(&p)?;
    let filter = match p.filter.as_deref() {
        Some(f) if !f.trim().is_empty() => Some(query::resolve_user_filter(&filter::parse(f)?)?),
        _ => None,
    };
    let sort = query::resolve_user_sort(p.sort_by.as_deref(), p.sort_order.as_deref())?;
    let (start_index, count) = list::paging(p.start_index.as_deref(), p.count.as_deref())?;
    let cursor = cursor_request(&ctx, &state, &p, "Users", sort.as_ref(), count)?;
    let q = ListQuery {
        filter,
        sort,
        start_index,
        count: cursor.as_ref().map_or(count, CursorRequest::fetch),
        seek: cursor.as_ref().map(|c| c.seek.clone()),
    };
    let (page, groups) = state
        .services
        .list_users_with_groups(&ctx.0, &q, proj.wants("groups"))
        .await?;
    let base = base_url(&ctx, &state);
    let mut by_user = groups_by_user(&base, groups);
    let mut items = page.items;
    let mut body = Vec::with_capacity(256 + items.len() * 1024);
    match &cursor {
        None => list::write_list_head(&mut body, page.total, start_index, items.len()),
        Some(c) => {
            let (next, prev) = c.finish(&mut items, |u| {
                keyset_of(
                    q.sort.as_ref(),
                    &RowKeys {
                        id: u.id.as_str(),
                        user_name: Some(u.user_name.as_str()),
                        display_name: u.display_name.as_deref(),
                        external_id: u.external_id.as_deref(),
                        active: Some(u.active),
                        created: u.created_at,
                        updated: u.updated_at,
                    },
                )
            });
            list::write_cursor_list_head(
                &mut body,
                page.total,
                items.len(),
                next.as_deref(),
                prev.as_deref(),
            );
        }
    }
    for (i, u) in items.into_iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        let groups = by_user.remove(&u.id).unwrap_or_default();
        write_resource(&mut body, u, groups, &proj, &base)?;
    }
    body.extend_from_slice(b"]}");
    Ok(ScimBytes(StatusCode::OK, body).into_response())
}

/// The cursor request of a listing (RFC 9865), if its parameters ask for one.
pub(crate) fn cursor_request(
    ctx: &Scim,
    state: &AppState,
    p: &ListParams,
    resource: &str,
    sort: Option<&cairn_core::query::SortKey>,
    count: u64,
) -> Result<Option<CursorRequest>, ScimError> {
    let given = p.count.as_deref().is_some_and(|c| !c.trim().is_empty());
    CursorRequest::from_params(
        p.cursor.as_deref(),
        p.start_index.as_deref(),
        given.then_some(count),
        ctx.0.tenant_id(),
        resource,
        p.filter.as_deref(),
        sort,
        state.services.clock.now(),
    )
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

/// One user just written, with its `ETag` (and `Location` for creates), and its groups
/// (a new user has none).
async fn user_response(
    ctx: &Scim,
    state: &AppState,
    status: StatusCode,
    mut u: UserRecord,
    proj: &Projection,
) -> ApiResult<Response> {
    let base = &base_url(ctx, state);
    let doc = std::mem::take(&mut u.doc);
    let mut body = [render_user_doc(&u, doc, base)];
    let u = &u;
    if status != StatusCode::CREATED {
        add_groups(ctx, state, proj, &[u], &mut body).await?;
    }
    let [mut body] = body;
    proj.apply(&mut body);
    let mut resp = ScimJson(status, body).into_response();
    set_etag(&mut resp, u.version);
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
    user_response(&ctx, &state, StatusCode::CREATED, u, &proj).await
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
    let base = base_url(&ctx, &state);
    let groups = groups.iter().map(|g| group_value(&base, g)).collect();
    let version = u.version;
    let mut body = Vec::new();
    write_resource(&mut body, u, groups, &proj, &base)?;
    let mut resp = ScimBytes(StatusCode::OK, body).into_response();
    set_etag(&mut resp, version);
    Ok(resp)
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
    user_response(&ctx, &state, StatusCode::OK, u, &proj).await
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
    user_response(&ctx, &state, StatusCode::OK, u, &proj).await
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
