//! `cairn requests`: a tenant's recent SCIM requests (the provisioning inspector).

use crate::cli::config::tenant_id;
use crate::cli::{Ctx, RequestsArgs, RequestsCmd};
use anyhow::{bail, Context, Result};
use cairn_core::requests::{Client, RequestFilter};
use cairn_core::service::Authority;
use time::OffsetDateTime;

pub async fn run(cx: &Ctx, a: RequestsArgs) -> Result<()> {
    if let Some(RequestsCmd::Capture {
        tenant,
        minutes,
        off,
        json,
    }) = a.cmd
    {
        return capture(
            cx,
            &tenant,
            if off { 0 } else { minutes.unwrap_or(0) },
            json,
        )
        .await;
    }
    let id = tenant_id(a.tenant.as_deref().context("--tenant is required")?)?;
    let mut filter = RequestFilter {
        limit: a.limit.max(1),
        resource_id: a.account.clone(),
        ..Default::default()
    };
    if let Some(s) = &a.status {
        if filter.parse_status(s).is_none() {
            bail!("--status {s:?}: give a status (409) or a class (4xx)");
        }
    }
    if let Some(c) = &a.client {
        filter.client = Some(Client::parse(&c.to_ascii_lowercase()).with_context(|| {
            format!(
                "--client {c:?}: one of okta, entra, onelogin, jumpcloud, google, rippling, other"
            )
        })?);
    }
    if let Some(s) = &a.since {
        filter.since = Some(since(s, cx.svc.clock.now())?);
    }
    let entries = cx.svc.request_log(&id, &filter).await?;
    if a.json {
        print_json!(&serde_json::to_value(&entries)?);
    } else {
        for e in entries {
            outln!(
                "{}\t{}\t{} {}\t{}\t{} ms\t{}\t{}",
                cairn_core::clock::format_ts(e.at),
                e.client.label(),
                e.method,
                e.path,
                e.status,
                e.latency_us / 1000,
                e.error.unwrap_or_default(),
                e.notes.join("; ")
            );
        }
    }
    Ok(())
}

/// `cairn requests capture`: body capture on for `minutes`, or off with 0.
async fn capture(cx: &Ctx, tenant: &str, minutes: i64, json: bool) -> Result<()> {
    let id = tenant_id(tenant)?;
    let until = cx
        .svc
        .switch_body_capture(Authority::Operator(&cx.op), &id, minutes, &cx.meta)
        .await?;
    let until = until.map(cairn_core::clock::format_ts);
    if json {
        print_json!(&serde_json::json!({ "tenant": id.to_string(), "capture_until": until }));
    } else {
        match until {
            Some(t) => outln!("request and response bodies are captured until {t}"),
            None => outln!("body capture is off"),
        }
    }
    Ok(())
}

/// `--since`: RFC 3339, or an age in minutes, hours or days before `now`.
pub(crate) fn since(s: &str, now: OffsetDateTime) -> Result<OffsetDateTime> {
    if let Some(t) = cairn_core::clock::parse_ts(s) {
        return Ok(t);
    }
    let s = s.trim();
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 =
        n.parse().ok().filter(|n| *n >= 0).with_context(|| {
            format!("--since {s:?}: give RFC 3339 or an age such as 90m, 6h, 2d")
        })?;
    let age = match unit {
        "m" => time::Duration::minutes(n),
        "h" => time::Duration::hours(n),
        "d" => time::Duration::days(n),
        _ => bail!("--since {s:?}: give RFC 3339 or an age such as 90m, 6h, 2d"),
    };
    Ok(now - age)
}
