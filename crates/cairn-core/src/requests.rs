//! The provisioning inspector's log: one entry per authenticated SCIM request (what was
//! asked, by which client, what Cairn answered and what it normalised on the way), kept
//! per tenant for a bounded time and number, plus the health of each SCIM token derived
//! from it. Entries are written off the request path by `cairn-web`'s recorder, in
//! batches; the store keeps each batch of a tenant as one row of `scim_request_batches`
//! (migration 0021, `cairn-store`'s `reqlog`).
//!
//! Request and response bodies are kept only while an administrator has switched body
//! capture on for the tenant (at most [`MAX_CAPTURE_MINUTES`]), with secrets redacted and
//! the size capped before they reach the store.

use crate::audit::{Action, Actor, AuditDraft, RequestMeta};
use crate::auth::DashboardCtx;
use crate::dashboard::require_admin;
use crate::ids::TenantId;
use crate::service::{Authority, Services};
use crate::{Error, Result};
use serde::Serialize;
use time::OffsetDateTime;

/// The longest body capture an administrator can switch on at once.
pub const MAX_CAPTURE_MINUTES: i64 = 60;

/// Entries shown per page of the inspector and returned by default by the CLI.
pub const PAGE: u32 = 100;

/// The provisioning clients the inspector tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Client {
    Okta,
    Entra,
    OneLogin,
    JumpCloud,
    Google,
    Rippling,
    Other,
}

pub const ALL_CLIENTS: [Client; 7] = [
    Client::Okta,
    Client::Entra,
    Client::OneLogin,
    Client::JumpCloud,
    Client::Google,
    Client::Rippling,
    Client::Other,
];

/// Lower-case fragments of User-Agents and the client they name. Entra's provisioning
/// service has sent several (`Microsoft.Identity…`, `Azure…`), so each word counts.
const USER_AGENTS: [(&str, Client); 8] = [
    ("okta", Client::Okta),
    ("microsoft", Client::Entra),
    ("azure", Client::Entra),
    ("entra", Client::Entra),
    ("onelogin", Client::OneLogin),
    ("jumpcloud", Client::JumpCloud),
    ("google", Client::Google),
    ("rippling", Client::Rippling),
];

/// Entra's feature flag for the SCIM behaviour it fixed in 2020, added by administrators
/// to the Tenant URL's query and so sent on every request
/// (<https://learn.microsoft.com/en-us/entra/identity/app-provisioning/application-provisioning-config-problem-scim-compatibility>).
pub const ENTRA_FLAG: &str = "aadOptscim062020";

impl Client {
    pub fn as_str(self) -> &'static str {
        match self {
            Client::Okta => "okta",
            Client::Entra => "entra",
            Client::OneLogin => "onelogin",
            Client::JumpCloud => "jumpcloud",
            Client::Google => "google",
            Client::Rippling => "rippling",
            Client::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Client> {
        ALL_CLIENTS.iter().copied().find(|c| c.as_str() == s)
    }

    /// The name an administrator knows it by.
    pub fn label(self) -> &'static str {
        match self {
            Client::Okta => "Okta",
            Client::Entra => "Microsoft Entra ID",
            Client::OneLogin => "OneLogin",
            Client::JumpCloud => "JumpCloud",
            Client::Google => "Google Workspace",
            Client::Rippling => "Rippling",
            Client::Other => "Other",
        }
    }

    /// The client named by a User-Agent, if any.
    pub fn from_user_agent(user_agent: &str) -> Option<Client> {
        // Compared in place, without a lower-cased copy: this runs on every SCIM request.
        let ua = user_agent.as_bytes();
        USER_AGENTS
            .iter()
            .find(|(needle, _)| {
                ua.windows(needle.len())
                    .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
            })
            .map(|(_, c)| *c)
    }

    /// The client behind a request: its User-Agent, else the shape of the request (only
    /// Entra adds its feature flag to the query).
    pub fn detect(user_agent: Option<&str>, query: Option<&str>) -> Client {
        if let Some(c) = user_agent.and_then(Client::from_user_agent) {
            return c;
        }
        if query.is_some_and(has_entra_flag) {
            return Client::Entra;
        }
        Client::Other
    }

    /// How often this client calls when nothing changes, where it is known: Entra runs
    /// an incremental cycle about every 40 minutes
    /// (<https://learn.microsoft.com/en-us/entra/identity/app-provisioning/how-provisioning-works>).
    /// Okta and the others push changes as they happen, so silence says nothing.
    pub fn usual_cycle(self) -> Option<time::Duration> {
        match self {
            Client::Entra => Some(time::Duration::minutes(40)),
            _ => None,
        }
    }
}

fn has_entra_flag(query: &str) -> bool {
    query.split('&').any(|p| {
        p.split('=')
            .next()
            .unwrap_or("")
            .eq_ignore_ascii_case(ENTRA_FLAG)
    })
}

