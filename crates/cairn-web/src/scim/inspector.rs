//! The provisioning inspector's recorder: middleware on the SCIM routes that describes
//! each authenticated request (client, dialect, outcome, latency, the resource touched,
//! what `cairn-scim` normalised) and hands it to a background writer through a bounded
//! channel. The request never waits for the log: a full channel drops the entry and
//! counts it (`cairn_request_log_dropped_total`), and the writer stores what has queued up
//! in one batch, outside any request's transaction.
//!
//! Requests that fail authentication are not recorded: anyone can send them, and they
//! would push a tenant's real entries out of its bounded log.
//!
//! Bodies are read only while an administrator has switched body capture on for the
//! tenant; they are redacted ([`redact`]) and capped before they are queued.

use super::extract::MAX_BODY;
use super::response::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{OriginalUri, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cairn_core::ids::TenantId;
use cairn_core::requests::{dialect, Client, RequestEntry};
use cairn_core::store::*;
use cairn_scim::ScimError;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

/// Entries waiting for the writer before new ones are dropped.
pub const DEFAULT_QUEUE: usize = 8192;
/// Entries stored per write.
const BATCH: usize = 512;
/// The writer's pause after each batch, so that entries arriving one at a time share a
/// commit instead of each taking one (a durable commit per logged request would cost
/// more than the request; BENCHMARKS.md has the figures). The queue must hold what
/// arrives during one pause, or entries are dropped and counted.
pub const FLUSH_PAUSE: Duration = Duration::from_millis(500);
/// How often the writer re-reads which tenants capture bodies (another instance, or the
/// CLI, may have switched it).
const CAPTURE_REFRESH: Duration = Duration::from_secs(5);
/// Largest body kept, after redaction.
pub const MAX_KEPT_BODY: usize = 16 * 1024;
/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// Which tenants capture bodies, and until when.
#[derive(Default)]
struct Captures {
    any: AtomicBool,
    until: RwLock<HashMap<TenantId, OffsetDateTime>>,
}

impl Captures {
    fn replace(&self, map: HashMap<TenantId, OffsetDateTime>) {
        let mut w = self.until.write().unwrap_or_else(|e| e.into_inner());
        self.any.store(!map.is_empty(), Ordering::Relaxed);
        *w = map;
    }
}

/// The handle the middleware sends entries to.
pub struct Recorder {
    tx: mpsc::Sender<RequestEntry>,
    captures: Arc<Captures>,
    dropped: Arc<AtomicU64>,
    recorded: Arc<AtomicU64>,
    /// Tells the writer to store what is queued and stop ([`Recorder::shut_down`]).
    stop: Arc<Notify>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Recorder {
    /// Starts the background writer (on the current tokio runtime) over `store`, pausing
    /// `flush_pause` after each batch ([`FLUSH_PAUSE`] in production).
    pub fn start(store: Arc<dyn Store>, queue: usize, flush_pause: Duration) -> Arc<Recorder> {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let captures = Arc::new(Captures::default());
        let dropped = Arc::new(AtomicU64::new(0));
        let recorded = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(Notify::new());
        let writer = tokio::spawn(write_loop(
            Writer {
                store,
                dropped: dropped.clone(),
                recorded: recorded.clone(),
            },
            rx,
            captures.clone(),
            stop.clone(),
            flush_pause,
        ));
        Arc::new(Recorder {
            tx,
            captures,
            dropped,
            recorded,
            stop,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Stores every entry queued so far and stops the writer; entries submitted after
    /// this are dropped (counted). Called once the server has drained its requests, so a
    /// graceful shutdown loses nothing; waits at most `limit`.
    pub async fn shut_down(&self, limit: Duration) {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(writer) = writer else {
            return;
        };
        // A stored permit: the writer sees it even if it is not waiting yet.
        self.stop.notify_one();
        if tokio::time::timeout(limit, writer).await.is_err() {
            tracing::warn!(
                secs = limit.as_secs(),
                "the SCIM request log was not stored within the shutdown limit"
            );
        }
    }

    /// Queues an entry, or drops it (counted) when the writer is behind.
    pub fn submit(&self, entry: RequestEntry) {
        if self.tx.try_send(entry).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether bodies of `tenant`'s requests are captured at `now`.
    pub fn capturing(&self, tenant: &str, now: OffsetDateTime) -> bool {
        if !self.captures.any.load(Ordering::Relaxed) {
            return false;
        }
        let map = self
            .captures
            .until
            .read()
            .unwrap_or_else(|e| e.into_inner());
        map.iter()
            .any(|(t, until)| t.as_str() == tenant && *until > now)
    }

    /// Takes a change made in this process at once (the writer's refresh picks up
    /// changes made elsewhere).
    pub fn capture_changed(&self, tenant: &TenantId, until: Option<OffsetDateTime>) {
        let mut map = self
            .captures
            .until
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match until {
            Some(u) => map.insert(tenant.clone(), u),
            None => map.remove(tenant),
        };
        self.captures.replace(map);
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// A Prometheus collector of the recorder's counters.
    pub fn collector(self: &Arc<Self>) -> Box<dyn Collector> {
        Box::new(RecorderCollector(self.clone()))
    }
}

struct Writer {
    store: Arc<dyn Store>,
    dropped: Arc<AtomicU64>,
    recorded: Arc<AtomicU64>,
}

impl Writer {
    async fn store(&self, batch: &mut Vec<RequestEntry>) {
        let len = batch.len() as u64;
        // Moved, not copied; the next batch gets a fresh buffer.
        let entries = std::mem::replace(batch, Vec::with_capacity(BATCH));
        match self.store.record_requests(entries).await {
            Ok(()) => {
                self.recorded.fetch_add(len, Ordering::Relaxed);
            }
            Err(e) => {
                self.dropped.fetch_add(len, Ordering::Relaxed);
                tracing::warn!(error = %e, entries = len, "storing the SCIM request log failed");
            }
        }
    }
}

async fn write_loop(
    w: Writer,
    mut rx: mpsc::Receiver<RequestEntry>,
    captures: Arc<Captures>,
    stop: Arc<Notify>,
    flush_pause: Duration,
) {
    let mut refresh = tokio::time::interval(CAPTURE_REFRESH);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            // Before anything else once asked, even in the middle of a pause.
            biased;
            () = stop.notified() => {
                // No more entries come in; what is queued is stored without pauses.
                rx.close();
                while rx.recv_many(&mut batch, BATCH).await > 0 {
                    w.store(&mut batch).await;
                }
                return;
            }
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return;
                }
                w.store(&mut batch).await;
                // The stop signal cuts the pause short (it is kept until the loop
                // polls it again).
                tokio::select! {
                    () = tokio::time::sleep(flush_pause) => {}
                    () = stop.notified() => stop.notify_one(),
                }
            }
            _ = refresh.tick() => {
                match w.store.body_captures(OffsetDateTime::now_utc()).await {
                    Ok(list) => captures.replace(list.into_iter().collect()),
                    Err(e) => tracing::debug!(error = %e, "reading body capture switches failed"),
                }
            }
        }
    }
}

struct RecorderCollector(Arc<Recorder>);

impl std::fmt::Debug for RecorderCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecorderCollector")
    }
}

impl Collector for RecorderCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, value) in [
            (
                "request_log_recorded",
                "SCIM requests stored in the provisioning inspector's log",
                self.0.recorded.load(Ordering::Relaxed),
            ),
            (
                "request_log_dropped",
                "SCIM requests left out of the provisioning inspector's log because its \
                 queue was full or the store failed",
                self.0.dropped(),
            ),
        ] {
            let counter = ConstCounter::new(value);
            let m = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(m)?;
        }
        Ok(())
    }
}

