//! PostgreSQL side of backup keys (device keys: several per account), the used-space
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
use time::OffsetDateTime;

#[async_trait]
impl VaultStore for PostgresStore {
    async fn record_vault_verification(
        &self,
        tenant: &TenantId,
        v: &VaultVerification,
    ) -> Result<()> {
        let nums = [v.objects, v.bytes, v.bad_count].map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let bad = serde_json::to_string(&v.bad).map_err(|e| Error::Internal(e.to_string()))?;
        let c = self.pool.get().await.map_err(pool_err)?;
        // INSERT … SELECT: nothing for an account deleted while its check ran.
        c.execute(
            "INSERT INTO vault_verifications
               (tenant_id, user_id, verified_at, objects, bytes, bad_count, bad)
             SELECT tenant_id, id, $3, $4, $5, $6, $7 FROM users
             WHERE tenant_id = $1 AND id = $2
             ON CONFLICT (tenant_id, user_id) DO UPDATE SET
               verified_at = excluded.verified_at, objects = excluded.objects,
               bytes = excluded.bytes, bad_count = excluded.bad_count, bad = excluded.bad",
            &[
                &tenant.as_str(),
                &v.user_id.as_str(),
                &ts(v.verified_at),
                &nums[0],
                &nums[1],
                &nums[2],
                &bad,
            ],
        )
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn vault_verification(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<VaultVerification>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let Some(r) = c
            .query_opt(
                "SELECT verified_at, objects, bytes, bad_count, bad FROM vault_verifications
                 WHERE tenant_id = $1 AND user_id = $2",
                &[&tenant.as_str(), &user.as_str()],
            )
            .await
            .map_err(map_err)?
        else {
            return Ok(None);
        };
        Ok(Some(VaultVerification {
            user_id: user.clone(),
            verified_at: time_of(r.get(0))?,
            objects: r.get::<_, i64>(1).max(0) as u64,
            bytes: r.get::<_, i64>(2).max(0) as u64,
            bad_count: r.get::<_, i64>(3).max(0) as u64,
            bad: serde_json::from_str(r.get::<_, &str>(4))
                .map_err(|e| Error::Internal(e.to_string()))?,
        }))
    }

    async fn create_backup_key(
        &self,
        key: &BackupKeyRecord,
        max_keys: usize,
        audit: AuditDraft,
    ) -> Result<()> {
        let max = i64::try_from(max_keys).unwrap_or(i64::MAX);
        let (t, u) = (key.tenant_id.as_str(), key.user_id.as_str());
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        // The account's row lock orders racing creates for one account, so the count
        // each of them reads is the one it inserts against.
        let live = tx
            .query_opt(
                "SELECT 1 FROM users WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL
                 FOR UPDATE",
                &[&t, &u],
            )
            .await
            .map_err(map_err)?;
        if live.is_none() {
            return Err(Error::NotFound("user"));
        }
        let held: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM backup_keys WHERE tenant_id = $1 AND user_id = $2",
                &[&t, &u],
            )
            .await
            .map_err(map_err)?
            .get(0);
        if held >= max {
            return Err(Error::Invalid {
                field: "name",
                reason: format!("an account holds at most {max} backup keys"),
            });
        }
        tx.execute(
            "INSERT INTO backup_keys (tenant_id, user_id, key_user, name, name_fold,
                 secret_hash, created_at, last_used_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
            &[
                &t,
                &u,
                &key.key_user,
                &key.name.as_str(),
                &key.name.folded(),
                &key.hash.as_bytes().as_slice(),
                &ts(key.created_at),
            ],
        )
        .await
        .map_err(map_err)?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn backup_key(
        &self,
        tenant: &TenantId,
        user: &UserId,
        key_user: &str,
    ) -> Result<Option<BackupKeyRecord>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM backup_keys
                     WHERE tenant_id = $1 AND user_id = $2 AND key_user = $3"
                ),
                &[&tenant.as_str(), &user.as_str(), &key_user],
            )
            .await
            .map_err(map_err)?;
        match row {
            Some(r) => key_record(tenant, user, &r),
            None => Ok(None),
        }
    }

    async fn backup_keys(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<BackupKeyRecord>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM backup_keys
                     WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at, key_user"
                ),
                &[&tenant.as_str(), &user.as_str()],
            )
            .await
            .map_err(map_err)?;
        let mut keys = Vec::with_capacity(rows.len());
        for r in &rows {
            keys.extend(key_record(tenant, user, r)?);
        }
        Ok(keys)
    }

    async fn revoke_backup_key(
        &self,
        tenant: &TenantId,
        user: &UserId,
        name: &KeyName,
        audit: AuditDraft,
    ) -> Result<bool> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let n = tx
            .execute(
                "DELETE FROM backup_keys WHERE tenant_id = $1 AND user_id = $2 AND name_fold = $3",
                &[&tenant.as_str(), &user.as_str(), &name.folded()],
            )
            .await
            .map_err(map_err)?;
        if n == 0 {
            return Ok(false);
        }
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn touch_backup_key(
        &self,
        tenant: &TenantId,
        user: &UserId,
        key_user: &str,
        at: OffsetDateTime,
        stale_before: OffsetDateTime,
    ) -> Result<bool> {
        let c = self.pool.get().await.map_err(pool_err)?;
        // Timestamps are fixed-width text: text order is time order (`COLLATE "C"`, so
        // the database's locale cannot reorder the digits).
        let n = c
            .execute(
                "UPDATE backup_keys SET last_used_at = $4
                 WHERE tenant_id = $1 AND user_id = $2 AND key_user = $3
                   AND (last_used_at IS NULL OR last_used_at COLLATE \"C\" <= $5)",
                &[
                    &tenant.as_str(),
                    &user.as_str(),
                    &key_user,
                    &ts(at),
                    &ts(stale_before),
                ],
            )
            .await
            .map_err(map_err)?;
        Ok(n > 0)
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
        let (bytes, limit) = (bytes.get(), limit.map(ByteCount::get));
        let c = self.pool.get().await.map_err(pool_err)?;
        let n = c
            .execute(
                "UPDATE users SET used_bytes = used_bytes + $1
                 WHERE tenant_id = $2 AND id = $3
                   AND used_bytes <= 9223372036854775807 - $1
                   AND ($4::BIGINT IS NULL OR used_bytes <= $4 - $1)",
                &[&bytes, &tenant.as_str(), &user.as_str(), &limit],
            )
            .await
            .map_err(map_err)?;
        Ok(n > 0)
    }

    async fn refund_used_bytes(
        &self,
        tenant: &TenantId,
        user: &UserId,
        bytes: ByteCount,
    ) -> Result<bool> {
        let bytes = bytes.get();
        let c = self.pool.get().await.map_err(pool_err)?;
        let n = c
            .execute(
                "UPDATE users SET used_bytes = used_bytes - $1
                 WHERE tenant_id = $2 AND id = $3 AND used_bytes >= $1",
                &[&bytes, &tenant.as_str(), &user.as_str()],
            )
            .await
            .map_err(map_err)?;
        Ok(n > 0)
    }

    // --- Backup freshness ---

    /// One statement: the charge, guarded as in `charge_used_bytes`, and the hour's count
    /// of the charged row only (a data-modifying CTE).
    async fn charge_upload(
        &self,
        tenant: &TenantId,
        user: &UserId,
        bytes: ByteCount,
        limit: ByteCount,
        hour: Option<i64>,
    ) -> Result<Option<Option<OffsetDateTime>>> {
        let (bytes, limit) = (bytes.get(), limit.get());
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "WITH charged AS (
                     UPDATE users SET used_bytes = used_bytes + $1
                     WHERE tenant_id = $2 AND id = $3
                       AND used_bytes <= 9223372036854775807 - $1
                       AND used_bytes <= $4 - $1
                     RETURNING tenant_id, id, last_upload_at),
                 counted AS (
                     INSERT INTO vault_upload_hours (tenant_id, user_id, hour, bytes)
                     SELECT tenant_id, id, $5::BIGINT, $1::BIGINT FROM charged
                     WHERE $5::BIGINT IS NOT NULL
                     ON CONFLICT (tenant_id, user_id, hour)
                     DO UPDATE SET bytes = vault_upload_hours.bytes + excluded.bytes)
                 SELECT last_upload_at FROM charged",
                &[&bytes, &tenant.as_str(), &user.as_str(), &limit, &hour],
            )
            .await
            .map_err(map_err)?;
        row.map(|r| opt_time(r.get(0))).transpose()
    }

    async fn refund_upload(
        &self,
        tenant: &TenantId,
        user: &UserId,
        bytes: ByteCount,
        hour: Option<i64>,
    ) -> Result<bool> {
        let bytes = bytes.get();
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_one(
                "WITH uncounted AS (
                     UPDATE vault_upload_hours SET bytes = bytes - $1
                     WHERE tenant_id = $2 AND user_id = $3 AND hour = $4::BIGINT AND bytes >= $1),
                 refunded AS (
                     UPDATE users SET used_bytes = used_bytes - $1
                     WHERE tenant_id = $2 AND id = $3 AND used_bytes >= $1 RETURNING 1)
                 SELECT COUNT(*) FROM refunded",
                &[&bytes, &tenant.as_str(), &user.as_str(), &hour],
            )
            .await
            .map_err(map_err)?;
        Ok(row.get::<_, i64>(0) > 0)
    }

    async fn record_upload(
        &self,
        tenant: &TenantId,
        user: &UserId,
        at: OffsetDateTime,
        snapshot: bool,
    ) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "UPDATE users SET
               last_upload_at = GREATEST(COALESCE(last_upload_at, '') COLLATE \"C\", $1),
               last_snapshot_at = CASE WHEN $2
                   THEN GREATEST(COALESCE(last_snapshot_at, '') COLLATE \"C\", $1)
                   ELSE last_snapshot_at END
             WHERE tenant_id = $3 AND id = $4",
            &[&ts(at), &snapshot, &tenant.as_str(), &user.as_str()],
        )
        .await
        .map_err(map_err)?;
        Ok(())
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
        let ids: Vec<&str> = users.iter().map(UserId::as_str).collect();
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                "SELECT u.id, u.last_snapshot_at, u.last_upload_at,
                    (SELECT COALESCE(SUM(h.bytes), 0)::BIGINT FROM vault_upload_hours h
                     WHERE h.tenant_id = u.tenant_id AND h.user_id = u.id AND h.hour >= $1)
                 FROM users u WHERE u.tenant_id = $2 AND u.id = ANY($3)",
                &[&since_hour, &tenant.as_str(), &ids],
            )
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok((
                    UserId::from_trusted(r.get(0)),
                    Freshness {
                        last_snapshot_at: opt_time(r.get(1))?,
                        last_upload_at: opt_time(r.get(2))?,
                        bytes_24h: r.get(3),
                    },
                ))
            })
            .collect()
    }

    /// The cutoff is computed per tenant in SQL as `StaleDays::cutoff` does in Rust (a
    /// store test holds the two together).
    async fn stale_account_counts(&self, now: OffsetDateTime) -> Result<Vec<(TenantId, u64)>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                "SELECT t.id, (SELECT COUNT(*) FROM users u
                     WHERE u.tenant_id = t.id
                       AND (COALESCE(u.last_snapshot_at, '') COLLATE \"C\")
                           < to_char(($1::text::timestamptz - make_interval(days => t.stale_days::int))
                                     AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
                       AND u.deleted_at IS NULL AND u.active)
                 FROM tenants t ORDER BY t.id",
                &[&ts(now)],
            )
            .await
            .map_err(map_err)?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    TenantId::from_trusted(r.get(0)),
                    r.get::<_, i64>(1).max(0) as u64,
                )
            })
            .collect())
    }

    async fn prune_upload_hours(&self, before_hour: i64) -> Result<u64> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "DELETE FROM vault_upload_hours WHERE hour < $1",
            &[&before_hour],
        )
        .await
        .map_err(map_err)
    }
}

const KEY_COLUMNS: &str = "key_user, name, secret_hash, created_at, last_used_at";

/// A stored key; `None` for a hash of the wrong length, which no secret can match.
fn key_record(
    tenant: &TenantId,
    user: &UserId,
    r: &tokio_postgres::Row,
) -> Result<Option<BackupKeyRecord>> {
    let hash: Vec<u8> = r.get(2);
    let Some(hash) = TokenHash::from_bytes(&hash) else {
        return Ok(None);
    };
    Ok(Some(BackupKeyRecord {
        tenant_id: tenant.clone(),
        user_id: user.clone(),
        key_user: r.get(0),
        name: KeyName::from_trusted(r.get(1)),
        hash,
        created_at: time_of(r.get(3))?,
        last_used_at: opt_time(r.get(4))?,
    }))
}
