//! Crash safety: eight clients create and update users as fast as the server answers, the
//! server is killed with SIGKILL in the middle, and after a restart every answered write is
//! there, intact; the SQLite file passes `PRAGMA integrity_check`; and the audit log agrees
//! with the data, event for event.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WORKERS: usize = 8;
/// Acknowledged writes before the kill (creates and updates together).
const BEFORE_KILL: usize = 2500;

/// What the server acknowledged.
#[derive(Default)]
struct Acked {
    /// id → (userName, create request id)
    created: HashMap<String, (String, String)>,
    /// id → update request id
    updated: HashMap<String, String>,
}

async fn send(t: &Tenant, method: Method, path: &str, body: &Value, rid: &str) -> Option<Reply> {
    let resp = t
        .send(method, path, body)
        .header("x-request-id", rid)
        .send()
        .await
        .ok()?;
    // A connection cut while the body is read is as good as no answer.
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.ok()?;
    Some(Reply {
        status,
        headers,
        text,
    })
}

/// Creates `w{w}-{i}@crash.test` (title v0) then PATCHes its title to v1, until the
/// server stops answering.
async fn worker(t: Tenant, w: usize, acked: Arc<Mutex<Acked>>, count: Arc<AtomicUsize>) {
    for i in 0.. {
        let user_name = format!("w{w}-{i}@crash.test");
        let rid = format!("c-{w}-{i}");
        let body = json!({"schemas":[USER_URN],"userName":user_name,"title":"v0",
            "name":{"givenName":"W","familyName":format!("{w}-{i}")},
            "emails":[{"value":user_name,"type":"work","primary":true}],"active":true});
        let Some(r) = send(&t, Method::POST, "/Users", &body, &rid).await else {
            return;
        };
        assert!(
            r.status == 201 || r.status == 503,
            "{}: {}",
            r.status,
            r.text
        );
        if r.status != 201 {
            continue;
        }
        let id = r.json()["id"].as_str().unwrap().to_owned();
        acked
            .lock()
            .unwrap()
            .created
            .insert(id.clone(), (user_name, rid));
        count.fetch_add(1, Ordering::Relaxed);

        let rid = format!("u-{w}-{i}");
        let body = json!({"schemas":[PATCH_URN],"Operations":[
            {"op":"replace","path":"title","value":"v1"}]});
        let Some(r) = send(&t, Method::PATCH, &format!("/Users/{id}"), &body, &rid).await else {
            return;
        };
        assert!(
            r.status == 200 || r.status == 503,
            "{}: {}",
            r.status,
            r.text
        );
        if r.status == 200 {
            assert_eq!(r.json()["title"], "v1");
            acked.lock().unwrap().updated.insert(id, rid);
            count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Every user of the tenant, by id.
async fn all_users(t: &Tenant) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    let mut start = 1;
    loop {
        let r = t.get(&format!("/Users?startIndex={start}&count=500")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let v = r.json();
        let page = v["Resources"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            break;
        }
        start += page.len();
        for u in page {
            out.insert(u["id"].as_str().unwrap().to_owned(), u);
        }
    }
    out
}

#[tokio::test]
async fn sigkill_mid_stream_loses_no_acknowledged_write() {
    let mut app = TestApp::spawn().await;
    let t = app.tenant("Crash");
    let acked = Arc::new(Mutex::new(Acked::default()));
    let count = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| tokio::spawn(worker(t.clone(), w, acked.clone(), count.clone())))
        .collect();

    let start = Instant::now();
    while count.load(Ordering::Relaxed) < BEFORE_KILL {
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "only {} writes answered",
            count.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Writes are in flight on every worker at this moment.
    app.kill();
    for w in workers {
        w.await.unwrap();
    }
    let acked = Arc::try_unwrap(acked).ok().unwrap().into_inner().unwrap();
    assert!(acked.created.len() + acked.updated.len() >= BEFORE_KILL);

    // The file the crash left behind (its WAL included) is a sound database.
    if !backend_is_postgres() {
        let db = app.deployment.data_dir.path().join("cairn.db");
        let conn = rusqlite::Connection::open(&db).unwrap();
        let check: Vec<String> = conn
            .prepare("PRAGMA integrity_check")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(check, ["ok"]);
        let fk: i64 = conn
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(fk, 0, "foreign key violations");
    }

    let app = TestApp::spawn_on(app.deployment.clone(), Opts::default()).await;
    let t = Tenant {
        url: t
            .url
            .replace(&t.url[..t.url.find("/scim").unwrap()], &app.base),
        ..t
    };
    let users = all_users(&t).await;

    // Every acknowledged create is there, intact; every acknowledged update too.
    for (id, (user_name, _)) in &acked.created {
        let u = users
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged user {user_name} lost"));
        assert_eq!(u["userName"], user_name.as_str());
        assert_eq!(u["emails"][0]["value"], user_name.as_str());
        assert_eq!(u["active"], true);
        let expected_title = if acked.updated.contains_key(id) {
            "v1"
        } else {
            // An update in flight at the kill may or may not have been committed.
            u["title"].as_str().filter(|t| *t == "v1").unwrap_or("v0")
        };
        assert_eq!(u["title"], expected_title, "{u}");
    }
    // At most one unanswered create per worker made it in.
    let unacked: Vec<_> = users
        .keys()
        .filter(|id| !acked.created.contains_key(*id))
        .collect();
    assert!(
        unacked.len() <= WORKERS,
        "{} unexpected users",
        unacked.len()
    );

    // The audit log agrees with the data: one user_created per user (with the request id
    // of an acknowledged create where there is one), one user_updated per user whose
    // title is v1, and nothing else.
    let audit = app
        .cli(&["audit", "--tenant", &t.id, "--json", "--limit", "100000"])
        .ok()
        .json();
    let events: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target_type"] == "user")
        .collect();
    let of = |action: &str| -> HashMap<String, String> {
        let mut m = HashMap::new();
        for e in events.iter().filter(|e| e["action"] == action) {
            let id = e["target_id"].as_str().unwrap().to_owned();
            let rid = e["request_id"].as_str().unwrap_or_default().to_owned();
            assert!(m.insert(id, rid).is_none(), "two {action} events: {e}");
        }
        m
    };
    let created = of("user_created");
    let updated = of("user_updated");
    assert_eq!(
        events.len(),
        created.len() + updated.len(),
        "unexpected user events"
    );
    let ids: HashSet<&String> = users.keys().collect();
    assert_eq!(created.keys().collect::<HashSet<_>>(), ids);
    for (id, (_, rid)) in &acked.created {
        assert_eq!(&created[id], rid);
    }
    for (id, rid) in &acked.updated {
        assert_eq!(updated.get(id), Some(rid), "update of {id} not audited");
    }
    let v1: HashSet<&String> = users
        .iter()
        .filter(|(_, u)| u["title"] == "v1")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(updated.keys().collect::<HashSet<_>>(), v1);
}
