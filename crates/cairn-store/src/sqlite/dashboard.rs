//! SQLite side of the dashboard: sessions, sign-in failures, the accounts list with search
//! and keyset paging, and the filtered activity log with per-day counts. Called from the
//! `Store` impl in `mod.rs`.

use super::{db, opt_time, parse_time, ts, user_from_row, SqliteStore, USER_COLS};
use cairn_core::audit::AuditEvent;
use cairn_core::auth::PasswordHash;
use cairn_core::dashboard::{AccountCursor, AccountQuery, ActivityFilter, DayCount};
use cairn_core::ids::{fold_case, DashboardUserId, TenantId};
use cairn_core::query::Page;
use cairn_core::session::{SessionHash, SessionRecord, ThrottleRule};
use cairn_core::store::{DashboardUser, Role};
use cairn_core::user::{AccountStatus, UserRecord};
use cairn_core::Result;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use time::OffsetDateTime;

/// Upper bound for a prefix range: every string that starts with `p` sorts (bytewise, as
/// SQLite's BINARY collation does) below `p` followed by the highest code point.
fn prefix_end(p: &str) -> String {
    format!("{p}\u{10FFFF}")
}

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<(SessionRecord, DashboardUser)> {
    let hash: Vec<u8> = r.get(0)?;
    let role: String = r.get(9)?;
    let record = SessionRecord {
        id_hash: SessionHash::from_bytes(&hash).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Blob,
                "bad session hash".into(),
            )
        })?,
        tenant_id: TenantId::from_trusted(r.get(1)?),
        user_id: DashboardUserId::from_trusted(r.get(2)?),
        csrf_token: r.get(3)?,
        created_at: parse_time(r.get(4)?)?,
        last_seen_at: parse_time(r.get(5)?)?,
        expires_at: parse_time(r.get(6)?)?,
    };
    let user = DashboardUser {
        id: record.user_id.clone(),
        tenant_id: TenantId::from_trusted(r.get(7)?),
        email: r.get(8)?,
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        password_hash: PasswordHash::from_phc(r.get(10)?),
        created_at: parse_time(r.get(11)?)?,
    };
    Ok((record, user))
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

