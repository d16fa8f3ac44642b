//! Seeding through the real SCIM API: `POST /Users` from a few concurrent clients, and
//! groups filled with `PATCH add` of 1,000 members at a time.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The userName of seeded user `i`; the wrk scripts compute the same names.
pub fn user_name(i: usize) -> String {
    format!("u{i}@bench.example")
}

/// An Okta-shaped user (RFC 7643 §4.1 core attributes plus a work email).
pub fn user_body(i: usize) -> Value {
    okta_user(
        &user_name(i),
        "Bench",
        &format!("User {i}"),
        &format!("Bench User {i}"),
    )
}

/// The user Okta sends on create and, with `id`, on a profile update: the shape of every
/// user body the suite sends (the wrk scripts build the same in Lua).
pub fn okta_user(user_name: &str, given: &str, family: &str, display: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": given, "familyName": family},
        "displayName": display,
        "emails": [{"primary": true, "value": user_name, "type": "work"}],
        "active": true
    })
}

pub struct Seeded {
    /// Index i holds the id of user `u{i}`.
    pub ids: Vec<String>,
    pub secs: f64,
}

/// Creates users 0..n with `concurrency` clients; any failure aborts the run.
pub async fn users(
    client: &reqwest::Client,
    scim: &str,
    token: &str,
    n: usize,
    concurrency: usize,
) -> Result<Seeded> {
    let next = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(Mutex::new(vec![String::new(); n]));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, ids) = (client.clone(), next.clone(), ids.clone());
        let url = format!("{scim}/Users");
        let auth = format!("Bearer {token}");
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let resp = client
                    .post(&url)
                    .header("Authorization", &auth)
                    .header("Content-Type", "application/scim+json")
                    .body(user_body(i).to_string())
                    .send()
                    .await?;
                let status = resp.status();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                if status.as_u16() != 201 {
                    bail!("seeding user {i}: HTTP {status}: {body}");
                }
                let id = body["id"].as_str().context("201 without an id")?.to_owned();
                ids.lock().expect("seed ids")[i] = id;
            }
        }));
    }
    let mut done = 0;
    for t in tasks {
        t.await??;
        done += 1;
    }
    debug_assert_eq!(done, concurrency);
    let secs = start.elapsed().as_secs_f64();
    let ids = Arc::try_unwrap(ids)
        .map_err(|_| anyhow::anyhow!("seed tasks still hold the ids"))?
        .into_inner()
        .expect("seed ids");
    Ok(Seeded { ids, secs })
}

/// Creates a group holding `members`, adding them 1,000 per PATCH; returns its id.
pub async fn group(
    client: &reqwest::Client,
    scim: &str,
    token: &str,
    name: &str,
    members: &[String],
) -> Result<String> {
    let auth = format!("Bearer {token}");
    let resp = client
        .post(format!("{scim}/Groups"))
        .header("Authorization", &auth)
        .header("Content-Type", "application/scim+json")
        .body(
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": name,
                "members": []
            })
            .to_string(),
        )
        .send()
        .await?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status.as_u16() != 201 {
        bail!("creating group {name}: HTTP {status}: {body}");
    }
    let id = body["id"].as_str().context("201 without an id")?.to_owned();
    for chunk in members.chunks(1000) {
        let value: Vec<Value> = chunk.iter().map(|m| json!({"value": m})).collect();
        let resp = client
            .patch(format!("{scim}/Groups/{id}"))
            .header("Authorization", &auth)
            .header("Content-Type", "application/scim+json")
            .body(
                json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "add", "path": "members", "value": value}]
                })
                .to_string(),
            )
            .send()
            .await?;
        let status = resp.status();
        if !status.is_success() {
            bail!(
                "filling group {name}: HTTP {status}: {}",
                resp.text().await.unwrap_or_default()
            );
        }
    }
    Ok(id)
}
