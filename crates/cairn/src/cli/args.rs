//! The clap definitions: global options, subcommands and their flags. `cairn --help`
//! is generated from these doc comments.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

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
    /// Where each setting came from (filled by `settings::parse_from`).
    #[arg(skip)]
    pub sources: super::settings::Sources,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// A TOML file of settings: the long options of `cairn --help` and `cairn serve
    /// --help` without their dashes (`database-url = "…"`). Flags and `CAIRN_*`
    /// variables override it. See README, "Configuration".
    #[arg(long, global = true, env = "CAIRN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
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
    /// Days a one-time sign-in link for a backup account stays valid (`cairn account
    /// sign-in-link`, the account page).
    #[arg(long, global = true, env = "CAIRN_SIGN_IN_LINK_DAYS", default_value_t = 7,
          value_parser = clap::value_parser!(u32).range(1..=90))]
    pub sign_in_link_days: u32,
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
    /// TESTS ONLY: shifts this process's clock (testing retention without waiting).
    /// Ignored, with a warning, by release builds without the `test-knobs` feature.
    #[arg(
        long,
        global = true,
        env = "CAIRN_CLOCK_OFFSET_SECS",
        default_value_t = super::test_knobs::CLOCK_OFFSET_DEFAULT,
        hide = true,
        allow_negative_numbers = true
    )]
    pub clock_offset_secs: i64,
    /// TESTS ONLY: bytes per GB of Account Size in the backup vault's quota (tests fill
    /// accounts with a few megabytes). Ignored, with a warning, by release builds without
    /// the `test-knobs` feature.
    #[arg(
        long,
        global = true,
        env = "CAIRN_VAULT_QUOTA_UNIT_BYTES",
        default_value_t = super::test_knobs::QUOTA_UNIT_DEFAULT,
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

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP service (SCIM, health, metrics).
    Serve(Box<ServeArgs>),
    /// Manage tenants (organisations).
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Manage a tenant's SCIM settings and API token.
    #[command(subcommand)]
    Scim(ScimCmd),
    /// Manage a tenant's single sign-on (SAML 2.0).
    #[command(subcommand)]
    Sso(SsoCmd),
    /// Manage dashboard users.
    #[command(subcommand)]
    User(UserCmd),
    /// Print a tenant's audit log, newest first.
    Audit(AuditArgs),
    /// Print a tenant's recent SCIM requests (the provisioning inspector), newest first.
    Requests(RequestsArgs),
    /// Manage backup accounts.
    #[command(subcommand)]
    Account(AccountCmd),
    /// Manage groups (pushed by identity providers): list them, set their Account Size.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Move a deployment between databases.
    #[command(subcommand)]
    Db(DbCmd),
    /// List a tenant's backup accounts with their last backup (`--stale-days`: only those
    /// whose backups stopped).
    Accounts(AccountsArgs),
    /// Backup repositories: deletion protection, undelete, what "stale" means.
    #[command(subcommand)]
    Vault(VaultCmd),
    /// Ask a running server whether it is ready (`/readyz`); exits 0 if it answers 2xx,
    /// 1 otherwise. For container health checks: needs no curl, no database access.
    Healthcheck(HealthcheckArgs),
    /// Print a shell completion script for bash, zsh, fish, elvish or PowerShell.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The settings file (`--config`): what each setting is and where it came from.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Write the manual pages (`cairn.1`, `cairn-serve.1`, …) into a directory; the .deb
    /// is built with them.
    #[command(hide = true)]
    Man(ManArgs),
}

