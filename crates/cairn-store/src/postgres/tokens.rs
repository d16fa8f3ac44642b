//! PostgreSQL side of SCIM API tokens (stored as hashes only).

use super::*;
use async_trait::async_trait;
use cairn_core::audit::AuditDraft;
use cairn_core::auth::TokenHash;
use cairn_core::ids::{TenantId, TokenId};
use cairn_core::store::*;
use cairn_core::tenant::TokenInfo;
use cairn_core::Result;
use time::OffsetDateTime;

#[async_trait]
impl TokenStore for PostgresStore {
    async fn replace_token(
        &self,
        tenant: &TenantId,
        token: &TokenInfo,
        hash: &TokenHash,
        audit: AuditDraft,
    ) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let at = ts(token.created_at);
        // Serialise generations per tenant. Without the lock, two concurrent ones each
        // revoke only the tokens committed before their UPDATE began (READ COMMITTED), so
        // both new tokens stayed live.
        tx.execute(
            "SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE",
            &[&tenant.as_str()],
        )
        .await
        .map_err(map_err)?;
        tx.execute(
            "UPDATE scim_tokens SET revoked_at = $1 WHERE tenant_id = $2 AND revoked_at IS NULL",
            &[&at, &tenant.as_str()],
        )
        .await
        .map_err(map_err)?;
        tx.execute(
            "INSERT INTO scim_tokens (id, tenant_id, hash, hint, created_at) VALUES ($1, $2, $3, $4, $5)",
            &[&token.id.as_str(), &tenant.as_str(), &hash.as_bytes().as_slice(), &token.hint, &at],
        )
        .await
        .map_err(map_err)?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn scim_auth_state(&self, tenant: &TenantId) -> Result<Option<ScimAuthState>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let Some(t) = get_tenant(&**c, tenant.as_str()).await? else {
            return Ok(None);
        };
        let rows = c
            .query(
                "SELECT id, hash FROM scim_tokens WHERE tenant_id = $1 AND revoked_at IS NULL",
                &[&tenant.as_str()],
            )
            .await
            .map_err(map_err)?;
        let tokens = rows
            .iter()
            .filter_map(|r| {
                let h: Vec<u8> = r.get(1);
                TokenHash::from_bytes(&h).map(|h| (TokenId::from_trusted(r.get(0)), h))
            })
            .collect();
        Ok(Some(ScimAuthState { tenant: t, tokens }))
    }

    async fn token_info(&self, tenant: &TenantId) -> Result<Option<TokenInfo>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT id, tenant_id, hint, created_at, last_used_at, last_user_agent FROM scim_tokens
                 WHERE tenant_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 1",
                &[&tenant.as_str()],
            )
            .await
            .map_err(map_err)?;
        row.map(|r| {
            Ok(TokenInfo {
                id: TokenId::from_trusted(r.get(0)),
                tenant_id: TenantId::from_trusted(r.get(1)),
                hint: r.get(2),
                created_at: time_of(r.get(3))?,
                last_used_at: opt_time(r.get(4))?,
                last_user_agent: r.get(5),
            })
        })
        .transpose()
    }

    async fn touch_token(
        &self,
        tenant: &TenantId,
        token: &TokenId,
        at: OffsetDateTime,
        user_agent: Option<&str>,
    ) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let ua = user_agent.map(|s| s.chars().take(200).collect::<String>());
        c.execute(
            "UPDATE scim_tokens SET last_used_at = $1, last_user_agent = COALESCE($2, last_user_agent)
             WHERE tenant_id = $3 AND id = $4",
            &[&ts(at), &ua, &tenant.as_str(), &token.as_str()],
        )
        .await
        .map_err(map_err)?;
        Ok(())
    }
}
