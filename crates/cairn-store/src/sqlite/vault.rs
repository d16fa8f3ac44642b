//! SQLite side of backup keys (device keys: several per account) and the used-space
//! counter.

use super::*;
use async_trait::async_trait;
use cairn_core::audit::AuditDraft;
use cairn_core::auth::TokenHash;
use cairn_core::backup_key::{BackupKeyRecord, KeyName};
use cairn_core::ids::{TenantId, UserId};
use cairn_core::store::*;
use cairn_core::vault::ByteCount;
use cairn_core::{Error, Result};
use rusqlite::{params, OptionalExtension};
use time::OffsetDateTime;

#[async_trait]
impl VaultStore for SqliteStore {
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
