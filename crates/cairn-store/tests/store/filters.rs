//! Filter push-down: SQL results must equal a straightforward in-memory evaluation of the
//! same filter, for hand-picked and for generated filters.

use crate::support::*;
use cairn_core::audit::Action;
use cairn_core::ids::fold_case;
use cairn_core::query::{
    Attr, AttrKind, AttrTarget, CompareOp, Filter, ListQuery, Scalar, SortKey,
};
use cairn_core::user::UserRecord;
use proptest::prelude::*;
use serde_json::{json, Value};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn sample_docs() -> Vec<Value> {
    vec![
        json!({"userName": "alice@example.com", "displayName": "Alice Ä", "active": true, "externalId": "E1",
               "name": {"givenName": "Alice", "familyName": "Zed"},
               "emails": [{"value": "Alice@Example.com", "type": "work", "primary": true}, {"value": "a@home.net", "type": "home"}],
               ENT: {"employeeNumber": "100", "department": "R&D"}}),
        json!({"userName": "BOB@example.com", "displayName": "bob", "active": false, "externalId": "e1",
               "name": {"givenName": "Bob"},
               "emails": [{"value": "bob@work.org", "type": "work"}]}),
        json!({"userName": "carol%_@x.io", "active": true, "title": "",
               "emails": [{"value": "carol@x.io", "type": "home"}], ENT: {"employeeNumber": "7"}}),
        json!({"userName": "ÄRNI@x.io", "displayName": "ärni", "active": true,
               "name": {"givenName": "Ärni", "familyName": "Zed"}}),
    ]
}

async fn seeded() -> (Db, cairn_core::tenant::Tenant, Vec<UserRecord>) {
    let db = db_async().await;
    let t = tenant(&*db.store, "acme").await;
    let other = tenant(&*db.store, "other").await;
    let mut users = Vec::new();
    for d in sample_docs() {
        let name = d["userName"].as_str().unwrap().to_owned();
        let u = user(&t.id, &name, d.clone());
        db.store
            .create_user(&u, draft(&t.id, Action::UserCreated))
            .await
            .unwrap();
        // The same people in another tenant must never show up.
        let o = user(&other.id, &name, d);
        db.store
            .create_user(&o, draft(&other.id, Action::UserCreated))
            .await
            .unwrap();
        users.push(u);
    }
    (db, t, users)
}

fn s(v: &str) -> Scalar {
    Scalar::String(v.into())
}
fn attr(target: AttrTarget, kind: AttrKind, case_exact: bool) -> Attr {
    Attr {
        target,
        kind,
        case_exact,
    }
}
fn json_attr(path: &[&str], case_exact: bool) -> Attr {
    attr(
        AttrTarget::Json(path.iter().map(|s| s.to_string()).collect()),
        AttrKind::String,
        case_exact,
    )
}
fn cmp(a: Attr, op: CompareOp, v: Scalar) -> Filter {
    Filter::Compare {
        attr: a,
        op,
        value: v,
    }
}
fn user_name() -> Attr {
    attr(AttrTarget::UserName, AttrKind::String, false)
}

async fn names(db: &Db, t: &cairn_core::tenant::Tenant, f: Filter) -> Vec<String> {
    let q = ListQuery {
        filter: Some(f),
        ..Default::default()
    };
    let page = db.store.list_users(&t.id, &q).await.unwrap();
    assert_eq!(page.total as usize, page.items.len());
    page.items
        .into_iter()
        .map(|u| u.user_name.to_string())
        .collect()
}

