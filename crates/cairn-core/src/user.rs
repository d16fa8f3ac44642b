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

/// A stored document as the database returned it: the JSON text of an object, not yet
/// parsed. Reads that only render the user (`GET`, lists) carry this, so that the common
/// case copies the stored attributes into the response instead of building and dropping a
/// tree of `Value`s (`cairn_scim::user_json::write_user`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocJson(pub String);

impl DocJson {
    pub fn parse(&self) -> serde_json::Result<Value> {
        serde_json::from_str(&self.0)
    }
}

/// An account. `D` is its document: parsed (`Value`, the default) or as stored
/// ([`DocJson`]).
#[derive(Debug, Clone, Serialize)]
pub struct UserRecord<D = Value> {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub user_name: UserName,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub active: bool,
    pub doc: D,
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

impl<D> UserRecord<D> {
    /// A copy of the record around another document, without copying this one (a
    /// store serialises the document and moves the rest to its writer thread).
    pub fn with_doc<E>(&self, doc: E) -> UserRecord<E> {
        UserRecord {
            doc,
            id: self.id.clone(),
            tenant_id: self.tenant_id.clone(),
            user_name: self.user_name.clone(),
            external_id: self.external_id.clone(),
            display_name: self.display_name.clone(),
            email: self.email.clone(),
            active: self.active,
            quota_gb: self.quota_gb,
            used_bytes: self.used_bytes,
            scim_managed: self.scim_managed,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
            deleted_at: self.deleted_at,
            purge_at: self.purge_at,
        }
    }

    /// The same record with its document replaced by `f(doc)`.
    pub fn map_doc<E>(self, f: impl FnOnce(D) -> E) -> UserRecord<E> {
        UserRecord {
            doc: f(self.doc),
            id: self.id,
            tenant_id: self.tenant_id,
            user_name: self.user_name,
            external_id: self.external_id,
            display_name: self.display_name,
            email: self.email,
            active: self.active,
            quota_gb: self.quota_gb,
            used_bytes: self.used_bytes,
            scim_managed: self.scim_managed,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
            deleted_at: self.deleted_at,
            purge_at: self.purge_at,
        }
    }

    pub fn status(&self) -> AccountStatus {
        if self.deleted_at.is_some() {
            AccountStatus::Deleted
        } else if self.active {
            AccountStatus::Active
        } else {
            AccountStatus::Suspended
        }
    }
}

impl UserRecord<DocJson> {
    /// The record with its document parsed.
    pub fn parsed(self) -> serde_json::Result<UserRecord> {
        let doc = self.doc.parse()?;
        Ok(self.map_doc(|_| doc))
    }
}

impl UserRecord {
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
