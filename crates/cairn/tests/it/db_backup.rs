//! The database's own safety: `cairn db backup` while `serve` takes writes and `cairn db
//! restore` into a fresh data directory (SQLite), the copy `serve` keeps before it
//! migrates, and the refusal of a schema newer than the binary (both backends).

use crate::support::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WRITERS: usize = 6;

/// Creates users `w{w}-{i}@backup.test` until `stop`, recording each acknowledged one.
async fn writer(
    t: Tenant,
    w: usize,
    acked: Arc<Mutex<Vec<String>>>,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let user_name = format!("w{w}-{i}@backup.test");
        let r = t
            .post(
                "/Users",
                &json!({"schemas":[USER_URN],"userName":user_name,"active":true}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        acked
            .lock()
            .unwrap()
            .push(r.json()["id"].as_str().unwrap().to_owned());
        count.fetch_add(1, Ordering::Relaxed);
    }
}

fn integrity(db: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare("PRAGMA integrity_check").unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn user_ids(db: &Path) -> HashSet<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare("SELECT id FROM users").unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn sqlite_version(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

/// A CLI command run off the test's runtime, so the writers keep writing meanwhile.
async fn cli_off_runtime(d: &Arc<Deployment>, args: &[&str]) -> Cli {
    let (d, args) = (
        d.clone(),
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    );
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&d, None, &args, None)
    })
    .await
    .unwrap()
}

/// A tenant handle for another server of the same deployment.
fn on(app: &TestApp, t: &Tenant) -> Tenant {
    Tenant {
        url: t
            .url
            .replace(&t.url[..t.url.find("/scim").unwrap()], &app.base),
        client: app.client.clone(),
        ..t.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_write_load_restores_every_write_acknowledged_before_it() {
    let app = TestApp::spawn_on(Arc::new(Deployment::sqlite()), Opts::default()).await;
    let t = app.tenant("Backup");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                t.clone(),
                w,
                acked.clone(),
                count.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let start = Instant::now();
    while count.load(Ordering::Relaxed) < 300 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "writers stalled"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Every write acknowledged before the backup began.
    let before: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    let acked_at_start = count.load(Ordering::Relaxed);
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("cairn-backup.db");
    let backup = cli_off_runtime(
        &app.deployment,
        &["db", "backup", "--to", file.to_str().unwrap(), "--json"],
    )
    .await
    .ok()
    .json();
    let acked_at_end = count.load(Ordering::Relaxed);
    assert_eq!(backup["integrity_check"], "ok", "{backup}");
    assert_eq!(backup["bytes"], std::fs::metadata(&file).unwrap().len());
    // The server kept acknowledging writes while the copy was made: the backup is online.
    assert!(
        acked_at_end > acked_at_start,
        "no write was acknowledged during the backup"
    );
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let all: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();

    assert_eq!(integrity(&file), ["ok"]);
    let in_backup = user_ids(&file);
    let missing: Vec<_> = before.difference(&in_backup).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged users missing",
        missing.len()
    );
    // Only acknowledged writes (the writers stopped cleanly: every commit was answered).
    assert!(in_backup.is_subset(&all));
    // An existing file is never overwritten.
    let again = cli_off_runtime(
        &app.deployment,
        &["db", "backup", "--to", file.to_str().unwrap()],
    )
    .await;
    assert!(
        !again.status.success() && again.stderr.contains("exists"),
        "{again:?}"
    );

    // Restore refuses while a server has the database open, and changes nothing.
    let refused = cli_off_runtime(
        &app.deployment,
        &["db", "restore", "--from", file.to_str().unwrap()],
    )
    .await;
    assert!(!refused.status.success(), "{refused:?}");
    assert!(refused.stderr.contains("in use"), "{}", refused.stderr);
    let data = app.deployment.data_dir.path();
    assert_eq!(user_ids(&data.join("cairn.db")).len(), all.len());
    assert!(std::fs::read_dir(data).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("restore")));

    // Restored into a fresh data directory, a server serves exactly the backup's users,
    // with the same token.
    let fresh = Arc::new(Deployment::sqlite());
    let restored = cli_off_runtime(
        &fresh,
        &["db", "restore", "--from", file.to_str().unwrap(), "--json"],
    )
    .await
    .ok()
    .json();
    assert_eq!(restored["previous"], Value::Null, "{restored}");
    let db2 = fresh.data_dir.path().join("cairn.db");
    assert_eq!(integrity(&db2), ["ok"]);
    let app2 = TestApp::spawn_on(fresh.clone(), Opts::default()).await;
    let t2 = on(&app2, &t);
    let listed = t2.get("/Users?count=1").await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.json()["totalResults"], in_backup.len());
    for id in before.iter().take(50) {
        assert_eq!(t2.get(&format!("/Users/{id}")).await.status, 200, "{id}");
    }
    // A restore over that running server is refused too.
    let refused =
        cli_off_runtime(&fresh, &["db", "restore", "--from", file.to_str().unwrap()]).await;
    assert!(refused.stderr.contains("in use"), "{refused:?}");
    drop(app2);

    // With the server stopped (killed: its WAL is left behind), a restore replaces the
    // database and keeps the one it replaced.
    let replaced = cli_off_runtime(
        &fresh,
        &["db", "restore", "--from", file.to_str().unwrap(), "--json"],
    )
    .await
    .ok()
    .json();
    let previous = PathBuf::from(replaced["previous"].as_str().unwrap());
    assert_eq!(integrity(&previous), ["ok"]);
    assert_eq!(user_ids(&db2), in_backup);
    assert!(!fresh.data_dir.path().join("cairn.db-wal").exists());
}

