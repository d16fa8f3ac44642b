//! The embedded SQLite backend.

pub(crate) mod conn;
mod dashboard;
pub(crate) mod filter;
mod groups;
mod vault;
mod writer;

use crate::listing::{is_key_lookup, matches_at_most_one, total_from_page, PageStarts, PlainPage};
use async_trait::async_trait;
use cairn_core::audit::{AuditDraft, AuditEvent, AuditQuery};
use cairn_core::auth::{PasswordHash, TokenHash};
use cairn_core::clock::{format_ts, parse_ts};
use cairn_core::dashboard::{AccountQuery, ActivityFilter, DayCount};
use cairn_core::group::{GroupData, GroupRecord, GroupRef, GroupSummary, MemberChange};
use cairn_core::ids::{
    fold_case, DashboardUserId, GroupId, QuotaGb, TenantId, TokenId, UserId, UserName,
};
use cairn_core::query::{ListQuery, Page};
use cairn_core::session::{SessionHash, SessionRecord, ThrottleRule};
use cairn_core::store::{DashboardUser, Role, ScimAuthState, SettingsChange, Store};
use cairn_core::tenant::{Tenant, TokenInfo};
use cairn_core::user::{DocJson, UserData, UserRecord};
use cairn_core::vault::{BackupKeyRecord, ByteCount};
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

pub struct SqliteStore {
    path: PathBuf,
    page_starts: Arc<Mutex<PageStarts>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    read_slots: Arc<tokio::sync::Semaphore>,
    writer: Writer,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::Unavailable(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
        }
        let mut w = conn::open(path, true).map_err(map_err)?;
        conn::migrate(&mut w).map_err(map_err)?;
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
    })
}

const TENANT_COLS: &str =
    "id, name, scim_enabled, account_size_gb, created_at, max_account_size_gb";

fn get_tenant(c: &Connection, id: &str) -> rusqlite::Result<Option<Tenant>> {
    c.prepare_cached(&format!("SELECT {TENANT_COLS} FROM tenants WHERE id = ?"))?
        .query_row([id], tenant_from_row)
        .optional()
}