/// Set by the `Scim` extractor once the request is authenticated: the recorder logs only
/// such requests, under the token that made them.
#[derive(Default)]
pub struct Trace(Mutex<Option<String>>);

impl Trace {
    pub fn authenticated(&self, token_id: &str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(token_id.to_owned());
    }
    fn take_token(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// What an error response said, for the log (set by `ApiError`).
#[derive(Clone)]
pub struct ErrorInfo {
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

/// The middleware (see the module documentation).
pub async fn record(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(rec) = state.request_log.clone() else {
        return next.run(req).await;
    };
    let started = Instant::now();
    let at = state.services.clock.now();
    let uri = req
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| req.uri().clone(), |u| u.0.clone());
    let Some((tenant, rest)) = split_tenant(uri.path()) else {
        return next.run(req).await;
    };
    let tenant = tenant.to_owned();
    let rest = clip(rest, 1024);
    let query = uri.query().map(|q| clip(q, 2048));
    let mut path = String::with_capacity(rest.len() + query.map_or(0, |q| q.len() + 1));
    path.push_str(rest);
    if let Some(q) = query {
        path.push('?');
        path.push_str(q);
    }
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| clip(s, 256).to_owned());
    let method = crate::metrics::method_label(req.method()).to_owned();
    let trace = Arc::new(Trace::default());
    req.extensions_mut().insert(trace.clone());

    let capture = rec.capturing(&tenant, at);
    let mut request_body = None;
    if capture {
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
            Ok(b) => b,
            Err(_) => {
                return ApiError(ScimError::new(
                    413,
                    None,
                    format!("the request body is larger than {MAX_BODY} bytes"),
                ))
                .into_response()
            }
        };
        if !bytes.is_empty() {
            request_body = Some(redact(&bytes));
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }

    // Notes made by cairn-scim while the handler is polled, on whichever worker thread.
    let mut notes = Vec::new();
    let mut fut = std::pin::pin!(next.run(req));
    let mut resp =
        std::future::poll_fn(|cx| cairn_scim::notes::collect(&mut notes, || fut.as_mut().poll(cx)))
            .await;
    let latency = started.elapsed();

    let Some(token_id) = trace.take_token() else {
        return resp;
    };
    let status = resp.status().as_u16();
    let err = resp.extensions().get::<ErrorInfo>().cloned();
    let (resource_type, resource_id) = resource_of(rest, status, &resp);
    let mut response_body = None;
    if capture {
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        if !bytes.is_empty() {
            response_body = Some(redact(&bytes));
        }
        resp = Response::from_parts(parts, Body::from(bytes));
    }
    let client = Client::detect(user_agent.as_deref(), query);
    rec.submit(RequestEntry {
        id: 0,
        tenant_id: TenantId::from_trusted(tenant),
        at,
        token_id: Some(token_id),
        method,
        path,
        client,
        dialect: dialect(client, query),
        user_agent,
        status,
        scim_type: err.as_ref().and_then(|e| e.scim_type).map(str::to_owned),
        error: err.map(|e| e.detail),
        latency_us: i64::try_from(latency.as_micros()).unwrap_or(i64::MAX),
        resource_type,
        resource_id,
        notes,
        request_body,
        response_body,
    });
    resp
}

/// The first `max` characters of `s`, without copying them.
fn clip(s: &str, max: usize) -> &str {
    // No more bytes than `max` means no more characters: the usual case skips the walk.
    if s.len() <= max {
        return s;
    }
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `("t1", "/Users/abc")` from `/scim/v2/t1/Users/abc`.
fn split_tenant(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/scim/v2/")?;
    match rest.find('/') {
        Some(i) => Some((&rest[..i], &rest[i..])),
        None => Some((rest, "")),
    }
}

/// The account or group a request named (`/Users/{id}`) or created (`Location`).
fn resource_of(rest: &str, status: u16, resp: &Response) -> (Option<String>, Option<String>) {
    let mut segs = rest.split('/').filter(|s| !s.is_empty());
    let kind = match segs.next() {
        Some(s) if s.eq_ignore_ascii_case("Users") => "User",
        Some(s) if s.eq_ignore_ascii_case("Groups") => "Group",
        _ => return (None, None),
    };
    let id = match segs.next() {
        Some(".search") => None,
        Some(id) => Some(clip(id, 64).to_owned()),
        None if status == 201 => resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| l.rsplit('/').next())
            .map(str::to_owned),
        None => None,
    };
    match id {
        Some(id) => (Some(kind.to_owned()), Some(id)),
        None => (None, None),
    }
}

/// Keys whose values are secrets wherever they appear (compared without case, as
/// substrings: `password`, `newPassword`, `access_token`, `clientSecret`).
const SECRET_WORDS: [&str; 6] = [
    "password",
    "secret",
    "token",
    "apikey",
    "api_key",
    "credential",
];

fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| k.contains(w))
}

