//! restic's REST backend protocol (v1 and v2) at `/backup/{tenant}/{account}/`, one
//! repository per backup account. The protocol is restic's `doc/REST_backend.md`;
//! where restic depends on details the document leaves open we answer as rest-server
//! does (403 when an object exists, 404 for a missing one, `?create=true`, the v2 listing
//! Content-Type). Access and quota are decided by `cairn_core::vault`; the bytes are
//! stored by `cairn_vault`.

use crate::AppState;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use cairn_core::ids::{TenantId, UserId};
use cairn_core::service::Services;
use cairn_core::vault::{
    BackupSecret, QuotaUnit, UploadKind, UploadRefused, VaultCtx, VaultDenied, MAX_OBJECT_BYTES,
};
use cairn_vault::{ByteRange, Kind, Object, ObjectName, Repo, Vault, VaultError};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub const V1: &str = "application/vnd.x.restic.rest.v1";
pub const V2: &str = "application/vnd.x.restic.rest.v2";

/// Where repositories live and how quota is counted.
#[derive(Debug, Clone)]
pub struct VaultConfig {
    pub vault: Vault,
    pub quota_unit: QuotaUnit,
}

pub fn routes() -> Router<AppState> {
    // Paths arrive normalised (no trailing slash): `/backup/T/A/` is `/backup/T/A`.
    Router::new()
        .route("/backup/{tenant}/{account}", post(create_repo))
        .route(
            "/backup/{tenant}/{account}/config",
            get(get_config).head(head_config).post(save_config),
        )
        .route("/backup/{tenant}/{account}/{kind}", get(list_objects))
        .route(
            "/backup/{tenant}/{account}/{kind}/{name}",
            get(get_object)
                .head(head_object)
                .post(save_object)
                .delete(delete_object),
        )
}

/// An authenticated request for one account's repository.
pub struct Access {
    ctx: VaultCtx,
    repo: Repo,
    /// This request's place among the vault requests in flight.
    permit: VaultPermit,
}

/// Bounds on vault requests in flight, globally and per account, so the memory, file
/// handles and connections the vault holds stay bounded whatever the clients do. Beyond a
/// bound the request is answered at once (429 for one account's excess, 503 for the
/// server's) with `Retry-After`; restic retries failed requests with backoff.
#[derive(Debug)]
pub struct VaultLimits {
    global: Arc<Semaphore>,
    per_account: usize,
    accounts: Mutex<HashMap<(TenantId, UserId), usize>>,
}

impl VaultLimits {
    /// At most `global` vault requests at once, `per_account` of them for one account.
    pub fn new(global: usize, per_account: usize) -> Arc<Self> {
        Arc::new(VaultLimits {
            global: Arc::new(Semaphore::new(global.max(1))),
            per_account: per_account.max(1),
            accounts: Mutex::new(HashMap::new()),
        })
    }

    fn try_enter(self: &Arc<Self>, key: (TenantId, UserId)) -> Result<VaultPermit, Busy> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        if accounts.get(&key).copied().unwrap_or(0) >= self.per_account {
            return Err(Busy::Account);
        }
        let Ok(global) = self.global.clone().try_acquire_owned() else {
            return Err(Busy::Server);
        };
        *accounts.entry(key.clone()).or_insert(0) += 1;
        Ok(VaultPermit {
            _global: global,
            limits: self.clone(),
            key,
        })
    }
}

/// A place among the vault requests in flight; dropping it (when the response body has
/// been sent) gives it back.
#[derive(Debug)]
pub struct VaultPermit {
    _global: OwnedSemaphorePermit,
    limits: Arc<VaultLimits>,
    key: (TenantId, UserId),
}

impl Drop for VaultPermit {
    fn drop(&mut self) {
        let mut accounts = self
            .limits
            .accounts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = accounts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                accounts.remove(&self.key);
            }
        }
    }
}

/// Which bound a refused request met.
#[derive(Debug, Clone, Copy)]
enum Busy {
    Account,
    Server,
}

impl Busy {
    fn response(self) -> Response {
        let (status, msg) = match self {
            Busy::Account => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many concurrent requests for this account",
            ),
            Busy::Server => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many concurrent vault requests",
            ),
        };
        let mut r = with_reason(status, msg);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        // A 503 for load, unlike one for a storage outage (`cairn_rate_limited_total`).
        r.extensions_mut().insert(crate::metrics::Shed);
        r
    }
}

