//! Fuzzes filter → SQL translation: for any filter text that parses and resolves against
//! the User schema, both dialects' `WHERE` fragments are made only of the translators'
//! fixed pieces with every value bound as a parameter
//! (`cairn_store::fuzzing::check_shape`), and SQLite prepares the statement on the real
//! schema with exactly as many placeholders as parameters.
#![no_main]

use cairn_scim::{filter, query};
use cairn_store::fuzzing::{check_shape, postgres_where, sqlite_prepare, sqlite_where, Dialect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expr) = filter::parse(text) else {
        return;
    };
    let Ok(f) = query::resolve_user_filter(&expr) else {
        return;
    };
    let lite = sqlite_where(&f);
    if let Err(e) = check_shape(&lite, Dialect::Sqlite) {
        panic!("SQLite translation of {text:?}: {e}");
    }
    if let Err(e) = sqlite_prepare(&lite) {
        panic!("SQLite rejects the translation of {text:?}: {e}");
    }
    if let Err(e) = check_shape(&postgres_where(&f), Dialect::Postgres) {
        panic!("PostgreSQL translation of {text:?}: {e}");
    }
});
