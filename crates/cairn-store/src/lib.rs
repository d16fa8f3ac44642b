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
