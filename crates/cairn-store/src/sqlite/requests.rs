//! SQLite side of the provisioning inspector's request log (`scim_requests`) and the
//! body-capture switch (`scim_request_capture`).

use super::*;
use cairn_core::requests::{Client, RequestEntry, RequestFilter, TokenHealth};
use std::collections::HashMap;

const COLS: &str = "id, tenant_id, at, token_id, method, path, client, dialect, user_agent, \
    status, scim_type, error, latency_us, resource_type, resource_id, notes, request_body, \
    response_body";

fn entry_from_row(r: &Row) -> rusqlite::Result<RequestEntry> {
    let notes: String = r.get(15)?;
    let client: String = r.get(6)?;
    Ok(RequestEntry {
        id: r.get(0)?,
        tenant_id: TenantId::from_trusted(r.get(1)?),
        at: parse_time(r.get(2)?)?,
        token_id: r.get(3)?,
        method: r.get(4)?,
        path: r.get(5)?,
        client: Client::parse(&client).unwrap_or(Client::Other),
        dialect: r.get(7)?,
        user_agent: r.get(8)?,
        status: u16::try_from(r.get::<_, i64>(9)?).unwrap_or(0),
        scim_type: r.get(10)?,
        error: r.get(11)?,
        latency_us: r.get(12)?,
        resource_type: r.get(13)?,
        resource_id: r.get(14)?,
        notes: serde_json::from_str(&notes).unwrap_or_default(),
        request_body: r.get(16)?,
        response_body: r.get(17)?,
    })
}

/// `notes` as the JSON array the column holds; the common empty case without serde.
fn notes_json(notes: &[String], out: &mut String) {
    if notes.is_empty() {
        out.push_str("[]");
    } else {
        out.push_str(&serde_json::to_string(notes).unwrap_or_else(|_| "[]".into()));
    }
}

