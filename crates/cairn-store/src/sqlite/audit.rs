//! SQLite side of the audit log: entries without a row change of their own, and the
//! listings of `crate::activity` (the SCIM audit listing is one of them).

use super::*;
use crate::activity::{self, Dialect};
use async_trait::async_trait;
use cairn_core::audit::{AuditDraft, AuditEvent};
use cairn_core::dashboard::{ActivityFilter, DayCount};
use cairn_core::ids::TenantId;
use cairn_core::store::*;
use cairn_core::Result;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params_from_iter, Row};
use time::OffsetDateTime;

#[async_trait]
impl AuditStore for SqliteStore {
    async fn record_audit(&self, audit: AuditDraft) -> Result<()> {
        self.writer
            .write(move |c| db(insert_audit(c, &audit)))
            .await
    }

    async fn list_activity(
        &self,
        tenant: &TenantId,
        f: &ActivityFilter,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        let q = activity::events(Dialect::Sqlite, tenant.as_str(), f, before_id, limit);
        self.read(move |c| {
            c.prepare_cached(&q.text)?
                .query_map(params_from_iter(values(&q)), event_from_row)?
                .collect()
        })
        .await
    }

    async fn activity_per_day(
        &self,
        tenant: &TenantId,
        f: &ActivityFilter,
        since: OffsetDateTime,
    ) -> Result<Vec<DayCount>> {
        let q = activity::per_day(Dialect::Sqlite, tenant.as_str(), f, ts(since));
        self.read(move |c| {
            c.prepare_cached(&q.text)?
                .query_map(params_from_iter(values(&q)), |r| {
                    Ok(DayCount {
                        day: r.get(0)?,
                        action: r.get(1)?,
                        count: r.get::<_, i64>(2)?.max(0) as u64,
                    })
                })?
                .collect()
        })
        .await
    }

    async fn activity_clients(&self, tenant: &TenantId) -> Result<Vec<String>> {
        let q = activity::clients(Dialect::Sqlite, tenant.as_str());
        self.read(move |c| {
            c.prepare_cached(&q.text)?
                .query_map(params_from_iter(values(&q)), |r| r.get(0))?
                .collect()
        })
        .await
    }
}

/// The values of a shared audit statement, as SQLite binds them.
fn values(q: &activity::Query) -> Vec<SqlValue> {
    q.params
        .iter()
        .map(|v| match v {
            activity::Value::Text(s) => SqlValue::Text(s.clone()),
            activity::Value::Int(i) => SqlValue::Integer(*i),
        })
        .collect()
}

fn event_from_row(r: &Row<'_>) -> rusqlite::Result<AuditEvent> {
    let changes: String = r.get(9)?;
    Ok(AuditEvent {
        id: r.get(0)?,
        tenant_id: TenantId::from_trusted(r.get(1)?),
        at: parse_time(r.get(2)?)?,
        actor_kind: r.get(3)?,
        actor_id: r.get(4)?,
        action: r.get(5)?,
        target_type: r.get(6)?,
        target_id: r.get(7)?,
        target_name: r.get(8)?,
        changes: serde_json::from_str(&changes).unwrap_or(serde_json::Value::Null),
        user_agent: r.get(10)?,
        request_id: r.get(11)?,
    })
}
