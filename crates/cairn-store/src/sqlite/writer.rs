//! The single writer: one thread owns the write connection and commits concurrent writes
//! together. Each write runs in its own savepoint, so one request's failure (a 409, a
//! version mismatch) rolls back only its own changes; the batch shares one durable commit
//! (one fsync), and every request is answered only after that commit.

use super::conn::map_err;
use cairn_core::{Error, Result};
use rusqlite::Connection;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use tokio::sync::oneshot;

type Deliver = Box<dyn FnOnce(Option<Error>) + Send>;
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Deliver) + Send>;

/// Most writes grouped into one commit.
const MAX_BATCH: usize = 512;

#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    pub(crate) fn start(conn: Connection) -> Writer {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("cairn-sqlite-writer".into())
            .spawn(move || run(conn, rx))
            .expect("spawn writer thread");
        Writer { tx }
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
        self.tx
            .send(job)
            .map_err(|_| Error::Unavailable("database writer stopped".into()))?;
        rx.await
            .map_err(|_| Error::Internal("write aborted".into()))?
    }
}

fn run(conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let e = map_err(e);
            for job in batch {
                // The job never ran; answer it with the failure to start a transaction.
                fail_unstarted(job, e.clone());
            }
            continue;
        }
        let mut delivers = Vec::with_capacity(batch.len());
        for job in batch {
            if conn.execute_batch("SAVEPOINT w").is_err() {
                fail_unstarted(job, Error::Unavailable("savepoint failed".into()));
                continue;
            }
            match catch_unwind(AssertUnwindSafe(|| job(Some(&conn)))) {
                Ok((ok, deliver)) => {
                    let end = if ok {
                        "RELEASE w"
                    } else {
                        "ROLLBACK TO w; RELEASE w"
                    };
                    if let Err(e) = conn.execute_batch(end) {
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
        match conn.execute_batch("COMMIT") {
            Ok(()) => delivers.into_iter().for_each(|d| d(None)),
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

/// Answers a job that never ran (its transaction could not start) with `e`.
fn fail_unstarted(job: Job, e: Error) {
    let (_, deliver) = job(None);
    deliver(Some(e));
}
