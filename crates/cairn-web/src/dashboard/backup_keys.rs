//! Device keys on an account's page: the list (name, created, last use), "Add key" (the
//! new key shown once, on the page the POST answers) and "Revoke", for administrators
//! (CSRF-checked forms); and the same for a backup account signed in on its own page
//! (`/me`, `crate::sso`), for its own keys only. `templates/backup_keys.html` renders
//! them on both pages.

use super::accounts::AccountPage;
use super::csrf::{read_fields, refused, same_origin, tokens_match, CheckedForm, Fields};
use super::view::{ago, datetime};
use super::{render, PageError};
use crate::scim::extract::request_meta;
use crate::AppState;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_core::backup_key::{BackupKeyRecord, NewBackupKey, MAX_BACKUP_KEYS};
use cairn_core::ids::UserId;
use cairn_core::service::Authority;
use cairn_core::session::SessionSecret;
use cairn_core::sso::AccountSession;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// One key as listed (plain text; the template escapes it).
pub struct KeyRow {
    pub name: String,
    pub user: String,
    pub created: String,
    /// "never", or how long ago (to the minute: see `LAST_USE_GRANULARITY`).
    pub last_used: String,
    pub last_used_at: String,
}

impl KeyRow {
    pub fn of(k: &BackupKeyRecord, now: OffsetDateTime) -> Self {
        KeyRow {
            name: k.name.to_string(),
            user: k.key_user.clone(),
            created: datetime(k.created_at),
            last_used: k
                .last_used_at
                .map_or_else(|| "never".to_owned(), |t| ago(now, t)),
            last_used_at: k.last_used_at.map(datetime).unwrap_or_default(),
        }
    }
}

/// A key created by this request, shown this once.
pub struct NewKeyView {
    pub name: String,
    pub repository: String,
    pub user: String,
    pub secret: String,
}

impl NewKeyView {
    pub fn of(state: &AppState, key: &NewBackupKey) -> Self {
        NewKeyView {
            name: key.name.to_string(),
            repository: state.services.repository_url(
                &key.account.tenant_id,
                &key.account.id,
                Some((&key.key_user, &key.secret)),
            ),
            user: key.key_user.clone(),
            secret: key.secret.expose().to_owned(),
        }
    }
}

/// What the key section of a page shows.
pub struct KeysSection {
    pub rows: Vec<KeyRow>,
    /// Where the forms post: `/accounts/{id}` or `/me`.
    pub base: String,
    pub csrf: String,
    /// Revoke buttons (a deleted account's keys can still be revoked).
    pub can_revoke: bool,
    /// The "Add key" form (a live account below the bound).
    pub can_add: bool,
    pub max: usize,
    pub new_key: Option<NewKeyView>,
}

impl KeysSection {
    pub fn new(
        keys: &[BackupKeyRecord],
        now: OffsetDateTime,
        base: String,
        csrf: String,
        can_revoke: bool,
        can_add: bool,
    ) -> Self {
        KeysSection {
            rows: keys.iter().map(|k| KeyRow::of(k, now)).collect(),
            base,
            csrf,
            can_revoke,
            can_add: can_add && keys.len() < MAX_BACKUP_KEYS,
            max: MAX_BACKUP_KEYS,
            new_key: None,
        }
    }
}

/// A page showing a secret: never stored by the browser or a proxy.
pub fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// "Add key": a new named key for the account, shown once on the page this POST answers
/// (never in a redirect URL).
pub async fn create_backup_key(
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
    let name = form.fields.get("name").unwrap_or_default();
    let key = match state
        .services
        .create_backup_key_by_id(
            Authority::Dashboard(ctx),
            ctx.tenant_id(),
            &uid,
            name,
            &request_meta(&headers),
        )
        .await
    {
        Ok(k) => k,
        Err(e) => return PageError::from_error(e, &nav).into_response(),
    };
    let notice = format!(
        "Backup key \"{}\" created. Copy it now: it is shown only once. The account's other keys keep working.",
        key.name
    );
    match AccountPage::load(&state, nav.clone(), ctx, &id, Some(notice)).await {
        Ok(mut page) => {
            page.keys.new_key = Some(NewKeyView::of(&state, &key));
            no_store(render(StatusCode::OK, &page))
        }
        Err(e) => PageError::from_error(e, &nav).into_response(),
    }
}