/// The dialect of a request: for Entra, whether the administrator set the feature flag
/// that changes how it sends PATCH (without it Entra sends `"False"` strings and
/// capitalised ops, which Cairn accepts and notes).
pub fn dialect(client: Client, query: Option<&str>) -> Option<&'static str> {
    // Spelled out: `concat!` takes literals only (a unit test ties them to ENTRA_FLAG).
    match client {
        Client::Entra if query.is_some_and(has_entra_flag) => Some("Entra with aadOptscim062020"),
        Client::Entra => Some("Entra without aadOptscim062020"),
        _ => None,
    }
}

/// One recorded SCIM request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestEntry {
    /// Given by the store (0 before it is written); newer entries have larger ids.
    pub id: i64,
    pub tenant_id: TenantId,
    #[serde(serialize_with = "crate::audit::serialize_ts")]
    pub at: OffsetDateTime,
    /// The SCIM token that authenticated the request.
    pub token_id: Option<String>,
    pub method: String,
    /// Path and query below the tenant's base URL (`/Users?filter=…`).
    pub path: String,
    pub client: Client,
    pub dialect: Option<String>,
    pub user_agent: Option<String>,
    pub status: u16,
    pub scim_type: Option<String>,
    /// The SCIM error's `detail`, for a failure.
    pub error: Option<String>,
    pub latency_us: i64,
    /// `User` or `Group`, with `resource_id`, when the request named or created one.
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// What Cairn normalised or ignored ("`active` sent as the string \"False\"…").
    pub notes: Vec<String>,
    /// Redacted and capped; only while body capture is on.
    pub request_body: Option<String>,
    pub response_body: Option<String>,
}

impl RequestEntry {
    pub fn failed(&self) -> bool {
        self.status >= 400
    }
}

/// Which entries to list (all conditions apply), newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestFilter {
    pub client: Option<Client>,
    /// `4` for 4xx, `5` for 5xx, `2` for 2xx…
    pub status_class: Option<u16>,
    /// One exact status.
    pub status: Option<u16>,
    /// The account or group the request touched.
    pub resource_id: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub before_id: Option<i64>,
    /// 0: [`PAGE`].
    pub limit: u32,
}

impl RequestFilter {
    /// `4xx`, `5XX`, `404`.
    pub fn parse_status(&mut self, s: &str) -> Option<()> {
        let s = s.trim().to_ascii_lowercase();
        if let Some(class) = s.strip_suffix("xx") {
            let c: u16 = class.parse().ok()?;
            (1..=5).contains(&c).then(|| self.status_class = Some(c))
        } else {
            let n: u16 = s.parse().ok()?;
            (100..=599).contains(&n).then(|| self.status = Some(n))
        }
    }
}

/// Per SCIM token: what the Settings page says about the connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TokenHealth {
    pub token_id: String,
    #[serde(serialize_with = "crate::audit::serialize_opt_ts")]
    pub last_request_at: Option<OffsetDateTime>,
    #[serde(serialize_with = "crate::audit::serialize_opt_ts")]
    pub last_success_at: Option<OffsetDateTime>,
    pub last_success_client: Option<Client>,
    /// Requests and failures (status ≥ 400) since the window's start.
    pub requests: u64,
    pub errors: u64,
    /// The most frequent failure in the window: `"409 uniqueness"`, and how often.
    pub top_error: Option<(String, u64)>,
}

impl TokenHealth {
    /// The client has been silent for longer than its usual cycle (plus half of it, so
    /// one slow cycle does not warn).
    pub fn overdue(&self, now: OffsetDateTime) -> Option<time::Duration> {
        let cycle = self.last_success_client?.usual_cycle()?;
        let last = self.last_request_at?;
        (now - last > cycle + cycle / 2).then_some(cycle)
    }

    /// Failures per request in the window, 0 without requests.
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

/// The window the health figures cover.
pub const HEALTH_WINDOW: time::Duration = time::Duration::hours(24);

impl Services {
    /// The inspector's entries of the administrator's tenant.
    pub async fn requests(
        &self,
        ctx: &DashboardCtx,
        filter: &RequestFilter,
    ) -> Result<Vec<RequestEntry>> {
        require_admin(ctx)?;
        self.store.list_requests(ctx.tenant_id(), filter).await
    }

    /// When body capture ends for the administrator's tenant (`None`: off).
    pub async fn body_capture(&self, ctx: &DashboardCtx) -> Result<Option<OffsetDateTime>> {
        require_admin(ctx)?;
        let now = self.clock.now();
        Ok(self
            .store
            .body_captures(now)
            .await?
            .into_iter()
            .find(|(t, _)| t == ctx.tenant_id())
            .map(|(_, until)| until))
    }

    /// Switches body capture on for `minutes` (1..=[`MAX_CAPTURE_MINUTES`]) or, with 0,
    /// off; audited. Returns when it ends.
    pub async fn set_body_capture(
        &self,
        ctx: &DashboardCtx,
        minutes: i64,
        meta: &RequestMeta,
    ) -> Result<Option<OffsetDateTime>> {
        self.switch_body_capture(Authority::Dashboard(ctx), ctx.tenant_id(), minutes, meta)
            .await
    }

