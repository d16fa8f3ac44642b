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
use std::collections::HashSet;
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

/// An account's quota as the store keeps it: the largest of its base quota and the sizes
/// of the sized groups it belongs to (see the module documentation). Generic over the
/// number type, so a backend can apply it to the integers its rows hold. The operator's
/// cap applies on top, when the quota is enforced (`Tenant::effective_quota`).
pub fn effective_quota<Q: Ord>(base: Q, group_sizes: impl IntoIterator<Item = Q>) -> Q {
    group_sizes.into_iter().fold(base, Ord::max)
}

/// What a full replacement of a group's members (PUT, `replace` of `members`) changes,
/// given the members it has: `(to_add, to_remove)`. `to_add` holds each wanted account
/// that is not a member, once, in the order wanted; `to_remove` each member that is not
/// wanted, in the order of `current`.
pub fn member_diff(current: &[UserId], want: &[UserId]) -> (Vec<UserId>, Vec<UserId>) {
    let have: HashSet<&UserId> = current.iter().collect();
    let wanted: HashSet<&UserId> = want.iter().collect();
    let to_remove = current
        .iter()
        .filter(|u| !wanted.contains(u))
        .cloned()
        .collect();
    let to_add = distinct(want.iter().filter(|u| !have.contains(u)));
    (to_add, to_remove)
}

/// The accounts of `ids`, each once, in their first order.
pub fn distinct<'a>(ids: impl IntoIterator<Item = &'a UserId>) -> Vec<UserId> {
    let mut seen = HashSet::new();
    ids.into_iter()
        .filter(|u| seen.insert(*u))
        .cloned()
        .collect()
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

/// Completes a group change's audit entry with what only the store knows: the members
/// the change added and removed (when any), and the new name when it renamed the group.
pub fn complete_change_audit(
    audit: &mut AuditDraft,
    renamed: Option<&GroupData>,
    added: &[UserId],
    removed: &[UserId],
) {
    if !added.is_empty() || !removed.is_empty() {
        audit.changes["members"] = members_audit(added, removed);
    }
    if let Some(d) = renamed {
        audit.target_name = Some(d.display_name.clone());
    }
}

/// The accounts whose quota a change of a group's members may move: each account added
/// or removed when the group has a size; none when it has not.
pub fn quota_affected(size: Option<QuotaGb>, added: &[UserId], removed: &[UserId]) -> Vec<UserId> {
    match size {
        Some(_) => added.iter().chain(removed).cloned().collect(),
        None => Vec::new(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<UserId> {
        let mut v: Vec<UserId> = (0..n).map(|_| UserId::random()).collect();
        v.sort();
        v
    }

    #[test]
    fn effective_quota_is_the_largest_of_base_and_group_sizes() {
        assert_eq!(effective_quota(10, []), 10);
        assert_eq!(effective_quota(10, [5, 7]), 10);
        assert_eq!(effective_quota(10, [5, 50, 20]), 50);
        let q = |gb| QuotaGb::new(gb).unwrap();
        assert_eq!(effective_quota(q(10), [q(10)]), q(10));
        assert_eq!(effective_quota(q(1), [q(2)]), q(2));
    }

    #[test]
    fn member_diff_adds_the_missing_once_and_removes_the_unwanted() {
        let u = ids(5);
        let current = vec![u[0].clone(), u[1].clone(), u[2].clone()];
        let want = vec![u[4].clone(), u[1].clone(), u[3].clone(), u[4].clone()];
        let (add, remove) = member_diff(&current, &want);
        assert_eq!(add, vec![u[4].clone(), u[3].clone()]);
        assert_eq!(remove, vec![u[0].clone(), u[2].clone()]);
    }

    #[test]
    fn member_diff_of_the_same_set_is_empty() {
        let u = ids(3);
        let mut shuffled = u.clone();
        shuffled.reverse();
        shuffled.push(u[0].clone());
        assert_eq!(member_diff(&u, &shuffled), (vec![], vec![]));
        assert_eq!(member_diff(&[], &[]), (vec![], vec![]));
        assert_eq!(member_diff(&u, &[]), (vec![], u.clone()));
        assert_eq!(member_diff(&[], &u), (u.clone(), vec![]));
    }

    fn draft() -> AuditDraft {
        AuditDraft {
            tenant_id: TenantId::random(),
            actor: crate::audit::Actor::Operator,
            action: Action::GroupUpdated,
            target_type: "group",
            target_id: Some("g".into()),
            target_name: Some("Old".into()),
            changes: json!({"displayName": {"before": "Old", "after": "New"}}),
            meta: Default::default(),
            at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_change_audit_gets_the_members_and_the_new_name() {
        let u = ids(3);
        let mut a = draft();
        let renamed = GroupData {
            display_name: "New".into(),
            external_id: None,
            doc: json!({}),
        };
        complete_change_audit(&mut a, Some(&renamed), &u[..2], &u[2..]);
        assert_eq!(a.target_name.as_deref(), Some("New"));
        assert_eq!(a.changes["members"], members_audit(&u[..2], &u[2..]));
        assert_eq!(a.changes["members"]["added"], 2);
        assert_eq!(a.changes["displayName"]["after"], "New");

        let untouched = draft();
        let mut b = untouched.clone();
        complete_change_audit(&mut b, None, &[], &[]);
        assert_eq!(b, untouched);
    }

    #[test]
    fn only_a_sized_group_moves_quotas() {
        let u = ids(3);
        let size = Some(QuotaGb::new(100).unwrap());
        assert_eq!(quota_affected(size, &u[..1], &u[1..]), u);
        assert_eq!(quota_affected(None, &u[..1], &u[1..]), vec![]);
    }

    #[test]
    fn distinct_keeps_the_first_of_each() {
        let u = ids(2);
        let v = [u[1].clone(), u[0].clone(), u[1].clone(), u[0].clone()];
        assert_eq!(distinct(&v), vec![u[1].clone(), u[0].clone()]);
    }
}
