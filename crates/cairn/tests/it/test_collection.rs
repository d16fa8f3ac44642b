//! What a vendor's published SCIM test collection sends and RFC 7643/7644 allow, found by
//! running it against the service: a user with two `emails` of the same `type` (RFC 7643
//! sets no uniqueness rule on `type`, only one `primary`), whose later create, filter and
//! paging steps must not fail in cascade; resource endpoints in another letter case
//! (`/users`, `/groups`). On SQLite, and on PostgreSQL with `CAIRN_TEST_BACKEND=postgres`.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn emails(u: &Value) -> Vec<(String, String)> {
    u["emails"]
        .as_array()
        .unwrap_or_else(|| panic!("{u}"))
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("").to_owned(),
                e["value"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn two_emails_of_one_type_are_kept_and_patched_together() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Test collection");
    let r = t
        .post(
            "/Users",
            &json!({
                "schemas": [USER_URN],
                "userName": "pat.two@example.com",
                "name": {"givenName": "Pat", "familyName": "Two"},
                "emails": [
                    {"value": "pat.two@example.com", "type": "work", "primary": true},
                    {"value": "pat.2@example.com", "type": "work"}
                ]
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let both = vec![
        ("work".to_owned(), "pat.two@example.com".to_owned()),
        ("work".to_owned(), "pat.2@example.com".to_owned()),
    ];
    assert_eq!(emails(&r.json()), both);
    assert_eq!(emails(&t.get(&format!("/Users/{id}")).await.json()), both);

    // The collection's later steps: more creates, filters on either address, paging.
    for i in 0..3 {
        let r = t
            .post(
                "/Users",
                &json!({"schemas":[USER_URN],"userName":format!("other{i}@example.com"),
                    "emails":[{"value":format!("other{i}@example.com"),"type":"work"},
                              {"value":format!("o{i}@example.org"),"type":"work"}]}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    for f in [
        "emails.value eq \"pat.2@example.com\"",
        "emails[type eq \"work\" and value eq \"pat.2@example.com\"]",
        "userName eq \"pat.two@example.com\"",
    ] {
        let v = assert_list(&t.get(&format!("/Users?filter={}", enc(f))).await);
        assert_eq!(list_ids(&v), vec![id.clone()], "{f}: {v}");
    }
    let v = assert_list(&t.get("/Users?startIndex=2&count=2").await);
    assert_eq!(v["totalResults"], 4, "{v}");
    assert_eq!(v["Resources"].as_array().unwrap().len(), 2, "{v}");

    // RFC 7644 §3.5.2: the filter selects every matching value.
    let r = t
        .patch(
            &format!("/Users/{id}"),
            &json!({"schemas":[PATCH_URN],"Operations":[
                {"op":"replace","path":"emails[type eq \"work\"].display","value":"Work"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got = t.get(&format!("/Users/{id}")).await.json();
    let displays: Vec<&Value> = got["emails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["display"])
        .collect();
    assert_eq!(displays, [&json!("Work"), &json!("Work")], "{got}");
    assert_eq!(emails(&got), both);
    // Two primaries are still refused (RFC 7643 §2.4).
    let r = t
        .put(
            &format!("/Users/{id}"),
            &json!({"schemas":[USER_URN],"userName":"pat.two@example.com","emails":[
                {"value":"a@example.com","type":"work","primary":true},
                {"value":"b@example.com","type":"work","primary":true}]}),
        )
        .await;
    r.assert_scim_error(400, Some("invalidValue"));
}

#[tokio::test]
async fn endpoints_answer_in_any_letter_case() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Letter case");
    let r = t
        .post(
            "/users",
            &json!({"schemas":[USER_URN],"userName":"lower@example.com"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let u = r.json();
    let id = u["id"].as_str().unwrap();
    assert!(
        u["meta"]["location"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/Users/{id}")),
        "{u}"
    );
    for path in [
        format!("/users/{id}"),
        format!("/USERS/{id}"),
        "/users?filter=userName%20eq%20%22lower%40example.com%22".to_owned(),
        "/groups".to_owned(),
        "/Groups".to_owned(),
        "/serviceproviderconfig".to_owned(),
        "/SERVICEPROVIDERCONFIG".to_owned(),
        "/schemas".to_owned(),
        "/resourcetypes".to_owned(),
        "/resourcetypes/User".to_owned(),
    ] {
        let r = t.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_scim_content_type(&r);
    }
    let r = t
        .post(
            "/groups",
            &json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"g",
                "members":[{"value":id}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let gid = r.json()["id"].as_str().unwrap().to_owned();
    let r = t
        .patch(
            &format!("/groups/{gid}"),
            &json!({"schemas":[PATCH_URN],"Operations":[{"op":"replace","path":"displayName","value":"G"}]}),
        )
        .await;
    assert!(matches!(r.status, 200 | 204), "{}: {}", r.status, r.text);
    assert_eq!(
        t.get(&format!("/groups/{gid}")).await.json()["displayName"],
        "G"
    );
    let r = t
        .send(
            Method::POST,
            "/users/.search",
            &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "filter":"userName eq \"lower@example.com\""}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = t.delete(&format!("/users/{id}")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    // Ids keep their case: another case of an id is another (unknown) resource.
    let r = t.get(&format!("/Groups/{}", gid.to_uppercase())).await;
    if gid.to_uppercase() != gid {
        assert_eq!(r.status, 404, "{}", r.text);
    }
}

/// The member `display` a client sends is kept and returned (RFC 7643 §4.2), on create,
/// PATCH add (Okta's form) and PUT; it ends with the membership.
#[tokio::test]
async fn member_display_is_kept_and_returned() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Member display");
    let mut ids = Vec::new();
    for n in ["ann", "bob", "cy"] {
        let u = t
            .create_user(&json!({"schemas":[USER_URN],"userName":format!("{n}@example.com")}))
            .await;
        ids.push(u["id"].as_str().unwrap().to_owned());
    }
    let displays = |g: &Value| -> Vec<(String, Option<String>)> {
        let mut v: Vec<_> = g["members"]
            .as_array()
            .unwrap_or_else(|| panic!("{g}"))
            .iter()
            .map(|m| {
                (
                    m["value"].as_str().unwrap().to_owned(),
                    m["display"].as_str().map(str::to_owned),
                )
            })
            .collect();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<(String, Option<String>)>| {
        v.sort();
        v
    };
    let r = t
        .post(
            "/Groups",
            &json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Team",
                "members":[{"value":ids[0],"display":"Ann A."},{"value":ids[1]}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let gid = r.json()["id"].as_str().unwrap().to_owned();
    let want = sorted(vec![
        (ids[0].clone(), Some("Ann A.".into())),
        (ids[1].clone(), None),
    ]);
    assert_eq!(displays(&r.json()), want);
    assert_eq!(
        displays(&t.get(&format!("/Groups/{gid}")).await.json()),
        want
    );
    let list = assert_list(&t.get("/Groups").await);
    assert_eq!(displays(&list["Resources"][0]), want);

    // Okta's add: {value, display}; a path-less replace of displayName beside it.
    let r = t
        .patch(
            &format!("/Groups/{gid}"),
            &json!({"schemas":[PATCH_URN],"Operations":[
                {"op":"add","path":"members","value":[{"value":ids[2],"display":"cy@example.com"},
                                                     {"value":ids[1],"display":"Bob B."}]}]}),
        )
        .await;
    assert!(matches!(r.status, 200 | 204), "{}", r.text);
    let want = sorted(vec![
        (ids[0].clone(), Some("Ann A.".into())),
        (ids[1].clone(), Some("Bob B.".into())),
        (ids[2].clone(), Some("cy@example.com".into())),
    ]);
    assert_eq!(
        displays(&t.get(&format!("/Groups/{gid}")).await.json()),
        want
    );

    // Removed, then added back without a display: none is returned.
    for op in [
        json!({"op":"remove","path":format!("members[value eq \"{}\"]", ids[2])}),
        json!({"op":"add","path":"members","value":[{"value":ids[2]}]}),
    ] {
        let r = t
            .patch(
                &format!("/Groups/{gid}"),
                &json!({"schemas":[PATCH_URN],"Operations":[op]}),
            )
            .await;
        assert!(matches!(r.status, 200 | 204), "{}", r.text);
    }
    let g = t.get(&format!("/Groups/{gid}")).await.json();
    let mut back = want[..2].to_vec();
    back.push((ids[2].clone(), None));
    assert_eq!(displays(&g), sorted(back));

    // PUT: the list and the displays as sent this time.
    let r = t
        .put(
            &format!("/Groups/{gid}"),
            &json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Team",
                "members":[{"value":ids[0],"display":"Ann"},{"value":ids[2],"display":"Cy"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let want = sorted(vec![
        (ids[0].clone(), Some("Ann".into())),
        (ids[2].clone(), Some("Cy".into())),
    ]);
    assert_eq!(displays(&r.json()), want);
    assert_eq!(
        displays(&t.get(&format!("/Groups/{gid}")).await.json()),
        want
    );
}
