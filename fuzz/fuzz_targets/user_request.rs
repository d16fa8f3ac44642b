//! Fuzzes SCIM User deserialisation and validation (`user_from_request`, what POST and PUT
//! run): arbitrary JSON must never panic; an accepted body must yield a normalised
//! document that is accepted again unchanged (normalisation is idempotent), with the
//! indexed projections within their bounds.
#![no_main]

use cairn_scim::user;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(u) = user::user_from_request(&body) else {
        return;
    };
    assert!(!u.user_name.to_string().is_empty());
    for v in [&u.external_id, &u.display_name, &u.email].into_iter().flatten() {
        assert!(v.len() <= user::MAX_INDEXED_BYTES, "{} bytes indexed", v.len());
    }
    let again = user::user_from_request(&u.doc)
        .unwrap_or_else(|e| panic!("normalised document is refused: {e}\n{}", u.doc));
    assert_eq!(again.doc, u.doc, "normalisation is not idempotent");
    assert_eq!(again.active, u.active);
    assert_eq!(again.user_name.to_string(), u.user_name.to_string());
});
