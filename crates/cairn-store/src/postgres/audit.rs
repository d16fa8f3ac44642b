//! PostgreSQL side of the audit log: entries without a row change of their
//! own, the SCIM audit listing and the dashboard's activity view.

use super::*;
use async_trait::async_trait;
use cairn_core::audit::{AuditDraft, AuditEvent, AuditQuery};
use cairn_core::dashboard::{ActivityFilter, DayCount};
use cairn_core::ids::{fold_case, TenantId};
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

    async fn list_audit(&self, tenant: &TenantId, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let mut sql = Sql::default();
        let t = sql.bind(Box::new(tenant.to_string()));
        sql.text = format!(
            "SELECT id, tenant_id, at, actor_kind, actor_id, action, target_type, target_id, target_name,
                    changes, user_agent, request_id
             FROM audit_events WHERE tenant_id = {t}"
        );
        if let Some(target) = &q.target_id {
            let p = sql.bind(Box::new(target.clone()));
            sql.text.push_str(&format!(" AND target_id = {p}"));
        }
        if let Some(action) = q.action {
            let p = sql.bind(Box::new(action.as_str().to_owned()));
            sql.text.push_str(&format!(" AND action = {p}"));
        }
        let limit = if q.limit == 0 { 1000 } else { q.limit };
        let p = sql.bind(Box::new(i64::from(limit)));
        sql.text.push_str(&format!(" ORDER BY id DESC LIMIT {p}"));
        let rows = c
            .query(&sql.text, &refs(&sql.params))
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|r| {
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
            })
            .collect()
    }

    async fn list_activity(
        &self,
        tenant: &TenantId,
        f: &ActivityFilter,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let mut sql = Sql::default();
        activity_where(&mut sql, tenant.as_str(), f);
        if let Some(b) = before_id {
            let p = sql.bind(Box::new(b));
            sql.text.push_str(&format!(" AND e.id < {p}"));
        }
        let l = sql.bind(Box::new(i64::from(limit.max(1))));
        let text = format!(
            "SELECT e.id, e.tenant_id, e.at, e.actor_kind, e.actor_id, e.action, e.target_type,
                    e.target_id, e.target_name, e.changes, e.user_agent, e.request_id
             FROM audit_events e WHERE {} ORDER BY e.id DESC LIMIT {l}",
            sql.text
        );
        let rows = c.query(&text, &refs(&sql.params)).await.map_err(map_err)?;
        rows.iter().map(event_from_row).collect()
    }

    async fn activity_per_day(
        &self,
        tenant: &TenantId,
        f: &ActivityFilter,
        since: OffsetDateTime,
    ) -> Result<Vec<DayCount>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let mut sql = Sql::default();
        activity_where(&mut sql, tenant.as_str(), f);
        let s = sql.bind(Box::new(ts(since)));
        let text = format!(
            "SELECT substr(e.at, 1, 10) AS day, e.action, COUNT(*) FROM audit_events e
             WHERE {} AND e.at >= {s} GROUP BY day, e.action ORDER BY day",
            sql.text
        );
        let rows = c.query(&text, &refs(&sql.params)).await.map_err(map_err)?;
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
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                "SELECT DISTINCT user_agent FROM (SELECT user_agent FROM audit_events
                 WHERE tenant_id = $1 AND actor_kind = 'token' ORDER BY id DESC LIMIT 5000) recent
                 WHERE user_agent IS NOT NULL ORDER BY user_agent LIMIT 50",
                &[&tenant.as_str()],
            )
            .await
            .map_err(map_err)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

fn activity_where(sql: &mut Sql, tenant: &str, f: &ActivityFilter) {
    let t = sql.bind(Box::new(tenant.to_owned()));
    sql.text.push_str(&format!("e.tenant_id = {t}"));
    if let Some(id) = &f.target_id {
        let p = sql.bind(Box::new(id.clone()));
        sql.text.push_str(&format!(" AND e.target_id = {p}"));
    }
    if let Some(name) = &f.account_name {
        let fold = sql.bind(Box::new(fold_case(name.trim())));
        let exact = sql.bind(Box::new(name.trim().to_owned()));
        sql.text.push_str(&format!(
            " AND e.target_type = 'user' AND (e.target_id IN (SELECT id FROM users \
             WHERE tenant_id = {t} AND user_name_fold = {fold}) OR e.target_name = {exact})"
        ));
    }
    if let Some(a) = f.action {
        let p = sql.bind(Box::new(a.as_str().to_owned()));
        sql.text.push_str(&format!(" AND e.action = {p}"));
    }
    if let Some(c) = &f.client {
        let p = sql.bind(Box::new(c.clone()));
        sql.text.push_str(&format!(" AND e.user_agent = {p}"));
    }
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
