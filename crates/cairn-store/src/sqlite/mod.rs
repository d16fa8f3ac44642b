//! The embedded SQLite backend: connection plumbing (one writer thread, pooled readers),
//! row mapping shared by the aggregates, and list planning. Each aggregate's `Store` trait
//! is implemented in its own file.

/// The columns `user_from_row` reads, as a literal so that the hot reads' SQL is
/// assembled at compile time (`concat!`) rather than by `format!` on every request.
macro_rules! user_cols {
    () => {
        "u.id, u.tenant_id, u.user_name, u.external_id, u.display_name, u.email, \
    u.active, u.doc, u.quota_gb, u.used_bytes, u.scim_managed, u.created_at, u.updated_at, \
    u.version, u.deleted_at, u.purge_at"
    };
}

mod audit;
pub mod backup;
pub(crate) mod conn;
pub(crate) mod filter;
mod groups;
mod identities;
mod protection;
mod requests;
mod sso;
mod tenants;
mod tokens;
mod users;
mod vault;
mod welcome;
mod writer;

use crate::listing::{matches_at_most_one, total_from_page, PageStarts};
use async_trait::async_trait;
use cairn_core::audit::AuditDraft;
use cairn_core::clock::{format_ts, parse_ts};
use cairn_core::ids::{QuotaGb, TenantId, UserId, UserName};
use cairn_core::query::{ListQuery, Page};
use cairn_core::store::*;
use cairn_core::tenant::Tenant;
use cairn_core::user::{DocJson, UserRecord};
use cairn_core::{Error, Result};
use conn::map_err;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;
use writer::Writer;

/// Reader connections kept open, and reads run at once: more concurrent reads wait for a
/// connection instead of opening a new one that is dropped afterwards (cairn-bench found
/// that churn under 16 concurrent GETs: every new connection re-ran its pragmas, re-parsed
/// the schema and started with an empty statement cache).
const MAX_IDLE_READERS: usize = 8;

/// How [`SqliteStore::open_with`] opens a database.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    /// Keep a copy of a database that holds data before migrating it (see
    /// `backup::before_migration`). On by default.
    pub backup_before_migrate: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            backup_before_migrate: true,
        }
    }
}

pub struct SqliteStore {
    path: PathBuf,
    page_starts: Arc<Mutex<PageStarts>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    read_slots: Arc<tokio::sync::Semaphore>,
    writer: Writer,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations, keeping
    /// a copy of the database first when it holds data and migrations are pending.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, OpenOptions::default())
    }

    /// [`Self::open`], with the copy before migrating as `opts` say.
    pub fn open_with(path: &Path, opts: OpenOptions) -> Result<Self> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::Unavailable(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
        }
        let mut w = conn::open(path, true).map_err(map_err)?;
        let current = conn::schema_version(&w).map_err(map_err)?;
        if current > conn::SCHEMA_VERSION {
            // Before any copy is made: `migrate` would refuse it anyway.
            return Err(crate::newer_schema(current));
        }
        // A new, empty file (version 0) has nothing to keep.
        if opts.backup_before_migrate && current > 0 && current < conn::SCHEMA_VERSION {
            let copy = backup::before_migration(&w, path, current)?;
            tracing::info!(
                backup = %copy.display(),
                from = current,
                to = conn::SCHEMA_VERSION,
                "kept a copy of the database before migrating it"
            );
        }
        conn::migrate(&mut w)?;
        Ok(SqliteStore {
            path: path.to_owned(),
            page_starts: Arc::default(),
            readers: Arc::new(Mutex::new(Vec::new())),
            read_slots: Arc::new(tokio::sync::Semaphore::new(MAX_IDLE_READERS)),
            writer: Writer::start(w, Some(conn::open(path, false).map_err(map_err)?)),
        })
    }

    /// Runs a read on a pooled reader connection, off the async runtime.
    async fn read<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let pool = self.readers.clone();
        let path = self.path.clone();
        let slot = self
            .read_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Internal("reader pool closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let conn = pool.lock().expect("reader pool").pop();
            let conn = match conn {
                Some(c) => c,
                None => conn::open(&path, false).map_err(map_err)?,
            };
            let r = snapshot(&conn, f).map_err(map_err);
            let mut p = pool.lock().expect("reader pool");
            if p.len() < MAX_IDLE_READERS && conn.is_autocommit() {
                p.push(conn);
            }
            r
        })
        .await
        .map_err(|e| Error::Internal(format!("reader task: {e}")))?
    }

    /// A read known to be short (a lookup by a unique or indexed key: microseconds), run on
    /// the calling task's thread with an idle pooled connection. Handing it to the
    /// blocking pool costs more than the read itself: `perf` on `GET /Users/{id}` put
    /// about 36% of the server's samples in the two thread wake-ups of that hand-off.
    /// Falls back to [`Self::read`] when every pooled connection is busy.
    pub(crate) async fn read_point<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let Ok(slot) = self.read_slots.clone().try_acquire_owned() else {
            return self.read(f).await;
        };
        let Some(conn) = self.readers.lock().expect("reader pool").pop() else {
            drop(slot);
            return self.read(f).await;
        };
        let r = snapshot(&conn, f).map_err(map_err);
        if conn.is_autocommit() {
            self.readers.lock().expect("reader pool").push(conn);
        }
        drop(slot);
        r
    }

    /// Integrity check, for tests and `cairn` diagnostics.
    pub async fn integrity_check(&self) -> Result<String> {
        self.read(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get(0)))
            .await
    }
}

