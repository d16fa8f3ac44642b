//! The single writer: one thread owns the write connection and commits concurrent writes
//! together. Each write runs in its own savepoint, so one request's failure (a 409, a
//! version mismatch) rolls back only its own changes; the batch shares one durable commit
//! (one fsync), and every request is answered only after that commit.
//!
//! Copying committed WAL frames back into the database file (checkpointing) happens on a
//! second thread with its own connection, so a batch never waits behind it.

use super::conn::{exec_cached, map_err};
use cairn_core::{Error, Result};
use rusqlite::Connection;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tokio::sync::oneshot;

type Deliver = Box<dyn FnOnce(Option<Error>) + Send>;
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Deliver) + Send>;

/// Most writes grouped into one commit.
const MAX_BATCH: usize = 512;

#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Job>,
    /// Writes sent and not yet answered (waiting, or in the commit being made): the
    /// queue depth `/metrics` shows.
    queued: Arc<AtomicUsize>,
}

/// Counts one write as queued until it is answered or its caller goes away.
struct Queued(Arc<AtomicUsize>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Pause after each background checkpoint, so a burst of commits is copied back in a few
/// large checkpoints (each ending in one fsync of the database file), not one per batch.
/// Not longer: a longer pause saves the checkpoint thread's CPU, but the larger fsync of
/// the database file holds up the writer's WAL syncs behind it and raises write latency
/// (the 20 ms trial in BENCHMARKS.md, "2026-12-06: the writer's savepoint journal").
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(2);

impl Writer {
    /// Starts the writer thread on `conn` and, given `checkpointer` (another connection to
    /// the same database), the checkpoint thread.
    pub(crate) fn start(conn: Connection, checkpointer: Option<Connection>) -> Writer {
        let (tx, rx) = mpsc::channel::<Job>();
        let committed = checkpointer.map(|c| {
            let (tx, rx) = mpsc::sync_channel::<()>(1);
            std::thread::Builder::new()
                .name("cairn-sqlite-checkpoint".into())
                .spawn(move || checkpoint(c, rx))
                .expect("spawn checkpoint thread");
            tx
        });
        std::thread::Builder::new()
            .name("cairn-sqlite-writer".into())
            .spawn(move || run(conn, rx, committed))
            .expect("spawn writer thread");
        Writer {
            tx,
            queued: Arc::default(),
        }
    }

    /// Writes sent to the writer thread and not yet answered.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Runs `f` inside the next group commit and returns its result once committed.
    pub(crate) async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let r = match conn {
                Some(c) => f(c),
                None => Err(Error::Unavailable("database unavailable".into())),
            };
            let ok = r.is_ok();
            let deliver: Deliver = Box::new(move |commit_err| {
                let _ = tx.send(match commit_err {
                    Some(e) => Err(e),
                    None => r,
                });
            });
            (ok, deliver)
        });
        self.queued.fetch_add(1, Ordering::Relaxed);
        let _queued = Queued(self.queued.clone());
        self.tx
            .send(job)
            .map_err(|_| Error::Unavailable("database writer stopped".into()))?;
        rx.await
            .map_err(|_| Error::Internal("write aborted".into()))?
    }
}

/// Runs a passive checkpoint after commits, at most one per [`CHECKPOINT_PAUSE`]. Passive:
/// it copies what it can without waiting for, or blocking, the writer or any reader. The
/// writer's own automatic checkpoint (`wal_autocheckpoint`, set high) remains the bound
/// on the WAL's size under an endless burst, and finds most frames already copied.
fn checkpoint(conn: Connection, committed: mpsc::Receiver<()>) {
    let mut failing = false;
    while committed.recv().is_ok() {
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            Ok(()) => failing = false,
            // A read-only or full file system: the writes fail and say so; say it here
            // once per outage, not once per commit.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "background checkpoint failed");
            }
            Err(_) => {}
        }
        std::thread::sleep(CHECKPOINT_PAUSE);
    }
}

