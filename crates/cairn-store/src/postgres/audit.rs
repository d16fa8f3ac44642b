//! PostgreSQL side of the audit log: entries without a row change of their own, and the
//! listings of `crate::activity` (the SCIM audit listing is one of them).

use super::*;
use crate::activity::{self, Dialect};
use async_trait::async_trait;
use cairn_core::audit::{AuditDraft, AuditEvent};
use cairn_core::dashboard::{ActivityFilter, DayCount};
use cairn_core::ids::TenantId;
use cairn_core::store::*;
use cairn_core::Result;
use time::OffsetDateTime;
use tokio_postgres::Row;

#[async_trait]
impl AuditStore for PostgresStore {
    async fn record_audit(&self, audit: AuditDraft) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        insert_audit(&**c, &audit).await
    }

    async fn list_activity(
        &self,
        tenant: &TenantId,
        f: &ActivityFilter,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        let q = activity::events(Dialect::Postgres, tenant.as_str(), f, before_id, limit);
        let rows = query(&self.pool, &q).await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn activity_per_day(
        &self,
        tenant: &TenantId,
        f: &ActivityFilter,
        since: OffsetDateTime,
    ) -> Result<Vec<DayCount>> {
        let q = activity::per_day(Dialect::Postgres, tenant.as_str(), f, ts(since));
        let rows = query(&self.pool, &q).await?;
        Ok(rows
            .iter()
            .map(|r| DayCount {
                day: r.get(0),
                action: r.get(1),
                count: r.get::<_, i64>(2).max(0) as u64,
            })
            .collect())
    }

    async fn activity_clients(&self, tenant: &TenantId) -> Result<Vec<String>> {
        let q = activity::clients(Dialect::Postgres, tenant.as_str());
        let rows = query(&self.pool, &q).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

/// Runs a shared audit statement on a pooled connection.
async fn query(pool: &deadpool_postgres::Pool, q: &activity::Query) -> Result<Vec<Row>> {
    let c = pool.get().await.map_err(pool_err)?;
    let params: Vec<Param> = q
        .params
        .iter()
        .map(|v| -> Param {
            match v {
                activity::Value::Text(s) => Box::new(s.clone()),
                activity::Value::Int(i) => Box::new(*i),
            }
        })
        .collect();
    c.query(&q.text, &refs(&params)).await.map_err(map_err)
}

fn event_from_row(r: &Row) -> Result<AuditEvent> {
    Ok(AuditEvent {
        id: r.get(0),
        tenant_id: TenantId::from_trusted(r.get(1)),
        at: time_of(r.get(2))?,
        actor_kind: r.get(3),
        actor_id: r.get(4),
        action: r.get(5),
        target_type: r.get(6),
        target_id: r.get(7),
        target_name: r.get(8),
        changes: r.get(9),
        user_agent: r.get(10),
        request_id: r.get(11),
    })
}