/// SQL injection through a filter: values and attribute paths full of SQL syntax are data
/// (bound parameters), never SQL — nothing matches that should not, nothing breaks, the
/// other tenant stays invisible, and the table is still there afterwards.
#[tokio::test]
async fn sql_in_filter_values_and_paths_is_data() {
    let (db, t, _) = seeded().await;
    let hostile = [
        "' OR '1'='1",
        "x'); DROP TABLE users; --",
        "\" OR 1=1 --",
        "'",
        "\\",
        "%' OR 1=1 OR '%",
        "alice@example.com' --",
        "$.userName",
    ];
    for v in hostile {
        for op in [CompareOp::Eq, CompareOp::Co, CompareOp::Sw, CompareOp::Ew] {
            assert!(
                names(&db, &t, cmp(user_name(), op, s(v))).await.is_empty(),
                "{op:?} {v}"
            );
            let path = json_attr(&["name", v], false);
            assert!(
                names(&db, &t, cmp(path, op, s(v))).await.is_empty(),
                "path {v}"
            );
        }
        assert_eq!(
            names(&db, &t, cmp(user_name(), CompareOp::Ne, s(v)))
                .await
                .len(),
            4,
            "ne {v}"
        );
        let path = json_attr(&[v], false);
        assert!(
            names(&db, &t, Filter::Present(path)).await.is_empty(),
            "pr {v}"
        );
    }
    let all = names(&db, &t, Filter::Present(user_name())).await;
    assert_eq!(all.len(), 4, "{all:?}");
}

#[tokio::test]
async fn hand_picked_filters() {
    let (db, t, _) = seeded().await;
    assert_eq!(
        names(
            &db,
            &t,
            cmp(user_name(), CompareOp::Eq, s("ALICE@example.COM"))
        )
        .await,
        ["alice@example.com"]
    );
    assert_eq!(
        names(&db, &t, cmp(user_name(), CompareOp::Eq, s("ärni@X.IO"))).await,
        ["ÄRNI@x.io"]
    );
    // LIKE wildcards in values are plain characters.
    assert_eq!(
        names(&db, &t, cmp(user_name(), CompareOp::Co, s("%_"))).await,
        ["carol%_@x.io"]
    );
    assert_eq!(
        names(&db, &t, cmp(user_name(), CompareOp::Sw, s("bob"))).await,
        ["BOB@example.com"]
    );
    assert_eq!(
        names(&db, &t, cmp(user_name(), CompareOp::Ew, s("@X.IO"))).await,
        ["carol%_@x.io", "ÄRNI@x.io"]
    );
    let ext = attr(AttrTarget::ExternalId, AttrKind::String, true);
    assert_eq!(
        names(&db, &t, cmp(ext, CompareOp::Eq, s("e1"))).await,
        ["BOB@example.com"]
    );
    let active = attr(AttrTarget::Active, AttrKind::Boolean, false);
    assert_eq!(
        names(&db, &t, cmp(active, CompareOp::Eq, Scalar::Bool(false))).await,
        ["BOB@example.com"]
    );
    // Entra: emails[type eq "work"].value eq "…"
    let work = Filter::Any {
        path: vec!["emails".into()],
        filter: Box::new(Filter::And(
            Box::new(cmp(json_attr(&["type"], false), CompareOp::Eq, s("work"))),
            Box::new(cmp(
                json_attr(&["value"], false),
                CompareOp::Eq,
                s("alice@EXAMPLE.com"),
            )),
        )),
    };
    assert_eq!(names(&db, &t, work).await, ["alice@example.com"]);
    // The home address of alice is not a work address.
    let not_work = Filter::Any {
        path: vec!["emails".into()],
        filter: Box::new(Filter::And(
            Box::new(cmp(json_attr(&["type"], false), CompareOp::Eq, s("work"))),
            Box::new(cmp(
                json_attr(&["value"], false),
                CompareOp::Eq,
                s("a@home.net"),
            )),
        )),
    };
    assert!(names(&db, &t, not_work).await.is_empty());
    let ent = cmp(
        json_attr(&[ENT, "employeeNumber"], true),
        CompareOp::Eq,
        s("7"),
    );
    assert_eq!(names(&db, &t, ent).await, ["carol%_@x.io"]);
    let given_pr = Filter::Present(json_attr(&["name", "givenName"], false));
    assert_eq!(
        names(&db, &t, Filter::Not(Box::new(given_pr))).await,
        ["carol%_@x.io"]
    );
    // An empty string is not "present".
    assert!(
        names(&db, &t, Filter::Present(json_attr(&["title"], false)))
            .await
            .is_empty()
    );
    assert_eq!(
        names(&db, &t, Filter::Present(json_attr(&["emails"], false)))
            .await
            .len(),
        3
    );
}

