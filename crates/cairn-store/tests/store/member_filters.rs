//! `Filter::Member` on groups (`members[value eq "…"]`, `members.value eq "…"`,
//! `members pr`): pushed down to the `group_members` relation, live members only, one
//! tenant's groups only.

use crate::support::*;
use cairn_core::audit::Action;
use cairn_core::group::GroupRecord;
use cairn_core::ids::{GroupId, TenantId, UserId};
use cairn_core::query::{Attr, AttrKind, AttrTarget, CompareOp, Filter, ListQuery, Scalar};
use cairn_core::store::*;
use serde_json::json;
use time::Duration;

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

fn member_value() -> Attr {
    Attr {
        target: AttrTarget::Value,
        kind: AttrKind::String,
        case_exact: true,
    }
}

fn member_is(id: &UserId) -> Filter {
    Filter::Member(Box::new(Filter::Compare {
        attr: member_value(),
        op: CompareOp::Eq,
        value: Scalar::String(id.to_string()),
    }))
}

async fn names(s: &dyn Store, t: &TenantId, f: Filter) -> Vec<String> {
    let q = ListQuery {
        filter: Some(f),
        ..ListQuery::default()
    };
    let page = s.list_groups(t, &q).await.unwrap();
    let mut v: Vec<String> = page.items.into_iter().map(|g| g.display_name).collect();
    v.sort();
    assert_eq!(page.total, v.len() as u64);
    v
}

#[tokio::test]
async fn groups_of_a_member_come_from_the_relation() {
    let db = db_async().await;
    let s = &*db.store;
    let t = tenant(s, "acme").await;
    let other = tenant(s, "other").await;
    let mut ids = Vec::new();
    for n in ["a", "b", "c"] {
        let u = user(&t.id, n, json!({"userName": n}));
        s.create_user(&u, draft(&t.id, Action::UserCreated))
            .await
            .unwrap();
        ids.push(u.id);
    }
    let (a, b, c) = (&ids[0], &ids[1], &ids[2]);
    for (name, members) in [
        ("both", vec![a.clone(), b.clone()]),
        ("only b", vec![b.clone()]),
        ("empty", vec![]),
    ] {
        let mut d = draft(&t.id, Action::GroupCreated);
        d.target_type = "group";
        s.create_group(&group(&t.id, name), &members, &[], d)
            .await
            .unwrap();
    }
    let x = user(&other.id, "x", json!({"userName": "x"}));
    s.create_user(&x, draft(&other.id, Action::UserCreated))
        .await
        .unwrap();
    let mut d = draft(&other.id, Action::GroupCreated);
    d.target_type = "group";
    s.create_group(
        &group(&other.id, "theirs"),
        std::slice::from_ref(&x.id),
        &[],
        d,
    )
    .await
    .unwrap();

    assert_eq!(names(s, &t.id, member_is(a)).await, ["both"]);
    assert_eq!(names(s, &t.id, member_is(b)).await, ["both", "only b"]);
    assert!(names(s, &t.id, member_is(c)).await.is_empty());
    // Another tenant's member names none of our groups, and theirs stay theirs.
    assert!(names(s, &t.id, member_is(&x.id)).await.is_empty());
    assert_eq!(names(s, &other.id, member_is(&x.id)).await, ["theirs"]);
    let has_members = Filter::Member(Box::new(Filter::Present(member_value())));
    assert_eq!(
        names(s, &t.id, has_members.clone()).await,
        ["both", "only b"]
    );
    assert_eq!(
        names(s, &t.id, Filter::Not(Box::new(has_members.clone()))).await,
        ["empty"]
    );
    let a_or_c = Filter::Member(Box::new(Filter::Or(
        Box::new(member_is_inner(a)),
        Box::new(member_is_inner(c)),
    )));
    assert_eq!(names(s, &t.id, a_or_c).await, ["both"]);
    let starts = Filter::Member(Box::new(Filter::Compare {
        attr: member_value(),
        op: CompareOp::Sw,
        value: Scalar::String(b.to_string()[..20].to_owned()),
    }));
    assert!(names(s, &t.id, starts).await.contains(&"only b".to_owned()));

    // A soft-deleted account is no longer a member.
    s.soft_delete_user(
        &t.id,
        b,
        None,
        now(),
        now() + Duration::days(30),
        draft(&t.id, Action::UserDeleted),
    )
    .await
    .unwrap();
    assert!(names(s, &t.id, member_is(b)).await.is_empty());
    assert_eq!(names(s, &t.id, has_members).await, ["both"]);
}

fn member_is_inner(id: &UserId) -> Filter {
    Filter::Compare {
        attr: member_value(),
        op: CompareOp::Eq,
        value: Scalar::String(id.to_string()),
    }
}
