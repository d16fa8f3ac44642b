//! Storage backends behind `cairn_core::store::Store`. SQLite is the embedded default:
//! WAL, a few reader connections, and one writer thread that groups concurrent writes into
//! shared durable commits while each request keeps its own outcome. PostgreSQL serves
//! deployments where several stateless instances share one database.

mod activity;
pub mod copy;
// Hooks for the fuzz crate only: not part of the production library. Built under `test`
// too, so that its own unit tests keep running with the crate's.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod listing;
pub mod postgres;
mod reqlog;
pub mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// The schema version this build brings a database to: the number of its migrations,
/// numbered alike for both backends.
pub const SCHEMA_VERSION: i64 = sqlite::conn::SCHEMA_VERSION;
const _: () = assert!(sqlite::conn::SCHEMA_VERSION == postgres::SCHEMA_VERSION);

/// The refusal to open a database whose schema a newer Cairn has migrated: this build
/// would read and write tables it does not know the shape of (columns it does not fill,
/// constraints it does not expect), and nothing would say so until data went wrong.
pub(crate) fn newer_schema(found: i64) -> cairn_core::Error {
    cairn_core::Error::Invalid {
        field: "database",
        reason: format!(
            "its schema is at version {found}, newer than the version {SCHEMA_VERSION} this \
             cairn {} knows: a newer Cairn has upgraded it. Run that newer release (or a \
             later one), or restore the backup taken before the upgrade (README, \
             \"Upgrading\")",
            env!("CARGO_PKG_VERSION")
        ),
    }
}

/// A restore of an account whose retention window has ended: refused even when the purge
/// has not run yet (it runs periodically), so what an administrator can restore does not
/// depend on when the purge last ran.
pub(crate) fn retention_ended(purge_at: &str) -> cairn_core::Error {
    cairn_core::Error::Invalid {
        field: "account",
        reason: format!(
            "its retention window ended at {purge_at}; it is due to be purged and can no \
             longer be restored"
        ),
    }
}
