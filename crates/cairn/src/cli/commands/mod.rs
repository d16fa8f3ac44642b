//! The bodies of the operator's commands, one module per subcommand group.

pub mod account;
pub mod audit;
pub mod db;
pub mod freshness;
pub mod group;
pub mod man;
pub mod requests;
pub mod scim;
pub mod settings;
pub mod sso;
pub mod tenant;
pub mod user;
pub mod vault;
