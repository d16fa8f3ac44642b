//! Prometheus metrics: request counts and latencies by route and status, the vault's
//! traffic, refusals, the store's load, per-tenant gauges, build and process facts.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use cairn_core::service::Services;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Instant;

/// The sign-in gate's counters live in the core (where the passwords are checked); this
/// reads them at each scrape.
struct SignInCollector(Arc<Services>);

impl std::fmt::Debug for SignInCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignInCollector")
    }
}

impl Collector for SignInCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gate = &self.0.sign_in_gate;
        for (name, help, value) in [
            (
                "password_verifications",
                "Dashboard password verifications (Argon2id) started",
                gate.verifications(),
            ),
            (
                "sign_ins_shed",
                "Dashboard sign-ins refused with 503 because every password check was busy",
                gate.shed(),
            ),
        ] {
            let counter = ConstCounter::new(value);
            let m = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(m)?;
        }
        Ok(())
    }
}

/// One gauge per tenant, as last counted by [`Metrics::refresh_stale`]: the stale backup
/// accounts (`cairn_stale_backup_accounts{tenant}`) and the used bytes
/// (`cairn_vault_used_bytes{tenant}`). Labelled by tenant id only: one series per
/// tenant, never per account.
#[derive(Debug)]
struct TenantGauge {
    name: &'static str,
    help: &'static str,
    counts: std::sync::Mutex<Vec<(String, u64)>>,
}

impl TenantGauge {
    fn new(name: &'static str, help: &'static str) -> Self {
        TenantGauge {
            name,
            help,
            counts: std::sync::Mutex::default(),
        }
    }

    fn set(&self, counts: Vec<(cairn_core::ids::TenantId, u64)>) {
        let counts = counts
            .into_iter()
            .map(|(t, n)| (t.to_string(), n))
            .collect();
        *self.counts.lock().unwrap_or_else(|e| e.into_inner()) = counts;
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

impl Collector for TenantGauge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut family = encoder.encode_descriptor(
            self.name,
            self.help,
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (tenant, n) in counts.iter() {
            let labels = TenantLabels {
                tenant: tenant.clone(),
            };
            let gauge = ConstGauge::new(i64::try_from(*n).unwrap_or(i64::MAX));
            gauge.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The stale counts are recounted at a scrape at most this often, and by one scrape at a
/// time (the others show the previous counts), so scraping cannot load the database.
pub const STALE_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// The registry owns its collectors; the metrics keep the counts' handle.
#[derive(Debug)]
struct Shared(Arc<TenantGauge>);

impl Collector for Shared {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
}

/// The store's load gauges (`HealthStore::load_gauges`), read at each scrape.
struct StoreCollector(Arc<Services>);

impl std::fmt::Debug for StoreCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreCollector")
    }
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for g in self.0.store.load_gauges() {
            let gauge = ConstGauge::new(g.value);
            let m = encoder.encode_descriptor(g.name, g.help, None, gauge.metric_type())?;
            gauge.encode(m)?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    commit: String,
}

/// `cairn_build_info{version,commit} 1`. The commit is whatever `CAIRN_GIT_COMMIT` held
/// when the binary was compiled (packaging sets it: `CAIRN_GIT_COMMIT=$(git rev-parse
/// HEAD) cargo build --release`), `unknown` otherwise; no build script needed.
#[derive(Debug)]
struct BuildInfo;

impl Collector for BuildInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let labels = BuildLabels {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            commit: option_env!("CAIRN_GIT_COMMIT")
                .filter(|c| !c.is_empty())
                .unwrap_or("unknown")
                .to_owned(),
        };
        let mut family = encoder.encode_descriptor(
            "build_info",
            "The running build: version and git commit (always 1)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
        Ok(())
    }
}

/// The process metrics every Prometheus client library exports under these names
/// (`process_resident_memory_bytes`, `process_cpu_seconds_total`, `process_open_fds`,
/// `process_max_fds`, `process_start_time_seconds`), read from `/proc/self` at each
/// scrape (Linux; elsewhere none are shown).
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = process::read() else {
            return Ok(());
        };
        if let Some(cpu) = p.cpu_seconds {
            let c = ConstCounter::new(cpu);
            let m = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                c.metric_type(),
            )?;
            c.encode(m)?;
        }
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                p.resident_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                p.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                p.max_fds,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                p.start_time_seconds,
            ),
        ] {
            if let Some(v) = value {
                let g = ConstGauge::new(v);
                let m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
                g.encode(m)?;
            }
        }
        Ok(())
    }
}

