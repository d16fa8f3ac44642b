//! SQLite side of backup keys (device keys: several per account), the used-space
//! counter and backup freshness.

use super::*;
use async_trait::async_trait;
use cairn_core::audit::AuditDraft;
use cairn_core::auth::TokenHash;
use cairn_core::backup_key::{BackupKeyRecord, KeyName};
use cairn_core::freshness::Freshness;
use cairn_core::ids::{TenantId, UserId};
use cairn_core::store::*;
use cairn_core::vault::ByteCount;
use cairn_core::verification::VaultVerification;
use cairn_core::{Error, Result};
use rusqlite::{params, params_from_iter, OptionalExtension};
use time::OffsetDateTime;

#[async_trait]
impl VaultStore for SqliteStore {
    async fn record_vault_verification(
        &self,
        tenant: &TenantId,
        v: &VaultVerification,
    ) -> Result<()> {
        let (t, u, at) = (tenant.to_string(), v.user_id.to_string(), ts(v.verified_at));
        let nums = [v.objects, v.bytes, v.bad_count].map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let bad = serde_json::to_string(&v.bad).map_err(|e| Error::Internal(e.to_string()))?;
        self.writer
            .write(move |c| {
                // INSERT … SELECT: nothing for an account deleted while its check ran.
                db(c.execute(
                    "INSERT INTO vault_verifications
                       (tenant_id, user_id, verified_at, objects, bytes, bad_count, bad)
                     SELECT tenant_id, id, ?3, ?4, ?5, ?6, ?7 FROM users
                     WHERE tenant_id = ?1 AND id = ?2
                     ON CONFLICT (tenant_id, user_id) DO UPDATE SET
                       verified_at = excluded.verified_at, objects = excluded.objects,
                       bytes = excluded.bytes, bad_count = excluded.bad_count, bad = excluded.bad",
                    params![t, u, at, nums[0], nums[1], nums[2], bad],
                ))
                .map(|_| ())
            })
            .await
    }