    /// [`Services::set_body_capture`] for the dashboard's administrators or the operator
    /// (`cairn requests capture`).
    pub async fn switch_body_capture(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        minutes: i64,
        meta: &RequestMeta,
    ) -> Result<Option<OffsetDateTime>> {
        let actor = match who {
            Authority::Operator(_) => {
                self.tenant(tenant).await?;
                Actor::Operator
            }
            Authority::Dashboard(ctx) => {
                require_admin(ctx)?;
                if ctx.tenant_id() != tenant {
                    return Err(Error::Forbidden);
                }
                Actor::DashboardUser {
                    id: ctx.user_id().clone(),
                    email: ctx.email().to_owned(),
                }
            }
        };
        if !(0..=MAX_CAPTURE_MINUTES).contains(&minutes) {
            return Err(Error::Invalid {
                field: "minutes",
                reason: format!("body capture lasts 0 to {MAX_CAPTURE_MINUTES} minutes"),
            });
        }
        let now = self.clock.now();
        let until = (minutes > 0).then(|| now + time::Duration::minutes(minutes));
        let audit = AuditDraft {
            tenant_id: tenant.clone(),
            actor,
            action: Action::BodyCaptureChanged,
            target_type: "tenant",
            target_id: Some(tenant.to_string()),
            target_name: None,
            changes: serde_json::json!({ "body_capture_minutes": { "after": minutes } }),
            meta: meta.clone(),
            at: now,
        };
        self.store.set_body_capture(tenant, until, audit).await?;
        Ok(until)
    }

    /// The operator's view of a tenant's log (`cairn requests`).
    pub async fn request_log(
        &self,
        tenant: &TenantId,
        filter: &RequestFilter,
    ) -> Result<Vec<RequestEntry>> {
        self.tenant(tenant).await?;
        self.store.list_requests(tenant, filter).await
    }

    /// The health of each of the tenant's tokens seen in the log.
    pub async fn token_health(&self, ctx: &DashboardCtx) -> Result<Vec<TokenHealth>> {
        require_admin(ctx)?;
        let since = self.clock.now() - HEALTH_WINDOW;
        self.store.token_health(ctx.tenant_id(), since).await
    }
}

/// Folds the per-(token, status, scimType) counts into each token's health (both backends
/// count in SQL and fold here).
pub fn health_of(
    mut by_token: std::collections::HashMap<String, TokenHealth>,
    groups: Vec<(String, i64, Option<String>, i64)>,
) -> Vec<TokenHealth> {
    for (token, status, scim_type, n) in groups {
        let n = n.max(0) as u64;
        let h = by_token.entry(token).or_default();
        h.requests += n;
        if status >= 400 {
            h.errors += n;
            let label = match scim_type {
                Some(t) => format!("{status} {t}"),
                None => status.to_string(),
            };
            if h.top_error.as_ref().is_none_or(|(_, top)| n > *top) {
                h.top_error = Some((label, n));
            }
        }
    }
    let mut out: Vec<TokenHealth> = by_token
        .into_iter()
        .map(|(token, mut h)| {
            h.token_id = token;
            h
        })
        .collect();
    out.sort_by_key(|h| std::cmp::Reverse(h.last_request_at));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_from_user_agent_and_shape() {
        assert_eq!(
            Client::detect(Some("Okta SCIM Client 1.0.0"), None),
            Client::Okta
        );
        assert_eq!(
            Client::detect(None, Some("aadOptscim062020&filter=x")),
            Client::Entra
        );
        assert_eq!(Client::detect(Some("curl/8"), Some("a=b")), Client::Other);
        assert_eq!(
            dialect(Client::Entra, Some("AADOPTSCIM062020")),
            Some(format!("Entra with {ENTRA_FLAG}").as_str())
        );
        assert_eq!(
            dialect(Client::Entra, Some("filter=x")),
            Some(format!("Entra without {ENTRA_FLAG}").as_str())
        );
        assert_eq!(dialect(Client::Okta, None), None);
        // Any letter case, anywhere in the User-Agent.
        assert_eq!(
            Client::detect(Some("Microsoft.Identity.Provisioning/1"), None),
            Client::Entra
        );
        assert_eq!(Client::detect(Some("x OKTA"), None), Client::Okta);
        assert_eq!(Client::detect(Some(""), None), Client::Other);
    }

    #[test]
    fn status_filters() {
        let mut f = RequestFilter::default();
        assert!(f.parse_status("4xx").is_some());
        assert_eq!(f.status_class, Some(4));
        assert!(f.parse_status("409").is_some());
        assert_eq!(f.status, Some(409));
        assert!(f.parse_status("9xx").is_none());
        assert!(f.parse_status("abc").is_none());
    }

    #[test]
    fn overdue_only_past_a_known_cycle() {
        let now = OffsetDateTime::now_utc();
        let mut h = TokenHealth {
            last_request_at: Some(now - time::Duration::minutes(90)),
            last_success_client: Some(Client::Entra),
            ..Default::default()
        };
        assert!(h.overdue(now).is_some());
        h.last_request_at = Some(now - time::Duration::minutes(41));
        assert!(h.overdue(now).is_none());
        h.last_success_client = Some(Client::Okta);
        h.last_request_at = Some(now - time::Duration::days(3));
        assert!(h.overdue(now).is_none());
    }
}
