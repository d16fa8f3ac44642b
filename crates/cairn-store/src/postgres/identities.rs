//! PostgreSQL side of dashboard users, their sessions and sign-in throttling.

use super::*;
use async_trait::async_trait;
use cairn_core::audit::AuditDraft;
use cairn_core::auth::PasswordHash;
use cairn_core::ids::{fold_case, DashboardUserId, TenantId};
use cairn_core::people::{
    DashboardUserEntry, LinkPurpose, LinkRecord, SecondFactor, UserChange, LAST_ADMINISTRATOR,
};
use cairn_core::session::{SessionHash, SessionRecord, ThrottleRule};
use cairn_core::store::*;
use cairn_core::totp::TotpSecret;
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
                &format!("SELECT {USER_COLUMNS} FROM dashboard_users d WHERE d.email_fold = $1"),
                &[&fold_case(email.trim())],
            )
            .await
            .map_err(map_err)?;
        row.map(|r| dashboard_user_from_row(&r, 0)).transpose()
    }

    async fn create_session(&self, s: &SessionRecord) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "UPDATE dashboard_users SET last_sign_in_at = $1 WHERE id = $2",
            &[&ts(s.created_at), &s.user_id.as_str()],
        )
        .await
        .map_err(map_err)?;
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
                        s.expires_at, d.id, d.tenant_id, d.email, d.role, d.password_hash, d.created_at,
                        d.disabled_at IS NOT NULL, d.totp_enabled_at IS NOT NULL
                 FROM dashboard_sessions s JOIN dashboard_users d ON d.id = s.user_id
                 WHERE s.id_hash = $1 AND d.disabled_at IS NULL",
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
    async fn list_dashboard_users(&self, tenant: &TenantId) -> Result<Vec<DashboardUserEntry>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                &format!(
                    "SELECT {USER_COLUMNS}, d.last_sign_in_at,
                            EXISTS (SELECT 1 FROM sso_dashboard_users s WHERE s.dashboard_user_id = d.id)
                     FROM dashboard_users d WHERE d.tenant_id = $1 ORDER BY d.email_fold"
                ),
                &[&tenant.as_str()],
            )
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok(DashboardUserEntry {
                    user: dashboard_user_from_row(r, 0)?,
                    last_sign_in_at: opt_time(r.get(8))?,
                    single_sign_on: r.get(9),
                })
            })
            .collect()
    }

    async fn get_dashboard_user(
        &self,
        tenant: &TenantId,
        id: &DashboardUserId,
    ) -> Result<Option<DashboardUser>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                &format!(
                    "SELECT {USER_COLUMNS} FROM dashboard_users d WHERE d.tenant_id = $1 AND d.id = $2"
                ),
                &[&tenant.as_str(), &id.as_str()],
            )
            .await
            .map_err(map_err)?;
        row.map(|r| dashboard_user_from_row(&r, 0)).transpose()
    }

    async fn invite_dashboard_user(
        &self,
        u: &DashboardUser,
        link: &LinkRecord,
        audit: AuditDraft,
    ) -> Result<()> {
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
        insert_link(&*tx, link).await?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn change_dashboard_user(
        &self,
        tenant: &TenantId,
        id: &DashboardUserId,
        change: &UserChange,
        audit: AuditDraft,
    ) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        // Changes to a tenant's dashboard users take the tenant's row lock first, so they
        // run one after another across instances; each statement after it reads what the
        // one before committed (READ COMMITTED takes a new snapshot per statement), so
        // the count of the other active administrators below is current. NO KEY UPDATE:
        // inserts elsewhere that reference the tenant (KEY SHARE) are not held up.
        tx.execute(
            "SELECT 1 FROM tenants WHERE id = $1 FOR NO KEY UPDATE",
            &[&tenant.as_str()],
        )
        .await
        .map_err(map_err)?;
        let user = tx
            .query_opt(
                &format!(
                    "SELECT {USER_COLUMNS} FROM dashboard_users d WHERE d.tenant_id = $1 AND d.id = $2"
                ),
                &[&tenant.as_str(), &id.as_str()],
            )
            .await
            .map_err(map_err)?
            .map(|r| dashboard_user_from_row(&r, 0))
            .transpose()?
            .ok_or(Error::NotFound("dashboard user"))?;
        if change.removes_active_admin(&user) {
            let others: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM dashboard_users WHERE tenant_id = $1 AND id <> $2
                       AND role = 'administrator' AND disabled_at IS NULL",
                    &[&tenant.as_str(), &id.as_str()],
                )
                .await
                .map_err(map_err)?
                .get(0);
            if others == 0 {
                return Err(Error::Invalid {
                    field: "role",
                    reason: LAST_ADMINISTRATOR.into(),
                });
            }
        }
        let (uid, at) = (id.as_str(), ts(audit.at));
        if change.ends_sessions() {
            tx.execute("DELETE FROM dashboard_sessions WHERE user_id = $1", &[&uid])
                .await
                .map_err(map_err)?;
        }
        let run = |sql: &'static str| {
            let tx = &tx;
            async move { tx.execute(sql, &[&uid]).await.map_err(map_err) }
        };
        match change {
            UserChange::SetRole(r) => {
                tx.execute(
                    "UPDATE dashboard_users SET role = $1 WHERE id = $2",
                    &[&r.as_str(), &uid],
                )
                .await
                .map_err(map_err)?;
            }
            UserChange::Disable => {
                tx.execute(
                    "UPDATE dashboard_users SET disabled_at = $1 WHERE id = $2",
                    &[&at, &uid],
                )
                .await
                .map_err(map_err)?;
            }
            UserChange::Enable => {
                run("UPDATE dashboard_users SET disabled_at = NULL WHERE id = $1").await?;
            }
            UserChange::Delete => {
                for sql in [
                    "DELETE FROM dashboard_links WHERE user_id = $1",
                    "DELETE FROM dashboard_recovery_codes WHERE user_id = $1",
                    "DELETE FROM sso_dashboard_users WHERE dashboard_user_id = $1",
                    "DELETE FROM sso_subjects WHERE principal_kind = 'dashboard_user' AND principal_id = $1",
                    "DELETE FROM dashboard_users WHERE id = $1",
                ] {
                    run(sql).await?;
                }
            }
            UserChange::ResetPassword(link) => {
                tx.execute(
                    "UPDATE dashboard_links SET used_at = $1 WHERE user_id = $2
                       AND used_at IS NULL AND purpose IN ('invite', 'password_reset')",
                    &[&at, &uid],
                )
                .await
                .map_err(map_err)?;
                insert_link(&*tx, link).await?;
                run("UPDATE dashboard_users SET password_hash = '' WHERE id = $1").await?;
            }
            UserChange::SetPassword(hash) => {
                tx.execute(
                    "UPDATE dashboard_users SET password_hash = $1 WHERE id = $2",
                    &[&hash.as_phc(), &uid],
                )
                .await
                .map_err(map_err)?;
            }
            UserChange::ResetSecondFactor => {
                run("DELETE FROM dashboard_recovery_codes WHERE user_id = $1").await?;
                run("UPDATE dashboard_users SET totp_secret = NULL, totp_enabled_at = NULL,
                       totp_last_step = NULL WHERE id = $1")
                .await?;
            }
        }
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn put_link(&self, link: &LinkRecord) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        // Expired links go as new ones come: the table stays bounded.
        c.execute(
            "DELETE FROM dashboard_links WHERE expires_at < $1",
            &[&ts(link.created_at)],
        )
        .await
        .map_err(map_err)?;
        insert_link(&**c, link).await
    }

    async fn find_link(
        &self,
        hash: &[u8; 32],
        now: OffsetDateTime,
    ) -> Result<Option<(LinkRecord, DashboardUser)>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                &format!(
                    "SELECT l.token_hash, l.tenant_id, l.user_id, l.purpose, l.created_at, l.expires_at,
                            {USER_COLUMNS}
                     FROM dashboard_links l JOIN dashboard_users d ON d.id = l.user_id
                     WHERE l.token_hash = $1 AND l.used_at IS NULL AND l.expires_at > $2"
                ),
                &[&hash.as_slice(), &ts(now)],
            )
            .await
            .map_err(map_err)?;
        row.map(|r| Ok((link_from_row(&r)?, dashboard_user_from_row(&r, 6)?)))
            .transpose()
    }

    async fn consume_link(&self, hash: &[u8; 32], now: OffsetDateTime) -> Result<bool> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let n = c
            .execute(
                "UPDATE dashboard_links SET used_at = $1
                 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
                &[&ts(now), &hash.as_slice()],
            )
            .await
            .map_err(map_err)?;
        Ok(n == 1)
    }

    async fn second_factor(
        &self,
        tenant: &TenantId,
        user: &DashboardUserId,
    ) -> Result<Option<SecondFactor>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT totp_secret, totp_enabled_at, totp_last_step FROM dashboard_users
                 WHERE tenant_id = $1 AND id = $2",
                &[&tenant.as_str(), &user.as_str()],
            )
            .await
            .map_err(map_err)?;
        let Some(r) = row else { return Ok(None) };
        let Some(secret) = r.get::<_, Option<Vec<u8>>>(0) else {
            return Ok(None);
        };
        Ok(Some(SecondFactor {
            secret: TotpSecret::from_bytes(secret),
            enabled_at: opt_time(r.get(1))?,
            last_step: r.get(2),
        }))
    }

    async fn set_pending_totp(
        &self,
        tenant: &TenantId,
        user: &DashboardUserId,
        secret: &TotpSecret,
    ) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "UPDATE dashboard_users SET totp_secret = $1, totp_last_step = NULL
             WHERE tenant_id = $2 AND id = $3 AND totp_enabled_at IS NULL",
            &[&secret.as_bytes(), &tenant.as_str(), &user.as_str()],
        )
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn enable_totp(
        &self,
        tenant: &TenantId,
        user: &DashboardUserId,
        step: i64,
        recovery: &[[u8; 32]],
        now: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<bool> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let n = tx
            .execute(
                "UPDATE dashboard_users SET totp_enabled_at = $1, totp_last_step = $2
                 WHERE tenant_id = $3 AND id = $4 AND totp_secret IS NOT NULL
                   AND totp_enabled_at IS NULL",
                &[&ts(now), &step, &tenant.as_str(), &user.as_str()],
            )
            .await
            .map_err(map_err)?;
        if n != 1 {
            return Ok(false);
        }
        tx.execute(
            "DELETE FROM dashboard_recovery_codes WHERE user_id = $1",
            &[&user.as_str()],
        )
        .await
        .map_err(map_err)?;
        for h in recovery {
            tx.execute(
                "INSERT INTO dashboard_recovery_codes (tenant_id, user_id, code_hash)
                 VALUES ($1, $2, $3)",
                &[&tenant.as_str(), &user.as_str(), &h.as_slice()],
            )
            .await
            .map_err(map_err)?;
        }
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn use_totp_step(
        &self,
        tenant: &TenantId,
        user: &DashboardUserId,
        step: i64,
    ) -> Result<bool> {
        let c = self.pool.get().await.map_err(pool_err)?;
        // One statement: the row lock of the UPDATE makes a concurrent use of the same
        // code re-check `totp_last_step` after the first commits (and fail).
        let n = c
            .execute(
                "UPDATE dashboard_users SET totp_last_step = $1
                 WHERE tenant_id = $2 AND id = $3 AND totp_enabled_at IS NOT NULL
                   AND (totp_last_step IS NULL OR totp_last_step < $1)",
                &[&step, &tenant.as_str(), &user.as_str()],
            )
            .await
            .map_err(map_err)?;
        Ok(n == 1)
    }

    async fn use_recovery_code(
        &self,
        tenant: &TenantId,
        user: &DashboardUserId,
        hash: &[u8; 32],
        now: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<bool> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let n = tx
            .execute(
                "UPDATE dashboard_recovery_codes SET used_at = $1
                 WHERE tenant_id = $2 AND user_id = $3 AND code_hash = $4 AND used_at IS NULL",
                &[&ts(now), &tenant.as_str(), &user.as_str(), &hash.as_slice()],
            )
            .await
            .map_err(map_err)?;
        if n != 1 {
            return Ok(false);
        }
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn recovery_codes_left(&self, tenant: &TenantId, user: &DashboardUserId) -> Result<u32> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let n: i64 = c
            .query_one(
                "SELECT COUNT(*) FROM dashboard_recovery_codes
                 WHERE tenant_id = $1 AND user_id = $2 AND used_at IS NULL",
                &[&tenant.as_str(), &user.as_str()],
            )
            .await
            .map_err(map_err)?
            .get(0);
        Ok(u32::try_from(n).unwrap_or(0))
    }

    async fn second_factor_required(&self, tenant: &TenantId) -> Result<bool> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT require_second_factor FROM dashboard_policies WHERE tenant_id = $1",
                &[&tenant.as_str()],
            )
            .await
            .map_err(map_err)?;
        Ok(row.is_some_and(|r| r.get(0)))
    }

    async fn set_second_factor_required(
        &self,
        tenant: &TenantId,
        required: bool,
        audit: AuditDraft,
    ) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        tx.execute(
            "INSERT INTO dashboard_policies (tenant_id, require_second_factor, updated_at)
             VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id) DO UPDATE SET
               require_second_factor = excluded.require_second_factor,
               updated_at = excluded.updated_at",
            &[&tenant.as_str(), &required, &ts(audit.at)],
        )
        .await
        .map_err(map_err)?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
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

