//! Groups (`/groups`): the tenant's groups as identity providers pushed them, with their
//! member counts and their own Account Size, which administrators can set or clear
//! (README "Group-based account size").

use super::csrf::CheckedForm;
use super::scim_settings::parse_account_size;
use super::session::SignedIn;
use super::view::AccountRow;
use super::{render, see_other, Nav, PageError};
use crate::scim::extract::request_meta;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_core::ids::GroupId;
use cairn_core::service::Authority;
use serde::Deserialize;

#[derive(Template)]
#[template(path = "groups.html")]
struct GroupsPage {
    nav: Option<Nav>,
    csrf: String,
    rows: Vec<GroupRow>,
    notice: Option<String>,
    error: Option<String>,
}

struct GroupRow {
    id: String,
    name: String,
    members: u64,
    /// The size as shown and as put in the form ("" when none).
    size: String,
}

/// Members shown on a group's page.
const MEMBERS_SHOWN: usize = 100;

#[derive(Template)]
#[template(path = "group.html")]
struct GroupPage {
    nav: Option<Nav>,
    name: String,
    size: String,
    total: usize,
    members: Vec<AccountRow>,
}

pub async fn show_group(
    State(state): State<AppState>,
    Path(id): Path<String>,
    user: SignedIn,
) -> Response {
    let nav = user.nav("groups");
    match state
        .services
        .group_page(&user.session.ctx, &id, MEMBERS_SHOWN)
        .await
    {
        Ok((g, total, members)) => render(
            StatusCode::OK,
            &GroupPage {
                nav: Some(nav),
                name: g.display_name,
                size: g
                    .size_gb
                    .map(|s| format!("{} GB", s.get()))
                    .unwrap_or_else(|| "None (members keep their own Account Size)".into()),
                total,
                members: members.iter().map(AccountRow::of).collect(),
            },
        ),
        Err(e) => PageError::from_error(e, &nav).into_response(),
    }
}

#[derive(Deserialize, Default)]
pub struct GroupsParams {
    saved: Option<String>,
}

async fn page(state: &AppState, user: &SignedIn) -> Result<GroupsPage, PageError> {
    let nav = user.nav("groups");
    let groups = state
        .services
        .group_summaries(user.session.ctx.tenant_id())
        .await
        .map_err(|e| PageError::from_error(e, &nav))?;
    Ok(GroupsPage {
        csrf: nav.csrf.clone(),
        nav: Some(nav),
        rows: groups
            .iter()
            .map(|s| GroupRow {
                id: s.group.id.to_string(),
                name: s.group.display_name.clone(),
                members: s.members,
                size: s
                    .group
                    .size_gb
                    .map(|g| g.get().to_string())
                    .unwrap_or_default(),
            })
            .collect(),
        notice: None,
        error: None,
    })
}

pub async fn list_groups(
    State(state): State<AppState>,
    user: SignedIn,
    Query(p): Query<GroupsParams>,
) -> Response {
    let mut page = match page(&state, &user).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if p.saved.is_some() {
        page.notice = Some("Saved. The members' quotas were recomputed.".to_owned());
    }
    render(StatusCode::OK, &page)
}

/// Sets (a number) or clears (empty, or the "Clear" button) a group's Account Size.
pub async fn set_group_size(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let CheckedForm { user, fields } = form;
    let nav = user.nav("groups");
    let ctx = &user.session.ctx;
    let Some(group) = GroupId::parse(&id) else {
        return PageError::from_error(cairn_core::Error::NotFound("group"), &nav).into_response();
    };
    let typed = fields.get("size_gb").unwrap_or("").trim();
    let size = if fields.get("action") == Some("clear") || typed.is_empty() {
        None
    } else {
        match parse_account_size(typed) {
            Ok(s) => Some(s),
            Err(msg) => {
                let mut page = match page(&state, &user).await {
                    Ok(p) => p,
                    Err(e) => return e.into_response(),
                };
                page.error = Some(msg);
                return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
            }
        }
    };
    match state
        .services
        .set_group_size(
            Authority::Dashboard(ctx),
            ctx.tenant_id(),
            &group,
            size,
            &request_meta(&headers),
        )
        .await
    {
        Ok(_) => see_other("/groups?saved=1"),
        Err(e) => PageError::from_error(e, &nav).into_response(),
    }
}
