//! Fuzzes the PATCH path parser (RFC 7644 §3.5.2 `attrPath / valuePath [subAttr]`): it
//! must never panic, and whatever parses must print back to text that parses to the same
//! path.
#![no_main]

use cairn_scim::{filter, path};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = path::parse(text) else {
        return;
    };
    let printed = p.to_string();
    // Printing may lengthen a value filter (quoting, spelling out numbers).
    if printed.chars().count() <= filter::MAX_LEN {
        let again = path::parse(&printed)
            .unwrap_or_else(|e| panic!("printed path {printed:?} does not parse: {e}"));
        assert_eq!(again, p, "round trip through {printed:?}");
    }
    let _ = p.sub_attr();
});
