//! Prometheus metrics: request counts and latencies by route and status.

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

/// Stale backup accounts per tenant (`cairn_stale_backup_accounts{tenant}`), as last
/// counted by [`Metrics::refresh_stale`]. Labelled by tenant id only: one series per
/// tenant, never per account.
#[derive(Debug, Default)]
struct StaleCollector {
    counts: std::sync::Mutex<Vec<(String, u64)>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

impl Collector for StaleCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut family = encoder.encode_descriptor(
            "stale_backup_accounts",
            "Active backup accounts with no snapshot for more than the tenant's stale days",
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
struct SharedStale(Arc<StaleCollector>);

impl Collector for SharedStale {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
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

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    provisioning: Family<ActionLabels, Counter>,
    stale: Arc<StaleCollector>,
    /// When the stale counts were last taken; locked by the scrape recounting them.
    stale_at: tokio::sync::Mutex<Option<Instant>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cairn");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ])
        });
        let provisioning = Family::<ActionLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "provisioning_changes",
            "Backup account changes made over SCIM, by action",
            provisioning.clone(),
        );
        let stale = Arc::new(StaleCollector::default());
        registry.register_collector(Box::new(SharedStale(stale.clone())));
        Metrics {
            registry,
            requests,
            latency,
            provisioning,
            stale,
            stale_at: tokio::sync::Mutex::new(None),
        }
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
        self.registry
            .register_collector(Box::new(SignInCollector(services)));
    }

    /// Adds a collector read at each scrape (the request log's counters).
    pub fn register_collector(&mut self, c: Box<dyn Collector>) {
        self.registry.register_collector(c);
    }

    /// Recounts the stale backup accounts of every tenant, unless they were counted
    /// less than [`STALE_REFRESH`] ago or another scrape is counting them now.
    pub async fn refresh_stale(&self, services: &Services) {
        let Ok(mut at) = self.stale_at.try_lock() else {
            return;
        };
        if at.is_some_and(|t| t.elapsed() < STALE_REFRESH) {
            return;
        }
        match services.stale_account_counts().await {
            Ok(counts) => {
                let counts = counts
                    .into_iter()
                    .map(|(t, n)| (t.to_string(), n))
                    .collect();
                *self.stale.counts.lock().unwrap_or_else(|e| e.into_inner()) = counts;
                *at = Some(Instant::now());
            }
            Err(e) => tracing::warn!(error = %e, "counting stale backup accounts failed"),
        }
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
    let start = Instant::now();
    let resp = next.run(req).await;
    m.latency
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: resp.status().as_u16(),
        })
        .inc();
    resp
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
}
