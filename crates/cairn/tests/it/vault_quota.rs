//! The backup vault's quota accounting against the real binary, on raw connections where
//! restic would never go: declared lengths past what any object can be, bodies shorter or
//! longer than declared, uploads cut off mid-body, racing uploads and deletes of one
//! object, parallel uploads past the quota, lock files, a SIGKILL mid-upload, and one
//! account in real units (10^9 bytes per GB). After each, the used space equals what the
//! repository holds: `cairn account recount` finds nothing to correct.

use crate::support::*;
use crate::vault::{account, base64_lite, sha256_hex, Account};
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The largest object the vault accepts (`cairn_core::vault::MAX_OBJECT_BYTES`).
const MAX_OBJECT: u64 = 160 << 20;
/// The largest lock file (`MAX_LOCK_BYTES`) and how far lock files may take an account
/// past its quota (`LOCK_ALLOWANCE_BYTES`).
const MAX_LOCK: usize = 64 << 10;
const LOCK_ALLOWANCE: u64 = 1 << 20;

/// Deterministic bytes that differ per `seed` (so each object has its own name).
fn blob(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One account's repository, reached with its key.
struct Repo<'a> {
    app: &'a TestApp,
    tenant: String,
    a: Account,
}

/// What a raw upload does after its head.
#[derive(Clone, Copy)]
enum Then {
    /// Sends the body, ends its side of the connection and reads the answer.
    Finish,
    /// Sends the body and drops the connection once the server has charged the
    /// declared length (an upload cut off mid-body), without reading an answer; returns
    /// once the charge has been given back.
    Abort { declared: i64 },
}

impl Repo<'_> {
    async fn new<'a>(app: &'a TestApp, t: &Tenant, name: &str) -> Repo<'a> {
        let a = account(app, t, name).await;
        let r = Repo {
            app,
            tenant: t.id.clone(),
            a,
        };
        assert_eq!(r.send(Method::POST, "/?create=true", None).await, 200);
        r
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/backup/{}/{}{path}",
            self.app.base, self.tenant, self.a.id
        )
    }

    async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> u16 {
        let mut req = self
            .app
            .client
            .request(method, self.url(path))
            .basic_auth(&self.a.user, Some(&self.a.secret));
        if let Some(body) = body {
            req = req.body(body);
        }
        req.send().await.unwrap().status().as_u16()
    }

    /// Uploads `data` under its SHA-256 name as a `kind` object; the status.
    async fn upload(&self, kind: &str, data: &[u8]) -> (u16, String) {
        let name = sha256_hex(data);
        let status = self
            .send(
                Method::POST,
                &format!("/{kind}/{name}"),
                Some(data.to_vec()),
            )
            .await;
        (status, name)
    }

    /// A POST on a raw connection with whatever `Content-Length` and body are given.
    async fn raw_post(&self, path: &str, content_length: &str, body: &[u8], then: Then) -> u16 {
        let before = used_bytes(&self.app.deployment, &self.a.id).await;
        let host = self.app.base.trim_start_matches("http://").to_owned();
        let mut s = tokio::net::TcpStream::connect(&host).await.unwrap();
        let auth = base64_lite::encode(format!("{}:{}", self.a.user, self.a.secret).as_bytes());
        let target = format!("/backup/{}/{}{path}", self.tenant, self.a.id);
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\n\
             Content-Length: {content_length}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        // The server may answer (413, 507) and close before reading the body.
        let _ = s.write_all(body).await;
        match then {
            Then::Abort { declared } => {
                let (d, id) = (&self.app.deployment, self.a.id.as_str());
                wait_for(|| async move { used_bytes(d, id).await == before + declared }).await;
                drop(s);
                // The server notices the dropped connection and gives the charge back.
                wait_for(|| async move { used_bytes(d, id).await == before }).await;
                0
            }
            Then::Finish => {
                let _ = s.shutdown().await;
                let mut out = Vec::new();
                let read = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut out));
                let _ = read.await.expect("the server answers a finished upload");
                let text = String::from_utf8_lossy(&out);
                let status = text.split(' ').nth(1).unwrap_or("0");
                status.parse().unwrap_or(0)
            }
        }
    }

    fn stored(&self) -> Vec<(String, u64)> {
        self.app.deployment.vault_objects(&self.tenant, &self.a.id)
    }

    fn stored_bytes(&self) -> i64 {
        self.stored()
            .iter()
            .map(|o| i64::try_from(o.1).unwrap())
            .sum()
    }

    async fn used(&self) -> i64 {
        used_bytes(&self.app.deployment, &self.a.id).await
    }

    /// Waits (bounded) until requests still finishing on the server have settled the
    /// counter, then checks that it is what the repository holds and that the CLI's
    /// recount corrects nothing.
    async fn assert_recount_is_exact(&self, user_name: &str) {
        for _ in 0..200 {
            if self.used().await == self.stored_bytes() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (used, stored) = (self.used().await, self.stored_bytes());
        let r = recount(self.app, &self.tenant, user_name);
        assert_eq!(
            r["corrected_by"],
            0,
            "recount: {r}, stored: {:?}",
            self.stored()
        );
        assert_eq!(used, stored, "used bytes drifted from the repository");
    }
}

