//! PostgreSQL side of getting people started (migration 0022): one-time sign-in links
//! for backup accounts. Using a link is one conditional `UPDATE … WHERE used_at IS NULL`
//! in the transaction that creates the session: of two instances racing on one link,
//! the row lock lets exactly one update it.

use super::*;
use cairn_core::mail::{MailKind, MailOutcome, MailState, OutboxMail, WelcomeSettings};
use cairn_core::sso::AccountSessionRecord;
use cairn_core::welcome::AccountLinkRecord;

const MAIL_COLS: &str = "id, tenant_id, user_id, kind, state, created_at, next_attempt_at, \
    attempts, sent_at, last_error";

fn mail_from_row(r: &Row) -> Result<OutboxMail> {
    let kind: String = r.get(3);
    let state: String = r.get(4);
    Ok(OutboxMail {
        id: r.get(0),
        tenant_id: TenantId::from_trusted(r.get(1)),
        user_id: UserId::from_trusted(r.get(2)),
        kind: MailKind::parse(&kind)
            .ok_or_else(|| Error::Internal(format!("bad mail kind {kind}")))?,
        state: MailState::parse(&state)
            .ok_or_else(|| Error::Internal(format!("bad mail state {state}")))?,
        created_at: time_of(r.get(5))?,
        next_attempt_at: time_of(r.get(6))?,
        attempts: u32::try_from(r.get::<_, i32>(7)).unwrap_or(u32::MAX),
        sent_at: opt_time(r.get(8))?,
        last_error: r.get(9),
    })
}

async fn insert_mail<C: GenericClient>(c: &C, m: &OutboxMail) -> Result<u64> {
    c.execute(
        "INSERT INTO mail_outbox (id, tenant_id, user_id, kind, state, created_at,
            next_attempt_at, attempts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT DO NOTHING",
        &[
            &m.id,
            &m.tenant_id.as_str(),
            &m.user_id.as_str(),
            &m.kind.as_str(),
            &m.state.as_str(),
            &ts(m.created_at),
            &ts(m.next_attempt_at),
            &i32::try_from(m.attempts).unwrap_or(i32::MAX),
        ],
    )
    .await
    .map_err(map_err)
}

fn link_from_row(r: &Row) -> Result<AccountLinkRecord> {
    let hash: Vec<u8> = r.get(0);
    Ok(AccountLinkRecord {
        hash: <[u8; 32]>::try_from(hash.as_slice())
            .map_err(|_| Error::Internal("bad link hash".into()))?,
        tenant_id: TenantId::from_trusted(r.get(1)),
        user_id: UserId::from_trusted(r.get(2)),
        created_at: time_of(r.get(3))?,
        expires_at: time_of(r.get(4))?,
        used_at: opt_time(r.get(5))?,
    })
}

