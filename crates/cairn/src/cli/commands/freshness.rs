//! Backup freshness from the command line: `cairn accounts` lists a tenant's accounts
//! with their last backup (`--stale-days`: only those whose backups stopped), `cairn
//! vault stale-days` sets what "stale" means.

use crate::cli::config::tenant_id;
use crate::cli::{AccountsArgs, Ctx};
use anyhow::{Context, Result};
use cairn_core::clock::format_ts;
use cairn_core::freshness::StaleDays;
use cairn_core::service::Authority;
use serde_json::json;

pub async fn list(cx: &Ctx, args: AccountsArgs) -> Result<()> {
    let Ctx { svc, op, .. } = cx;
    let id = tenant_id(&args.tenant)?;
    let stale = match args.stale_days {
        None => None,
        Some(Some(d)) => Some(StaleDays::new(d)?),
        Some(None) => Some(svc.tenant(&id).await?.stale_days),
    };
    let accounts = svc.backup_freshness(op, &id, stale).await?;
    if args.json {
        let v: Vec<_> = accounts
            .iter()
            .map(|a| {
                json!({
                    "id": a.account.id,
                    "user_name": a.account.user_name,
                    "status": a.account.status(),
                    "never_backed_up": a.freshness.last_snapshot_at.is_none(),
                    "last_snapshot_at": a.freshness.last_snapshot_at.map(format_ts),
                    "last_upload_at": a.freshness.last_upload_at.map(format_ts),
                    "bytes_24h": a.freshness.bytes_24h,
                    "used_bytes": a.account.used_bytes,
                })
            })
            .collect();
        print_json!(&json!(v));
    } else {
        if let Some(days) = stale {
            outln!(
                "{} active accounts with no backup for more than {days} days",
                accounts.len()
            );
        }
        for a in &accounts {
            let last = a
                .freshness
                .last_snapshot_at
                .map_or_else(|| "never backed up".to_owned(), format_ts);
            outln!(
                "{}\t{}\tlast backup: {last}\t24h: {} bytes",
                a.account.id,
                a.account.user_name,
                a.freshness.bytes_24h
            );
        }
    }
    Ok(())
}

/// `cairn vault stale-days --tenant ID --days N`.
pub async fn set_stale_days(cx: &Ctx, tenant: &str, days: i64, json: bool) -> Result<()> {
    let Ctx { svc, op, meta, .. } = cx;
    let id = tenant_id(tenant)?;
    let days = StaleDays::new(days)?;
    let t = svc
        .set_stale_days(Authority::Operator(op), &id, days, meta)
        .await?;
    if json {
        print_json!(&json!({"id": t.id, "name": t.name, "stale_days": t.stale_days}));
    } else {
        outln!(
            "{}: accounts with no backup for more than {} days are stale",
            t.name,
            t.stale_days
        );
    }
    Ok(())
}
