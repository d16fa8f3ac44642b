//! Filters on group members against the real binary: `members[value eq "…"]` and
//! `members.value eq "…"` list the groups an account belongs to (on either backend).

use crate::support::*;
use serde_json::{json, Value};

fn enc(f: &str) -> String {
    url_escape(f)
}

/// Percent-encodes a filter for a query string.
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn names(t: &Tenant, filter: &str) -> Vec<String> {
    let r = t
        .get(&format!(
            "/Groups?excludedAttributes=members&filter={}",
            enc(filter)
        ))
        .await;
    assert_eq!(r.status, 200, "{filter}: {}", r.text);
    let v = r.json();
    let mut n: Vec<String> = v["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["displayName"].as_str().unwrap().to_owned())
        .collect();
    n.sort();
    assert_eq!(v["totalResults"], n.len(), "{v}");
    n
}

#[tokio::test]
async fn groups_are_filtered_by_member() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Member filters");
    let other = app.tenant("Member filters 2");
    let mut ids = Vec::new();
    for n in ["ann", "ben", "cat"] {
        let u = t
            .create_user(&json!({"schemas": [USER_URN], "userName": n}))
            .await;
        ids.push(u["id"].as_str().unwrap().to_owned());
    }
    let (ann, ben, cat) = (&ids[0], &ids[1], &ids[2]);
    for (name, members) in [
        ("Both", vec![ann, ben]),
        ("Ben", vec![ben]),
        ("Nobody", vec![]),
    ] {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        let r = t
            .post(
                "/Groups",
                &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                        "displayName": name, "members": members}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    assert_eq!(
        names(&t, &format!("members[value eq \"{ann}\"]")).await,
        ["Both"]
    );
    assert_eq!(
        names(&t, &format!("members.value eq \"{ben}\"")).await,
        ["Ben", "Both"]
    );
    // Ids compare without regard to case, like the attribute (RFC 7643 §8.7.1).
    assert_eq!(
        names(&t, &format!("members.value eq \"{}\"", ben.to_uppercase())).await,
        ["Ben", "Both"]
    );
    assert!(names(&t, &format!("members[value eq \"{cat}\"]"))
        .await
        .is_empty());
    assert_eq!(names(&t, "members pr").await, ["Ben", "Both"]);
    assert_eq!(names(&t, "not (members pr)").await, ["Nobody"]);
    assert_eq!(
        names(
            &t,
            &format!("displayName eq \"Ben\" and members[value eq \"{ben}\"]")
        )
        .await,
        ["Ben"]
    );
    // Another tenant's groups are never matched, even by a member id of ours.
    assert!(names(&other, &format!("members.value eq \"{ann}\""))
        .await
        .is_empty());
    // The same filter through POST /Groups/.search.
    let r = t
        .post(
            "/Groups/.search",
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                    "filter": format!("members[value eq \"{ann}\"]")}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["totalResults"], 1);
    // Only the member's id can be filtered on.
    let r = t
        .get(&format!(
            "/Groups?filter={}",
            enc("members.display eq \"x\"")
        ))
        .await;
    r.assert_scim_error(400, Some("invalidFilter"));
    // A deleted account is no longer a member.
    assert_eq!(t.delete(&format!("/Users/{ben}")).await.status, 204);
    assert_eq!(
        names(&t, &format!("members.value eq \"{ben}\"")).await,
        Vec::<String>::new()
    );
    assert_eq!(names(&t, "members pr").await, ["Both"]);
}