/// `cairn healthcheck`.
#[derive(Args, Debug)]
pub struct HealthcheckArgs {
    /// The URL to ask. Default: `/readyz` on `CAIRN_LISTEN` (an unspecified host such as
    /// 0.0.0.0 becomes 127.0.0.1; https when `CAIRN_TLS_CERT` is set), else
    /// `http://127.0.0.1:8080/readyz`.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub timeout_secs: u64,
    /// Do not verify the server's certificate (a self-signed one, asked on 127.0.0.1
    /// from inside the same container).
    #[arg(long)]
    pub insecure_tls: bool,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Print the settings `cairn serve` would run with, and where each came from (flag,
    /// env, env-file, file or default); secrets are not shown. Takes `serve`'s options.
    Show {
        #[command(flatten)]
        serve: Box<ServeArgs>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// The directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct AccountsArgs {
    #[arg(long)]
    pub tenant: String,
    /// Only active accounts with no snapshot for more than N days, never-backed-up ones
    /// first, then oldest backup first; without N, the tenant's setting (`cairn vault
    /// stale-days`, 7 by default).
    #[arg(long, value_name = "N", num_args = 0..=1)]
    pub stale_days: Option<Option<i64>>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum VaultCmd {
    /// Set what "stale" means for the tenant: no backup for more than N days (1 to 3650;
    /// 7 by default).
    StaleDays {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        days: i64,
        #[arg(long)]
        json: bool,
    },
    /// Turn a tenant's deletion protection on (`--days N`, 30 by default) or off
    /// (`--off`): while on, a backup key's delete of anything but a lock keeps the object
    /// for N days, charged to the account's quota, then the purge removes it.
    Protect {
        #[arg(long)]
        tenant: String,
        /// Days a deleted object is kept (1 to 3650).
        #[arg(long, conflicts_with = "off")]
        days: Option<u32>,
        /// Turn protection off (objects already kept stay until their time is up).
        #[arg(long)]
        off: bool,
        #[arg(long)]
        json: bool,
    },
    /// Re-hash the stored objects of a tenant's backup repositories (or one account's)
    /// and report any whose content no longer matches its name; the result is recorded
    /// on each account. Exits non-zero when an object is bad.
    Verify {
        #[arg(long)]
        tenant: String,
        /// Check only this account (by default: every account of the tenant but the
        /// deleted ones).
        #[arg(long)]
        user_name: Option<String>,
        /// Read at most this many MiB per second (0: no limit).
        #[arg(long, default_value_t = cairn_web::vault_verify::DEFAULT_MIB_PER_SEC)]
        max_mib_per_sec: u64,
        #[arg(long)]
        json: bool,
    },
    /// Put back every object of an account's repository deleted since TIME (RFC 3339,
    /// or an age: 90m, 6h, 2d), so restic sees the repository as it was then.
    Undelete {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user_name: String,
        #[arg(long)]
        since: String,
        #[arg(long)]
        json: bool,
    },
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
    /// Write a consistent copy of the SQLite database to a new FILE while `cairn serve`
    /// keeps running, then check it (PRAGMA integrity_check). On PostgreSQL, use
    /// pg_dump (README, "Backing up Cairn").
    ///
    /// Example: cairn db backup --to /var/backups/cairn-$(date +%F).db
    Backup {
        /// The file to write; it must not exist.
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Replace the SQLite database with a backup made by `cairn db backup`, after checking
    /// it (a sound Cairn database whose schema this cairn knows). Stop `cairn serve`
    /// first: refused while any process has the database open. The replaced database is
    /// kept as `<db>.before-restore-<time>`. On PostgreSQL, use pg_restore.
    ///
    /// Example: cairn db restore --from /var/backups/cairn-2026-12-06.db
    Restore {
        /// The backup file.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The database's schema version and the one this cairn brings it to, without
    /// migrating anything: whether starting this binary would migrate the database (and
    /// so whether instances of the current release may keep running beside it).
    ///
    /// Example: cairn db status --json
    Status {
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
    /// Seconds after its last write when a temporary upload file of the local vault that
    /// no upload of this process is writing (one left by a crash) is removed, on each
    /// purge run. Files of this process's uploads in flight are never removed.
    #[arg(
        long,
        env = "CAIRN_VAULT_TMP_MAX_AGE_SECS",
        default_value_t = 3600,
        hide = true
    )]
    pub vault_tmp_max_age_secs: u64,
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
    /// Days a SCIM request stays in the provisioning inspector's log.
    #[arg(long, env = "CAIRN_REQUEST_LOG_DAYS", default_value_t = 7)]
    pub request_log_days: u32,
    /// The most SCIM requests kept per tenant in the provisioning inspector's log (older
    /// ones are pruned on each maintenance run). 0 turns recording off.
    #[arg(
        long,
        env = "CAIRN_REQUEST_LOG_MAX_PER_TENANT",
        default_value_t = 10_000
    )]
    pub request_log_max_per_tenant: u32,
    /// Log entries waiting to be stored before new ones are dropped (counted in
    /// `cairn_request_log_dropped_total`).
    #[arg(
        long,
        env = "CAIRN_REQUEST_LOG_QUEUE",
        default_value_t = 8192,
        hide = true
    )]
    pub request_log_queue: usize,
    /// The request log writer's pause after each stored batch, in milliseconds (entries
    /// arriving meanwhile share the next commit). Tests lengthen it to hold entries in the
    /// queue.
    #[arg(
        long,
        env = "CAIRN_REQUEST_LOG_FLUSH_MS",
        default_value_t = cairn_web::scim::inspector::FLUSH_PAUSE.as_millis() as u64,
        hide = true
    )]
    pub request_log_flush_ms: u64,
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
    /// TESTS ONLY: let identity providers (SAML metadata URLs, OpenID Connect discovery,
    /// keys and tokens) be fetched over plain http and from loopback, private and
    /// link-local addresses (a provider on 127.0.0.1). Never in production: without TLS
    /// anyone on the path can forge the provider's keys, and an administrator could make
    /// Cairn fetch from inside its network. Ignored, with a warning, by release builds
    /// without the `test-knobs` feature.
    #[arg(long, env = "CAIRN_SSO_ALLOW_INSECURE_IDP", hide = true)]
    pub sso_allow_insecure_idp: bool,
    /// The least time between two refetches of one OpenID provider's keys when an ID
    /// token names a key id not in the cache.
    #[arg(
        long,
        env = "CAIRN_SSO_JWKS_REFRESH_SECS",
        default_value_t = 60,
        hide = true
    )]
    pub sso_jwks_refresh_secs: u64,
    /// How often SAML identity providers set by metadata URL are fetched again, so a
    /// certificate rollover reaches Cairn (a failed fetch keeps the last good settings).
    #[arg(
        long,
        env = "CAIRN_SSO_METADATA_REFRESH_SECS",
        default_value_t = 6 * 3600,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub sso_metadata_refresh_secs: u64,
    /// Migrate a SQLite database without first keeping a copy of it next to it
    /// (`cairn.db.before-NNNN-<time>`, the last 3 kept). The copy is what an upgrade that
    /// goes wrong is undone with: skip it only when you have just made a backup.
    #[arg(long, env = "CAIRN_NO_BACKUP_BEFORE_MIGRATE")]
    pub no_backup_before_migrate: bool,
    // Issue 18, monitoring: where `/metrics` is served and who may read it.
    /// Serve `/metrics` on this address of its own (plain HTTP), e.g. `127.0.0.1:9464`;
    /// the main listener then answers 404 there.
    #[arg(long, env = "CAIRN_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Require `Authorization: Bearer TOKEN` on `/metrics`, TOKEN being this file's
    /// content (surrounding whitespace ignored); others get 401.
    #[arg(long, env = "CAIRN_METRICS_TOKEN_FILE", value_name = "FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// Where this deployment's source code is offered: the dashboard's footer links to it
    /// (the GNU AGPL-3.0 asks a modified program serving users over a network to offer
    /// its source, section 13). Set it when running a modified Cairn; empty: no link.
    #[arg(long, env = "CAIRN_SOURCE_URL", value_name = "URL",
          default_value = cairn_web::dashboard::source::DEFAULT_SOURCE_URL,
          value_parser = cairn_web::dashboard::source::parse_source_url)]
    pub source_url: String,
    /// The mail relay for sign-in links and welcome mails: `smtp://host:port` (plain),
    /// `smtp://user:password@host:587?tls=starttls` (STARTTLS required) or
    /// `smtps://user:password@host:465` (TLS). Without it, links are only copied.
    #[arg(long, env = "CAIRN_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The sender of those mails (`Backups <backup@example.com>`). Default:
    /// `cairn@` and the public URL's host.
    #[arg(long, env = "CAIRN_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// How often the mail sender looks for due mail (milliseconds); queued mail wakes it
    /// at once on the instance that queued it.
    #[arg(long, env = "CAIRN_MAIL_POLL_MS", default_value_t = 5000, hide = true,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub mail_poll_ms: u64,
    /// How often missed welcome mails and due reminders are queued (seconds).
    #[arg(long, env = "CAIRN_MAIL_SCAN_SECS", default_value_t = 60, hide = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub mail_scan_secs: u64,
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
    /// "Welcome new accounts": mail each account provisioning creates (with an email) a
    /// one-time sign-in link, and remind it once after N days without a backup. Needs
    /// `cairn serve --smtp-url` to send.
    Welcome {
        #[arg(long)]
        tenant: String,
        #[arg(long, conflicts_with = "off", required_unless_present = "off")]
        on: bool,
        #[arg(long)]
        off: bool,
        /// Remind once after this many days without a backup (1–365; without it, no
        /// reminder).
        #[arg(long)]
        remind_days: Option<u32>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum SsoCmd {
    /// Set the tenant's SAML identity provider from its metadata and turn SSO on.
    Saml {
        #[arg(long)]
        tenant: String,
        /// The identity provider's SAML metadata (XML file).
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "metadata_url",
            conflicts_with = "metadata_url"
        )]
        metadata_file: Option<std::path::PathBuf>,
        /// The identity provider's metadata URL (https): fetched now, and again on
        /// `cairn serve`'s schedule (`--sso-metadata-refresh-secs`).
        #[arg(long, value_name = "URL")]
        metadata_url: Option<String>,
        /// TESTS ONLY: as `cairn serve --sso-allow-insecure-idp` (http and loopback);
        /// ignored by release builds without the `test-knobs` feature.
        #[arg(long, env = "CAIRN_SSO_ALLOW_INSECURE_IDP", hide = true)]
        allow_insecure_idp: bool,
    },
    /// Set the tenant's OpenID provider and turn OpenID Connect sign-in on (the client
    /// secret is read from standard input, never from the command line).
    Oidc {
        #[arg(long)]
        tenant: String,
        /// The issuer: discovery is read from ISSUER/.well-known/openid-configuration.
        #[arg(long, value_name = "URL")]
        issuer: String,
        #[arg(long, value_name = "ID")]
        client_id: String,
        /// Read the client secret from standard input (its first line).
        #[arg(long, required = true)]
        client_secret_stdin: bool,
    },
    /// Whom SSO applies to: dashboard administrators, all backup accounts, listed ones.
    Scope {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        admins: bool,
        #[arg(long)]
        all_accounts: bool,
        /// User names separated by commas, spaces or semicolons.
        #[arg(long, value_name = "NAMES")]
        accounts: Option<String>,
    },
    /// Turn SSO off (the identity provider's settings are kept).
    Disable {
        #[arg(long)]
        tenant: String,
    },
    /// Give members of a SCIM-provisioned group a dashboard role when they sign in
    /// through SSO (`none` removes the mapping). They lose it when the identity provider
    /// removes them from the group.
    Role {
        #[arg(long)]
        tenant: String,
        /// The group's displayName.
        #[arg(long, value_name = "NAME")]
        group: String,
        #[arg(long, value_parser = ["administrator", "viewer", "none"])]
        role: String,
    },
    /// Turn password sign-in to the tenant's dashboard off (only while single sign-on is
    /// enabled for administrators) or back on. The tenant's break-glass administrator
    /// (`cairn user break-glass`) keeps it; each of their password sign-ins is audited.
    PasswordSignIn {
        #[arg(long)]
        tenant: String,
        #[arg(long, conflicts_with = "on", required_unless_present = "on")]
        off: bool,
        #[arg(long)]
        on: bool,
    },
    /// Print the values to give the identity provider, and the current settings.
    Show {
        #[arg(long)]
        tenant: String,
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
    /// Name the tenant's break-glass administrator: the one dashboard administrator who
    /// keeps password sign-in when the tenant turns it off for single sign-on (each such
    /// sign-in is audited). Naming another replaces them; `--off` un-names them.
    BreakGlass {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        off: bool,
    },
    /// List the tenant's dashboard users (email, role, status, last sign-in, 2FA).
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Invite a dashboard user: prints a one-time link (7 days) to set a password.
    Invite {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["administrator", "viewer"])]
        role: String,
        #[arg(long)]
        json: bool,
    },
    /// Change a dashboard user's role (the last active administrator cannot be demoted).
    SetRole {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["administrator", "viewer"])]
        role: String,
        #[arg(long)]
        json: bool,
    },
    /// Disable a dashboard user: no sign-in, open sessions end.
    Disable {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        json: bool,
    },
    /// Enable a disabled dashboard user again.
    Enable {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a dashboard user (open sessions end).
    Delete {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        json: bool,
    },
    /// Clear a dashboard user's password, end their sessions, and print a one-time link
    /// (24 hours) to set a new one.
    ResetPassword {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a dashboard user's two-factor authentication (a lost phone).
    Reset2fa {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        json: bool,
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

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct RequestsArgs {
    #[command(subcommand)]
    pub cmd: Option<RequestsCmd>,
    #[arg(long, required = true)]
    pub tenant: Option<String>,
    /// Only requests since this time: RFC 3339 (`2026-12-01T00:00:00Z`) or an age
    /// (`90m`, `6h`, `2d`).
    #[arg(long)]
    pub since: Option<String>,
    /// Only this status (`409`) or class (`4xx`).
    #[arg(long)]
    pub status: Option<String>,
    /// Only this client: okta, entra, onelogin, jumpcloud, google, rippling, other.
    #[arg(long)]
    pub client: Option<String>,
    /// Only requests that touched this account or group id.
    #[arg(long)]
    pub account: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// Most requests printed.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

#[derive(Subcommand, Debug)]
pub enum RequestsCmd {
    /// Keep the bodies of a tenant's SCIM requests and responses (secrets redacted) for
    /// `--minutes N` (at most 60), or stop (`--off`). Audited. A running server follows
    /// within a few seconds.
    Capture {
        #[arg(long)]
        tenant: String,
        #[arg(long, conflicts_with = "off", required_unless_present = "off")]
        minutes: Option<i64>,
        #[arg(long)]
        off: bool,
        #[arg(long)]
        json: bool,
    },
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
    /// Create a named backup key for an account's restic repository (shown once); the
    /// account's other keys keep working. One key per device: "work laptop".
    Key {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user_name: String,
        /// The key's name, unique in the account (any letter case), at most 64 characters.
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List an account's backup keys: name, basic-auth user, created, last used (never
    /// the secret; last use is recorded to the minute).
    Keys {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user_name: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke one of an account's backup keys by name; its next request gets 401, the
    /// account's other keys keep working.
    RevokeKey {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user_name: String,
        #[arg(long)]
        name: String,
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
    /// Make a one-time sign-in link for an account (shown once): the person opens it,
    /// confirms, and lands on their own backup page (`/me`) without single sign-on. It
    /// works once and expires after --sign-in-link-days (7 by default).
    SignInLink {
        #[arg(long)]
        tenant: String,
        #[arg(long, alias = "user")]
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
