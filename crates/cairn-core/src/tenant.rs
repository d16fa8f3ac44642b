//! Tenants (organisations) and their SCIM settings.

use crate::ids::{QuotaGb, TenantId, TokenId};
use serde::Serialize;
use time::OffsetDateTime;

#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    /// "Enable SCIM user management": when off, every SCIM call is refused with 401.
    pub scim_enabled: bool,
    /// "Account Size": the quota given to each backup account that provisioning creates.
    pub account_size_gb: QuotaGb,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The operator's cap on the tenant's Account Size and group sizes (`cairn tenant
    /// limit`); `None`: no cap beyond `QuotaGb::MAX`.
    pub max_account_size_gb: Option<QuotaGb>,
    /// What "stale" means for the tenant's backups (see `crate::freshness`).
    pub stale_days: crate::freshness::StaleDays,
}

impl Tenant {
    /// Refuses an Account Size or group size above the operator's cap.
    pub fn check_size(&self, size: QuotaGb) -> Result<(), crate::Error> {
        match self.max_account_size_gb {
            Some(cap) if size > cap => Err(crate::Error::Invalid {
                field: "size",
                reason: format!("{size} is above the limit of {cap} set by the operator"),
            }),
            _ => Ok(()),
        }
    }

    /// An account's quota as enforced: its own, but at most the operator's cap (a larger
    /// quota given before the cap was set counts as the cap).
    pub fn effective_quota(&self, quota: QuotaGb) -> QuotaGb {
        match self.max_account_size_gb {
            Some(cap) => quota.min(cap),
            None => quota,
        }
    }
}

impl Tenant {
    /// The SCIM base URL of this tenant under the deployment's public URL. It contains no
    /// underscore (Okta rejects base URLs with `_`): tenant ids are UUIDs.
    pub fn tenant_url(&self, public_url: &str) -> String {
        tenant_url(public_url, &self.id)
    }
}

pub fn tenant_url(public_url: &str, id: &TenantId) -> String {
    format!("{}/scim/v2/{}", public_url.trim_end_matches('/'), id)
}

pub fn validate_tenant_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("tenant name must not be empty".into());
    }
    if name.chars().count() > 200 {
        return Err("tenant name is longer than 200 characters".into());
    }
    if name.chars().any(char::is_control) {
        return Err("tenant name must not contain control characters".into());
    }
    Ok(name.to_owned())
}

/// What is stored about an API token: never the token itself.
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub id: TokenId,
    pub tenant_id: TenantId,
    /// A recognisable fragment (prefix…suffix) so administrators can tell tokens apart.
    pub hint: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// The User-Agent of the last client that used the token ("Okta SCIM Client 1.0.0").
    pub last_user_agent: Option<String>,
}
