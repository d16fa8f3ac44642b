//! SQLite side of dashboard users, their sessions and sign-in throttling.

use super::*;
use async_trait::async_trait;
use cairn_core::audit::AuditDraft;
use cairn_core::auth::PasswordHash;
use cairn_core::ids::{fold_case, DashboardUserId, TenantId};
use cairn_core::session::{SessionHash, SessionRecord, ThrottleRule};
use cairn_core::store::*;
use cairn_core::Result;
use rusqlite::{params, OptionalExtension, Row};
use time::OffsetDateTime;

#[async_trait]
impl IdentityStore for SqliteStore {
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

    async fn create_session(&self, s: &SessionRecord) -> Result<()> {
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

    async fn get_session(
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

    async fn touch_session(&self, id: &SessionHash, at: OffsetDateTime) -> Result<()> {
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

    async fn delete_session(&self, id: &SessionHash) -> Result<()> {
        let id = id.as_bytes().to_vec();
        self.writer
            .write(move |c| {
                db(c.execute("DELETE FROM dashboard_sessions WHERE id_hash = ?", [id])).map(|_| ())
            })
            .await
    }

    async fn delete_expired_sessions(
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

    async fn record_login_failure(&self, keys: &[[u8; 32]], at: OffsetDateTime) -> Result<()> {
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

    async fn login_failures_since(
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

    async fn clear_login_failures(&self, key: &[u8; 32]) -> Result<()> {
        let key = key.to_vec();
        self.writer
            .write(move |c| {
                db(c.execute("DELETE FROM login_failures WHERE key_hash = ?", [key])).map(|_| ())
            })
            .await
    }

    async fn charge_login_attempt(
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

    async fn credit_login_attempt(&self, keys: &[[u8; 32]], at: OffsetDateTime) -> Result<()> {
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