/// `cairn account recount --json`.
fn recount(app: &TestApp, tenant: &str, user_name: &str) -> Value {
    app.cli(&[
        "account",
        "recount",
        "--tenant",
        tenant,
        "--user-name",
        user_name,
        "--json",
    ])
    .ok()
    .json()
}

/// The account's used space as stored, read from the database directly (the server may
/// be running or dead).
async fn used_bytes(d: &Deployment, user: &str) -> i64 {
    match &d.database_url {
        None => {
            let conn = rusqlite::Connection::open_with_flags(
                d.data_dir.path().join("cairn.db"),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            conn.query_row("SELECT used_bytes FROM users WHERE id = ?1", [user], |r| {
                r.get(0)
            })
            .unwrap()
        }
        Some(url) => {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client
                .query_one("SELECT used_bytes FROM users WHERE id = $1", &[&user])
                .await
                .unwrap()
                .get(0)
        }
    }
}

/// Polls `cond` until it holds; fails the test after a generous deadline (a hung server,
/// not a slow one).
async fn wait_for<F, Fut>(mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached within 30 s");
}

/// The `upload-*` temporary files in a local repository's `tmp/`.
fn upload_tmp_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("upload-"))
        .collect()
}

/// A server whose "1 GB" is `unit` bytes, with one tenant whose Account Size is 1 GB.
async fn app_with_unit(deployment: Deployment, unit: Option<u64>) -> (TestApp, Tenant) {
    let env = unit
        .map(|u| vec![("CAIRN_VAULT_QUOTA_UNIT_BYTES".to_owned(), u.to_string())])
        .unwrap_or_default();
    let opts = Opts {
        env,
        ..Opts::default()
    };
    let app = TestApp::spawn_on(Arc::new(deployment), opts).await;
    let t = app.tenant("Quota");
    app.cli(&[
        "scim",
        "enable",
        "--tenant",
        &t.id,
        "--account-size-gb",
        "1",
    ])
    .ok();
    (app, t)
}

/// Declared lengths no object can have: above i64::MAX (which wrapped to a negative
/// charge and reset the account's used space to 0), the largest length hyper parses
/// (above it hyper itself answers 431), i64::MAX itself, and one byte past the largest
/// object.
fn impossible_lengths() -> [String; 4] {
    [
        "9223372036854775808".to_owned(),
        (u64::MAX - 2).to_string(),
        i64::MAX.to_string(),
        (MAX_OBJECT + 1).to_string(),
    ]
}

#[tokio::test]
async fn a_declared_length_past_the_largest_object_is_413_and_resets_nothing() {
    huge_lengths(Deployment::new()).await;
}

#[tokio::test]
async fn a_declared_length_past_the_largest_object_on_the_s3_backend() {
    huge_lengths(Deployment::new().with_s3_vault()).await;
}

async fn huge_lengths(deployment: Deployment) {
    // 1 GB = 100,000 bytes: a 90 KB object nearly fills the account.
    let (app, t) = app_with_unit(deployment, Some(100_000)).await;
    let r = Repo::new(&app, &t, "huge@example.com").await;
    assert_eq!(r.upload("data", &blob(1, 90_000)).await.0, 200);
    let more = blob(2, 20_000);
    assert_eq!(r.upload("data", &more).await.0, 507);
    let used = r.used().await;
    assert_eq!(used, 90_000);
    for len in impossible_lengths() {
        let name = sha256_hex(len.as_bytes());
        for kind in ["data", "locks"] {
            let status = r
                .raw_post(&format!("/{kind}/{name}"), &len, b"", Then::Finish)
                .await;
            assert_eq!(status, 413, "Content-Length {len} on {kind}");
            assert_eq!(
                r.used().await,
                used,
                "Content-Length {len} changed the charge"
            );
        }
    }
    // The account is as full as before: the upload refused then is refused now.
    assert_eq!(r.upload("data", &more).await.0, 507);
    r.assert_recount_is_exact("huge@example.com").await;
}

