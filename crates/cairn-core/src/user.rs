//! Backup accounts: every SCIM user is one. The SCIM representation lives in `doc`; the
//! columns beside it are projections used for indexes, uniqueness and the dashboard.

use crate::ids::{QuotaGb, TenantId, UserId, UserName};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

/// The attributes a provisioning client controls, already validated by the protocol layer.
#[derive(Debug, Clone, PartialEq)]
pub struct UserData {
    pub user_name: UserName,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    /// The primary (or work, or first) email, as sent.
    pub email: Option<String>,
    /// `false` suspends the backup account; its data is kept.
    pub active: bool,
    /// The whole resource as the protocol stores it (canonical attribute names, no `id`,
    /// `meta` or `schemas`).
    pub doc: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    Active,
    Suspended,
    Deleted,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserRecord {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub user_name: UserName,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub active: bool,
    pub doc: Value,
    pub quota_gb: QuotaGb,
    pub used_bytes: i64,
    /// Created by a provisioning client (as opposed to an operator).
    pub scim_managed: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Bumped on every change; the SCIM ETag is derived from it.
    pub version: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub deleted_at: Option<OffsetDateTime>,
    /// When a soft-deleted account's data will be purged.
    #[serde(with = "time::serde::rfc3339::option")]
    pub purge_at: Option<OffsetDateTime>,
}

impl UserRecord {
    pub fn status(&self) -> AccountStatus {
        if self.deleted_at.is_some() {
            AccountStatus::Deleted
        } else if self.active {
            AccountStatus::Active
        } else {
            AccountStatus::Suspended
        }
    }

    pub fn data(&self) -> UserData {
        UserData {
            user_name: self.user_name.clone(),
            external_id: self.external_id.clone(),
            display_name: self.display_name.clone(),
            email: self.email.clone(),
            active: self.active,
            doc: self.doc.clone(),
        }
    }
}
