//! Replays of what Microsoft Entra ID's provisioning service sends
//! (Microsoft Learn: "Tutorial: Develop and plan provisioning for a SCIM endpoint", "Known
//! issues and resolutions with SCIM 2.0 protocol compliance", "SCIM Validator tutorial"):
//! Test Connection and matching probes, creates with the default mappings, the default
//! (flag-less) PATCH forms with capitalised ops and `"False"`/`"True"` strings, the
//! `aadOptscim062020` forms (lowercase ops, booleans, combined path-less replace), hard
//! delete, and the SCIM Validator's checks.
//! Tags such as `#14` or `§3.5` in the tests below are labels from the client-requirements
//! checklist these replays were first written from; each test states what it checks.
//! Served with the production defaults of the auth cache and the rate limit
//! (`Opts::production`).

use crate::support::*;
use reqwest::{header, Method};
use serde_json::{json, Value};

fn patch(ops: Value) -> Value {
    json!({"schemas":[PATCH_URN],"Operations": ops})
}

/// Query-encodes a filter (space `%20`, quotes `%22`, `@` `%40`).
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn guid() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let h = format!(
        "{:032x}",
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
    );
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A filter query (Entra's form: `filter=` only, no paging).
async fn filter(t: &Tenant, f: &str) -> Value {
    assert_list(&t.get(&format!("/Users?filter={}", enc(f))).await)
}

/// PATCH answered 200 with the full user (#31), SCIM content type, ETag = meta.version.
async fn patch_ok(t: &Tenant, id: &str, ops: Value) -> Value {
    let r = t.patch(&format!("/Users/{id}"), &patch(ops.clone())).await;
    assert_eq!(r.status, 200, "PATCH {ops}: {}", r.text);
    assert_scim_content_type(&r);
    let u = r.json();
    assert_user_shape(&u);
    assert_eq!(r.header("etag"), u["meta"]["version"].as_str());
    // The stored state matches the response.
    let got = get_user(t, id).await;
    assert_eq!(strip_meta(&got), strip_meta(&u), "PATCH response vs GET");
    u
}

fn strip_meta(u: &Value) -> Value {
    let mut u = u.clone();
    u.as_object_mut().unwrap().remove("meta");
    u
}

async fn get_user(t: &Tenant, id: &str) -> Value {
    let r = t.get(&format!("/Users/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_scim_content_type(&r);
    let u = r.json();
    assert_user_shape(&u);
    u
}

/// The body Entra sends on create with the tutorial's defaults (§3.6).
fn entra_create(user_name: &str, email: &str, external_id: &str) -> Value {
    json!({"schemas":[USER_URN, ENTERPRISE_URN],
        "externalId": external_id,
        "userName": user_name,
        "active": true,
        "emails":[{"primary":true,"type":"work","value": email}],
        "meta":{"resourceType":"User"},
        "name":{"formatted":"givenName familyName","familyName":"familyName","givenName":"givenName"},
        "roles":[]})
}

async fn create(t: &Tenant, body: &Value) -> Value {
    let r = t.post("/Users", body).await;
    assert_eq!(r.status, 201, "#47 the validator needs 201: {}", r.text);
    assert_scim_content_type(&r);
    let u = r.json();
    assert_user_shape(&u);
    let id = u["id"].as_str().unwrap();
    assert_eq!(
        r.header("location"),
        Some(format!("{}/Users/{id}", t.url).as_str())
    );
    assert_eq!(r.header("etag"), u["meta"]["version"].as_str());
    u
}

/// §3.4 Test Connection, §3.5 matching queries, §3.12 flags in the Tenant URL.
#[tokio::test]
async fn entra_test_connection_and_probes() {
    let app = TestApp::spawn_with(Opts::production()).await;
    let t = app.tenant("Entra Probe");
    // Test Connection: a random GUID in the matching attribute ⇒ 200 + empty list (#15).
    for f in [
        format!("userName eq \"{}\"", guid()),
        format!("externalId eq \"{}\"", guid()),
    ] {
        let v = filter(&t, &f).await;
        assert_eq!(v["totalResults"], 0, "{f}: {v}");
        assert_eq!(v["Resources"], json!([]));
    }
    // With users present, a random value still matches nothing.
    let u = create(
        &t,
        &entra_create("dale.mohr@romaguera.uk", "dale.mohr@romaguera.uk", "dmohr"),
    )
    .await;
    let id = u["id"].as_str().unwrap().to_owned();
    let v = filter(&t, &format!("userName eq \"{}\"", guid())).await;
    assert_eq!(v["totalResults"], 0, "{v}");

    // The group probe, with excludedAttributes (#36, #38).
    let r = t
        .get(&format!(
            "/Groups?excludedAttributes=members&filter={}",
            enc("displayName eq \"ebd3e0e4-random\"")
        ))
        .await;
    assert_eq!(assert_list(&r)["totalResults"], 0);

    // The real matching query seen in Q&A 2238842: spaces as `+`, `%40` (#12), sent
    // verbatim, quotes raw as the thread shows them (the `http` crate's URI parser
    // refuses a raw `"`; `cairn_wire` reads it as `%22`) and percent-encoded.
    // More on the raw form, keep-alive and HTTPS in `raw_targets`.
    let prefix = t.url.strip_prefix(&app.base).unwrap().to_owned();
    let auth = format!("Bearer {}", t.token);
    for q in [
        "userName+eq+\"dale.mohr%40romaguera.uk\"",
        "userName+eq+\"Dale.Mohr@Romaguera.UK\"",
        "userName+eq+%22dale.mohr%40romaguera.uk%22",
        "userName+eq+%22Dale.Mohr%40Romaguera.UK%22",
        "userName+eq+%22dale.mohr@romaguera.uk%22",
        "userName%20eq%20%22dale.mohr%40romaguera.uk%22",
    ] {
        let r = raw_request(
            &app.base,
            "GET",
            &format!("{prefix}/Users?filter={q}"),
            &[("Authorization", &auth)],
            "",
        )
        .await;
        let v = assert_list(&r);
        assert_eq!(list_ids(&v), vec![id.clone()], "{q}: {v}");
    }

    // aadOptscim062020 / AzureAdScimPatch2017 appended to the Tenant URL are ignored on
    // every route (#39).
    for flag in ["aadOptscim062020", "AzureAdScimPatch2017"] {
        let v = assert_list(
            &t.get(&format!(
                "/Users?{flag}&filter={}",
                enc("userName eq \"dale.mohr@romaguera.uk\"")
            ))
            .await,
        );
        assert_eq!(list_ids(&v), vec![id.clone()]);
        let r = t.get(&format!("/Users/{id}?{flag}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_list(&t.get(&format!("/Groups?{flag}")).await);
        let r = t
            .patch(
                &format!("/Users/{id}?{flag}"),
                &patch(json!([{"op":"Replace","path":"displayName","value":"Dale"}])),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        for p in ["/ServiceProviderConfig", "/Schemas", "/ResourceTypes"] {
            let r = t.get(&format!("{p}?{flag}")).await;
            assert_eq!(r.status, 200, "{p}: {}", r.text);
            assert_scim_content_type(&r);
        }
    }
    // attributes / excludedAttributes on user GETs (#38).
    let r = t
        .get(&format!("/Users/{id}?excludedAttributes=emails,name"))
        .await;
    let v = r.json();
    assert_eq!(r.status, 200);
    assert!(v.get("emails").is_none() && v.get("name").is_none(), "{v}");
    assert_eq!(v["id"], id.as_str());
    let v = assert_list(&t.get("/Users?attributes=userName").await);
    assert_eq!(v["Resources"][0]["userName"], "dale.mohr@romaguera.uk");
    assert_eq!(v["Resources"][0]["id"], id.as_str());
    assert!(v["Resources"][0].get("emails").is_none(), "{v}");
}

/// #14: every filter Entra may use for matching, and `and`; #16: unsupported ones.
#[tokio::test]
async fn entra_matching_filters() {
    let app = TestApp::spawn_with(Opts::production()).await;
    let t = app.tenant("Entra Filters");
    let a = create(
        &t,
        &entra_create("a.user@contoso.com", "a.mail@contoso.com", "auser"),
    )
    .await;
    let b = create(
        &t,
        &entra_create("b.user@contoso.com", "b.mail@contoso.com", "buser"),
    )
    .await;
    let a_id = a["id"].as_str().unwrap().to_owned();
    let b_id = b["id"].as_str().unwrap().to_owned();
    for (f, want) in [
        ("userName eq \"a.user@contoso.com\"", vec![&a_id]),
        ("externalId eq \"auser\"", vec![&a_id]),
        ("externalId eq \"AUSER\"", vec![]), // externalId is caseExact
        (&format!("id eq \"{b_id}\"") as &str, vec![&b_id]),
        (
            "emails[type eq \"work\"].value eq \"b.mail@contoso.com\"",
            vec![&b_id],
        ),
        ("emails.value eq \"A.MAIL@contoso.com\"", vec![&a_id]),
        (
            "userName eq \"a.user@contoso.com\" and externalId eq \"auser\"",
            vec![&a_id],
        ),
        (
            "userName eq \"a.user@contoso.com\" and externalId eq \"buser\"",
            vec![],
        ),
        ("USERNAME EQ \"b.user@contoso.com\"", vec![&b_id]),
    ] {
        let v = filter(&t, f).await;
        let want: Vec<String> = want.into_iter().cloned().collect();
        assert_eq!(list_ids(&v), want, "{f}: {v}");
        assert_eq!(v["totalResults"], want.len());
    }
    // Values holding SQL wildcard and quoting characters match literally (#13, #14).
    let w1 = create(
        &t,
        &entra_create("o'brien_%x@contoso.com", "o'brien_%x@contoso.com", "w_1%"),
    )
    .await;
    let w2 = create(
        &t,
        &entra_create("o'brienA%Bx@contoso.com", "o'brienAxBx@contoso.com", "wA1B"),
    )
    .await;
    let w1_id = w1["id"].as_str().unwrap().to_owned();
    let w2_id = w2["id"].as_str().unwrap().to_owned();
    for (f, want) in [
        ("userName eq \"o'brien_%x@contoso.com\"", vec![&w1_id]),
        ("userName eq \"O'BRIEN_%X@contoso.com\"", vec![&w1_id]),
        ("userName eq \"o'brienA%Bx@contoso.com\"", vec![&w2_id]),
        ("emails.value eq \"o'brien_%x@contoso.com\"", vec![&w1_id]),
        (
            "emails[type eq \"work\"].value eq \"o'brien_%x@contoso.com\"",
            vec![&w1_id],
        ),
        ("externalId eq \"w_1%\"", vec![&w1_id]),
        ("externalId eq \"w%\"", vec![]),
        ("userName eq \"%\"", vec![]),
        ("userName eq \"o'brien__x@contoso.com\"", vec![]),
    ] {
        let v = filter(&t, f).await;
        let want: Vec<String> = want.into_iter().cloned().collect();
        assert_eq!(list_ids(&v), want, "{f}: {v}");
    }
    // The tutorial's unquoted sample `externalId eq jyoung` is not valid SCIM; we either
    // match (tolerance) or say invalidFilter — never a 5xx or a wrong match.
    let r = t
        .get(&format!("/Users?filter={}", enc("externalId eq auser")))
        .await;
    if r.status == 200 {
        assert_eq!(list_ids(&assert_list(&r)), vec![a_id.clone()]);
    } else {
        r.assert_scim_error(400, Some("invalidFilter"));
    }
    // Unsupported expressions ⇒ 400 invalidFilter (#16).
    for f in [
        "userName eq",
        "userName zz \"x\"",
        "(userName eq \"x\"",
        "nosuch..attr eq 1",
    ] {
        let r = t.get(&format!("/Users?filter={}", enc(f))).await;
        r.assert_scim_error(400, Some("invalidFilter"));
        assert_scim_content_type(&r);
    }
}

/// §3.6 create with what real Entra mappings carry (#18, #21, #23), then the default
/// PATCH forms (§3.8, §3.9): capitalised ops, one op per attribute, `"False"`/`"True"`.
#[tokio::test]
async fn entra_default_patch_forms() {
    let app = TestApp::spawn_with(Opts::production()).await;
    let t = app.tenant("Entra Default");
    let un = "Test_User_00aa@contoso.onmicrosoft.com";
    let mut body = entra_create(
        un,
        "Test_User_11bb@testuser.com",
        "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
    );
    body["displayName"] = json!("Test User");
    body["title"] = json!("Backup Admin");
    body["preferredLanguage"] = json!("en-US");
    body["addresses"] = json!([{"type":"work","formatted":"1 Main St","streetAddress":"1 Main St",
        "locality":"Redmond","region":"WA","postalCode":"98052","country":"US","primary":false}]);
    body["phoneNumbers"] = json!([{"type":"work","value":"+1 (425) 555-0100"},
        {"type":"mobile","value":"425.555.0101"},{"type":"fax","value":"425-555-0102"}]);
    body[ENTERPRISE_URN] = json!({"employeeNumber":"701984","department":"IT",
        "manager":{"value":"26118915-6090-4610-87a4-49d0767a7ab4"}});
    let u = create(&t, &body).await;
    let id = u["id"].as_str().unwrap().to_owned();
    for k in [
        "userName",
        "externalId",
        "emails",
        "name",
        "displayName",
        "title",
        "preferredLanguage",
        "addresses",
        "phoneNumbers",
    ] {
        assert_eq!(u[k], body[k], "#23 {k} stored exactly as sent: {u}");
    }
    assert_eq!(u[ENTERPRISE_URN]["employeeNumber"], "701984");
    assert_eq!(u[ENTERPRISE_URN]["department"], "IT");
    assert_eq!(
        u[ENTERPRISE_URN]["manager"]["value"],
        "26118915-6090-4610-87a4-49d0767a7ab4"
    );
    assert!(u.get("roles").is_none_or(|r| r == &json!([])), "{u}");

    // Duplicate create (any case) ⇒ 409 uniqueness (#20, #43).
    let mut dup = body.clone();
    dup["userName"] = json!(un.to_uppercase());
    t.post("/Users", &dup)
        .await
        .assert_scim_error(409, Some("uniqueness"));
    assert_eq!(assert_list(&t.get("/Users").await)["totalResults"], 1);

    // Multi-valued + single-valued replace (§3.8 first sample; #27, #29).
    let u = patch_ok(&t, &id, json!([
        {"op":"Replace","path":"emails[type eq \"work\"].value","value":"updatedEmail@microsoft.com"},
        {"op":"Replace","path":"name.familyName","value":"updatedFamilyName"}])).await;
    assert_eq!(
        u["emails"],
        json!([{"primary":true,"type":"work","value":"updatedEmail@microsoft.com"}])
    );
    assert_eq!(u["name"]["familyName"], "updatedFamilyName");
    assert_eq!(u["name"]["givenName"], "givenName", "untouched: {u}");
    // The email filter finds the new address (#14).
    let v = filter(
        &t,
        "emails[type eq \"work\"].value eq \"updatedEmail@microsoft.com\"",
    )
    .await;
    assert_eq!(list_ids(&v), vec![id.clone()]);

    // userName (UPN) change keeps the id (#34).
    let new_un = "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com";
    let u = patch_ok(
        &t,
        &id,
        json!([{"op":"Replace","path":"userName","value":new_un}]),
    )
    .await;
    assert_eq!(u["userName"], new_un);
    assert_eq!(u["id"], id.as_str());
    assert_eq!(
        filter(&t, &format!("userName eq \"{un}\"")).await["totalResults"],
        0
    );
    assert_eq!(
        list_ids(&filter(&t, &format!("userName eq \"{new_un}\"")).await),
        vec![id.clone()]
    );

    // "Add" on attributes that already have a value: a set, not a second element (#30).
    let u = patch_ok(
        &t,
        &id,
        json!([
        {"op":"Add","path":"emails[type eq \"work\"].value","value":"added@contoso.com"},
        {"op":"Add","path":"nickName","value":"Babs"},
        {"op":"Add","path":"title","value":"Senior Backup Admin"}]),
    )
    .await;
    assert_eq!(u["emails"].as_array().unwrap().len(), 1, "{u}");
    assert_eq!(u["emails"][0]["value"], "added@contoso.com");
    assert_eq!(u["emails"][0]["type"], "work");
    assert_eq!(u["nickName"], "Babs");
    assert_eq!(u["title"], "Senior Backup Admin");

    // "Replace multiple attributes" without the flag: one op per attribute with a path,
    // including the enterprise URN path with a colon (§3.8; #29).
    let u = patch_ok(&t, &id, json!([
        {"op":"Replace","path":"displayName","value":"Bjfe Unua"},
        {"op":"Replace","path":"emails[type eq \"work\"].value","value":"TestMhvaes@test.microsoft.com"},
        {"op":"Replace","path":"name.givenName","value":"Kkom"},
        {"op":"Replace","path":"name.familyName","value":"Unua"},
        {"op":"Replace","path":"name.formatted","value":"Kkom Unua"},
        {"op":"Replace","path":"externalId","value":"kunua"},
        {"op":"Replace","path":"preferredLanguage","value":"de-DE"},
        {"op":"Replace","path":"addresses[type eq \"work\"].streetAddress","value":"2 Side St"},
        {"op":"Replace","path":"addresses[type eq \"work\"].locality","value":"Seattle"},
        {"op":"Replace","path":"phoneNumbers[type eq \"mobile\"].value","value":"+49 30 1234"},
        {"op":"Replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber","value":"Aklq"},
        {"op":"Replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"Ops"},
        {"op":"Replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":"mgr-42"}])).await;
    assert_eq!(u["displayName"], "Bjfe Unua");
    assert_eq!(
        u["emails"],
        json!([{"primary":true,"type":"work","value":"TestMhvaes@test.microsoft.com"}])
    );
    assert_eq!(
        u["name"],
        json!({"givenName":"Kkom","familyName":"Unua","formatted":"Kkom Unua"})
    );
    assert_eq!(u["externalId"], "kunua");
    assert_eq!(u["preferredLanguage"], "de-DE");
    assert_eq!(u["addresses"].as_array().unwrap().len(), 1, "{u}");
    assert_eq!(u["addresses"][0]["streetAddress"], "2 Side St");
    assert_eq!(u["addresses"][0]["locality"], "Seattle");
    assert_eq!(
        u["addresses"][0]["postalCode"], "98052",
        "other sub-attributes kept: {u}"
    );
    let phones = u["phoneNumbers"].as_array().unwrap();
    assert_eq!(phones.len(), 3, "{u}");
    let mobile = phones.iter().find(|p| p["type"] == "mobile").unwrap();
    assert_eq!(mobile["value"], "+49 30 1234", "#23 not reformatted");
    assert_eq!(u[ENTERPRISE_URN]["employeeNumber"], "Aklq");
    assert_eq!(u[ENTERPRISE_URN]["department"], "Ops");
    // Entra's manager as a bare string becomes the manager's `value`.
    assert_eq!(u[ENTERPRISE_URN]["manager"]["value"], "mgr-42", "{u}");
    assert_eq!(
        list_ids(&filter(&t, "externalId eq \"kunua\"").await),
        vec![id.clone()]
    );

    // Disable: Replace active "False" — a string (§3.9; #25, #32).
    let u = patch_ok(
        &t,
        &id,
        json!([{"op":"Replace","path":"active","value":"False"}]),
    )
    .await;
    assert_eq!(u["active"], false, "returned as a JSON boolean");
    assert_eq!(get_user(&t, &id).await["active"], false);
    // The validator's "Disable User" read-back through the filter (§3.16).
    let v = filter(&t, &format!("userName eq \"{new_un}\"")).await;
    assert_eq!(list_ids(&v), vec![id.clone()]);
    assert_eq!(v["Resources"][0]["active"], false, "{v}");
    // A retried disable is harmless (#43).
    let u = patch_ok(
        &t,
        &id,
        json!([{"op":"Replace","path":"active","value":"False"}]),
    )
    .await;
    assert_eq!(u["active"], false);
    // Re-enable "True" (the FusionAuth bug, §3.9; #33).
    let u = patch_ok(
        &t,
        &id,
        json!([{"op":"Replace","path":"active","value":"True"}]),
    )
    .await;
    assert_eq!(u["active"], true);
    assert_eq!(u["id"], id.as_str());
    // Any case (#25).
    for (v, want) in [
        ("false", false),
        ("TRUE", true),
        ("FaLsE", false),
        ("true", true),
    ] {
        let u = patch_ok(&t, &id, json!([{"op":"Replace","path":"active","value":v}])).await;
        assert_eq!(u["active"], want, "{v}");
    }
    // Nothing ever reformatted the untouched values (#23).
    let u = get_user(&t, &id).await;
    assert_eq!(u["title"], "Senior Backup Admin");
    assert_eq!(assert_list(&t.get("/Users").await)["totalResults"], 1);

    // A Replace that would take another user's userName ⇒ 409, nothing changed (#34).
    let other = create(
        &t,
        &entra_create("other@contoso.com", "other@contoso.com", "other"),
    )
    .await;
    let r = t
        .patch(
            &format!("/Users/{id}"),
            &patch(json!([{"op":"Replace","path":"userName","value":"OTHER@contoso.com"}])),
        )
        .await;
    r.assert_scim_error(409, Some("uniqueness"));
    assert_eq!(get_user(&t, &id).await["userName"], new_un);
    assert_eq!(
        get_user(&t, other["id"].as_str().unwrap()).await["userName"],
        "other@contoso.com"
    );
}

/// #30: `Add`/`Replace` on `emails[type eq "work"].value` creates the work email when the
/// user has none (or only another type), without duplicating types (#23).
#[tokio::test]
async fn entra_work_email_created_on_absent() {
    let app = TestApp::spawn_with(Opts::production()).await;
    let t = app.tenant("Entra Email");
    let u = create(
        &t,
        &json!({"schemas":[USER_URN],"userName":"noemail@contoso.com","active":true}),
    )
    .await;
    let id = u["id"].as_str().unwrap().to_owned();
    assert!(u.get("emails").is_none(), "{u}");
    let u = patch_ok(
        &t,
        &id,
        json!([{"op":"Add","path":"emails[type eq \"work\"].value","value":"noemail@contoso.com"}]),
    )
    .await;
    assert_eq!(
        u["emails"],
        json!([{"type":"work","value":"noemail@contoso.com"}])
    );

    let u = create(
        &t,
        &json!({"schemas":[USER_URN],"userName":"home@contoso.com",
        "emails":[{"type":"home","value":"me@home.example"}]}),
    )
    .await;
    let id = u["id"].as_str().unwrap().to_owned();
    let u = patch_ok(&t, &id, json!([{"op":"Replace","path":"emails[type eq \"work\"].value","value":"home@contoso.com"}])).await;
    let emails = u["emails"].as_array().unwrap();
    assert_eq!(emails.len(), 2, "{u}");
    assert!(
        emails.contains(&json!({"type":"home","value":"me@home.example"})),
        "{u}"
    );
    assert!(
        emails.contains(&json!({"type":"work","value":"home@contoso.com"})),
        "{u}"
    );
    let v = filter(&t, "emails[type eq \"work\"].value eq \"home@contoso.com\"").await;
    assert_eq!(list_ids(&v), vec![id.clone()]);
    // Phone numbers and addresses the same way (#29).
    let u = patch_ok(
        &t,
        &id,
        json!([
        {"op":"Add","path":"phoneNumbers[type eq \"fax\"].value","value":"425-555-0102"},
        {"op":"Add","path":"addresses[type eq \"work\"].postalCode","value":"98052"}]),
    )
    .await;
    assert_eq!(
        u["phoneNumbers"],
        json!([{"type":"fax","value":"425-555-0102"}])
    );
    assert_eq!(
        u["addresses"],
        json!([{"type":"work","postalCode":"98052"}])
    );
}

/// `aadOptscim062020` (§3.8, §3.9, §3.12): lowercase ops, boolean active, and several
/// replaces folded into one path-less op with dotted and URN-qualified keys (#28).
#[tokio::test]
async fn entra_flag_aadoptscim062020_forms() {
    let app = TestApp::spawn_with(Opts::production()).await;
    let t = app.tenant("Entra Flag");
    let mut body = entra_create("flag.user@contoso.com", "flag.user@contoso.com", "fuser");
    body[ENTERPRISE_URN] = json!({"employeeNumber":"1"});
    let u = create(&t, &body).await;
    let id = u["id"].as_str().unwrap().to_owned();
    let path = format!("/Users/{id}?aadOptscim062020");
    let send = |ops: Value| {
        let t = t.clone();
        let path = path.clone();
        async move {
            let r = t.patch(&path, &patch(ops)).await;
            assert_eq!(r.status, 200, "{}", r.text);
            assert_scim_content_type(&r);
            r.json()
        }
    };
    let u = send(json!([
        {"op":"replace","path":"emails[type eq \"work\"].value","value":"TestMhvaes@test.microsoft.com"},
        {"op":"replace","value":{"displayName":"Bjfe","name.givenName":"Kkom","name.familyName":"Unua",
          "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"Aklq"}}])).await;
    assert_eq!(
        u["emails"],
        json!([{"primary":true,"type":"work","value":"TestMhvaes@test.microsoft.com"}])
    );
    assert_eq!(u["displayName"], "Bjfe");
    assert_eq!(u["name"]["givenName"], "Kkom");
    assert_eq!(u["name"]["familyName"], "Unua");
    assert_eq!(u["name"]["formatted"], "givenName familyName", "untouched");
    assert_eq!(u[ENTERPRISE_URN]["employeeNumber"], "Aklq");
    let got = get_user(&t, &id).await;
    assert_eq!(strip_meta(&got), strip_meta(&u));

    // Lowercase single-value add.
    let u = send(json!([{"op":"add","path":"nickName","value":"Babs"}])).await;
    assert_eq!(u["nickName"], "Babs");

    // Disable / enable with booleans, with and without a path (#25, #32, #33).
    let u = send(json!([{"op":"replace","path":"active","value":false}])).await;
    assert_eq!(u["active"], false);
    let v = filter(&t, "userName eq \"flag.user@contoso.com\"").await;
    assert_eq!(v["Resources"][0]["active"], false);
    let u = send(json!([{"op":"replace","path":"active","value":true}])).await;
    assert_eq!(u["active"], true);
    let u = send(json!([{"op":"replace","value":{"active":false,"displayName":"Gone"}}])).await;
    assert_eq!(u["active"], false);
    assert_eq!(u["displayName"], "Gone");
    assert_eq!(get_user(&t, &id).await["active"], false);
    let u = send(json!([{"op":"replace","value":{"active":true}}])).await;
    assert_eq!(u["active"], true);
    assert_eq!(u["id"], id.as_str());

    // Read-only / unknown keys in a path-less value are ignored, like on POST (#21).
    let u = send(
        json!([{"op":"replace","value":{"id":"something-else","title":"CTO",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department":"R&D"}}]),
    )
    .await;
    assert_eq!(u["id"], id.as_str());
    assert_eq!(u["title"], "CTO");
    assert_eq!(u[ENTERPRISE_URN]["department"], "R&D");
    assert_eq!(u[ENTERPRISE_URN]["employeeNumber"], "Aklq");
}

/// `active` as strings on POST too (#25), and the Validator's create without `primary`
/// and with `emails.primary` as a string (§3.16).
#[tokio::test]
async fn entra_string_booleans_on_create() {
    let app = TestApp::spawn_with(Opts::production()).await;
    let t = app.tenant("Entra Strings");
    let u = create(
        &t,
        &json!({"schemas":[USER_URN],"userName":"s1@contoso.com","active":"False"}),
    )
    .await;
    assert_eq!(u["active"], false);
    let id = u["id"].as_str().unwrap().to_owned();
    assert_eq!(get_user(&t, &id).await["active"], false);
    let u = create(
        &t,
        &json!({"schemas":[USER_URN],"userName":"s2@contoso.com","active":"True"}),
    )
    .await;
    assert_eq!(u["active"], true);
    // PUT with a string (#25, #26).
    let r = t
        .put(
            &format!("/Users/{id}"),
            &json!({"schemas":[USER_URN],"userName":"s1@contoso.com","active":"TRUE"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["active"], true);
    // The Validator's create body (§3.6): externalId, displayName, name.formatted, a work
    // email without primary.
    let body = json!({"schemas":[USER_URN, ENTERPRISE_URN],"userName":"Vbxv@contoso.com",
        "externalId":"Hqwz","displayName":"Aoin","active":true,
        "name":{"formatted":"Wlkz","familyName":"Ssvq","givenName":"Mjrz"},
        "emails":[{"type":"work","value":"Vbxv@contoso.com"}]});
    let u = create(&t, &body).await;
    assert_eq!(u["emails"], body["emails"]);
    assert_eq!(u["name"], body["name"]);
    // The Validator sends emails.primary as a string.
    let body = json!({"schemas":[USER_URN],"userName":"pstr@contoso.com","active":true,
        "emails":[{"type":"work","value":"pstr@contoso.com","primary":"True"}]});
    let u = create(&t, &body).await;
    assert_eq!(u["emails"][0]["primary"], true, "{u}");
}

/// §3.10 hard delete (#35, #43) and the Validator's create/get/filter/remove/delete family
/// (§3.16; #47).
#[tokio::test]
async fn entra_validator_family_and_hard_delete() {
    let app = TestApp::spawn_with(Opts::production()).await;
    let t = app.tenant("Entra Validator");
    let body = json!({"schemas":[USER_URN, ENTERPRISE_URN],"userName":"Rtyu@contoso.com",
        "externalId":"Plmo","displayName":"Qwer","active":true,"title":"Zxcv",
        "name":{"formatted":"A B","familyName":"B","givenName":"A"},
        "emails":[{"type":"work","value":"Rtyu@contoso.com"}],
        ENTERPRISE_URN: {"employeeNumber":"77","department":"Dept"}});
    let u = create(&t, &body).await;
    let id = u["id"].as_str().unwrap().to_owned();
    // Get by id, filter by joining property.
    assert_eq!(get_user(&t, &id).await["userName"], "Rtyu@contoso.com");
    assert_eq!(
        list_ids(&filter(&t, "userName eq \"Rtyu@contoso.com\"").await),
        vec![id.clone()]
    );
    // Filter miss.
    assert_eq!(
        filter(&t, "userName eq \"Nobody@contoso.com\"").await["totalResults"],
        0
    );
    // Patch User - Remove attributes (non-required ones).
    let u = patch_ok(&t, &id, json!([
        {"op":"Remove","path":"title"},
        {"op":"Remove","path":"name.formatted"},
        {"op":"Remove","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}])).await;
    assert!(u.get("title").is_none(), "{u}");
    assert!(u["name"].get("formatted").is_none(), "{u}");
    assert!(u[ENTERPRISE_URN].get("department").is_none(), "{u}");
    assert_eq!(u[ENTERPRISE_URN]["employeeNumber"], "77");
    // Removing the required userName is refused (Microsoft says this failure is fine).
    let r = t
        .patch(
            &format!("/Users/{id}"),
            &patch(json!([{"op":"Remove","path":"userName"}])),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(get_user(&t, &id).await["userName"], "Rtyu@contoso.com");
    // Duplicate create ⇒ 409.
    t.post("/Users", &body)
        .await
        .assert_scim_error(409, Some("uniqueness"));

    // Hard delete ⇒ 204 without a body, then 404 everywhere (#35).
    let r = t.delete(&format!("/Users/{id}")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(r.text.is_empty(), "{}", r.text);
    t.get(&format!("/Users/{id}"))
        .await
        .assert_scim_error(404, None);
    assert_eq!(
        filter(&t, "userName eq \"Rtyu@contoso.com\"").await["totalResults"],
        0
    );
    assert_eq!(
        filter(&t, &format!("id eq \"{id}\"")).await["totalResults"],
        0
    );
    assert_eq!(assert_list(&t.get("/Users").await)["totalResults"], 0);
    t.patch(
        &format!("/Users/{id}"),
        &patch(json!([{"op":"Replace","path":"active","value":"False"}])),
    )
    .await
    .assert_scim_error(404, None);
    // A retried DELETE leaves the same final state (#43).
    t.delete(&format!("/Users/{id}"))
        .await
        .assert_scim_error(404, None);
    // The Validator re-creates the user in its group tests; the userName is free again.
    let again = create(&t, &body).await;
    assert_ne!(again["id"], id.as_str(), "a new user, not the deleted one");
}

/// #6: the request body content types clients use; every response is scim+json.
#[tokio::test]
async fn entra_and_okta_request_content_types() {
    let app = TestApp::spawn_with(Opts::production()).await;
    let t = app.tenant("Content Types");
    for (i, ct) in [
        "application/scim+json",
        "application/scim+json; charset=utf-8",
        "application/json",
        "application/json; charset=utf-8",
    ]
    .iter()
    .enumerate()
    {
        let r = Reply::of(
            t.req(Method::POST, "/Users")
                .header(header::CONTENT_TYPE, *ct)
                .body(
                    json!({"schemas":[USER_URN],"userName":format!("ct{i}@contoso.com")})
                        .to_string(),
                )
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 201, "{ct}: {}", r.text);
        assert_scim_content_type(&r);
        let id = r.json()["id"].as_str().unwrap().to_owned();
        let r = Reply::of(
            t.req(Method::PATCH, &format!("/Users/{id}"))
                .header(header::CONTENT_TYPE, *ct)
                .body(patch(json!([{"op":"Replace","path":"displayName","value":"x"}])).to_string())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200, "{ct}: {}", r.text);
        assert_scim_content_type(&r);
    }
}

/// §5.4 step 7: a PATCH applies atomically — when one of Entra's per-attribute ops is
/// refused, none of the others is stored; the 400 is a SCIM error (#16-style actionable
/// detail) and the ETag does not move.
#[tokio::test]
async fn entra_patch_is_atomic() {
    let app = TestApp::spawn_with(Opts::production()).await;
    let t = app.tenant("Entra Atomic");
    let u = create(
        &t,
        &entra_create("atomic@contoso.com", "atomic@contoso.com", "atomic"),
    )
    .await;
    let id = u["id"].as_str().unwrap().to_owned();
    let before = get_user(&t, &id).await;
    let r = t
        .patch(
            &format!("/Users/{id}"),
            &patch(json!([
                {"op":"Replace","path":"displayName","value":"Half Done"},
                {"op":"Replace","path":"active","value":"False"},
                {"op":"Replace","path":"noSuchAttribute","value":"x"}])),
        )
        .await;
    let e = r.assert_scim_error(400, None);
    assert!(
        ["invalidPath", "noTarget", "invalidValue"].contains(&e["scimType"].as_str().unwrap_or("")),
        "{e}"
    );
    assert_scim_content_type(&r);
    let after = get_user(&t, &id).await;
    assert_eq!(after, before, "nothing applied");
    // A wrong-typed value (not a boolean-ish string) is refused the same way (#25).
    let r = t
        .patch(
            &format!("/Users/{id}"),
            &patch(json!([
                {"op":"Replace","path":"displayName","value":"Half Done"},
                {"op":"Replace","path":"active","value":"Maybe"}])),
        )
        .await;
    r.assert_scim_error(400, None);
    assert_eq!(get_user(&t, &id).await, before);
}
