//! What Cairn's test suites share (the store suite, the web crate's router tests, the
//! integration suite): the backend under test and its fresh databases, the rule for
//! tests that need something from the machine, and SCIM tenants with tokens.
//!
//! The backend is SQLite unless `CAIRN_TEST_BACKEND=postgres`; PostgreSQL databases are
//! made on the server at `CAIRN_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and dropped afterwards.

pub mod ci;
pub mod pg;
pub mod scim;
pub mod store;

pub use ci::{announce, in_ci, require};
pub use pg::{backend_is_postgres, pg_admin, unique_suffix, PgDatabase};
pub use scim::enable_scim;
pub use store::TestDb;
