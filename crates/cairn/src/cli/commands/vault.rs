//! `cairn vault …`: a tenant's deletion protection, and undoing an account's deletions.

use crate::cli::config::tenant_id;
use crate::cli::{Ctx, VaultCmd};
use anyhow::{Context, Result};
use cairn_core::protection::DEFAULT_PROTECT_DAYS;
use cairn_core::service::Authority;
use serde_json::json;

pub async fn run(cx: &Ctx, cmd: VaultCmd) -> Result<()> {
    match cmd {
        VaultCmd::StaleDays { tenant, days, json } => {
            super::freshness::set_stale_days(cx, &tenant, days, json).await
        }
        VaultCmd::Protect {
            tenant,
            days,
            off,
            json,
        } => {
            protect(
                cx,
                &tenant,
                (!off).then(|| days.unwrap_or(DEFAULT_PROTECT_DAYS)),
                json,
            )
            .await
        }
        VaultCmd::Undelete {
            tenant,
            user_name,
            since,
            json,
        } => undelete(cx, &tenant, &user_name, &since, json).await,
    }
}

async fn protect(cx: &Ctx, tenant: &str, days: Option<u32>, json: bool) -> Result<()> {
    let Ctx { svc, op, meta, .. } = cx;
    let id = tenant_id(tenant)?;
    svc.set_vault_protection(Authority::Operator(op), &id, days, meta)
        .await?;
    if json {
        print_json!(&json!({"tenant_id": id, "protect_days": days}));
    } else if let Some(d) = days {
        outln!("Deletion protection on: deleted backup objects are kept for {d} days");
    } else {
        outln!("Deletion protection off (objects already kept stay until their time is up)");
    }
    Ok(())
}

async fn undelete(cx: &Ctx, tenant: &str, user_name: &str, since: &str, json: bool) -> Result<()> {
    let Ctx { svc, op, meta, g } = cx;
    let id = tenant_id(tenant)?;
    let since = super::requests::since(since, svc.clock.now())?;
    let vault = g.vault().context("opening the backup vault")?.vault;
    let (u, done) = cairn_web::vault_trash::undelete(
        svc,
        &vault,
        Authority::Operator(op),
        &id,
        user_name,
        since,
        meta,
    )
    .await?;
    if json {
        print_json!(&json!({"id": u.id, "user_name": u.user_name,
            "since": cairn_core::clock::format_ts(since),
            "restored": done.restored, "restored_bytes": done.restored_bytes,
            "dropped": done.dropped, "dropped_bytes": done.dropped_bytes}));
    } else {
        outln!(
            "{}: put back {} object(s), {} bytes (deleted since {})",
            u.user_name,
            done.restored,
            done.restored_bytes,
            cairn_core::clock::format_ts(since)
        );
    }
    Ok(())
}
