//! Fuzzes PATCH: arbitrary JSON is parsed as a PatchOp message and applied to a fixed
//! user; nothing may panic, and a successful result must be a valid, normalised user.
#![no_main]

use cairn_scim::{patch, user};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(req) = patch::parse_patch(&body) else {
        return;
    };
    let doc = json!({
        "userName": "test.user@okta.local",
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [
            {"primary": true, "value": "test.user@okta.local", "type": "work"},
            {"value": "home@example.com", "type": "home"}
        ],
        "phoneNumbers": [{"value": "+47 1", "type": "mobile"}],
        "displayName": "Test User",
        "active": true,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": "7",
            "manager": {"value": "m-1"}
        }
    });
    if let Ok(data) = patch::apply_user_patch(&doc, &req) {
        let again = user::user_from_request(&data.doc)
            .unwrap_or_else(|e| panic!("patched document does not normalise: {e}"));
        // Normalising again changes nothing, except that create/PUT store the default
        // `active` which only a PATCH `remove active` leaves out.
        let mut expected = data.doc.clone();
        if let Some(o) = expected.as_object_mut() {
            o.entry("active").or_insert(Value::Bool(true));
        }
        assert_eq!(again.doc, expected);
    }
});
