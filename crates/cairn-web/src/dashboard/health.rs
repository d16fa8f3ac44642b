//! The account page's "Repository health" block: the last check of the account's backup
//! repository, and the administrators' "Verify now" (see `crate::vault_verify`).

use super::csrf::CheckedForm;
use super::{see_other, PageError};
use crate::scim::extract::request_meta;
use crate::vault_verify::{start_background, NotStarted};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use cairn_core::service::Authority;
use cairn_core::user::UserRecord;
use cairn_core::verification::{BadObject, VaultVerification};

/// What the block shows.
pub struct HealthSection {
    /// The last check: when (RFC 3339) and how long ago, what it read, what failed.
    pub verified_at: Option<String>,
    pub verified_ago: String,
    pub objects: u64,
    pub bytes: String,
    pub bad_count: u64,
    pub bad: Vec<BadObject>,
    /// A background check of the account is running.
    pub running: bool,
    /// The "Verify now" button (administrators, live accounts).
    pub can_verify: bool,
}

impl HealthSection {
    pub fn new(
        state: &AppState,
        account: &UserRecord,
        last: Option<VaultVerification>,
        can_verify: bool,
    ) -> Self {
        let now = state.services.clock.now();
        let running = crate::vault_verify::is_running(account);
        match last {
            Some(v) => HealthSection {
                verified_at: Some(cairn_core::clock::format_ts(v.verified_at)),
                verified_ago: super::view::ago(now, v.verified_at),
                objects: v.objects,
                bytes: super::view::bytes(i64::try_from(v.bytes).unwrap_or(i64::MAX)),
                bad_count: v.bad_count,
                bad: v.bad,
                running,
                can_verify,
            },
            None => HealthSection {
                verified_at: None,
                verified_ago: String::new(),
                objects: 0,
                bytes: String::new(),
                bad_count: 0,
                bad: Vec::new(),
                running,
                can_verify,
            },
        }
    }
}

/// "Verify now": administrators only (the service refuses anyone else), audited, then
/// the check runs in the background and the page shows its result once recorded.
pub async fn verify_account(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let nav = form.user.nav("accounts");
    let ctx = &form.user.session.ctx;
    let account = match state.services.account(ctx, &id).await {
        Ok((a, _)) => a,
        Err(e) => return PageError::from_error(e, &nav).into_response(),
    };
    // Audit (and the role check) first: nothing starts for a refused user.
    if let Err(e) = state
        .services
        .audit_verify_started(Authority::Dashboard(ctx), &account, &request_meta(&headers))
        .await
    {
        return PageError::from_error(e, &nav).into_response();
    }
    let outcome = match start_background(
        state.services.clone(),
        state.vault.vault.clone(),
        account.clone(),
    ) {
        Ok(()) => "started",
        Err(NotStarted::Running) => "running",
        Err(NotStarted::Busy) => "busy",
    };
    see_other(&format!("/accounts/{}?verify={outcome}", account.id))
}
