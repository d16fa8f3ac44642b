//! The provisioning inspector's recorder: middleware on the SCIM routes that describes
//! each authenticated request (client, dialect, outcome, latency, the resource touched,
//! what `cairn-scim` normalised) and encodes it straight into the pending batch of its
//! tenant (`cairn_core::reqlog`), borrowing every string from the request and response.
//! A background writer takes the pending batches and stores them, one row per tenant,
//! outside any request's transaction. The request never waits for the log: when the
//! pending entries reach their bound (a number and a size), new ones are dropped and
//! counted (`cairn_request_log_dropped_total`).
//!
//! Requests that fail authentication are not recorded: anyone can send them, and they
//! would push a tenant's real entries out of its bounded log.
//!
//! Bodies are read only while an administrator has switched body capture on for the
//! tenant; they are redacted ([`redact`]) and capped before they are kept.

use super::extract::MAX_BODY;
use super::response::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{OriginalUri, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cairn_core::ids::TenantId;
use cairn_core::reqlog::{encode_entry, ms, Encoded, EntryFields};
use cairn_core::requests::{dialect, Client};
use cairn_core::store::*;
use cairn_scim::ScimError;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Entries waiting for the writer before new ones are dropped.
pub const DEFAULT_QUEUE: usize = 8192;
/// Bytes of encoded entries waiting for the writer before new ones are dropped: with
/// body capture on, an entry can hold two bodies of [`MAX_KEPT_BODY`], and the number
/// alone would let the queue grow to a quarter of a gigabyte.
pub const MAX_PENDING_BYTES: usize = 32 * 1024 * 1024;
/// The writer's pause after each batch, so that entries arriving one at a time share a
/// commit instead of each taking one (a durable commit per logged request would cost
/// more than the request; BENCHMARKS.md has the figures). The bounds must hold what
/// arrives during one pause, or entries are dropped and counted.
pub const FLUSH_PAUSE: Duration = Duration::from_millis(500);
/// How often the writer re-reads which tenants capture bodies (another instance, or the
/// CLI, may have switched it).
const CAPTURE_REFRESH: Duration = Duration::from_secs(5);
/// Largest body kept, after redaction.
pub const MAX_KEPT_BODY: usize = 16 * 1024;
/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";
/// Entries and bytes per stored row: a tenant's pending entries beyond these start a new
/// group (and row), so that reading the newest entries or trimming the oldest never
/// handles a row of a whole busy pause (or, with bodies captured, megabytes).
const GROUP_ENTRIES: i64 = 512;
const GROUP_BYTES: usize = 1024 * 1024;
/// A worker thread's encoding buffer is kept between requests up to this size (a
/// captured body makes it larger once; it is not kept that large).
const SCRATCH_KEPT: usize = 64 * 1024;

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

/// Encoded entries waiting for the writer, one [`Encoded`] per tenant, each numbering
/// its entries from 0.
#[derive(Default)]
struct Pending {
    groups: Vec<Encoded>,
    /// Where each tenant's open group (its newest) is in `groups`.
    index: HashMap<String, usize>,
    /// The group the last entry went to: a burst is usually one tenant's, and this
    /// spares hashing its id.
    last: usize,
    entries: usize,
    bytes: usize,
    /// Set at shutdown: nothing is taken after the last store.
    closed: bool,
}

/// What the middleware and the writer share.
struct Shared {
    pending: Mutex<Pending>,
    max_entries: usize,
    max_bytes: usize,
    /// Wakes the writer when entries arrive in an empty queue.
    arrived: Notify,
    dropped: AtomicU64,
    recorded: AtomicU64,
}

impl Shared {
    fn new(max_entries: usize, max_bytes: usize) -> Shared {
        Shared {
            pending: Mutex::new(Pending::default()),
            max_entries: max_entries.max(1),
            max_bytes,
            arrived: Notify::new(),
            dropped: AtomicU64::new(0),
            recorded: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds one encoded entry to its tenant's group, or drops it (counted) when the
    /// queue is full or closed.
    fn push(&self, tenant: &str, at_ms: i64, raw: &[u8]) {
        let mut p = self.lock();
        if p.closed || p.entries >= self.max_entries || p.bytes + raw.len() > self.max_bytes {
            drop(p);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let was_empty = p.entries == 0;
        let open = match p.groups.get(p.last) {
            Some(g) if g.tenant_id == tenant => Some(p.last),
            _ => p.index.get(tenant).copied(),
        };
        let i = match open {
            Some(i)
                if p.groups[i].count < GROUP_ENTRIES
                    && p.groups[i].blob.len() + raw.len() <= GROUP_BYTES =>
            {
                i
            }
            // The tenant's first entry, or its open group is full.
            _ => {
                p.groups.push(Encoded::new(tenant.to_owned()));
                let i = p.groups.len() - 1;
                p.index.insert(tenant.to_owned(), i);
                i
            }
        };
        p.last = i;
        let g = &mut p.groups[i];
        g.push_raw(g.count, at_ms, raw);
        p.entries += 1;
        p.bytes += raw.len();
        drop(p);
        if was_empty {
            self.arrived.notify_one();
        }
    }

    /// Takes what is pending, numbered 0.. across tenants as the store expects.
    fn take(&self) -> Vec<Encoded> {
        let mut groups = {
            let mut p = self.lock();
            p.index.clear();
            p.last = 0;
            p.entries = 0;
            p.bytes = 0;
            std::mem::take(&mut p.groups)
        };
        let mut next = 0;
        for g in &mut groups {
            g.rebase(next);
            next += g.count;
        }
        groups
    }

    fn close(&self) {
        self.lock().closed = true;
    }
}

/// The handle the middleware records entries with.
pub struct Recorder {
    shared: Arc<Shared>,
    captures: Arc<Captures>,
    /// Tells the writer to store what is queued and stop ([`Recorder::shut_down`]).
    stop: Arc<Notify>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // The writer holds only the shared queue: without this it would outlive us.
        self.stop.notify_one();
    }
}

thread_local! {
    /// The encoding buffer of this worker thread.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Set while a recorded request's handler is polled on this thread: `Some(None)`
    /// until the `Scim` extractor reports the token that authenticated it.
    static TOKEN: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

/// Called by the `Scim` extractor once the request is authenticated: the recorder logs
/// only such requests, under the token that made them.
pub fn authenticated(token_id: &str) {
    TOKEN.with(|t| {
        if let Some(slot) = t.borrow_mut().as_mut() {
            *slot = Some(token_id.to_owned());
        }
    });
}

/// Polls `f` with `token` as this thread's recording slot, and takes the slot back
/// afterwards (also when `f` panics).
fn with_token_slot<R>(token: &mut Option<String>, f: impl FnOnce() -> R) -> R {
    cairn_scim::notes::scoped(&TOKEN, token, f)
}

impl Recorder {
    /// Starts the background writer (on the current tokio runtime) over `store`, pausing
    /// `flush_pause` after each batch ([`FLUSH_PAUSE`] in production); at most `queue`
    /// entries (and [`MAX_PENDING_BYTES`]) wait for it.
    ///
    /// `keep_per_tenant` is the log's bound per tenant (0: none). The hourly maintenance
    /// run enforces it; between runs the writer does too, each time it has stored that
    /// many entries since it last did, so that a burst of requests cannot grow a
    /// tenant's log to an hour of traffic: a tenant keeps at most about twice its bound.
    pub fn start(
        store: Arc<dyn Store>,
        queue: usize,
        flush_pause: Duration,
        keep_per_tenant: u32,
    ) -> Arc<Recorder> {
        let shared = Arc::new(Shared::new(queue, MAX_PENDING_BYTES));
        let captures = Arc::new(Captures::default());
        let stop = Arc::new(Notify::new());
        let writer = tokio::spawn(write_loop(
            store,
            shared.clone(),
            captures.clone(),
            stop.clone(),
            flush_pause,
            keep_per_tenant,
        ));
        Arc::new(Recorder {
            shared,
            captures,
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

    /// Encodes an entry of `tenant` into its pending batch, or drops it (counted) when
    /// the writer is behind.
    pub fn submit(&self, tenant: &str, entry: &EntryFields<'_>) {
        SCRATCH.with(|s| {
            let mut b = s.borrow_mut();
            b.clear();
            encode_entry(&mut b, 0, entry);
            self.shared.push(tenant, entry.at_ms, &b);
            if b.capacity() > SCRATCH_KEPT {
                *b = Vec::new();
            }
        });
    }

    /// Whether bodies of `tenant`'s requests are captured at `now_ms` (Unix ms).
    pub fn capturing(&self, tenant: &str, now_ms: i64) -> bool {
        if !self.captures.any.load(Ordering::Relaxed) {
            return false;
        }
        let map = self
            .captures
            .until
            .read()
            .unwrap_or_else(|e| e.into_inner());
        map.iter()
            .any(|(t, until)| t.as_str() == tenant && ms(*until) > now_ms)
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
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// A Prometheus collector of the recorder's counters.
    pub fn collector(self: &Arc<Self>) -> Box<dyn Collector> {
        Box::new(RecorderCollector(self.clone()))
    }
}

/// Stores what is pending, counting it as recorded or, if the store fails, dropped;
/// returns how many entries were stored.
async fn store_pending(store: &dyn Store, shared: &Shared) -> u64 {
    let groups = shared.take();
    let len: i64 = groups.iter().map(|g| g.count).sum();
    if len == 0 {
        return 0;
    }
    let len = len as u64;
    match store.record_batches(groups).await {
        Ok(()) => {
            shared.recorded.fetch_add(len, Ordering::Relaxed);
            len
        }
        Err(e) => {
            shared.dropped.fetch_add(len, Ordering::Relaxed);
            tracing::warn!(error = %e, entries = len, "storing the SCIM request log failed");
            0
        }
    }
}

async fn write_loop(
    store: Arc<dyn Store>,
    shared: Arc<Shared>,
    captures: Arc<Captures>,
    stop: Arc<Notify>,
    flush_pause: Duration,
    keep_per_tenant: u32,
) {
    let mut refresh = tokio::time::interval(CAPTURE_REFRESH);
    let mut since_prune: u64 = 0;
    loop {
        tokio::select! {
            // Before anything else once asked, even in the middle of a pause.
            biased;
            () = stop.notified() => {
                // No more entries come in; what is queued is stored.
                shared.close();
                store_pending(&*store, &shared).await;
                return;
            }
            () = shared.arrived.notified() => {
                since_prune += store_pending(&*store, &shared).await;
                if keep_per_tenant > 0 && since_prune >= u64::from(keep_per_tenant) {
                    since_prune = 0;
                    // By count only (nothing is older than the epoch); age stays with the
                    // hourly run.
                    match store.prune_requests(OffsetDateTime::UNIX_EPOCH, keep_per_tenant).await {
                        Ok(n) => tracing::debug!(entries = n, "pruned the SCIM request log"),
                        Err(e) => tracing::warn!(error = %e, "pruning the SCIM request log failed"),
                    }
                }
                // The stop signal cuts the pause short (it is kept until the loop
                // polls it again).
                tokio::select! {
                    () = tokio::time::sleep(flush_pause) => {}
                    () = stop.notified() => stop.notify_one(),
                }
            }
            _ = refresh.tick() => {
                match store.body_captures(OffsetDateTime::now_utc()).await {
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
                self.0.shared.recorded.load(Ordering::Relaxed),
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

/// What an error response said, for the log (set by `ApiError`).
#[derive(Clone)]
pub struct ErrorInfo {
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

/// The middleware (see the module documentation).
pub async fn record(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(rec) = state.request_log.as_deref() else {
        return next.run(req).await;
    };
    let started = Instant::now();
    let at_ms = state.services.clock.unix_ms();
    let uri = req
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| req.uri().clone(), |u| u.0.clone());
    let Some((tenant, rest)) = split_tenant(uri.path()) else {
        return next.run(req).await;
    };
    let rest = clip(rest, 1024);
    let query = uri.query().map(|q| clip(q, 2048));
    // A cheap copy (the header's bytes are shared): the request is handed on below.
    let user_agent = req.headers().get(header::USER_AGENT).cloned();
    let method = crate::metrics::method_label(req.method());

    let capture = rec.capturing(tenant, at_ms);
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

    // Notes made by cairn-scim and the token the `Scim` extractor authenticated, while
    // the handler is polled, on whichever worker thread.
    let mut notes = Vec::new();
    let mut token = None;
    let mut fut = std::pin::pin!(next.run(req));
    let mut resp = std::future::poll_fn(|cx| {
        with_token_slot(&mut token, || {
            cairn_scim::notes::collect(&mut notes, || fut.as_mut().poll(cx))
        })
    })
    .await;
    let latency = started.elapsed();

    let Some(token_id) = token else {
        return resp;
    };
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
    let status = resp.status().as_u16();
    let err = resp.extensions().get::<ErrorInfo>();
    let (resource_type, resource_id) = resource_of(rest, status, &resp);
    let user_agent = user_agent
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .map(|s| clip(s, 256));
    let client = Client::detect(user_agent, query);
    rec.submit(
        tenant,
        &EntryFields {
            at_ms,
            status,
            latency_us: i64::try_from(latency.as_micros()).unwrap_or(i64::MAX),
            client,
            token_id: Some(&token_id),
            method,
            path: rest,
            query,
            dialect: dialect(client, query),
            user_agent,
            scim_type: err.and_then(|e| e.scim_type),
            error: err.map(|e| e.detail.as_str()),
            resource_type,
            resource_id,
            request_body: request_body.as_deref(),
            response_body: response_body.as_deref(),
            notes: &notes,
        },
    );
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
fn resource_of<'a>(
    rest: &'a str,
    status: u16,
    resp: &'a Response,
) -> (Option<&'static str>, Option<&'a str>) {
    let mut segs = rest.split('/').filter(|s| !s.is_empty());
    let kind = match segs.next() {
        Some(s) if s.eq_ignore_ascii_case("Users") => "User",
        Some(s) if s.eq_ignore_ascii_case("Groups") => "Group",
        _ => return (None, None),
    };
    let id = match segs.next() {
        Some(".search") => None,
        Some(id) => Some(clip(id, 64)),
        None if status == 201 => resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| l.rsplit('/').next()),
        None => None,
    };
    match id {
        Some(id) => (Some(kind), Some(id)),
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

    fn raw(at_ms: i64, path: &str) -> Vec<u8> {
        let mut b = Vec::new();
        let f = EntryFields {
            at_ms,
            status: 200,
            latency_us: 1,
            client: Client::Okta,
            token_id: Some("tok"),
            method: "GET",
            path,
            query: Some("a=b"),
            dialect: None,
            user_agent: None,
            scim_type: None,
            error: None,
            resource_type: None,
            resource_id: None,
            request_body: None,
            response_body: None,
            notes: &[],
        };
        encode_entry(&mut b, 0, &f);
        b
    }

    #[test]
    fn pending_entries_are_grouped_per_tenant_and_numbered_across_them() {
        let q = Shared::new(10, 1 << 20);
        q.push("a", 1, &raw(1, "/Users/1"));
        q.push("b", 2, &raw(2, "/Users/2"));
        q.push("a", 3, &raw(3, "/Users/3"));
        let groups = q.take();
        assert_eq!(groups.len(), 2);
        assert_eq!(
            (
                groups[0].tenant_id.as_str(),
                groups[0].first_id,
                groups[0].last_id
            ),
            ("a", 0, 1)
        );
        assert_eq!(
            (
                groups[1].tenant_id.as_str(),
                groups[1].first_id,
                groups[1].last_id
            ),
            ("b", 2, 2)
        );
        assert_eq!((groups[0].oldest_ms, groups[0].newest_ms), (1, 3));
        // Taken means gone; a new burst starts its own numbering.
        assert!(q.take().is_empty());
        q.push("b", 4, &raw(4, "/Users/4"));
        let again = q.take();
        assert_eq!((again[0].tenant_id.as_str(), again[0].first_id), ("b", 0));
        assert_eq!(q.dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_busy_tenant_fills_several_groups_in_id_order() {
        let q = Shared::new(10_000, 1 << 30);
        let n = GROUP_ENTRIES as usize * 2 + 3;
        for i in 0..n {
            q.push("a", i as i64, &raw(i as i64, "/Users/x"));
            if i == 5 {
                q.push("b", 0, &raw(0, "/Users/y"));
            }
        }
        let groups = q.take();
        let a: Vec<_> = groups.iter().filter(|g| g.tenant_id == "a").collect();
        assert_eq!(a.len(), 3);
        assert_eq!(
            a.iter().map(|g| g.count).collect::<Vec<_>>(),
            [GROUP_ENTRIES, GROUP_ENTRIES, 3]
        );
        // Newer entries of a tenant have larger ids, across its groups too.
        assert!(a.windows(2).all(|w| w[0].last_id < w[1].first_id));
        assert_eq!(groups.iter().map(|g| g.count).sum::<i64>(), n as i64 + 1);
        // Big entries close a group by size before it is full by number.
        let q = Shared::new(10_000, 1 << 30);
        let big = "x".repeat(GROUP_BYTES / 3);
        for _ in 0..4 {
            q.push("a", 0, &raw(0, &big));
        }
        let groups = q.take();
        assert_eq!(groups.iter().map(|g| g.count).collect::<Vec<_>>(), [2, 2]);
        assert!(groups.iter().all(|g| g.blob.len() <= GROUP_BYTES + 1));
    }

    #[test]
    fn pending_entries_are_bounded_in_number_and_bytes() {
        let one = raw(0, "/Users/x").len();
        // By number: the third entry is dropped and counted.
        let q = Shared::new(2, 1 << 20);
        for t in ["a", "b", "c"] {
            q.push(t, 0, &raw(0, "/Users/x"));
        }
        assert_eq!(q.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(q.take().iter().map(|g| g.count).sum::<i64>(), 2);
        // By bytes: room for two entries of this size, whatever the number allows.
        let q = Shared::new(1000, 2 * one + one / 2);
        for _ in 0..5 {
            q.push("a", 0, &raw(0, "/Users/x"));
        }
        assert_eq!(q.dropped.load(Ordering::Relaxed), 3);
        let groups = q.take();
        assert_eq!(groups[0].count, 2);
        assert!(groups[0].blob.len() <= 2 * one + 1);
        // Once taken, there is room again; once closed, never.
        q.push("a", 0, &raw(0, "/Users/x"));
        q.close();
        q.push("a", 0, &raw(0, "/Users/x"));
        assert_eq!(q.dropped.load(Ordering::Relaxed), 4);
        assert_eq!(q.take()[0].count, 1);
    }

    #[test]
    fn the_token_slot_is_only_open_around_a_recorded_poll() {
        // Outside a recorded request nothing is kept.
        authenticated("outside");
        let mut token = None;
        with_token_slot(&mut token, || authenticated("t1"));
        assert_eq!(token.as_deref(), Some("t1"));
        authenticated("after");
        let mut other = None;
        with_token_slot(&mut other, || ());
        assert_eq!(other, None);
        // A panic inside still closes the slot.
        let mut p = None;
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            with_token_slot(&mut p, || panic!("handler panicked"))
        }));
        authenticated("leak");
        let mut later = None;
        with_token_slot(&mut later, || ());
        assert_eq!(later, None);
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
            (Some("User"), Some("abc"))
        );
        assert_eq!(resource_of("/Users/.search", 200, &resp), (None, None));
        assert_eq!(resource_of("/Schemas/x", 200, &resp), (None, None));
    }
}