/// The columns [`dashboard_user_from_row`] reads, of `dashboard_users d`.
const USER_COLUMNS: &str = "d.id, d.tenant_id, d.email, d.role, d.password_hash, d.created_at, \
     d.disabled_at IS NOT NULL, d.totp_enabled_at IS NOT NULL";

fn dashboard_user_from_row(r: &Row, at: usize) -> Result<DashboardUser> {
    let role: String = r.get(at + 3);
    Ok(DashboardUser {
        id: DashboardUserId::from_trusted(r.get(at)),
        tenant_id: TenantId::from_trusted(r.get(at + 1)),
        email: r.get(at + 2),
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        password_hash: PasswordHash::from_phc(r.get(at + 4)),
        created_at: time_of(r.get(at + 5))?,
        disabled: r.get(at + 6),
        second_factor: r.get(at + 7),
    })
}

fn link_from_row(r: &Row) -> Result<LinkRecord> {
    let hash: Vec<u8> = r.get(0);
    let purpose: String = r.get(3);
    Ok(LinkRecord {
        hash: <[u8; 32]>::try_from(hash.as_slice())
            .map_err(|_| Error::Internal("bad link hash".into()))?,
        tenant_id: TenantId::from_trusted(r.get(1)),
        user_id: DashboardUserId::from_trusted(r.get(2)),
        purpose: LinkPurpose::parse(&purpose)
            .ok_or_else(|| Error::Internal(format!("bad link purpose {purpose}")))?,
        created_at: time_of(r.get(4))?,
        expires_at: time_of(r.get(5))?,
    })
}

async fn insert_link<C: GenericClient>(c: &C, l: &LinkRecord) -> Result<()> {
    c.execute(
        "INSERT INTO dashboard_links (token_hash, tenant_id, user_id, purpose, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &l.hash.as_slice(),
            &l.tenant_id.as_str(),
            &l.user_id.as_str(),
            &l.purpose.as_str(),
            &ts(l.created_at),
            &ts(l.expires_at),
        ],
    )
    .await
    .map_err(map_err)?;
    Ok(())
}

fn session_from_row(r: &Row) -> Result<(SessionRecord, DashboardUser)> {
    let hash: Vec<u8> = r.get(0);
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
    let user = dashboard_user_from_row(r, 7)?;
    Ok((record, user))
}