#[tokio::test]
async fn sorting_and_paging_are_stable() {
    let (db, t, _) = seeded().await;
    let sort = SortKey {
        attr: json_attr(&["name", "familyName"], false),
        descending: false,
    };
    let q = ListQuery {
        sort: Some(sort.clone()),
        ..Default::default()
    };
    let all: Vec<String> = db
        .store
        .list_users(&t.id, &q)
        .await
        .unwrap()
        .items
        .iter()
        .map(|u| u.user_name.to_string())
        .collect();
    // Ties keep creation order; users without a family name sort last.
    assert_eq!(
        all,
        [
            "alice@example.com",
            "ÄRNI@x.io",
            "BOB@example.com",
            "carol%_@x.io"
        ]
    );
    let mut paged = Vec::new();
    for start in 1..=4 {
        let q = ListQuery {
            sort: Some(sort.clone()),
            start_index: start,
            count: 1,
            ..Default::default()
        };
        let p = db.store.list_users(&t.id, &q).await.unwrap();
        assert_eq!(p.total, 4);
        paged.extend(p.items.iter().map(|u| u.user_name.to_string()));
    }
    assert_eq!(paged, all);
    let q = ListQuery {
        sort: Some(SortKey {
            attr: user_name(),
            descending: true,
        }),
        ..Default::default()
    };
    let desc: Vec<String> = db
        .store
        .list_users(&t.id, &q)
        .await
        .unwrap()
        .items
        .iter()
        .map(|u| u.user_name.to_string())
        .collect();
    assert_eq!(
        desc,
        [
            "ÄRNI@x.io",
            "carol%_@x.io",
            "BOB@example.com",
            "alice@example.com"
        ]
    );
    let q = ListQuery {
        count: 0,
        ..Default::default()
    };
    let p = db.store.list_users(&t.id, &q).await.unwrap();
    assert_eq!((p.total, p.items.len()), (4, 0));
    let q = ListQuery {
        start_index: 99,
        ..Default::default()
    };
    assert_eq!(db.store.list_users(&t.id, &q).await.unwrap().items.len(), 0);
}

/// Every window of every ordering returns the matching slice of the whole list, and the
/// true total: whether the total comes from a page that ends the result or from a count,
/// and whether a later page is read directly or through its row ids.
#[tokio::test]
async fn every_page_is_a_slice_of_the_whole_with_the_true_total() {
    let (db, t, _) = seeded().await;
    let active = Filter::Compare {
        attr: attr(AttrTarget::Active, AttrKind::Boolean, false),
        op: CompareOp::Eq,
        value: Scalar::Bool(true),
    };
    let orders = [
        None,
        Some(SortKey {
            attr: user_name(),
            descending: true,
        }),
        Some(SortKey {
            attr: json_attr(&["name", "familyName"], false),
            descending: false,
        }),
    ];
    for filter in [None, Some(active)] {
        for sort in &orders {
            let whole = ListQuery {
                filter: filter.clone(),
                sort: sort.clone(),
                ..Default::default()
            };
            let all: Vec<String> = db
                .store
                .list_users(&t.id, &whole)
                .await
                .unwrap()
                .items
                .iter()
                .map(|u| u.id.to_string())
                .collect();
            assert_eq!(all.len(), if filter.is_some() { 3 } else { 4 });
            for start in 1..=6u64 {
                for count in 0..=5u64 {
                    let q = ListQuery {
                        start_index: start,
                        count,
                        ..whole.clone()
                    };
                    let p = db.store.list_users(&t.id, &q).await.unwrap();
                    let want: Vec<&String> = all
                        .iter()
                        .skip(start as usize - 1)
                        .take(count as usize)
                        .collect();
                    let got: Vec<String> = p.items.iter().map(|u| u.id.to_string()).collect();
                    let got: Vec<&String> = got.iter().collect();
                    let case =
                        format!("filter {filter:?} sort {sort:?} start {start} count {count}");
                    assert_eq!(got, want, "{case}");
                    assert_eq!(p.total, all.len() as u64, "{case}");
                }
            }
        }
    }
}

