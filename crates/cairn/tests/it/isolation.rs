//! Tenant isolation: a tenant's token works only on its own Tenant URL, user ids of one
//! tenant do not resolve in another, and lists and filters never cross tenants.

use crate::support::*;
use reqwest::{header, Method};
use serde_json::{json, Value};

fn user(name: &str) -> Value {
    json!({
        "schemas": [USER_URN],
        "userName": name,
        "name": {"givenName": "Given", "familyName": "Family"},
        "emails": [{"value": name, "type": "work", "primary": true}],
        "active": true
    })
}

/// `tenant` with the token of `other`: Tenant URL of one, credentials of the other.
fn with_token(tenant: &Tenant, other: &Tenant) -> Tenant {
    Tenant {
        token: other.token.clone(),
        ..tenant.clone()
    }
}

async fn assert_401(t: &Tenant, what: &str) {
    let r = t.get("/Users").await;
    assert_eq!(r.status, 401, "{what}: {}", r.text);
    r.assert_scim_error(401, None);
    assert!(
        r.header("www-authenticate").is_some(),
        "{what}: no WWW-Authenticate"
    );
    let r = t.post("/Users", &user("intruder@evil.test")).await;
    r.assert_scim_error(401, None);
}

fn ids_of(v: &Value) -> Vec<String> {
    v["Resources"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn tokens_ids_and_filters_stay_within_their_tenant() {
    let app = TestApp::spawn().await;
    let a = app.tenant("Alpha");
    let b = app.tenant("Beta");
    assert_ne!(a.url, b.url);

    // The same userName may exist in both tenants; each gets its own account.
    let a_same = a.create_user(&user("same@shared.test")).await;
    let b_same = b.create_user(&user("Same@Shared.test")).await;
    let a_only = a.create_user(&user("alice@alpha.test")).await;
    let b_only = b.create_user(&user("bob@beta.test")).await;
    assert_ne!(a_same["id"], b_same["id"]);
    let b_ids = [
        b_same["id"].as_str().unwrap().to_owned(),
        b_only["id"].as_str().unwrap().to_owned(),
    ];
    let b_before: Vec<String> = {
        let mut v = Vec::new();
        for id in &b_ids {
            let r = b.get(&format!("/Users/{id}")).await;
            assert_eq!(r.status, 200, "{}", r.text);
            v.push(r.text);
        }
        v
    };

    // A's token on B's URL (and B's on A's) is 401 with a SCIM body.
    assert_401(&with_token(&b, &a), "A's token on B's URL").await;
    assert_401(&with_token(&a, &b), "B's token on A's URL").await;
    let r = with_token(&b, &a)
        .get(&format!("/Users/{}", b_ids[0]))
        .await;
    r.assert_scim_error(401, None);

    // A cannot read, replace, patch or delete B's users through its own URL.
    for id in &b_ids {
        let path = format!("/Users/{id}");
        a.get(&path).await.assert_scim_error(404, None);
        a.put(&path, &user("hijack@alpha.test"))
            .await
            .assert_scim_error(404, None);
        a.patch(
            &path,
            &json!({"schemas":[PATCH_URN],"Operations":[{"op":"replace","path":"active","value":false}]}),
        )
        .await
        .assert_scim_error(404, None);
        a.delete(&path).await.assert_scim_error(404, None);
        // With If-Match too: a 404, never a 412 that would reveal the id exists.
        let r = Reply::of(
            a.req(Method::DELETE, &path)
                .header(header::IF_MATCH, "W/\"1\"")
                .send()
                .await
                .unwrap(),
        )
        .await;
        r.assert_scim_error(404, None);
    }
    // B's users are untouched.
    for (id, before) in b_ids.iter().zip(&b_before) {
        let r = b.get(&format!("/Users/{id}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(&r.text, before);
    }

    // Lists and filters of A only ever return A's users.
    let a_ids = [
        a_same["id"].as_str().unwrap().to_owned(),
        a_only["id"].as_str().unwrap().to_owned(),
    ];
    let queries = [
        "/Users".to_owned(),
        "/Users?count=1000".to_owned(),
        "/Users?filter=userName%20eq%20%22same%40shared.test%22".to_owned(),
        "/Users?filter=userName%20eq%20%22bob%40beta.test%22".to_owned(),
        format!("/Users?filter=id%20eq%20%22{}%22", b_ids[0]),
        "/Users?filter=userName%20pr".to_owned(),
        "/Users?filter=emails.value%20co%20%22beta%22".to_owned(),
        "/Users?filter=active%20eq%20true&sortBy=userName&sortOrder=descending".to_owned(),
    ];
    for q in &queries {
        let r = a.get(q).await;
        assert_eq!(r.status, 200, "{q}: {}", r.text);
        let v = r.json();
        let ids = ids_of(&v);
        for id in &ids {
            assert!(a_ids.contains(id), "{q} returned a foreign id {id}: {v}");
        }
        assert_eq!(v["totalResults"], ids.len(), "{q}: {v}");
    }
    let r = a
        .get("/Users?filter=userName%20eq%20%22SAME%40shared.test%22")
        .await;
    assert_eq!(ids_of(&r.json()), vec![a_ids[0].clone()]);
    let r = b
        .get("/Users?filter=userName%20eq%20%22same%40shared.test%22")
        .await;
    assert_eq!(ids_of(&r.json()), vec![b_ids[0].clone()]);
    assert_eq!(a.get("/Users").await.json()["totalResults"], 2);

    // POST /.search and /Users/.search likewise.
    for path in ["/.search", "/Users/.search"] {
        let r = a
            .post(
                path,
                &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                         "filter":"userName sw \"b\" or userName sw \"s\""}),
            )
            .await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(ids_of(&r.json()), vec![a_ids[0].clone()], "{path}");
    }

    // B's audit log holds nothing about A's users.
    let audit = app.cli(&["audit", "--tenant", &b.id, "--json"]).ok().json();
    let text = audit.to_string();
    for id in &a_ids {
        assert!(
            !text.contains(id.as_str()),
            "A's user {id} in B's audit: {text}"
        );
    }
    assert!(!text.contains("alice@alpha.test"));
}

#[tokio::test]
async fn unknown_tenants_missing_or_wrong_credentials_are_401() {
    let app = TestApp::spawn().await;
    let a = app.tenant("Alpha");
    let base = a.url[..a.url.rfind('/').unwrap()].to_owned();
    for tenant in [
        "00000000-0000-4000-8000-000000000000".to_owned(),
        uuid_like(&a.id),
        a.id.to_uppercase(),
        "not-a-tenant".to_owned(),
        "%00".to_owned(),
    ] {
        let t = Tenant {
            url: format!("{base}/{tenant}"),
            ..a.clone()
        };
        let r = t.get("/Users").await;
        r.assert_scim_error(401, None);
        t.get("/ServiceProviderConfig")
            .await
            .assert_scim_error(401, None);
    }
    // No header, empty, wrong scheme, wrong token, a token-shaped forgery.
    let r = Reply::of(a.anon(Method::GET, "/Users").send().await.unwrap()).await;
    r.assert_scim_error(401, None);
    for auth in [
        "".to_owned(),
        "Bearer".to_owned(),
        "Basic dXNlcjpwYXNz".to_owned(),
        format!("Bearer {}x", a.token),
        format!("Bearer {}", &a.token[..a.token.len() - 1]),
        "Bearer cairn_0000000000000000000000000000000000000000000000000000000000000000".to_owned(),
        format!("Bearer {} extra", a.token),
    ] {
        let r = Reply::of(
            a.anon(Method::GET, "/Users")
                .header(header::AUTHORIZATION, &auth)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 401, "{auth:?}: {}", r.text);
        r.assert_scim_error(401, None);
    }
}

/// A different, valid-looking UUID that differs from `id` in one hex digit.
fn uuid_like(id: &str) -> String {
    let mut c: Vec<char> = id.chars().collect();
    let last = c.len() - 1;
    c[last] = if c[last] == '0' { '1' } else { '0' };
    c.into_iter().collect()
}

#[tokio::test]
async fn disabled_scim_and_regenerated_tokens_lock_out_clients() {
    let app = TestApp::spawn().await;
    let a = app.tenant("Alpha");
    let u = a.create_user(&user("kept@alpha.test")).await;
    let path = format!("/Users/{}", u["id"].as_str().unwrap());

    app.cli(&["scim", "disable", "--tenant", &a.id]).ok();
    for r in [
        a.get("/Users").await,
        a.get(&path).await,
        a.post("/Users", &user("new@alpha.test")).await,
        a.delete(&path).await,
        a.get("/ServiceProviderConfig").await,
    ] {
        r.assert_scim_error(401, None);
    }
    // Re-enabling restores access with the same token; nothing changed meanwhile.
    app.cli(&[
        "scim",
        "enable",
        "--tenant",
        &a.id,
        "--account-size-gb",
        "50",
    ])
    .ok();
    let r = a.get(&path).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(a.get("/Users").await.json()["totalResults"], 1);

    // A new token cuts off the old one at once (the harness disables the auth cache).
    let tok = app
        .cli(&["scim", "token", "--tenant", &a.id, "--json"])
        .ok()
        .json();
    let fresh = Tenant {
        token: tok["token"].as_str().unwrap().to_owned(),
        ..a.clone()
    };
    assert_ne!(fresh.token, a.token);
    a.get("/Users").await.assert_scim_error(401, None);
    a.get(&path).await.assert_scim_error(401, None);
    let r = fresh.get(&path).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // All three accepted Authorization forms work with the new token and not the old.
    for form in [
        fresh.token.clone(),
        format!("Bearer Bearer {}", fresh.token),
        format!("bearer {}", fresh.token),
    ] {
        let r = Reply::of(
            a.anon(Method::GET, &path)
                .header(header::AUTHORIZATION, &form)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200, "{form}: {}", r.text);
    }
    let r = Reply::of(
        a.anon(Method::GET, &path)
            .header(header::AUTHORIZATION, &a.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.assert_scim_error(401, None);
}

const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

#[tokio::test]
async fn groups_and_memberships_stay_within_their_tenant() {
    let app = TestApp::spawn().await;
    let a = app.tenant("Alpha");
    let b = app.tenant("Beta");
    let au = a.create_user(&user("amember@alpha.test")).await;
    let bu = b.create_user(&user("bmember@beta.test")).await;
    let (au, bu) = (au["id"].as_str().unwrap(), bu["id"].as_str().unwrap());
    // The same displayName may exist in both tenants.
    let r = b
        .post(
            "/Groups",
            &json!({"schemas":[GROUP_URN],"displayName":"Staff","members":[{"value":bu}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let bg = r.json()["id"].as_str().unwrap().to_owned();
    let r = a
        .post(
            "/Groups",
            &json!({"schemas":[GROUP_URN],"displayName":"Staff","members":[{"value":au}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let ag = r.json()["id"].as_str().unwrap().to_owned();
    let bg_path = format!("/Groups/{bg}");
    let b_group_before = b.get(&bg_path).await.text;
    let b_user_before = b.get(&format!("/Users/{bu}")).await.text;

    // A cannot reach B's group by id.
    a.get(&bg_path).await.assert_scim_error(404, None);
    a.put(
        &bg_path,
        &json!({"schemas":[GROUP_URN],"displayName":"Taken"}),
    )
    .await
    .assert_scim_error(404, None);
    a.patch(
        &bg_path,
        &json!({"schemas":[PATCH_URN],"Operations":[{"op":"add","path":"members","value":[{"value":au}]}]}),
    )
    .await
    .assert_scim_error(404, None);
    a.delete(&bg_path).await.assert_scim_error(404, None);
    with_token(&b, &a)
        .get(&bg_path)
        .await
        .assert_scim_error(401, None);

    // A cannot make B's user a member of its own group, by POST, PUT or PATCH.
    let ag_path = format!("/Groups/{ag}");
    let r = a
        .post(
            "/Groups",
            &json!({"schemas":[GROUP_URN],"displayName":"Mixed","members":[{"value":bu}]}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    r.assert_scim_error(400, None);
    let r = a
        .put(
            &ag_path,
            &json!({"schemas":[GROUP_URN],"displayName":"Staff","members":[{"value":au},{"value":bu}]}),
        )
        .await;
    r.assert_scim_error(400, None);
    let r = a
        .patch(
            &ag_path,
            &json!({"schemas":[PATCH_URN],"Operations":[{"op":"add","path":"members","value":[{"value":bu}]}]}),
        )
        .await;
    r.assert_scim_error(400, None);

    // Lists and searches of A show only A's group; B's group and user are unchanged.
    let r = a.get("/Groups").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ids_of(&r.json()), vec![ag.clone()]);
    let r = a.get("/Groups?filter=displayName%20eq%20%22staff%22").await;
    assert_eq!(ids_of(&r.json()), vec![ag.clone()]);
    let r = a
        .post(
            "/.search",
            &json!({"filter":"displayName pr or userName pr"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ids = ids_of(&r.json());
    assert!(
        !ids.contains(&bg) && !ids.iter().any(|i| i == bu),
        "{ids:?}"
    );
    assert_eq!(b.get(&bg_path).await.text, b_group_before);
    assert_eq!(b.get(&format!("/Users/{bu}")).await.text, b_user_before);
    let a_user = a.get(&format!("/Users/{au}")).await.json();
    // Exactly its own tenant's group: an empty list would hide a lost membership.
    let groups = a_user["groups"].as_array().cloned().unwrap_or_default();
    let group_ids: Vec<&str> = groups.iter().filter_map(|g| g["value"].as_str()).collect();
    assert_eq!(group_ids, vec![ag.as_str()], "{a_user}");
}

/// With the auth cache on (as in production), a token regenerated or SCIM disabled
/// elsewhere (the CLI, another instance) stops working on every instance within
/// `CAIRN_AUTH_CACHE_MS`.
#[tokio::test]
async fn cached_credentials_expire_on_every_instance() {
    let cache = Opts {
        env: vec![("CAIRN_AUTH_CACHE_MS".into(), "500".into())],
        ..Default::default()
    };
    let one = TestApp::spawn_with(cache.clone()).await;
    let two = TestApp::spawn_on(one.deployment.clone(), cache).await;
    let t1 = one.tenant("Cached");
    let t2 = Tenant {
        url: t1.url.replace(&one.base, &two.base),
        ..t1.clone()
    };
    for t in [&t1, &t2] {
        assert_eq!(t.get("/Users").await.status, 200); // warms the cache
    }
    let fresh = one
        .cli(&["scim", "token", "--tenant", &t1.id, "--json"])
        .ok()
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    for t in [&t1, &t2] {
        loop {
            let r = t.get("/Users").await;
            if r.status == 401 {
                r.assert_scim_error(401, None);
                break;
            }
            assert_eq!(r.status, 200, "{}", r.text);
            assert!(
                std::time::Instant::now() < deadline,
                "the old token still works on {}",
                t.url
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let n = Tenant {
            token: fresh.clone(),
            ..t.clone()
        };
        assert_eq!(n.get("/Users").await.status, 200);
    }
    // Disabling SCIM reaches both instances the same way.
    one.cli(&["scim", "disable", "--tenant", &t1.id]).ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    for t in [&t1, &t2] {
        let n = Tenant {
            token: fresh.clone(),
            ..t.clone()
        };
        loop {
            let r = n.get("/Users").await;
            if r.status == 401 {
                r.assert_scim_error(401, None);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "still enabled");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
