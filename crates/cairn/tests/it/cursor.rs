//! Cursor paging (RFC 9865) against the real binary, beside index paging: every row once
//! across pages, back and forth, stable under concurrent creates and deletes, with
//! sorting, on `/Users`, `/Users/.search` and `/Groups`; forged, foreign and expired
//! cursors answered with RFC 9865's errors.

use crate::support::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;

async fn users(t: &Tenant, n: usize, prefix: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let mut body =
            json!({"schemas": [USER_URN], "userName": format!("{prefix}{i:03}@example.test")});
        // Every third user without a displayName: NULLs in a sorted list.
        if i % 3 != 0 {
            body["displayName"] =
                format!("{} {prefix}", (b'a' + (i * 7 % 26) as u8) as char).into();
        }
        ids.push(
            t.create_user(&body).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    ids
}

fn ids_of(page: &Value) -> Vec<String> {
    page["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn page(t: &Tenant, path: &str) -> Value {
    let r = t.get(path).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text);
    r.json()
}

/// Follows `nextCursor` from the first page; returns the pages.
async fn walk(t: &Tenant, path: &str) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut pages = vec![page(t, &format!("{path}{sep}cursor=")).await];
    while let Some(next) = pages.last().unwrap()["nextCursor"].as_str() {
        let p = page(t, &format!("{path}{sep}cursor={next}")).await;
        pages.push(p);
        assert!(pages.len() < 100, "no end");
    }
    pages
}

#[tokio::test]
async fn every_row_once_forwards_and_backwards() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Cursor walk");
    let all = users(&t, 50, "walk").await;
    let spc = t.get("/ServiceProviderConfig").await.json();
    assert_eq!(spc["pagination"]["cursor"], true, "{spc}");
    assert_eq!(spc["pagination"]["index"], true, "{spc}");

    let pages = walk(&t, "/Users?count=7").await;
    assert_eq!(pages.len(), 8);
    let seen: Vec<String> = pages.iter().flat_map(ids_of).collect();
    assert_eq!(seen.len(), 50);
    assert_eq!(
        seen.iter().collect::<HashSet<_>>(),
        all.iter().collect::<HashSet<_>>()
    );
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(p["totalResults"], 50, "{p}");
        assert_eq!(p["itemsPerPage"], if i == 7 { 1 } else { 7 }, "{p}");
        assert!(p.get("startIndex").is_none(), "{p}");
        assert_eq!(p["previousCursor"].is_string(), i > 0, "{i}: {p}");
        assert_eq!(p["nextCursor"].is_string(), i < 7, "{i}: {p}");
    }
    // previousCursor leads back through the same pages.
    let mut back = pages.last().unwrap()["previousCursor"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in (0..7).rev() {
        let p = page(&t, &format!("/Users?count=7&cursor={back}")).await;
        assert_eq!(ids_of(&p), ids_of(&pages[i]), "page {i}");
        match p["previousCursor"].as_str() {
            Some(c) => back = c.to_owned(),
            None => assert_eq!(i, 0),
        }
    }
    // The same through POST /Users/.search, and index paging is unchanged.
    let r = t
        .post(
            "/Users/.search",
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                    "cursor": "", "count": 20}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let first = r.json();
    assert_eq!(ids_of(&first).len(), 20);
    let next = first["nextCursor"].as_str().unwrap();
    let r = t
        .post("/Users/.search", &json!({"cursor": next, "count": 20}))
        .await;
    assert_eq!(ids_of(&r.json()), seen[20..40].to_vec());
    let indexed = page(&t, "/Users?startIndex=1&count=5").await;
    assert_eq!(indexed["startIndex"], 1);
    assert!(indexed.get("nextCursor").is_none());
}

/// Creates and deletes between page requests neither repeat nor skip any row that exists
/// throughout: the cursor is a position, not an offset.
#[tokio::test]
async fn pages_are_stable_under_creates_and_deletes() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Cursor churn");
    let all = users(&t, 40, "churn").await;
    let first = page(&t, "/Users?count=10&cursor=").await;
    let mut seen = ids_of(&first);
    // Delete two rows already read and two not yet read; create five.
    let deleted: Vec<&String> = vec![&all[1], &all[5], &all[25], &all[33]];
    for id in &deleted {
        assert_eq!(t.delete(&format!("/Users/{id}")).await.status, 204);
    }
    users(&t, 5, "late").await;
    let mut next = first["nextCursor"].as_str().map(str::to_owned);
    while let Some(c) = next {
        let p = page(&t, &format!("/Users?count=10&cursor={c}")).await;
        // The total follows the churn: 40 - 4 + 5.
        assert_eq!(p["totalResults"], 41, "{p}");
        seen.extend(ids_of(&p));
        next = p["nextCursor"].as_str().map(str::to_owned);
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a row was repeated");
    for id in &all {
        if !deleted[2..].contains(&id) {
            assert!(unique.contains(id), "{id} was skipped");
        }
    }
    for id in &deleted[2..] {
        assert!(!unique.contains(id), "deleted {id} was listed");
    }
}