/// Paging through a tenant's accounts while they change: every page of the plain listing
/// (insertion order, no filter: the path Okta's and Entra's imports take, served from a
/// kept count and remembered page starts on SQLite) equals the same page computed the long
/// way (a filter that matches every account: `COUNT(*)` and `OFFSET`), with the same
/// total, after creates, soft deletes before the current position, restores and updates.
#[tokio::test]
async fn pages_stay_exact_while_accounts_change_between_them() {
    use cairn_core::ids::UserName;
    let db = db_async().await;
    let t = tenant(&*db.store, "paging").await;
    let other = tenant(&*db.store, "other").await;
    let mut users = Vec::new();
    for i in 0..9 {
        let u = user(
            &t.id,
            &format!("p{i}@x.io"),
            json!({"userName": format!("p{i}@x.io")}),
        );
        db.store
            .create_user(&u, draft(&t.id, Action::UserCreated))
            .await
            .unwrap();
        users.push(u);
        let o = user(&other.id, &format!("p{i}@x.io"), json!({}));
        db.store
            .create_user(&o, draft(&other.id, Action::UserCreated))
            .await
            .unwrap();
    }
    let everyone = Filter::Present(user_name());
    let check = |start: u64, count: u64| {
        let store = db.store.clone();
        let t = t.id.clone();
        let everyone = everyone.clone();
        async move {
            let plain = ListQuery {
                start_index: start,
                count,
                ..Default::default()
            };
            let long_way = ListQuery {
                filter: Some(everyone),
                ..plain.clone()
            };
            let a = store.list_users(&t, &plain).await.unwrap();
            let b = store.list_users(&t, &long_way).await.unwrap();
            let names = |p: &cairn_core::query::Page<UserRecord>| {
                p.items
                    .iter()
                    .map(|u| u.user_name.to_string())
                    .collect::<Vec<_>>()
            };
            assert_eq!(names(&a), names(&b), "start {start} count {count}");
            assert_eq!(a.total, b.total, "start {start} count {count}");
            a.total
        }
    };
    // Page through once (each page teaches where the next starts), then again: the same.
    for round in 0..2 {
        for start in [1, 3, 5, 7, 9, 11] {
            assert_eq!(check(start, 2).await, 9, "round {round}");
        }
    }
    // An account before the pages read disappears: every later page shifts by one.
    db.store
        .soft_delete_user(
            &t.id,
            &users[1].id,
            None,
            now(),
            now() + time::Duration::days(30),
            draft(&t.id, Action::UserDeleted),
        )
        .await
        .unwrap();
    for start in [5, 3, 7, 1, 9] {
        assert_eq!(check(start, 2).await, 8);
    }
    // It comes back at its old place; a new account is added at the end.
    db.store
        .restore_user(
            &t.id,
            &UserName::parse("p1@x.io").unwrap(),
            now(),
            draft(&t.id, Action::UserRestored),
        )
        .await
        .unwrap();
    let late = user(&t.id, "p9@x.io", json!({}));
    db.store
        .create_user(&late, draft(&t.id, Action::UserCreated))
        .await
        .unwrap();
    for start in [9, 7, 5, 3, 1, 11] {
        assert_eq!(check(start, 2).await, 10);
    }
    // An update moves nothing, and pages stay exact after it.
    let mut d = data_of(&users[4]);
    d.active = false;
    db.store
        .update_user(
            &t.id,
            &users[4].id,
            1,
            &d,
            now(),
            draft(&t.id, Action::UserUpdated),
        )
        .await
        .unwrap();
    for start in [1, 3, 5, 7, 9, 10] {
        assert_eq!(check(start, 3).await, 10);
    }
}