/// Reading `/proc/self` (proc(5)).
pub mod process {
    /// What one read found; `None` where a file was missing or unreadable.
    #[derive(Debug, Default, PartialEq)]
    pub struct Process {
        pub cpu_seconds: Option<f64>,
        pub resident_bytes: Option<f64>,
        pub open_fds: Option<f64>,
        pub max_fds: Option<f64>,
        pub start_time_seconds: Option<f64>,
    }

    /// Clock ticks per second of the times in `/proc/self/stat` (`USER_HZ`): 100 on
    /// every Linux architecture user space sees; the Prometheus Go client's procfs
    /// library assumes the same (`userHZ = 100`, github.com/prometheus/procfs, proc_stat.go).
    const USER_HZ: f64 = 100.0;

    pub fn read() -> Option<Process> {
        if !cfg!(target_os = "linux") {
            return None;
        }
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let (cpu, start_ticks) = stat.as_deref().map(parse_stat).unwrap_or((None, None));
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s));
        Some(Process {
            cpu_seconds: cpu,
            resident_bytes: std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| resident_bytes(&s)),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as f64),
            max_fds: std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|s| max_fds(&s)),
            start_time_seconds: match (boot, start_ticks) {
                (Some(b), Some(t)) => Some(b + t / USER_HZ),
                _ => None,
            },
        })
    }

    /// CPU seconds (utime + stime) and the start time in ticks after boot, from
    /// `/proc/self/stat`. The command name (field 2) may hold spaces and parentheses,
    /// so the fields are counted after its last `)`.
    pub fn parse_stat(stat: &str) -> (Option<f64>, Option<f64>) {
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return (None, None);
        };
        // After the name: field 3 (state) is index 0, so field N is index N - 3.
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        let cpu = match (num(14), num(15)) {
            (Some(u), Some(s)) => Some((u + s) / USER_HZ),
            _ => None,
        };
        (cpu, num(22))
    }

    /// `VmRSS:  1234 kB` of `/proc/self/status`, in bytes.
    pub fn resident_bytes(status: &str) -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024.0)
    }

    /// The soft limit of `Max open files` in `/proc/self/limits`.
    pub fn max_fds(limits: &str) -> Option<f64> {
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line["Max open files".len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// `btime` of `/proc/stat`: the boot time in seconds since the epoch.
    pub fn boot_time(stat: &str) -> Option<f64> {
        stat.lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: String,
}

/// Which part of the service answered: `scim`, `vault`, `sso`, `dashboard`, `metrics`,
/// `other` (a fixed set, so a bounded number of series).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SurfaceLabels {
    pub surface: &'static str,
}

/// Marks a response as a refusal for load (counted in `cairn_rate_limited_total`) when
/// its status alone does not say so: a 503 for a full server, unlike one for a database
/// outage. Every 429 counts without it.
#[derive(Clone, Copy, Debug)]
pub struct Shed;

/// Who may read `/metrics` and where it is served.
#[derive(Debug, Default)]
pub struct MetricsAccess {
    /// SHA-256 of the bearer token a scrape must present (`--metrics-token-file`).
    token: Option<[u8; 32]>,
    /// Served on its own listener (`--metrics-listen`): the main one answers 404.
    pub own_listener: bool,
}

impl MetricsAccess {
    pub fn new(token: Option<&str>, own_listener: bool) -> Self {
        MetricsAccess {
            token: token.map(sha256),
            own_listener,
        }
    }

    pub fn needs_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `headers` carry the token (always, without one). The comparison is of
    /// SHA-256 digests in constant time, so neither the token's length nor a matching
    /// prefix shows in the timing.
    pub fn allows(&self, headers: &axum::http::HeaderMap) -> bool {
        use subtle::ConstantTimeEq;
        let Some(want) = &self.token else {
            return true;
        };
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        match presented {
            Some(t) => bool::from(sha256(t)[..].ct_eq(&want[..])),
            None => false,
        }
    }
}

fn sha256(s: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).into()
}

