//! `cairn vault …`: a tenant's deletion protection, undoing an account's deletions, and
//! checking repositories' health.

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
        VaultCmd::Verify {
            tenant,
            user_name,
            max_mib_per_sec,
            json,
        } => verify(cx, &tenant, user_name.as_deref(), max_mib_per_sec, json).await,
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

/// Checks the accounts one after the other in the foreground (one stream of reads at the
/// given pace), prints each result, and fails when any object is bad.
async fn verify(
    cx: &Ctx,
    tenant: &str,
    user_name: Option<&str>,
    mib_per_sec: u64,
    json: bool,
) -> Result<()> {
    let Ctx { svc, op, g, .. } = cx;
    let id = tenant_id(tenant)?;
    let accounts = match user_name {
        Some(name) => {
            svc.tenant(&id).await?;
            let u = svc
                .store
                .find_account_by_user_name(&id, name)
                .await?
                .with_context(|| format!("no account {name:?} in the tenant"))?;
            vec![u]
        }
        None => svc
            .backup_freshness(op, &id, None)
            .await?
            .into_iter()
            .map(|a| a.account)
            .filter(|u| u.status() != cairn_core::user::AccountStatus::Deleted)
            .collect(),
    };
    let vault = g.vault().context("opening the backup vault")?.vault;
    let rate = (mib_per_sec > 0).then(|| mib_per_sec.saturating_mul(1 << 20));
    let mut results = Vec::new();
    let mut bad_total = 0u64;
    for u in &accounts {
        let v = cairn_web::vault_verify::verify_account(svc, &vault, u, rate).await?;
        bad_total += v.bad_count;
        if json {
            results.push(json!({"id": u.id, "user_name": u.user_name,
                "verified_at": cairn_core::clock::format_ts(v.verified_at),
                "objects": v.objects, "bytes": v.bytes, "bad_count": v.bad_count,
                "bad": v.bad.iter().map(|b| json!({"object": b.object, "reason": b.reason}))
                    .collect::<Vec<_>>()}));
        } else {
            outln!(
                "{}: {} object(s), {} bytes checked, {} bad",
                u.user_name,
                v.objects,
                v.bytes,
                v.bad_count
            );
            for b in &v.bad {
                outln!("  {} ({})", b.object, b.reason);
            }
        }
    }
    if json {
        print_json!(&json!({"tenant_id": id, "accounts": results, "bad_count": bad_total}));
    }
    if bad_total > 0 {
        anyhow::bail!("{bad_total} bad object(s) found");
    }
    Ok(())
}
