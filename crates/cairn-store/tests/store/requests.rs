//! The provisioning inspector's request log and body-capture switch.

use crate::support::*;
use cairn_core::audit::{Action, AuditQuery};
use cairn_core::ids::TenantId;
use cairn_core::requests::{Client, RequestEntry, RequestFilter};
use time::Duration;

fn entry(tenant: &TenantId, at: time::OffsetDateTime, status: u16) -> RequestEntry {
    RequestEntry {
        id: 0,
        tenant_id: tenant.clone(),
        at,
        token_id: Some("tok-1".into()),
        method: "PATCH".into(),
        path: "/Users/u1?aadOptscim062020".into(),
        client: Client::Entra,
        dialect: Some("Entra with aadOptscim062020".into()),
        user_agent: Some("Azure AD".into()),
        status,
        scim_type: (status == 409).then(|| "uniqueness".to_owned()),
        error: (status >= 400).then(|| "no".to_owned()),
        latency_us: 1234,
        resource_type: Some("User".into()),
        resource_id: Some("u1".into()),
        notes: vec!["active sent as the string \"False\"; treated as false".into()],
        request_body: Some("{\"password\":\"[redacted]\"}".into()),
        response_body: None,
    }
}

#[tokio::test]
async fn entries_round_trip_filter_and_stay_in_their_tenant() {
    let db = db_async().await;
    let s = &*db.store;
    let a = tenant(s, "a").await;
    let b = tenant(s, "b").await;
    let t0 = now() - Duration::minutes(10);
    let mut batch = vec![
        entry(&a.id, t0, 200),
        entry(&a.id, t0 + Duration::minutes(1), 409),
        entry(&b.id, t0 + Duration::minutes(2), 500),
    ];
    batch[0].resource_id = Some("u0".into());
    batch[0].client = Client::Okta;
    s.record_requests(batch.clone()).await.unwrap();

    let all = s
        .list_requests(&a.id, &RequestFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all[0].id > all[1].id, "newest first");
    let mut want = batch[1].clone();
    want.id = all[0].id;
    assert_eq!(all[0], want);
    assert!(all.iter().all(|e| e.tenant_id == a.id));

    let aid = &a.id;
    let only = |f: RequestFilter| async move { s.list_requests(aid, &f).await.unwrap() };
    let mut f = RequestFilter::default();
    f.parse_status("4xx").unwrap();
    assert_eq!(only(f).await.len(), 1);
    let f = RequestFilter {
        status: Some(200),
        ..Default::default()
    };
    assert_eq!(only(f).await[0].resource_id.as_deref(), Some("u0"));
    let f = RequestFilter {
        client: Some(Client::Okta),
        ..Default::default()
    };
    assert_eq!(only(f).await.len(), 1);
    let f = RequestFilter {
        resource_id: Some("u1".into()),
        ..Default::default()
    };
    assert_eq!(only(f).await.len(), 1);
    let f = RequestFilter {
        since: Some(t0 + Duration::seconds(30)),
        ..Default::default()
    };
    assert_eq!(only(f).await.len(), 1);
    let f = RequestFilter {
        before_id: Some(all[0].id),
        ..Default::default()
    };
    assert_eq!(only(f).await[0].id, all[1].id);
    let f = RequestFilter {
        limit: 1,
        ..Default::default()
    };
    assert_eq!(only(f).await.len(), 1);
    // Tenant b's 500 is not a's.
    let mut f = RequestFilter::default();
    f.parse_status("5xx").unwrap();
    assert!(only(f).await.is_empty());
}

