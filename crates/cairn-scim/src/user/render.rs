//! Accounts → their SCIM User representation.

use super::etag;
use crate::schema::{user_resource_type, USER_URN};
use cairn_core::clock::format_ts;
use cairn_core::user::UserRecord;
use serde_json::{json, Map, Value};

/// The full SCIM representation of an account.
pub fn render_user(u: &UserRecord, base_url: &str) -> Value {
    render_user_doc(u, u.doc.clone(), base_url)
}

/// [`render_user`] with the record's document handed over (`std::mem::take(&mut u.doc)`)
/// instead of copied, for callers done with the record.
pub fn render_user_doc(u: &UserRecord, doc: Value, base_url: &str) -> Value {
    let mut m = match doc {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    m.remove("password");
    m.insert("id".into(), json!(u.id.as_str()));
    m.entry("userName")
        .or_insert_with(|| json!(u.user_name.as_str()));
    // An explicit boolean whenever the document holds one (always, unless a PATCH
    // removed it); the column is authoritative for its value.
    if m.contains_key("active") {
        m.insert("active".into(), Value::Bool(u.active));
    }
    let mut schemas = vec![json!(USER_URN)];
    for (ext, _) in user_resource_type().schema_extensions {
        if m.contains_key(ext.id) {
            schemas.push(json!(ext.id));
        }
    }
    m.insert("schemas".into(), Value::Array(schemas));
    m.insert(
        "meta".into(),
        json!({
            "resourceType": "User",
            "created": format_ts(u.created_at),
            "lastModified": format_ts(u.updated_at),
            "location": format!("{}/Users/{}", base_url.trim_end_matches('/'), u.id),
            "version": etag(u.version),
        }),
    );
    Value::Object(m)
}
