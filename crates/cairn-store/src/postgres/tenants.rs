//! PostgreSQL side of tenants and their SCIM settings.

use super::*;
use async_trait::async_trait;
use cairn_core::audit::AuditDraft;
use cairn_core::ids::TenantId;
use cairn_core::store::*;
use cairn_core::tenant::Tenant;
use cairn_core::{Error, Result};

#[async_trait]
impl TenantStore for PostgresStore {
    async fn create_tenant(&self, t: &Tenant, audit: AuditDraft) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        tx.execute(
            "INSERT INTO tenants (id, name, scim_enabled, account_size_gb, created_at) VALUES ($1, $2, $3, $4, $5)",
            &[&t.id.as_str(), &t.name, &t.scim_enabled, &i64::from(t.account_size_gb.get()), &ts(t.created_at)],
        )
        .await
        .map_err(map_err)?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<Tenant>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        get_tenant(&**c, tenant.as_str()).await
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                &format!("SELECT {TENANT_COLS} FROM tenants ORDER BY created_at, id"),
                &[],
            )
            .await
            .map_err(map_err)?;
        rows.iter().map(tenant_from_row).collect()
    }

    async fn update_settings(
        &self,
        tenant: &TenantId,
        change: &SettingsChange,
        audits: Vec<AuditDraft>,
    ) -> Result<Tenant> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let id = tenant.as_str();
        if let Some(e) = change.scim_enabled {
            tx.execute(
                "UPDATE tenants SET scim_enabled = $1 WHERE id = $2",
                &[&e, &id],
            )
            .await
            .map_err(map_err)?;
        }
        if let Some(s) = change.account_size_gb {
            tx.execute(
                "UPDATE tenants SET account_size_gb = $1 WHERE id = $2",
                &[&i64::from(s.get()), &id],
            )
            .await
            .map_err(map_err)?;
        }
        if let Some(cap) = change.max_account_size_gb {
            tx.execute(
                "UPDATE tenants SET max_account_size_gb = $1 WHERE id = $2",
                &[&cap.map(|c| i64::from(c.get())), &id],
            )
            .await
            .map_err(map_err)?;
        }
        if let Some(d) = change.stale_days {
            tx.execute(
                "UPDATE tenants SET stale_days = $1 WHERE id = $2",
                &[&i64::from(d.get()), &id],
            )
            .await
            .map_err(map_err)?;
        }
        for a in &audits {
            insert_audit(&*tx, a).await?;
        }
        let t = get_tenant(&*tx, id)
            .await?
            .ok_or(Error::NotFound("tenant"))?;
        tx.commit().await.map_err(map_err)?;
        Ok(t)
    }
}