fn plain(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

fn unauthorized() -> Response {
    let mut r = plain(StatusCode::UNAUTHORIZED, "Unauthorized");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"cairn backup\""),
    );
    r
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

impl FromRequestParts<AppState> for Access {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let (Some(t), Some(a)) = (param("tenant"), param("account")) else {
            return Err(plain(StatusCode::NOT_FOUND, "Not Found"));
        };
        let (Some(tenant), Some(user)) = (TenantId::parse(t), UserId::parse(a)) else {
            return Err(unauthorized());
        };
        let Some((key_user, secret)) = basic_credentials(&parts.headers) else {
            return Err(unauthorized());
        };
        let svc = &state.services;
        match svc
            .open_vault(
                &tenant,
                &user,
                &key_user,
                &BackupSecret::new(&secret),
                state.vault.quota_unit,
            )
            .await
        {
            Ok(Ok(ctx)) => {
                // Device keys: the key's last use, written at most once a minute per key
                // (`cairn_core::backup_key::LAST_USE_GRANULARITY`). Not recording it never
                // costs the request: a backup or restore outlives a full disk.
                if let Err(e) = svc.record_key_use(&ctx).await {
                    tracing::warn!(error = %e, "backup key last use not recorded");
                }
                Ok(Access {
                    repo: state.vault.vault.repo(tenant.as_str(), user.as_str()),
                    permit: state
                        .vault_limits
                        .try_enter((tenant, user))
                        .map_err(Busy::response)?,
                    ctx,
                })
            }
            Ok(Err(VaultDenied::Unauthenticated)) => Err(unauthorized()),
            Ok(Err(VaultDenied::Suspended)) => {
                Err(with_reason(StatusCode::FORBIDDEN, "Account suspended"))
            }
            Ok(Err(VaultDenied::Deleted)) => {
                Err(with_reason(StatusCode::FORBIDDEN, "Account deleted"))
            }
            Err(e) => Err(internal(&e.to_string())),
        }
    }
}

fn internal(detail: &str) -> Response {
    tracing::error!(error = %detail, "vault request failed");
    plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
}

fn vault_error(e: VaultError) -> Response {
    match e {
        VaultError::NotFound => plain(StatusCode::NOT_FOUND, "Not Found"),
        VaultError::Exists => plain(StatusCode::FORBIDDEN, "Object exists"),
        VaultError::HashMismatch => plain(
            StatusCode::BAD_REQUEST,
            "Content does not match the object name (SHA-256)",
        ),
        VaultError::BadName => plain(StatusCode::BAD_REQUEST, "Invalid object name"),
        VaultError::BadRange => plain(StatusCode::RANGE_NOT_SATISFIABLE, "Range Not Satisfiable"),
        VaultError::Truncated => plain(
            StatusCode::BAD_REQUEST,
            "Body length differs from Content-Length",
        ),
        VaultError::TooLarge => plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "Object larger than this vault's storage backend accepts ({} MiB)",
                cairn_vault::MAX_REMOTE_OBJECT >> 20
            ),
        ),
        VaultError::Io(e) => internal(&e.to_string()),
        VaultError::Unavailable(detail) => {
            tracing::warn!(error = %detail, "vault object store unavailable");
            let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, "Storage unavailable");
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
    }
}

fn object(kind: &str, name: &str) -> Result<Object, VaultError> {
    let kind = Kind::parse(kind).ok_or(VaultError::NotFound)?;
    Ok(Object::Item(kind, ObjectName::parse(name)?))
}

#[derive(Deserialize)]
pub struct CreateParams {
    create: Option<String>,
}

/// `POST /?create=true`: creates the repository's directories (idempotent).
async fn create_repo(access: Access, Query(q): Query<CreateParams>) -> Response {
    if q.create.as_deref() != Some("true") {
        return plain(StatusCode::BAD_REQUEST, "Expected ?create=true");
    }
    match access.repo.create().await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => vault_error(e),
    }
}

async fn head_config(access: Access) -> Response {
    head(&access.repo, &Object::Config).await
}

async fn get_config(access: Access, headers: HeaderMap) -> Response {
    read(access, &Object::Config, &headers).await
}

async fn save_config(
    access: Access,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    save(&state, &access, Object::Config, &headers, body).await
}

