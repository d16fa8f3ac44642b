//! Storage backends behind `cairn_core::store::Store`. SQLite is the embedded default:
//! WAL, a few reader connections, and one writer thread that groups concurrent writes into
//! shared durable commits while each request keeps its own outcome.

pub mod sqlite;

pub use sqlite::SqliteStore;
