//! The store test suite: what every `Store` backend must do. Each test gets a fresh
//! database.

mod support;

mod accounts;
mod filters;
mod freshness;
mod groups;
mod keyset;
mod member_filters;
mod people;
mod requests;
mod settings;
mod sign_in;
mod sso;
mod vault;
