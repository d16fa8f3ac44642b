//! SQLite side of dashboard users, their sessions and sign-in throttling.

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
            c.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM dashboard_users d WHERE email_fold = ?"
            ))?
            .query_row([fold], |r| dashboard_user_from_row(r, 0))
            .optional()
        })
        .await
    }

    async fn create_session(&self, s: &SessionRecord) -> Result<()> {
        let s = s.clone();
        self.writer
            .write(move |c| {
                db(c.execute(
                    "UPDATE dashboard_users SET last_sign_in_at = ? WHERE id = ?",
                    params![ts(s.created_at), s.user_id.as_str()],
                ))?;
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
                        s.expires_at, d.id, d.tenant_id, d.email, d.role, d.password_hash, d.created_at,
                        d.disabled_at IS NOT NULL, d.totp_enabled_at IS NOT NULL
                 FROM dashboard_sessions s JOIN dashboard_users d ON d.id = s.user_id
                 WHERE s.id_hash = ? AND d.disabled_at IS NULL",
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
    async fn list_dashboard_users(&self, tenant: &TenantId) -> Result<Vec<DashboardUserEntry>> {
        let tenant = tenant.as_str().to_owned();
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {USER_COLUMNS}, d.last_sign_in_at,
                        EXISTS (SELECT 1 FROM sso_dashboard_users s WHERE s.dashboard_user_id = d.id)
                 FROM dashboard_users d WHERE d.tenant_id = ? ORDER BY d.email_fold"
            ))?;
            let rows = st.query_map([tenant], |r| {
                Ok(DashboardUserEntry {
                    user: dashboard_user_from_row(r, 0)?,
                    last_sign_in_at: opt_time(r.get(8)?)?,
                    single_sign_on: r.get(9)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn get_dashboard_user(
        &self,
        tenant: &TenantId,
        id: &DashboardUserId,
    ) -> Result<Option<DashboardUser>> {
        let (tenant, id) = (tenant.as_str().to_owned(), id.as_str().to_owned());
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM dashboard_users d WHERE d.tenant_id = ? AND d.id = ?"
            ))?
            .query_row([tenant, id], |r| dashboard_user_from_row(r, 0))
            .optional()
        })
        .await
    }

    async fn invite_dashboard_user(
        &self,
        user: &DashboardUser,
        link: &LinkRecord,
        audit: AuditDraft,
    ) -> Result<()> {
        let (u, l) = (user.clone(), link.clone());
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
                db(insert_link(c, &l))?;
                db(insert_audit(c, &audit))
            })
            .await
    }

    async fn change_dashboard_user(
        &self,
        tenant: &TenantId,
        id: &DashboardUserId,
        change: &UserChange,
        audit: AuditDraft,
    ) -> Result<()> {
        let (tenant, id, change) = (tenant.clone(), id.clone(), change.clone());
        // Atomic because the one writer thread runs the whole closure before any other
        // write: the count of the other active administrators cannot change under it.
        self.writer
            .write(move |c| {
                let user = db(c
                    .prepare_cached(&format!(
                        "SELECT {USER_COLUMNS} FROM dashboard_users d WHERE d.tenant_id = ? AND d.id = ?"
                    ))
                    .and_then(|mut s| {
                        s.query_row([tenant.as_str(), id.as_str()], |r| {
                            dashboard_user_from_row(r, 0)
                        })
                        .optional()
                    }))?
                .ok_or(Error::NotFound("dashboard user"))?;
                if change.removes_active_admin(&user) {
                    let others: i64 = db(c.query_row(
                        "SELECT COUNT(*) FROM dashboard_users WHERE tenant_id = ? AND id <> ?
                           AND role = 'administrator' AND disabled_at IS NULL",
                        [tenant.as_str(), id.as_str()],
                        |r| r.get(0),
                    ))?;
                    if others == 0 {
                        return Err(Error::Invalid {
                            field: "role",
                            reason: LAST_ADMINISTRATOR.into(),
                        });
                    }
                }
                let (uid, at) = (id.as_str(), ts(audit.at));
                if change.ends_sessions() {
                    db(c.execute("DELETE FROM dashboard_sessions WHERE user_id = ?", [uid]))?;
                }
                match &change {
                    UserChange::SetRole(r) => db(c.execute(
                        "UPDATE dashboard_users SET role = ? WHERE id = ?",
                        params![r.as_str(), uid],
                    ))?,
                    UserChange::Disable => db(c.execute(
                        "UPDATE dashboard_users SET disabled_at = ? WHERE id = ?",
                        params![at, uid],
                    ))?,
                    UserChange::Enable => db(c.execute(
                        "UPDATE dashboard_users SET disabled_at = NULL WHERE id = ?",
                        [uid],
                    ))?,
                    UserChange::Delete => {
                        for sql in [
                            "DELETE FROM dashboard_links WHERE user_id = ?",
                            "DELETE FROM dashboard_recovery_codes WHERE user_id = ?",
                            "DELETE FROM sso_dashboard_users WHERE dashboard_user_id = ?",
                            "DELETE FROM sso_subjects WHERE principal_kind = 'dashboard_user' AND principal_id = ?",
                            "DELETE FROM dashboard_users WHERE id = ?",
                        ] {
                            db(c.execute(sql, [uid]))?;
                        }
                        1
                    }
                    UserChange::ResetPassword(link) => {
                        db(c.execute(
                            "UPDATE dashboard_links SET used_at = ? WHERE user_id = ?
                               AND used_at IS NULL AND purpose IN ('invite', 'password_reset')",
                            params![at, uid],
                        ))?;
                        db(insert_link(c, link))?;
                        db(c.execute(
                            "UPDATE dashboard_users SET password_hash = '' WHERE id = ?",
                            [uid],
                        ))?
                    }
                    UserChange::SetPassword(hash) => db(c.execute(
                        "UPDATE dashboard_users SET password_hash = ? WHERE id = ?",
                        params![hash.as_phc(), uid],
                    ))?,
                    UserChange::ResetSecondFactor => {
                        db(c.execute(
                            "DELETE FROM dashboard_recovery_codes WHERE user_id = ?",
                            [uid],
                        ))?;
                        db(c.execute(
                            "UPDATE dashboard_users SET totp_secret = NULL, totp_enabled_at = NULL,
                               totp_last_step = NULL WHERE id = ?",
                            [uid],
                        ))?
                    }
                };
                db(insert_audit(c, &audit))
            })
            .await
    }

    async fn put_link(&self, link: &LinkRecord) -> Result<()> {
        let l = link.clone();
        self.writer
            .write(move |c| {
                // Expired links go as new ones come: the table stays bounded.
                db(c.execute(
                    "DELETE FROM dashboard_links WHERE expires_at < ?",
                    [ts(l.created_at)],
                ))?;
                db(insert_link(c, &l))
            })
            .await
    }

    async fn find_link(
        &self,
        hash: &[u8; 32],
        now: OffsetDateTime,
    ) -> Result<Option<(LinkRecord, DashboardUser)>> {
        let hash = hash.to_vec();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT l.token_hash, l.tenant_id, l.user_id, l.purpose, l.created_at, l.expires_at,
                        {USER_COLUMNS}
                 FROM dashboard_links l JOIN dashboard_users d ON d.id = l.user_id
                 WHERE l.token_hash = ? AND l.used_at IS NULL AND l.expires_at > ?"
            ))?
            .query_row(params![hash, ts(now)], |r| {
                Ok((link_from_row(r)?, dashboard_user_from_row(r, 6)?))
            })
            .optional()
        })
        .await
    }

    async fn consume_link(&self, hash: &[u8; 32], now: OffsetDateTime) -> Result<bool> {
        let hash = hash.to_vec();
        self.writer
            .write(move |c| {
                db(c.execute(
                    "UPDATE dashboard_links SET used_at = ?
                     WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
                    params![ts(now), hash, ts(now)],
                ))
                .map(|n| n == 1)
            })
            .await
    }

    async fn second_factor(
        &self,
        tenant: &TenantId,
        user: &DashboardUserId,
    ) -> Result<Option<SecondFactor>> {
        let (tenant, user) = (tenant.as_str().to_owned(), user.as_str().to_owned());
        self.read(move |c| {
            let row: Option<(Option<Vec<u8>>, Option<String>, Option<i64>)> = c
                .prepare_cached(
                    "SELECT totp_secret, totp_enabled_at, totp_last_step FROM dashboard_users
                     WHERE tenant_id = ? AND id = ?",
                )?
                .query_row([tenant, user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let Some((Some(secret), enabled, last_step)) = row else {
                return Ok(None);
            };
            Ok(Some(SecondFactor {
                secret: TotpSecret::from_bytes(secret),
                enabled_at: opt_time(enabled)?,
                last_step,
            }))
        })
        .await
    }

    async fn set_pending_totp(
        &self,
        tenant: &TenantId,
        user: &DashboardUserId,
        secret: &TotpSecret,
    ) -> Result<()> {
        let (tenant, user) = (tenant.as_str().to_owned(), user.as_str().to_owned());
        let secret = secret.as_bytes().to_vec();
        self.writer
            .write(move |c| {
                db(c.execute(
                    "UPDATE dashboard_users SET totp_secret = ?, totp_last_step = NULL
                     WHERE tenant_id = ? AND id = ? AND totp_enabled_at IS NULL",
                    params![secret, tenant, user],
                ))
                .map(|_| ())
            })
            .await
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
        let (tenant, user) = (tenant.as_str().to_owned(), user.as_str().to_owned());
        let recovery = recovery.to_vec();
        self.writer
            .write(move |c| {
                let n = db(c.execute(
                    "UPDATE dashboard_users SET totp_enabled_at = ?, totp_last_step = ?
                     WHERE tenant_id = ? AND id = ? AND totp_secret IS NOT NULL
                       AND totp_enabled_at IS NULL",
                    params![ts(now), step, tenant, user],
                ))?;
                if n != 1 {
                    return Ok(false);
                }
                db(c.execute(
                    "DELETE FROM dashboard_recovery_codes WHERE user_id = ?",
                    [&user],
                ))?;
                for h in &recovery {
                    db(c.execute(
                        "INSERT INTO dashboard_recovery_codes (tenant_id, user_id, code_hash)
                         VALUES (?, ?, ?)",
                        params![tenant, user, h.to_vec()],
                    ))?;
                }
                db(insert_audit(c, &audit))?;
                Ok(true)
            })
            .await
    }

    async fn use_totp_step(
        &self,
        tenant: &TenantId,
        user: &DashboardUserId,
        step: i64,
    ) -> Result<bool> {
        let (tenant, user) = (tenant.as_str().to_owned(), user.as_str().to_owned());
        self.writer
            .write(move |c| {
                db(c.execute(
                    "UPDATE dashboard_users SET totp_last_step = ?
                     WHERE tenant_id = ? AND id = ? AND totp_enabled_at IS NOT NULL
                       AND (totp_last_step IS NULL OR totp_last_step < ?)",
                    params![step, tenant, user, step],
                ))
                .map(|n| n == 1)
            })
            .await
    }

    async fn use_recovery_code(
        &self,
        tenant: &TenantId,
        user: &DashboardUserId,
        hash: &[u8; 32],
        now: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<bool> {
        let (tenant, user) = (tenant.as_str().to_owned(), user.as_str().to_owned());
        let hash = hash.to_vec();
        self.writer
            .write(move |c| {
                let n = db(c.execute(
                    "UPDATE dashboard_recovery_codes SET used_at = ?
                     WHERE tenant_id = ? AND user_id = ? AND code_hash = ? AND used_at IS NULL",
                    params![ts(now), tenant, user, hash],
                ))?;
                if n == 1 {
                    db(insert_audit(c, &audit))?;
                }
                Ok(n == 1)
            })
            .await
    }

    async fn recovery_codes_left(&self, tenant: &TenantId, user: &DashboardUserId) -> Result<u32> {
        let (tenant, user) = (tenant.as_str().to_owned(), user.as_str().to_owned());
        self.read(move |c| {
            let n: i64 = c
                .prepare_cached(
                    "SELECT COUNT(*) FROM dashboard_recovery_codes
                     WHERE tenant_id = ? AND user_id = ? AND used_at IS NULL",
                )?
                .query_row([tenant, user], |r| r.get(0))?;
            Ok(u32::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn second_factor_required(&self, tenant: &TenantId) -> Result<bool> {
        let tenant = tenant.as_str().to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT require_second_factor FROM dashboard_policies WHERE tenant_id = ?",
            )?
            .query_row([tenant], |r| r.get::<_, bool>(0))
            .optional()?
            .unwrap_or(false))
        })
        .await
    }

    async fn set_second_factor_required(
        &self,
        tenant: &TenantId,
        required: bool,
        audit: AuditDraft,
    ) -> Result<()> {
        let tenant = tenant.as_str().to_owned();
        self.writer
            .write(move |c| {
                db(c.execute(
                    "INSERT INTO dashboard_policies (tenant_id, require_second_factor, updated_at)
                     VALUES (?, ?, ?)
                     ON CONFLICT (tenant_id) DO UPDATE SET
                       require_second_factor = excluded.require_second_factor,
                       updated_at = excluded.updated_at",
                    params![tenant, required, ts(audit.at)],
                ))?;
                db(insert_audit(c, &audit))
            })
            .await
    }
}

fn insert_link(c: &rusqlite::Connection, l: &LinkRecord) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO dashboard_links (token_hash, tenant_id, user_id, purpose, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        l.hash.to_vec(),
        l.tenant_id.as_str(),
        l.user_id.as_str(),
        l.purpose.as_str(),
        ts(l.created_at),
        ts(l.expires_at)
    ])
    .map(|_| ())
}