pub struct Metrics {
    /// The root registry (the standard `process_*` names); everything of Cairn's is
    /// under the `cairn` prefix ([`Metrics::cairn`]).
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    provisioning: Family<ActionLabels, Counter>,
    vault_received: Counter,
    vault_sent: Counter,
    vault_objects: Counter,
    vault_quota_refusals: Counter,
    rate_limited: Family<SurfaceLabels, Counter>,
    auth_failures: Family<SurfaceLabels, Counter>,
    stale: Arc<TenantGauge>,
    used: Arc<TenantGauge>,
    /// When the per-tenant gauges were last taken; locked by the scrape recounting them.
    stale_at: tokio::sync::Mutex<Option<Instant>>,
    /// Who may read `/metrics`, and on which listener.
    pub access: MetricsAccess,
    /// The last readiness check (`/readyz`): when it finished, database ok, vault ok.
    /// Locked while a check runs, so concurrent probes share one (`crate::ops`).
    pub(crate) readiness: tokio::sync::Mutex<Option<(Instant, bool, bool)>>,
}

/// Upper bounds of the request latency histogram, in seconds: from a cached SCIM read
/// (under a millisecond) to a 16 MiB vault upload over a slow link (restic's pack files
/// are up to 16 MiB by default; at 2 Mbit/s one takes about a minute).
pub const LATENCY_BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
    40.0, 60.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ProcessCollector));
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(LATENCY_BUCKETS)
        });
        let provisioning = Family::<ActionLabels, Counter>::default();
        let (vault_received, vault_sent) = (Counter::default(), Counter::default());
        let (vault_objects, vault_quota_refusals) = (Counter::default(), Counter::default());
        let rate_limited = Family::<SurfaceLabels, Counter>::default();
        let auth_failures = Family::<SurfaceLabels, Counter>::default();
        let stale = Arc::new(TenantGauge::new(
            "stale_backup_accounts",
            "Active backup accounts with no snapshot for more than the tenant's stale days",
        ));
        let used = Arc::new(TenantGauge::new(
            "vault_used_bytes",
            "Bytes the tenant's backup accounts use (the quota counters)",
        ));
        let cairn = registry.sub_registry_with_prefix("cairn");
        cairn.register_collector(Box::new(BuildInfo));
        cairn.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        cairn.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        cairn.register(
            "provisioning_changes",
            "Backup account changes made over SCIM, by action",
            provisioning.clone(),
        );
        cairn.register(
            "vault_received_bytes",
            "Bytes of objects stored in the backup vault (uploads answered 200)",
            vault_received.clone(),
        );
        cairn.register(
            "vault_sent_bytes",
            "Bytes of objects the backup vault answered reads with (as declared in Content-Length)",
            vault_sent.clone(),
        );
        cairn.register(
            "vault_objects_written",
            "Objects stored in the backup vault",
            vault_objects.clone(),
        );
        cairn.register(
            "vault_quota_refusals",
            "Uploads refused with 507 because the account's quota was full",
            vault_quota_refusals.clone(),
        );
        cairn.register(
            "rate_limited",
            "Requests refused for load (429, or 503 for a full server), by surface",
            rate_limited.clone(),
        );
        cairn.register(
            "auth_failures",
            "Requests answered 401 (no or wrong token, key, password or session), by surface",
            auth_failures.clone(),
        );
        cairn.register_collector(Box::new(Shared(stale.clone())));
        cairn.register_collector(Box::new(Shared(used.clone())));
        Metrics {
            registry,
            requests,
            latency,
            provisioning,
            vault_received,
            vault_sent,
            vault_objects,
            vault_quota_refusals,
            rate_limited,
            auth_failures,
            stale,
            used,
            stale_at: tokio::sync::Mutex::new(None),
            access: MetricsAccess::default(),
            readiness: tokio::sync::Mutex::new(None),
        }
    }

    /// The registry of Cairn's own metrics (names prefixed `cairn_`).
    fn cairn(&mut self) -> &mut Registry {
        self.registry.sub_registry_with_prefix("cairn")
    }

    /// Adds the store's load gauges (`cairn_sqlite_writer_queue`,
    /// `cairn_postgres_pool_*`), read from `services` at each scrape.
    pub fn register_store(&mut self, services: Arc<Services>) {
        self.cairn()
            .register_collector(Box::new(StoreCollector(services)));
    }

    pub fn provisioning_change(&self, action: &str) {
        self.provisioning
            .get_or_create(&ActionLabels {
                action: action.to_owned(),
            })
            .inc();
    }

    /// Adds the dashboard sign-in gate's counters (`cairn_password_verifications_total`,
    /// `cairn_sign_ins_shed_total`), read from `services` at each scrape.
    pub fn register_sign_in(&mut self, services: Arc<Services>) {
        self.cairn()
            .register_collector(Box::new(SignInCollector(services)));
    }

    /// Adds a collector read at each scrape (the request log's counters), under the
    /// `cairn_` prefix.
    pub fn register_collector(&mut self, c: Box<dyn Collector>) {
        self.cairn().register_collector(c);
    }

    /// Recounts the stale backup accounts and the used bytes of every tenant, unless
    /// they were counted less than [`STALE_REFRESH`] ago or another scrape is counting
    /// them now.
    pub async fn refresh_stale(&self, services: &Services) {
        let Ok(mut at) = self.stale_at.try_lock() else {
            return;
        };
        if at.is_some_and(|t| t.elapsed() < STALE_REFRESH) {
            return;
        }
        match services.stale_account_counts().await {
            Ok(counts) => self.stale.set(counts),
            Err(e) => tracing::warn!(error = %e, "counting stale backup accounts failed"),
        }
        match services.store.used_bytes_per_tenant().await {
            Ok(used) => self.used.set(used),
            Err(e) => tracing::warn!(error = %e, "summing the tenants' used bytes failed"),
        }
        *at = Some(Instant::now());
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding metrics into a String cannot fail");
        out
    }
}