/// "Revoke": the account's key of that name stops working at once.
pub async fn revoke_backup_key(
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
    let name = form.fields.get("name").unwrap_or_default();
    if let Err(e) = state
        .services
        .revoke_backup_key_by_id(
            Authority::Dashboard(ctx),
            ctx.tenant_id(),
            &uid,
            name,
            &request_meta(&headers),
        )
        .await
    {
        return PageError::from_error(e, &nav).into_response();
    }
    let notice = format!(
        "Backup key \"{}\" revoked: it no longer opens the repository.",
        name.trim()
    );
    match AccountPage::load(&state, nav.clone(), ctx, &id, Some(notice)).await {
        Ok(page) => render(StatusCode::OK, &page),
        Err(e) => PageError::from_error(e, &nav).into_response(),
    }
}

/// The CSRF token of a backup account's own page. Account sessions store none, so it is
/// derived from the session's secret (OWASP's CSRF Prevention Cheat Sheet, "Signed
/// Double-Submit Cookie": a value only the holder of the session can compute; the cookie
/// is HttpOnly and SameSite=Strict, and the origin is checked too).
pub fn account_csrf(secret: &SessionSecret) -> String {
    let mut h = Sha256::new();
    h.update(b"cairn /me csrf\0");
    h.update(secret.expose().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A form POSTed to `/me/…` by the signed-in account's own page: same origin, the
/// derived CSRF token, a live session.
async fn checked_own_form(
    state: &AppState,
    req: Request,
) -> Result<(AccountSession, SessionSecret, Fields, HeaderMap), Response> {
    let (parts, body) = req.into_parts();
    if !same_origin(&parts.headers, &state.services.public_url) {
        return Err(refused().into_response());
    }
    let (session, secret) = crate::sso::my_session(state, &parts.headers).await?;
    let headers = parts.headers.clone();
    let fields = read_fields(Request::from_parts(parts, body)).await?;
    let ok = fields
        .get("csrf")
        .is_some_and(|t| tokens_match(t, &account_csrf(&secret)));
    if !ok {
        return Err(refused().into_response());
    }
    Ok((session, secret, fields, headers))
}

fn own_error(e: cairn_core::Error) -> Response {
    match e {
        cairn_core::Error::Invalid { reason, .. } => {
            PageError::new(StatusCode::UNPROCESSABLE_ENTITY, "Cannot do that", reason)
                .into_response()
        }
        cairn_core::Error::NotFound(what) => PageError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            format!("This {what} does not exist."),
        )
        .into_response(),
        other => crate::sso::unavailable(other),
    }
}

/// "Add key" on the account's own page: a key for this account only, shown once.
pub async fn create_own_backup_key(State(state): State<AppState>, req: Request) -> Response {
    let (session, secret, fields, headers) = match checked_own_form(&state, req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let name = fields.get("name").unwrap_or_default();
    let key = match state
        .services
        .create_own_backup_key(&session, name, &request_meta(&headers))
        .await
    {
        Ok(k) => k,
        Err(e) => return own_error(e),
    };
    let notice = format!(
        "Backup key \"{}\" created. Copy it now: it is shown only once.",
        key.name
    );
    match crate::sso::MyAccountPage::load(&state, &session, &secret, Some(notice)).await {
        Ok(page) => {
            let page = page.with_new_key(NewKeyView::of(&state, &key));
            no_store(render(StatusCode::OK, &page))
        }
        Err(e) => own_error(e),
    }
}

/// "Revoke" on the account's own page.
pub async fn revoke_own_backup_key(State(state): State<AppState>, req: Request) -> Response {
    let (session, secret, fields, headers) = match checked_own_form(&state, req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let name = fields.get("name").unwrap_or_default();
    if let Err(e) = state
        .services
        .revoke_own_backup_key(&session, name, &request_meta(&headers))
        .await
    {
        return own_error(e);
    }
    let notice = format!(
        "Backup key \"{}\" revoked: it no longer opens the repository.",
        name.trim()
    );
    match crate::sso::MyAccountPage::load(&state, &session, &secret, Some(notice)).await {
        Ok(page) => render(StatusCode::OK, &page),
        Err(e) => own_error(e),
    }
}