/// On PostgreSQL the commands say what to run instead.
#[test]
fn backup_and_restore_on_postgresql_point_to_pg_dump() {
    let d = Deployment::postgres();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.db");
    let out = run_cli(
        &d,
        None,
        &["db", "backup", "--to", file.to_str().unwrap()],
        None,
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("pg_dump"), "{}", out.stderr);
    let out = run_cli(
        &d,
        None,
        &["db", "restore", "--from", file.to_str().unwrap()],
        None,
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("pg_restore"), "{}", out.stderr);
}

/// `cairn serve` on `d` with `args`, expected to exit: its status and output.
fn serve_until_exit(d: &Deployment, args: &[&str]) -> Cli {
    let mut child = Command::new(cairn_bin())
        .args(d.global_args())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("CAIRN_DATABASE_URL")
        .env_remove("CAIRN_DATA_DIR")
        .env("CAIRN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let out: Cli = child.wait_with_output().unwrap().into();
            panic!("serve kept running: {out:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap().into()
}

/// The schema version of the deployment's database, and a way to set it.
async fn pg_version(url: &str, set: Option<i64>) -> i64 {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    if let Some(v) = set {
        c.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 'a newer cairn')",
            &[&v],
        )
        .await
        .unwrap();
    }
    c.query_one("SELECT MAX(version) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0)
}

/// A database a newer Cairn migrated stops `serve` and every command that opens it, with
/// both versions named, and is left as it is. On the backend under test.
#[tokio::test]
async fn a_schema_newer_than_the_binary_is_refused() {
    let d = Deployment::new();
    run_cli(&d, None, &["tenant", "create", "--name", "Future"], None).ok();
    let db = d.data_dir.path().join("cairn.db");
    let known = match &d.database_url {
        Some(url) => pg_version(url, None).await,
        None => sqlite_version(&db),
    };
    let newer = known + 1;
    match &d.database_url {
        Some(url) => assert_eq!(pg_version(url, Some(newer)).await, newer),
        None => rusqlite::Connection::open(&db)
            .unwrap()
            .pragma_update(None, "user_version", newer)
            .unwrap(),
    }
    let says_both = |out: &Cli| {
        assert!(!out.status.success(), "{out:?}");
        assert!(
            out.stderr.contains(&format!("version {newer}"))
                && out.stderr.contains(&format!("version {known}"))
                && out.stderr.contains("newer"),
            "{}",
            out.stderr
        );
    };
    says_both(&serve_until_exit(&d, &[]));
    says_both(&serve_until_exit(&d, &["--no-backup-before-migrate"]));
    says_both(&run_cli(&d, None, &["tenant", "list"], None));
    says_both(&run_cli(&d, None, &["audit", "--tenant", "x"], None));
    // `db status` reads the versions without refusing (nor migrating).
    let status = run_cli(&d, None, &["db", "status", "--json"], None)
        .ok()
        .json();
    assert_eq!(status["schema_version"], newer, "{status}");
    assert_eq!(status["binary_schema_version"], known, "{status}");
    assert_eq!(status["newer_than_binary"], true, "{status}");
    match &d.database_url {
        Some(url) => assert_eq!(pg_version(url, None).await, newer),
        None => {
            assert_eq!(sqlite_version(&db), newer);
            assert!(std::fs::read_dir(d.data_dir.path()).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("before-")));
        }
    }
}

