//! PostgreSQL side of each tenant's deletion-protection setting.

use super::*;
use async_trait::async_trait;
use cairn_core::audit::AuditDraft;
use cairn_core::ids::TenantId;
use cairn_core::store::*;
use cairn_core::Result;
use time::OffsetDateTime;

#[async_trait]
impl ProtectionStore for PostgresStore {
    async fn vault_protection(&self, tenant: &TenantId) -> Result<Option<u32>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT days FROM vault_protection WHERE tenant_id = $1",
                &[&tenant.as_str()],
            )
            .await
            .map_err(map_err)?;
        Ok(row.and_then(|r| u32::try_from(r.get::<_, i32>(0)).ok()))
    }

    async fn set_vault_protection(
        &self,
        tenant: &TenantId,
        days: Option<u32>,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let t = tenant.as_str();
        match days {
            Some(d) => {
                let d = i32::try_from(d).unwrap_or(i32::MAX);
                tx.execute(
                    "INSERT INTO vault_protection (tenant_id, days, updated_at)
                     VALUES ($1, $2, $3)
                     ON CONFLICT (tenant_id) DO UPDATE
                     SET days = excluded.days, updated_at = excluded.updated_at",
                    &[&t, &d, &ts(at)],
                )
                .await
            }
            None => {
                tx.execute("DELETE FROM vault_protection WHERE tenant_id = $1", &[&t])
                    .await
            }
        }
        .map_err(map_err)?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
    }
}
