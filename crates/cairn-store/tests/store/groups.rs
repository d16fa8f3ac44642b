//! Groups: uniqueness, members as a relation, tenant isolation, versions, audit, and the
//! quota rule of group-based account sizes.

use crate::support::*;
use cairn_core::audit::{Action, AuditQuery};
use cairn_core::group::{GroupData, GroupRecord, MemberChange};
use cairn_core::ids::{GroupId, QuotaGb, TenantId, UserId};
use cairn_core::query::{Attr, AttrKind, AttrTarget, CompareOp, Filter, ListQuery, Scalar};
use cairn_core::store::*;
use cairn_core::Error;
use proptest::prelude::*;
use serde_json::json;

fn group(tenant: &TenantId, name: &str) -> GroupRecord {
    GroupRecord {
        id: GroupId::random(),
        tenant_id: tenant.clone(),
        display_name: name.into(),
        external_id: None,
        doc: json!({"displayName": name}),
        size_gb: None,
        created_at: now(),
        updated_at: now(),
        version: 1,
    }
}

fn gdraft(tenant: &TenantId, action: Action) -> cairn_core::audit::AuditDraft {
    let mut d = draft(tenant, action);
    d.target_type = "group";
    d
}

async fn users(store: &dyn Store, tenant: &TenantId, n: usize) -> Vec<UserId> {
    let mut out = Vec::new();
    for i in 0..n {
        let name = format!("u{i}-{}@x.io", UserId::random());
        let u = user(tenant, &name, json!({"userName": name}));
        store
            .create_user(&u, draft(tenant, Action::UserCreated))
            .await
            .unwrap();
        out.push(u.id);
    }
    out
}

fn delta(add: &[UserId], remove: &[UserId]) -> MemberChange {
    MemberChange::Delta {
        add: add.to_vec(),
        remove: remove.to_vec(),
    }
}

async fn quota(store: &dyn Store, t: &TenantId, u: &UserId) -> u32 {
    store.get_user(t, u).await.unwrap().unwrap().quota_gb.get()
}

#[tokio::test]
async fn create_read_members_and_unique_display_name_any_case() {
    let db = db_async().await;
    let s = &*db.store;
    let t = tenant(s, "acme").await;
    let other = tenant(s, "other").await;
    let us = users(s, &t.id, 2).await;
    let g = group(&t.id, "Engineering");
    s.create_group(&g, &us, &[], gdraft(&t.id, Action::GroupCreated))
        .await
        .unwrap();
    let got = s.get_group(&t.id, &g.id).await.unwrap().unwrap();
    assert_eq!(got.display_name, "Engineering");
    assert_eq!(got.version, 1);
    let mut want = us.clone();
    want.sort();
    assert_eq!(s.group_members(&t.id, &g.id).await.unwrap(), want);
    // Same name in another case: 409 uniqueness; nothing written, nothing audited.
    let before = audit_count(s, &t.id).await;
    let err = s
        .create_group(
            &group(&t.id, "ENGINEERING"),
            &[],
            &[],
            gdraft(&t.id, Action::GroupCreated),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Error::Conflict {
            attribute: "displayName"
        }
    );
    assert_eq!(audit_count(s, &t.id).await, before);
    // Another tenant may use it, and cannot see ours.
    s.create_group(
        &group(&other.id, "engineering"),
        &[],
        &[],
        gdraft(&other.id, Action::GroupCreated),
    )
    .await
    .unwrap();
    assert!(s.get_group(&other.id, &g.id).await.unwrap().is_none());
    assert_eq!(
        s.find_group_by_name(&t.id, "engineERING")
            .await
            .unwrap()
            .unwrap()
            .id,
        g.id
    );
    // The user's groups.
    let of = s.groups_of_users(&t.id, &us[..1]).await.unwrap();
    assert_eq!(of.len(), 1);
    assert_eq!(of[0].1.id, g.id);
}