/// The live count a plain listing reports stays exact when creates, soft deletes and a
/// purge race from many connections (on PostgreSQL each backend keeps its own shard of the
/// tenant's count), and it agrees with counting the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_live_count_stays_exact_under_concurrent_changes() {
    let db = db_async().await;
    let t = tenant(&*db.store, "race").await;
    let other = tenant(&*db.store, "bystander").await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = db.store.clone();
        let (tid, oid) = (t.id.clone(), other.id.clone());
        tasks.push(tokio::spawn(async move {
            let name = format!("r{i}@x.io");
            let u = user(&tid, &name, json!({ "userName": name }));
            store
                .create_user(&u, draft(&tid, Action::UserCreated))
                .await
                .unwrap();
            let o = user(&oid, &name, json!({ "userName": name }));
            store
                .create_user(&o, draft(&oid, Action::UserCreated))
                .await
                .unwrap();
            if i % 3 == 0 {
                store
                    .soft_delete_user(
                        &tid,
                        &u.id,
                        None,
                        now(),
                        now() - time::Duration::seconds(1),
                        draft(&tid, Action::UserDeleted),
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let counted = |store: std::sync::Arc<dyn cairn_core::store::Store>, tid| async move {
        let plain = store.list_users(&tid, &ListQuery::default()).await.unwrap();
        let long_way = ListQuery {
            filter: Some(Filter::Present(user_name())),
            ..Default::default()
        };
        let rows = store.list_users(&tid, &long_way).await.unwrap().total;
        (plain.total, plain.items.len() as u64, rows)
    };
    // 40 created, 14 of them (i = 0, 3, … 39) soft-deleted.
    assert_eq!(counted(db.store.clone(), t.id.clone()).await, (26, 26, 26));
    assert_eq!(
        counted(db.store.clone(), other.id.clone()).await,
        (40, 40, 40)
    );
    // Purging the soft-deleted (their purge time has passed) leaves the count alone.
    let purged = purge(&*db.store, now()).await;
    assert_eq!(purged.len(), 14);
    assert_eq!(counted(db.store.clone(), t.id.clone()).await, (26, 26, 26));
}

// --- a reference evaluator for generated filters -----------------------------------------

fn lookup<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(k))
}

fn leaf_value(u: &UserRecord, scope: &Value, a: &Attr) -> Option<Value> {
    match &a.target {
        AttrTarget::UserName => Some(json!(u.user_name.as_str())),
        AttrTarget::ExternalId => u.external_id.clone().map(Value::from),
        AttrTarget::DisplayName => u.display_name.clone().map(Value::from),
        AttrTarget::Active => Some(json!(u.active)),
        AttrTarget::Json(p) => lookup(scope, p).cloned().filter(|v| !v.is_null()),
        _ => unreachable!("not generated"),
    }
}

fn eval(u: &UserRecord, scope: &Value, f: &Filter) -> bool {
    match f {
        Filter::And(a, b) => eval(u, scope, a) && eval(u, scope, b),
        Filter::Or(a, b) => eval(u, scope, a) || eval(u, scope, b),
        Filter::Not(a) => !eval(u, scope, a),
        Filter::Present(a) => match leaf_value(u, scope, a) {
            None => false,
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Array(v)) => !v.is_empty(),
            Some(_) => true,
        },
        Filter::Any { path, filter } => match lookup(scope, path) {
            Some(Value::Array(items)) => items.iter().any(|e| eval(u, e, filter)),
            _ => false,
        },
        Filter::Member(_) => unreachable!("groups only, not generated"),
        Filter::Compare { attr, op, value } => {
            let v = leaf_value(u, scope, attr);
            match (v, value) {
                (Some(Value::Bool(b)), Scalar::Bool(x)) => match op {
                    CompareOp::Eq => b == *x,
                    CompareOp::Ne => b != *x,
                    _ => false,
                },
                (Some(Value::String(have)), Scalar::String(want)) => {
                    let (h, w) = if attr.case_exact {
                        (have.clone(), want.clone())
                    } else {
                        (fold_case(&have), fold_case(want))
                    };
                    match op {
                        CompareOp::Eq => h == w,
                        CompareOp::Ne => h != w,
                        CompareOp::Co => h.contains(&w),
                        CompareOp::Sw => h.starts_with(&w),
                        CompareOp::Ew => h.ends_with(&w),
                        CompareOp::Gt => h > w,
                        CompareOp::Ge => h >= w,
                        CompareOp::Lt => h < w,
                        CompareOp::Le => h <= w,
                    }
                }
                (None, _) => matches!(op, CompareOp::Ne),
                _ => matches!(op, CompareOp::Ne),
            }
        }
    }
}

fn string_attr() -> impl Strategy<Value = Attr> {
    prop_oneof![
        Just(user_name()),
        Just(attr(AttrTarget::ExternalId, AttrKind::String, true)),
        Just(attr(AttrTarget::DisplayName, AttrKind::String, false)),
        Just(json_attr(&["name", "givenName"], false)),
        Just(json_attr(&["name", "familyName"], false)),
        Just(json_attr(&[ENT, "employeeNumber"], true)),
        Just(json_attr(&["title"], false)),
    ]
}

fn needle() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("Z".to_string()),
        Just("@x.io".to_string()),
        Just("alice".to_string()),
        Just("e1".to_string()),
        Just("E1".to_string()),
        Just("ä".to_string()),
        Just("%".to_string()),
        Just("7".to_string()),
        Just("bob@example.com".to_string()),
        Just(String::new()),
    ]
}

