//! From the global options to a running store and services: the database selection,
//! the backup vault, and why a SQLite file cannot be opened.

use super::args::Global;
use anyhow::{bail, Context, Result};
use cairn_core::clock::SystemClock;
use cairn_core::ids::TenantId;
use cairn_core::service::Services;
use cairn_core::store::Store;
use cairn_store::sqlite::OpenOptions as SqliteOpenOptions;
use cairn_store::{PostgresStore, SqliteStore};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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

pub(super) fn parse_database_url(flag: &str, url: &str) -> Result<Database> {
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

pub async fn open_store(g: &Global, opts: SqliteOpenOptions) -> Result<Arc<dyn Store>> {
    Ok(match database(g)? {
        Database::Sqlite(path) => Arc::new(SqliteStore::open_with(&path, opts).with_context(
            || match read_only_reason(&path) {
                Some(why) => format!("opening database {}: {why}", path.display()),
                None => format!("opening database {}", path.display()),
            },
        )?),
        Database::Postgres(url) => Arc::new(
            PostgresStore::connect(&url)
                .await
                .context("connecting to PostgreSQL (--database-url)")?,
        ),
    })
}

pub async fn services(g: &Global, public_url: String) -> Result<Arc<Services>> {
    services_with(g, public_url, SqliteOpenOptions::default()).await
}

/// [`services`], opening a SQLite database with `opts` (`serve`'s
/// `--no-backup-before-migrate`).
pub async fn services_with(
    g: &Global,
    public_url: String,
    opts: SqliteOpenOptions,
) -> Result<Arc<Services>> {
    let store = open_store(g, opts).await?;
    let mut svc = Services::new(
        store,
        Arc::new(SystemClock::with_offset_secs(g.clock_offset_secs)),
        time::Duration::days(i64::from(g.retention_days)),
        public_url,
        Duration::from_millis(g.auth_cache_ms),
    );
    svc.account_link_lifetime = time::Duration::days(i64::from(g.sign_in_link_days));
    Ok(Arc::new(svc))
}

pub(super) fn public_url_for_cli(g: &Global) -> String {
    g.public_url
        .clone()
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned())
}

pub(super) fn tenant_id(s: &str) -> Result<TenantId> {
    TenantId::parse(s).with_context(|| {
        format!("--tenant {s:?} is not a tenant id (a UUID as printed by `cairn tenant create`)")
    })
}
