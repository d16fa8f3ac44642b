//! Groups (RFC 7643 §4.2): named sets of a tenant's backup accounts, pushed by identity
//! providers, each optionally carrying its own Account Size.
//!
//! Members are not part of the stored document: they are a relation (tenant, group, user)
//! indexed both ways, changed by [`MemberChange`] deltas, so that adding or removing k
//! members costs O(k) whatever the size of the group.
//!
//! **Group-based account size.** An account's quota is the largest of its base quota (the
//! tenant's Account Size when the account was created) and the sizes of the groups it
//! belongs to. The store recomputes it, in the same transaction, for exactly the accounts
//! whose memberships changed (or all members, when a sized group's size changes or the
//! group is deleted) and writes one `quota_changed` audit entry per account whose quota
//! actually changed.

use crate::audit::{Action, AuditDraft};
use crate::ids::{GroupId, QuotaGb, TenantId, UserId};
use serde::Serialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

/// The attributes of a group a provisioning client controls, already validated by the
/// protocol layer (members aside).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupData {
    pub display_name: String,
    pub external_id: Option<String>,
    /// The resource as the protocol stores it (canonical names; no `id`, `meta`,
    /// `schemas` or `members`).
    pub doc: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupRecord {
    pub id: GroupId,
    pub tenant_id: TenantId,
    pub display_name: String,
    pub external_id: Option<String>,
    pub doc: Value,
    /// The group's own Account Size, set by an administrator (never by SCIM).
    pub size_gb: Option<QuotaGb>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Bumped on every change, memberships included; the SCIM ETag is derived from it.
    pub version: i64,
}

impl GroupRecord {
    pub fn data(&self) -> GroupData {
        GroupData {
            display_name: self.display_name.clone(),
            external_id: self.external_id.clone(),
            doc: self.doc.clone(),
        }
    }
}

/// A change to a group's members.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberChange {
    /// Add these accounts and remove those (a member in both lists ends up removed if
    /// `remove` came last when the protocol folded its operations; the two lists are
    /// disjoint by construction).
    Delta {
        add: Vec<UserId>,
        remove: Vec<UserId>,
    },
    /// The members are exactly these (PUT, `replace` of `members`). Costs O(size of the
    /// group): the store reads the current members to find the difference.
    Replace(Vec<UserId>),
}

impl MemberChange {
    pub fn none() -> Self {
        MemberChange::Delta {
            add: Vec::new(),
            remove: Vec::new(),
        }
    }
    pub fn is_none(&self) -> bool {
        matches!(self, MemberChange::Delta { add, remove } if add.is_empty() && remove.is_empty())
    }
}

/// A group as a user's `groups` attribute names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupRef {
    pub id: GroupId,
    pub display_name: String,
}

/// A group with its number of (live) members, for the dashboard.
#[derive(Debug, Clone, Serialize)]
pub struct GroupSummary {
    pub group: GroupRecord,
    pub members: u64,
}

/// Most member ids listed in one audit entry; the counts are always complete.
pub const AUDIT_MEMBER_IDS: usize = 100;

/// The `members` part of a group audit entry: counts plus the first ids.
pub fn members_audit(added: &[UserId], removed: &[UserId]) -> Value {
    let ids = |v: &[UserId]| -> Vec<String> {
        v.iter()
            .take(AUDIT_MEMBER_IDS)
            .map(|u| u.to_string())
            .collect()
    };
    json!({
        "added": added.len(),
        "removed": removed.len(),
        "addedIds": ids(added),
        "removedIds": ids(removed),
    })
}

/// The audit entry for an account whose quota a group change recomputed: same actor,
/// request and time as the group change that caused it.
pub fn quota_audit(
    cause: &AuditDraft,
    user: &str,
    user_name: &str,
    before: i64,
    after: i64,
) -> AuditDraft {
    AuditDraft {
        tenant_id: cause.tenant_id.clone(),
        actor: cause.actor.clone(),
        action: Action::QuotaChanged,
        target_type: "user",
        target_id: Some(user.to_owned()),
        target_name: Some(user_name.to_owned()),
        changes: json!({
            "quotaGb": {"before": before, "after": after},
            "cause": {"group": cause.target_id, "groupName": cause.target_name, "action": cause.action.as_str()},
        }),
        meta: cause.meta.clone(),
        at: cause.at,
    }
}