/// Each user's groups come back ordered by display name without letter case (the order
/// of the rendered `groups`).
#[tokio::test]
async fn groups_of_users_are_ordered_by_display_name_per_user() {
    let db = db_async().await;
    let s = &*db.store;
    let t = tenant(s, "acme").await;
    let us = users(s, &t.id, 2).await;
    let mut ids = std::collections::HashMap::new();
    for (name, members) in [("beta", &us[..1]), ("Alpha", &us[..]), ("gamma", &us[..1])] {
        let g = group(&t.id, name);
        s.create_group(&g, members, &[], gdraft(&t.id, Action::GroupCreated))
            .await
            .unwrap();
        ids.insert(name, g.id);
    }
    let of = s
        .groups_of_users(&t.id, &[us[1].clone(), us[0].clone()])
        .await
        .unwrap();
    let of_user = |u: &UserId| -> Vec<(&str, &GroupId)> {
        of.iter()
            .filter(|(m, _)| m == u)
            .map(|(_, g)| (g.display_name.as_str(), &g.id))
            .collect()
    };
    assert_eq!(
        of_user(&us[0]),
        vec![
            ("Alpha", &ids["Alpha"]),
            ("beta", &ids["beta"]),
            ("gamma", &ids["gamma"])
        ]
    );
    assert_eq!(of_user(&us[1]), vec![("Alpha", &ids["Alpha"])]);
    assert_eq!(of.len(), 4);
}

#[tokio::test]
async fn members_of_another_tenant_are_rejected_and_never_linked() {
    let db = db_async().await;
    let s = &*db.store;
    let t = tenant(s, "acme").await;
    let other = tenant(s, "other").await;
    let theirs = users(s, &other.id, 1).await;
    let ours = users(s, &t.id, 1).await;
    let g = group(&t.id, "G");
    let err = s
        .create_group(&g, &theirs, &[], gdraft(&t.id, Action::GroupCreated))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Invalid {
            field: "members",
            ..
        }
    ));
    assert!(s.get_group(&t.id, &g.id).await.unwrap().is_none());
    s.create_group(&g, &ours, &[], gdraft(&t.id, Action::GroupCreated))
        .await
        .unwrap();
    let err = s
        .update_group(
            &t.id,
            &g.id,
            None,
            None,
            &delta(&[theirs[0].clone()], &ours),
            &[],
            gdraft(&t.id, Action::GroupUpdated),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Invalid {
            field: "members",
            ..
        }
    ));
    // Atomic: the removal in the same change did not happen either.
    assert_eq!(s.group_members(&t.id, &g.id).await.unwrap(), ours);
    assert_eq!(s.get_group(&t.id, &g.id).await.unwrap().unwrap().version, 1);
}

