//! Backup accounts: every SCIM user is one. The SCIM representation lives in `doc`; the
//! columns beside it are projections used for indexes, uniqueness and the dashboard.

use crate::audit::{Action, Actor, AuditDraft, RequestMeta};
use crate::ids::{QuotaGb, TenantId, UserId, UserName};
use serde::Serialize;
use serde_json::{json, Value};
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

/// An audit entry Cairn itself writes about an account (the retention purge).
pub fn system_audit<D>(
    u: &UserRecord<D>,
    action: Action,
    changes: Value,
    at: OffsetDateTime,
) -> AuditDraft {
    AuditDraft {
        tenant_id: u.tenant_id.clone(),
        actor: Actor::System,
        action,
        target_type: "user",
        target_id: Some(u.id.to_string()),
        target_name: Some(u.user_name.to_string()),
        changes,
        meta: RequestMeta::default(),
        at,
    }
}

/// The entries that go with the purge of an account whose repository held `bytes`:
/// `vault_purged`, then `user_purged`, written by `UserStore::finish_purge` in the
/// transaction that deletes the row.
pub fn purge_audits<D>(u: &UserRecord<D>, bytes: u64, at: OffsetDateTime) -> Vec<AuditDraft> {
    vec![
        system_audit(
            u,
            Action::VaultPurged,
            json!({"repositoryBytes": {"before": bytes, "after": 0}}),
            at,
        ),
        system_audit(
            u,
            Action::UserPurged,
            json!({"deletedAt": {"before": u.deleted_at.map(crate::clock::format_ts)}}),
            at,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purge_is_audited_as_vault_then_account_by_the_system() {
        let deleted = time::macros::datetime!(2026-11-01 10:00:00.5 UTC);
        let at = time::macros::datetime!(2026-12-01 00:00 UTC);
        let u = UserRecord {
            id: UserId::random(),
            tenant_id: TenantId::random(),
            user_name: UserName::parse("gone@example.test").unwrap(),
            external_id: None,
            display_name: None,
            email: None,
            active: true,
            doc: (),
            quota_gb: QuotaGb::default(),
            used_bytes: 0,
            scim_managed: true,
            created_at: deleted,
            updated_at: deleted,
            version: 2,
            deleted_at: Some(deleted),
            purge_at: Some(at),
        };
        let a = purge_audits(&u, 4096, at);
        let actions: Vec<Action> = a.iter().map(|d| d.action).collect();
        assert_eq!(actions, [Action::VaultPurged, Action::UserPurged]);
        for d in &a {
            assert_eq!(d.actor, Actor::System);
            assert_eq!(d.tenant_id, u.tenant_id);
            assert_eq!(d.target_type, "user");
            assert_eq!(d.target_id.as_deref(), Some(u.id.as_str()));
            assert_eq!(d.target_name.as_deref(), Some("gone@example.test"));
            assert_eq!(d.meta, RequestMeta::default());
            assert_eq!(d.at, at);
        }
        assert_eq!(
            a[0].changes,
            json!({"repositoryBytes": {"before": 4096, "after": 0}})
        );
        assert_eq!(
            a[1].changes,
            json!({"deletedAt": {"before": "2026-11-01T10:00:00.500Z"}})
        );
    }
}