#[async_trait]
impl RequestLogStore for SqliteStore {
    async fn record_requests(&self, entries: Vec<RequestEntry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.writer
            .write(move |c| {
                db((|| {
                    let mut st = c.prepare_cached(
                        "INSERT INTO scim_requests (tenant_id, at, token_id, method, path, client,
                             dialect, user_agent, status, scim_type, error, latency_us,
                             resource_type, resource_id, notes, request_body, response_body)
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    )?;
                    let mut notes = String::new();
                    for e in &entries {
                        notes.clear();
                        notes_json(&e.notes, &mut notes);
                        st.execute(params![
                            e.tenant_id.as_str(),
                            ts(e.at),
                            e.token_id,
                            e.method,
                            e.path,
                            e.client.as_str(),
                            e.dialect,
                            e.user_agent,
                            i64::from(e.status),
                            e.scim_type,
                            e.error,
                            e.latency_us,
                            e.resource_type,
                            e.resource_id,
                            notes,
                            e.request_body,
                            e.response_body,
                        ])?;
                    }
                    Ok(())
                })())
            })
            .await
    }

    async fn list_requests(
        &self,
        tenant: &TenantId,
        f: &RequestFilter,
    ) -> Result<Vec<RequestEntry>> {
        let mut sql = format!("SELECT {COLS} FROM scim_requests WHERE tenant_id = ?");
        let mut p: Vec<SqlValue> = vec![SqlValue::Text(tenant.to_string())];
        if let Some(c) = f.client {
            sql.push_str(" AND client = ?");
            p.push(SqlValue::Text(c.as_str().into()));
        }
        if let Some(class) = f.status_class {
            sql.push_str(" AND status >= ? AND status < ?");
            p.push(SqlValue::Integer(i64::from(class) * 100));
            p.push(SqlValue::Integer(i64::from(class) * 100 + 100));
        }
        if let Some(s) = f.status {
            sql.push_str(" AND status = ?");
            p.push(SqlValue::Integer(i64::from(s)));
        }
        if let Some(r) = &f.resource_id {
            sql.push_str(" AND resource_id = ?");
            p.push(SqlValue::Text(r.clone()));
        }
        if let Some(s) = f.since {
            sql.push_str(" AND at >= ?");
            p.push(SqlValue::Text(ts(s)));
        }
        if let Some(b) = f.before_id {
            sql.push_str(" AND id < ?");
            p.push(SqlValue::Integer(b));
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        let limit = if f.limit == 0 {
            cairn_core::requests::PAGE
        } else {
            f.limit
        };
        p.push(SqlValue::Integer(i64::from(limit)));
        self.read(move |c| {
            c.prepare_cached(&sql)?
                .query_map(params_from_iter(p.iter()), entry_from_row)?
                .collect()
        })
        .await
    }

    async fn prune_requests(&self, before: OffsetDateTime, keep_per_tenant: u32) -> Result<u64> {
        let before = ts(before);
        self.writer
            .write(move |c| {
                db((|| {
                    let old =
                        c.execute("DELETE FROM scim_requests WHERE at < ?", params![before])?;
                    let over = c.execute(
                        "DELETE FROM scim_requests WHERE id IN (
                             SELECT id FROM (
                                 SELECT id, ROW_NUMBER() OVER (
                                     PARTITION BY tenant_id ORDER BY id DESC) AS n
                                 FROM scim_requests)
                             WHERE n > ?)",
                        params![i64::from(keep_per_tenant)],
                    )?;
                    Ok((old + over) as u64)
                })())
            })
            .await
    }

    async fn token_health(
        &self,
        tenant: &TenantId,
        since: OffsetDateTime,
    ) -> Result<Vec<TokenHealth>> {
        let t = tenant.to_string();
        let since = ts(since);
        self.read(move |c| {
            let mut by_token: HashMap<String, TokenHealth> = HashMap::new();
            let mut st = c.prepare_cached(
                "SELECT token_id, MAX(at) FROM scim_requests
                 WHERE tenant_id = ? AND token_id IS NOT NULL GROUP BY token_id",
            )?;
            for row in st.query_map(params![t], |r| {
                Ok((r.get::<_, String>(0)?, parse_time(r.get(1)?)?))
            })? {
                let (token, at) = row?;
                by_token.entry(token.clone()).or_default().last_request_at = Some(at);
            }
            let mut st = c.prepare_cached(
                "SELECT token_id, at, client FROM scim_requests WHERE id IN (
                     SELECT MAX(id) FROM scim_requests
                     WHERE tenant_id = ? AND token_id IS NOT NULL AND status < 400
                     GROUP BY token_id)",
            )?;
            for row in st.query_map(params![t], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    parse_time(r.get(1)?)?,
                    r.get::<_, String>(2)?,
                ))
            })? {
                let (token, at, client) = row?;
                let h = by_token.entry(token).or_default();
                h.last_success_at = Some(at);
                h.last_success_client = Client::parse(&client);
            }
            let mut st = c.prepare_cached(
                "SELECT token_id, status, scim_type, COUNT(*) FROM scim_requests
                 WHERE tenant_id = ? AND token_id IS NOT NULL AND at >= ?
                 GROUP BY token_id, status, scim_type",
            )?;
            let mut groups = Vec::new();
            for row in st.query_map(params![t, since], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })? {
                groups.push(row?);
            }
            Ok(cairn_core::requests::health_of(by_token, groups))
        })
        .await
    }

    async fn set_body_capture(
        &self,
        tenant: &TenantId,
        until: Option<OffsetDateTime>,
        audit: AuditDraft,
    ) -> Result<()> {
        let t = tenant.to_string();
        let until = until.map(ts);
        self.writer
            .write(move |c| {
                db((|| {
                    match &until {
                        Some(u) => c.execute(
                            "INSERT INTO scim_request_capture (tenant_id, until) VALUES (?, ?)
                             ON CONFLICT (tenant_id) DO UPDATE SET until = excluded.until",
                            params![t, u],
                        )?,
                        None => c.execute(
                            "DELETE FROM scim_request_capture WHERE tenant_id = ?",
                            params![t],
                        )?,
                    };
                    insert_audit(c, &audit)
                })())
            })
            .await
    }

    async fn body_captures(&self, now: OffsetDateTime) -> Result<Vec<(TenantId, OffsetDateTime)>> {
        let now = ts(now);
        self.read(move |c| {
            c.prepare_cached("SELECT tenant_id, until FROM scim_request_capture WHERE until > ?")?
                .query_map(params![now], |r| {
                    Ok((TenantId::from_trusted(r.get(0)?), parse_time(r.get(1)?)?))
                })?
                .collect()
        })
        .await
    }
}