/// With `sortBy` the cursor pages follow the sort (NULLs last), like index paging.
#[tokio::test]
async fn sorted_cursor_pages_follow_the_sort() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Cursor sort");
    users(&t, 30, "sort").await;
    for (by, order) in [
        ("userName", "descending"),
        ("displayName", "ascending"),
        ("displayName", "descending"),
        ("meta.created", "ascending"),
        // Every user active, none with an externalId: one tie over the whole list.
        ("active", "descending"),
        ("externalId", "ascending"),
    ] {
        let q = format!("/Users?sortBy={by}&sortOrder={order}");
        let whole = page(&t, &format!("{q}&count=100")).await;
        let want = ids_of(&whole);
        let got: Vec<String> = walk(&t, &format!("{q}&count=4"))
            .await
            .iter()
            .flat_map(ids_of)
            .collect();
        assert_eq!(got.len(), want.len(), "{by} {order}");
        assert_eq!(
            got.iter().collect::<HashSet<_>>(),
            want.iter().collect::<HashSet<_>>()
        );
        // The same order, but among rows without the attribute (ties broken by id here,
        // by insertion order in index paging).
        let name = |id: &String| -> Value {
            let r =
                &whole["Resources"].as_array().unwrap()[want.iter().position(|w| w == id).unwrap()];
            match by {
                "userName" => r["userName"].clone(),
                "displayName" => r["displayName"].clone(),
                "active" => r["active"].clone(),
                "externalId" => r["externalId"].clone(),
                _ => r["meta"]["created"].clone(),
            }
        };
        let names_got: Vec<Value> = got.iter().map(name).collect();
        let names_want: Vec<Value> = want.iter().map(name).collect();
        assert_eq!(names_got, names_want, "{by} {order}");
    }
    // Sorting by an attribute kept only in the document is index paging's.
    let r = t.get("/Users?sortBy=name.familyName&cursor=").await;
    r.assert_scim_error(400, Some("invalidValue"));
}

#[tokio::test]
async fn groups_page_by_cursor() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Cursor groups");
    for i in 0..9 {
        let r = t
            .post(
                "/Groups",
                &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                        "displayName": format!("group {i}")}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let pages = walk(
        &t,
        "/Groups?count=4&sortBy=displayName&excludedAttributes=members",
    )
    .await;
    assert_eq!(pages.len(), 3);
    let names: Vec<String> = pages
        .iter()
        .flat_map(|p| p["Resources"].as_array().unwrap().clone())
        .map(|g| g["displayName"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (0..9).map(|i| format!("group {i}")).collect();
    assert_eq!(names, want);
    // The root /.search does not page by cursor.
    let r = t.post("/.search", &json!({"cursor": ""})).await;
    r.assert_scim_error(400, Some("invalidValue"));
}

#[tokio::test]
async fn forged_foreign_and_expired_cursors_are_rfc_9865_errors() {
    let deployment = Arc::new(Deployment::new());
    let app = TestApp::spawn_on(deployment.clone(), Opts::default()).await;
    let t = app.tenant("Cursor errors");
    let other = app.tenant("Cursor errors 2");
    users(&t, 5, "err").await;
    users(&other, 5, "other").await;
    let first = page(&t, "/Users?count=2&cursor=").await;
    let next = first["nextCursor"].as_str().unwrap().to_owned();
    for forged in [
        "garbage",
        "eyJ9",
        "WzEsImEiLDAsIjAwIixudWxsLCInIE9SIDE9MSAtLSJd",
        "%27%20OR%201%3D1",
    ] {
        let r = t.get(&format!("/Users?count=2&cursor={forged}")).await;
        r.assert_scim_error(400, Some("invalidCursor"));
    }
    // Another tenant's cursor, or the same cursor with another filter or sort.
    let r = other.get(&format!("/Users?count=2&cursor={next}")).await;
    r.assert_scim_error(400, Some("invalidCursor"));
    let r = t
        .get(&format!(
            "/Users?count=2&filter=active%20eq%20true&cursor={next}"
        ))
        .await;
    r.assert_scim_error(400, Some("invalidCursor"));
    let r = t
        .get(&format!("/Users?count=2&sortBy=userName&cursor={next}"))
        .await;
    r.assert_scim_error(400, Some("invalidCursor"));
    // count must be positive; startIndex and cursor do not mix.
    let r = t.get("/Users?count=0&cursor=").await;
    r.assert_scim_error(400, Some("invalidCount"));
    let r = t.get("/Users?startIndex=3&cursor=").await;
    r.assert_scim_error(400, Some("invalidValue"));
    // Two hours later (the server restarted on the same database, its clock ahead) the
    // cursor has expired (cursorTimeout is an hour).
    let base = app.base.clone();
    drop(app);
    let later = TestApp::spawn_on(
        deployment,
        Opts {
            env: vec![("CAIRN_CLOCK_OFFSET_SECS".into(), "7200".into())],
            ..Default::default()
        },
    )
    .await;
    let t_later = Tenant {
        url: t.url.replace(&base, &later.base),
        ..t.clone()
    };
    let r = t_later.get(&format!("/Users?count=2&cursor={next}")).await;
    r.assert_scim_error(400, Some("expiredCursor"));
    // A fresh walk there works.
    let p = page(&t_later, "/Users?count=2&cursor=").await;
    assert_eq!(ids_of(&p).len(), 2);
}
