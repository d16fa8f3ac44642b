//! PostgreSQL side of the dashboard: sessions (shared by every instance), sign-in
//! failures, the accounts list with search and keyset paging, and the filtered activity
//! log with per-day counts. Called from the `Store` impl in `mod.rs`.

use super::filter::Sql;
use super::{
    map_err, opt_time, pool_err, refs, time_of, ts, user_from_row, PostgresStore, USER_COLS,
};
use cairn_core::audit::AuditEvent;
use cairn_core::auth::PasswordHash;
use cairn_core::dashboard::{AccountCursor, AccountQuery, ActivityFilter, DayCount};
use cairn_core::ids::{fold_case, DashboardUserId, TenantId};
use cairn_core::query::Page;
use cairn_core::session::{SessionHash, SessionRecord, ThrottleRule};
use cairn_core::store::{DashboardUser, Role};
use cairn_core::user::{AccountStatus, UserRecord};
use cairn_core::{Error, Result};
use time::OffsetDateTime;
use tokio_postgres::Row;

/// A LIKE pattern matching strings that start with `p` literally.
fn prefix_pattern(p: &str) -> String {
    let mut out = String::with_capacity(p.len() + 1);
    for ch in p.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('%');
    out
}

/// The first argument of the two-key advisory locks of sign-in charges ("CS"), apart
/// from the one-key migration lock.
const SIGN_IN_LOCK_CLASS: i32 = 0x4353;

/// A throttle key's advisory lock: its first four bytes (keys are SHA-256 digests, so
/// a collision only makes two unrelated charges wait for each other).
fn advisory_key(key: &[u8; 32]) -> i32 {
    i32::from_be_bytes([key[0], key[1], key[2], key[3]])
}