fn run(conn: Connection, rx: mpsc::Receiver<Job>, committed: Option<mpsc::SyncSender<()>>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut delivers: Vec<Deliver> = Vec::with_capacity(batch.len());
        let mut jobs = batch.into_iter();
        while let Some(job) = jobs.next() {
            if conn.is_autocommit() {
                // No transaction: either this is the batch's first job, or a failing
                // statement made SQLite roll back the whole transaction (SQLITE_FULL,
                // SQLITE_IOERR, SQLITE_NOMEM… — "Response To Errors Within A
                // Transaction", sqlite.org/lang_transaction.html). The writes already
                // released into it are gone, so they are answered as failed, never as
                // committed; the rest of the batch starts a new transaction.
                fail_all(&mut delivers);
                if let Err(e) = exec_cached(&conn, "BEGIN IMMEDIATE") {
                    // Read-only, locked by another process, no space: the jobs never run.
                    let e = map_err(e);
                    fail_unstarted(job, e.clone());
                    jobs.by_ref().for_each(|j| fail_unstarted(j, e.clone()));
                    break;
                }
            }
            if exec_cached(&conn, "SAVEPOINT w").is_err() {
                fail_unstarted(job, Error::Unavailable("savepoint failed".into()));
                continue;
            }
            match catch_unwind(AssertUnwindSafe(|| job(Some(&conn)))) {
                Ok((ok, deliver)) => {
                    if conn.is_autocommit() {
                        // The job's own failing statement took the transaction with it;
                        // its error says why.
                        deliver(ok.then(lost));
                        continue;
                    }
                    let end = if ok {
                        exec_cached(&conn, "RELEASE w")
                    } else {
                        exec_cached(&conn, "ROLLBACK TO w")
                            .and_then(|()| exec_cached(&conn, "RELEASE w"))
                    };
                    if let Err(e) = end {
                        deliver(Some(map_err(e)));
                    } else {
                        delivers.push(deliver);
                    }
                }
                Err(_) => {
                    tracing::error!("a database write panicked; its changes were rolled back");
                    let _ = conn.execute_batch("ROLLBACK TO w; RELEASE w");
                }
            }
        }
        if conn.is_autocommit() {
            fail_all(&mut delivers);
            continue;
        }
        match exec_cached(&conn, "COMMIT") {
            Ok(()) => {
                delivers.into_iter().for_each(|d| d(None));
                if let Some(c) = &committed {
                    // Full means a checkpoint is already due.
                    let _ = c.try_send(());
                }
            }
            Err(e) => {
                let e = map_err(e);
                tracing::error!(error = %e, "group commit failed");
                let _ = conn.execute_batch("ROLLBACK");
                for d in delivers {
                    d(Some(e.clone()));
                }
            }
        }
    }
}

/// The answer to a write whose transaction SQLite rolled back after it had succeeded.
fn lost() -> Error {
    Error::Unavailable("the database rolled back the transaction (disk full or I/O error)".into())
}

/// Answers the writes released into a transaction that is gone.
fn fail_all(delivers: &mut Vec<Deliver>) {
    if !delivers.is_empty() {
        tracing::error!(
            count = delivers.len(),
            "the database rolled back a group commit; its writes are answered as failed"
        );
    }
    for d in delivers.drain(..) {
        d(Some(lost()));
    }
}

/// Answers a job that never ran (its transaction could not start) with `e`.
fn fail_unstarted(job: Job, e: Error) {
    let (_, deliver) = job(None);
    deliver(Some(e));
}

#[cfg(test)]
mod tests {
    //! Storage faults at the writer: a full disk (`SQLITE_FULL`, simulated with
    //! `max_page_count`) and a read-only database (`SQLITE_READONLY`, with `query_only`)
    //! answer each write with `Unavailable` (503 at the edge), never `Internal`; nothing of
    //! a failed write remains; and writes succeed again once the fault clears.

    use super::*;
    use crate::sqlite::conn;

    async fn writer() -> (Writer, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = conn::open(&dir.path().join("w.db"), true).unwrap();
        conn::migrate(&mut c).unwrap();
        c.execute_batch("CREATE TABLE blobs (n INTEGER PRIMARY KEY, b BLOB NOT NULL)")
            .unwrap();
        (Writer::start(c, None), dir)
    }

    /// Inserts row `n` with a blob of `size` bytes.
    async fn insert(w: &Writer, n: i64, size: i64) -> Result<()> {
        w.write(move |c| {
            c.execute(
                "INSERT INTO blobs (n, b) VALUES (?1, zeroblob(?2))",
                rusqlite::params![n, size],
            )
            .map(drop)
            .map_err(map_err)
        })
        .await
    }

    async fn rows(w: &Writer) -> Vec<i64> {
        w.write(|c| {
            let mut s = c
                .prepare("SELECT n FROM blobs ORDER BY n")
                .map_err(map_err)?;
            let v = s
                .query_map([], |r| r.get(0))
                .map_err(map_err)?
                .collect::<rusqlite::Result<Vec<i64>>>()
                .map_err(map_err);
            v
        })
        .await
        .unwrap()
    }