#[tokio::test]
async fn lock_files_are_capped_counted_and_their_allowance_is_bounded() {
    let (app, t) = app_with_unit(Deployment::new(), Some(100_000)).await;
    let r = Repo::new(&app, &t, "locks@example.com").await;
    // One byte past the cap: 413 from the declared length, before the body is read
    // (so none is sent: a server that answers early may reset a connection whose
    // body it did not read), nothing stored, nothing charged.
    let name = sha256_hex(&blob(1, MAX_LOCK + 1));
    let too_long = (MAX_LOCK + 1).to_string();
    let status = r
        .raw_post(&format!("/locks/{name}"), &too_long, b"", Then::Finish)
        .await;
    assert_eq!(status, 413);
    assert_eq!(
        r.send(Method::HEAD, &format!("/locks/{name}"), None).await,
        404
    );
    assert_eq!(r.used().await, 0);
    // A lock file as restic writes one counts in used space.
    let (status, small) = r.upload("locks", &blob(2, 300)).await;
    assert_eq!(status, 200);
    assert_eq!(r.used().await, 300);
    // Fill the account with data: 99,300 of 100,000 bytes.
    assert_eq!(r.upload("data", &blob(3, 99_000)).await.0, 200);
    assert_eq!(r.upload("data", &blob(4, 1_000)).await.0, 507);
    // A full account may still take locks, up to 1 MiB past its quota and no further:
    // (100,000 + 1,048,576 - 99,300) / 65,536 = 16 locks of 64 KiB.
    let mut accepted = 0;
    for i in 0..20 {
        match r.upload("locks", &blob(100 + i, MAX_LOCK)).await.0 {
            200 => accepted += 1,
            507 => {}
            s => panic!("lock {i}: {s}"),
        }
    }
    assert_eq!(accepted, 16);
    let used = r.used().await;
    assert_eq!(used, 99_300 + 16 * MAX_LOCK as i64);
    assert!(used <= 100_000 + LOCK_ALLOWANCE as i64);
    // Deleting a lock gives its bytes back.
    assert_eq!(
        r.send(Method::DELETE, &format!("/locks/{small}"), None)
            .await,
        200
    );
    assert_eq!(r.used().await, used - 300);
    r.assert_recount_is_exact("locks@example.com").await;
}

#[tokio::test]
async fn a_hostile_sequence_leaves_nothing_for_recount_to_correct() {
    hostile_sequence(Deployment::new(), true).await;
}

/// The same on S3, racing deletes included (their give-back is decided by a delete claim).
#[tokio::test]
async fn a_hostile_sequence_on_the_s3_backend_leaves_nothing_to_correct() {
    hostile_sequence(Deployment::new().with_s3_vault(), true).await;
}

