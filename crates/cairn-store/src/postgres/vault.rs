//! PostgreSQL side of backup keys and the used-space counter.

use super::*;
use async_trait::async_trait;
use cairn_core::audit::AuditDraft;
use cairn_core::auth::TokenHash;
use cairn_core::ids::{TenantId, UserId};
use cairn_core::store::*;
use cairn_core::vault::{BackupKeyRecord, ByteCount};
use cairn_core::{Error, Result};

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
}
