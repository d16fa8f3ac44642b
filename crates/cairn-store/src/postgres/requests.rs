//! PostgreSQL side of the provisioning inspector's request log (`scim_requests`) and the
//! body-capture switch (`scim_request_capture`).

use super::*;
use cairn_core::requests::{health_of, Client, RequestEntry, RequestFilter, TokenHealth};
use std::collections::HashMap;

const COLS: &str = "id, tenant_id, at, token_id, method, path, client, dialect, user_agent, \
    status, scim_type, error, latency_us, resource_type, resource_id, notes, request_body, \
    response_body";

fn entry_from_row(r: &Row) -> Result<RequestEntry> {
    let notes: String = r.get(15);
    let client: String = r.get(6);
    Ok(RequestEntry {
        id: r.get(0),
        tenant_id: TenantId::from_trusted(r.get(1)),
        at: time_of(r.get(2))?,
        token_id: r.get(3),
        method: r.get(4),
        path: r.get(5),
        client: Client::parse(&client).unwrap_or(Client::Other),
        dialect: r.get(7),
        user_agent: r.get(8),
        status: u16::try_from(r.get::<_, i64>(9)).unwrap_or(0),
        scim_type: r.get(10),
        error: r.get(11),
        latency_us: r.get(12),
        resource_type: r.get(13),
        resource_id: r.get(14),
        notes: serde_json::from_str(&notes).unwrap_or_default(),
        request_body: r.get(16),
        response_body: r.get(17),
    })
}

