//! PostgreSQL side of dashboard users, their sessions and sign-in throttling.

use super::*;
use async_trait::async_trait;
use cairn_core::audit::AuditDraft;
use cairn_core::auth::PasswordHash;
use cairn_core::ids::{fold_case, DashboardUserId, TenantId};
use cairn_core::session::{SessionHash, SessionRecord, ThrottleRule};
use cairn_core::store::*;
use cairn_core::{Error, Result};
use time::OffsetDateTime;
use tokio_postgres::Row;

#[async_trait]
impl IdentityStore for PostgresStore {
    async fn create_dashboard_user(&self, u: &DashboardUser, audit: AuditDraft) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        tx.execute(
            "INSERT INTO dashboard_users (id, tenant_id, email, email_fold, role, password_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &u.id.as_str(),
                &u.tenant_id.as_str(),
                &u.email,
                &fold_case(&u.email),
                &u.role.as_str(),
                &u.password_hash.as_phc(),
                &ts(u.created_at),
            ],
        )
        .await
        .map_err(map_err)?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn find_dashboard_user(&self, email: &str) -> Result<Option<DashboardUser>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT id, tenant_id, email, role, password_hash, created_at FROM dashboard_users WHERE email_fold = $1",
                &[&fold_case(email.trim())],
            )
            .await
            .map_err(map_err)?;
        row.map(|r| {
            let role: String = r.get(3);
            Ok(DashboardUser {
                id: DashboardUserId::from_trusted(r.get(0)),
                tenant_id: TenantId::from_trusted(r.get(1)),
                email: r.get(2),
                role: Role::parse(&role).unwrap_or(Role::Viewer),
                password_hash: PasswordHash::from_phc(r.get(4)),
                created_at: time_of(r.get(5))?,
            })
        })
        .transpose()
    }

    async fn create_session(&self, s: &SessionRecord) -> Result<()> {
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

    async fn get_session(
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

    async fn touch_session(&self, id: &SessionHash, at: OffsetDateTime) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "UPDATE dashboard_sessions SET last_seen_at = $1 WHERE id_hash = $2",
            &[&ts(at), &id.as_bytes().as_slice()],
        )
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn delete_session(&self, id: &SessionHash) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "DELETE FROM dashboard_sessions WHERE id_hash = $1",
            &[&id.as_bytes().as_slice()],
        )
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn delete_expired_sessions(
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

    async fn record_login_failure(&self, keys: &[[u8; 32]], at: OffsetDateTime) -> Result<()> {
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

    async fn login_failures_since(
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

    async fn clear_login_failures(&self, key: &[u8; 32]) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "DELETE FROM login_failures WHERE key_hash = $1",
            &[&key.as_slice()],
        )
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn charge_login_attempt(
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

    async fn credit_login_attempt(&self, keys: &[[u8; 32]], at: OffsetDateTime) -> Result<()> {
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