/// The columns `user_from_row` reads, as a literal so that the hot reads' SQL is
/// assembled at compile time (`concat!`) rather than by `format!` on every request.
macro_rules! user_cols {
    () => {
        "u.id, u.tenant_id, u.user_name, u.external_id, u.display_name, u.email, \
    u.active, u.doc, u.quota_gb, u.used_bytes, u.scim_managed, u.created_at, u.updated_at, \
    u.version, u.deleted_at, u.purge_at"
    };
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

fn get_user_where<D: FromDoc>(
    c: &Connection,
    tenant: &str,
    id: &str,
    live_only: bool,
) -> rusqlite::Result<Option<UserRecord<D>>> {
    let sql = if live_only {
        concat!(
            "SELECT ",
            user_cols!(),
            " FROM users u WHERE u.tenant_id = ? AND u.id = ? AND u.deleted_at IS NULL"
        )
    } else {
        concat!(
            "SELECT ",
            user_cols!(),
            " FROM users u WHERE u.tenant_id = ? AND u.id = ?"
        )
    };
    c.prepare_cached(sql)?
        .query_row([tenant, id], user_from_row::<D>)
        .optional()
}

fn fold_opt(s: &Option<String>) -> Option<String> {
    s.as_deref().map(fold_case)
}

fn db<T>(r: rusqlite::Result<T>) -> Result<T> {
    r.map_err(map_err)
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_tenant(&self, tenant: &Tenant, audit: AuditDraft) -> Result<()> {
        let t = tenant.clone();
        self.writer
            .write(move |c| {
                db(c.execute(
                    "INSERT INTO tenants (id, name, scim_enabled, account_size_gb, created_at) VALUES (?, ?, ?, ?, ?)",
                    params![t.id.as_str(), t.name, t.scim_enabled, t.account_size_gb.get(), ts(t.created_at)],
                ))?;
                db(insert_audit(c, &audit))
            })
            .await
    }

    async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<Tenant>> {
        let id = tenant.to_string();
        self.read(move |c| get_tenant(c, &id)).await
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {TENANT_COLS} FROM tenants ORDER BY created_at, id"
            ))?;
            let rows = st.query_map([], tenant_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn update_settings(
        &self,
        tenant: &TenantId,
        change: &SettingsChange,
        audits: Vec<AuditDraft>,
    ) -> Result<Tenant> {
        let id = tenant.to_string();
        let change = change.clone();
        self.writer
            .write(move |c| {
                if let Some(e) = change.scim_enabled {
                    db(c.execute(
                        "UPDATE tenants SET scim_enabled = ? WHERE id = ?",
                        params![e, id],
                    ))?;
                }
                if let Some(s) = change.account_size_gb {
                    db(c.execute(
                        "UPDATE tenants SET account_size_gb = ? WHERE id = ?",
                        params![s.get(), id],
                    ))?;
                }
                if let Some(cap) = change.max_account_size_gb {
                    db(c.execute(
                        "UPDATE tenants SET max_account_size_gb = ? WHERE id = ?",
                        params![cap.map(QuotaGb::get), id],
                    ))?;
                }
                for a in &audits {
                    db(insert_audit(c, a))?;
                }
                db(get_tenant(c, &id))?.ok_or(Error::NotFound("tenant"))
            })
            .await
    }

    async fn replace_token(
        &self,
        tenant: &TenantId,
        token: &TokenInfo,
        hash: &TokenHash,
        audit: AuditDraft,
    ) -> Result<()> {
        let id = tenant.to_string();
        let token = token.clone();
        let hash = hash.as_bytes().to_vec();
        self.writer
            .write(move |c| {
                let at = ts(token.created_at);
                db(c.execute(
                    "UPDATE scim_tokens SET revoked_at = ? WHERE tenant_id = ? AND revoked_at IS NULL",
                    params![at, id],
                ))?;
                db(c.execute(
                    "INSERT INTO scim_tokens (id, tenant_id, hash, hint, created_at) VALUES (?, ?, ?, ?, ?)",
                    params![token.id.as_str(), id, hash, token.hint, at],
                ))?;
                db(insert_audit(c, &audit))
            })
            .await
    }

    async fn scim_auth_state(&self, tenant: &TenantId) -> Result<Option<ScimAuthState>> {
        let id = tenant.to_string();
        self.read(move |c| {
            let Some(tenant) = get_tenant(c, &id)? else {
                return Ok(None);
            };
            let mut st = c.prepare_cached(
                "SELECT id, hash FROM scim_tokens WHERE tenant_id = ? AND revoked_at IS NULL",
            )?;
            let tokens = st
                .query_map([&id], |r| {
                    let h: Vec<u8> = r.get(1)?;
                    Ok((TokenId::from_trusted(r.get(0)?), TokenHash::from_bytes(&h)))
                })?
                .filter_map(|r| match r {
                    Ok((id, Some(h))) => Some(Ok((id, h))),
                    Ok((_, None)) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(ScimAuthState { tenant, tokens }))
        })
        .await
    }

    async fn token_info(&self, tenant: &TenantId) -> Result<Option<TokenInfo>> {
        let id = tenant.to_string();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT id, tenant_id, hint, created_at, last_used_at, last_user_agent FROM scim_tokens
                 WHERE tenant_id = ? AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 1",
            )?
            .query_row([&id], |r| {
                Ok(TokenInfo {
                    id: TokenId::from_trusted(r.get(0)?),
                    tenant_id: TenantId::from_trusted(r.get(1)?),
                    hint: r.get(2)?,
                    created_at: parse_time(r.get(3)?)?,
                    last_used_at: opt_time(r.get(4)?)?,
                    last_user_agent: r.get(5)?,
                })
            })
            .optional()
        })
        .await
    }

    async fn touch_token(
        &self,
        tenant: &TenantId,
        token: &TokenId,
        at: OffsetDateTime,
        user_agent: Option<&str>,
    ) -> Result<()> {
        let (tenant, token) = (tenant.to_string(), token.to_string());
        let ua = user_agent.map(|s| s.chars().take(200).collect::<String>());
        self.writer
            .write(move |c| {
                db(c.execute(
                    "UPDATE scim_tokens SET last_used_at = ?, last_user_agent = COALESCE(?, last_user_agent)
                     WHERE tenant_id = ? AND id = ?",
                    params![ts(at), ua, tenant, token],
                ))
                .map(|_| ())
            })
            .await
    }

    async fn set_backup_key(&self, key: &BackupKeyRecord, audit: AuditDraft) -> Result<()> {
        vault::set_backup_key(self, key, audit).await
    }

    async fn backup_key(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<BackupKeyRecord>> {
        vault::backup_key(self, tenant, user).await
    }

    async fn charge_used_bytes(
        &self,
        tenant: &TenantId,
        user: &UserId,
        bytes: ByteCount,
        limit: Option<ByteCount>,
    ) -> Result<bool> {
        vault::charge_used_bytes(self, tenant, user, bytes, limit).await
    }

    async fn refund_used_bytes(
        &self,
        tenant: &TenantId,
        user: &UserId,
        bytes: ByteCount,
    ) -> Result<bool> {
        vault::refund_used_bytes(self, tenant, user, bytes).await
    }

    async fn record_audit(&self, audit: AuditDraft) -> Result<()> {
        self.writer
            .write(move |c| db(insert_audit(c, &audit)))
            .await
    }

    async fn create_user(&self, user: &UserRecord, audit: AuditDraft) -> Result<()> {
        // Serialised here, not on the writer thread; the document is not copied.
        let u = user.with_doc(user.doc.to_string());
        let changes = audit.changes.to_string();
        self.writer
            .write(move |c| {
                let mut st = db(c.prepare_cached(
                    "INSERT INTO users (id, tenant_id, user_name, user_name_fold, external_id, display_name,
                        display_name_fold, email, email_fold, active, doc, quota_gb, used_bytes, scim_managed,
                        created_at, updated_at, version, base_quota_gb)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?12)",
                ))?;
                db(st.execute(params![
                    u.id.as_str(),
                    u.tenant_id.as_str(),
                    u.user_name.as_str(),
                    u.user_name.folded(),
                    u.external_id,
                    u.display_name,
                    fold_opt(&u.display_name),
                    u.email,
                    fold_opt(&u.email),
                    u.active,
                    u.doc,
                    u.quota_gb.get(),
                    u.used_bytes,
                    u.scim_managed,
                    ts(u.created_at),
                    ts(u.updated_at),
                    u.version,
                ]))?;
                db(insert_audit_with(c, &audit, &changes))
            })
            .await
    }

    async fn get_user(&self, tenant: &TenantId, id: &UserId) -> Result<Option<UserRecord>> {
        let (t, i) = (tenant.to_string(), id.to_string());
        self.read_point(move |c| get_user_where(c, &t, &i, true))
            .await
    }

    async fn get_user_any(&self, tenant: &TenantId, id: &UserId) -> Result<Option<UserRecord>> {
        let (t, i) = (tenant.to_string(), id.to_string());
        self.read_point(move |c| get_user_where(c, &t, &i, false))
            .await
    }

    async fn list_users(&self, tenant: &TenantId, query: &ListQuery) -> Result<Page<UserRecord>> {
        let tenant = tenant.to_string();
        let query = query.clone();
        let starts = self.page_starts.clone();
        self.read(move |c| list_users_in(c, tenant, &query, &starts))
            .await
    }

    async fn get_user_with_groups(
        &self,
        tenant: &TenantId,
        id: &UserId,
        with_groups: bool,
    ) -> Result<Option<(UserRecord<DocJson>, Vec<GroupRef>)>> {
        let (t, i) = (tenant.to_string(), id.to_string());
        self.read_point(move |c| {
            let Some(u) = get_user_where::<DocJson>(c, &t, &i, true)? else {
                return Ok(None);
            };
            let groups = if with_groups {
                let ids = [u.id.clone()];
                groups::groups_of_users_in(c, &t, &ids)?
                    .into_iter()
                    .map(|(_, g)| g)
                    .collect()
            } else {
                Vec::new()
            };
            Ok(Some((u, groups)))
        })
        .await
    }

    async fn list_users_with_groups(
        &self,
        tenant: &TenantId,
        query: &ListQuery,
        with_groups: bool,
    ) -> Result<(Page<UserRecord<DocJson>>, Vec<(UserId, GroupRef)>)> {
        let t = tenant.to_string();
        let query = query.clone();
        let point = query.filter.as_ref().is_some_and(is_key_lookup);
        let starts = self.page_starts.clone();
        let read = move |c: &Connection| {
            let page = list_users_in::<DocJson>(c, t.clone(), &query, &starts)?;
            let groups = if with_groups && !page.items.is_empty() {
                let ids: Vec<UserId> = page.items.iter().map(|u| u.id.clone()).collect();
                groups::groups_of_users_in(c, &t, &ids)?
            } else {
                Vec::new()
            };
            Ok((page, groups))
        };
        if point {
            self.read_point(read).await
        } else {
            self.read(read).await
        }
    }

    async fn update_user(
        &self,
        tenant: &TenantId,
        id: &UserId,
        expected_version: i64,
        data: &UserData,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<UserRecord> {
        let (t, i) = (tenant.to_string(), id.to_string());
        // Serialised here, not on the writer thread; the document is not copied there,
        // nor parsed back from the row.
        let (doc, changes) = (data.doc.to_string(), audit.changes.to_string());
        let d = UserData {
            doc: Value::Null,
            user_name: data.user_name.clone(),
            external_id: data.external_id.clone(),
            display_name: data.display_name.clone(),
            email: data.email.clone(),
            active: data.active,
        };
        let written = self
            .writer
            .write(move |c| {
                let n = db(c
                    .prepare_cached(
                        "UPDATE users SET user_name = ?, user_name_fold = ?, external_id = ?, display_name = ?,
                            display_name_fold = ?, email = ?, email_fold = ?, active = ?, doc = ?,
                            updated_at = ?, version = version + 1
                         WHERE tenant_id = ? AND id = ? AND deleted_at IS NULL AND version = ?",
                    )
                    .and_then(|mut st| {
                        st.execute(params![
                            d.user_name.as_str(),
                            d.user_name.folded(),
                            d.external_id,
                            d.display_name,
                            fold_opt(&d.display_name),
                            d.email,
                            fold_opt(&d.email),
                            d.active,
                            doc,
                            ts(at),
                            t,
                            i,
                            expected_version,
                        ])
                    }))?;
                if n == 0 {
                    return match db(get_user_where::<()>(c, &t, &i, true))? {
                        Some(_) => Err(Error::VersionMismatch),
                        None => Err(Error::NotFound("user")),
                    };
                }
                db(insert_audit_with(c, &audit, &changes))?;
                db(get_user_where::<()>(c, &t, &i, true))?.ok_or(Error::NotFound("user"))
            })
            .await?;
        Ok(written.map_doc(|()| data.doc.clone()))
    }

    async fn soft_delete_user(
        &self,
        tenant: &TenantId,
        id: &UserId,
        expected_version: Option<i64>,
        at: OffsetDateTime,
        purge_at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<()> {
        let (t, i) = (tenant.to_string(), id.to_string());
        self.writer
            .write(move |c| {
                let n = db(c.execute(
                    "UPDATE users SET deleted_at = ?, purge_at = ?, updated_at = ?, version = version + 1
                     WHERE tenant_id = ? AND id = ? AND deleted_at IS NULL AND (? IS NULL OR version = ?)",
                    params![ts(at), ts(purge_at), ts(at), t, i, expected_version, expected_version],
                ))?;
                if n == 0 {
                    return match db(get_user_where::<()>(c, &t, &i, true))? {
                        Some(_) => Err(Error::VersionMismatch),
                        None => Err(Error::NotFound("user")),
                    };
                }
                db(insert_audit(c, &audit))
            })
            .await
    }

    async fn restore_user(
        &self,
        tenant: &TenantId,
        user_name: &UserName,
        at: OffsetDateTime,
        mut audit: AuditDraft,
    ) -> Result<UserRecord> {
        let t = tenant.to_string();
        let fold = user_name.folded();
        self.writer
            .write(move |c| {
                let id: Option<String> = db(c
                    .query_row(
                        "SELECT id FROM users WHERE tenant_id = ? AND user_name_fold = ? AND deleted_at IS NOT NULL
                         AND purging_since IS NULL ORDER BY deleted_at DESC, seq DESC LIMIT 1",
                        params![t, fold],
                        |r| r.get(0),
                    )
                    .optional())?;
                let id = id.ok_or(Error::NotFound("deleted account"))?;
                db(c.execute(
                    "UPDATE users SET deleted_at = NULL, purge_at = NULL, updated_at = ?, version = version + 1
                     WHERE tenant_id = ? AND id = ?",
                    params![ts(at), t, id],
                ))?;
                audit.target_id = Some(id.clone());
                db(insert_audit(c, &audit))?;
                db(get_user_where(c, &t, &id, true))?.ok_or(Error::NotFound("user"))
            })
            .await
    }

    async fn begin_purge(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<UserRecord>> {
        self.writer
            .write(move |c| {
                let due = db(c
                    .prepare(&format!(
                        "SELECT {USER_COLS} FROM users u WHERE u.deleted_at IS NOT NULL AND u.purge_at <= ?
                         ORDER BY u.purge_at LIMIT ?"
                    ))
                    .and_then(|mut st| {
                        st.query_map(params![ts(now), limit], user_from_row)?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    }))?;
                for u in &due {
                    db(c.execute(
                        "UPDATE users SET purging_since = ?
                         WHERE tenant_id = ? AND id = ? AND purging_since IS NULL",
                        params![ts(now), u.tenant_id.as_str(), u.id.as_str()],
                    ))?;
                }
                Ok(due)
            })
            .await
    }

    async fn finish_purge(
        &self,
        tenant: &TenantId,
        id: &UserId,
        audits: Vec<AuditDraft>,
    ) -> Result<bool> {
        let (t, i) = (tenant.to_string(), id.to_string());
        self.writer
            .write(move |c| {
                let n = db(c.execute(
                    "DELETE FROM users WHERE tenant_id = ? AND id = ? AND purging_since IS NOT NULL",
                    params![t, i],
                ))?;
                if n == 0 {
                    return Ok(false);
                }
                for a in &audits {
                    db(insert_audit(c, a))?;
                }
                Ok(true)
            })
            .await
    }

    async fn create_dashboard_user(&self, user: &DashboardUser, audit: AuditDraft) -> Result<()> {
        let u = user.clone();
        self.writer
            .write(move |c| {
                db(c.execute(
                    "INSERT INTO dashboard_users (id, tenant_id, email, email_fold, role, password_hash, created_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?)",
                    params![
                        u.id.as_str(),
                        u.tenant_id.as_str(),
                        u.email,
                        fold_case(&u.email),
                        u.role.as_str(),
                        u.password_hash.as_phc(),
                        ts(u.created_at)
                    ],
                ))?;
                db(insert_audit(c, &audit))
            })
            .await
    }

    async fn find_dashboard_user(&self, email: &str) -> Result<Option<DashboardUser>> {
        let fold = fold_case(email.trim());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT id, tenant_id, email, role, password_hash, created_at FROM dashboard_users WHERE email_fold = ?",
            )?
            .query_row([fold], |r| {
                let role: String = r.get(3)?;
                Ok(DashboardUser {
                    id: DashboardUserId::from_trusted(r.get(0)?),
                    tenant_id: TenantId::from_trusted(r.get(1)?),
                    email: r.get(2)?,
                    role: Role::parse(&role).unwrap_or(Role::Viewer),
                    password_hash: PasswordHash::from_phc(r.get(4)?),
                    created_at: parse_time(r.get(5)?)?,
                })
            })
            .optional()
        })
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

    async fn ping(&self) -> Result<()> {
        self.read(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
            .await
            .map(|_| ())
    }

    // --- groups (sqlite/groups.rs) ------------------------------------------------------
    async fn create_group(
        &self,
        group: &GroupRecord,
        members: &[UserId],
        audit: AuditDraft,
    ) -> Result<()> {
        self.grp_create(group, members, audit).await
    }
    async fn get_group(&self, tenant: &TenantId, id: &GroupId) -> Result<Option<GroupRecord>> {
        self.grp_get(tenant, id).await
    }
    async fn find_group_by_name(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<Option<GroupRecord>> {
        self.grp_find_by_name(tenant, name).await
    }
    async fn list_groups(&self, tenant: &TenantId, query: &ListQuery) -> Result<Page<GroupRecord>> {
        self.grp_list(tenant, query).await
    }
    async fn group_members(&self, tenant: &TenantId, id: &GroupId) -> Result<Vec<UserId>> {
        self.grp_members(tenant, id, None).await
    }
    async fn group_members_up_to(
        &self,
        tenant: &TenantId,
        id: &GroupId,
        limit: u32,
    ) -> Result<Vec<UserId>> {
        self.grp_members(tenant, id, Some(limit)).await
    }
    async fn groups_of_users(
        &self,
        tenant: &TenantId,
        users: &[UserId],
    ) -> Result<Vec<(UserId, GroupRef)>> {
        self.grp_of_users(tenant, users).await
    }
    async fn update_group(
        &self,
        tenant: &TenantId,
        id: &GroupId,
        expected_version: Option<i64>,
        data: Option<&GroupData>,
        members: &MemberChange,
        audit: AuditDraft,
    ) -> Result<GroupRecord> {
        self.grp_update(tenant, id, expected_version, data, members, audit)
            .await
    }
    async fn delete_group(
        &self,
        tenant: &TenantId,
        id: &GroupId,
        expected_version: Option<i64>,
        audit: AuditDraft,
    ) -> Result<()> {
        self.grp_delete(tenant, id, expected_version, audit).await
    }
    async fn set_group_size(
        &self,
        tenant: &TenantId,
        id: &GroupId,
        size: Option<QuotaGb>,
        audit: AuditDraft,
    ) -> Result<GroupRecord> {
        self.grp_set_size(tenant, id, size, audit).await
    }
    async fn group_summaries(&self, tenant: &TenantId) -> Result<Vec<GroupSummary>> {
        self.grp_summaries(tenant).await
    }

    // --- dashboard (sqlite/dashboard.rs) ------------------------------------------------
    async fn create_session(&self, s: &SessionRecord) -> Result<()> {
        self.dash_create_session(s).await
    }
    async fn get_session(
        &self,
        id: &SessionHash,
    ) -> Result<Option<(SessionRecord, DashboardUser)>> {
        self.dash_get_session(id).await
    }
    async fn touch_session(&self, id: &SessionHash, at: OffsetDateTime) -> Result<()> {
        self.dash_touch_session(id, at).await
    }
    async fn delete_session(&self, id: &SessionHash) -> Result<()> {
        self.dash_delete_session(id).await
    }
    async fn delete_expired_sessions(
        &self,
        now: OffsetDateTime,
        idle_before: OffsetDateTime,
        failures_before: OffsetDateTime,
    ) -> Result<()> {
        self.dash_delete_expired(now, idle_before, failures_before)
            .await
    }
    async fn record_login_failure(&self, keys: &[[u8; 32]], at: OffsetDateTime) -> Result<()> {
        self.dash_record_failure(keys, at).await
    }
    async fn login_failures_since(
        &self,
        key: &[u8; 32],
        since: OffsetDateTime,
    ) -> Result<(u32, Option<OffsetDateTime>)> {
        self.dash_failures_since(key, since).await
    }
    async fn clear_login_failures(&self, key: &[u8; 32]) -> Result<()> {
        self.dash_clear_failures(key).await
    }
    async fn charge_login_attempt(
        &self,
        rules: &[ThrottleRule],
        now: OffsetDateTime,
        since: OffsetDateTime,
    ) -> Result<Option<time::Duration>> {
        self.dash_charge_attempt(rules, now, since).await
    }
    async fn credit_login_attempt(&self, keys: &[[u8; 32]], at: OffsetDateTime) -> Result<()> {
        self.dash_credit_attempt(keys, at).await
    }
    async fn list_accounts(&self, tenant: &TenantId, q: &AccountQuery) -> Result<Page<UserRecord>> {
        self.dash_list_accounts(tenant, q).await
    }
    async fn list_activity(
        &self,
        tenant: &TenantId,
        f: &ActivityFilter,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        self.dash_list_activity(tenant, f, before_id, limit).await
    }
    async fn activity_per_day(
        &self,
        tenant: &TenantId,
        f: &ActivityFilter,
        since: OffsetDateTime,
    ) -> Result<Vec<DayCount>> {
        self.dash_activity_per_day(tenant, f, since).await
    }
    async fn activity_clients(&self, tenant: &TenantId) -> Result<Vec<String>> {
        self.dash_activity_clients(tenant).await
    }
}

/// One page of a tenant's live accounts (and the total), on a connection the caller holds.
fn list_users_in<D: FromDoc>(
    c: &Connection,
    tenant: String,
    query: &ListQuery,
    starts: &Mutex<PageStarts>,
) -> rusqlite::Result<Page<UserRecord<D>>> {
    if query.filter.is_none() && query.sort.is_none() {
        return list_live_users(c, &tenant, query, starts);
    }
    list_page(
        c,
        "users",
        USER_COLS,
        "u.tenant_id = ? AND u.deleted_at IS NULL",
        tenant,
        query,
        user_from_row::<D>,
    )
}

/// A page of a tenant's live accounts in insertion order, without a filter: what Okta's
/// and Entra's imports read page after page. `totalResults` is the tenant's live count
/// kept by triggers (migration 0007), not a `COUNT(*)` over the tenant. The page is read
/// from where it starts through the primary key (`seq > after`); where that is comes from
/// an earlier page at the same generation, or else from walking the offset over the
/// `(tenant_id, seq)` index. All in the caller's snapshot, so count, generation and rows
/// agree.
fn list_live_users<D: FromDoc>(
    c: &Connection,
    tenant: &str,
    query: &ListQuery,
    starts: &Mutex<PageStarts>,
) -> rusqlite::Result<Page<UserRecord<D>>> {
    let (live, generation): (i64, i64) = c
        .prepare_cached("SELECT live, generation FROM user_list_state WHERE tenant_id = ?")?
        .query_row([tenant], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, 0));
    let total = live.max(0) as u64;
    let offset = query.start_index.saturating_sub(1);
    let plan =
        starts
            .lock()
            .expect("page starts")
            .plan(tenant, offset, query.count, total, generation);
    let (after, sought) = match plan {
        PlainPage::Empty => {
            return Ok(Page {
                total,
                items: Vec::new(),
            })
        }
        PlainPage::After(after) => (after, None),
        PlainPage::Seek(before) => {
            let after = c
                .prepare_cached(
                    "SELECT u.seq FROM users u WHERE u.tenant_id = ? AND u.deleted_at IS NULL
                     ORDER BY u.seq LIMIT 1 OFFSET ?",
                )?
                .query_row(params![tenant, before], |r| r.get(0))?;
            (after, Some(after))
        }
    };
    let rows = c
        .prepare_cached(concat!(
            "SELECT ",
            user_cols!(),
            ", u.seq FROM users u
             WHERE u.tenant_id = ? AND u.deleted_at IS NULL AND u.seq > ?
             ORDER BY u.seq LIMIT ?"
        ))?
        .query_map(
            params![tenant, after, query.count.min(i64::MAX as u64) as i64],
            |r| Ok((user_from_row::<D>(r)?, r.get::<_, i64>(16)?)),
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    starts.lock().expect("page starts").learn(
        tenant,
        generation,
        offset,
        sought,
        rows.len(),
        rows.last().map(|(_, seq)| *seq),
    );
    Ok(Page {
        total,
        items: rows.into_iter().map(|(u, _)| u).collect(),
    })
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
    let offset = query.start_index.saturating_sub(1);
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
