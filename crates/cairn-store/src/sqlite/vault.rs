//! SQLite side of backup keys and the used-space counter.

use super::*;
use async_trait::async_trait;
use cairn_core::audit::AuditDraft;
use cairn_core::auth::TokenHash;
use cairn_core::ids::{TenantId, UserId};
use cairn_core::store::*;
use cairn_core::vault::{BackupKeyRecord, ByteCount};
use cairn_core::{Error, Result};
use rusqlite::{params, OptionalExtension};

#[async_trait]
impl VaultStore for SqliteStore {
    async fn set_backup_key(&self, key: &BackupKeyRecord, audit: AuditDraft) -> Result<()> {
        let k = key.clone();
        self.writer
            .write(move |c| {
                let n = db(c.execute(
                    "INSERT INTO backup_keys (tenant_id, user_id, key_user, secret_hash, created_at)
                     SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS
                         (SELECT 1 FROM users WHERE tenant_id = ?1 AND id = ?2 AND deleted_at IS NULL)
                     ON CONFLICT (tenant_id, user_id) DO UPDATE SET key_user = excluded.key_user,
                         secret_hash = excluded.secret_hash, created_at = excluded.created_at",
                    params![
                        k.tenant_id.as_str(),
                        k.user_id.as_str(),
                        k.key_user,
                        k.hash.as_bytes().as_slice(),
                        ts(k.created_at)
                    ],
                ))?;
                if n == 0 {
                    return Err(Error::NotFound("user"));
                }
                db(insert_audit(c, &audit))
            })
            .await
    }

    async fn backup_key(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<BackupKeyRecord>> {
        let (t, u) = (tenant.to_string(), user.to_string());
        // A primary-key lookup on every restic request: inline (see `read_point`).
        let row = self
            .read_point(move |c| {
                c.prepare_cached(
                    "SELECT key_user, secret_hash, created_at FROM backup_keys
                     WHERE tenant_id = ? AND user_id = ?",
                )?
                .query_row([&t, &u], |r| {
                    let hash: Vec<u8> = r.get(1)?;
                    Ok((r.get::<_, String>(0)?, hash, parse_time(r.get(2)?)?))
                })
                .optional()
            })
            .await?;
        Ok(row.and_then(|(key_user, hash, created_at)| {
            TokenHash::from_bytes(&hash).map(|hash| BackupKeyRecord {
                tenant_id: tenant.clone(),
                user_id: user.clone(),
                key_user,
                hash,
                created_at,
            })
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
}