/// Runs a read's statements in one read transaction. Without it SQLite opens and closes
/// one per statement, and each opening takes a lock in the WAL's shared memory: `perf`
/// put about a quarter of a filtered `GET /Users` (three statements) in
/// `btreeBeginTrans`/`unixShmLock`. One transaction also gives the statements one
/// snapshot, so a list's `totalResults` and its page agree under concurrent writes.
fn snapshot<R>(
    c: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<R>,
) -> rusqlite::Result<R> {
    conn::exec_cached(c, "BEGIN")?;
    let r = f(c);
    // Nothing was written: COMMIT only ends the read. Should it fail, ROLLBACK must still
    // leave the pooled connection outside any transaction.
    if conn::exec_cached(c, "COMMIT").is_err() {
        c.execute_batch("ROLLBACK")?;
    }
    r
}

fn ts(t: OffsetDateTime) -> String {
    format_ts(t)
}

fn parse_time(s: String) -> rusqlite::Result<OffsetDateTime> {
    parse_ts(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("bad timestamp {s}").into(),
        )
    })
}

fn opt_time(s: Option<String>) -> rusqlite::Result<Option<OffsetDateTime>> {
    s.map(parse_time).transpose()
}

fn insert_audit(c: &Connection, a: &AuditDraft) -> rusqlite::Result<()> {
    insert_audit_with(c, a, &a.changes.to_string())
}

/// [`insert_audit`] with the changes already serialised, off the writer thread: every
/// microsecond a write spends on that one thread is a microsecond all writes wait.
fn insert_audit_with(c: &Connection, a: &AuditDraft, changes: &str) -> rusqlite::Result<()> {
    let mut st = c.prepare_cached(
        "INSERT INTO audit_events (tenant_id, at, actor_kind, actor_id, action, target_type,
             target_id, target_name, changes, user_agent, request_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?;
    st.execute(params![
        a.tenant_id.as_str(),
        ts(a.at),
        a.actor.kind(),
        a.actor.id(),
        a.action.as_str(),
        a.target_type,
        a.target_id,
        a.target_name,
        changes,
        a.meta.user_agent,
        a.meta.request_id,
    ])?;
    Ok(())
}

fn tenant_from_row(r: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: TenantId::from_trusted(r.get(0)?),
        name: r.get(1)?,
        scim_enabled: r.get(2)?,
        account_size_gb: QuotaGb::new(r.get(3)?).unwrap_or_default(),
        created_at: parse_time(r.get(4)?)?,
        max_account_size_gb: r
            .get::<_, Option<i64>>(5)?
            .and_then(|gb| QuotaGb::new(gb).ok()),
        // The column's bounds are the rule's (written only through `StaleDays`).
        stale_days: cairn_core::freshness::StaleDays::new(r.get::<_, i64>(6)?).unwrap_or_default(),
    })
}

const TENANT_COLS: &str =
    "id, name, scim_enabled, account_size_gb, created_at, max_account_size_gb, stale_days";

fn get_tenant(c: &Connection, id: &str) -> rusqlite::Result<Option<Tenant>> {
    c.prepare_cached(&format!("SELECT {TENANT_COLS} FROM tenants WHERE id = ?"))?
        .query_row([id], tenant_from_row)
        .optional()
}

const USER_COLS: &str = user_cols!();

