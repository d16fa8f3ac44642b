//! Cairn's domain: tenants, SCIM settings and tokens, backup accounts, dashboard users and
//! the audit log, the `Store` interface every backend implements, and the services that
//! the protocols (SCIM, dashboard, CLI) call. No HTTP and no SQL here.

pub mod audit;
pub mod auth;
pub mod backup_key;
pub mod clock;
pub mod dashboard;
pub mod error;
pub mod freshness;
pub mod group;
pub mod ids;
pub mod mail;
pub mod oidc;
pub mod people;
pub mod protection;
pub mod query;
pub mod reqlog;
pub mod requests;
pub mod service;
pub mod session;
pub mod sso;
pub mod sso_password;
pub mod store;
pub mod tenant;
pub mod totp;
pub mod user;
pub mod vault;
pub mod verification;
pub mod welcome;

pub use error::{Error, Result};