#[async_trait]
impl WelcomeStore for PostgresStore {
    async fn create_account_link(
        &self,
        l: &AccountLinkRecord,
        forget_before: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        tx.execute(
            "DELETE FROM account_links WHERE expires_at < $1",
            &[&ts(forget_before)],
        )
        .await
        .map_err(map_err)?;
        tx.execute(
            "INSERT INTO account_links (token_hash, tenant_id, user_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &l.hash.as_slice(),
                &l.tenant_id.as_str(),
                &l.user_id.as_str(),
                &ts(l.created_at),
                &ts(l.expires_at),
            ],
        )
        .await
        .map_err(map_err)?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn get_account_link(&self, hash: &[u8; 32]) -> Result<Option<AccountLinkRecord>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT token_hash, tenant_id, user_id, created_at, expires_at, used_at
                 FROM account_links WHERE token_hash = $1",
                &[&hash.as_slice()],
            )
            .await
            .map_err(map_err)?;
        row.as_ref().map(link_from_row).transpose()
    }

    async fn use_account_link(
        &self,
        hash: &[u8; 32],
        now: OffsetDateTime,
        s: &AccountSessionRecord,
        audit: AuditDraft,
    ) -> Result<bool> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let n = tx
            .execute(
                "UPDATE account_links SET used_at = $1
                 WHERE token_hash = $2 AND tenant_id = $3 AND user_id = $4
                   AND used_at IS NULL AND expires_at > $1",
                &[
                    &ts(now),
                    &hash.as_slice(),
                    &s.tenant_id.as_str(),
                    &s.user_id.as_str(),
                ],
            )
            .await
            .map_err(map_err)?;
        if n != 1 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO account_sessions (id_hash, tenant_id, user_id, created_at, last_seen_at,
                expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &s.id_hash.as_bytes().as_slice(),
                &s.tenant_id.as_str(),
                &s.user_id.as_str(),
                &ts(s.created_at),
                &ts(s.last_seen_at),
                &ts(s.expires_at),
            ],
        )
        .await
        .map_err(map_err)?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn queue_mail(&self, mail: &OutboxMail, audit: Option<AuditDraft>) -> Result<bool> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let n = insert_mail(&*tx, mail).await?;
        if n == 1 {
            if let Some(a) = &audit {
                insert_audit(&*tx, a).await?;
            }
        }
        tx.commit().await.map_err(map_err)?;
        Ok(n == 1)
    }

    async fn queue_mails(&self, mails: &[OutboxMail], audit: AuditDraft) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        for m in mails {
            insert_mail(&*tx, m).await?;
        }
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn queue_due_mail(&self, now: OffsetDateTime) -> Result<u64> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let now_s = ts(now);
        // Missed welcomes: accounts created since welcomes were turned on. Two instances
        // running this at once insert each row once (the unique index, DO NOTHING).
        let mut n = c
            .execute(
                "INSERT INTO mail_outbox (id, tenant_id, user_id, kind, state, created_at,
                    next_attempt_at, attempts)
                 SELECT gen_random_uuid()::text, u.tenant_id, u.id, 'welcome', 'pending',
                        $1, $1, 0
                 FROM welcome_settings w JOIN users u ON u.tenant_id = w.tenant_id
                 WHERE w.enabled AND u.created_at >= w.enabled_at
                   AND u.deleted_at IS NULL AND u.active
                   AND u.email IS NOT NULL AND u.email <> '' AND u.last_snapshot_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM mail_outbox m WHERE m.tenant_id = u.tenant_id
                                   AND m.user_id = u.id AND m.kind = 'welcome')
                 ON CONFLICT DO NOTHING",
                &[&now_s],
            )
            .await
            .map_err(map_err)?;
        let tenants = c
            .query(
                "SELECT tenant_id, remind_days FROM welcome_settings
                 WHERE enabled AND remind_days IS NOT NULL",
                &[],
            )
            .await
            .map_err(map_err)?;
        for row in tenants {
            let tenant: String = row.get(0);
            let days: i32 = row.get(1);
            let cutoff = ts(now - time::Duration::days(i64::from(days)));
            // Reminders: once, to welcomed accounts still without a backup.
            n += c
                .execute(
                    "INSERT INTO mail_outbox (id, tenant_id, user_id, kind, state, created_at,
                        next_attempt_at, attempts)
                     SELECT gen_random_uuid()::text, u.tenant_id, u.id, 'reminder', 'pending',
                            $1, $1, 0
                     FROM mail_outbox m JOIN users u
                          ON u.tenant_id = m.tenant_id AND u.id = m.user_id
                     WHERE m.tenant_id = $2 AND m.kind = 'welcome' AND m.state = 'sent'
                       AND u.created_at <= $3 AND u.deleted_at IS NULL AND u.active
                       AND u.last_snapshot_at IS NULL
                       AND NOT EXISTS (SELECT 1 FROM mail_outbox r
                           WHERE r.tenant_id = u.tenant_id AND r.user_id = u.id
                             AND r.kind = 'reminder')
                     ON CONFLICT DO NOTHING",
                    &[&now_s, &tenant, &cutoff],
                )
                .await
                .map_err(map_err)?;
        }
        Ok(n)
    }

    async fn claim_mail(
        &self,
        now: OffsetDateTime,
        until: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<OutboxMail>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // SKIP LOCKED: instances claiming at once take disjoint rows instead of waiting
        // on each other; the lease keeps a claimed row from the others until it ends.
        let rows = c
            .query(
                &format!(
                    "UPDATE mail_outbox SET claimed_until = $1, attempts = attempts + 1
                     WHERE id IN (SELECT id FROM mail_outbox
                                  WHERE state = 'pending' AND next_attempt_at <= $2
                                    AND (claimed_until IS NULL OR claimed_until <= $2)
                                  ORDER BY next_attempt_at LIMIT $3
                                  FOR UPDATE SKIP LOCKED)
                     RETURNING {MAIL_COLS}"
                ),
                &[&ts(until), &ts(now), &limit],
            )
            .await
            .map_err(map_err)?;
        rows.iter().map(mail_from_row).collect()
    }

    async fn finish_mail(
        &self,
        id: &str,
        now: OffsetDateTime,
        outcome: &MailOutcome,
        audit: Option<AuditDraft>,
    ) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let now_s = ts(now);
        match outcome {
            MailOutcome::Sent => {
                tx.execute(
                    "UPDATE mail_outbox SET state = 'sent', sent_at = $1, claimed_until = NULL,
                        last_error = NULL WHERE id = $2",
                    &[&now_s, &id],
                )
                .await
            }
            MailOutcome::Retry(at, e) => {
                let at = ts(*at);
                tx.execute(
                    "UPDATE mail_outbox SET next_attempt_at = $1, last_error = $2,
                        claimed_until = NULL WHERE id = $3",
                    &[&at, e, &id],
                )
                .await
            }
            MailOutcome::Failed(e) => {
                tx.execute(
                    "UPDATE mail_outbox SET state = 'failed', last_error = $1,
                        claimed_until = NULL WHERE id = $2",
                    &[e, &id],
                )
                .await
            }
            MailOutcome::Dropped => {
                tx.execute(
                    "UPDATE mail_outbox SET state = 'dropped', claimed_until = NULL WHERE id = $1",
                    &[&id],
                )
                .await
            }
        }
        .map_err(map_err)?;
        if let Some(a) = &audit {
            insert_audit(&*tx, a).await?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn list_mail(&self, tenant: &TenantId, limit: usize) -> Result<Vec<OutboxMail>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = c
            .query(
                &format!(
                    "SELECT {MAIL_COLS} FROM mail_outbox WHERE tenant_id = $1
                     ORDER BY created_at DESC, id DESC LIMIT $2"
                ),
                &[&tenant.as_str(), &limit],
            )
            .await
            .map_err(map_err)?;
        rows.iter().map(mail_from_row).collect()
    }

    async fn welcome_settings(&self, tenant: &TenantId) -> Result<Option<WelcomeSettings>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT tenant_id, enabled, enabled_at, remind_days, updated_at
                 FROM welcome_settings WHERE tenant_id = $1",
                &[&tenant.as_str()],
            )
            .await
            .map_err(map_err)?;
        row.map(|r| {
            Ok(WelcomeSettings {
                tenant_id: TenantId::from_trusted(r.get(0)),
                enabled: r.get(1),
                enabled_at: opt_time(r.get(2))?,
                remind_days: r
                    .get::<_, Option<i32>>(3)
                    .and_then(|d| u32::try_from(d).ok()),
                updated_at: time_of(r.get(4))?,
            })
        })
        .transpose()
    }

    async fn put_welcome_settings(&self, s: &WelcomeSettings, audit: AuditDraft) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        tx.execute(
            "INSERT INTO welcome_settings (tenant_id, enabled, enabled_at, remind_days, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id) DO UPDATE SET enabled = $2, enabled_at = $3,
                remind_days = $4, updated_at = $5",
            &[
                &s.tenant_id.as_str(),
                &s.enabled,
                &s.enabled_at.map(ts),
                &s.remind_days.map(|d| i32::try_from(d).unwrap_or(i32::MAX)),
                &ts(s.updated_at),
            ],
        )
        .await
        .map_err(map_err)?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn never_backed_up(&self, tenant: &TenantId, limit: usize) -> Result<Vec<UserRecord>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = c
            .query(
                &format!(
                    "SELECT {USER_COLS} FROM users u WHERE u.tenant_id = $1
                       AND u.deleted_at IS NULL AND u.active AND u.last_snapshot_at IS NULL
                     ORDER BY u.user_name_fold, u.id LIMIT $2"
                ),
                &[&tenant.as_str(), &limit],
            )
            .await
            .map_err(map_err)?;
        rows.iter().map(user_from_row).collect()
    }
}
