//! `cairn db …`: move a deployment between databases; back up and restore a SQLite
//! database.

use crate::cli::config::{database, parse_database_url, Database};
use crate::cli::{DbCmd, Global};
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};

pub async fn run(g: &Global, cmd: DbCmd) -> Result<()> {
    match cmd {
        DbCmd::Copy { from, to, json } => copy(&from, &to, json).await,
        DbCmd::Backup { to, json } => backup(g, &to, json).await,
        DbCmd::Restore { from, json } => restore(g, &from, json).await,
        DbCmd::Status { json } => status(g, json).await,
    }
}

/// The SQLite file of the configured database; on PostgreSQL, what to run instead.
fn sqlite_path(g: &Global, command: &str, instead: &str) -> Result<PathBuf> {
    match database(g)? {
        Database::Sqlite(path) => Ok(path),
        Database::Postgres(_) => bail!(
            "cairn db {command} works on a SQLite database; this deployment uses PostgreSQL \
             (--database-url): use PostgreSQL's own tools instead, e.g. {instead} (README, \
             \"Backing up Cairn\")"
        ),
    }
}

/// Runs a SQLite file operation off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> cairn_core::Result<T> + Send + 'static,
) -> Result<T> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .context("the copy task")??)
}

async fn backup(g: &Global, to: &Path, json: bool) -> Result<()> {
    let db = sqlite_path(
        g,
        "backup",
        "`pg_dump --format=custom --file=cairn.dump \"$CAIRN_DATABASE_URL\"`",
    )?;
    let (src, dst) = (db.clone(), to.to_owned());
    let copied = blocking(move || cairn_store::sqlite::backup::backup(&src, &dst))
        .await
        .with_context(|| format!("backing up {} to {}", db.display(), to.display()))?;
    if json {
        print_json!(&json!({"database": db.display().to_string(),
            "backup": copied.path.display().to_string(), "bytes": copied.bytes,
            "schema_version": copied.schema_version, "integrity_check": "ok"}));
    } else {
        outln!(
            "Backed up {} to {} ({} bytes, schema version {}); integrity check ok.",
            db.display(),
            copied.path.display(),
            copied.bytes,
            copied.schema_version
        );
    }
    Ok(())
}

async fn restore(g: &Global, from: &Path, json: bool) -> Result<()> {
    let db = sqlite_path(
        g,
        "restore",
        "`pg_restore --no-owner --dbname=postgres://USER@HOST/NEW_EMPTY_DB cairn.dump` \
         with every instance stopped",
    )?;
    let (src, dst) = (from.to_owned(), db.clone());
    let restored = blocking(move || cairn_store::sqlite::backup::restore(&src, &dst))
        .await
        .with_context(|| format!("restoring {} from {}", db.display(), from.display()))?;
    let version = restored.copied.schema_version;
    if json {
        print_json!(&json!({"database": db.display().to_string(),
            "from": from.display().to_string(), "bytes": restored.copied.bytes,
            "schema_version": version,
            "previous": restored.previous.as_ref().map(|p| p.display().to_string()),
            "integrity_check": "ok"}));
    } else {
        outln!(
            "Restored {} from {} (schema version {version}); integrity check ok.",
            db.display(),
            from.display()
        );
        if let Some(p) = &restored.previous {
            outln!("The database it replaced is kept as {}.", p.display());
        }
        if version < cairn_store::SCHEMA_VERSION {
            outln!(
                "The next `cairn serve` migrates it to schema version {}.",
                cairn_store::SCHEMA_VERSION
            );
        }
        outln!(
            "Then run `cairn account recount` for the accounts whose repositories changed \
             since the backup (README, \"Backing up Cairn\")."
        );
    }
    Ok(())
}

fn copy_endpoint(flag: &str, url: &str) -> Result<cairn_store::copy::Endpoint> {
    Ok(match parse_database_url(flag, url)? {
        Database::Sqlite(p) => cairn_store::copy::Endpoint::Sqlite(p),
        Database::Postgres(u) => cairn_store::copy::Endpoint::Postgres(u),
    })
}

async fn copy(from: &str, to: &str, json: bool) -> Result<()> {
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

async fn status(g: &Global, json: bool) -> Result<()> {
    // The URL is not printed: it may carry a password.
    let (kind, version) = match database(g)? {
        Database::Sqlite(path) => {
            let p = path.clone();
            let v = blocking(move || cairn_store::sqlite::backup::schema_version_of(&p))
                .await
                .with_context(|| format!("reading {}", path.display()))?;
            ("sqlite", v)
        }
        Database::Postgres(url) => (
            "postgres",
            cairn_store::PostgresStore::schema_version_at(&url)
                .await
                .context("connecting to PostgreSQL (--database-url)")?,
        ),
    };
    let known = cairn_store::SCHEMA_VERSION;
    let state = if version > known {
        "newer than this cairn: it refuses to start on it"
    } else if version == 0 {
        "new: created on first start"
    } else if version < known {
        "older: migrated on the next start"
    } else {
        "current"
    };
    if json {
        print_json!(&json!({"backend": kind, "schema_version": version,
            "binary_schema_version": known,
            "pending_migrations": (known - version).max(0),
            "newer_than_binary": version > known}));
    } else {
        outln!("database schema version {version} ({kind}); this cairn's: {known}; {state}");
    }
    Ok(())
}