#[async_trait]
impl RequestLogStore for PostgresStore {
    async fn record_requests(&self, entries: Vec<RequestEntry>) -> Result<()> {
        let entries = &entries[..];
        if entries.is_empty() {
            return Ok(());
        }
        // One statement for the whole batch (one round trip): a column array each.
        let col = |f: &dyn Fn(&RequestEntry) -> Option<String>| -> Vec<Option<String>> {
            entries.iter().map(f).collect()
        };
        let tenant = col(&|e| Some(e.tenant_id.to_string()));
        let at = col(&|e| Some(ts(e.at)));
        let token = col(&|e| e.token_id.clone());
        let method = col(&|e| Some(e.method.clone()));
        let path = col(&|e| Some(e.path.clone()));
        let client = col(&|e| Some(e.client.as_str().to_owned()));
        let dialect = col(&|e| e.dialect.clone());
        let ua = col(&|e| e.user_agent.clone());
        let status: Vec<i64> = entries.iter().map(|e| i64::from(e.status)).collect();
        let scim_type = col(&|e| e.scim_type.clone());
        let error = col(&|e| e.error.clone());
        let latency: Vec<i64> = entries.iter().map(|e| e.latency_us).collect();
        let rtype = col(&|e| e.resource_type.clone());
        let rid = col(&|e| e.resource_id.clone());
        let notes = col(&|e| Some(serde_json::to_string(&e.notes).unwrap_or_else(|_| "[]".into())));
        let req = col(&|e| e.request_body.clone());
        let resp = col(&|e| e.response_body.clone());
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "INSERT INTO scim_requests (tenant_id, at, token_id, method, path, client,
                 dialect, user_agent, status, scim_type, error, latency_us,
                 resource_type, resource_id, notes, request_body, response_body)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[],
                 $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[], $10::text[],
                 $11::text[], $12::bigint[], $13::text[], $14::text[], $15::text[],
                 $16::text[], $17::text[])",
            &[
                &tenant, &at, &token, &method, &path, &client, &dialect, &ua, &status, &scim_type,
                &error, &latency, &rtype, &rid, &notes, &req, &resp,
            ],
        )
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn list_requests(
        &self,
        tenant: &TenantId,
        f: &RequestFilter,
    ) -> Result<Vec<RequestEntry>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let mut sql = Sql::default();
        let t = sql.bind(Box::new(tenant.to_string()));
        sql.text = format!("SELECT {COLS} FROM scim_requests WHERE tenant_id = {t}");
        if let Some(client) = f.client {
            let p = sql.bind(Box::new(client.as_str().to_owned()));
            sql.text.push_str(&format!(" AND client = {p}"));
        }
        if let Some(class) = f.status_class {
            let lo = sql.bind(Box::new(i64::from(class) * 100));
            let hi = sql.bind(Box::new(i64::from(class) * 100 + 100));
            sql.text
                .push_str(&format!(" AND status >= {lo} AND status < {hi}"));
        }
        if let Some(s) = f.status {
            let p = sql.bind(Box::new(i64::from(s)));
            sql.text.push_str(&format!(" AND status = {p}"));
        }
        if let Some(r) = &f.resource_id {
            let p = sql.bind(Box::new(r.clone()));
            sql.text.push_str(&format!(" AND resource_id = {p}"));
        }
        if let Some(s) = f.since {
            let p = sql.bind(Box::new(ts(s)));
            sql.text.push_str(&format!(" AND at >= {p}"));
        }
        if let Some(b) = f.before_id {
            let p = sql.bind(Box::new(b));
            sql.text.push_str(&format!(" AND id < {p}"));
        }
        let limit = if f.limit == 0 {
            cairn_core::requests::PAGE
        } else {
            f.limit
        };
        let p = sql.bind(Box::new(i64::from(limit)));
        sql.text.push_str(&format!(" ORDER BY id DESC LIMIT {p}"));
        let rows = c
            .query(&sql.text, &refs(&sql.params))
            .await
            .map_err(map_err)?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn prune_requests(&self, before: OffsetDateTime, keep_per_tenant: u32) -> Result<u64> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let old = c
            .execute("DELETE FROM scim_requests WHERE at < $1", &[&ts(before)])
            .await
            .map_err(map_err)?;
        let over = c
            .execute(
                "DELETE FROM scim_requests WHERE id IN (
                     SELECT id FROM (
                         SELECT id, ROW_NUMBER() OVER (
                             PARTITION BY tenant_id ORDER BY id DESC) AS n
                         FROM scim_requests) ranked
                     WHERE n > $1)",
                &[&i64::from(keep_per_tenant)],
            )
            .await
            .map_err(map_err)?;
        Ok(old + over)
    }

    async fn token_health(
        &self,
        tenant: &TenantId,
        since: OffsetDateTime,
    ) -> Result<Vec<TokenHealth>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let t = tenant.as_str();
        let mut by_token: HashMap<String, TokenHealth> = HashMap::new();
        for r in c
            .query(
                "SELECT token_id, MAX(at) FROM scim_requests
                 WHERE tenant_id = $1 AND token_id IS NOT NULL GROUP BY token_id",
                &[&t],
            )
            .await
            .map_err(map_err)?
        {
            by_token.entry(r.get(0)).or_default().last_request_at = Some(time_of(r.get(1))?);
        }
        for r in c
            .query(
                "SELECT token_id, at, client FROM scim_requests WHERE id IN (
                     SELECT MAX(id) FROM scim_requests
                     WHERE tenant_id = $1 AND token_id IS NOT NULL AND status < 400
                     GROUP BY token_id)",
                &[&t],
            )
            .await
            .map_err(map_err)?
        {
            let h = by_token.entry(r.get(0)).or_default();
            h.last_success_at = Some(time_of(r.get(1))?);
            h.last_success_client = Client::parse(r.get(2));
        }
        let groups = c
            .query(
                "SELECT token_id, status, scim_type, COUNT(*) FROM scim_requests
                 WHERE tenant_id = $1 AND token_id IS NOT NULL AND at >= $2
                 GROUP BY token_id, status, scim_type",
                &[&t, &ts(since)],
            )
            .await
            .map_err(map_err)?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        Ok(health_of(by_token, groups))
    }

    async fn set_body_capture(
        &self,
        tenant: &TenantId,
        until: Option<OffsetDateTime>,
        audit: AuditDraft,
    ) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let t = tenant.as_str();
        match until {
            Some(u) => {
                let u = ts(u);
                tx.execute(
                    "INSERT INTO scim_request_capture (tenant_id, until) VALUES ($1, $2)
                     ON CONFLICT (tenant_id) DO UPDATE SET until = excluded.until",
                    &[&t, &u],
                )
                .await
            }
            None => {
                tx.execute(
                    "DELETE FROM scim_request_capture WHERE tenant_id = $1",
                    &[&t],
                )
                .await
            }
        }
        .map_err(map_err)?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn body_captures(&self, now: OffsetDateTime) -> Result<Vec<(TenantId, OffsetDateTime)>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.query(
            "SELECT tenant_id, until FROM scim_request_capture WHERE until > $1",
            &[&ts(now)],
        )
        .await
        .map_err(map_err)?
        .iter()
        .map(|r| Ok((TenantId::from_trusted(r.get(0)), time_of(r.get(1))?)))
        .collect()
    }
}
