//! PostgreSQL side of the provisioning inspector's request log (`scim_request_batches`,
//! one row per tenant and batch: see `crate::reqlog`) and the body-capture switch
//! (`scim_request_capture`).

use super::*;
use crate::reqlog::{self, Encoded, Health, Listing};
use cairn_core::requests::{RequestEntry, RequestFilter, TokenHealth};

/// Batches read per query while listing (newest first, until the page is full).
const LIST_CHUNK: i64 = 16;

/// Replaces the batch `last_id` by what a trim left of it, or deletes it.
async fn replace_batch(c: &impl GenericClient, last_id: i64, new: Option<&Encoded>) -> Result<()> {
    match new {
        None => {
            c.execute(
                "DELETE FROM scim_request_batches WHERE last_id = $1",
                &[&last_id],
            )
            .await
        }
        Some(g) => {
            c.execute(
                "UPDATE scim_request_batches SET last_id = $1, first_id = $2, oldest_at = $3,
                     newest_at = $4, entries_count = $5, entries = $6
                 WHERE last_id = $7",
                &[
                    &g.last_id,
                    &g.first_id,
                    &g.oldest_at(),
                    &g.newest_at(),
                    &g.count,
                    &g.blob,
                    &last_id,
                ],
            )
            .await
        }
    }
    .map_err(map_err)?;
    Ok(())
}

#[async_trait]
impl RequestLogStore for PostgresStore {
    async fn record_batches(&self, groups: Vec<Encoded>) -> Result<()> {
        let n: i64 = groups.iter().map(|g| g.count).sum();
        if n == 0 {
            return Ok(());
        }
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        // The counter's row stays locked until the commit, so the batches of instances
        // sharing the database get their ids in the order they commit.
        let first: i64 = tx
            .query_one(
                "INSERT INTO scim_request_ids (id, next_id) VALUES (1, 1 + $1::bigint)
                 ON CONFLICT (id) DO UPDATE
                     SET next_id = scim_request_ids.next_id + $1::bigint
                 RETURNING next_id - $1::bigint",
                &[&n],
            )
            .await
            .map_err(map_err)?
            .get(0);
        for mut g in groups {
            g.rebase(first);
            tx.execute(
                "INSERT INTO scim_request_batches (last_id, tenant_id, first_id, oldest_at,
                     newest_at, entries_count, entries)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &g.last_id,
                    &g.tenant_id,
                    &g.first_id,
                    &g.oldest_at(),
                    &g.newest_at(),
                    &g.count,
                    &g.blob,
                ],
            )
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn list_requests(
        &self,
        tenant: &TenantId,
        f: &RequestFilter,
    ) -> Result<Vec<RequestEntry>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let mut l = Listing::new(f);
        let t = tenant.as_str();
        let before = f.before_id.unwrap_or(i64::MAX);
        let since = f.since.map(ts).unwrap_or_default();
        // Newest batch first, a few at a time, until the page is full; batches entirely
        // after `before_id` or before `since` are skipped without reading them.
        let mut below = i64::MAX;
        'chunks: loop {
            let rows = c
                .query(
                    "SELECT last_id, entries FROM scim_request_batches
                     WHERE tenant_id = $1 AND first_id < $2 AND newest_at >= $3
                         AND last_id < $4
                     ORDER BY last_id DESC LIMIT $5",
                    &[&t, &before, &since, &below, &LIST_CHUNK],
                )
                .await
                .map_err(map_err)?;
            for r in &rows {
                let last_id: i64 = r.get(0);
                if !l.wants(last_id) {
                    break 'chunks;
                }
                l.add(tenant, r.get(1))?;
                below = last_id;
            }
            if (rows.len() as i64) < LIST_CHUNK {
                break;
            }
        }
        Ok(l.finish())
    }

    async fn prune_requests(&self, before: OffsetDateTime, keep_per_tenant: u32) -> Result<u64> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let before_ts = ts(before);
        let keep = i64::from(keep_per_tenant);
        // By age: whole batches first, then the entries of those that straddle the limit
        // (their rows are rewritten without them).
        let mut gone: i64 = tx
            .query(
                "DELETE FROM scim_request_batches WHERE newest_at < $1 RETURNING entries_count",
                &[&before_ts],
            )
            .await
            .map_err(map_err)?
            .iter()
            .map(|r| r.get::<_, i64>(0))
            .sum();
        let straddling = tx
            .query(
                "SELECT last_id, tenant_id, entries_count, entries
                 FROM scim_request_batches WHERE oldest_at < $1",
                &[&before_ts],
            )
            .await
            .map_err(map_err)?;
        for r in &straddling {
            let (last_id, tenant, count): (i64, &str, i64) = (r.get(0), r.get(1), r.get(2));
            let new = reqlog::trim(tenant, r.get(3), |e| e.at() >= before)?;
            gone += count - new.as_ref().map_or(0, |g| g.count);
            replace_batch(&*tx, last_id, new.as_ref()).await?;
        }
        // By count: per tenant, the newest `keep` entries; the batch where the count is
        // reached keeps its newest entries, older batches go.
        let over = tx
            .query(
                "SELECT last_id, tenant_id, entries_count, running FROM (
                     SELECT last_id, tenant_id, entries_count,
                         SUM(entries_count) OVER (PARTITION BY tenant_id
                             ORDER BY last_id DESC)::bigint AS running
                     FROM scim_request_batches) ranked
                 WHERE running > $1",
                &[&keep],
            )
            .await
            .map_err(map_err)?;
        for r in &over {
            let (last_id, tenant, count, running): (i64, &str, i64, i64) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            let newer = running - count;
            if newer >= keep {
                replace_batch(&*tx, last_id, None).await?;
                gone += count;
                continue;
            }
            let b: Vec<u8> = tx
                .query_one(
                    "SELECT entries FROM scim_request_batches WHERE last_id = $1",
                    &[&last_id],
                )
                .await
                .map_err(map_err)?
                .get(0);
            let new = reqlog::keep_newest(tenant, &b, (keep - newer) as usize)?;
            gone += count - new.as_ref().map_or(0, |g| g.count);
            replace_batch(&*tx, last_id, new.as_ref()).await?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(gone.max(0) as u64)
    }

    async fn token_health(
        &self,
        tenant: &TenantId,
        since: OffsetDateTime,
    ) -> Result<Vec<TokenHealth>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let mut h = Health::default();
        for r in c
            .query(
                "SELECT entries FROM scim_request_batches WHERE tenant_id = $1",
                &[&tenant.as_str()],
            )
            .await
            .map_err(map_err)?
        {
            h.add(r.get(0), since)?;
        }
        Ok(h.finish())
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