async fn hostile_sequence(deployment: Deployment, racing_deletes: bool) {
    let (app, t) = app_with_unit(deployment, None).await;
    let r = Repo::new(&app, &t, "hostile@example.com").await;
    assert_eq!(
        r.send(Method::POST, "/config", Some(b"cfg".to_vec())).await,
        200
    );
    for i in 0..5 {
        assert_eq!(r.upload("data", &blob(i, 10_000)).await.0, 200);
    }
    // Impossible lengths: refused up front.
    for len in impossible_lengths() {
        let status = r
            .raw_post(
                &format!("/data/{}", "ab".repeat(32)),
                &len,
                b"",
                Then::Finish,
            )
            .await;
        assert_eq!(status, 413, "Content-Length {len}");
    }
    // A body shorter than declared: refused, its charge given back.
    let data = blob(10, 5_000);
    let path = format!("/data/{}", sha256_hex(&data));
    assert_eq!(
        r.raw_post(&path, "5000", &data[..2_000], Then::Finish)
            .await,
        400
    );
    // A body longer than declared: only the declared bytes are the upload (their hash
    // is not the name), the rest is not a request.
    let status = r.raw_post(&path, "4000", &data, Then::Finish).await;
    assert_eq!(status, 400);
    // Uploads cut off mid-body, after the server charged them.
    for i in 0..4u64 {
        let data = blob(20 + i, 1 << 20);
        let path = format!("/data/{}", sha256_hex(&data));
        let abort = Then::Abort { declared: 1 << 20 };
        r.raw_post(&path, &(1u64 << 20).to_string(), &data[..64 << 10], abort)
            .await;
    }
    // Eight uploads of one object at once: one stores it, the others are refused.
    let data = blob(30, 200_000);
    let path = format!("/data/{}", sha256_hex(&data));
    let statuses: Vec<u16> =
        join_all((0..8).map(|_| r.send(Method::POST, &path, Some(data.clone())))).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 403].contains(s)),
        "{statuses:?}"
    );
    if racing_deletes {
        // Eight deletes of it at once: one removes it and gives its bytes back.
        let statuses: Vec<u16> =
            join_all((0..8).map(|_| r.send(Method::DELETE, &path, None))).await;
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "{statuses:?}"
        );
    }
    r.assert_recount_is_exact("hostile@example.com").await;
    assert!(r.used().await > 50_000);
}

#[tokio::test]
async fn parallel_uploads_past_the_quota_accept_exactly_what_fits() {
    parallel_uploads(Deployment::new()).await;
}

#[tokio::test]
async fn parallel_uploads_past_the_quota_on_the_s3_backend() {
    parallel_uploads(Deployment::new().with_s3_vault()).await;
}

async fn parallel_uploads(deployment: Deployment) {
    // 1 GB = 100,000 bytes: five 20,000-byte objects fit, twelve are sent at once.
    let (app, t) = app_with_unit(deployment, Some(100_000)).await;
    let r = Repo::new(&app, &t, "parallel@example.com").await;
    let blobs: Vec<Vec<u8>> = (0..12).map(|i| blob(i, 20_000)).collect();
    let statuses: Vec<u16> =
        join_all(blobs.iter().map(|b| async { r.upload("data", b).await.0 })).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 507).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(r.used().await, 100_000);
    assert_eq!(r.stored_bytes(), 100_000);
    r.assert_recount_is_exact("parallel@example.com").await;
}

/// Real units: 1 GB of Account Size is 10^9 bytes. The repository holds a sparse object
/// of 10^9 - 1,000 bytes (counted by the recount, as any object is); 1,000 more bytes fill
/// the account exactly and one byte more is refused.
#[tokio::test]
async fn one_gb_is_ten_to_the_ninth_bytes() {
    let (app, t) = app_with_unit(Deployment::new(), None).await;
    let r = Repo::new(&app, &t, "units@example.com").await;
    let big = "00".repeat(32);
    let dir = app
        .deployment
        .data_dir
        .path()
        .join("vault")
        .join(&t.id)
        .join(&r.a.id)
        .join("data/00");
    let f = std::fs::File::create(dir.join(&big)).unwrap();
    f.set_len(1_000_000_000 - 1_000).unwrap();
    drop(f);
    let fixed = recount(&app, &t.id, "units@example.com");
    assert_eq!(fixed["corrected_by"], 999_999_000, "{fixed}");
    assert_eq!(r.upload("data", &blob(1, 1_000)).await.0, 200);
    assert_eq!(r.used().await, 1_000_000_000);
    let refused = r
        .app
        .client
        .post(r.url(&format!("/data/{}", sha256_hex(b"x"))))
        .basic_auth(&r.a.user, Some(&r.a.secret))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 507);
    assert_eq!(
        refused.text().await.unwrap().trim(),
        "Account quota (1 GB) exceeded"
    );
    // Deleting the big object gives back all of it.
    assert_eq!(
        r.send(Method::DELETE, &format!("/data/{big}"), None).await,
        200
    );
    assert_eq!(r.used().await, 1_000);
    assert_eq!(r.upload("data", b"x").await.0, 200);
    r.assert_recount_is_exact("units@example.com").await;
}

#[tokio::test]
async fn a_sigkill_mid_upload_leaves_no_partial_object_and_only_its_charge() {
    sigkill_mid_upload(Deployment::new()).await;
}

