//! `cairn db …`: move a deployment between databases.

use crate::cli::config::{parse_database_url, Database};
use crate::cli::DbCmd;
use anyhow::{Context, Result};
use serde_json::json;

pub async fn run(cmd: DbCmd) -> Result<()> {
    match cmd {
        DbCmd::Copy { from, to, json } => copy(&from, &to, json).await,
    }
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