#[tokio::test]
async fn pruning_bounds_age_and_count_per_tenant() {
    let db = db_async().await;
    let s = &*db.store;
    let a = tenant(s, "a").await;
    let b = tenant(s, "b").await;
    let t = now();
    let mut batch: Vec<RequestEntry> = (0..6)
        .map(|i| entry(&a.id, t - Duration::minutes(10 - i), 200))
        .collect();
    batch.push(entry(&a.id, t - Duration::days(8), 200));
    batch.extend((0..3).map(|i| entry(&b.id, t - Duration::minutes(5 - i), 200)));
    // Recorded out of order: the old one came last (ids order the count bound).
    s.record_requests(batch.clone()).await.unwrap();
    let gone = s.prune_requests(t - Duration::days(7), 4).await.unwrap();
    assert_eq!(gone, 3, "one too old, two over a's bound");
    let a_left = s
        .list_requests(&a.id, &RequestFilter::default())
        .await
        .unwrap();
    assert_eq!(a_left.len(), 4);
    assert!(a_left.iter().all(|e| e.at > t - Duration::days(1)));
    assert_eq!(
        a_left.last().unwrap().at,
        t - Duration::minutes(8),
        "the newest kept"
    );
    let b_left = s
        .list_requests(&b.id, &RequestFilter::default())
        .await
        .unwrap();
    assert_eq!(b_left.len(), 3, "another tenant's bound is its own");
}