async fn head_object(access: Access, Path(p): Path<(String, String, String, String)>) -> Response {
    match object(&p.2, &p.3) {
        Ok(obj) => head(&access.repo, &obj).await,
        Err(e) => vault_error(e),
    }
}

async fn get_object(
    access: Access,
    Path(p): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    match object(&p.2, &p.3) {
        Ok(obj) => read(access, &obj, &headers).await,
        Err(e) => vault_error(e),
    }
}

async fn save_object(
    access: Access,
    State(state): State<AppState>,
    Path(p): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match object(&p.2, &p.3) {
        Ok(obj) => save(&state, &access, obj, &headers, body).await,
        Err(e) => vault_error(e),
    }
}

async fn delete_object(
    access: Access,
    State(state): State<AppState>,
    Path(p): Path<(String, String, String, String)>,
) -> Response {
    let obj = match object(&p.2, &p.3) {
        Ok(o) => o,
        Err(e) => return vault_error(e),
    };
    // Deletion protection may keep the object instead (`vault_trash`).
    let svc = &state.services;
    match crate::vault_trash::delete(svc, &access.ctx, &access.repo, &obj).await {
        Ok(Ok(crate::vault_trash::Deleted::Kept(_))) => StatusCode::OK.into_response(),
        Ok(Ok(crate::vault_trash::Deleted::Removed(size))) => {
            match svc.release_vault_bytes(&access.ctx, size).await {
                Ok(true) => {}
                Ok(false) => counter_drifted(size),
                Err(e) => return internal(&e.to_string()),
            }
            StatusCode::OK.into_response()
        }
        Ok(Err(e)) => vault_error(e),
        Err(e) => internal(&e.to_string()),
    }
}

async fn list_objects(
    access: Access,
    Path(p): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(kind) = Kind::parse(&p.2) else {
        return plain(StatusCode::NOT_FOUND, "Not Found");
    };
    let items = match access.repo.list(kind).await {
        Ok(items) => items,
        Err(e) => return vault_error(e),
    };
    let v2 = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(V2));
    let (ctype, body) = if v2 {
        let list: Vec<_> = items
            .iter()
            .map(|(name, size)| serde_json::json!({"name": name, "size": size}))
            .collect();
        (V2, serde_json::Value::from(list))
    } else {
        let list: Vec<_> = items.into_iter().map(|(name, _)| name).collect();
        (V1, serde_json::json!(list))
    };
    ([(header::CONTENT_TYPE, ctype)], body.to_string()).into_response()
}

async fn head(repo: &Repo, obj: &Object) -> Response {
    match repo.size(obj).await {
        Ok(size) => (
            StatusCode::OK,
            [
                (header::CONTENT_LENGTH, size.to_string()),
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (header::ACCEPT_RANGES, "bytes".to_owned()),
            ],
        )
            .into_response(),
        Err(e) => vault_error(e),
    }
}

async fn read(access: Access, obj: &Object, headers: &HeaderMap) -> Response {
    let repo = &access.repo;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(ByteRange::parse);
    match repo.open(obj, range).await {
        Ok(reader) => {
            let (len, range, total) = (reader.len, reader.range, reader.total);
            // The request keeps its place until its last byte has been sent.
            let permit = access.permit;
            let body = Body::from_stream(reader.body.inspect(move |_| {
                let _ = &permit;
            }));
            let mut r = Response::new(body);
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            if let Some((first, last)) = range {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{last}/{total}")) {
                    h.insert(header::CONTENT_RANGE, v);
                }
                *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            }
            r
        }
        Err(VaultError::BadRange) => {
            let total = repo.size(obj).await.unwrap_or(0);
            let mut r = vault_error(VaultError::BadRange);
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r
        }
        Err(e) => vault_error(e),
    }
}

/// A 507 whose status line carries the reason, because restic prints the status line
/// (`server response unexpected: 507 Account quota (50 GB) exceeded`).
fn quota_exceeded(ctx: &VaultCtx) -> Response {
    let msg = format!("Account quota ({}) exceeded", ctx.quota_gb());
    with_reason(StatusCode::INSUFFICIENT_STORAGE, &msg)
}

/// A 413 for a declared length above what an object of its kind may be, decided before
/// anything is charged or stored.
fn too_large(max: u64) -> Response {
    let msg = if max >= 1 << 20 {
        format!("Object larger than the vault accepts ({} MiB)", max >> 20)
    } else {
        format!(
            "Lock file larger than the vault accepts ({} KiB)",
            max >> 10
        )
    };
    with_reason(StatusCode::PAYLOAD_TOO_LARGE, &msg)
}

