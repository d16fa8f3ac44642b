//! PostgreSQL side of backup keys, the used-space counter and backup freshness.

use super::*;
use async_trait::async_trait;
use cairn_core::audit::AuditDraft;
use cairn_core::auth::TokenHash;
use cairn_core::freshness::Freshness;
use cairn_core::ids::{TenantId, UserId};
use cairn_core::store::*;
use cairn_core::vault::{BackupKeyRecord, ByteCount};
use cairn_core::{Error, Result};
use time::OffsetDateTime;

#[async_trait]
impl VaultStore for PostgresStore {
    async fn set_backup_key(&self, key: &BackupKeyRecord, audit: AuditDraft) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let n = tx
            .execute(
                "INSERT INTO backup_keys (tenant_id, user_id, key_user, secret_hash, created_at)
                 SELECT $1, $2, $3, $4, $5 WHERE EXISTS
                     (SELECT 1 FROM users WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL)
                 ON CONFLICT (tenant_id, user_id) DO UPDATE SET key_user = excluded.key_user,
                     secret_hash = excluded.secret_hash, created_at = excluded.created_at",
                &[
                    &key.tenant_id.as_str(),
                    &key.user_id.as_str(),
                    &key.key_user,
                    &key.hash.as_bytes().as_slice(),
                    &ts(key.created_at),
                ],
            )
            .await
            .map_err(map_err)?;
        if n == 0 {
            return Err(Error::NotFound("user"));
        }
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn backup_key(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<BackupKeyRecord>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let Some(r) = c
            .query_opt(
                "SELECT key_user, secret_hash, created_at FROM backup_keys
                 WHERE tenant_id = $1 AND user_id = $2",
                &[&tenant.as_str(), &user.as_str()],
            )
            .await
            .map_err(map_err)?
        else {
            return Ok(None);
        };
        let hash: Vec<u8> = r.get(1);
        let Some(hash) = TokenHash::from_bytes(&hash) else {
            return Ok(None);
        };
        Ok(Some(BackupKeyRecord {
            tenant_id: tenant.clone(),
            user_id: user.clone(),
            key_user: r.get(0),
            hash,
            created_at: time_of(r.get(2))?,
        }))
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
