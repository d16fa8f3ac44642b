//! Backup Accounts: the list (`/accounts`, server-side search and keyset paging), an
//! account's page with its provisioning history, backup repository and usage
//! (`/accounts/{id}`), "Restore"; its backup keys are `super::backup_keys`.

use super::backup_keys::KeysSection;
use super::csrf::CheckedForm;
use super::session::SignedIn;
use super::view::{AccountRow, BackupView, EventRow};
use super::{render, see_other, Nav, PageError};
use crate::scim::extract::request_meta;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_core::dashboard::{AccountOrder, AccountsRequest};
use cairn_core::freshness::StaleDays;
use cairn_core::ids::UserId;
use cairn_core::user::AccountStatus;
use serde::Deserialize;

#[derive(Template)]
#[template(path = "accounts.html")]
struct AccountsPage {
    nav: Option<Nav>,
    q: String,
    status: String,
    /// "name" or "last-backup".
    sort: String,
    /// "No backup for more than N days" as typed ("" when off).
    stale: String,
    /// The tenant's setting, offered as the filter's default.
    stale_days: StaleDays,
    total: u64,
    rows: Vec<ListedAccount>,
    prev_href: Option<String>,
    next_href: Option<String>,
    /// "Sign-in links for accounts that never backed up" (administrators).
    mail_enabled: bool,
    link_days: i64,
    /// The outcome of "Send to all".
    sent: Option<String>,
}

/// A row of the list: the account and its usage bar.
struct ListedAccount {
    row: AccountRow,
    usage_pct: u64,
    backup: BackupView,
}

impl std::ops::Deref for ListedAccount {
    type Target = AccountRow;
    fn deref(&self) -> &AccountRow {
        &self.row
    }
}

/// Used space against the quota in percent (0–100), as the vault counts it.
fn usage_pct(state: &AppState, u: &cairn_core::user::UserRecord) -> u64 {
    let quota = u128::from(u.quota_gb.get()) * u128::from(state.vault.quota_unit.0);
    let used = u128::try_from(u.used_bytes.max(0)).unwrap_or(0);
    (used * 100).checked_div(quota).unwrap_or(0).min(100) as u64
}

#[derive(Deserialize, Default)]
pub struct AccountsParams {
    q: Option<String>,
    status: Option<String>,
    after: Option<String>,
    before: Option<String>,
    sort: Option<String>,
    stale: Option<String>,
    /// How many sign-in link mails "Send to all" queued.
    sent: Option<u64>,
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
    let order = match p.sort.as_deref() {
        Some("last-backup") => AccountOrder::LastBackup,
        _ => AccountOrder::Name,
    };
    let sort = match order {
        AccountOrder::Name => "name",
        AccountOrder::LastBackup => "last-backup",
    };
    let stale = p.stale.unwrap_or_default().trim().to_owned();
    let stale_days = if stale.is_empty() {
        None
    } else {
        // A bad number of days is the user's typo: 400 with the reason, as for any form.
        match stale
            .parse::<i64>()
            .map_err(|_| ())
            .and_then(|d| StaleDays::new(d).map_err(|_| ()))
        {
            Ok(d) => Some(d),
            Err(()) => {
                let e = cairn_core::Error::Invalid {
                    field: "stale",
                    reason: format!(
                        "no backup for more than N days: N is a whole number from 1 to {}",
                        StaleDays::MAX
                    ),
                };
                return PageError::from_error(e, &nav).into_response();
            }
        }
    };
    let req = AccountsRequest {
        search: Some(q.clone()),
        status: parse_status(&status),
        after: p.after.as_deref().and_then(UserId::parse),
        before: p.before.as_deref().and_then(UserId::parse),
        order,
        stale_days,
    };
    let page = match state.services.accounts(&user.session.ctx, &req).await {
        Ok(p) => p,
        Err(e) => return PageError::from_error(e, &nav).into_response(),
    };
    let base = format!(
        "/accounts?q={}&status={}&sort={sort}&stale={}",
        enc(q.trim()),
        enc(&status),
        enc(&stale)
    );
    let now = state.services.clock.now();
    render(
        StatusCode::OK,
        &AccountsPage {
            nav: Some(nav),
            q,
            status,
            sort: sort.to_owned(),
            stale,
            stale_days: page.stale_days,
            total: page.total,
            rows: page
                .items
                .iter()
                .zip(&page.freshness)
                .map(|(u, f)| ListedAccount {
                    row: AccountRow::of(u),
                    usage_pct: usage_pct(&state, u),
                    backup: BackupView::of(f, now, page.stale_cutoff),
                })
                .collect(),
            prev_href: page.prev.map(|id| format!("{base}&before={id}")),
            next_href: page.next.map(|id| format!("{base}&after={id}")),
            mail_enabled: state.services.mail_enabled,
            link_days: state.services.account_link_lifetime.whole_days(),
            sent: p.sent.map(|n| {
                format!("{n} sign-in link mail(s) queued: they go out in the next minutes.")
            }),
        },
    )
}

