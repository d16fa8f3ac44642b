//! Request bodies (POST, PUT, and the values PATCH writes) → the stored document and
//! the indexed columns; see the parent module for the normalisation rules.

use crate::schema::{
    split_urn, user_resource_type, AttrType, AttributeDef, Mutability, Unresolved,
    ENTERPRISE_USER_URN,
};
use crate::ScimError;
use cairn_core::ids::UserName;
use cairn_core::user::UserData;
use serde_json::{Map, Value};

/// Longest string value accepted, in bytes.
pub const MAX_STRING_BYTES: usize = 64 * 1024;
/// Most values accepted in one multi-valued attribute.
pub const MAX_VALUES: usize = 100;
/// Longest value, in bytes, of the attributes stored in indexed columns (`externalId`,
/// `displayName`, the primary email). PostgreSQL B-tree entries hold at most about
/// 2.7 kB, so longer values were a 500 there; this leaves room for case folding.
pub const MAX_INDEXED_BYTES: usize = 1024;

/// Maps a POST or PUT body to the account data to store.
pub fn user_from_request(body: &Value) -> Result<UserData, ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("a User must be a JSON object"))?;
    let mut doc = normalise(obj)?;
    // Create and PUT materialise the default, so every representation of an account
    // carries an explicit boolean (Okta reads `active` back after each create and update,
    // Okta's SCIM 2.0 reference). Only a PATCH `remove active`
    // takes it out again; the account then counts as active (RFC 7643 §4.1.1 leaves
    // the meaning of an absent value to the provider).
    doc.entry("active").or_insert(Value::Bool(true));
    user_data(doc)
}

/// The stored document for a request object (see the module documentation).
pub(crate) fn normalise(obj: &Map<String, Value>) -> Result<Map<String, Value>, ScimError> {
    let rt = user_resource_type();
    let mut out = Map::new();
    for (key, value) in obj {
        if key.eq_ignore_ascii_case("schemas") || value.is_null() {
            continue;
        }
        if let Some(ext) = rt.extension(key) {
            let inner = value
                .as_object()
                .ok_or_else(|| ScimError::invalid_value(format!("{} must be an object", ext.id)))?;
            for (k, v) in inner {
                put(&mut out, Some(ext.id), k, v)?;
            }
            continue;
        }
        let (urn, name) = split_urn(key);
        put(&mut out, urn, name, value)?;
    }
    match out.get("userName") {
        Some(Value::String(s)) => {
            UserName::parse(s).map_err(|e| ScimError::invalid_value(format!("userName: {e}")))?;
        }
        _ => return Err(ScimError::invalid_value("userName is required")),
    }
    Ok(out)
}

/// Stores one top-level attribute (`urn` qualifies extension attributes).
pub(super) fn put(
    out: &mut Map<String, Value>,
    urn: Option<&str>,
    name: &str,
    value: &Value,
) -> Result<(), ScimError> {
    let r = match user_resource_type().resolve(urn, name, None) {
        Ok(r) => r,
        Err(Unresolved::UnknownSchema(_) | Unresolved::UnknownAttribute(_)) => return Ok(()),
    };
    if matches!(
        r.attr.mutability,
        Mutability::ReadOnly | Mutability::WriteOnly
    ) {
        return Ok(());
    }
    let label = r.canonical();
    let Some(v) = coerce(r.attr, value, &label)? else {
        return Ok(());
    };
    let target = if r.extension {
        let urn = r.schema.map(|s| s.id).unwrap_or(ENTERPRISE_USER_URN);
        let slot = out.entry(urn).or_insert_with(|| Value::Object(Map::new()));
        match slot {
            Value::Object(m) => m,
            _ => unreachable!("extension slots are only created as objects"),
        }
    } else {
        out
    };
    if target.insert(r.attr.name.to_owned(), v).is_some() {
        return Err(ScimError::invalid_value(format!(
            "{label} is given more than once"
        )));
    }
    Ok(())
}

