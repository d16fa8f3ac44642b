//! Command-line interface. Scripts rely on these exact forms and on the JSON they print.

use anyhow::{bail, Context, Result};
use cairn_core::audit::{AuditQuery, RequestMeta};
use cairn_core::auth::OperatorCtx;
use cairn_core::clock::SystemClock;
use cairn_core::ids::{QuotaGb, TenantId};
use cairn_core::service::{Authority, Services};
use cairn_core::store::{Role, SettingsChange, Store};
use cairn_store::{PostgresStore, SqliteStore};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `println!` for command output. A closed standard output (`cairn audit --json | head`)
/// becomes an error ("writing to standard output: Broken pipe") and a non-zero exit
/// instead of a panic.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).context("writing to standard output")?
    }};
}

/// Prints a JSON document (pretty) as command output.
macro_rules! print_json {
    ($v:expr $(,)?) => {
        outln!("{}", serde_json::to_string_pretty($v).unwrap_or_default())
    };
}

#[derive(Parser, Debug)]
#[command(
    name = "cairn",
    version,
    about = "Cairn: backup accounts provisioned over SCIM 2.0"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Where Cairn keeps its data (the SQLite database, later backup repositories).
    #[arg(
        long,
        global = true,
        env = "CAIRN_DATA_DIR",
        default_value = "./cairn-data"
    )]
    pub data_dir: PathBuf,
    /// Database to use instead of `<data-dir>/cairn.db`: `sqlite:PATH`, or
    /// `postgres://USER@HOST:PORT/DB` for several instances sharing one database.
    #[arg(long, global = true, env = "CAIRN_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The URL under which clients reach this deployment (used for Tenant URLs and
    /// `Location` headers). Default: `http://<listen address>`.
    #[arg(long, global = true, env = "CAIRN_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Days a soft-deleted account's data is kept before it is purged.
    #[arg(long, global = true, env = "CAIRN_RETENTION_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=3650), allow_negative_numbers = true)]
    pub retention_days: u32,
    /// Log format: `text` or `json`.
    #[arg(long, global = true, env = "CAIRN_LOG_FORMAT", default_value = "text",
          value_parser = ["text", "json"])]
    pub log_format: String,
    /// How long token and settings lookups are cached, in milliseconds.
    #[arg(
        long,
        global = true,
        env = "CAIRN_AUTH_CACHE_MS",
        default_value_t = 2000,
        hide = true
    )]
    pub auth_cache_ms: u64,
    /// Shifts this process's clock (testing retention without waiting).
    #[arg(
        long,
        global = true,
        env = "CAIRN_CLOCK_OFFSET_SECS",
        default_value_t = 0,
        hide = true,
        allow_negative_numbers = true
    )]
    pub clock_offset_secs: i64,
    /// Bytes per GB of Account Size in the backup vault's quota (tests fill accounts with
    /// a few megabytes).
    #[arg(
        long,
        global = true,
        env = "CAIRN_VAULT_QUOTA_UNIT_BYTES",
        default_value_t = 1_000_000_000,
        value_parser = clap::value_parser!(u64).range(1..=cairn_core::vault::QuotaUnit::MAX),
        hide = true
    )]
    pub vault_quota_unit_bytes: u64,
    /// Where backup repositories are stored: `s3://BUCKET[/PREFIX]` for an S3-compatible
    /// object store (credentials, region and endpoint from the `AWS_*` variables:
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`,
    /// `AWS_ALLOW_HTTP`). Default: the directory `<data-dir>/vault`.
    #[arg(long, global = true, env = "CAIRN_VAULT_URL", value_name = "URL")]
    pub vault_url: Option<String>,
}

impl Global {
    /// The backup vault: `--vault-url`, or the directory `<data-dir>/vault`.
    pub fn vault(&self) -> Result<cairn_web::vault::VaultConfig> {
        let vault = match self.vault_url.as_deref() {
            None | Some("") => cairn_vault::Vault::new(self.data_dir.join("vault")),
            Some(url) if url.starts_with("s3://") => {
                cairn_vault::Vault::s3(url).map_err(anyhow::Error::msg)?
            }
            Some(url) => {
                bail!("--vault-url: expected s3://BUCKET[/PREFIX], got {url:?}")
            }
        };
        Ok(cairn_web::vault::VaultConfig {
            vault,
            quota_unit: cairn_core::vault::QuotaUnit(self.vault_quota_unit_bytes),
        })
    }
}

/// The retention purge (see `Services::purge_expired`): repositories are removed before
/// their accounts' rows, so a failed removal is retried by the next run.
pub async fn purge_expired(
    svc: &Services,
    vault: &cairn_vault::Vault,
) -> Result<cairn_core::service::PurgeReport> {
    let report = svc
        .purge_expired(|u| {
            let (vault, tenant, id) = (vault.clone(), u.tenant_id.clone(), u.id.clone());
            Box::pin(async move {
                vault
                    .remove_repo(tenant.as_str(), id.as_str())
                    .await
                    .map_err(|e| format!("removing the backup repository: {e}"))
            })
        })
        .await?;
    Ok(report)
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP service (SCIM, health, metrics).
    Serve(ServeArgs),
    /// Manage tenants (organisations).
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Manage a tenant's SCIM settings and API token.
    #[command(subcommand)]
    Scim(ScimCmd),
    /// Manage dashboard users.
    #[command(subcommand)]
    User(UserCmd),
    /// Print a tenant's audit log, newest first.
    Audit(AuditArgs),
    /// Manage backup accounts.
    #[command(subcommand)]
    Account(AccountCmd),
    /// Manage groups (pushed by identity providers): list them, set their Account Size.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Move a deployment between databases.
    #[command(subcommand)]
    Db(DbCmd),
}

#[derive(Subcommand, Debug)]
pub enum DbCmd {
    /// Copy every tenant, account, token hash, dashboard user, session and audit event
    /// from one database into a new, empty one (SQLite ⇄ PostgreSQL), then verify the
    /// row counts. Stop the instances writing to the source first.
    Copy {
        /// Source: sqlite:PATH or postgres://USER@HOST:PORT/DB.
        #[arg(long)]
        from: String,
        /// Target (must be empty): sqlite:PATH or postgres://USER@HOST:PORT/DB.
        #[arg(long)]
        to: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CAIRN_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Seconds between retention purges.
    #[arg(
        long,
        env = "CAIRN_PURGE_INTERVAL_SECS",
        default_value_t = 3600,
        hide = true
    )]
    pub purge_interval_secs: u64,
    /// After SIGTERM, the longest wait for in-flight requests before exiting anyway.
    #[arg(
        long,
        env = "CAIRN_DRAIN_TIMEOUT_SECS",
        default_value_t = 30,
        hide = true
    )]
    pub drain_timeout_secs: u64,
    /// SCIM requests per second allowed to each tenant, with bursts of twice that; beyond
    /// it requests get 429 with Retry-After. 0 turns the limit off.
    #[arg(long, env = "CAIRN_SCIM_RATE_LIMIT", default_value_t = 100)]
    pub scim_rate_limit: u32,
    /// Group writes (POST/PUT/PATCH/DELETE of /Groups) of one tenant in flight at once;
    /// beyond it a write waits up to 2 s, then gets 429 with Retry-After. 0 turns the
    /// bound off.
    #[arg(long, env = "CAIRN_SCIM_GROUP_WRITES_PER_TENANT", default_value_t = 4)]
    pub scim_group_writes_per_tenant: u32,
    /// The most members a group carries in a list or search response; a larger group is
    /// listed without `members` (GET /Groups/{id} returns them all).
    #[arg(long, env = "CAIRN_SCIM_LIST_MEMBERS_MAX", default_value_t = cairn_core::service::LIST_MEMBERS_MAX)]
    pub scim_list_members_max: u32,
    /// The most members one group POST, PUT or PATCH may name; more gets 413.
    #[arg(long, env = "CAIRN_SCIM_MEMBERS_PER_WRITE_MAX", default_value_t = cairn_core::service::MEMBERS_PER_WRITE_MAX)]
    pub scim_members_per_write_max: u32,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key. TLS 1.2
    /// and 1.3 only.
    #[arg(
        long,
        env = "CAIRN_TLS_CERT",
        requires = "tls_key",
        value_name = "FILE"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(
        long,
        env = "CAIRN_TLS_KEY",
        requires = "tls_cert",
        value_name = "FILE"
    )]
    pub tls_key: Option<PathBuf>,
    /// Reverse proxies (comma-separated addresses or CIDR blocks) whose X-Forwarded-For
    /// names the client for sign-in throttling: the rightmost entry not in this list.
    /// Empty (the default): the TCP peer is the client and X-Forwarded-For is ignored.
    #[arg(
        long,
        env = "CAIRN_TRUSTED_PROXIES",
        value_name = "CIDR,...",
        default_value = ""
    )]
    pub trusted_proxies: cairn_web::client_addr::TrustedProxies,
    /// Dashboard password checks (Argon2id, 19 MiB each) run at once. 0: one per core.
    #[arg(long, env = "CAIRN_SIGN_IN_CONCURRENCY", default_value_t = 0)]
    pub sign_in_concurrency: usize,
    /// Sign-ins that may wait for a password check; beyond them (and the checks
    /// running) a sign-in gets 503 with Retry-After.
    #[arg(long, env = "CAIRN_SIGN_IN_QUEUE", default_value_t = 8)]
    pub sign_in_queue: usize,
    /// Seconds a client may take to send a request's headers, counted from when the
    /// server starts waiting for the request (so it also closes idle keep-alive
    /// connections).
    #[arg(long, env = "CAIRN_HEADER_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: u64,
    /// Seconds a request body may deliver nothing, or a response wait for the client to
    /// read more, before the connection is closed (an upload's quota charge is given back).
    #[arg(long, env = "CAIRN_BODY_IDLE_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_idle_timeout_secs: u64,
    /// With TLS: seconds a new connection may take to send its first handshake bytes.
    #[arg(long, env = "CAIRN_TLS_HELLO_TIMEOUT_SECS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub tls_hello_timeout_secs: u64,
    /// With TLS: seconds a client may take for its whole handshake.
    #[arg(long, env = "CAIRN_TLS_HANDSHAKE_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub tls_handshake_timeout_secs: u64,
    /// With TLS: handshakes in progress at once; a new connection beyond it closes the
    /// oldest pending handshake.
    #[arg(long, env = "CAIRN_TLS_MAX_PENDING", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    pub tls_max_pending: u64,
    /// With TLS: handshakes in progress at once from one client address (IPv6: one /64);
    /// beyond it the client's oldest pending handshake is closed.
    #[arg(long, env = "CAIRN_TLS_MAX_PENDING_PER_CLIENT", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    pub tls_max_pending_per_client: u64,
    /// Backup vault requests in flight at once, for all accounts; beyond it requests get
    /// 503 with Retry-After.
    #[arg(long, env = "CAIRN_VAULT_MAX_REQUESTS", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub vault_max_requests: u64,
    /// Backup vault requests in flight at once for one backup account; beyond it requests
    /// get 429 with Retry-After.
    #[arg(long, env = "CAIRN_VAULT_MAX_REQUESTS_PER_ACCOUNT", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub vault_max_requests_per_account: u64,
    /// Mount `GET /_bench/floor`, the trivial handler `cairn-bench` measures as its floor.
    #[arg(long, env = "CAIRN_BENCH_FLOOR", hide = true)]
    pub bench_floor: bool,
}

#[derive(Subcommand, Debug)]
pub enum TenantCmd {
    /// Create a tenant.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List tenants.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Cap the tenant's Account Size and group sizes (tenant administrators cannot set
    /// more; larger quotas set before count as the cap).
    Limit {
        #[arg(long)]
        tenant: String,
        /// The largest Account Size or group size, in GB.
        #[arg(
            long,
            allow_negative_numbers = true,
            conflicts_with = "clear",
            required_unless_present = "clear"
        )]
        max_account_size_gb: Option<i64>,
        /// Remove the cap.
        #[arg(long)]
        clear: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ScimCmd {
    /// Turn SCIM user management on and set the Account Size.
    Enable {
        #[arg(long)]
        tenant: String,
        /// Quota in GB for each backup account that provisioning creates.
        // Negative numbers are parsed as values so that `-1` gets the range message
        // ("at least 1 GB") instead of clap's "unexpected argument '-1'".
        #[arg(long, allow_negative_numbers = true)]
        account_size_gb: i64,
    },
    /// Turn SCIM user management off: every SCIM call gets 401.
    Disable {
        #[arg(long)]
        tenant: String,
    },
    /// Generate a new API token (shown once); earlier tokens stop working.
    Token {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create a dashboard user; the password is read from standard input.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["administrator", "viewer"])]
        role: String,
        /// Read the password from standard input (required).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[arg(long)]
    pub tenant: String,
    #[arg(long)]
    pub json: bool,
    /// Most events printed.
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
}

#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    /// Give a group its own Account Size (`--gb N`) or take it away (`--clear`). Each
    /// member's quota becomes the largest of the tenant's Account Size at its creation
    /// and the sizes of its groups.
    Size {
        #[arg(long)]
        tenant: String,
        /// The group's displayName (letter case does not matter).
        #[arg(long)]
        group: String,
        #[arg(long, conflicts_with = "clear", required_unless_present = "clear")]
        gb: Option<i64>,
        #[arg(long)]
        clear: bool,
        #[arg(long)]
        json: bool,
    },
    /// List a tenant's groups with their member counts and sizes.
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AccountCmd {
    /// Restore a soft-deleted backup account (same id, same data).
    Restore {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user_name: String,
        #[arg(long)]
        json: bool,
    },
    /// Generate a backup key for an account's restic repository (shown once); the
    /// account's earlier key stops working.
    Key {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user_name: String,
        #[arg(long)]
        json: bool,
    },
    /// Set an account's used space to what its backup repository holds (after a crash
    /// cut uploads short); run it while the account is idle.
    Recount {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user_name: String,
        #[arg(long)]
        json: bool,
    },
    /// Purge accounts whose retention window has ended, now.
    PurgeExpired {
        #[arg(long)]
        json: bool,
    },
}

/// The database selected by the global options.
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

pub fn database(g: &Global) -> Result<Database> {
    match &g.database_url {
        None => Ok(Database::Sqlite(g.data_dir.join("cairn.db"))),
        Some(url) => parse_database_url("--database-url", url),
    }
}

fn parse_database_url(flag: &str, url: &str) -> Result<Database> {
    if let Some(p) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if p.is_empty() {
            bail!("{flag} {url}: no file path after sqlite:");
        }
        Ok(Database::Sqlite(PathBuf::from(p)))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Database::Postgres(url.to_owned()))
    } else {
        bail!("{flag}: expected sqlite:PATH or postgres://USER@HOST:PORT/DB")
    }
}

fn copy_endpoint(flag: &str, url: &str) -> Result<cairn_store::copy::Endpoint> {
    Ok(match parse_database_url(flag, url)? {
        Database::Sqlite(p) => cairn_store::copy::Endpoint::Sqlite(p),
        Database::Postgres(u) => cairn_store::copy::Endpoint::Postgres(u),
    })
}

async fn db_copy(from: &str, to: &str, json: bool) -> Result<()> {
    let (src, dst) = (copy_endpoint("--from", from)?, copy_endpoint("--to", to)?);
    let report = cairn_store::copy::copy(&src, &dst)
        .await
        .with_context(|| format!("copying {src} to {dst}"))?;
    if json {
        let tables: serde_json::Map<String, serde_json::Value> = report
            .tables
            .iter()
            .map(|(t, n)| (t.clone(), json!(n)))
            .collect();
        print_json!(
            &json!({"from": src.to_string(), "to": dst.to_string(), "tables": tables, "verified": true}),
        );
    } else {
        for (t, n) in &report.tables {
            outln!("{t:<20} {n:>10} rows");
        }
        outln!("Copied {src} to {dst}; row counts verified.");
    }
    Ok(())
}

/// Why a SQLite database cannot be written, when that is why it cannot be opened: Cairn
/// needs to write the file and, for its WAL and lock files, the directory beside it.
pub fn read_only_reason(path: &std::path::Path) -> Option<String> {
    use std::io::ErrorKind;
    let refused = |e: &std::io::Error| {
        matches!(
            e.kind(),
            ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied
        )
    };
    if let Err(e) = std::fs::OpenOptions::new().append(true).open(path) {
        if refused(&e) {
            return Some(format!("the file is read-only ({e})"));
        }
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
    let probe = dir.join(format!(".cairn-write-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(e) if refused(&e) => Some(format!(
            "its directory {} is read-only ({e}); SQLite writes its WAL and lock files there",
            dir.display()
        )),
        Err(_) => None,
    }
}

pub async fn open_store(g: &Global) -> Result<Arc<dyn Store>> {
    Ok(match database(g)? {
        Database::Sqlite(path) => {
            Arc::new(
                SqliteStore::open(&path).with_context(|| match read_only_reason(&path) {
                    Some(why) => format!("opening database {}: {why}", path.display()),
                    None => format!("opening database {}", path.display()),
                })?,
            )
        }
        Database::Postgres(url) => Arc::new(
            PostgresStore::connect(&url)
                .await
                .context("connecting to PostgreSQL (--database-url)")?,
        ),
    })
}

pub async fn services(g: &Global, public_url: String) -> Result<Arc<Services>> {
    let store = open_store(g).await?;
    Ok(Arc::new(Services::new(
        store,
        Arc::new(SystemClock::with_offset_secs(g.clock_offset_secs)),
        time::Duration::days(i64::from(g.retention_days)),
        public_url,
        Duration::from_millis(g.auth_cache_ms),
    )))
}

fn public_url_for_cli(g: &Global) -> String {
    g.public_url
        .clone()
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned())
}

fn tenant_id(s: &str) -> Result<TenantId> {
    TenantId::parse(s).with_context(|| {
        format!("--tenant {s:?} is not a tenant id (a UUID as printed by `cairn tenant create`)")
    })
}

pub async fn run(cli: Cli) -> Result<()> {
    let g = cli.global;
    if let Command::Serve(args) = cli.command {
        return crate::serve::serve(&g, args).await;
    }
    if let Command::Db(DbCmd::Copy { from, to, json }) = &cli.command {
        return db_copy(from, to, *json).await;
    }
    let op = OperatorCtx::local_operator();
    let svc = services(&g, public_url_for_cli(&g)).await?;
    let meta = RequestMeta {
        user_agent: Some(format!("cairn-cli/{}", env!("CARGO_PKG_VERSION"))),
        request_id: None,
    };
    match cli.command {
        Command::Serve(_) | Command::Db(_) => unreachable!("handled above"),
        Command::Tenant(TenantCmd::Create { name, json }) => {
            let t = svc.create_tenant(&op, &name).await?;
            let url = svc.tenant_url(&t.id);
            if json {
                print_json!(&json!({"id": t.id, "name": t.name, "tenant_url": url}));
            } else {
                outln!("Created tenant {} ({})\nTenant URL: {url}", t.name, t.id);
            }
        }
        Command::Tenant(TenantCmd::List { json }) => {
            let ts = svc.list_tenants(&op).await?;
            if json {
                let v: Vec<_> = ts
                    .iter()
                    .map(|t| {
                        json!({"id": t.id, "name": t.name, "tenant_url": svc.tenant_url(&t.id),
                        "scim_enabled": t.scim_enabled, "account_size_gb": t.account_size_gb.get()})
                    })
                    .collect();
                print_json!(&json!(v));
            } else {
                for t in ts {
                    outln!(
                        "{}\t{}\tscim={}\t{}",
                        t.id,
                        t.name,
                        if t.scim_enabled { "on" } else { "off" },
                        t.account_size_gb
                    );
                }
            }
        }
        Command::Tenant(TenantCmd::Limit {
            tenant,
            max_account_size_gb,
            clear,
            json,
        }) => {
            let id = tenant_id(&tenant)?;
            let cap = match (max_account_size_gb, clear) {
                (Some(gb), false) => Some(QuotaGb::new(gb).map_err(anyhow::Error::msg)?),
                _ => None,
            };
            let t = svc.set_tenant_limit(&op, &id, cap).await?;
            let cap = t.max_account_size_gb.map(QuotaGb::get);
            if json {
                print_json!(&json!({"id": t.id, "name": t.name, "max_account_size_gb": cap}));
            } else {
                match cap {
                    Some(gb) => outln!("{}: Account Size and group sizes at most {gb} GB", t.name),
                    None => outln!("{}: no Account Size limit", t.name),
                }
            }
        }
        Command::Scim(ScimCmd::Enable {
            tenant,
            account_size_gb,
        }) => {
            let id = tenant_id(&tenant)?;
            let size = QuotaGb::new(account_size_gb).map_err(anyhow::Error::msg)?;
            let t = svc
                .update_settings(
                    Authority::Operator(&op),
                    &id,
                    SettingsChange {
                        scim_enabled: Some(true),
                        account_size_gb: Some(size),
                        max_account_size_gb: None,
                    },
                    &meta,
                )
                .await?;
            outln!(
                "SCIM user management enabled for {} with Account Size {}",
                t.name,
                t.account_size_gb
            );
        }
        Command::Scim(ScimCmd::Disable { tenant }) => {
            let id = tenant_id(&tenant)?;
            let t = svc
                .update_settings(
                    Authority::Operator(&op),
                    &id,
                    SettingsChange {
                        scim_enabled: Some(false),
                        account_size_gb: None,
                        max_account_size_gb: None,
                    },
                    &meta,
                )
                .await?;
            outln!("SCIM user management disabled for {}", t.name);
        }
        Command::Scim(ScimCmd::Token { tenant, json }) => {
            let id = tenant_id(&tenant)?;
            let (token, _) = svc
                .generate_token(Authority::Operator(&op), &id, &meta)
                .await?;
            let url = svc.tenant_url(&id);
            if json {
                print_json!(&json!({"token": token.expose(), "tenant_url": url}));
            } else {
                outln!(
                    "Tenant URL: {url}\nAPI token (shown once, store it now): {}",
                    token.expose()
                );
            }
        }
        Command::User(UserCmd::Create {
            tenant,
            email,
            role,
            password_stdin: _,
        }) => {
            let id = tenant_id(&tenant)?;
            let role = Role::parse(&role).context("--role must be administrator or viewer")?;
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\n', '\r']).to_owned();
            let u = svc
                .create_dashboard_user(&op, &id, &email, role, &password)
                .await?;
            outln!(
                "Created dashboard user {} ({}) in tenant {}",
                u.email,
                u.role.as_str(),
                id
            );
        }
        Command::Audit(a) => {
            let id = tenant_id(&a.tenant)?;
            svc.tenant(&id).await?;
            let events = svc
                .audit_log(
                    &id,
                    &AuditQuery {
                        limit: a.limit.max(1),
                        ..Default::default()
                    },
                )
                .await?;
            if a.json {
                print_json!(&serde_json::to_value(&events)?);
            } else {
                for e in events {
                    outln!(
                        "{}\t{}\t{}\t{}\t{}",
                        cairn_core::clock::format_ts(e.at),
                        e.action,
                        e.target_name.unwrap_or_default(),
                        e.actor_kind,
                        e.changes
                    );
                }
            }
        }
        Command::Account(AccountCmd::Restore {
            tenant,
            user_name,
            json,
        }) => {
            let id = tenant_id(&tenant)?;
            let u = svc
                .restore_user(Authority::Operator(&op), &id, &user_name, &meta)
                .await?;
            if json {
                print_json!(&json!({"id": u.id, "user_name": u.user_name, "status": u.status()}));
            } else {
                outln!("Restored {} ({})", u.user_name, u.id);
            }
        }
        Command::Group(GroupCmd::Size {
            tenant,
            group,
            gb,
            clear,
            json,
        }) => {
            let id = tenant_id(&tenant)?;
            let size = match (gb, clear) {
                (Some(gb), false) => Some(QuotaGb::new(gb).map_err(|e| anyhow::anyhow!(e))?),
                _ => None,
            };
            let g = svc.find_group(&id, &group).await?;
            let g = svc
                .set_group_size(Authority::Operator(&op), &id, &g.id, size, &meta)
                .await?;
            let size = g.size_gb.map(QuotaGb::get);
            if json {
                print_json!(&json!({"id": g.id, "display_name": g.display_name, "size_gb": size}));
            } else {
                match size {
                    Some(n) => {
                        outln!("Group {} now has an Account Size of {n} GB", g.display_name)
                    }
                    None => outln!("Group {} has no Account Size of its own", g.display_name),
                }
            }
        }
        Command::Group(GroupCmd::List { tenant, json }) => {
            let id = tenant_id(&tenant)?;
            let groups = svc.group_summaries(&id).await?;
            if json {
                let v: Vec<_> = groups
                    .iter()
                    .map(|s| {
                        json!({"id": s.group.id, "display_name": s.group.display_name,
                               "members": s.members, "size_gb": s.group.size_gb.map(QuotaGb::get)})
                    })
                    .collect();
                print_json!(&json!(v));
            } else {
                for s in &groups {
                    let size = s
                        .group
                        .size_gb
                        .map_or_else(|| "-".to_owned(), |g| format!("{} GB", g.get()));
                    outln!(
                        "{}  {}  members={}  size={size}",
                        s.group.id,
                        s.group.display_name,
                        s.members
                    );
                }
            }
        }
        Command::Account(AccountCmd::Key {
            tenant,
            user_name,
            json,
        }) => {
            let id = tenant_id(&tenant)?;
            let k = svc
                .generate_backup_key(Authority::Operator(&op), &id, &user_name, &meta)
                .await?;
            let url = svc.repository_url(&id, &k.account.id, Some((&k.key_user, &k.secret)));
            if json {
                print_json!(&json!({"repository": url, "user": k.key_user,
                    "secret": k.secret.expose(), "account_id": k.account.id}));
            } else {
                outln!(
                    "Repository (shown once, store it now): {url}\nUser: {}\nSecret: {}",
                    k.key_user,
                    k.secret.expose()
                );
            }
        }
        Command::Account(AccountCmd::Recount {
            tenant,
            user_name,
            json,
        }) => {
            let id = tenant_id(&tenant)?;
            let vault = g.vault()?.vault;
            let (u, delta) = svc
                .recount_vault(&op, &id, &user_name, async |u| {
                    vault
                        .repo_size(u.tenant_id.as_str(), u.id.as_str())
                        .await
                        .map_err(|e| cairn_core::Error::Internal(e.to_string()))
                })
                .await?;
            let used = u.used_bytes + delta;
            if json {
                print_json!(&json!({"id": u.id, "user_name": u.user_name,
                    "used_bytes": used, "corrected_by": delta}));
            } else {
                outln!("{}: used {used} bytes (corrected by {delta})", u.user_name);
            }
        }
        Command::Account(AccountCmd::PurgeExpired { json }) => {
            let report = purge_expired(&svc, &g.vault()?.vault).await?;
            let purged = &report.purged;
            if json {
                let v: Vec<_> = purged
                    .iter()
                    .map(
                        |u| json!({"tenant_id": u.tenant_id, "id": u.id, "user_name": u.user_name}),
                    )
                    .collect();
                print_json!(&json!(v));
            } else {
                outln!("Purged {} account(s)", purged.len());
            }
            if !report.failed.is_empty() {
                let lines: Vec<String> = report
                    .failed
                    .iter()
                    .map(|(u, reason)| format!("account {} ({}): {reason}", u.id, u.user_name))
                    .collect();
                bail!(
                    "{} account(s) could not be purged; they stay marked and the next run \
                     retries them:\n{}",
                    lines.len(),
                    lines.join("\n")
                );
            }
        }
    }
    Ok(())
}
