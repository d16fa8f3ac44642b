//! SQLite side of getting people started (migration 0022): one-time sign-in links for
//! backup accounts. Single use holds because the one writer thread runs each write
//! whole: the conditional update, the session and the audit entry commit together.

use super::*;
use cairn_core::mail::{MailKind, MailOutcome, MailState, OutboxMail, WelcomeSettings};
use cairn_core::sso::AccountSessionRecord;
use cairn_core::welcome::AccountLinkRecord;

const MAIL_COLS: &str = "id, tenant_id, user_id, kind, state, created_at, next_attempt_at, \
    attempts, sent_at, last_error";

fn bad(col: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        col,
        rusqlite::types::Type::Text,
        what.to_owned().into(),
    )
}

fn mail_from_row(r: &Row<'_>) -> rusqlite::Result<OutboxMail> {
    let kind: String = r.get(3)?;
    let state: String = r.get(4)?;
    Ok(OutboxMail {
        id: r.get(0)?,
        tenant_id: TenantId::from_trusted(r.get(1)?),
        user_id: UserId::from_trusted(r.get(2)?),
        kind: MailKind::parse(&kind).ok_or_else(|| bad(3, "bad mail kind"))?,
        state: MailState::parse(&state).ok_or_else(|| bad(4, "bad mail state"))?,
        created_at: parse_time(r.get(5)?)?,
        next_attempt_at: parse_time(r.get(6)?)?,
        attempts: u32::try_from(r.get::<_, i64>(7)?).unwrap_or(u32::MAX),
        sent_at: opt_time(r.get(8)?)?,
        last_error: r.get(9)?,
    })
}

fn insert_mail(c: &Connection, m: &OutboxMail) -> rusqlite::Result<usize> {
    c.execute(
        "INSERT INTO mail_outbox (id, tenant_id, user_id, kind, state, created_at,
            next_attempt_at, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT DO NOTHING",
        params![
            m.id,
            m.tenant_id.as_str(),
            m.user_id.as_str(),
            m.kind.as_str(),
            m.state.as_str(),
            ts(m.created_at),
            ts(m.next_attempt_at),
            i64::from(m.attempts)
        ],
    )
}

fn link_from_row(r: &Row<'_>) -> rusqlite::Result<AccountLinkRecord> {
    let hash: Vec<u8> = r.get(0)?;
    Ok(AccountLinkRecord {
        hash: hash.try_into().map_err(|_| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Blob,
                "bad link hash".into(),
            )
        })?,
        tenant_id: TenantId::from_trusted(r.get(1)?),
        user_id: UserId::from_trusted(r.get(2)?),
        created_at: parse_time(r.get(3)?)?,
        expires_at: parse_time(r.get(4)?)?,
        used_at: opt_time(r.get(5)?)?,
    })
}

#[async_trait]
impl WelcomeStore for SqliteStore {
    async fn create_account_link(
        &self,
        link: &AccountLinkRecord,
        forget_before: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<()> {
        let l = link.clone();
        self.writer
            .write(move |c| {
                db(c.execute(
                    "DELETE FROM account_links WHERE expires_at < ?",
                    [ts(forget_before)],
                ))?;
                db(c.execute(
                    "INSERT INTO account_links (token_hash, tenant_id, user_id, created_at,
                        expires_at) VALUES (?, ?, ?, ?, ?)",
                    params![
                        l.hash.to_vec(),
                        l.tenant_id.as_str(),
                        l.user_id.as_str(),
                        ts(l.created_at),
                        ts(l.expires_at)
                    ],
                ))?;
                db(insert_audit(c, &audit))
            })
            .await
    }

