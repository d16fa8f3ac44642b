//! SQLite side of SCIM API tokens (stored as hashes only).

use super::*;
use async_trait::async_trait;
use cairn_core::audit::AuditDraft;
use cairn_core::auth::TokenHash;
use cairn_core::ids::{TenantId, TokenId};
use cairn_core::store::*;
use cairn_core::tenant::TokenInfo;
use cairn_core::Result;
use rusqlite::{params, OptionalExtension};
use time::OffsetDateTime;

#[async_trait]
impl TokenStore for SqliteStore {
    async fn replace_token(
        &self,
        tenant: &TenantId,
        token: &TokenInfo,
        hash: &TokenHash,
        audit: AuditDraft,
    ) -> Result<()> {
        let id = tenant.to_string();
        let token = token.clone();
        let hash = hash.as_bytes().to_vec();
        self.writer
            .write(move |c| {
                let at = ts(token.created_at);
                db(c.execute(
                    "UPDATE scim_tokens SET revoked_at = ? WHERE tenant_id = ? AND revoked_at IS NULL",
                    params![at, id],
                ))?;
                db(c.execute(
                    "INSERT INTO scim_tokens (id, tenant_id, hash, hint, created_at) VALUES (?, ?, ?, ?, ?)",
                    params![token.id.as_str(), id, hash, token.hint, at],
                ))?;
                db(insert_audit(c, &audit))
            })
            .await
    }

    async fn scim_auth_state(&self, tenant: &TenantId) -> Result<Option<ScimAuthState>> {
        let id = tenant.to_string();
        self.read(move |c| {
            let Some(tenant) = get_tenant(c, &id)? else {
                return Ok(None);
            };
            let mut st = c.prepare_cached(
                "SELECT id, hash FROM scim_tokens WHERE tenant_id = ? AND revoked_at IS NULL",
            )?;
            let tokens = st
                .query_map([&id], |r| {
                    let h: Vec<u8> = r.get(1)?;
                    Ok((TokenId::from_trusted(r.get(0)?), TokenHash::from_bytes(&h)))
                })?
                .filter_map(|r| match r {
                    Ok((id, Some(h))) => Some(Ok((id, h))),
                    Ok((_, None)) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(ScimAuthState { tenant, tokens }))
        })
        .await
    }

    async fn token_info(&self, tenant: &TenantId) -> Result<Option<TokenInfo>> {
        let id = tenant.to_string();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT id, tenant_id, hint, created_at, last_used_at, last_user_agent FROM scim_tokens
                 WHERE tenant_id = ? AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 1",
            )?
            .query_row([&id], |r| {
                Ok(TokenInfo {
                    id: TokenId::from_trusted(r.get(0)?),
                    tenant_id: TenantId::from_trusted(r.get(1)?),
                    hint: r.get(2)?,
                    created_at: parse_time(r.get(3)?)?,
                    last_used_at: opt_time(r.get(4)?)?,
                    last_user_agent: r.get(5)?,
                })
            })
            .optional()
        })
        .await
    }

    async fn touch_token(
        &self,
        tenant: &TenantId,
        token: &TokenId,
        at: OffsetDateTime,
        user_agent: Option<&str>,
    ) -> Result<()> {
        let (tenant, token) = (tenant.to_string(), token.to_string());
        let ua = user_agent.map(|s| s.chars().take(200).collect::<String>());
        self.writer
            .write(move |c| {
                db(c.execute(
                    "UPDATE scim_tokens SET last_used_at = ?, last_user_agent = COALESCE(?, last_user_agent)
                     WHERE tenant_id = ? AND id = ?",
                    params![ts(at), ua, tenant, token],
                ))
                .map(|_| ())
            })
            .await
    }
}