/// A give-back larger than the account's counter: the counter was set below what the
/// repository held (a recount during an upload). It is left for the next recount.
fn counter_drifted(bytes: u64) {
    tracing::warn!(
        bytes,
        "used space below the bytes given back; left unchanged, run `cairn account recount`"
    );
}

// Every object the vault accepts is one the S3 backend stores.
const _: () = assert!(MAX_OBJECT_BYTES <= cairn_vault::MAX_REMOTE_OBJECT);

/// A response whose status line and body both carry `msg`.
fn with_reason(status: StatusCode, msg: &str) -> Response {
    let mut r = plain(status, msg);
    if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(msg.as_bytes().to_vec()) {
        r.extensions_mut().insert(reason);
    }
    r
}

async fn save(
    state: &AppState,
    access: &Access,
    obj: Object,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        // The quota is decided before the body is stored, so the size must be declared.
        return plain(StatusCode::LENGTH_REQUIRED, "Content-Length required");
    };
    // Lock files have a small cap of their own and may go a little past the quota: a
    // full account must still be able to lock the repository to forget and prune.
    let kind = match obj {
        Object::Item(Kind::Locks, _) => UploadKind::Lock,
        _ => UploadKind::Object,
    };
    // The charge, the upload and a failed upload's give-back run in a task of their own:
    // a handler can be dropped mid-body (its connection closed under it), and a charge
    // dropped with it would stay counted until a recount. The task ends when the body
    // does.
    let (svc, ctx, repo) = (
        state.services.clone(),
        access.ctx.clone(),
        access.repo.clone(),
    );
    let task =
        tokio::spawn(
            async move { charge_and_store(&svc, &ctx, &repo, obj, kind, len, body).await },
        );
    match task.await {
        Ok(response) => response,
        Err(e) => internal(&e.to_string()),
    }
}

async fn charge_and_store(
    svc: &Services,
    ctx: &VaultCtx,
    repo: &Repo,
    obj: Object,
    kind: UploadKind,
    len: u64,
    body: Body,
) -> Response {
    let charged = match svc.reserve_vault_bytes(ctx, len, kind).await {
        Ok(Ok(charged)) => charged,
        Ok(Err(UploadRefused::TooLarge { max })) => return too_large(max),
        Ok(Err(UploadRefused::QuotaExceeded)) => return quota_exceeded(ctx),
        Err(e) => return internal(&e.to_string()),
    };
    // Backup freshness: restic writes a snapshot file last, once its data and index
    // are stored. A lock is written by every restic command, reads included, so it
    // does not count as backup activity.
    let snapshot = matches!(obj, Object::Item(Kind::Snapshots, _));
    let result = store_body(repo, obj, len, body).await;
    if result.is_ok() && kind == UploadKind::Object {
        if let Err(e) = svc.confirm_upload(ctx, &charged, snapshot).await {
            // The object is stored and charged; only its freshness record is missing.
            tracing::error!(error = %e, "could not record a successful upload's time");
        }
    }
    if result.is_err() {
        match svc.release_vault_charge(ctx, &charged).await {
            Ok(true) => {}
            Ok(false) => counter_drifted(len),
            Err(e) => {
                tracing::error!(error = %e, "could not give back a failed upload's quota charge");
            }
        }
    }
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => vault_error(e),
    }
}

/// Streams the body into a new object; dropping the upload on any error removes it.
async fn store_body(repo: &Repo, obj: Object, len: u64, mut body: Body) -> Result<(), VaultError> {
    let mut upload = repo.begin_upload(obj, len).await?;
    while let Some(frame) = body.frame().await {
        // A client that goes away mid-body: the object is as absent as if never sent.
        let frame = frame.map_err(|_| VaultError::Truncated)?;
        if let Ok(chunk) = frame.into_data() {
            if upload.written() + chunk.len() as u64 > len {
                return Err(VaultError::Truncated);
            }
            upload.write(chunk).await?;
        }
    }
    upload.finish(Some(len)).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_is_parsed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dTpwOnE="),
        );
        assert_eq!(basic_credentials(&h), Some(("u".into(), "p:q".into())));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(basic_credentials(&h), None);
    }
}