/// The SQLite migrations of this source tree, in order.
fn migration_files() -> Vec<PathBuf> {
    let dir = repo_root().join("crates/cairn-store/migrations/sqlite");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
}

const OLD_TENANT: &str = "0193a5d2-0000-7000-8000-000000000001";

/// A database as the previous release left it: every migration but the last, and a
/// tenant. Returns the schema version it is at.
fn previous_release_database(db: &Path) -> i64 {
    let files = migration_files();
    let c = rusqlite::Connection::open(db).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    for f in &files[..files.len() - 1] {
        c.execute_batch(&std::fs::read_to_string(f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
    let version = files.len() as i64 - 1;
    c.pragma_update(None, "user_version", version).unwrap();
    c.execute(
        "INSERT INTO tenants (id, name, account_size_gb, created_at)
         VALUES (?1, 'Before the upgrade', 1, '2026-01-01T00:00:00.000Z')",
        [OLD_TENANT],
    )
    .unwrap();
    version
}

fn files_in(dir: &Path, part: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(part))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn serve_keeps_a_copy_before_migrating_unless_told_not_to() {
    let d = Arc::new(Deployment::sqlite());
    let dir = d.data_dir.path();
    let db = dir.join("cairn.db");
    let old = previous_release_database(&db);
    let latest = old + 1;
    // Copies left by earlier upgrades: the oldest goes, so three are kept.
    for n in [
        "cairn.db.before-0005-20200101T000000Z",
        "cairn.db.before-0006-20210101T000000Z",
        "cairn.db.before-0007-20220101T000000Z",
    ] {
        std::fs::copy(&db, dir.join(n)).unwrap();
    }

    let status = run_cli(&d, None, &["db", "status", "--json"], None)
        .ok()
        .json();
    assert_eq!(status["schema_version"], old, "{status}");
    assert_eq!(status["binary_schema_version"], latest, "{status}");
    assert_eq!(status["pending_migrations"], 1, "{status}");
    assert_eq!(sqlite_version(&db), old, "db status migrated");

    let app = TestApp::spawn_on(d.clone(), Opts::default()).await;
    assert_eq!(sqlite_version(&db), latest);
    let copies = files_in(dir, ".before-");
    let made = format!("cairn.db.before-{latest:04}-");
    assert_eq!(copies.len(), 3, "{copies:?}");
    assert_eq!(
        &copies[..2],
        [
            "cairn.db.before-0006-20210101T000000Z",
            "cairn.db.before-0007-20220101T000000Z"
        ]
    );
    assert!(copies[2].starts_with(&made), "{copies:?}");
    let copy = dir.join(&copies[2]);
    // The copy is the database as it was: the old schema version, its data, sound.
    assert_eq!(sqlite_version(&copy), old);
    assert_eq!(integrity(&copy), ["ok"]);
    let name: String = rusqlite::Connection::open(&copy)
        .unwrap()
        .query_row(
            "SELECT name FROM tenants WHERE id = ?1",
            [OLD_TENANT],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(name, "Before the upgrade");
    // The migrated database kept it too.
    let tenants = app.cli(&["tenant", "list", "--json"]).ok().json();
    assert!(tenants.to_string().contains(OLD_TENANT), "{tenants}");
    drop(app);

    // Nothing pending: no new copy.
    let app = TestApp::spawn_on(d.clone(), Opts::default()).await;
    assert_eq!(files_in(dir, ".before-").len(), 3);
    drop(app);

    // Told not to, `serve` migrates without a copy.
    let d2 = Arc::new(Deployment::sqlite());
    let db2 = d2.data_dir.path().join("cairn.db");
    previous_release_database(&db2);
    let app2 = TestApp::spawn_on(
        d2.clone(),
        Opts {
            args: vec!["--no-backup-before-migrate".into()],
            ..Opts::default()
        },
    )
    .await;
    assert_eq!(sqlite_version(&db2), latest);
    assert!(files_in(d2.data_dir.path(), ".before-").is_empty());
    drop(app2);
}