/// How a read takes the stored document (column `i` of the row): parsed, as the JSON text
/// it is stored as, or not at all.
pub(super) trait FromDoc: Sized {
    fn from_doc(r: &Row<'_>, i: usize) -> rusqlite::Result<Self>;
}

impl FromDoc for Value {
    /// Parsed from the row's own text, not from a copy of it.
    fn from_doc(r: &Row<'_>, i: usize) -> rusqlite::Result<Self> {
        let bad = |e: Box<dyn std::error::Error + Send + Sync>| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e)
        };
        let text = r.get_ref(i)?.as_str().map_err(|e| bad(e.into()))?;
        serde_json::from_str(text).map_err(|e| bad(e.into()))
    }
}

impl FromDoc for DocJson {
    fn from_doc(r: &Row<'_>, i: usize) -> rusqlite::Result<Self> {
        r.get(i).map(DocJson)
    }
}

/// The document left unread: the caller has it already (a write returns what it wrote).
impl FromDoc for () {
    fn from_doc(_: &Row<'_>, _: usize) -> rusqlite::Result<Self> {
        Ok(())
    }
}

fn user_from_row<D: FromDoc>(r: &Row<'_>) -> rusqlite::Result<UserRecord<D>> {
    Ok(UserRecord {
        id: UserId::from_trusted(r.get(0)?),
        tenant_id: TenantId::from_trusted(r.get(1)?),
        user_name: UserName::from_trusted(r.get(2)?),
        external_id: r.get(3)?,
        display_name: r.get(4)?,
        email: r.get(5)?,
        active: r.get(6)?,
        doc: D::from_doc(r, 7)?,
        quota_gb: QuotaGb::new(r.get(8)?).unwrap_or_default(),
        used_bytes: r.get(9)?,
        scim_managed: r.get(10)?,
        created_at: parse_time(r.get(11)?)?,
        updated_at: parse_time(r.get(12)?)?,
        version: r.get(13)?,
        deleted_at: opt_time(r.get(14)?)?,
        purge_at: opt_time(r.get(15)?)?,
    })
}

fn db<T>(r: rusqlite::Result<T>) -> Result<T> {
    r.map_err(map_err)
}

