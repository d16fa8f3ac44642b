//! SQLite side of the provisioning inspector's request log (`scim_request_batches`, one
//! row per tenant and batch: see `crate::reqlog`) and the body-capture switch
//! (`scim_request_capture`).

use super::*;
use crate::reqlog::{self, Encoded, Health, Listing};
use cairn_core::requests::{RequestEntry, RequestFilter, TokenHealth};

/// A batch that cannot be decoded, as a read error.
fn blob_err(e: Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Blob, Box::new(e))
}

fn blob<'r>(r: &'r Row, i: usize) -> rusqlite::Result<&'r [u8]> {
    r.get_ref(i)?.as_blob().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, Box::new(e))
    })
}

/// Replaces the batch `last_id` by what a trim left of it, or deletes it.
fn replace_batch(c: &Connection, last_id: i64, new: Option<&Encoded>) -> rusqlite::Result<()> {
    match new {
        None => {
            c.prepare_cached("DELETE FROM scim_request_batches WHERE last_id = ?")?
                .execute(params![last_id])?;
        }
        Some(g) => {
            c.prepare_cached(
                "UPDATE scim_request_batches SET last_id = ?, first_id = ?, oldest_at = ?,
                     newest_at = ?, entries_count = ?, entries = ?
                 WHERE last_id = ?",
            )?
            .execute(params![
                g.last_id,
                g.first_id,
                g.oldest_at(),
                g.newest_at(),
                g.count,
                g.blob,
                last_id
            ])?;
        }
    }
    Ok(())
}

#[async_trait]
impl RequestLogStore for SqliteStore {
    async fn record_batches(&self, groups: Vec<Encoded>) -> Result<()> {
        let n: i64 = groups.iter().map(|g| g.count).sum();
        if n == 0 {
            return Ok(());
        }
        // Timestamps formatted here, not on the writer thread that every SCIM write
        // waits for: there only the ids are filled in and one row per tenant inserted.
        let groups: Vec<(Encoded, String, String)> = groups
            .into_iter()
            .map(|g| {
                let (oldest, newest) = (g.oldest_at(), g.newest_at());
                (g, oldest, newest)
            })
            .collect();
        self.writer
            .write(move |c| {
                db((|| {
                    let first: i64 = c
                        .prepare_cached(
                            "INSERT INTO scim_request_ids (id, next_id) VALUES (1, 1 + ?1)
                             ON CONFLICT (id) DO UPDATE SET next_id = next_id + ?1
                             RETURNING next_id - ?1",
                        )?
                        .query_row(params![n], |r| r.get(0))?;
                    let mut st = c.prepare_cached(
                        "INSERT INTO scim_request_batches (last_id, tenant_id, first_id,
                             oldest_at, newest_at, entries_count, entries)
                         VALUES (?, ?, ?, ?, ?, ?, ?)",
                    )?;
                    for (mut g, oldest, newest) in groups {
                        g.rebase(first);
                        st.execute(params![
                            g.last_id,
                            g.tenant_id,
                            g.first_id,
                            oldest,
                            newest,
                            g.count,
                            g.blob
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
        let t = tenant.clone();
        let f = f.clone();
        self.read(move |c| {
            let mut l = Listing::new(&f);
            // Newest batch first; batches entirely after `before_id` or before `since`
            // are skipped without decoding.
            let mut st = c.prepare_cached(
                "SELECT last_id, entries FROM scim_request_batches
                 WHERE tenant_id = ? AND first_id < ? AND newest_at >= ?
                 ORDER BY last_id DESC",
            )?;
            let mut rows = st.query(params![
                t.as_str(),
                f.before_id.unwrap_or(i64::MAX),
                f.since.map(ts).unwrap_or_default()
            ])?;
            while let Some(r) = rows.next()? {
                if !l.wants(r.get(0)?) {
                    break;
                }
                l.add(&t, blob(r, 1)?).map_err(blob_err)?;
            }
            Ok(l.finish())
        })
        .await
    }

    async fn prune_requests(&self, before: OffsetDateTime, keep_per_tenant: u32) -> Result<u64> {
        let before_ts = ts(before);
        let keep = i64::from(keep_per_tenant);
        self.writer
            .write(move |c| {
                db((|| {
                    // By age: whole batches first, then the entries of those that straddle
                    // the limit (their rows are rewritten without them).
                    let mut gone: i64 = c.query_row(
                        "SELECT COALESCE(SUM(entries_count), 0) FROM scim_request_batches
                         WHERE newest_at < ?",
                        params![before_ts],
                        |r| r.get(0),
                    )?;
                    c.execute(
                        "DELETE FROM scim_request_batches WHERE newest_at < ?",
                        params![before_ts],
                    )?;
                    let straddling: Vec<(i64, String, i64, Vec<u8>)> = c
                        .prepare(
                            "SELECT last_id, tenant_id, entries_count, entries
                             FROM scim_request_batches WHERE oldest_at < ?",
                        )?
                        .query_map(params![before_ts], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                        })?
                        .collect::<rusqlite::Result<_>>()?;
                    for (last_id, tenant, count, b) in straddling {
                        let new =
                            reqlog::trim(&tenant, &b, |e| e.at() >= before).map_err(blob_err)?;
                        gone += count - new.as_ref().map_or(0, |g| g.count);
                        replace_batch(c, last_id, new.as_ref())?;
                    }
                    // By count: per tenant, the newest `keep` entries; the batch where the
                    // count is reached keeps its newest entries, older batches go.
                    let over: Vec<(i64, String, i64, i64)> = c
                        .prepare(
                            "SELECT last_id, tenant_id, entries_count, running FROM (
                                 SELECT last_id, tenant_id, entries_count,
                                     SUM(entries_count) OVER (PARTITION BY tenant_id
                                         ORDER BY last_id DESC) AS running
                                 FROM scim_request_batches)
                             WHERE running > ?",
                        )?
                        .query_map(params![keep], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                        })?
                        .collect::<rusqlite::Result<_>>()?;
                    for (last_id, tenant, count, running) in over {
                        let newer = running - count;
                        if newer >= keep {
                            replace_batch(c, last_id, None)?;
                            gone += count;
                            continue;
                        }
                        let b: Vec<u8> = c.query_row(
                            "SELECT entries FROM scim_request_batches WHERE last_id = ?",
                            params![last_id],
                            |r| r.get(0),
                        )?;
                        let new = reqlog::keep_newest(&tenant, &b, (keep - newer) as usize)
                            .map_err(blob_err)?;
                        gone += count - new.as_ref().map_or(0, |g| g.count);
                        replace_batch(c, last_id, new.as_ref())?;
                    }
                    Ok(gone.max(0) as u64)
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
        self.read(move |c| {
            let mut h = Health::default();
            let mut st =
                c.prepare_cached("SELECT entries FROM scim_request_batches WHERE tenant_id = ?")?;
            let mut rows = st.query(params![t])?;
            while let Some(r) = rows.next()? {
                h.add(blob(r, 0)?, since).map_err(blob_err)?;
            }
            Ok(h.finish())
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