#[tokio::test]
async fn deltas_add_and_remove_exactly_the_named_members() {
    let db = db_async().await;
    let s = &*db.store;
    let t = tenant(s, "acme").await;
    let us = users(s, &t.id, 4).await;
    let g = group(&t.id, "G");
    s.create_group(&g, &us[..3], &[], gdraft(&t.id, Action::GroupCreated))
        .await
        .unwrap();
    // Remove one, add one, re-add an existing one (no-op), remove a non-member (no-op).
    let g2 = s
        .update_group(
            &t.id,
            &g.id,
            None,
            None,
            &delta(&[us[3].clone(), us[1].clone()], &[us[0].clone()]),
            &[],
            gdraft(&t.id, Action::GroupUpdated),
        )
        .await
        .unwrap();
    assert_eq!(g2.version, 2);
    let mut want = vec![us[1].clone(), us[2].clone(), us[3].clone()];
    want.sort();
    assert_eq!(s.group_members(&t.id, &g.id).await.unwrap(), want);
    let ev = s
        .list_audit(
            &t.id,
            &AuditQuery {
                action: Some(Action::GroupUpdated),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ev[0].changes["members"]["added"], 1);
    assert_eq!(ev[0].changes["members"]["removed"], 1);
    // A change that changes nothing is not written.
    let g3 = s
        .update_group(
            &t.id,
            &g.id,
            None,
            None,
            &delta(&[us[1].clone()], &[us[0].clone()]),
            &[],
            gdraft(&t.id, Action::GroupUpdated),
        )
        .await
        .unwrap();
    assert_eq!(g3.version, 2);
    // Full replacement.
    let g4 = s
        .update_group(
            &t.id,
            &g.id,
            None,
            None,
            &MemberChange::Replace(vec![us[0].clone()]),
            &[],
            gdraft(&t.id, Action::GroupUpdated),
        )
        .await
        .unwrap();
    assert_eq!(g4.version, 3);
    assert_eq!(
        s.group_members(&t.id, &g.id).await.unwrap(),
        vec![us[0].clone()]
    );
    // Soft-deleted accounts are not listed as members.
    s.soft_delete_user(
        &t.id,
        &us[0],
        None,
        now(),
        now(),
        draft(&t.id, Action::UserDeleted),
    )
    .await
    .unwrap();
    assert!(s.group_members(&t.id, &g.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn rename_checks_version_and_uniqueness() {
    let db = db_async().await;
    let s = &*db.store;
    let t = tenant(s, "acme").await;
    let a = group(&t.id, "A");
    let b = group(&t.id, "B");
    for g in [&a, &b] {
        s.create_group(g, &[], &[], gdraft(&t.id, Action::GroupCreated))
            .await
            .unwrap();
    }
    let data = |n: &str| GroupData {
        display_name: n.into(),
        external_id: Some("ext".into()),
        doc: json!({"displayName": n, "externalId": "ext"}),
    };
    let err = s
        .update_group(
            &t.id,
            &a.id,
            Some(7),
            Some(&data("A2")),
            &MemberChange::none(),
            &[],
            gdraft(&t.id, Action::GroupUpdated),
        )
        .await
        .unwrap_err();
    assert_eq!(err, Error::VersionMismatch);
    let err = s
        .update_group(
            &t.id,
            &a.id,
            Some(1),
            Some(&data("b")),
            &MemberChange::none(),
            &[],
            gdraft(&t.id, Action::GroupUpdated),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Error::Conflict {
            attribute: "displayName"
        }
    );
    let r = s
        .update_group(
            &t.id,
            &a.id,
            Some(1),
            Some(&data("A2")),
            &MemberChange::none(),
            &[],
            gdraft(&t.id, Action::GroupUpdated),
        )
        .await
        .unwrap();
    assert_eq!((r.display_name.as_str(), r.version), ("A2", 2));
    assert_eq!(r.external_id.as_deref(), Some("ext"));
    // Filter by displayName (case-insensitive, like users).
    let q = ListQuery {
        filter: Some(Filter::Compare {
            attr: Attr {
                target: AttrTarget::DisplayName,
                kind: AttrKind::String,
                case_exact: false,
            },
            op: CompareOp::Eq,
            value: Scalar::String("a2".into()),
        }),
        ..Default::default()
    };
    let page = s.list_groups(&t.id, &q).await.unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.items[0].id, a.id);
    assert_eq!(
        s.list_groups(&t.id, &ListQuery::default())
            .await
            .unwrap()
            .total,
        2
    );
}

#[tokio::test]
async fn delete_keeps_the_accounts() {
    let db = db_async().await;
    let s = &*db.store;
    let t = tenant(s, "acme").await;
    let us = users(s, &t.id, 2).await;
    let g = group(&t.id, "G");
    s.create_group(&g, &us, &[], gdraft(&t.id, Action::GroupCreated))
        .await
        .unwrap();
    s.delete_group(&t.id, &g.id, Some(1), gdraft(&t.id, Action::GroupDeleted))
        .await
        .unwrap();
    assert!(s.get_group(&t.id, &g.id).await.unwrap().is_none());
    for u in &us {
        let u = s.get_user(&t.id, u).await.unwrap().unwrap();
        assert!(u.active && u.deleted_at.is_none());
    }
    assert!(s.groups_of_users(&t.id, &us).await.unwrap().is_empty());
    assert_eq!(
        s.delete_group(&t.id, &g.id, None, gdraft(&t.id, Action::GroupDeleted))
            .await
            .unwrap_err(),
        Error::NotFound("group")
    );
}

#[tokio::test]
async fn quota_is_the_largest_of_base_and_group_sizes() {
    let db = db_async().await;
    let s = &*db.store;
    let t = tenant(s, "acme").await; // base quota of its accounts: 50 GB
    let us = users(s, &t.id, 2).await;
    let (u, v) = (&us[0], &us[1]);
    let big = group(&t.id, "Big");
    let bigger = group(&t.id, "Bigger");
    for g in [&big, &bigger] {
        s.create_group(g, &[], &[], gdraft(&t.id, Action::GroupCreated))
            .await
            .unwrap();
    }
    s.set_group_size(
        &t.id,
        &big.id,
        Some(QuotaGb::new(200).unwrap()),
        gdraft(&t.id, Action::GroupSizeChanged),
    )
    .await
    .unwrap();
    s.set_group_size(
        &t.id,
        &bigger.id,
        Some(QuotaGb::new(500).unwrap()),
        gdraft(&t.id, Action::GroupSizeChanged),
    )
    .await
    .unwrap();
    // Join a sized group.
    s.update_group(
        &t.id,
        &big.id,
        None,
        None,
        &delta(&us, &[]),
        &[],
        gdraft(&t.id, Action::GroupUpdated),
    )
    .await
    .unwrap();
    assert_eq!(quota(s, &t.id, u).await, 200);
    assert_eq!(quota(s, &t.id, v).await, 200);
    // Two sized groups: the larger wins.
    s.update_group(
        &t.id,
        &bigger.id,
        None,
        None,
        &delta(std::slice::from_ref(u), &[]),
        &[],
        gdraft(&t.id, Action::GroupUpdated),
    )
    .await
    .unwrap();
    assert_eq!(quota(s, &t.id, u).await, 500);
    // Leave the larger: back to the other group's size.
    s.update_group(
        &t.id,
        &bigger.id,
        None,
        None,
        &delta(&[], std::slice::from_ref(u)),
        &[],
        gdraft(&t.id, Action::GroupUpdated),
    )
    .await
    .unwrap();
    assert_eq!(quota(s, &t.id, u).await, 200);
    // Leave the last sized group: back to the base quota.
    s.update_group(
        &t.id,
        &big.id,
        None,
        None,
        &delta(&[], std::slice::from_ref(v)),
        &[],
        gdraft(&t.id, Action::GroupUpdated),
    )
    .await
    .unwrap();
    assert_eq!(quota(s, &t.id, v).await, 50);
    // A size below the base never lowers the quota.
    s.set_group_size(
        &t.id,
        &big.id,
        Some(QuotaGb::new(5).unwrap()),
        gdraft(&t.id, Action::GroupSizeChanged),
    )
    .await
    .unwrap();
    assert_eq!(quota(s, &t.id, u).await, 50);
    s.set_group_size(
        &t.id,
        &big.id,
        Some(QuotaGb::new(300).unwrap()),
        gdraft(&t.id, Action::GroupSizeChanged),
    )
    .await
    .unwrap();
    assert_eq!(quota(s, &t.id, u).await, 300);
    // Group deleted: the quota falls back.
    s.delete_group(&t.id, &big.id, None, gdraft(&t.id, Action::GroupDeleted))
        .await
        .unwrap();
    assert_eq!(quota(s, &t.id, u).await, 50);
    // Every recompute that changed a quota was audited against the account.
    let ev = s
        .list_audit(
            &t.id,
            &AuditQuery {
                target_id: Some(u.to_string()),
                action: Some(Action::QuotaChanged),
                limit: 0,
            },
        )
        .await
        .unwrap();
    let afters: Vec<i64> = ev
        .iter()
        .rev()
        .map(|e| e.changes["quotaGb"]["after"].as_i64().unwrap())
        .collect();
    assert_eq!(afters, vec![200, 500, 200, 50, 300, 50]);
}

#[tokio::test]
async fn users_read_with_their_groups_agree_with_the_separate_reads() {
    let db = db_async().await;
    let s = &*db.store;
    let t = tenant(s, "acme").await;
    let other = tenant(s, "other").await;
    let us = users(s, &t.id, 3).await;
    let (g1, g2) = (group(&t.id, "Beta"), group(&t.id, "alpha"));
    s.create_group(&g1, &us[..2], &[], gdraft(&t.id, Action::GroupCreated))
        .await
        .unwrap();
    s.create_group(&g2, &us[..1], &[], gdraft(&t.id, Action::GroupCreated))
        .await
        .unwrap();

    // One user: the same record as get_user, its groups in display-name order.
    let (u, gs) = s
        .get_user_with_groups(&t.id, &us[0], true)
        .await
        .unwrap()
        .unwrap();
    let alone = s.get_user(&t.id, &us[0]).await.unwrap().unwrap();
    // The document comes as stored text, which parses to the same document.
    let u = u.parsed().unwrap();
    assert_eq!(format!("{u:?}"), format!("{alone:?}"));
    let ids: Vec<_> = gs.iter().map(|g| g.id.clone()).collect();
    assert_eq!(ids, [g2.id.clone(), g1.id.clone()]);
    let (_, none) = s
        .get_user_with_groups(&t.id, &us[0], false)
        .await
        .unwrap()
        .unwrap();
    assert!(none.is_empty());
    let (_, lonely) = s
        .get_user_with_groups(&t.id, &us[2], true)
        .await
        .unwrap()
        .unwrap();
    assert!(lonely.is_empty());
    // Another tenant's id, or a missing one: nothing.
    assert!(s
        .get_user_with_groups(&other.id, &us[0], true)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .get_user_with_groups(&t.id, &UserId::random(), true)
        .await
        .unwrap()
        .is_none());

    // A page: the same page as list_users, the same memberships as groups_of_users.
    let q = ListQuery {
        filter: None,
        sort: None,
        start_index: 1,
        count: 100,
        seek: None,
    };
    let (page, memberships) = s.list_users_with_groups(&t.id, &q, true).await.unwrap();
    let alone = s.list_users(&t.id, &q).await.unwrap();
    assert_eq!(page.total, alone.total);
    let parsed: Vec<_> = page
        .items
        .iter()
        .map(|u| u.clone().parsed().unwrap())
        .collect();
    assert_eq!(format!("{parsed:?}"), format!("{:?}", alone.items));
    let page_ids: Vec<_> = page.items.iter().map(|u| u.id.clone()).collect();
    let mut expected = s.groups_of_users(&t.id, &page_ids).await.unwrap();
    let mut got = memberships;
    let key = |m: &(UserId, cairn_core::group::GroupRef)| (m.0.clone(), m.1.id.clone());
    expected.sort_by_key(key);
    got.sort_by_key(key);
    assert_eq!(got.len(), 3);
    assert_eq!(
        got.iter().map(key).collect::<Vec<_>>(),
        expected.iter().map(key).collect::<Vec<_>>()
    );
    let (_, without) = s.list_users_with_groups(&t.id, &q, false).await.unwrap();
    assert!(without.is_empty());
}

/// One generated case of the quota rule: accounts with their base quotas, the tenant's
/// cap, and groups with a size (or none), members at creation, members after a full
/// replacement, a new size, and whether the group is deleted at the end.
#[derive(Debug, Clone)]
struct QuotaCase {
    bases: Vec<u32>,
    cap: Option<u32>,
    groups: Vec<GroupCase>,
}

#[derive(Debug, Clone)]
struct GroupCase {
    size: Option<u32>,
    resized: Option<u32>,
    first: Vec<bool>,
    then: Vec<bool>,
    deleted: bool,
}

fn gb() -> impl Strategy<Value = u32> {
    // Few values, so that ties and sizes below the base come up often.
    prop::sample::select(vec![1u32, 10, 50, 200, 1000])
}

fn quota_case() -> impl Strategy<Value = QuotaCase> {
    (1usize..=5).prop_flat_map(|n| {
        let group = (
            prop::option::of(gb()),
            prop::option::of(gb()),
            prop::collection::vec(any::<bool>(), n),
            prop::collection::vec(any::<bool>(), n),
            prop::bool::weighted(0.3),
        )
            .prop_map(|(size, resized, first, then, deleted)| GroupCase {
                size,
                resized,
                first,
                then,
                deleted,
            });
        (
            prop::collection::vec(gb(), n),
            prop::option::of(gb()),
            prop::collection::vec(group, 0..=4),
        )
            .prop_map(|(bases, cap, groups)| QuotaCase { bases, cap, groups })
    })
}

/// The groups as the test last set them: size, members, and whether still there.
struct Model {
    groups: Vec<(Option<u32>, Vec<bool>, bool)>,
}

impl Model {
    /// Every account's quota by the Rust rule.
    fn quotas(&self, bases: &[u32]) -> Vec<u32> {
        bases
            .iter()
            .enumerate()
            .map(|(a, base)| {
                let sizes = self
                    .groups
                    .iter()
                    .filter(|(_, members, live)| *live && members[a])
                    .filter_map(|(size, _, _)| *size);
                cairn_core::group::effective_quota(*base, sizes)
            })
            .collect()
    }
}

fn members_of(accounts: &[UserId], pick: &[bool]) -> Vec<UserId> {
    accounts
        .iter()
        .zip(pick)
        .filter(|(_, p)| **p)
        .map(|(u, _)| u.clone())
        .collect()
}

fn size_of(gb: Option<u32>) -> Option<QuotaGb> {
    gb.map(|g| QuotaGb::new(i64::from(g)).unwrap())
}

/// Runs one case through the store: after every step (creation with members, full
/// replacement, resizing, deletion) each account's stored quota must equal the Rust rule,
/// and its enforced quota the rule capped by the tenant's limit. Returns the first
/// disagreement.
async fn run_quota_case(s: &dyn Store, case: &QuotaCase) -> Result<(), String> {
    let mut t = tenant(s, "quota").await;
    if let Some(cap) = case.cap {
        let change = SettingsChange {
            max_account_size_gb: Some(size_of(Some(cap))),
            ..Default::default()
        };
        t = s.update_settings(&t.id, &change, vec![]).await.unwrap();
    }
    let mut accounts = Vec::new();
    for (i, base) in case.bases.iter().enumerate() {
        let name = format!("q{i}@x.io");
        let mut u = user(&t.id, &name, json!({ "userName": name }));
        u.quota_gb = size_of(Some(*base)).unwrap();
        s.create_user(&u, draft(&t.id, Action::UserCreated))
            .await
            .unwrap();
        accounts.push(u.id);
    }
    let mut model = Model { groups: Vec::new() };
    let check = |model: &Model, step: &'static str| {
        let want = model.quotas(&case.bases);
        let (t, accounts) = (&t, &accounts);
        async move {
            for (a, u) in accounts.iter().enumerate() {
                let got = s.get_user(&t.id, u).await.unwrap().unwrap().quota_gb;
                if got.get() != want[a] {
                    return Err(format!(
                        "after {step}: account {a} has {got}, the rule says {} GB",
                        want[a]
                    ));
                }
                let enforced = t.effective_quota(got).get();
                let capped = case.cap.map_or(want[a], |c| want[a].min(c));
                if enforced != capped {
                    return Err(format!(
                        "after {step}: account {a} is held to {enforced} GB, not {capped}"
                    ));
                }
            }
            Ok(())
        }
    };
    let mut ids = Vec::new();
    for (i, g) in case.groups.iter().enumerate() {
        let mut rec = group(&t.id, &format!("G{i}"));
        rec.size_gb = size_of(g.size);
        s.create_group(
            &rec,
            &members_of(&accounts, &g.first),
            &[],
            gdraft(&t.id, Action::GroupCreated),
        )
        .await
        .unwrap();
        ids.push(rec.id);
        model.groups.push((g.size, g.first.clone(), true));
    }
    check(&model, "creation").await?;
    for (i, g) in case.groups.iter().enumerate() {
        let change = MemberChange::Replace(members_of(&accounts, &g.then));
        s.update_group(
            &t.id,
            &ids[i],
            None,
            None,
            &change,
            &[],
            gdraft(&t.id, Action::GroupUpdated),
        )
        .await
        .unwrap();
        model.groups[i].1 = g.then.clone();
    }
    check(&model, "replacement").await?;
    for (i, g) in case.groups.iter().enumerate() {
        s.set_group_size(
            &t.id,
            &ids[i],
            size_of(g.resized),
            gdraft(&t.id, Action::GroupSizeChanged),
        )
        .await
        .unwrap();
        model.groups[i].0 = g.resized;
    }
    check(&model, "resizing").await?;
    for (i, g) in case.groups.iter().enumerate() {
        if g.deleted {
            s.delete_group(&t.id, &ids[i], None, gdraft(&t.id, Action::GroupDeleted))
                .await
                .unwrap();
            model.groups[i].2 = false;
        }
    }
    check(&model, "deletion").await
}

/// One database for all generated cases; each case has a tenant of its own.
fn quota_db() -> &'static (tokio::runtime::Runtime, Db) {
    static DB: std::sync::OnceLock<(tokio::runtime::Runtime, Db)> = std::sync::OnceLock::new();
    DB.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let db = rt.block_on(db_async());
        (rt, db)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]
    /// The store's quota recompute (in SQL on PostgreSQL, for speed) agrees with
    /// `cairn_core::group::effective_quota` on generated accounts, groups and caps.
    #[test]
    fn stored_quotas_follow_the_rust_rule(case in quota_case()) {
        let (rt, db) = quota_db();
        let r = rt.block_on(run_quota_case(&*db.store, &case));
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
    }
}