#[derive(Template)]
#[template(path = "account.html")]
pub(super) struct AccountPage {
    nav: Option<Nav>,
    account: AccountRow,
    events: Vec<EventRow>,
    notice: Option<String>,
    can_restore: bool,
    /// The restic repository URL, without credentials.
    repository: String,
    /// Used space against the quota, 0–100 (the usage bar).
    usage_pct: u64,
    /// The account's backup keys (device keys), and the forms to add and revoke them.
    pub(super) keys: KeysSection,
    /// Backup freshness, and the tenant's stale threshold.
    backup: Option<BackupView>,
    stale_days: StaleDays,
    /// Deletion protection (administrators only; `backup_settings`).
    protection: Option<super::backup_settings::AccountProtection>,
    /// Repository health: the last check, and "Verify now".
    health: Option<super::health::HealthSection>,
    /// "Copy sign-in link" (administrators, an active account).
    can_link: bool,
    /// "Send sign-in link" (also a mail relay and the account's email).
    can_send: bool,
    /// The sign-in link this request made, shown once.
    sign_in_link: Option<SignInLinkView>,
}

/// A one-time sign-in link for the account, shown once to copy.
pub struct SignInLinkView {
    pub url: String,
    pub expires: String,
}

impl AccountPage {
    fn of(
        state: &AppState,
        nav: Nav,
        account: &cairn_core::user::UserRecord,
        events: &[cairn_core::audit::AuditEvent],
        keys: &[cairn_core::backup_key::BackupKeyRecord],
        notice: Option<String>,
    ) -> Self {
        let now = state.services.clock.now();
        let row = AccountRow::of(account);
        let usage_pct = usage_pct(state, account);
        let keys = KeysSection::new(
            keys,
            now,
            format!("/accounts/{}", account.id),
            nav.csrf.clone(),
            nav.admin,
            nav.admin && !row.deleted,
        );
        AccountPage {
            can_restore: nav.admin && row.deleted,
            can_link: nav.admin && !row.deleted && account.active,
            can_send: nav.admin
                && !row.deleted
                && account.active
                && account.email.is_some()
                && state.services.mail_enabled,
            sign_in_link: None,
            nav: Some(nav),
            notice,
            repository: state
                .services
                .repository_url(&account.tenant_id, &account.id, None),
            usage_pct,
            keys,
            backup: None,
            stale_days: StaleDays::default(),
            protection: None,
            health: None,
            account: row,
            events: events.iter().map(|e| EventRow::of(e, now)).collect(),
        }
    }

    /// The page of the account `id`, as the signed-in user may see it.
    pub(super) async fn load(
        state: &AppState,
        nav: Nav,
        ctx: &cairn_core::auth::DashboardCtx,
        id: &str,
        notice: Option<String>,
    ) -> cairn_core::Result<Self> {
        let (account, events) = state.services.account(ctx, id).await?;
        let keys = state.services.backup_keys_of(&account).await?;
        let page = AccountPage::of(state, nav, &account, &events, &keys, notice);
        let mut page = with_backup(state, page, &account).await?;
        let last = state
            .services
            .verification_of(&account.tenant_id, &account.id)
            .await?;
        let can_verify = page.nav.as_ref().is_some_and(|n| n.admin) && !page.account.deleted;
        page.health = Some(super::health::HealthSection::new(
            state, &account, last, can_verify,
        ));
        if page.nav.as_ref().is_some_and(|n| n.admin) {
            match super::backup_settings::account_protection(state, &account).await {
                Ok(p) => page.protection = Some(p),
                Err(e) => tracing::warn!(error = %e, "reading the account's deletion protection"),
            }
        }
        Ok(page)
    }
}

/// Fills in the account page's backup freshness.
async fn with_backup(
    state: &AppState,
    mut page: AccountPage,
    account: &cairn_core::user::UserRecord,
) -> Result<AccountPage, cairn_core::Error> {
    let svc = &state.services;
    let tenant = svc.tenant(&account.tenant_id).await?;
    let now = svc.clock.now();
    let found = svc
        .freshness_of(&account.tenant_id, std::slice::from_ref(&account.id))
        .await?;
    let f = found.into_iter().next().map(|(_, f)| f).unwrap_or_default();
    page.backup = Some(BackupView::of(&f, now, tenant.stale_days.cutoff(now)));
    page.stale_days = tenant.stale_days;
    Ok(page)
}

#[derive(Deserialize)]
pub struct AccountParams {
    restored: Option<String>,
    undeleted: Option<u64>,
    verify: Option<String>,
}