#[tokio::test]
async fn a_sigkill_mid_upload_on_the_s3_backend() {
    sigkill_mid_upload(Deployment::new().with_s3_vault()).await;
}

/// Uploads in flight when the server is killed: after a restart none of them is visible
/// (HEAD, listing, the store itself), every acknowledged upload is; the used space still
/// holds exactly the in-flight uploads' charges (the README says so), and the recount
/// takes exactly those off.
async fn sigkill_mid_upload(deployment: Deployment) {
    let deployment = Arc::new(deployment);
    let mut app = TestApp::spawn_on(deployment.clone(), Opts::default()).await;
    let t = app.tenant("Crash");
    let name = "crash@example.com";
    let (a, done) = {
        let r = Repo::new(&app, &t, name).await;
        let mut done = Vec::new();
        for i in 0..3 {
            let (s, n) = r.upload("data", &blob(i, 50_000)).await;
            assert_eq!(s, 200);
            done.push(n);
        }
        (r.a, done)
    };
    let before = app.deployment.vault_objects(&t.id, &a.id);
    let stored: i64 = before.iter().map(|o| o.1 as i64).sum();
    // Four uploads of 1 MiB each, a quarter sent, held open and charged.
    let mut held = Vec::new();
    let mut in_flight = Vec::new();
    let host = app.base.trim_start_matches("http://").to_owned();
    let auth = base64_lite::encode(format!("{}:{}", a.user, a.secret).as_bytes());
    for i in 0..4 {
        let data = blob(100 + i, 1 << 20);
        let n = sha256_hex(&data);
        let mut s = tokio::net::TcpStream::connect(&host).await.unwrap();
        let head = format!(
            "POST /backup/{}/{}/data/{n} HTTP/1.1\r\nHost: {host}\r\n\
             Authorization: Basic {auth}\r\nContent-Length: {}\r\n\r\n",
            t.id,
            a.id,
            data.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&data[..256 << 10]).await.unwrap();
        held.push(s);
        in_flight.push(n);
    }
    let charged = stored + 4 * (1 << 20);
    let (d, id) = (&deployment, a.id.as_str());
    wait_for(|| async move { used_bytes(d, id).await == charged }).await;
    // On the local backend each upload writes a temporary file, created just after its
    // charge: wait for all four, so the kill leaves them behind.
    let tmp_dir = (deployment.s3().is_none()).then(|| {
        deployment
            .data_dir
            .path()
            .join("vault")
            .join(&t.id)
            .join(&a.id)
            .join("tmp")
    });
    if let Some(dir) = &tmp_dir {
        wait_for(|| async move { upload_tmp_files(dir).len() == 4 }).await;
    }
    app.kill();
    drop(held);
    if let Some(dir) = &tmp_dir {
        assert_eq!(upload_tmp_files(dir).len(), 4, "one per killed upload");
    }

    // Sweeps run every second and take files older than a second, so the ones the
    // restarted server's own uploads are writing are in reach too (and must be kept).
    let opts = Opts {
        env: vec![
            ("CAIRN_PURGE_INTERVAL_SECS".into(), "1".into()),
            ("CAIRN_VAULT_TMP_MAX_AGE_SECS".into(), "1".into()),
        ],
        ..Opts::default()
    };
    let app = TestApp::spawn_on(deployment.clone(), opts).await;
    if let Some(dir) = &tmp_dir {
        wait_for(|| async move { upload_tmp_files(dir).is_empty() }).await;
    }
    let r = Repo {
        app: &app,
        tenant: t.id.clone(),
        a,
    };
    assert_eq!(
        r.stored(),
        before,
        "only acknowledged uploads are in the store"
    );
    for n in &in_flight {
        assert_eq!(r.send(Method::HEAD, &format!("/data/{n}"), None).await, 404);
    }
    for n in &done {
        assert_eq!(r.send(Method::HEAD, &format!("/data/{n}"), None).await, 200);
    }
    // The interrupted uploads' charges are still counted, and nothing else.
    assert_eq!(r.used().await, charged);
    let fixed = recount(&app, &t.id, name);
    assert_eq!(fixed["corrected_by"], -(4 << 20), "{fixed}");
    assert_eq!(r.used().await, stored);
    // The interrupted objects can be uploaded again.
    let (s, _) = r.upload("data", &blob(100, 1 << 20)).await;
    assert_eq!(s, 200);
    r.assert_recount_is_exact(name).await;
}
