//! A fresh store of the backend under test for one test.

use crate::pg::{backend_is_postgres, PgDatabase};
use cairn_core::store::*;
use cairn_store::{PostgresStore, SqliteStore};
use std::path::Path;
use std::sync::Arc;

/// A new database of the backend under test and a store on it: SQLite in a temporary
/// directory by default, a new PostgreSQL database when `CAIRN_TEST_BACKEND=postgres`.
/// Dropping it removes the directory and drops the PostgreSQL database.
pub struct TestDb {
    pub store: Arc<dyn Store>,
    /// The PostgreSQL database's URL, on that backend (a second pool, `psql`-like checks).
    pub pg_url: Option<String>,
    dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
}

impl TestDb {
    /// The backend under test. `prefix` names the PostgreSQL database (`{prefix}_…`).
    pub async fn new(prefix: &str) -> TestDb {
        if backend_is_postgres() {
            let db = PgDatabase::create(prefix);
            let store = PostgresStore::connect(db.url()).await.expect("connect");
            TestDb {
                store: Arc::new(store),
                pg_url: Some(db.url().to_owned()),
                dir: tempfile::tempdir().unwrap(),
                _pg: Some(db),
            }
        } else {
            Self::sqlite()
        }
    }

    /// SQLite (`cairn.db` in a temporary directory), whatever the backend under test.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("cairn.db")).unwrap());
        TestDb {
            store,
            pg_url: None,
            dir,
            _pg: None,
        }
    }

    /// A temporary directory that lives as long as this database (holding the SQLite
    /// file on that backend), for what a test keeps beside it (a vault).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