    async fn vault_verification(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<VaultVerification>> {
        let (t, u) = (tenant.to_string(), user.to_string());
        let row = self
            .read(move |c| {
                c.prepare_cached(
                    "SELECT verified_at, objects, bytes, bad_count, bad FROM vault_verifications
                     WHERE tenant_id = ?1 AND user_id = ?2",
                )?
                .query_row([&t, &u], |r| {
                    Ok((
                        parse_time(r.get(0)?)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })
                .optional()
            })
            .await?;
        let Some((at, objects, bytes, bad_count, bad)) = row else {
            return Ok(None);
        };
        Ok(Some(VaultVerification {
            user_id: user.clone(),
            verified_at: at,
            objects: objects.max(0) as u64,
            bytes: bytes.max(0) as u64,
            bad_count: bad_count.max(0) as u64,
            bad: serde_json::from_str(&bad).map_err(|e| Error::Internal(e.to_string()))?,
        }))
    }

    async fn create_backup_key(
        &self,
        key: &BackupKeyRecord,
        max_keys: usize,
        audit: AuditDraft,
    ) -> Result<()> {
        let k = key.clone();
        let max = i64::try_from(max_keys).unwrap_or(i64::MAX);
        // The one writer runs these statements with no other write between them, so the
        // count cannot change before the insert.
        self.writer
            .write(move |c| {
                let (t, u) = (k.tenant_id.as_str(), k.user_id.as_str());
                let live: Option<i64> = db(c
                    .prepare_cached(
                        "SELECT 1 FROM users WHERE tenant_id = ? AND id = ? AND deleted_at IS NULL",
                    )
                    .and_then(|mut st| st.query_row([t, u], |r| r.get(0)).optional()))?;
                if live.is_none() {
                    return Err(Error::NotFound("user"));
                }
                let held: i64 = db(c.query_row(
                    "SELECT COUNT(*) FROM backup_keys WHERE tenant_id = ? AND user_id = ?",
                    [t, u],
                    |r| r.get(0),
                ))?;
                if held >= max {
                    return Err(Error::Invalid {
                        field: "name",
                        reason: format!("an account holds at most {max} backup keys"),
                    });
                }
                db(c.execute(
                    "INSERT INTO backup_keys (tenant_id, user_id, key_user, name, name_fold,
                         secret_hash, created_at, last_used_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)",
                    params![
                        t,
                        u,
                        k.key_user,
                        k.name.as_str(),
                        k.name.folded(),
                        k.hash.as_bytes().as_slice(),
                        ts(k.created_at)
                    ],
                ))?;
                db(insert_audit(c, &audit))
            })
            .await
    }

    async fn backup_key(
        &self,
        tenant: &TenantId,
        user: &UserId,
        key_user: &str,
    ) -> Result<Option<BackupKeyRecord>> {
        let (t, u, k) = (tenant.to_string(), user.to_string(), key_user.to_owned());
        // A primary-key lookup on every restic request: inline (see `read_point`).
        let row = self
            .read_point(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {KEY_COLUMNS} FROM backup_keys
                     WHERE tenant_id = ? AND user_id = ? AND key_user = ?"
                ))?
                .query_row([&t, &u, &k], key_row)
                .optional()
            })
            .await?;
        Ok(row.and_then(|row| key_record(tenant, user, row)))
    }

    async fn backup_keys(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<BackupKeyRecord>> {
        let (t, u) = (tenant.to_string(), user.to_string());
        let rows = self
            .read_point(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {KEY_COLUMNS} FROM backup_keys
                     WHERE tenant_id = ? AND user_id = ? ORDER BY created_at, key_user"
                ))?
                .query_map([&t, &u], key_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| key_record(tenant, user, row))
            .collect())
    }

    async fn revoke_backup_key(
        &self,
        tenant: &TenantId,
        user: &UserId,
        name: &KeyName,
        audit: AuditDraft,
    ) -> Result<bool> {
        let (t, u, fold) = (tenant.to_string(), user.to_string(), name.folded());
        self.writer
            .write(move |c| {
                let n = db(c.execute(
                    "DELETE FROM backup_keys WHERE tenant_id = ? AND user_id = ? AND name_fold = ?",
                    [&t, &u, &fold],
                ))?;
                if n == 0 {
                    return Ok(false);
                }
                db(insert_audit(c, &audit))?;
                Ok(true)
            })
            .await
    }

    async fn touch_backup_key(
        &self,
        tenant: &TenantId,
        user: &UserId,
        key_user: &str,
        at: OffsetDateTime,
        stale_before: OffsetDateTime,
    ) -> Result<bool> {
        let (t, u, k) = (tenant.to_string(), user.to_string(), key_user.to_owned());
        let (at, stale) = (ts(at), ts(stale_before));
        self.writer
            .write(move |c| {
                // Timestamps are fixed-width text: text order is time order.
                let n = db(c.execute(
                    "UPDATE backup_keys SET last_used_at = ?4
                     WHERE tenant_id = ?1 AND user_id = ?2 AND key_user = ?3
                       AND (last_used_at IS NULL OR last_used_at <= ?5)",
                    params![t, u, k, at, stale],
                ))?;
                Ok(n > 0)
            })
            .await
    }

    /// The charge never overflows: both conditions compare against differences of
    /// non-negative numbers instead of computing `used_bytes + bytes` first.
    async fn charge_used_bytes(
        &self,
        tenant: &TenantId,
        user: &UserId,
        bytes: ByteCount,
        limit: Option<ByteCount>,
    ) -> Result<bool> {
        let (t, u) = (tenant.to_string(), user.to_string());
        let (bytes, limit) = (bytes.get(), limit.map(ByteCount::get));
        self.writer
            .write(move |c| {
                let n = db(c.execute(
                    "UPDATE users SET used_bytes = used_bytes + ?1
                     WHERE tenant_id = ?2 AND id = ?3
                       AND used_bytes <= 9223372036854775807 - ?1
                       AND (?4 IS NULL OR used_bytes <= ?4 - ?1)",
                    params![bytes, t, u, limit],
                ))?;
                Ok(n > 0)
            })
            .await
    }

    async fn refund_used_bytes(
        &self,
        tenant: &TenantId,
        user: &UserId,
        bytes: ByteCount,
    ) -> Result<bool> {
        let (t, u) = (tenant.to_string(), user.to_string());
        let bytes = bytes.get();
        self.writer
            .write(move |c| {
                let n = db(c.execute(
                    "UPDATE users SET used_bytes = used_bytes - ?1
                     WHERE tenant_id = ?2 AND id = ?3 AND used_bytes >= ?1",
                    params![bytes, t, u],
                ))?;
                Ok(n > 0)
            })
            .await
    }

    // --- Backup freshness ---

    /// The charge and the hour's count are two statements of one write (one commit of
    /// the writer), as `charge_used_bytes`'s conditions guard the first.
    async fn charge_upload(
        &self,
        tenant: &TenantId,
        user: &UserId,
        bytes: ByteCount,
        limit: ByteCount,
        hour: Option<i64>,
    ) -> Result<Option<Option<OffsetDateTime>>> {
        let (t, u) = (tenant.to_string(), user.to_string());
        let (bytes, limit) = (bytes.get(), limit.get());
        self.writer
            .write(move |c| {
                let last: Option<Option<String>> = db(c
                    .prepare_cached(
                        "UPDATE users SET used_bytes = used_bytes + ?1
                         WHERE tenant_id = ?2 AND id = ?3
                           AND used_bytes <= 9223372036854775807 - ?1
                           AND used_bytes <= ?4 - ?1
                         RETURNING last_upload_at",
                    )
                    .and_then(|mut st| {
                        st.query_row(params![bytes, t, u, limit], |r| r.get(0))
                            .optional()
                    }))?;
                let Some(last) = last else {
                    return Ok(None);
                };
                let parse =
                    |last: Option<String>| last.map(parse_time).transpose().map_err(map_err);
                let Some(hour) = hour else {
                    return Ok(Some(parse(last)?));
                };
                db(c.prepare_cached(
                    "INSERT INTO vault_upload_hours (tenant_id, user_id, hour, bytes)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (tenant_id, user_id, hour)
                     DO UPDATE SET bytes = bytes + excluded.bytes",
                )
                .and_then(|mut st| st.execute(params![t, u, hour, bytes])))?;
                Ok(Some(parse(last)?))
            })
            .await
    }

    async fn refund_upload(
        &self,
        tenant: &TenantId,
        user: &UserId,
        bytes: ByteCount,
        hour: Option<i64>,
    ) -> Result<bool> {
        let (t, u) = (tenant.to_string(), user.to_string());
        let bytes = bytes.get();
        self.writer
            .write(move |c| {
                if let Some(hour) = hour {
                    db(c.execute(
                        "UPDATE vault_upload_hours SET bytes = bytes - ?1
                         WHERE tenant_id = ?2 AND user_id = ?3 AND hour = ?4 AND bytes >= ?1",
                        params![bytes, t, u, hour],
                    ))?;
                }
                let n = db(c.execute(
                    "UPDATE users SET used_bytes = used_bytes - ?1
                     WHERE tenant_id = ?2 AND id = ?3 AND used_bytes >= ?1",
                    params![bytes, t, u],
                ))?;
                Ok(n > 0)
            })
            .await
    }

    async fn record_upload(
        &self,
        tenant: &TenantId,
        user: &UserId,
        at: OffsetDateTime,
        snapshot: bool,
    ) -> Result<()> {
        let (t, u, at) = (tenant.to_string(), user.to_string(), ts(at));
        self.writer
            .write(move |c| {
                db(c.prepare_cached(
                    "UPDATE users SET
                           last_upload_at = MAX(COALESCE(last_upload_at, ''), ?1),
                           last_snapshot_at = CASE WHEN ?2
                               THEN MAX(COALESCE(last_snapshot_at, ''), ?1)
                               ELSE last_snapshot_at END
                         WHERE tenant_id = ?3 AND id = ?4",
                )
                .and_then(|mut st| st.execute(params![at, snapshot, t, u])))?;
                Ok(())
            })
            .await
    }

    async fn account_freshness(
        &self,
        tenant: &TenantId,
        users: &[UserId],
        since_hour: i64,
    ) -> Result<Vec<(UserId, Freshness)>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let t = tenant.to_string();
        let ids: Vec<String> = users.iter().map(ToString::to_string).collect();
        self.read(move |c| {
            let marks = vec!["?"; ids.len()].join(", ");
            let sql = format!(
                "SELECT u.id, u.last_snapshot_at, u.last_upload_at,
                    (SELECT COALESCE(SUM(h.bytes), 0) FROM vault_upload_hours h
                     WHERE h.tenant_id = u.tenant_id AND h.user_id = u.id AND h.hour >= ?)
                 FROM users u WHERE u.tenant_id = ? AND u.id IN ({marks})"
            );
            let mut params: Vec<rusqlite::types::Value> = vec![since_hour.into(), t.clone().into()];
            params.extend(ids.into_iter().map(Into::into));
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(params_from_iter(params), |r| {
                Ok((
                    UserId::from_trusted(r.get(0)?),
                    Freshness {
                        last_snapshot_at: r
                            .get::<_, Option<String>>(1)?
                            .map(parse_time)
                            .transpose()?,
                        last_upload_at: r
                            .get::<_, Option<String>>(2)?
                            .map(parse_time)
                            .transpose()?,
                        bytes_24h: r.get(3)?,
                    },
                ))
            })?;
            rows.collect()
        })
        .await
    }

    /// The cutoff is computed per tenant in SQL as `StaleDays::cutoff` does in Rust (a
    /// store test holds the two together).
    async fn stale_account_counts(&self, now: OffsetDateTime) -> Result<Vec<(TenantId, u64)>> {
        let now = ts(now);
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT t.id, (SELECT COUNT(*) FROM users u
                     WHERE u.tenant_id = t.id
                       AND COALESCE(u.last_snapshot_at, '')
                           < strftime('%Y-%m-%dT%H:%M:%fZ', ?1, '-' || t.stale_days || ' days')
                       AND u.deleted_at IS NULL AND u.active = 1)
                 FROM tenants t ORDER BY t.id",
            )?;
            let rows = st.query_map([&now], |r| {
                Ok((
                    TenantId::from_trusted(r.get(0)?),
                    r.get::<_, i64>(1)?.max(0) as u64,
                ))
            })?;
            rows.collect()
        })
        .await
    }

    async fn prune_upload_hours(&self, before_hour: i64) -> Result<u64> {
        self.writer
            .write(move |c| {
                let n = db(c.execute(
                    "DELETE FROM vault_upload_hours WHERE hour < ?",
                    [before_hour],
                ))?;
                Ok(n as u64)
            })
            .await
    }
}

const KEY_COLUMNS: &str = "key_user, name, secret_hash, created_at, last_used_at";

type KeyRow = (
    String,
    String,
    Vec<u8>,
    OffsetDateTime,
    Option<OffsetDateTime>,
);

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        parse_time(r.get(3)?)?,
        opt_time(r.get(4)?)?,
    ))
}

/// A stored key; `None` for a hash of the wrong length, which no secret can match.
fn key_record(tenant: &TenantId, user: &UserId, row: KeyRow) -> Option<BackupKeyRecord> {
    let (key_user, name, hash, created_at, last_used_at) = row;
    Some(BackupKeyRecord {
        tenant_id: tenant.clone(),
        user_id: user.clone(),
        key_user,
        name: KeyName::from_trusted(name),
        hash: TokenHash::from_bytes(&hash)?,
        created_at,
        last_used_at,
    })
}
