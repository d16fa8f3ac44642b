//! SQLite side of tenants and their SCIM settings.

use super::*;
use async_trait::async_trait;
use cairn_core::audit::AuditDraft;
use cairn_core::ids::{QuotaGb, TenantId};
use cairn_core::store::*;
use cairn_core::tenant::Tenant;
use cairn_core::{Error, Result};
use rusqlite::params;

#[async_trait]
impl TenantStore for SqliteStore {
    async fn create_tenant(&self, tenant: &Tenant, audit: AuditDraft) -> Result<()> {
        let t = tenant.clone();
        self.writer
            .write(move |c| {
                db(c.execute(
                    "INSERT INTO tenants (id, name, scim_enabled, account_size_gb, created_at) VALUES (?, ?, ?, ?, ?)",
                    params![t.id.as_str(), t.name, t.scim_enabled, t.account_size_gb.get(), ts(t.created_at)],
                ))?;
                db(insert_audit(c, &audit))
            })
            .await
    }

    async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<Tenant>> {
        let id = tenant.to_string();
        self.read(move |c| get_tenant(c, &id)).await
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {TENANT_COLS} FROM tenants ORDER BY created_at, id"
            ))?;
            let rows = st.query_map([], tenant_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn update_settings(
        &self,
        tenant: &TenantId,
        change: &SettingsChange,
        audits: Vec<AuditDraft>,
    ) -> Result<Tenant> {
        let id = tenant.to_string();
        let change = change.clone();
        self.writer
            .write(move |c| {
                if let Some(e) = change.scim_enabled {
                    db(c.execute(
                        "UPDATE tenants SET scim_enabled = ? WHERE id = ?",
                        params![e, id],
                    ))?;
                }
                if let Some(s) = change.account_size_gb {
                    db(c.execute(
                        "UPDATE tenants SET account_size_gb = ? WHERE id = ?",
                        params![s.get(), id],
                    ))?;
                }
                if let Some(cap) = change.max_account_size_gb {
                    db(c.execute(
                        "UPDATE tenants SET max_account_size_gb = ? WHERE id = ?",
                        params![cap.map(QuotaGb::get), id],
                    ))?;
                }
                if let Some(d) = change.stale_days {
                    db(c.execute(
                        "UPDATE tenants SET stale_days = ? WHERE id = ?",
                        params![d.get(), id],
                    ))?;
                }
                for a in &audits {
                    db(insert_audit(c, a))?;
                }
                db(get_tenant(c, &id))?.ok_or(Error::NotFound("tenant"))
            })
            .await
    }
}
