//! `cairn tenant …`: create and list tenants, cap their Account Size, welcome their new
//! accounts by mail.

use crate::cli::config::tenant_id;
use crate::cli::{Ctx, TenantCmd};
use anyhow::{Context, Result};
use cairn_core::ids::QuotaGb;
use serde_json::json;

pub async fn run(cx: &Ctx, cmd: TenantCmd) -> Result<()> {
    match cmd {
        TenantCmd::Create { name, json } => create(cx, &name, json).await,
        TenantCmd::List { json } => list(cx, json).await,
        TenantCmd::Limit {
            tenant,
            max_account_size_gb,
            clear,
            json,
        } => limit(cx, &tenant, max_account_size_gb, clear, json).await,
        TenantCmd::Welcome {
            tenant,
            on,
            off: _,
            remind_days,
            json,
        } => welcome(cx, &tenant, on, remind_days, json).await,
    }
}

async fn welcome(
    cx: &Ctx,
    tenant: &str,
    on: bool,
    remind_days: Option<u32>,
    json: bool,
) -> Result<()> {
    let Ctx { svc, op, meta, .. } = cx;
    let id = tenant_id(tenant)?;
    let w = svc
        .set_welcome_settings(
            cairn_core::service::Authority::Operator(op),
            &id,
            on,
            remind_days,
            meta,
        )
        .await?;
    if json {
        print_json!(
            &json!({"tenant": id, "welcome": w.enabled, "remind_days": w.remind_days,
            "enabled_at": w.enabled_at.map(cairn_core::clock::format_ts)})
        );
    } else if w.enabled {
        let remind = w.remind_days.map_or_else(
            || "no reminder".to_owned(),
            |d| format!("one reminder after {d} days without a backup"),
        );
        outln!("{id}: new accounts get a welcome mail with a sign-in link; {remind}");
    } else {
        outln!("{id}: new accounts get no welcome mail");
    }
    Ok(())
}

async fn create(cx: &Ctx, name: &str, json: bool) -> Result<()> {
    let Ctx { svc, op, .. } = cx;
    let t = svc.create_tenant(op, name).await?;
    let url = svc.tenant_url(&t.id);
    if json {
        print_json!(&json!({"id": t.id, "name": t.name, "tenant_url": url}));
    } else {
        outln!("Created tenant {} ({})\nTenant URL: {url}", t.name, t.id);
    }
    Ok(())
}

async fn list(cx: &Ctx, json: bool) -> Result<()> {
    let Ctx { svc, op, .. } = cx;
    let ts = svc.list_tenants(op).await?;
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
    Ok(())
}

async fn limit(
    cx: &Ctx,
    tenant: &str,
    max_account_size_gb: Option<i64>,
    clear: bool,
    json: bool,
) -> Result<()> {
    let Ctx { svc, op, .. } = cx;
    let id = tenant_id(tenant)?;
    let cap = match (max_account_size_gb, clear) {
        (Some(gb), false) => Some(QuotaGb::new(gb).map_err(anyhow::Error::msg)?),
        _ => None,
    };
    let t = svc.set_tenant_limit(op, &id, cap).await?;
    let cap = t.max_account_size_gb.map(QuotaGb::get);
    if json {
        print_json!(&json!({"id": t.id, "name": t.name, "max_account_size_gb": cap}));
    } else {
        match cap {
            Some(gb) => outln!("{}: Account Size and group sizes at most {gb} GB", t.name),
            None => outln!("{}: no Account Size limit", t.name),
        }
    }
    Ok(())
}
