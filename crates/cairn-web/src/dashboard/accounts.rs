//! Backup Accounts: the list (`/accounts`, server-side search and keyset paging), an
//! account's page with its provisioning history (`/accounts/{id}`), and "Restore".

use super::csrf::CheckedForm;
use super::session::SignedIn;
use super::view::{AccountRow, EventRow};
use super::{render, see_other, Nav, PageError};
use crate::scim::extract::request_meta;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_core::dashboard::AccountsRequest;
use cairn_core::ids::UserId;
use cairn_core::user::AccountStatus;
use serde::Deserialize;

#[derive(Template)]
#[template(path = "accounts.html")]
struct AccountsPage {
    nav: Option<Nav>,
    q: String,
    status: String,
    total: u64,
    rows: Vec<AccountRow>,
    prev_href: Option<String>,
    next_href: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct AccountsParams {
    q: Option<String>,
    status: Option<String>,
    after: Option<String>,
    before: Option<String>,
}

fn parse_status(s: &str) -> Option<AccountStatus> {
    match s {
        "active" => Some(AccountStatus::Active),
        "suspended" => Some(AccountStatus::Suspended),
        "deleted" => Some(AccountStatus::Deleted),
        _ => None,
    }
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub async fn list_accounts(
    State(state): State<AppState>,
    user: SignedIn,
    Query(p): Query<AccountsParams>,
) -> Response {
    let nav = user.nav("accounts");
    let q = p.q.unwrap_or_default();
    let status = p.status.unwrap_or_default();
    let req = AccountsRequest {
        search: Some(q.clone()),
        status: parse_status(&status),
        after: p.after.as_deref().and_then(UserId::parse),
        before: p.before.as_deref().and_then(UserId::parse),
    };
    let page = match state.services.accounts(&user.session.ctx, &req).await {
        Ok(p) => p,
        Err(e) => return PageError::from_error(e, &nav).into_response(),
    };
    let base = format!("/accounts?q={}&status={}", enc(q.trim()), enc(&status));
    render(
        StatusCode::OK,
        &AccountsPage {
            nav: Some(nav),
            q,
            status,
            total: page.total,
            rows: page.items.iter().map(AccountRow::of).collect(),
            prev_href: page.prev.map(|id| format!("{base}&before={id}")),
            next_href: page.next.map(|id| format!("{base}&after={id}")),
        },
    )
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    nav: Option<Nav>,
    account: AccountRow,
    events: Vec<EventRow>,
    notice: Option<String>,
    can_restore: bool,
}

#[derive(Deserialize)]
pub struct AccountParams {
    restored: Option<String>,
}

pub async fn show_account(
    State(state): State<AppState>,
    user: SignedIn,
    Path(id): Path<String>,
    Query(p): Query<AccountParams>,
) -> Response {
    let nav = user.nav("accounts");
    let (account, events) = match state.services.account(&user.session.ctx, &id).await {
        Ok(r) => r,
        Err(e) => return PageError::from_error(e, &nav).into_response(),
    };
    let now = state.services.clock.now();
    let row = AccountRow::of(&account);
    render(
        StatusCode::OK,
        &AccountPage {
            can_restore: nav.admin && row.deleted,
            nav: Some(nav),
            notice: p
                .restored
                .map(|_| "Account restored. Its data and quota are as they were.".to_owned()),
            account: row,
            events: events.iter().map(|e| EventRow::of(e, now)).collect(),
        },
    )
}

pub async fn restore_account(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let nav = form.user.nav("accounts");
    match state
        .services
        .restore_account(&form.user.session.ctx, &id, &request_meta(&headers))
        .await
    {
        Ok(u) => see_other(&format!("/accounts/{}?restored=1", u.id)),
        Err(e) => PageError::from_error(e, &nav).into_response(),
    }
}
