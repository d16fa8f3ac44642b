//! `cairn scim …`: turn a tenant's SCIM provisioning on or off, issue its API token.

use crate::cli::config::tenant_id;
use crate::cli::{Ctx, ScimCmd};
use anyhow::{Context, Result};
use cairn_core::ids::QuotaGb;
use cairn_core::service::Authority;
use cairn_core::store::SettingsChange;
use serde_json::json;

pub async fn run(cx: &Ctx, cmd: ScimCmd) -> Result<()> {
    match cmd {
        ScimCmd::Enable {
            tenant,
            account_size_gb,
        } => enable(cx, &tenant, account_size_gb).await,
        ScimCmd::Disable { tenant } => disable(cx, &tenant).await,
        ScimCmd::Token { tenant, json } => token(cx, &tenant, json).await,
    }
}

async fn enable(cx: &Ctx, tenant: &str, account_size_gb: i64) -> Result<()> {
    let Ctx { svc, op, meta, .. } = cx;
    let id = tenant_id(tenant)?;
    let size = QuotaGb::new(account_size_gb).map_err(anyhow::Error::msg)?;
    let t = svc
        .update_settings(
            Authority::Operator(op),
            &id,
            SettingsChange {
                scim_enabled: Some(true),
                account_size_gb: Some(size),
                max_account_size_gb: None,
                stale_days: None,
            },
            meta,
        )
        .await?;
    outln!(
        "SCIM user management enabled for {} with Account Size {}",
        t.name,
        t.account_size_gb
    );
    Ok(())
}

async fn disable(cx: &Ctx, tenant: &str) -> Result<()> {
    let Ctx { svc, op, meta, .. } = cx;
    let id = tenant_id(tenant)?;
    let t = svc
        .update_settings(
            Authority::Operator(op),
            &id,
            SettingsChange {
                scim_enabled: Some(false),
                account_size_gb: None,
                max_account_size_gb: None,
                stale_days: None,
            },
            meta,
        )
        .await?;
    outln!("SCIM user management disabled for {}", t.name);
    Ok(())
}

async fn token(cx: &Ctx, tenant: &str, json: bool) -> Result<()> {
    let Ctx { svc, op, meta, .. } = cx;
    let id = tenant_id(tenant)?;
    let (token, _) = svc
        .generate_token(Authority::Operator(op), &id, meta)
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
    Ok(())
}