/// Makes the database refuse a member `display` of "boom" (a trigger), so that the write
/// of displays fails in the middle of a group change.
async fn refuse_display_boom(db: &Db) {
    match &db.pg_url {
        Some(url) => {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client
                .batch_execute(
                    "CREATE FUNCTION refuse_boom() RETURNS trigger AS $$
                     BEGIN
                       IF NEW.display = 'boom' THEN RAISE EXCEPTION 'boom'; END IF;
                       RETURN NEW;
                     END $$ LANGUAGE plpgsql;
                     CREATE TRIGGER refuse_boom BEFORE INSERT OR UPDATE ON group_members
                       FOR EACH ROW EXECUTE FUNCTION refuse_boom();",
                )
                .await
                .unwrap();
        }
        None => {
            let c = rusqlite::Connection::open(db.dir().join("cairn.db")).unwrap();
            c.execute_batch(
                "CREATE TRIGGER refuse_boom_insert BEFORE INSERT ON group_members
                   WHEN NEW.display = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END;
                 CREATE TRIGGER refuse_boom_update BEFORE UPDATE ON group_members
                   WHEN NEW.display = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END;",
            )
            .unwrap();
        }
    }
}

/// A member's `display` is written in the membership change's transaction: kept with it,
/// and when the display cannot be written, the membership does not change either.
#[tokio::test]
async fn member_displays_are_atomic_with_the_membership_change() {
    let db = db_async().await;
    let s = &*db.store;
    let t = tenant(s, "acme").await;
    let us = users(s, &t.id, 3).await;
    let g = group(&t.id, "Engineering");
    s.create_group(
        &g,
        &us[..1],
        &[
            (us[0].clone(), "Ann".into()),
            // Not a member: skipped.
            (us[2].clone(), "Cy".into()),
        ],
        gdraft(&t.id, Action::GroupCreated),
    )
    .await
    .unwrap();
    let shown = s.member_displays(&t.id, &g.id).await.unwrap();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[&us[0]], "Ann");

    // A new display for a member that stays: recorded although nothing else changed.
    let same = s
        .update_group(
            &t.id,
            &g.id,
            None,
            None,
            &delta(&[], &[]),
            &[(us[0].clone(), "Ann B.".into())],
            gdraft(&t.id, Action::GroupUpdated),
        )
        .await
        .unwrap();
    assert_eq!(same.version, 1);
    assert_eq!(
        s.member_displays(&t.id, &g.id).await.unwrap()[&us[0]],
        "Ann B."
    );

    refuse_display_boom(&db).await;
    // The display of the member being added fails: the member is not added.
    let err = s
        .update_group(
            &t.id,
            &g.id,
            None,
            None,
            &delta(&us[1..2], &[]),
            &[(us[1].clone(), "boom".into())],
            gdraft(&t.id, Action::GroupUpdated),
        )
        .await;
    assert!(err.is_err(), "{err:?}");
    assert_eq!(
        s.group_members(&t.id, &g.id).await.unwrap(),
        us[..1].to_vec()
    );
    let after = s.get_group(&t.id, &g.id).await.unwrap().unwrap();
    assert_eq!(after.version, 1);
    // Nor is a group created with such a display.
    let g2 = group(&t.id, "Sales");
    let err = s
        .create_group(
            &g2,
            &us[1..2],
            &[(us[1].clone(), "boom".into())],
            gdraft(&t.id, Action::GroupCreated),
        )
        .await;
    assert!(err.is_err(), "{err:?}");
    assert!(s.get_group(&t.id, &g2.id).await.unwrap().is_none());
    assert!(s
        .groups_of_users(&t.id, &us[1..2])
        .await
        .unwrap()
        .is_empty());
    // The membership and its display still go together when both can be written.
    s.update_group(
        &t.id,
        &g.id,
        None,
        None,
        &delta(&us[1..2], &[]),
        &[(us[1].clone(), "Bo".into())],
        gdraft(&t.id, Action::GroupUpdated),
    )
    .await
    .unwrap();
    let shown = s.member_displays(&t.id, &g.id).await.unwrap();
    assert_eq!(shown[&us[1]], "Bo");
    assert_eq!(s.group_members(&t.id, &g.id).await.unwrap().len(), 2);
}
