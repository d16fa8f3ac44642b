//! The audit log: every SCIM write and every settings or token change, newest first, with
//! actor, action, target, changed attributes before → after, User-Agent and the request id
//! of the response; failed writes and reads leave no trace; secrets never appear.

use crate::support::*;
use reqwest::{header, Method};
use serde_json::{json, Value};

fn audit(app: &TestApp, tenant: &str) -> Vec<Value> {
    app.cli(&["audit", "--tenant", tenant, "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .clone()
}

/// Sends `rb` with a User-Agent and returns the reply.
async fn send_as(rb: reqwest::RequestBuilder, ua: &str, request_id: Option<&str>) -> Reply {
    let mut rb = rb.header(header::USER_AGENT, ua);
    if let Some(id) = request_id {
        rb = rb.header("x-request-id", id);
    }
    Reply::of(rb.send().await.unwrap()).await
}

fn patch(ops: Value) -> Value {
    json!({"schemas":[PATCH_URN],"Operations":ops})
}

#[tokio::test]
async fn every_scim_write_is_recorded_with_actor_changes_client_and_request_id() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Audited");
    let base_events = audit(&app, &t.id);
    // The harness's setup: tenant created, SCIM enabled, Account Size, token generated.
    let tg: Vec<&Value> = base_events
        .iter()
        .filter(|e| e["action"] == "token_generated")
        .collect();
    assert_eq!(tg.len(), 1, "{base_events:?}");
    assert_eq!(tg[0]["actor_kind"], "operator");

    // 1. create (with a password, which must never be stored or logged)
    let password = "Pa55word-that-must-never-appear";
    let r = send_as(
        t.send(
            Method::POST,
            "/Users",
            &json!({"schemas":[USER_URN],"userName":"audit@example.test",
                    "name":{"givenName":"Aud","familyName":"It"},
                    "emails":[{"value":"audit@example.test","type":"work","primary":true}],
                    "password": password, "active": true}),
        ),
        "Okta SCIM Client 1.0.0",
        Some("client-req-0001"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("x-request-id"), Some("client-req-0001"));
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/Users/{id}");
    let mut expected: Vec<(&str, String, &str)> = vec![(
        "user_created",
        "client-req-0001".to_owned(),
        "Okta SCIM Client 1.0.0",
    )];

    // 2. PATCH givenName and title (generated request id)
    let r = send_as(
        t.send(
            Method::PATCH,
            &path,
            &patch(json!([
                {"op":"replace","path":"name.givenName","value":"Audrey"},
                {"op":"add","path":"title","value":"Auditor"}
            ])),
        ),
        "Azure AD SCIM Client",
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rid = r.header("x-request-id").expect("a request id").to_owned();
    assert!(!rid.is_empty());
    expected.push(("user_updated", rid, "Azure AD SCIM Client"));

    // 3. suspend by PATCH, 4. reactivate by PUT, 5. delete
    let r = send_as(
        t.send(
            Method::PATCH,
            &path,
            &patch(json!([{"op":"Replace","path":"active","value":"False"}])),
        ),
        "Azure AD SCIM Client",
        Some("susp-1"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    expected.push(("user_suspended", "susp-1".into(), "Azure AD SCIM Client"));
    let r = send_as(
        t.send(
            Method::PUT,
            &path,
            &json!({"schemas":[USER_URN],"userName":"audit@example.test",
                    "name":{"givenName":"Audrey","familyName":"It"},"title":"Auditor",
                    "emails":[{"value":"audit@example.test","type":"work","primary":true}],
                    "active": true, "password": password}),
        ),
        "Okta SCIM Client 1.0.0",
        Some("put-1"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    expected.push(("user_reactivated", "put-1".into(), "Okta SCIM Client 1.0.0"));

    // Failed writes and reads leave no trace.
    let before_failures = audit(&app, &t.id).len();
    for r in [
        t.post(
            "/Users",
            &json!({"schemas":[USER_URN],"userName":"AUDIT@example.test"}),
        )
        .await,
        t.patch(
            &path,
            &patch(json!([{"op":"replace","path":"nope","value":1}])),
        )
        .await,
        Reply::of(
            t.send(
                Method::PATCH,
                &path,
                &patch(json!([{"op":"replace","path":"title","value":"x"}])),
            )
            .header(header::IF_MATCH, "W/\"1\"")
            .send()
            .await
            .unwrap(),
        )
        .await,
        t.put(
            "/Users/00000000-0000-4000-8000-000000000000",
            &json!({"userName":"x"}),
        )
        .await,
        t.get(&path).await,
        t.get("/Users?filter=userName%20eq%20%22audit%40example.test%22")
            .await,
    ] {
        assert!(r.status == 200 || r.status >= 400, "{}", r.text);
    }
    // A PATCH that changes nothing is not a change either.
    let r = t
        .patch(
            &path,
            &patch(json!([{"op":"replace","path":"title","value":"Auditor"}])),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(audit(&app, &t.id).len(), before_failures);

    let r = send_as(
        t.req(Method::DELETE, &path),
        "Okta SCIM Client 1.0.0",
        Some("del-1"),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(r.header("x-request-id"), Some("del-1"));
    expected.push(("user_deleted", "del-1".into(), "Okta SCIM Client 1.0.0"));

    let events = audit(&app, &t.id);
    assert_eq!(events.len(), base_events.len() + expected.len());
    // Newest first: the SCIM events in reverse order of the requests, then the setup.
    let scim_events: Vec<&Value> = events[..expected.len()].iter().rev().collect();
    for (e, (action, rid, ua)) in scim_events.iter().zip(&expected) {
        assert_eq!(e["action"], *action, "{e}");
        assert_eq!(e["actor_kind"], "token", "{e}");
        assert!(e["actor_id"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
        assert_eq!(e["target_type"], "user", "{e}");
        assert_eq!(e["target_id"], id.as_str(), "{e}");
        assert_eq!(e["target_name"], "audit@example.test", "{e}");
        assert_eq!(e["tenant_id"], t.id.as_str(), "{e}");
        assert_eq!(e["request_id"], rid.as_str(), "{e}");
        assert_eq!(e["user_agent"], *ua, "{e}");
        assert!(e["at"].as_str().is_some(), "{e}");
    }
    let actor = &scim_events[0]["actor_id"];
    assert!(scim_events.iter().all(|e| &e["actor_id"] == actor));
    // ids strictly decreasing and times non-increasing: newest first.
    for w in events.windows(2) {
        assert!(
            w[0]["id"].as_i64() > w[1]["id"].as_i64(),
            "{} / {}",
            w[0],
            w[1]
        );
        assert!(
            w[0]["at"].as_str() >= w[1]["at"].as_str(),
            "{} / {}",
            w[0],
            w[1]
        );
    }

    // What changed, before → after.
    let created = scim_events[0];
    assert_eq!(
        created["changes"]["userName"],
        json!({"before": null, "after": "audit@example.test"})
    );
    assert_eq!(created["changes"]["quotaGb"]["after"], 50);
    let updated = scim_events[1];
    assert_eq!(
        updated["changes"],
        json!({
            "name.givenName": {"before": "Aud", "after": "Audrey"},
            "title": {"before": null, "after": "Auditor"}
        })
    );
    assert_eq!(
        scim_events[2]["changes"]["active"],
        json!({"before": true, "after": false})
    );
    assert_eq!(
        scim_events[3]["changes"]["active"],
        json!({"before": false, "after": true})
    );
    assert!(scim_events[4]["changes"]["purgeAt"]["after"].is_string());

    // No secrets anywhere in the log: neither the password nor the token.
    let all = app.cli(&["audit", "--tenant", &t.id, "--json"]).ok().stdout;
    let plain = app.cli(&["audit", "--tenant", &t.id]).ok().stdout;
    for text in [&all, &plain] {
        assert!(!text.contains(password), "password in the audit log");
        assert!(!text.to_lowercase().contains("password"), "{text}");
        assert_no_token(text, &t.token);
    }
}

/// Neither the token nor any 12-character piece of its secret part appears in `text`.
fn assert_no_token(text: &str, token: &str) {
    assert!(!text.contains(token), "token in the audit log");
    let secret = token.strip_prefix("cairn_").unwrap_or(token);
    let chars: Vec<char> = secret.chars().collect();
    for w in chars.windows(12) {
        let piece: String = w.iter().collect();
        assert!(
            !text.contains(&piece),
            "a piece of the token ({piece}) in: {text}"
        );
    }
}

#[tokio::test]
async fn settings_and_token_changes_are_recorded_without_secrets() {
    let app = TestApp::spawn().await;
    let created = app
        .cli(&["tenant", "create", "--name", "Settings Co", "--json"])
        .ok()
        .json();
    let tid = created["id"].as_str().unwrap().to_owned();
    app.cli(&[
        "scim",
        "enable",
        "--tenant",
        &tid,
        "--account-size-gb",
        "20",
    ])
    .ok();
    let tok1 = app
        .cli(&["scim", "token", "--tenant", &tid, "--json"])
        .ok()
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    app.cli(&[
        "scim",
        "enable",
        "--tenant",
        &tid,
        "--account-size-gb",
        "35",
    ])
    .ok();
    // Enabling again with the same size changes nothing and records nothing.
    app.cli(&[
        "scim",
        "enable",
        "--tenant",
        &tid,
        "--account-size-gb",
        "35",
    ])
    .ok();
    app.cli(&["scim", "disable", "--tenant", &tid]).ok();
    let tok2 = app
        .cli(&["scim", "token", "--tenant", &tid, "--json"])
        .ok()
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let dash_password = "dashboard-secret-passphrase";
    app.cli_stdin(
        &[
            "user",
            "create",
            "--tenant",
            &tid,
            "--email",
            "admin@settings.test",
            "--role",
            "administrator",
            "--password-stdin",
        ],
        Some(&format!("{dash_password}\n")),
    )
    .ok();

    let ev = audit(&app, &tid);
    let actions: Vec<&str> = ev.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "dashboard_user_created",
            "token_generated",
            "scim_disabled",
            "account_size_changed",
            "token_generated",
            "account_size_changed",
            "scim_enabled",
            "tenant_created",
        ],
        "{ev:#?}"
    );
    for e in &ev {
        assert_eq!(e["actor_kind"], "operator", "{e}");
        assert_eq!(e["tenant_id"], tid.as_str(), "{e}");
    }
    assert_eq!(
        ev[2]["changes"]["scimEnabled"],
        json!({"before": true, "after": false})
    );
    assert_eq!(
        ev[3]["changes"]["accountSizeGb"],
        json!({"before": 20, "after": 35})
    );
    assert_eq!(
        ev[5]["changes"]["accountSizeGb"],
        json!({"before": 10, "after": 20})
    );
    assert_eq!(
        ev[6]["changes"]["scimEnabled"],
        json!({"before": false, "after": true})
    );
    assert_eq!(ev[7]["target_name"], "Settings Co");
    for i in [1, 4] {
        assert_eq!(ev[i]["target_id"], tid.as_str());
        assert!(
            ev[i]["user_agent"]
                .as_str()
                .is_some_and(|ua| ua.starts_with("cairn-cli/")),
            "{}",
            ev[i]
        );
    }
    assert_eq!(ev[0]["target_name"], "admin@settings.test");
    assert_eq!(ev[0]["changes"]["role"]["after"], "administrator");

    let text = app.cli(&["audit", "--tenant", &tid, "--json"]).ok().stdout;
    assert_no_token(&text, &tok1);
    assert_no_token(&text, &tok2);
    assert!(!text.contains(dash_password));
    assert!(
        !text.contains("$argon2"),
        "a password hash in the audit log"
    );

    // The audit of an unknown tenant is an error, not an empty list.
    let r = app.cli(&[
        "audit",
        "--tenant",
        "00000000-0000-4000-8000-000000000000",
        "--json",
    ]);
    assert!(!r.status.success(), "{r:?}");
    assert!(!r.stderr.contains("panicked"));

    // The server log never carries tokens or bodies either.
    let t = Tenant {
        id: tid.clone(),
        url: created["tenant_url"].as_str().unwrap().to_owned(),
        token: tok2.clone(),
        client: app.client.clone(),
    };
    app.cli(&[
        "scim",
        "enable",
        "--tenant",
        &tid,
        "--account-size-gb",
        "35",
    ])
    .ok();
    t.create_user(
        &json!({"schemas":[USER_URN],"userName":"logged@settings.test","password":dash_password}),
    )
    .await;
    let log = app.log();
    assert_no_token(&log, &tok2);
    assert!(!log.contains(dash_password));
    assert!(
        !log.contains("logged@settings.test"),
        "SCIM bodies are never logged"
    );
}