/// One page of a table aliased `u` (users, or groups, whose columns are named alike so
/// the same filter and sort translation applies) and the total: `base` (binding the tenant
/// id) and-ed with the query's filter, in the query's order then insertion order.
pub(super) fn list_page<T>(
    c: &Connection,
    table: &str,
    cols: &str,
    base: &str,
    tenant: String,
    query: &ListQuery,
    from_row: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Page<T>> {
    let mut where_sql = base.to_owned();
    let mut params: Vec<SqlValue> = vec![SqlValue::Text(tenant)];
    if let Some(f) = &query.filter {
        let w = filter::where_clause(f);
        where_sql.push_str(" AND ");
        where_sql.push_str(&w.text);
        params.extend(w.params);
    }
    let count = |params: &[SqlValue]| -> rusqlite::Result<u64> {
        let n: i64 = c
            .prepare_cached(&format!("SELECT COUNT(*) FROM {table} u WHERE {where_sql}"))?
            .query_row(params_from_iter(params.iter()), |r| r.get(0))?;
        Ok(n.max(0) as u64)
    };
    if query.count == 0 {
        return Ok(Page {
            total: count(&params)?,
            items: Vec::new(),
        });
    }
    let filter_params = params.len();
    if let Some(seek) = &query.seek {
        return keyset_page(
            c, table, cols, &where_sql, params, query, seek, from_row, count,
        );
    }
    let offset = query.start_index.saturating_sub(1);
    let order = match &query.filter {
        // One row at most: ordering it would only cost SQLite a temporary B-tree.
        Some(f) if query.sort.is_none() && matches_at_most_one(f) => filter::Sql::default(),
        _ => filter::order_by(query.sort.as_ref()),
    };
    params.extend(order.params.iter().cloned());
    params.push(SqlValue::Integer(query.count.min(i64::MAX as u64) as i64));
    params.push(SqlValue::Integer(offset.min(i64::MAX as u64) as i64));
    let sql = if offset == 0 {
        format!(
            "SELECT {cols} FROM {table} u WHERE {where_sql}{} LIMIT ? OFFSET ?",
            order.text
        )
    } else {
        // A later page skips its offset over row ids only: in insertion order that walks
        // the slim (tenant_id, seq) index instead of every skipped account's row, then
        // reads the page's rows by id, in the same order.
        params.extend(order.params);
        format!(
            "SELECT {cols} FROM {table} u WHERE u.seq IN \
             (SELECT u.seq FROM {table} u WHERE {where_sql}{o} LIMIT ? OFFSET ?){o}",
            o = order.text
        )
    };
    let mut st = c.prepare_cached(&sql)?;
    let items = st
        .query_map(params_from_iter(params.iter()), from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // A page that is not full ends the result, so it gives the total without counting
    // (a filter such as `userName eq` never needs COUNT); an empty page past the start
    // does not say where the results ended. Both reads share the caller's snapshot.
    let total = match total_from_page(offset, query.count, items.len()) {
        Some(total) => total,
        None => count(&params[..filter_params])?,
    };
    Ok(Page { total, items })
}

/// A keyset page (RFC 9865 cursors) of [`list_page`]: one seek through the index of the
/// sort key (or of ids), whatever the position, then the total from `count` (`COUNT(*)`
/// in `list_page`; the tenant's live count for an unfiltered account list) unless the
/// first page is not full. A page read backwards is turned back into the list's order.
#[allow(clippy::too_many_arguments)]
pub(super) fn keyset_page<T>(
    c: &Connection,
    table: &str,
    cols: &str,
    where_sql: &str,
    mut params: Vec<SqlValue>,
    query: &ListQuery,
    seek: &cairn_core::query::Seek,
    from_row: fn(&Row<'_>) -> rusqlite::Result<T>,
    count: impl Fn(&[SqlValue]) -> rusqlite::Result<u64>,
) -> rusqlite::Result<Page<T>> {
    let filter_params = params.len();
    if query.count == 0 {
        return Ok(Page {
            total: count(&params)?,
            items: Vec::new(),
        });
    }
    let (cond, order, backward) = filter::keyset(query.sort.as_ref(), seek);
    params.extend(cond.params);
    params.extend(order.params);
    params.push(SqlValue::Integer(query.count.min(i64::MAX as u64) as i64));
    let sql = format!(
        "SELECT {cols} FROM {table} u WHERE {where_sql}{}{} LIMIT ?",
        cond.text, order.text
    );
    let mut items = c
        .prepare_cached(&sql)?
        .query_map(params_from_iter(params.iter()), from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if backward {
        items.reverse();
    }
    let first_and_short =
        matches!(seek, cairn_core::query::Seek::First) && (items.len() as u64) < query.count;
    let total = if first_and_short {
        items.len() as u64
    } else {
        count(&params[..filter_params])?
    };
    Ok(Page { total, items })
}

#[async_trait]
impl HealthStore for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.read(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
            .await
            .map(|_| ())
    }

    fn load_gauges(&self) -> Vec<LoadGauge> {
        vec![LoadGauge {
            name: "sqlite_writer_queue",
            help: "Writes waiting for the SQLite writer or in its commit in progress",
            value: i64::try_from(self.writer.queued()).unwrap_or(i64::MAX),
        }]
    }

    async fn used_bytes_per_tenant(&self) -> Result<Vec<(TenantId, u64)>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT t.id, (SELECT COALESCE(SUM(u.used_bytes), 0) FROM users u
                     WHERE u.tenant_id = t.id)
                 FROM tenants t ORDER BY t.id",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    TenantId::from_trusted(r.get(0)?),
                    r.get::<_, i64>(1)?.max(0) as u64,
                ))
            })?;
            rows.collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    /// With every read slot taken, a point read neither runs inline nor opens a ninth
    /// connection: it waits for a slot, then answers, and every connection it used is
    /// back in the pool outside any transaction.
    #[tokio::test]
    async fn a_point_read_waits_for_a_slot_when_all_are_busy() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("r.db")).unwrap());
        // Warm the pool: a connection is idle, so only the slots can hold the read back.
        assert_eq!(
            store
                .read_point(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
                .await
                .unwrap(),
            1
        );
        let busy = store
            .read_slots
            .clone()
            .acquire_many_owned(MAX_IDLE_READERS as u32)
            .await
            .unwrap();
        let s = store.clone();
        let read = tokio::spawn(async move {
            s.read_point(|c| c.query_row("SELECT 2", [], |r| r.get::<_, i64>(0)))
                .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!read.is_finished(), "ran although every slot was taken");
        drop(busy);
        assert_eq!(read.await.unwrap().unwrap(), 2);
        let pool = store.readers.lock().unwrap();
        assert!(!pool.is_empty() && pool.len() <= MAX_IDLE_READERS);
        assert!(pool.iter().all(|c| c.is_autocommit()));
    }
}
