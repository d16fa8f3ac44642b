//! `cairn group …`: list a tenant's groups, set a group's Account Size.

use crate::cli::config::tenant_id;
use crate::cli::{Ctx, GroupCmd};
use anyhow::{Context, Result};
use cairn_core::ids::QuotaGb;
use cairn_core::service::Authority;
use serde_json::json;

pub async fn run(cx: &Ctx, cmd: GroupCmd) -> Result<()> {
    match cmd {
        GroupCmd::Size {
            tenant,
            group,
            gb,
            clear,
            json,
        } => size(cx, &tenant, &group, gb, clear, json).await,
        GroupCmd::List { tenant, json } => list(cx, &tenant, json).await,
    }
}

async fn size(
    cx: &Ctx,
    tenant: &str,
    group: &str,
    gb: Option<i64>,
    clear: bool,
    json: bool,
) -> Result<()> {
    let Ctx { svc, op, meta, .. } = cx;
    let id = tenant_id(tenant)?;
    let size = match (gb, clear) {
        (Some(gb), false) => Some(QuotaGb::new(gb).map_err(|e| anyhow::anyhow!(e))?),
        _ => None,
    };
    let g = svc.find_group(&id, group).await?;
    let g = svc
        .set_group_size(Authority::Operator(op), &id, &g.id, size, meta)
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
    Ok(())
}

async fn list(cx: &Ctx, tenant: &str, json: bool) -> Result<()> {
    let svc = &cx.svc;
    let id = tenant_id(tenant)?;
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
    Ok(())
}
