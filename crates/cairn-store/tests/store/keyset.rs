//! Keyset pages (`ListQuery::seek`, behind RFC 9865 cursors): walking forwards and
//! backwards by position yields the same rows, in the same order, as one page of the
//! whole list, sorted or not, NULLs last; only the tenant's own rows.

use crate::support::*;
use cairn_core::audit::Action;
use cairn_core::ids::fold_case;
use cairn_core::query::{Attr, AttrKind, AttrTarget, Keyset, ListQuery, Scalar, Seek, SortKey};
use cairn_core::store::*;
use cairn_core::user::UserRecord;
use serde_json::json;

fn display_sort(descending: bool) -> SortKey {
    SortKey {
        attr: Attr {
            target: AttrTarget::DisplayName,
            kind: AttrKind::String,
            case_exact: false,
        },
        descending,
    }
}

fn pos(sort: Option<&SortKey>, u: &UserRecord<impl Sized>) -> Keyset {
    Keyset {
        key: match (sort, &u.display_name) {
            (Some(_), Some(d)) => Scalar::String(fold_case(d)),
            _ => Scalar::Null,
        },
        id: u.id.to_string(),
    }
}

async fn ids(
    s: &dyn Store,
    t: &cairn_core::ids::TenantId,
    sort: Option<SortKey>,
    seek: Seek,
    count: u64,
) -> Vec<UserRecord> {
    let q = ListQuery {
        sort,
        count,
        seek: Some(seek),
        ..ListQuery::default()
    };
    s.list_users(t, &q).await.unwrap().items
}

#[tokio::test]
async fn keyset_walks_agree_with_the_whole_list() {
    let db = db_async().await;
    let s = &*db.store;
    let t = tenant(s, "acme").await;
    let other = tenant(s, "other").await;
    for i in 0..25 {
        let name = format!("k{i}");
        // Repeated display names in several cases, and some without one.
        let mut doc = json!({"userName": name});
        if i % 4 != 0 {
            doc["displayName"] = json!(if i % 2 == 0 {
                format!("Name {}", i % 5)
            } else {
                format!("name {}", i % 5)
            });
        }
        let u = user(&t.id, &name, doc);
        s.create_user(&u, draft(&t.id, Action::UserCreated))
            .await
            .unwrap();
        let o = user(&other.id, &name, json!({"userName": name}));
        s.create_user(&o, draft(&other.id, Action::UserCreated))
            .await
            .unwrap();
    }
    for sort in [None, Some(display_sort(false)), Some(display_sort(true))] {
        let whole: Vec<String> = ids(s, &t.id, sort.clone(), Seek::First, 100)
            .await
            .iter()
            .map(|u| u.id.to_string())
            .collect();
        assert_eq!(whole.len(), 25);
        // Forwards, 4 at a time.
        let mut got = Vec::new();
        let mut seek = Seek::First;
        loop {
            let page = ids(s, &t.id, sort.clone(), seek, 4).await;
            let Some(last) = page.last() else { break };
            seek = Seek::After(pos(sort.as_ref(), last));
            got.extend(page.iter().map(|u| u.id.to_string()));
        }
        assert_eq!(got, whole, "{sort:?}");
        // Nothing after the last row; backwards from it.
        let all = ids(s, &t.id, sort.clone(), Seek::First, 100).await;
        let last = all.last().unwrap();
        let after_last = ids(
            s,
            &t.id,
            sort.clone(),
            Seek::After(pos(sort.as_ref(), last)),
            4,
        )
        .await;
        assert!(after_last.is_empty(), "{sort:?}");
        // Before the last row, then before each page's first row.
        let mut back = vec![last.id.to_string()];
        let mut seek = Seek::Before(pos(sort.as_ref(), last));
        loop {
            let page = ids(s, &t.id, sort.clone(), seek, 4).await;
            let Some(first) = page.first() else { break };
            seek = Seek::Before(pos(sort.as_ref(), first));
            let mut ids: Vec<String> = page.iter().map(|u| u.id.to_string()).collect();
            ids.append(&mut back);
            back = ids;
        }
        assert_eq!(back, whole, "backwards {sort:?}");
    }
}
