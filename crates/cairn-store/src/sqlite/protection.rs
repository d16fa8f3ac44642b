//! SQLite side of each tenant's deletion-protection setting.

use super::*;
use async_trait::async_trait;
use cairn_core::audit::AuditDraft;
use cairn_core::ids::TenantId;
use cairn_core::store::*;
use cairn_core::Result;
use rusqlite::{params, OptionalExtension};
use time::OffsetDateTime;

#[async_trait]
impl ProtectionStore for SqliteStore {
    async fn vault_protection(&self, tenant: &TenantId) -> Result<Option<u32>> {
        let t = tenant.to_string();
        // A primary-key lookup on every protected DELETE: inline (see `read_point`).
        self.read_point(move |c| {
            c.prepare_cached("SELECT days FROM vault_protection WHERE tenant_id = ?")?
                .query_row([&t], |r| r.get::<_, u32>(0))
                .optional()
        })
        .await
    }

    async fn set_vault_protection(
        &self,
        tenant: &TenantId,
        days: Option<u32>,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<()> {
        let (t, at) = (tenant.to_string(), ts(at));
        self.writer
            .write(move |c| {
                db((|| {
                    match days {
                        Some(d) => c.execute(
                            "INSERT INTO vault_protection (tenant_id, days, updated_at)
                             VALUES (?1, ?2, ?3)
                             ON CONFLICT (tenant_id) DO UPDATE
                             SET days = excluded.days, updated_at = excluded.updated_at",
                            params![t, d, at],
                        )?,
                        None => c.execute(
                            "DELETE FROM vault_protection WHERE tenant_id = ?",
                            params![t],
                        )?,
                    };
                    insert_audit(c, &audit)
                })())
            })
            .await
    }
}