/// Checks and converts a value for `def`; `None` means absent.
pub(crate) fn coerce(
    def: &AttributeDef,
    value: &Value,
    label: &str,
) -> Result<Option<Value>, ScimError> {
    if !def.multi_valued {
        return coerce_single(def, value, label);
    }
    let items: Vec<&Value> = match value {
        Value::Null => return Ok(None),
        Value::Array(a) => a.iter().collect(),
        // OneLogin's SCIM connector can send `emails` as one object.
        other => vec![other],
    };
    if items.len() > MAX_VALUES {
        return Err(ScimError::invalid_value(format!(
            "{label} has more than {MAX_VALUES} values"
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if let Some(v) = coerce_single(def, item, label)? {
            out.push(v);
        }
    }
    if out.is_empty() {
        return Ok(None);
    }
    check_multi(&out, label)?;
    Ok(Some(Value::Array(out)))
}

/// RFC 7643 §2.4: at most one value is `primary`. Two values may share a `type` (RFC
/// 7643 sets no uniqueness rule on it; a second `work` email is legitimate).
pub(super) fn check_multi(values: &[Value], label: &str) -> Result<(), ScimError> {
    let primaries = values
        .iter()
        .filter(|v| v.get("primary") == Some(&Value::Bool(true)))
        .count();
    if primaries > 1 {
        return Err(ScimError::invalid_value(format!(
            "{label}: at most one value may be primary"
        )));
    }
    Ok(())
}

pub(super) fn coerce_single(
    def: &AttributeDef,
    value: &Value,
    label: &str,
) -> Result<Option<Value>, ScimError> {
    let wrong = |what: &str| {
        Err(ScimError::invalid_value(format!(
            "{label} must be {what}, not {}",
            type_name(value)
        )))
    };
    Ok(match def.kind {
        _ if value.is_null() => None,
        AttrType::Complex => {
            let owned;
            let obj = match value {
                Value::Object(m) => m,
                Value::String(_) if def.sub("value").is_some() => {
                    owned = Map::from_iter([("value".to_owned(), value.clone())]);
                    &owned
                }
                _ => return wrong("an object"),
            };
            let mut out = Map::new();
            for (k, v) in obj {
                let Some(sub) = def.sub(k) else { continue };
                if matches!(sub.mutability, Mutability::ReadOnly | Mutability::WriteOnly) {
                    continue;
                }
                let sub_label = format!("{label}.{}", sub.name);
                if let Some(v) = coerce_single(sub, v, &sub_label)? {
                    if out.insert(sub.name.to_owned(), v).is_some() {
                        return Err(ScimError::invalid_value(format!(
                            "{sub_label} is given more than once"
                        )));
                    }
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        AttrType::Boolean => match value {
            Value::Bool(b) => Some(Value::Bool(*b)),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Some(Value::Bool(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Some(Value::Bool(false)),
            _ => return wrong("a boolean"),
        },
        AttrType::String | AttrType::Reference | AttrType::DateTime | AttrType::Binary => {
            match value {
                Value::String(s) if s.len() > MAX_STRING_BYTES => {
                    return Err(ScimError::invalid_value(format!(
                        "{label} is longer than {MAX_STRING_BYTES} bytes"
                    )))
                }
                // Valid in JSON, but PostgreSQL text and jsonb cannot hold it (a 500 there)
                // and no identity provider means it.
                Value::String(s) if s.contains('\0') => {
                    return Err(ScimError::invalid_value(format!(
                        "{label} must not contain NUL characters"
                    )))
                }
                Value::String(s) => Some(Value::String(s.clone())),
                _ => return wrong("a string"),
            }
        }
        AttrType::Integer => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Some(value.clone()),
            _ => return wrong("an integer"),
        },
        AttrType::Decimal => match value {
            Value::Number(_) => Some(value.clone()),
            _ => return wrong("a number"),
        },
    })
}

pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Projects the indexed columns out of a normalised document.
pub(crate) fn user_data(doc: Map<String, Value>) -> Result<UserData, ScimError> {
    let text = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_owned);
    let user_name = UserName::parse(doc.get("userName").and_then(Value::as_str).unwrap_or(""))
        .map_err(|e| ScimError::invalid_value(format!("userName: {e}")))?;
    let (external_id, display_name, email) =
        (text("externalId"), text("displayName"), primary_email(&doc));
    for (label, v) in [
        ("externalId", &external_id),
        ("displayName", &display_name),
        ("the primary email", &email),
    ] {
        if v.as_ref().is_some_and(|v| v.len() > MAX_INDEXED_BYTES) {
            return Err(ScimError::invalid_value(format!(
                "{label} is longer than {MAX_INDEXED_BYTES} bytes"
            )));
        }
    }
    Ok(UserData {
        user_name,
        external_id,
        display_name,
        email,
        active: doc.get("active").and_then(Value::as_bool).unwrap_or(true),
        doc: Value::Object(doc),
    })
}

/// The primary email, else the `work` one, else the first (Okta's CRUD test reads
/// `emails[0].value` and expects the primary/work address).
pub(super) fn primary_email(doc: &Map<String, Value>) -> Option<String> {
    let emails: Vec<&Value> = doc
        .get("emails")?
        .as_array()?
        .iter()
        .filter(|e| e.get("value").and_then(Value::as_str).is_some())
        .collect();
    let pick = emails
        .iter()
        .find(|e| e.get("primary") == Some(&Value::Bool(true)))
        .or_else(|| {
            emails.iter().find(|e| {
                e.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case("work"))
            })
        })
        .or_else(|| emails.first())?;
    pick.get("value").and_then(Value::as_str).map(str::to_owned)
}
