//! Fuzzes the SCIM filter parser: it must never panic; whatever parses must print back
//! to text that parses to the same tree, and resolution must not panic either.
#![no_main]

use cairn_scim::{filter, query};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expr) = filter::parse(text) else {
        return;
    };
    let printed = expr.to_string();
    // Printing may lengthen the text (quoting bare values, spelling out decimals), so a
    // filter near the length limit may not fit once printed.
    if printed.chars().count() <= filter::MAX_LEN {
        let again = filter::parse(&printed)
            .unwrap_or_else(|e| panic!("printed filter {printed:?} does not parse: {e}"));
        assert_eq!(again, expr, "round trip through {printed:?}");
    }
    let _ = query::resolve_user_filter(&expr);
});
