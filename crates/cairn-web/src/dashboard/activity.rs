//! Provisioning activity (`/activity`): the audit log, filterable by account, action and
//! client, newest first with keyset paging, above a chart of events per day.

use super::chart::{self, Chart, SERIES};
use super::session::SignedIn;
use super::view::{action_label, client_name, EventRow};
use super::{render, Nav, PageError};
use crate::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cairn_core::audit::{Action, ALL_ACTIONS};
use cairn_core::dashboard::{ActivityFilter, CHART_DAYS};
use serde::Deserialize;

#[derive(Template)]
#[template(path = "activity.html")]
struct ActivityPage {
    nav: Option<Nav>,
    account: String,
    action: String,
    client: String,
    actions: Vec<(&'static str, &'static str)>,
    clients: Vec<(String, String)>,
    events: Vec<EventRow>,
    next_href: Option<String>,
    chart: Chart,
    series: Vec<(&'static str, &'static str)>,
    filtered: bool,
}

#[derive(Deserialize, Default)]
pub struct ActivityParams {
    account: Option<String>,
    action: Option<String>,
    client: Option<String>,
    before: Option<i64>,
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub async fn show_activity(
    State(state): State<AppState>,
    user: SignedIn,
    Query(p): Query<ActivityParams>,
) -> Response {
    let nav = user.nav("activity");
    let ctx = &user.session.ctx;
    let account = p.account.unwrap_or_default().trim().to_owned();
    let action = p.action.unwrap_or_default();
    let client = p.client.unwrap_or_default();
    let filter = ActivityFilter {
        target_id: None,
        account_name: (!account.is_empty()).then(|| account.clone()),
        action: Action::parse(&action),
        client: (!client.is_empty()).then(|| client.clone()),
    };
    let services = &state.services;
    let result = async {
        let (events, next) = services.activity(ctx, &filter, p.before).await?;
        let (first, counts) = services.activity_per_day(ctx, &filter).await?;
        let clients = services.activity_clients(ctx).await?;
        Ok::<_, cairn_core::Error>((events, next, first, counts, clients))
    }
    .await;
    let (events, next, first, counts, clients) = match result {
        Ok(r) => r,
        Err(e) => return PageError::from_error(e, &nav).into_response(),
    };
    let now = services.clock.now();
    let base = format!(
        "/activity?account={}&action={}&client={}",
        enc(&account),
        enc(&action),
        enc(&client)
    );
    render(
        StatusCode::OK,
        &ActivityPage {
            nav: Some(nav),
            filtered: filter != ActivityFilter::default(),
            account,
            action,
            clients: clients
                .into_iter()
                .map(|ua| (client_name(Some(&ua)) + " — " + &ua, ua))
                .collect(),
            client,
            actions: ALL_ACTIONS
                .iter()
                .map(|a| (a.as_str(), action_label(a.as_str())))
                .collect(),
            events: events.iter().map(|e| EventRow::of(e, now)).collect(),
            next_href: next.map(|id| format!("{base}&before={id}")),
            chart: chart::build(first, CHART_DAYS, &counts),
            series: SERIES.to_vec(),
        },
    )
}