pub async fn show_account(
    State(state): State<AppState>,
    user: SignedIn,
    Path(id): Path<String>,
    Query(p): Query<AccountParams>,
) -> Response {
    let nav = user.nav("accounts");
    let notice = p
        .restored
        .map(|_| "Account restored. Its data and quota are as they were.".to_owned())
        .or(p.undeleted.map(|n| {
            format!(
                "Deletions undone: {n} object(s) put back. restic sees the repository as it was."
            )
        }))
        .or(p.verify.as_deref().and_then(|v| match v {
            "started" => Some("Repository check started; reload the page for its result.".into()),
            "running" => Some("A check of this repository is running already.".into()),
            "busy" => Some("Too many repository checks are running; try again later.".into()),
            _ => None,
        }));
    match AccountPage::load(&state, nav.clone(), &user.session.ctx, &id, notice).await {
        Ok(page) => render(StatusCode::OK, &page),
        Err(e) => PageError::from_error(e, &nav).into_response(),
    }
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

/// "Copy sign-in link": a one-time link with which the person signs in to their own page
/// (`/me`) without single sign-on; shown once, on the page this POST answers.
pub async fn create_sign_in_link(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let nav = form.user.nav("accounts");
    let ctx = &form.user.session.ctx;
    let Some(uid) = UserId::parse(&id) else {
        return PageError::from_error(cairn_core::Error::NotFound("account"), &nav).into_response();
    };
    let link = match state
        .services
        .create_account_sign_in_link(
            cairn_core::service::Authority::Dashboard(ctx),
            ctx.tenant_id(),
            &uid,
            &request_meta(&headers),
        )
        .await
    {
        Ok(l) => l,
        Err(e) => return PageError::from_error(e, &nav).into_response(),
    };
    let notice = format!(
        "Sign-in link for {} made. Copy it now: it is shown only once, works once, and expires on {} (UTC).",
        link.account.user_name,
        super::view::datetime(link.expires_at)
    );
    match AccountPage::load(&state, nav.clone(), ctx, &id, Some(notice)).await {
        Ok(mut page) => {
            page.sign_in_link = Some(SignInLinkView {
                url: link.url,
                expires: super::view::datetime(link.expires_at),
            });
            super::backup_keys::no_store(render(StatusCode::OK, &page))
        }
        Err(e) => PageError::from_error(e, &nav).into_response(),
    }
}

/// "Send sign-in link": queues a mail with a fresh one-time link to the account's email.
pub async fn send_sign_in_link(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let nav = form.user.nav("accounts");
    let ctx = &form.user.session.ctx;
    let Some(uid) = UserId::parse(&id) else {
        return PageError::from_error(cairn_core::Error::NotFound("account"), &nav).into_response();
    };
    match state
        .services
        .send_sign_in_link(
            cairn_core::service::Authority::Dashboard(ctx),
            ctx.tenant_id(),
            &uid,
            &request_meta(&headers),
        )
        .await
    {
        Ok(a) => {
            let notice = format!(
                "A sign-in link is on its way to {}.",
                a.email.unwrap_or_default()
            );
            match AccountPage::load(&state, nav.clone(), ctx, &id, Some(notice)).await {
                Ok(page) => render(StatusCode::OK, &page),
                Err(e) => PageError::from_error(e, &nav).into_response(),
            }
        }
        Err(e) => PageError::from_error(e, &nav).into_response(),
    }
}

/// One CSV field (RFC 4180 §2: quoted, quotes doubled). A value a spreadsheet would
/// run as a formula (`=`, `+`, `-`, `@`, tab, CR first) gets a leading `'` (OWASP, CSV
/// Injection).
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// "Export CSV": a new sign-in link for every account that never backed up (user name,
/// email, link, expiry), for an administrator's own mailer. Each link is audited. A
/// POST (CSRF-checked), since it makes links.
pub async fn export_sign_in_links(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let nav = form.user.nav("accounts");
    let ctx = &form.user.session.ctx;
    let links = match state
        .services
        .sign_in_links_for_never_backed_up(
            cairn_core::service::Authority::Dashboard(ctx),
            ctx.tenant_id(),
            &request_meta(&headers),
        )
        .await
    {
        Ok(l) => l,
        Err(e) => return PageError::from_error(e, &nav).into_response(),
    };
    let mut csv = String::from("user_name,email,link,expires_at\r\n");
    for l in &links {
        csv.push_str(&format!(
            "{},{},{},{}\r\n",
            csv_field(l.account.user_name.as_str()),
            csv_field(l.account.email.as_deref().unwrap_or("")),
            csv_field(&l.url),
            csv_field(&cairn_core::clock::format_ts(l.expires_at)),
        ));
    }
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                axum::http::header::CONTENT_DISPOSITION,
                "attachment; filename=\"sign-in-links.csv\"",
            ),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        csv,
    )
        .into_response()
}

/// "Send to all": queues a sign-in link mail to every account that never backed up and
/// has an email.
pub async fn send_sign_in_links(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let nav = form.user.nav("accounts");
    let ctx = &form.user.session.ctx;
    match state
        .services
        .send_sign_in_links_to_never_backed_up(
            cairn_core::service::Authority::Dashboard(ctx),
            ctx.tenant_id(),
            &request_meta(&headers),
        )
        .await
    {
        Ok(n) => see_other(&format!("/accounts?sent={n}")),
        Err(e) => PageError::from_error(e, &nav).into_response(),
    }
}

#[cfg(test)]
mod csv_tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("ann@x.io"), "\"ann@x.io\"");
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
        assert_eq!(csv_field("@SUM(1)"), "\"'@SUM(1)\"");
        assert_eq!(csv_field("a,b\r\nc"), "\"a,b\r\nc\"");
    }
}