/// A body as it may be kept: JSON with every secret replaced by [`REDACTED`] (values of
/// secret-named keys, and the `value` of a PATCH operation whose `path` names a secret),
/// at most [`MAX_KEPT_BODY`] bytes. Anything else is not kept, only its size.
pub fn redact(bytes: &[u8]) -> String {
    let Ok(mut v) = serde_json::from_slice::<Value>(bytes) else {
        return format!("[{} bytes, not JSON: not kept]", bytes.len());
    };
    redact_value(&mut v);
    let mut s = v.to_string();
    if s.len() > MAX_KEPT_BODY {
        let mut cut = MAX_KEPT_BODY;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(&format!("… [truncated; {} bytes in all]", bytes.len()));
    }
    s
}

fn redact_value(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let op_on_secret = m
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("path"))
                .and_then(|(_, p)| p.as_str())
                .is_some_and(is_secret);
            for (k, val) in m.iter_mut() {
                if is_secret(k) || (op_on_secret && k.eq_ignore_ascii_case("value")) {
                    *val = Value::String(REDACTED.into());
                } else {
                    redact_value(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_value),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_everywhere() {
        let body = serde_json::json!({
            "userName": "a@example.com",
            "password": "hunter2",
            "urn:x": {"clientSecret": "s1", "nested": [{"access_token": "t"}]},
            "Operations": [
                {"op": "replace", "path": "password", "value": "hunter3"},
                {"op": "replace", "value": {"Password": "hunter4", "active": false}},
                {"op": "replace", "path": "displayName", "value": "Ann"}
            ]
        });
        let out = redact(body.to_string().as_bytes());
        for secret in ["hunter2", "hunter3", "hunter4", "s1", "\"t\""] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(
            out.contains("a@example.com") && out.contains("Ann"),
            "{out}"
        );
        assert!(redact(b"password=x").starts_with("[10 bytes, not JSON"));
    }

    #[test]
    fn bodies_are_capped() {
        let big = serde_json::json!({ "displayName": "é".repeat(MAX_KEPT_BODY) });
        let out = redact(big.to_string().as_bytes());
        assert!(out.len() < MAX_KEPT_BODY + 64, "{}", out.len());
        assert!(out.contains("truncated"));
    }

    #[test]
    fn clipping_counts_characters() {
        assert_eq!(clip("abc", 2), "ab");
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("ééé", 2), "éé");
        assert_eq!(clip("", 5), "");
    }

    #[test]
    fn tenant_and_resource_from_paths() {
        assert_eq!(
            split_tenant("/scim/v2/t1/Users/abc"),
            Some(("t1", "/Users/abc"))
        );
        assert_eq!(split_tenant("/scim/v2/t1"), Some(("t1", "")));
        assert_eq!(split_tenant("/other"), None);
        let resp = Response::new(Body::empty());
        assert_eq!(
            resource_of("/Users/abc", 200, &resp),
            (Some("User".into()), Some("abc".into()))
        );
        assert_eq!(resource_of("/Users/.search", 200, &resp), (None, None));
        assert_eq!(resource_of("/Schemas/x", 200, &resp), (None, None));
    }
}
