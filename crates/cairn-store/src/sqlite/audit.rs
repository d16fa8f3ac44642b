//! SQLite side of the audit log: entries without a row change of their
//! own, the SCIM audit listing and the dashboard's activity view.

use super::*;
use async_trait::async_trait;
use cairn_core::audit::{AuditDraft, AuditEvent, AuditQuery};
use cairn_core::dashboard::{ActivityFilter, DayCount};
use cairn_core::ids::{fold_case, TenantId};
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

    async fn list_audit(&self, tenant: &TenantId, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let t = tenant.to_string();
        let q = query.clone();
        self.read(move |c| {
            let mut sql = String::from(
                "SELECT id, tenant_id, at, actor_kind, actor_id, action, target_type, target_id, target_name,
                        changes, user_agent, request_id
                 FROM audit_events WHERE tenant_id = ?",
            );
            let mut params: Vec<SqlValue> = vec![SqlValue::Text(t)];
            if let Some(target) = q.target_id {
                sql.push_str(" AND target_id = ?");
                params.push(SqlValue::Text(target));
            }
            if let Some(action) = q.action {
                sql.push_str(" AND action = ?");
                params.push(SqlValue::Text(action.as_str().into()));
            }
            sql.push_str(" ORDER BY id DESC LIMIT ?");
            let limit = if q.limit == 0 { 1000 } else { q.limit };
            params.push(SqlValue::Integer(i64::from(limit)));
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(params_from_iter(params.iter()), |r| {
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
            })?;
            rows.collect()
        })
        .await
    }

    async fn list_activity(
        &self,
        tenant: &TenantId,
        f: &ActivityFilter,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        let (mut sql, mut params) = activity_where(tenant.as_str(), f);
        if let Some(b) = before_id {
            sql.push_str(" AND e.id < ?");
            params.push(SqlValue::Integer(b));
        }
        params.push(SqlValue::Integer(i64::from(limit.max(1))));
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT e.id, e.tenant_id, e.at, e.actor_kind, e.actor_id, e.action, e.target_type,
                        e.target_id, e.target_name, e.changes, e.user_agent, e.request_id
                 FROM audit_events e WHERE {sql} ORDER BY e.id DESC LIMIT ?"
            ))?
            .query_map(params_from_iter(params.iter()), event_from_row)?
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
        let (sql, mut params) = activity_where(tenant.as_str(), f);
        params.push(SqlValue::Text(ts(since)));
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT substr(e.at, 1, 10) AS day, e.action, COUNT(*) FROM audit_events e
                 WHERE {sql} AND e.at >= ? GROUP BY day, e.action ORDER BY day"
            ))?
            .query_map(params_from_iter(params.iter()), |r| {
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
        let t = tenant.to_string();
        self.read(move |c| {
            // Bounded: only the most recent events are looked at.
            c.prepare_cached(
                "SELECT DISTINCT user_agent FROM (SELECT user_agent FROM audit_events
                 WHERE tenant_id = ? AND actor_kind = 'token' ORDER BY id DESC LIMIT 5000)
                 WHERE user_agent IS NOT NULL ORDER BY user_agent LIMIT 50",
            )?
            .query_map([t], |r| r.get(0))?
            .collect()
        })
        .await
    }
}

/// The WHERE clause (after the tenant) shared by the activity list and the chart.
fn activity_where(tenant: &str, f: &ActivityFilter) -> (String, Vec<SqlValue>) {
    let mut sql = String::from("e.tenant_id = ?");
    let mut params = vec![SqlValue::Text(tenant.to_owned())];
    if let Some(id) = &f.target_id {
        sql.push_str(" AND e.target_id = ?");
        params.push(SqlValue::Text(id.clone()));
    }
    if let Some(name) = &f.account_name {
        // Live and soft-deleted accounts are found by folded userName through the users
        // table; purged ones only by the name recorded in the event.
        sql.push_str(
            " AND e.target_type = 'user' AND (e.target_id IN (SELECT id FROM users \
             WHERE tenant_id = ? AND user_name_fold = ?) OR e.target_name = ?)",
        );
        params.push(SqlValue::Text(tenant.to_owned()));
        params.push(SqlValue::Text(fold_case(name.trim())));
        params.push(SqlValue::Text(name.trim().to_owned()));
    }
    if let Some(a) = f.action {
        sql.push_str(" AND e.action = ?");
        params.push(SqlValue::Text(a.as_str().to_owned()));
    }
    if let Some(c) = &f.client {
        sql.push_str(" AND e.user_agent = ?");
        params.push(SqlValue::Text(c.clone()));
    }
    (sql, params)
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
