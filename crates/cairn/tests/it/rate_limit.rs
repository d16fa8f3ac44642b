//! The per-tenant SCIM rate limit (`--scim-rate-limit N`, bursts of 2×N): a flooding
//! tenant gets 429 with `Retry-After` and a SCIM error body while another tenant is served
//! as usual; unauthenticated requests do not spend a tenant's budget; 0 turns it off.

use crate::support::*;
use reqwest::Method;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Sends `n` concurrent `GET /Users?count=1` as `tenant` and returns the replies.
async fn burst(tenant: &Tenant, n: usize) -> Vec<Reply> {
    let mut set = JoinSet::new();
    for _ in 0..n {
        let t = tenant.clone();
        set.spawn(async move { t.get("/Users?count=1").await });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

fn limited(per_second: u32) -> Opts {
    Opts {
        args: vec!["--scim-rate-limit".into(), per_second.to_string()],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_flooding_tenant_gets_429s_while_another_tenant_is_served() {
    let app = TestApp::spawn_with(limited(20)).await;
    let a = app.tenant("Flood");
    let b = app.tenant("Quiet");

    let start = Instant::now();
    let flood = {
        let a = a.clone();
        tokio::spawn(async move { burst(&a, 200).await })
    };
    // Tenant B, in the same moment, stays within its own budget (burst 40).
    let quiet = burst(&b, 30).await;
    let flood = flood.await.unwrap();
    let elapsed = start.elapsed().as_secs_f64();

    for r in &quiet {
        assert_eq!(r.status, 200, "tenant B was limited: {}", r.text);
    }
    let ok = flood.iter().filter(|r| r.status == 200).count();
    let refused: Vec<_> = flood.iter().filter(|r| r.status == 429).collect();
    assert_eq!(ok + refused.len(), 200, "only 200s and 429s");
    // The burst of 40, plus what 20/s refilled while the flood lasted (all 200 would
    // take 8 s of refill).
    assert!(
        !refused.is_empty(),
        "no 429 in {elapsed:.2}s: {ok} answered"
    );
    assert!(ok >= 40, "{ok} answered");
    assert!(
        (ok as f64) <= 40.0 + 20.0 * elapsed + 1.0,
        "{ok} answered in {elapsed:.2}s"
    );
    for r in &refused {
        let v = r.assert_scim_error(429, None);
        assert!(v.get("scimType").is_none(), "{v}");
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_scim_content_type(r);
    }

    // After Retry-After, tenant A is served again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(a.get("/Users?count=1").await.status, 200);
}

#[tokio::test]
async fn unauthenticated_requests_do_not_spend_a_tenants_budget() {
    let app = TestApp::spawn_with(limited(20)).await;
    let a = app.tenant("Target");
    let forged = Tenant {
        token: "not-a-token".into(),
        ..a.clone()
    };
    // 300 requests with a wrong token and 100 with none, all naming tenant A.
    for r in burst(&forged, 300).await {
        r.assert_scim_error(401, None);
    }
    let mut set = JoinSet::new();
    for _ in 0..100 {
        let a = a.clone();
        set.spawn(
            async move { Reply::of(a.anon(Method::GET, "/Users").send().await.unwrap()).await },
        );
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().assert_scim_error(401, None);
    }
    // Tenant A's own burst is untouched.
    for r in burst(&a, 40).await {
        assert_eq!(r.status, 200, "{}", r.text);
    }
}

#[tokio::test]
async fn a_limit_of_zero_limits_nothing() {
    let app = TestApp::spawn_with(limited(0)).await;
    let a = app.tenant("Unlimited");
    for r in burst(&a, 400).await {
        assert_eq!(r.status, 200, "{}", r.text);
    }
}

#[tokio::test]
async fn the_default_allows_100_per_second_with_bursts_of_200() {
    let help = std::process::Command::new(cairn_bin())
        .args(["serve", "--help"])
        .env_remove("CAIRN_SCIM_RATE_LIMIT")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("--scim-rate-limit"), "{help}");
    assert!(help.contains("CAIRN_SCIM_RATE_LIMIT"), "{help}");
    assert!(help.contains("[default: 100]"), "{help}");

    // The real default (the variable unset): the whole burst of 200 passes — the bucket
    // starts full and only refills — and past it, requests are refused while a flood
    // outruns the refill of 100/s.
    let app = TestApp::spawn_with(Opts::production()).await;
    let a = app.tenant("Entra");
    let start = Instant::now();
    for r in burst(&a, 200).await {
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let mut ok = 200;
    let mut refused = 0;
    // Bounded: 20 floods of 100 concurrent requests at most.
    for _ in 0..20 {
        for r in burst(&a, 100).await {
            match r.status {
                200 => ok += 1,
                429 => refused += 1,
                s => panic!("{s}: {}", r.text),
            }
        }
        if refused > 0 {
            break;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    assert!(
        refused > 0,
        "nothing refused after {ok} requests in {elapsed:.2}s"
    );
    assert!(
        (ok as f64) <= 200.0 + 100.0 * elapsed + 1.0,
        "{ok} answered in {elapsed:.2}s"
    );
}
