//! The provisioning inspector (`/requests`, administrators only): the tenant's recent SCIM
//! requests, newest first with keyset paging, filterable by client, status and account,
//! and the switch for a limited time of body capture (`POST /requests/capture`).

use super::csrf::CheckedForm;
use super::session::SignedIn;
use super::view::{ago, datetime};
use super::{render, see_other, Nav, PageError};
use crate::scim::extract::request_meta;
use crate::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_core::requests::{Client, RequestEntry, RequestFilter, ALL_CLIENTS};
use serde::Deserialize;

#[derive(Template)]
#[template(path = "requests.html")]
struct RequestsPage {
    nav: Option<Nav>,
    csrf: String,
    client: String,
    status: String,
    account: String,
    clients: Vec<(String, String)>,
    statuses: Vec<String>,
    rows: Vec<RequestRow>,
    next_href: Option<String>,
    filtered: bool,
    /// "until 14:05 UTC" while body capture is on.
    capture_until: Option<String>,
}

struct RequestRow {
    id: i64,
    at: String,
    ago: String,
    method: String,
    path: String,
    client: &'static str,
    dialect: String,
    status: u16,
    status_class: &'static str,
    scim_type: String,
    error: String,
    latency: String,
    resource_href: Option<String>,
    resource: String,
    notes: Vec<String>,
    request_body: Option<String>,
    response_body: Option<String>,
}

impl RequestRow {
    fn of(e: &RequestEntry, now: time::OffsetDateTime) -> Self {
        RequestRow {
            id: e.id,
            at: cairn_core::clock::format_ts(e.at),
            ago: ago(now, e.at),
            method: e.method.clone(),
            path: e.path.clone(),
            client: e.client.label(),
            dialect: e.dialect.clone().unwrap_or_default(),
            status: e.status,
            status_class: match e.status {
                0..=399 => "ok",
                400..=499 => "client-error",
                _ => "server-error",
            },
            scim_type: e.scim_type.clone().unwrap_or_default(),
            error: e.error.clone().unwrap_or_default(),
            latency: format!("{:.1} ms", e.latency_us as f64 / 1000.0),
            resource_href: match (e.resource_type.as_deref(), &e.resource_id) {
                (Some("User"), Some(id)) => Some(format!("/accounts/{}", enc(id))),
                (Some("Group"), Some(id)) => Some(format!("/groups/{}", enc(id))),
                _ => None,
            },
            resource: match (&e.resource_type, &e.resource_id) {
                (Some(t), Some(id)) => format!("{t} {id}"),
                _ => String::new(),
            },
            notes: e.notes.clone(),
            request_body: e.request_body.clone(),
            response_body: e.response_body.clone(),
        }
    }
}

#[derive(Deserialize, Default)]
pub struct RequestsParams {
    client: Option<String>,
    status: Option<String>,
    account: Option<String>,
    before: Option<i64>,
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub async fn show_requests(
    State(state): State<AppState>,
    user: SignedIn,
    Query(p): Query<RequestsParams>,
) -> Response {
    let nav = user.nav("requests");
    let ctx = &user.session.ctx;
    let client = p.client.unwrap_or_default();
    let status = p.status.unwrap_or_default().trim().to_owned();
    let account = p.account.unwrap_or_default().trim().to_owned();
    let mut filter = RequestFilter {
        client: Client::parse(&client),
        resource_id: (!account.is_empty()).then(|| account.clone()),
        before_id: p.before,
        ..Default::default()
    };
    if !status.is_empty() && filter.parse_status(&status).is_none() {
        return PageError::new(
            StatusCode::BAD_REQUEST,
            "Unknown status",
            "Filter by a status such as 409 or a class such as 4xx.",
        )
        .with_nav(&nav)
        .into_response();
    }
    let services = &state.services;
    let result = async {
        let entries = services.requests(ctx, &filter).await?;
        let capture = services.body_capture(ctx).await?;
        Ok::<_, cairn_core::Error>((entries, capture))
    }
    .await;
    let (entries, capture) = match result {
        Ok(r) => r,
        Err(e) => return PageError::from_error(e, &nav).into_response(),
    };
    let now = services.clock.now();
    let base = format!(
        "/requests?client={}&status={}&account={}",
        enc(&client),
        enc(&status),
        enc(&account)
    );
    let full = entries.len() as u32 >= cairn_core::requests::PAGE;
    render(
        StatusCode::OK,
        &RequestsPage {
            csrf: nav.csrf.clone(),
            nav: Some(nav),
            filtered: filter.client.is_some()
                || filter.status.is_some()
                || filter.status_class.is_some()
                || filter.resource_id.is_some(),
            client,
            status,
            account,
            clients: ALL_CLIENTS
                .iter()
                .map(|c| (c.as_str().to_owned(), c.label().to_owned()))
                .collect(),
            statuses: vec!["2xx".into(), "4xx".into(), "5xx".into()],
            next_href: entries
                .last()
                .filter(|_| full)
                .map(|e| format!("{base}&before={}", e.id)),
            rows: entries.iter().map(|e| RequestRow::of(e, now)).collect(),
            capture_until: capture.map(datetime),
        },
    )
}

/// Switches body capture on for 15 or 60 minutes, or off.
pub async fn set_capture(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let CheckedForm { user, fields } = form;
    let nav = user.nav("requests");
    let minutes = match fields.get("minutes") {
        Some("15") => 15,
        Some("60") => 60,
        Some("0") => 0,
        _ => return super::csrf::refused().with_nav(&nav).into_response(),
    };
    let ctx = &user.session.ctx;
    match state
        .services
        .set_body_capture(ctx, minutes, &request_meta(&headers))
        .await
    {
        Ok(until) => {
            if let Some(rec) = &state.request_log {
                rec.capture_changed(ctx.tenant_id(), until);
            }
            see_other("/requests")
        }
        Err(e) => PageError::from_error(e, &nav).into_response(),
    }
}
