//! Integration tests: the real `cairn` binary over HTTP and its CLI, on SQLite by
//! default and on PostgreSQL with `CAIRN_TEST_BACKEND=postgres` (each test on a fresh
//! database).

mod support;

// Replays of what identity providers send (each module names its vendor's documentation).
mod entra;
mod groups;
mod okta;
mod other_idps;
mod raw_targets;
mod test_collection;
// The external conformance checker (scim2-tester through scripts/scim2-check).
mod conformance;
// The service's own rules.
mod audit;
mod bad_input;
mod bulk;
mod cli;
mod config;
mod crash;
mod cursor;
mod db_backup;
mod device_keys;
mod faults;
mod freshness;
mod group_filters;
mod inspector;
mod isolation;
mod lifecycle;
mod listeners;
mod ops;
mod people;
mod pg_tls;
mod races;
mod rate_limit;
mod scale_out;
mod sign_in;
mod smoke;
mod sso_oidc;
mod sso_saml;
mod tls;
mod vault;
mod vault_protect;
mod vault_quota;
mod vault_verify;
mod welcome;