/// Middleware recording every request. Routes are labelled by their pattern (never the
/// concrete path, which carries tenant and user ids).
pub async fn track(State(m): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(req.method()).to_owned();
    let declared = content_length(req.headers());
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    m.latency
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    let surface = SurfaceLabels {
        surface: surface(&route),
    };
    if status == 401 {
        m.auth_failures.get_or_create(&surface).inc();
    }
    if status == 429 || resp.extensions().get::<Shed>().is_some() {
        m.rate_limited.get_or_create(&surface).inc();
    }
    if surface.surface == "vault" && is_vault_object(&route) {
        match (method.as_str(), status) {
            // An upload answered 200 stored exactly its declared length.
            ("POST", 200) => {
                m.vault_objects.inc();
                m.vault_received.inc_by(declared.unwrap_or(0));
            }
            ("POST", 507) => {
                m.vault_quota_refusals.inc();
            }
            ("GET", 200 | 206) => {
                m.vault_sent
                    .inc_by(content_length(resp.headers()).unwrap_or(0));
            }
            _ => {}
        }
    }
    m.requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status,
        })
        .inc();
    resp
}

fn content_length(h: &axum::http::HeaderMap) -> Option<u64> {
    h.get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The `surface` label of a route pattern.
pub fn surface(route: &str) -> &'static str {
    if route.starts_with("/scim/") {
        "scim"
    } else if route.starts_with("/backup/") {
        "vault"
    } else if route.starts_with("/sso/") {
        "sso"
    } else if route == "/metrics" {
        "metrics"
    } else if matches!(
        route,
        "unmatched" | "/healthz" | "/livez" | "/readyz" | "/_bench/floor"
    ) {
        "other"
    } else {
        "dashboard"
    }
}

