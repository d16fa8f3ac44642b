//! `cairn serve`: telemetry, the HTTP listener, graceful shutdown and the retention purge.

use crate::cli::{
    database, purge_expired, read_only_reason, services_with, Database, Global, ServeArgs,
};
use crate::listener::{HandshakeLimits, Timeouts};
use anyhow::{Context, Result};
use cairn_core::session::SignInGate;
use cairn_web::scim::group_writes::GroupLimits;
use cairn_web::scim::inspector::Recorder;
use cairn_web::scim::rate_limit::RateLimiter;
use cairn_web::vault::VaultLimits;
use cairn_web::{metrics::Metrics, AppState};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

fn init_tracing(format: &str) {
    let filter = EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // A log line that cannot be written (stderr redirected to a full disk) is dropped.
    // With internal-error logging on, tracing-subscriber reports it with `eprintln!`,
    // which panics when stderr fails too — in the SQLite writer thread that panic
    // stopped every later write, so the service never recovered from a full disk.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        // Colour codes only for a person at a terminal: under systemd or in a file they
        // are noise (journald stores them verbatim).
        use std::io::IsTerminal;
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
}

pub async fn serve(g: &Global, args: ServeArgs) -> Result<()> {
    init_tracing(&g.log_format);
    crate::cli::test_knobs::log_ignored();
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let monitoring = Monitoring::prepare(&args).await?;
    // Read before anything else starts, so a bad certificate or key stops `serve` at once.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public_url = g
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"));
    let vault = g.vault()?;
    cairn_web::dashboard::source::set_source_url(args.source_url.clone());
    // SQLite can open a read-only database (when its WAL files are there) and serve reads,
    // but every provisioning change would then fail: refuse to start instead of looking
    // healthy to a load balancer. (CLI reads such as `cairn audit` still work on it.)
    if let Database::Sqlite(path) = database(g)? {
        if let Some(why) = read_only_reason(&path) {
            anyhow::bail!(
                "cannot serve from database {}: {why}; Cairn needs to write it",
                path.display()
            );
        }
    }
    // Read before anything else starts, so a bad relay setting stops `serve` at once.
    let mailer = match &args.smtp_url {
        Some(url) => {
            let url = crate::mail::SmtpUrl::parse(url)?;
            let host = public_url
                .split_once("://")
                .map_or(public_url.as_str(), |(_, h)| h)
                .split(['/', ':'])
                .next()
                .unwrap_or("localhost")
                .to_owned();
            let from = args
                .smtp_from
                .clone()
                .unwrap_or_else(|| format!("Cairn <cairn@{host}>"));
            tracing::info!(relay = %url, %from, "mail relay set up");
            Some(crate::mail::Mailer::new(&url, &from)?)
        }
        None => None,
    };
    let open = cairn_store::sqlite::OpenOptions {
        backup_before_migrate: !args.no_backup_before_migrate,
    };
    let mut svc = services_with(g, public_url.clone(), open).await?;
    // Nothing holds the services yet, so the gate can be set in place; a silent fallback
    // to the default gate would ignore the operator's flags.
    let own =
        Arc::get_mut(&mut svc).context("the services are shared before the sign-in gate is set")?;
    own.sign_in_gate = match args.sign_in_concurrency {
        0 => SignInGate::default_with_queue(args.sign_in_queue),
        n => SignInGate::new(n, args.sign_in_queue),
    };
    own.mail_enabled = mailer.is_some();
    let mut metrics = Metrics::new();
    metrics.register_sign_in(svc.clone());
    metrics.register_store(svc.clone());
    metrics.access = monitoring.access();
    // The provisioning inspector: recording is on unless the operator keeps no entries.
    let request_log = (args.request_log_max_per_tenant > 0).then(|| {
        Recorder::start(
            svc.store.clone(),
            args.request_log_queue,
            Duration::from_millis(args.request_log_flush_ms),
            args.request_log_max_per_tenant,
        )
    });
    // Kept to store the queued entries at shutdown.
    let request_log_at_exit = request_log.clone();
    if let Some(rec) = &request_log {
        metrics.register_collector(rec.collector());
    }
    let state = AppState {
        services: svc.clone(),
        metrics: Arc::new(metrics),
        vault: Arc::new(vault.clone()),
        scim_rate_limit: RateLimiter::per_second(args.scim_rate_limit).map(Arc::new),
        trusted_proxies: Arc::new(args.trusted_proxies.clone()),
        vault_limits: VaultLimits::new(
            usize::try_from(args.vault_max_requests).unwrap_or(usize::MAX),
            usize::try_from(args.vault_max_requests_per_account).unwrap_or(usize::MAX),
        ),
        group_limits: GroupLimits::new(
            args.scim_list_members_max,
            args.scim_members_per_write_max,
            args.scim_group_writes_per_tenant,
        ),
        request_log,
        oidc: Arc::new(cairn_web::sso_oidc::Oidc::new(
            args.sso_allow_insecure_idp,
            Duration::from_secs(args.sso_jwks_refresh_secs),
        )),
    };

    // Issue 17: SAML identity providers set by metadata URL are fetched again on a
    // schedule, so their certificate rollovers reach Cairn; the first round is at start.
    let md_svc = svc.clone();
    let md_http = state.oidc.http().clone();
    let md_every = Duration::from_secs(args.sso_metadata_refresh_secs.max(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(md_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = cairn_web::sso::refresh_idp_metadata(&md_svc, &md_http).await {
                tracing::warn!(error = %e, "refreshing identity provider metadata failed");
            }
        }
    });

    // Issue 22: mail to backup accounts, sent from the outbox in the background.
    if let Some(mailer) = mailer {
        tokio::spawn(crate::mail::run(
            svc.clone(),
            mailer,
            Duration::from_millis(args.mail_poll_ms),
            Duration::from_secs(args.mail_scan_secs),
        ));
    }

    let purge_svc = svc.clone();
    let purge_vault = vault.vault.clone();
    let interval = Duration::from_secs(args.purge_interval_secs.max(1));
    let tmp_max_age = Duration::from_secs(args.vault_tmp_max_age_secs);
    let (log_days, log_max) = (args.request_log_days, args.request_log_max_per_tenant);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            match purge_expired(&purge_svc, &purge_vault).await {
                Ok(report) => {
                    if !report.purged.is_empty() {
                        tracing::info!(
                            count = report.purged.len(),
                            "purged accounts past retention"
                        )
                    }
                    for (u, reason) in &report.failed {
                        tracing::warn!(account = %u.id, tenant = %u.tenant_id, %reason,
                            "retention purge of an account failed; retried on the next run");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "retention purge failed"),
            }
            // Deletion protection: kept objects whose window has passed.
            match cairn_web::vault_trash::purge_trash(&purge_svc, &purge_vault).await {
                Ok(r) => {
                    if r.objects > 0 {
                        tracing::info!(
                            objects = r.objects,
                            bytes = r.bytes,
                            accounts = r.accounts,
                            "purged protected deletions past their window"
                        );
                    }
                    for reason in &r.failed {
                        tracing::warn!(%reason,
                            "purging protected deletions failed; retried on the next run");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "purging protected deletions failed"),
            }
            // A crash (or SIGKILL) in the middle of uploads leaves their temporary files,
            // invisible and not counted in any quota but on disk until removed here. The
            // first run is at start-up.
            match purge_vault.sweep_stale_uploads(tmp_max_age).await {
                Ok(swept) if swept.files > 0 => tracing::info!(
                    files = swept.files,
                    bytes = swept.bytes,
                    "removed temporary files of interrupted uploads"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sweeping temporary upload files failed"),
            }
            // Expired sessions and sign-in failures past the throttle window go even when
            // nobody signs in (sign-ins also clear them).
            if let Err(e) = purge_svc.expire_sign_in_state().await {
                tracing::warn!(error = %e, "expiring sessions and sign-in failures failed");
            }
            // The inspector's log: older than its age, or beyond its count per tenant.
            let before = purge_svc.clock.now() - time::Duration::days(i64::from(log_days));
            match purge_svc.store.prune_requests(before, log_max).await {
                Ok(n) if n > 0 => tracing::debug!(entries = n, "pruned the SCIM request log"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning the SCIM request log failed"),
            }
            // Backup freshness: hourly upload counts past the 24-hour window.
            let first = cairn_core::freshness::window_start_hour(purge_svc.clock.now());
            if let Err(e) = purge_svc.store.prune_upload_hours(first).await {
                tracing::warn!(error = %e, "pruning the hourly upload counts failed");
            }
        }
    });

    let timeouts = Timeouts {
        header_read: Duration::from_secs(args.header_timeout_secs),
        body_idle: Duration::from_secs(args.body_idle_timeout_secs),
    };
    // Before the main listener's line, which scripts and tests wait for.
    let metrics_stop = monitoring.serve(&state, timeouts);
    tracing::info!(%addr, %public_url, vault = %vault.vault.location(), "cairn listening");
    // Scripts and tests wait for this line.
    println!("listening on {scheme}://{addr}");
    let _ = std::io::stdout().flush();

    // Draining waits for in-flight requests, but not for ever: a client that stalls in
    // the middle of its body would otherwise keep the process alive after SIGTERM.
    let drain_limit = Duration::from_secs(args.drain_timeout_secs);
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let graceful = async move {
        shutdown_signal().await;
        let _ = stopping_tx.send(());
        let _ = metrics_stop.send(true);
    };
    let app = cairn_web::service_with(state, args.bench_floor);
    let tls = tls.map(|config| {
        let limits = HandshakeLimits {
            hello: Duration::from_secs(args.tls_hello_timeout_secs),
            handshake: Duration::from_secs(args.tls_handshake_timeout_secs),
            max_pending: usize::try_from(args.tls_max_pending).unwrap_or(usize::MAX),
            max_pending_per_client: usize::try_from(args.tls_max_pending_per_client)
                .unwrap_or(usize::MAX),
        };
        (config, limits)
    });
    let server = crate::listener::serve(listener, tls, app, timeouts, graceful);
    let drain_deadline = async move {
        match stopping_rx.await {
            Ok(()) => tokio::time::sleep(drain_limit).await,
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let drained = tokio::select! {
        () = server => true,
        () = drain_deadline => {
            tracing::warn!(
                secs = drain_limit.as_secs(),
                "requests still in flight after the drain limit; exiting"
            );
            false
        }
    };
    // What the inspector has queued is stored before the process exits (bounded like the
    // drain: a store that hangs must not keep the process alive).
    if let Some(rec) = request_log_at_exit {
        rec.shut_down(drain_limit.max(Duration::from_secs(1))).await;
    }
    if !drained {
        return Ok(());
    }
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Issue 18, monitoring: `/metrics` on a listener of its own (`--metrics-listen`) and
/// its bearer token (`--metrics-token-file`), both read before anything starts.
struct Monitoring {
    listener: Option<TcpListener>,
    token: Option<String>,
}

impl Monitoring {
    async fn prepare(args: &ServeArgs) -> Result<Monitoring> {
        let token = match &args.metrics_token_file {
            None => None,
            Some(path) => {
                let t = std::fs::read_to_string(path).with_context(|| {
                    format!("--metrics-token-file: cannot read {}", path.display())
                })?;
                let t = t.trim().to_owned();
                if t.is_empty() {
                    anyhow::bail!("--metrics-token-file: {} is empty", path.display());
                }
                Some(t)
            }
        };
        let listener = match &args.metrics_listen {
            None => None,
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .with_context(|| format!("--metrics-listen: cannot listen on {a}"))?,
            ),
        };
        Ok(Monitoring { listener, token })
    }

    fn access(&self) -> cairn_web::metrics::MetricsAccess {
        cairn_web::metrics::MetricsAccess::new(self.token.as_deref(), self.listener.is_some())
    }

    /// Starts the metrics listener, if any; it stops accepting when the returned sender
    /// says `true` (at shutdown, with the main listener).
    fn serve(self, state: &AppState, timeouts: Timeouts) -> tokio::sync::watch::Sender<bool> {
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        if let Some(listener) = self.listener {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "metrics listening");
            }
            let app = cairn_web::metrics_service(state.clone());
            let stop = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            };
            tokio::spawn(crate::listener::serve(listener, None, app, timeouts, stop));
        }
        stop_tx
    }
}

/// Resolves on SIGTERM or Ctrl-C; in-flight requests then drain before `serve` returns.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining in-flight requests");
}