/// The columns [`dashboard_user_from_row`] reads, of `dashboard_users d`.
const USER_COLUMNS: &str = "d.id, d.tenant_id, d.email, d.role, d.password_hash, d.created_at, \
     d.disabled_at IS NOT NULL, d.totp_enabled_at IS NOT NULL";

fn dashboard_user_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<DashboardUser> {
    let role: String = r.get(at + 3)?;
    Ok(DashboardUser {
        id: DashboardUserId::from_trusted(r.get(at)?),
        tenant_id: TenantId::from_trusted(r.get(at + 1)?),
        email: r.get(at + 2)?,
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        password_hash: PasswordHash::from_phc(r.get(at + 4)?),
        created_at: parse_time(r.get(at + 5)?)?,
        disabled: r.get(at + 6)?,
        second_factor: r.get(at + 7)?,
    })
}

fn link_from_row(r: &Row<'_>) -> rusqlite::Result<LinkRecord> {
    let hash: Vec<u8> = r.get(0)?;
    let purpose: String = r.get(3)?;
    let bad = |what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Blob,
            format!("bad link {what}").into(),
        )
    };
    Ok(LinkRecord {
        hash: <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| bad("hash"))?,
        tenant_id: TenantId::from_trusted(r.get(1)?),
        user_id: DashboardUserId::from_trusted(r.get(2)?),
        purpose: LinkPurpose::parse(&purpose).ok_or_else(|| bad("purpose"))?,
        created_at: parse_time(r.get(4)?)?,
        expires_at: parse_time(r.get(5)?)?,
    })
}

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<(SessionRecord, DashboardUser)> {
    let hash: Vec<u8> = r.get(0)?;
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
    let user = dashboard_user_from_row(r, 7)?;
    Ok((record, user))
}