fn op() -> impl Strategy<Value = CompareOp> {
    prop_oneof![
        Just(CompareOp::Eq),
        Just(CompareOp::Ne),
        Just(CompareOp::Co),
        Just(CompareOp::Sw),
        Just(CompareOp::Ew),
        Just(CompareOp::Gt),
        Just(CompareOp::Ge),
        Just(CompareOp::Lt),
        Just(CompareOp::Le),
    ]
}

fn element_filter() -> impl Strategy<Value = Filter> {
    (
        prop_oneof![Just("type"), Just("value")],
        op(),
        prop_oneof![Just("work"), Just("home"), Just("bob@work.org"), Just("a")],
    )
        .prop_map(|(k, op, v)| cmp(json_attr(&[k], false), op, s(v)))
}

fn filter_strategy() -> impl Strategy<Value = Filter> {
    let leaf = prop_oneof![
        (string_attr(), op(), needle()).prop_map(|(a, op, v)| cmp(a, op, s(&v))),
        any::<bool>().prop_map(|b| cmp(
            attr(AttrTarget::Active, AttrKind::Boolean, false),
            CompareOp::Eq,
            Scalar::Bool(b)
        )),
        string_attr().prop_map(Filter::Present),
        element_filter().prop_map(|f| Filter::Any {
            path: vec!["emails".into()],
            filter: Box::new(f)
        }),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Filter::Not(Box::new(a))),
        ]
    })
}

/// One seeded database shared by all generated cases (the data never changes), owned by
/// the test so that it is dropped (on PostgreSQL: the database too) when the test ends.
#[test]
fn sql_agrees_with_the_reference_evaluator() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (db, tenant, users) = rt.block_on(seeded());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    });
    let outcome = runner.run(&filter_strategy(), |f| {
        let mut want: Vec<String> = users
            .iter()
            .filter(|u| eval(u, &u.doc, &f))
            .map(|u| u.user_name.to_string())
            .collect();
        let mut got = rt.block_on(names(&db, &tenant, f.clone()));
        want.sort();
        got.sort();
        prop_assert_eq!(got, want, "filter {:?}", f);
        Ok(())
    });
    rt.block_on(async move { drop(db) });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}
