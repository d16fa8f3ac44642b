//! `cairn audit`: a tenant's audit log, newest first.

use crate::cli::config::tenant_id;
use crate::cli::{AuditArgs, Ctx};
use anyhow::{Context, Result};
use cairn_core::audit::AuditQuery;

pub async fn run(cx: &Ctx, a: AuditArgs) -> Result<()> {
    let svc = &cx.svc;
    let id = tenant_id(&a.tenant)?;
    svc.tenant(&id).await?;
    let events = svc
        .audit_log(
            &id,
            &AuditQuery {
                limit: a.limit.max(1),
                ..Default::default()
            },
        )
        .await?;
    if a.json {
        print_json!(&serde_json::to_value(&events)?);
    } else {
        for e in events {
            outln!(
                "{}\t{}\t{}\t{}\t{}",
                cairn_core::clock::format_ts(e.at),
                e.action,
                e.target_name.unwrap_or_default(),
                e.actor_kind,
                e.changes
            );
        }
    }
    Ok(())
}