    async fn get_account_link(&self, hash: &[u8; 32]) -> Result<Option<AccountLinkRecord>> {
        let hash = hash.to_vec();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT token_hash, tenant_id, user_id, created_at, expires_at, used_at
                 FROM account_links WHERE token_hash = ?",
            )?
            .query_row([hash], link_from_row)
            .optional()
        })
        .await
    }

    async fn use_account_link(
        &self,
        hash: &[u8; 32],
        now: OffsetDateTime,
        s: &AccountSessionRecord,
        audit: AuditDraft,
    ) -> Result<bool> {
        let (hash, s) = (hash.to_vec(), s.clone());
        self.writer
            .write(move |c| {
                let n = db(c.execute(
                    "UPDATE account_links SET used_at = ?1
                     WHERE token_hash = ?2 AND tenant_id = ?3 AND user_id = ?4
                       AND used_at IS NULL AND expires_at > ?1",
                    params![ts(now), hash, s.tenant_id.as_str(), s.user_id.as_str()],
                ))?;
                if n != 1 {
                    return Ok(false);
                }
                db(c.execute(
                    "INSERT INTO account_sessions (id_hash, tenant_id, user_id, created_at,
                        last_seen_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                    params![
                        s.id_hash.as_bytes().to_vec(),
                        s.tenant_id.as_str(),
                        s.user_id.as_str(),
                        ts(s.created_at),
                        ts(s.last_seen_at),
                        ts(s.expires_at)
                    ],
                ))?;
                db(insert_audit(c, &audit))?;
                Ok(true)
            })
            .await
    }

    async fn queue_mail(&self, mail: &OutboxMail, audit: Option<AuditDraft>) -> Result<bool> {
        let m = mail.clone();
        self.writer
            .write(move |c| {
                let n = db(insert_mail(c, &m))?;
                if n == 1 {
                    if let Some(a) = &audit {
                        db(insert_audit(c, a))?;
                    }
                }
                Ok(n == 1)
            })
            .await
    }

    async fn queue_mails(&self, mails: &[OutboxMail], audit: AuditDraft) -> Result<()> {
        let mails = mails.to_vec();
        self.writer
            .write(move |c| {
                for m in &mails {
                    db(insert_mail(c, m))?;
                }
                db(insert_audit(c, &audit))
            })
            .await
    }

    async fn queue_due_mail(&self, now: OffsetDateTime) -> Result<u64> {
        self.writer
            .write(move |c| {
                let now_s = ts(now);
                // Missed welcomes: accounts created since welcomes were turned on.
                let mut n = db(c.execute(
                    "INSERT INTO mail_outbox (id, tenant_id, user_id, kind, state, created_at,
                        next_attempt_at, attempts)
                     SELECT lower(hex(randomblob(16))), u.tenant_id, u.id, 'welcome', 'pending',
                            ?1, ?1, 0
                     FROM welcome_settings w JOIN users u ON u.tenant_id = w.tenant_id
                     WHERE w.enabled = 1 AND u.created_at >= w.enabled_at
                       AND u.deleted_at IS NULL AND u.active = 1
                       AND u.email IS NOT NULL AND u.email <> '' AND u.last_snapshot_at IS NULL
                       AND NOT EXISTS (SELECT 1 FROM mail_outbox m WHERE m.tenant_id = u.tenant_id
                                       AND m.user_id = u.id AND m.kind = 'welcome')
                     ON CONFLICT DO NOTHING",
                    [&now_s],
                ))?;
                let tenants: Vec<(String, i64)> = db(c
                    .prepare_cached(
                        "SELECT tenant_id, remind_days FROM welcome_settings
                         WHERE enabled = 1 AND remind_days IS NOT NULL",
                    )
                    .and_then(|mut s| {
                        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    }))?;
                for (tenant, days) in tenants {
                    let cutoff = ts(now - time::Duration::days(days));
                    // Reminders: once, to welcomed accounts still without a backup.
                    n += db(c.execute(
                        "INSERT INTO mail_outbox (id, tenant_id, user_id, kind, state,
                            created_at, next_attempt_at, attempts)
                         SELECT lower(hex(randomblob(16))), u.tenant_id, u.id, 'reminder',
                                'pending', ?1, ?1, 0
                         FROM mail_outbox m JOIN users u
                              ON u.tenant_id = m.tenant_id AND u.id = m.user_id
                         WHERE m.tenant_id = ?2 AND m.kind = 'welcome' AND m.state = 'sent'
                           AND u.created_at <= ?3 AND u.deleted_at IS NULL AND u.active = 1
                           AND u.last_snapshot_at IS NULL
                           AND NOT EXISTS (SELECT 1 FROM mail_outbox r
                               WHERE r.tenant_id = u.tenant_id AND r.user_id = u.id
                                 AND r.kind = 'reminder')
                         ON CONFLICT DO NOTHING",
                        params![now_s, tenant, cutoff],
                    ))?;
                }
                Ok(n as u64)
            })
            .await
    }

    async fn claim_mail(
        &self,
        now: OffsetDateTime,
        until: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<OutboxMail>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.writer
            .write(move |c| {
                db(c.prepare_cached(&format!(
                    "UPDATE mail_outbox SET claimed_until = ?1, attempts = attempts + 1
                     WHERE id IN (SELECT id FROM mail_outbox
                                  WHERE state = 'pending' AND next_attempt_at <= ?2
                                    AND (claimed_until IS NULL OR claimed_until <= ?2)
                                  ORDER BY next_attempt_at LIMIT ?3)
                     RETURNING {MAIL_COLS}"
                ))
                .and_then(|mut s| {
                    s.query_map(params![ts(until), ts(now), limit], mail_from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                }))
            })
            .await
    }

    async fn finish_mail(
        &self,
        id: &str,
        now: OffsetDateTime,
        outcome: &MailOutcome,
        audit: Option<AuditDraft>,
    ) -> Result<()> {
        let (id, outcome) = (id.to_owned(), outcome.clone());
        self.writer
            .write(move |c| {
                db(match &outcome {
                    MailOutcome::Sent => c.execute(
                        "UPDATE mail_outbox SET state = 'sent', sent_at = ?, claimed_until = NULL,
                            last_error = NULL WHERE id = ?",
                        params![ts(now), id],
                    ),
                    MailOutcome::Retry(at, e) => c.execute(
                        "UPDATE mail_outbox SET next_attempt_at = ?, last_error = ?,
                            claimed_until = NULL WHERE id = ?",
                        params![ts(*at), e, id],
                    ),
                    MailOutcome::Failed(e) => c.execute(
                        "UPDATE mail_outbox SET state = 'failed', last_error = ?,
                            claimed_until = NULL WHERE id = ?",
                        params![e, id],
                    ),
                    MailOutcome::Dropped => c.execute(
                        "UPDATE mail_outbox SET state = 'dropped', claimed_until = NULL
                         WHERE id = ?",
                        params![id],
                    ),
                })?;
                if let Some(a) = &audit {
                    db(insert_audit(c, a))?;
                }
                Ok(())
            })
            .await
    }

    async fn list_mail(&self, tenant: &TenantId, limit: usize) -> Result<Vec<OutboxMail>> {
        let tenant = tenant.as_str().to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {MAIL_COLS} FROM mail_outbox WHERE tenant_id = ?
                 ORDER BY created_at DESC, id DESC LIMIT ?"
            ))?
            .query_map(params![tenant, limit], mail_from_row)?
            .collect()
        })
        .await
    }

    async fn welcome_settings(&self, tenant: &TenantId) -> Result<Option<WelcomeSettings>> {
        let tenant = tenant.as_str().to_owned();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT tenant_id, enabled, enabled_at, remind_days, updated_at
                 FROM welcome_settings WHERE tenant_id = ?",
            )?
            .query_row([tenant], |r| {
                Ok(WelcomeSettings {
                    tenant_id: TenantId::from_trusted(r.get(0)?),
                    enabled: r.get(1)?,
                    enabled_at: opt_time(r.get(2)?)?,
                    remind_days: r
                        .get::<_, Option<i64>>(3)?
                        .and_then(|d| u32::try_from(d).ok()),
                    updated_at: parse_time(r.get(4)?)?,
                })
            })
            .optional()
        })
        .await
    }

    async fn put_welcome_settings(&self, s: &WelcomeSettings, audit: AuditDraft) -> Result<()> {
        let s = s.clone();
        self.writer
            .write(move |c| {
                db(c.execute(
                    "INSERT INTO welcome_settings (tenant_id, enabled, enabled_at, remind_days,
                        updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (tenant_id) DO UPDATE SET enabled = ?2, enabled_at = ?3,
                        remind_days = ?4, updated_at = ?5",
                    params![
                        s.tenant_id.as_str(),
                        s.enabled,
                        s.enabled_at.map(ts),
                        s.remind_days.map(i64::from),
                        ts(s.updated_at)
                    ],
                ))?;
                db(insert_audit(c, &audit))
            })
            .await
    }

    async fn never_backed_up(&self, tenant: &TenantId, limit: usize) -> Result<Vec<UserRecord>> {
        let tenant = tenant.as_str().to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            c.prepare_cached(concat!(
                "SELECT ",
                user_cols!(),
                " FROM users u WHERE u.tenant_id = ? AND u.deleted_at IS NULL AND u.active = 1
                   AND u.last_snapshot_at IS NULL ORDER BY u.user_name_fold, u.id LIMIT ?"
            ))?
            .query_map(params![tenant, limit], user_from_row)?
            .collect()
        })
        .await
    }
}