#[tokio::test]
async fn token_health_counts_the_window() {
    let db = db_async().await;
    let s = &*db.store;
    let a = tenant(s, "a").await;
    let t = now();
    let mut batch = vec![
        entry(&a.id, t - Duration::hours(30), 500), // outside the window
        entry(&a.id, t - Duration::hours(3), 200),
        entry(&a.id, t - Duration::hours(2), 409),
        entry(&a.id, t - Duration::hours(1), 409),
        entry(&a.id, t - Duration::minutes(50), 400),
    ];
    let mut other = entry(&a.id, t - Duration::minutes(5), 200);
    other.token_id = Some("tok-2".into());
    other.client = Client::Okta;
    batch.push(other);
    s.record_requests(batch.clone()).await.unwrap();
    let h = s
        .token_health(&a.id, t - Duration::hours(24))
        .await
        .unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].token_id, "tok-2", "most recent first");
    let one = &h[1];
    assert_eq!(one.requests, 4);
    assert_eq!(one.errors, 3);
    assert_eq!(one.top_error, Some(("409 uniqueness".to_owned(), 2)));
    assert_eq!(one.last_success_at, Some(t - Duration::hours(3)));
    assert_eq!(one.last_success_client, Some(Client::Entra));
    assert_eq!(one.last_request_at, Some(t - Duration::minutes(50)));
    let b = tenant(s, "b").await;
    assert!(s
        .token_health(&b.id, t - Duration::hours(24))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn body_capture_switches_expire_and_are_audited() {
    let db = db_async().await;
    let s = &*db.store;
    let a = tenant(s, "a").await;
    let b = tenant(s, "b").await;
    let t = now();
    let until = t + Duration::minutes(15);
    s.set_body_capture(&a.id, Some(until), draft(&a.id, Action::BodyCaptureChanged))
        .await
        .unwrap();
    assert_eq!(
        s.body_captures(t).await.unwrap(),
        vec![(a.id.clone(), until)]
    );
    assert!(s.body_captures(until).await.unwrap().is_empty(), "expired");
    let later = t + Duration::minutes(60);
    s.set_body_capture(&a.id, Some(later), draft(&a.id, Action::BodyCaptureChanged))
        .await
        .unwrap();
    assert_eq!(
        s.body_captures(t).await.unwrap(),
        vec![(a.id.clone(), later)]
    );
    s.set_body_capture(&a.id, None, draft(&a.id, Action::BodyCaptureChanged))
        .await
        .unwrap();
    assert!(s.body_captures(t).await.unwrap().is_empty());
    let audits = s
        .list_audit(
            &a.id,
            &AuditQuery {
                action: Some(Action::BodyCaptureChanged),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(audits.len(), 3);
    let _ = b;
}

/// Every entry of a tenant, newest first, paged `per_page` at a time through `before_id`.
async fn all_paged(
    s: &dyn cairn_core::store::Store,
    t: &TenantId,
    per_page: u32,
) -> Vec<RequestEntry> {
    let mut out: Vec<RequestEntry> = Vec::new();
    loop {
        let f = RequestFilter {
            before_id: out.last().map(|e| e.id),
            limit: per_page,
            ..Default::default()
        };
        let page = s.list_requests(t, &f).await.unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

#[tokio::test]
async fn batches_round_trip_every_field_and_page_across_batches() {
    let db = db_async().await;
    let s = &*db.store;
    let a = tenant(s, "a").await;
    let b = tenant(s, "b").await;
    let t = now() - Duration::minutes(30);
    let mut sent = Vec::new();
    for round in 0..3 {
        let mut batch = Vec::new();
        for i in 0..4 {
            let mut e = entry(&a.id, t + Duration::seconds(round * 10 + i), 200);
            if i == 1 {
                // Absent and empty strings, another client, bodies and several notes.
                e.token_id = None;
                e.dialect = None;
                e.user_agent = Some(String::new());
                e.client = Client::Google;
                e.notes = vec!["ünïcode ✓".into(), String::new(), "third".into()];
                e.response_body = Some("{\"id\":\"u1\"}".into());
                e.latency_us = i64::MAX;
            }
            batch.push(e);
            // Another tenant's entries in the same batches.
            batch.push(entry(&b.id, t, 500));
        }
        s.record_requests(batch.clone()).await.unwrap();
        sent.extend(batch.into_iter().filter(|e| e.tenant_id == a.id));
    }
    let got = all_paged(s, &a.id, 3).await;
    assert_eq!(got.len(), 12, "{got:?}");
    assert!(got.windows(2).all(|w| w[0].id > w[1].id), "ids grow");
    for (g, want) in got.iter().rev().zip(&sent) {
        let mut want = want.clone();
        want.id = g.id;
        assert_eq!(g, &want);
    }
    // Filters look inside every batch.
    let f = RequestFilter {
        client: Some(Client::Google),
        limit: 2,
        ..Default::default()
    };
    let google = s.list_requests(&a.id, &f).await.unwrap();
    assert_eq!(google.len(), 2);
    assert_eq!(google[0].id, got[2].id, "the newest batch's second entry");
    let f = RequestFilter {
        since: Some(t + Duration::seconds(21)),
        ..Default::default()
    };
    assert_eq!(s.list_requests(&a.id, &f).await.unwrap().len(), 3);
    assert_eq!(all_paged(s, &b.id, 5).await.len(), 12);
}

#[tokio::test]
async fn pruning_trims_across_batches() {
    let db = db_async().await;
    let s = &*db.store;
    let a = tenant(s, "a").await;
    let t = now();
    // Three batches of four: minutes 12..1 ago, oldest first.
    for round in 0..3 {
        let batch: Vec<RequestEntry> = (0..4)
            .map(|i| entry(&a.id, t - Duration::minutes(12 - (round * 4 + i)), 200))
            .collect();
        s.record_requests(batch).await.unwrap();
    }
    let before = all_paged(s, &a.id, 100).await;
    assert_eq!(before.len(), 12);
    // By count: the oldest batch goes, the middle one keeps its two newest entries.
    let gone = s.prune_requests(t - Duration::days(7), 6).await.unwrap();
    assert_eq!(gone, 6);
    let left = all_paged(s, &a.id, 4).await;
    assert_eq!(left, before[..6].to_vec(), "exactly the six newest");
    assert_eq!(s.prune_requests(t - Duration::days(7), 6).await.unwrap(), 0);
    // By age, inside a batch: entries older than 2 minutes ago (the newest batch holds
    // minutes 4..1 ago).
    let gone = s.prune_requests(t - Duration::minutes(2), 6).await.unwrap();
    assert_eq!(gone, 4, "two of the middle batch, two of the newest");
    let left = all_paged(s, &a.id, 100).await;
    assert_eq!(left, before[..2].to_vec());
    // New entries continue after the pruned ids.
    s.record_requests(vec![entry(&a.id, t, 200)]).await.unwrap();
    let newest = all_paged(s, &a.id, 1).await;
    assert!(newest[0].id > before[0].id);
    // Nothing left of a tenant whose bound is 0.
    assert_eq!(s.prune_requests(t - Duration::days(7), 0).await.unwrap(), 3);
    assert!(all_paged(s, &a.id, 10).await.is_empty());
}