fn session_from_row(r: &Row) -> Result<(SessionRecord, DashboardUser)> {
    let hash: Vec<u8> = r.get(0);
    let role: String = r.get(9);
    let record = SessionRecord {
        id_hash: SessionHash::from_bytes(&hash)
            .ok_or_else(|| Error::Internal("bad session hash".into()))?,
        tenant_id: TenantId::from_trusted(r.get(1)),
        user_id: DashboardUserId::from_trusted(r.get(2)),
        csrf_token: r.get(3),
        created_at: time_of(r.get(4))?,
        last_seen_at: time_of(r.get(5))?,
        expires_at: time_of(r.get(6))?,
    };
    let user = DashboardUser {
        id: record.user_id.clone(),
        tenant_id: TenantId::from_trusted(r.get(7)),
        email: r.get(8),
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        password_hash: PasswordHash::from_phc(r.get(10)),
        created_at: time_of(r.get(11))?,
    };
    Ok((record, user))
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

impl PostgresStore {
    pub(super) async fn dash_create_session(&self, s: &SessionRecord) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "INSERT INTO dashboard_sessions (id_hash, tenant_id, user_id, csrf_token, created_at,
                last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &s.id_hash.as_bytes().as_slice(),
                &s.tenant_id.as_str(),
                &s.user_id.as_str(),
                &s.csrf_token,
                &ts(s.created_at),
                &ts(s.last_seen_at),
                &ts(s.expires_at),
            ],
        )
        .await
        .map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn dash_get_session(
        &self,
        id: &SessionHash,
    ) -> Result<Option<(SessionRecord, DashboardUser)>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT s.id_hash, s.tenant_id, s.user_id, s.csrf_token, s.created_at, s.last_seen_at,
                        s.expires_at, d.tenant_id, d.email, d.role, d.password_hash, d.created_at
                 FROM dashboard_sessions s JOIN dashboard_users d ON d.id = s.user_id
                 WHERE s.id_hash = $1",
                &[&id.as_bytes().as_slice()],
            )
            .await
            .map_err(map_err)?;
        row.as_ref().map(session_from_row).transpose()
    }

    pub(super) async fn dash_touch_session(
        &self,
        id: &SessionHash,
        at: OffsetDateTime,
    ) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "UPDATE dashboard_sessions SET last_seen_at = $1 WHERE id_hash = $2",
            &[&ts(at), &id.as_bytes().as_slice()],
        )
        .await
        .map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn dash_delete_session(&self, id: &SessionHash) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "DELETE FROM dashboard_sessions WHERE id_hash = $1",
            &[&id.as_bytes().as_slice()],
        )
        .await
        .map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn dash_delete_expired(
        &self,
        now: OffsetDateTime,
        idle_before: OffsetDateTime,
        failures_before: OffsetDateTime,
    ) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "DELETE FROM dashboard_sessions WHERE expires_at <= $1 OR last_seen_at <= $2",
            &[&ts(now), &ts(idle_before)],
        )
        .await
        .map_err(map_err)?;
        c.execute(
            "DELETE FROM login_failures WHERE at < $1",
            &[&ts(failures_before)],
        )
        .await
        .map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn dash_record_failure(
        &self,
        keys: &[[u8; 32]],
        at: OffsetDateTime,
    ) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        for k in keys {
            c.execute(
                "INSERT INTO login_failures (key_hash, at) VALUES ($1, $2)",
                &[&k.as_slice(), &ts(at)],
            )
            .await
            .map_err(map_err)?;
        }
        Ok(())
    }

    pub(super) async fn dash_failures_since(
        &self,
        key: &[u8; 32],
        since: OffsetDateTime,
    ) -> Result<(u32, Option<OffsetDateTime>)> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let r = c
            .query_one(
                "SELECT COUNT(*), MIN(at) FROM login_failures WHERE key_hash = $1 AND at >= $2",
                &[&key.as_slice(), &ts(since)],
            )
            .await
            .map_err(map_err)?;
        let n: i64 = r.get(0);
        Ok((n.clamp(0, i64::from(u32::MAX)) as u32, opt_time(r.get(1))?))
    }

    pub(super) async fn dash_charge_attempt(
        &self,
        rules: &[ThrottleRule],
        now: OffsetDateTime,
        since: OffsetDateTime,
    ) -> Result<Option<time::Duration>> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        // Instances share the limits: a transaction-scoped advisory lock per key makes the
        // count and the insert one step across all of them (PostgreSQL manual, "Advisory
        // Locks"). Locks are taken in key order so that two charges cannot deadlock.
        let mut locks: Vec<i32> = rules.iter().map(|r| advisory_key(&r.key)).collect();
        locks.sort_unstable();
        locks.dedup();
        for k in &locks {
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, $2)",
                &[&SIGN_IN_LOCK_CLASS, k],
            )
            .await
            .map_err(map_err)?;
        }
        let mut wait: Option<time::Duration> = None;
        for r in rules {
            let row = tx
                .query_one(
                    "SELECT COUNT(*), MIN(at), MAX(at) FROM login_failures \
                     WHERE key_hash = $1 AND at >= $2",
                    &[&r.key.as_slice(), &ts(since)],
                )
                .await
                .map_err(map_err)?;
            let n: i64 = row.get(0);
            let n = u32::try_from(n.max(0)).unwrap_or(u32::MAX);
            let v = r.verdict(n, opt_time(row.get(1))?, opt_time(row.get(2))?, now);
            wait = wait.max(v);
        }
        if wait.is_some() {
            return Ok(wait);
        }
        for r in rules {
            tx.execute(
                "INSERT INTO login_failures (key_hash, at) VALUES ($1, $2)",
                &[&r.key.as_slice(), &ts(now)],
            )
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(None)
    }

    pub(super) async fn dash_credit_attempt(
        &self,
        keys: &[[u8; 32]],
        at: OffsetDateTime,
    ) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        for k in keys {
            c.execute(
                "DELETE FROM login_failures WHERE ctid = (SELECT ctid FROM login_failures \
                 WHERE key_hash = $1 AND at = $2 LIMIT 1)",
                &[&k.as_slice(), &ts(at)],
            )
            .await
            .map_err(map_err)?;
        }
        Ok(())
    }

    pub(super) async fn dash_clear_failures(&self, key: &[u8; 32]) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "DELETE FROM login_failures WHERE key_hash = $1",
            &[&key.as_slice()],
        )
        .await
        .map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn dash_list_accounts(
        &self,
        tenant: &TenantId,
        q: &AccountQuery,
    ) -> Result<Page<UserRecord>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let mut sql = Sql::default();
        let t = sql.bind(Box::new(tenant.to_string()));
        sql.text = format!("u.tenant_id = {t}");
        if let Some(s) = &q.search {
            // LIKE 'prefix%' is answered by the text_pattern_ops indexes of migration 0002.
            let pat = sql.bind(Box::new(prefix_pattern(s)));
            let exact = sql.bind(Box::new(s.clone()));
            sql.text.push_str(&format!(
                " AND (u.user_name_fold LIKE {pat} OR u.email_fold LIKE {pat} \
                 OR u.display_name_fold LIKE {pat} OR u.id = {exact})"
            ));
        }
        match q.status {
            None => {}
            Some(AccountStatus::Active) => {
                sql.text.push_str(" AND u.deleted_at IS NULL AND u.active")
            }
            Some(AccountStatus::Suspended) => sql
                .text
                .push_str(" AND u.deleted_at IS NULL AND NOT u.active"),
            Some(AccountStatus::Deleted) => sql.text.push_str(" AND u.deleted_at IS NOT NULL"),
        }
        let total: i64 = c
            .query_one(
                &format!("SELECT COUNT(*) FROM users u WHERE {}", sql.text),
                &refs(&sql.params),
            )
            .await
            .map_err(map_err)?
            .get(0);
        let (cmp, order) = match &q.cursor {
            None => (None, "ASC"),
            Some(AccountCursor::After { name_fold, id }) => (Some((">", name_fold, id)), "ASC"),
            Some(AccountCursor::Before { name_fold, id }) => (Some(("<", name_fold, id)), "DESC"),
        };
        if let Some((op, name_fold, id)) = cmp {
            let n = sql.bind(Box::new(name_fold.clone()));
            let i = sql.bind(Box::new(id.to_string()));
            sql.text
                .push_str(&format!(" AND (u.user_name_fold, u.id) {op} ({n}, {i})"));
        }
        let limit = sql.bind(Box::new(i64::from(q.limit) + 1));
        let text = format!(
            "SELECT {USER_COLS} FROM users u WHERE {} \
             ORDER BY u.user_name_fold {order}, u.id {order} LIMIT {limit}",
            sql.text
        );
        let rows = c.query(&text, &refs(&sql.params)).await.map_err(map_err)?;
        let mut items = rows.iter().map(user_from_row).collect::<Result<Vec<_>>>()?;
        if order == "DESC" {
            items.reverse();
        }
        Ok(Page {
            total: total.max(0) as u64,
            items,
        })
    }

    pub(super) async fn dash_list_activity(
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

    pub(super) async fn dash_activity_per_day(
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

    pub(super) async fn dash_activity_clients(&self, tenant: &TenantId) -> Result<Vec<String>> {
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