/// A vault route naming one object (the config or a kind's item), not a listing or the
/// repository itself.
fn is_vault_object(route: &str) -> bool {
    route.ends_with("/config") || route.ends_with("/{kind}/{name}")
}

/// The `method` label: the standard methods by name, anything else as `other`. Clients
/// choose the method freely (`FOO123 /healthz`), so using it verbatim would let anyone
/// create unbounded numbers of series.
pub fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(
            method_label(&Method::from_bytes(b"X12345").unwrap()),
            "other"
        );
        assert_eq!(method_label(&Method::TRACE), "other");
    }

    #[test]
    fn proc_files_are_parsed() {
        // proc(5): a command name with a space and a parenthesis; utime 250 and stime
        // 150 ticks (4 s), start 12345 ticks after boot.
        let stat = "4242 (cairn (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 150 0 0 20 0                     9 0 12345 1000000 500 18446744073709551615";
        let (cpu, start) = process::parse_stat(stat);
        assert_eq!(cpu, Some(4.0));
        assert_eq!(start, Some(12345.0));
        assert_eq!(process::parse_stat("garbage"), (None, None));
        assert_eq!(
            process::resident_bytes("Name:\tcairn\nVmRSS:\t    2048 kB\nThreads: 3\n"),
            Some(2048.0 * 1024.0)
        );
        assert_eq!(
            process::max_fds(
                "Limit                     Soft Limit           Hard Limit           Units\n\
                 Max open files            1024                 524288               files\n"
            ),
            Some(1024.0)
        );
        assert_eq!(
            process::boot_time("cpu  1 2 3\nbtime 1764979200\nprocesses 9\n"),
            Some(1_764_979_200.0)
        );
        // On this machine (Linux) every value is there.
        let p = process::read().expect("Linux");
        assert!(p.resident_bytes.is_some_and(|b| b > 0.0), "{p:?}");
        assert!(p.open_fds.is_some_and(|n| n >= 3.0), "{p:?}");
        assert!(
            p.cpu_seconds.is_some() && p.start_time_seconds.is_some(),
            "{p:?}"
        );
    }

    #[test]
    fn the_metrics_token_is_a_bearer_token() {
        use axum::http::{header, HeaderMap, HeaderValue};
        let a = MetricsAccess::new(Some("s3cret-scrape"), false);
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(v));
            h
        };
        assert!(a.allows(&with("Bearer s3cret-scrape")));
        assert!(a.allows(&with("bearer  s3cret-scrape ")));
        assert!(!a.allows(&with("Bearer s3cret-scrap")));
        assert!(!a.allows(&with("Basic s3cret-scrape")));
        assert!(!a.allows(&HeaderMap::new()));
        assert!(MetricsAccess::default().allows(&HeaderMap::new()));
    }

    #[test]
    fn surfaces_are_a_fixed_set() {
        assert_eq!(surface("/scim/v2/{tenant}/Users"), "scim");
        assert_eq!(surface("/backup/{tenant}/{account}/{kind}/{name}"), "vault");
        assert_eq!(surface("/login"), "dashboard");
        assert_eq!(surface("unmatched"), "other");
        assert!(is_vault_object("/backup/{tenant}/{account}/config"));
        assert!(!is_vault_object("/backup/{tenant}/{account}/{kind}"));
    }
}