    fn assert_unavailable(r: Result<()>) {
        assert!(matches!(r, Err(Error::Unavailable(_))), "{r:?}");
    }

    /// The checkpoint thread copies committed frames back into the database file without
    /// the writer: after a burst of commits far below the writer's own automatic
    /// checkpoint, the database file itself (not only its WAL) grows to hold the burst.
    #[tokio::test]
    async fn commits_are_checkpointed_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let mut c = conn::open(&path, true).unwrap();
        conn::migrate(&mut c).unwrap();
        c.execute_batch("CREATE TABLE blobs (n INTEGER PRIMARY KEY, b BLOB NOT NULL)")
            .unwrap();
        let w = Writer::start(c, Some(conn::open(&path, false).unwrap()));
        let before = std::fs::metadata(&path).unwrap().len();
        for n in 0..200 {
            insert(&w, n, 2048).await.unwrap();
        }
        let burst = 200 * 2048;
        let mut size = before;
        for _ in 0..500 {
            size = std::fs::metadata(&path).unwrap().len();
            if size >= before + burst {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            size >= before + burst,
            "database file {before} -> {size} bytes after a {burst}-byte burst"
        );
        assert_eq!(rows(&w).await.len(), 200);
    }

    #[tokio::test]
    async fn a_full_disk_is_unavailable_and_recovers() {
        let (w, _dir) = writer().await;
        insert(&w, 1, 10).await.unwrap();
        // The database may not grow by more than a few pages from now on.
        w.write(|c| {
            let pages: i64 = c
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .map_err(map_err)?;
            c.query_row(
                &format!("PRAGMA max_page_count = {}", pages + 2),
                [],
                |_| Ok(()),
            )
            .map_err(map_err)
        })
        .await
        .unwrap();
        assert_unavailable(insert(&w, 2, 1 << 20).await);

        // Many writes at once, so they share batches with failing ones: every answer is
        // either success or Unavailable, and exactly the successful ones are stored.
        let mut set = tokio::task::JoinSet::new();
        for n in 10..60 {
            let w = w.clone();
            let size = if n % 2 == 0 { 1 << 20 } else { 10 };
            set.spawn(async move { (n, insert(&w, n, size).await) });
        }
        let mut ok = vec![1];
        while let Some(r) = set.join_next().await {
            let (n, r) = r.unwrap();
            match r {
                Ok(()) => ok.push(n),
                Err(Error::Unavailable(_)) => {}
                Err(e) => panic!("write {n}: {e:?}"),
            }
        }
        ok.sort_unstable();
        assert_eq!(rows(&w).await, ok);

        // Space again: writes succeed.
        w.write(|c| {
            c.query_row("PRAGMA max_page_count = 1000000", [], |_| Ok(()))
                .map_err(map_err)
        })
        .await
        .unwrap();
        insert(&w, 2, 1 << 20).await.unwrap();
        ok.push(2);
        ok.sort_unstable();
        assert_eq!(rows(&w).await, ok);
    }

    #[tokio::test]
    async fn a_read_only_database_is_unavailable_and_recovers() {
        let (w, _dir) = writer().await;
        insert(&w, 1, 10).await.unwrap();
        // A write that meets a read-only database in the middle of its transaction
        // (`query_only` gives the same SQLITE_READONLY as a file turned read-only).
        let r = w
            .write(|c| {
                c.execute_batch("PRAGMA query_only = ON").map_err(map_err)?;
                let r = c
                    .execute("INSERT INTO blobs (n, b) VALUES (2, zeroblob(10))", [])
                    .map(drop)
                    .map_err(map_err);
                c.execute_batch("PRAGMA query_only = OFF")
                    .map_err(map_err)?;
                r
            })
            .await;
        assert_unavailable(r);
        insert(&w, 3, 10).await.unwrap();
        assert_eq!(rows(&w).await, [1, 3]);
    }

    #[tokio::test]
    async fn a_database_locked_by_another_process_is_unavailable_and_recovers() {
        let (w, dir) = writer().await;
        let other = rusqlite::Connection::open(dir.path().join("w.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        // BEGIN IMMEDIATE waits out the busy timeout, then every write of the batch is
        // refused without running.
        let mut set = tokio::task::JoinSet::new();
        for n in 10..15 {
            let w = w.clone();
            set.spawn(async move { insert(&w, n, 10).await });
        }
        while let Some(r) = set.join_next().await {
            assert_unavailable(r.unwrap());
        }
        other.execute_batch("ROLLBACK").unwrap();
        insert(&w, 1, 10).await.unwrap();
        assert_eq!(rows(&w).await, [1]);
    }
}