fn list_accounts(
    c: &Connection,
    tenant: &str,
    q: &AccountQuery,
) -> rusqlite::Result<Page<UserRecord>> {
    let mut where_sql = String::from("u.tenant_id = ?");
    let mut params = vec![SqlValue::Text(tenant.to_owned())];
    if let Some(s) = &q.search {
        // Prefix ranges over three indexed columns (SQLite answers the OR with one index
        // lookup per branch); an id matches exactly.
        where_sql.push_str(
            " AND ((u.user_name_fold >= ? AND u.user_name_fold < ?) \
             OR (u.email_fold >= ? AND u.email_fold < ?) \
             OR (u.display_name_fold >= ? AND u.display_name_fold < ?) OR u.id = ?)",
        );
        for _ in 0..3 {
            params.push(SqlValue::Text(s.clone()));
            params.push(SqlValue::Text(prefix_end(s)));
        }
        params.push(SqlValue::Text(s.clone()));
    }
    match q.status {
        None => {}
        Some(AccountStatus::Active) => {
            where_sql.push_str(" AND u.deleted_at IS NULL AND u.active = 1")
        }
        Some(AccountStatus::Suspended) => {
            where_sql.push_str(" AND u.deleted_at IS NULL AND u.active = 0")
        }
        Some(AccountStatus::Deleted) => where_sql.push_str(" AND u.deleted_at IS NOT NULL"),
    }
    let total: i64 = c
        .prepare_cached(&format!("SELECT COUNT(*) FROM users u WHERE {where_sql}"))?
        .query_row(params_from_iter(params.iter()), |r| r.get(0))?;
    let (cmp, order) = match &q.cursor {
        None => (None, "ASC"),
        Some(AccountCursor::After { name_fold, id }) => (Some((">", name_fold, id)), "ASC"),
        Some(AccountCursor::Before { name_fold, id }) => (Some(("<", name_fold, id)), "DESC"),
    };
    if let Some((op, name_fold, id)) = cmp {
        where_sql.push_str(&format!(" AND (u.user_name_fold, u.id) {op} (?, ?)"));
        params.push(SqlValue::Text(name_fold.clone()));
        params.push(SqlValue::Text(id.to_string()));
    }
    params.push(SqlValue::Integer(i64::from(q.limit) + 1));
    let sql = format!(
        "SELECT {USER_COLS} FROM users u WHERE {where_sql} \
         ORDER BY u.user_name_fold {order}, u.id {order} LIMIT ?"
    );
    let mut items = c
        .prepare_cached(&sql)?
        .query_map(params_from_iter(params.iter()), user_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if order == "DESC" {
        items.reverse();
    }
    Ok(Page {
        total: total.max(0) as u64,
        items,
    })
}

impl SqliteStore {
    pub(super) async fn dash_create_session(&self, s: &SessionRecord) -> Result<()> {
        let s = s.clone();
        self.writer
            .write(move |c| {
                db(c.execute(
                    "INSERT INTO dashboard_sessions (id_hash, tenant_id, user_id, csrf_token, created_at,
                        last_seen_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    params![
                        s.id_hash.as_bytes().to_vec(),
                        s.tenant_id.as_str(),
                        s.user_id.as_str(),
                        s.csrf_token,
                        ts(s.created_at),
                        ts(s.last_seen_at),
                        ts(s.expires_at)
                    ],
                ))
                .map(|_| ())
            })
            .await
    }

    pub(super) async fn dash_get_session(
        &self,
        id: &SessionHash,
    ) -> Result<Option<(SessionRecord, DashboardUser)>> {
        let id = id.as_bytes().to_vec();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT s.id_hash, s.tenant_id, s.user_id, s.csrf_token, s.created_at, s.last_seen_at,
                        s.expires_at, d.tenant_id, d.email, d.role, d.password_hash, d.created_at
                 FROM dashboard_sessions s JOIN dashboard_users d ON d.id = s.user_id
                 WHERE s.id_hash = ?",
            )?
            .query_row([id], session_from_row)
            .optional()
        })
        .await
    }

    pub(super) async fn dash_touch_session(
        &self,
        id: &SessionHash,
        at: OffsetDateTime,
    ) -> Result<()> {
        let id = id.as_bytes().to_vec();
        self.writer
            .write(move |c| {
                db(c.execute(
                    "UPDATE dashboard_sessions SET last_seen_at = ? WHERE id_hash = ?",
                    params![ts(at), id],
                ))
                .map(|_| ())
            })
            .await
    }

    pub(super) async fn dash_delete_session(&self, id: &SessionHash) -> Result<()> {
        let id = id.as_bytes().to_vec();
        self.writer
            .write(move |c| {
                db(c.execute("DELETE FROM dashboard_sessions WHERE id_hash = ?", [id])).map(|_| ())
            })
            .await
    }

    pub(super) async fn dash_delete_expired(
        &self,
        now: OffsetDateTime,
        idle_before: OffsetDateTime,
        failures_before: OffsetDateTime,
    ) -> Result<()> {
        self.writer
            .write(move |c| {
                db(c.execute(
                    "DELETE FROM dashboard_sessions WHERE expires_at <= ? OR last_seen_at <= ?",
                    params![ts(now), ts(idle_before)],
                ))?;
                db(c.execute(
                    "DELETE FROM login_failures WHERE at < ?",
                    params![ts(failures_before)],
                ))
                .map(|_| ())
            })
            .await
    }

    pub(super) async fn dash_record_failure(
        &self,
        keys: &[[u8; 32]],
        at: OffsetDateTime,
    ) -> Result<()> {
        let keys = keys.to_vec();
        self.writer
            .write(move |c| {
                for k in &keys {
                    db(c.execute(
                        "INSERT INTO login_failures (key_hash, at) VALUES (?, ?)",
                        params![k.to_vec(), ts(at)],
                    ))?;
                }
                Ok(())
            })
            .await
    }

    pub(super) async fn dash_failures_since(
        &self,
        key: &[u8; 32],
        since: OffsetDateTime,
    ) -> Result<(u32, Option<OffsetDateTime>)> {
        let key = key.to_vec();
        self.read(move |c| {
            let (n, oldest): (i64, Option<String>) = c
                .prepare_cached(
                    "SELECT COUNT(*), MIN(at) FROM login_failures WHERE key_hash = ? AND at >= ?",
                )?
                .query_row(params![key, ts(since)], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok((n.clamp(0, i64::from(u32::MAX)) as u32, opt_time(oldest)?))
        })
        .await
    }

    pub(super) async fn dash_charge_attempt(
        &self,
        rules: &[ThrottleRule],
        now: OffsetDateTime,
        since: OffsetDateTime,
    ) -> Result<Option<time::Duration>> {
        let rules = rules.to_vec();
        // Atomic because the one writer thread runs the whole closure before any other
        // write: no other charge can land between the counts and the inserts.
        self.writer
            .write(move |c| {
                let mut wait: Option<time::Duration> = None;
                for r in &rules {
                    let (n, oldest, newest): (i64, Option<String>, Option<String>) = db(c
                        .prepare_cached(
                            "SELECT COUNT(*), MIN(at), MAX(at) FROM login_failures \
                             WHERE key_hash = ? AND at >= ?",
                        )
                        .and_then(|mut s| {
                            s.query_row(params![r.key.to_vec(), ts(since)], |row| {
                                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                            })
                        }))?;
                    let n = u32::try_from(n.max(0)).unwrap_or(u32::MAX);
                    let v = r.verdict(n, db(opt_time(oldest))?, db(opt_time(newest))?, now);
                    wait = wait.max(v);
                }
                if wait.is_some() {
                    return Ok(wait);
                }
                for r in &rules {
                    db(c.execute(
                        "INSERT INTO login_failures (key_hash, at) VALUES (?, ?)",
                        params![r.key.to_vec(), ts(now)],
                    ))?;
                }
                Ok(None)
            })
            .await
    }

    pub(super) async fn dash_credit_attempt(
        &self,
        keys: &[[u8; 32]],
        at: OffsetDateTime,
    ) -> Result<()> {
        let keys = keys.to_vec();
        self.writer
            .write(move |c| {
                for k in &keys {
                    db(c.execute(
                        "DELETE FROM login_failures WHERE rowid = (SELECT rowid FROM \
                         login_failures WHERE key_hash = ? AND at = ? LIMIT 1)",
                        params![k.to_vec(), ts(at)],
                    ))?;
                }
                Ok(())
            })
            .await
    }

    pub(super) async fn dash_clear_failures(&self, key: &[u8; 32]) -> Result<()> {
        let key = key.to_vec();
        self.writer
            .write(move |c| {
                db(c.execute("DELETE FROM login_failures WHERE key_hash = ?", [key])).map(|_| ())
            })
            .await
    }

    pub(super) async fn dash_list_accounts(
        &self,
        tenant: &TenantId,
        q: &AccountQuery,
    ) -> Result<Page<UserRecord>> {
        let (t, q) = (tenant.to_string(), q.clone());
        self.read(move |c| list_accounts(c, &t, &q)).await
    }

    pub(super) async fn dash_list_activity(
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

    pub(super) async fn dash_activity_per_day(
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

    pub(super) async fn dash_activity_clients(&self, tenant: &TenantId) -> Result<Vec<String>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::audit::{Action, Actor, AuditDraft};
    use cairn_core::ids::{QuotaGb, UserId};
    use cairn_core::store::Store;
    use cairn_core::tenant::Tenant;

    /// The accounts list at 100,000 accounts: every page (first, deep keyset, backwards,
    /// searched, by status) is right, and a keyset page reads the index in order. How
    /// fast: scripts/bench (operation dashboard_accounts), BENCHMARKS.md.
    #[tokio::test]
    async fn accounts_list_pages_right_with_100k_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cairn.db");
        let store = SqliteStore::open(&path).unwrap();
        let now = OffsetDateTime::now_utc();
        let tenant = Tenant {
            id: TenantId::random(),
            name: "Big".into(),
            scim_enabled: true,
            account_size_gb: QuotaGb::default(),
            created_at: now,
            max_account_size_gb: None,
        };
        let audit = AuditDraft {
            tenant_id: tenant.id.clone(),
            actor: Actor::Operator,
            action: Action::TenantCreated,
            target_type: "tenant",
            target_id: None,
            target_name: None,
            changes: serde_json::json!({}),
            meta: Default::default(),
            at: now,
        };
        store.create_tenant(&tenant, audit).await.unwrap();
        {
            let mut c = super::super::conn::open(&path, true).unwrap();
            let tx = c.transaction().unwrap();
            {
                let mut st = tx
                    .prepare(
                        "INSERT INTO users (id, tenant_id, user_name, user_name_fold, display_name,
                            display_name_fold, email, email_fold, active, doc, quota_gb, scim_managed,
                            created_at, updated_at, version, deleted_at)
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, '{}', 10, 1, ?, ?, 1, ?)",
                    )
                    .unwrap();
                for i in 0..100_000 {
                    let name = format!("user{i:06}@big.test");
                    let display = format!("Person {i}");
                    let deleted = (i % 10 == 0).then(|| ts(now));
                    st.execute(params![
                        UserId::random().as_str(),
                        tenant.id.as_str(),
                        name,
                        name,
                        display,
                        display.to_lowercase(),
                        name,
                        name,
                        ts(now),
                        ts(now),
                        deleted
                    ])
                    .unwrap();
                }
            }
            tx.commit().unwrap();
            c.execute_batch("ANALYZE").unwrap();
        }
        let list = |q: AccountQuery| {
            let store = &store;
            let t = tenant.id.clone();
            async move { store.list_accounts(&t, &q).await.unwrap() }
        };
        let first = list(AccountQuery {
            limit: 50,
            ..Default::default()
        })
        .await;
        assert_eq!(first.total, 100_000);
        assert_eq!(first.items.len(), 51);

        let deep = list(AccountQuery {
            cursor: Some(AccountCursor::After {
                name_fold: "user099000@big.test".into(),
                // Sorts after every issued id: the page starts after user099000.
                id: UserId::from_trusted("~".into()),
            }),
            limit: 50,
            ..Default::default()
        })
        .await;
        assert_eq!(deep.items[0].user_name.as_str(), "user099001@big.test");

        let back = list(AccountQuery {
            cursor: Some(AccountCursor::Before {
                name_fold: "user050000@big.test".into(),
                // Sorts before every issued id: the page ends before user050000.
                id: UserId::from_trusted(String::new()),
            }),
            limit: 50,
            ..Default::default()
        })
        .await;
        assert_eq!(
            back.items.last().unwrap().user_name.as_str(),
            "user049999@big.test"
        );

        let found = list(AccountQuery {
            search: Some("user04213".into()),
            limit: 50,
            ..Default::default()
        })
        .await;
        assert_eq!(found.total, 10);

        let deleted = list(AccountQuery {
            status: Some(AccountStatus::Deleted),
            limit: 50,
            ..Default::default()
        })
        .await;
        assert_eq!(deleted.total, 10_000);

        // The plan of a keyset page uses the (tenant, user_name_fold, id) index.
        let c = super::super::conn::open(&path, false).unwrap();
        let plan: Vec<String> = c
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT {USER_COLS} FROM users u WHERE u.tenant_id = ? AND \
                 (u.user_name_fold, u.id) > (?, ?) ORDER BY u.user_name_fold, u.id LIMIT 51"
            ))
            .unwrap()
            .query_map(params![tenant.id.as_str(), "a", "b"], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(
            plan.contains("users_tenant_id_user_name_fold_id_idx"),
            "{plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}
