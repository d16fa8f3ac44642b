//! The mapping between SCIM User resources (RFC 7643 §4.1, §4.3) and Cairn backup
//! accounts: normalising request bodies into a stored document, rendering accounts back,
//! ETags, and `attributes`/`excludedAttributes` projections.
//!
//! Normalisation (shared by POST, PUT and PATCH, so every write path obeys the same rules):
//! - attribute names are case-insensitive (RFC 7643 §2.1) and stored in canonical spelling;
//! - Enterprise User attributes may come nested under their schema URN or as URN-qualified
//!   top-level keys; they are stored nested under the URN key;
//! - read-only attributes (`id`, `meta`, `groups`, `manager.displayName`) and `schemas`
//!   are dropped, `password` (writeOnly) is accepted and dropped — never stored;
//! - **attributes the schema does not define are accepted and ignored**, including custom
//!   extension URNs: identity providers send whatever their admins map in the attribute
//!   mappings, and a 400 there would fail provisioning for data we do not use;
//! - booleans sent as the strings "True"/"False" (any case) are coerced (Entra
//!   without `aadOptscim062020`, see `crate::patch`); any other wrong type is 400
//!   `invalidValue` naming the attribute;
//! - a multi-valued complex attribute sent as a single object is wrapped in an array
//!   (OneLogin), and a bare string where a complex attribute with a `value` is expected
//!   becomes `{"value": …}` (Entra's manager);
//! - nulls and empty arrays are absent; values are otherwise stored exactly as sent;
//! - two values of one multi-valued attribute with the same `type` (compared without
//!   case) are 400 `invalidValue`: Entra requires unique types and we must never emit two
//!   `work` emails (Entra's SCIM tutorial on Microsoft Learn), and silently dropping one
//!   would lose data;
//! - at most one value per multi-valued attribute may be `primary` (RFC 7643 §2.4);
//! - limits: strings up to [`MAX_STRING_BYTES`], at most [`MAX_VALUES`] values per
//!   multi-valued attribute;
//! - `userName` is required; create and PUT store `active` (default `true`); only a PATCH
//!   `remove` takes it out, and an account without it counts as active.

use crate::schema::{
    split_urn, user_resource_type, AttrType, AttributeDef, Mutability, ResourceTypeDef, Returned,
    Unresolved, ENTERPRISE_USER_URN, USER_URN,
};
use crate::ScimError;
use cairn_core::clock::format_ts;
use cairn_core::ids::{fold_case, UserName};
use cairn_core::user::{UserData, UserRecord};
use serde_json::{json, Map, Value};
use std::collections::HashSet;

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
fn put(
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

/// RFC 7643 §2.4 (one primary) and Entra's unique `type` values.
fn check_multi(values: &[Value], label: &str) -> Result<(), ScimError> {
    let primaries = values
        .iter()
        .filter(|v| v.get("primary") == Some(&Value::Bool(true)))
        .count();
    if primaries > 1 {
        return Err(ScimError::invalid_value(format!(
            "{label}: at most one value may be primary"
        )));
    }
    let mut types = HashSet::new();
    for t in values.iter().filter_map(|v| v.get("type")?.as_str()) {
        if !types.insert(fold_case(t)) {
            return Err(ScimError::invalid_value(format!(
                "{label}: two values have type {t:?}; types must be unique"
            )));
        }
    }
    Ok(())
}

fn coerce_single(
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

fn type_name(v: &Value) -> &'static str {
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
fn primary_email(doc: &Map<String, Value>) -> Option<String> {
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

/// The weak ETag of a version (RFC 7644 §3.14).
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Parses `If-Match` (RFC 7232 §3.1) into the version it requires; `None` means any
/// (`*`).
///
/// - `W/"N"` and `"N"` name version N (weak and strong tags compare alike: the version
///   is the whole state).
/// - A well-formed list whose tags are none of ours (`"abc"`) can never match: 412.
/// - A list naming one version (possibly with foreign tags) requires that version.
/// - A list naming two different versions is 400 `invalidValue`: SCIM clients send one
///   tag, and the store checks a single version.
/// - Anything that is not an entity-tag list is 400 `invalidValue`.
pub fn parse_if_match(header: &str) -> Result<Option<i64>, ScimError> {
    let h = header.trim();
    if h == "*" {
        return Ok(None);
    }
    let bad = || ScimError::invalid_value("If-Match must be \"*\" or a list of entity tags");
    let mut versions = HashSet::new();
    let mut tags = 0;
    for tag in h.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        tags += 1;
        let opaque = tag
            .strip_prefix("W/")
            .or_else(|| tag.strip_prefix("w/"))
            .unwrap_or(tag);
        let inner = opaque
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .ok_or_else(bad)?;
        if inner.contains('"') {
            return Err(bad());
        }
        if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(v) = inner.parse::<i64>() {
                versions.insert(v);
            }
        }
    }
    if tags == 0 {
        return Err(bad());
    }
    match versions.len() {
        0 => Err(ScimError::precondition_failed(
            "If-Match names no version of this resource",
        )),
        1 => Ok(versions.into_iter().next()),
        _ => Err(ScimError::invalid_value(
            "If-Match may name only one version of the resource",
        )),
    }
}

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

/// `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5, §3.9), resolved against the
/// schema. Names are case-insensitive and may be URN-qualified or name sub-attributes;
/// unknown names are ignored, so a client asking for an attribute we lack still gets
/// the resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Projection {
    /// Key paths into the representation (`["name","givenName"]`, `[URN]`,
    /// `[URN,"manager"]`); empty means "the default set".
    attributes: Vec<Vec<String>>,
    excluded: Vec<Vec<String>>,
    /// The resource type the names resolve against; `None` is User.
    rt: Option<&'static ResourceTypeDef>,
}

impl Projection {
    pub fn from_params(
        attributes: Option<&str>,
        excluded_attributes: Option<&str>,
    ) -> Result<Projection, ScimError> {
        Self::for_resource_type(user_resource_type(), attributes, excluded_attributes)
    }

    /// The same for another resource type (`/Groups`).
    pub fn for_resource_type(
        rt: &'static ResourceTypeDef,
        attributes: Option<&str>,
        excluded_attributes: Option<&str>,
    ) -> Result<Projection, ScimError> {
        Ok(Projection {
            attributes: key_paths(rt, attributes),
            excluded: key_paths(rt, excluded_attributes),
            rt: Some(rt),
        })
    }

    fn rt(&self) -> &'static ResourceTypeDef {
        self.rt.unwrap_or_else(user_resource_type)
    }

    /// Whether the top-level attribute `name` (canonical spelling) can appear in the
    /// projected resource, so callers can skip loading what would be dropped
    /// (`excludedAttributes=members` never reads a group's members).
    pub fn wants(&self, name: &str) -> bool {
        if self.excluded.iter().any(|p| p.len() == 1 && p[0] == name) {
            return false;
        }
        self.attributes.is_empty() || self.attributes.iter().any(|p| p[0] == name)
    }

    /// Whether the client named any attributes at all.
    pub fn is_requested(&self) -> bool {
        !self.attributes.is_empty() || !self.excluded.is_empty()
    }

    /// Applies the projection to a rendered resource. `returned: always` attributes (`id`,
    /// `schemas`) are always kept, `returned: never` ones always removed, `returned:
    /// request` ones kept only when named in `attributes`.
    pub fn apply(&self, resource: &mut Value) {
        let Some(obj) = resource.as_object_mut() else {
            return;
        };
        // The common case, no `attributes` and no `excludedAttributes`, usually has
        // nothing to remove: checked without copying a key (most of the cost otherwise).
        if !self.is_requested() && default_keeps_all(self.rt(), obj) {
            set_present_schemas(self.rt(), obj);
            return;
        }
        self.apply_by_walk(obj);
    }

    /// [`Self::apply`] by visiting every attribute.
    fn apply_by_walk(&self, obj: &mut Map<String, Value>) {
        let rt = self.rt();
        let keys: Vec<String> = obj.keys().cloned().collect();
        for key in keys {
            if key == "schemas" {
                continue;
            }
            if let Some(ext) = rt.extension(&key) {
                let whole = self
                    .attributes
                    .iter()
                    .any(|p| p.len() == 1 && p[0] == ext.id);
                if self.excluded.iter().any(|p| p.len() == 1 && p[0] == ext.id) {
                    obj.remove(&key);
                    continue;
                }
                if let Some(Value::Object(inner)) = obj.get_mut(&key) {
                    let names: Vec<String> = inner.keys().cloned().collect();
                    for name in names {
                        let def = ext.attribute(&name);
                        let prefix = [ext.id.to_owned(), name.clone()];
                        self.project_attr(inner, &name, def, &prefix, whole);
                    }
                    if inner.is_empty() {
                        obj.remove(&key);
                    }
                }
                continue;
            }
            let def = rt.resolve(None, &key, None).ok().map(|r| r.attr);
            self.project_attr(obj, &key, def, std::slice::from_ref(&key), false);
        }
        set_present_schemas(rt, obj);
    }

    /// Projects one attribute `name` of `container`; `path` is its key path.
    fn project_attr(
        &self,
        container: &mut Map<String, Value>,
        name: &str,
        def: Option<&AttributeDef>,
        path: &[String],
        whole_requested: bool,
    ) {
        let Some(def) = def else { return };
        match def.returned {
            Returned::Always => return,
            Returned::Never => {
                container.remove(name);
                return;
            }
            _ => {}
        }
        let named = |set: &[Vec<String>]| set.iter().any(|p| p.as_slice() == path);
        let subs_of = |set: &[Vec<String>]| -> Vec<String> {
            set.iter()
                .filter(|p| p.len() == path.len() + 1 && p.starts_with(path))
                .map(|p| p[path.len()].clone())
                .collect()
        };
        if named(&self.excluded) {
            container.remove(name);
            return;
        }
        let requested = whole_requested || named(&self.attributes);
        if !self.attributes.is_empty() && !requested {
            let keep = subs_of(&self.attributes);
            if keep.is_empty() {
                container.remove(name);
                return;
            }
            retain_subs(container, name, def, |s| keep.iter().any(|k| k == s));
        } else if def.returned == Returned::Request && !requested {
            container.remove(name);
            return;
        }
        let drop = subs_of(&self.excluded);
        if !drop.is_empty() {
            retain_subs(container, name, def, |s| !drop.iter().any(|k| k == s));
        }
        // Sub-attributes never returned.
        retain_subs(container, name, def, |_| true);
    }
}

/// `schemas`, when present, lists the resource type's schema and the extensions present.
fn set_present_schemas(rt: &ResourceTypeDef, obj: &mut Map<String, Value>) {
    if !obj.contains_key("schemas") {
        return;
    }
    let present: Vec<Value> = std::iter::once(json!(rt.schema.id))
        .chain(
            rt.schema_extensions
                .iter()
                .filter(|(s, _)| obj.contains_key(s.id))
                .map(|(s, _)| json!(s.id)),
        )
        .collect();
    obj.insert("schemas".into(), Value::Array(present));
}

/// Whether the default projection would keep every attribute of `obj` as it is: nothing
/// `returned: never` or `request` at any level, no empty complex value or extension
/// (the walk drops those). `false` sends the resource through the walk.
fn default_keeps_all(rt: &ResourceTypeDef, obj: &Map<String, Value>) -> bool {
    fn keeps(def: Option<&AttributeDef>, v: &Value) -> bool {
        let Some(def) = def else { return true };
        if def.returned == Returned::Always {
            return true;
        }
        if def.omitted_by_default() {
            return false;
        }
        if def.kind != AttrType::Complex {
            return true;
        }
        let subs_kept = |m: &Map<String, Value>| {
            !m.is_empty()
                && m.keys()
                    .all(|k| def.sub(k).is_none_or(|s| s.returned != Returned::Never))
        };
        match v {
            Value::Object(m) => subs_kept(m),
            Value::Array(items) => {
                !items.is_empty()
                    && items.iter().all(|i| match i {
                        Value::Object(m) => subs_kept(m),
                        _ => true,
                    })
            }
            _ => true,
        }
    }
    obj.iter().all(|(key, v)| {
        if key == "schemas" {
            return true;
        }
        if let Some(ext) = rt.extension(key) {
            return match v {
                Value::Object(inner) => {
                    !inner.is_empty() && inner.iter().all(|(n, iv)| keeps(ext.attribute(n), iv))
                }
                _ => true,
            };
        }
        keeps(rt.resolve(None, key, None).ok().map(|r| r.attr), v)
    })
}

/// Keeps the sub-attributes of `container[name]` (each element's, if multi-valued) for
/// which `keep` holds or which are `returned: always`; drops `returned: never` ones and
/// the attribute itself when nothing is left.
fn retain_subs(
    container: &mut Map<String, Value>,
    name: &str,
    def: &AttributeDef,
    keep: impl Fn(&str) -> bool,
) {
    if def.kind != AttrType::Complex {
        return;
    }
    let filter_obj = |m: &mut Map<String, Value>| {
        m.retain(|k, _| match def.sub(k) {
            Some(s) if s.returned == Returned::Always => true,
            Some(s) if s.returned == Returned::Never => false,
            _ => keep(k),
        });
    };
    let empty = match container.get_mut(name) {
        Some(Value::Object(m)) => {
            filter_obj(m);
            m.is_empty()
        }
        Some(Value::Array(items)) => {
            for item in items.iter_mut() {
                if let Value::Object(m) = item {
                    filter_obj(m);
                }
            }
            items.retain(|i| !matches!(i, Value::Object(m) if m.is_empty()));
            items.is_empty()
        }
        _ => false,
    };
    if empty {
        container.remove(name);
    }
}

/// Resolves a comma-separated attribute list to key paths, ignoring unknown names.
fn key_paths(rt: &ResourceTypeDef, list: Option<&str>) -> Vec<Vec<String>> {
    list.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|name| {
            if let Some(ext) = rt.extension(name) {
                return Some(vec![ext.id.to_owned()]);
            }
            let r = rt.find_attribute(name).ok()?;
            let mut keys = r.attr_keys();
            if let Some(s) = r.sub {
                keys.push(s.name.to_owned());
            }
            Some(keys)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::ids::{QuotaGb, TenantId, UserId};

    fn data(v: Value) -> Result<UserData, ScimError> {
        user_from_request(&v)
    }

    #[test]
    fn okta_create_body() {
        let d = data(
            json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName":"test.user@okta.local",
            "name":{"givenName":"Test","familyName":"User"},
            "emails":[{"primary":true,"value":"test.user@okta.local","type":"work"}],
            "displayName":"Test User","locale":"en-US","externalId":"00ujl29u0le5T6Aj10h7",
            "groups":[],"password":"1mz050nq","active":true}),
        )
        .unwrap();
        assert_eq!(d.user_name.as_str(), "test.user@okta.local");
        assert_eq!(d.external_id.as_deref(), Some("00ujl29u0le5T6Aj10h7"));
        assert_eq!(d.display_name.as_deref(), Some("Test User"));
        assert_eq!(d.email.as_deref(), Some("test.user@okta.local"));
        assert!(d.active);
        assert_eq!(
            d.doc,
            json!({"userName":"test.user@okta.local",
                "name":{"givenName":"Test","familyName":"User"},
                "emails":[{"primary":true,"value":"test.user@okta.local","type":"work"}],
                "displayName":"Test User","locale":"en-US","externalId":"00ujl29u0le5T6Aj10h7",
                "active":true})
        );
    }

    #[test]
    fn okta_put_echo_ignores_read_only() {
        let d = data(json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"23a35c27-x",
            "userName":"test.user@okta.local",
            "name":{"givenName":"Another","middleName":"","familyName":"User"},
            "emails":[{"primary":true,"value":"test.user@okta.local","type":"work","display":"test.user@okta.local"}],
            "active":false,"groups":[],"meta":{"resourceType":"User"}}))
        .unwrap();
        assert!(!d.active);
        let doc = d.doc.as_object().unwrap();
        assert!(
            !doc.contains_key("id") && !doc.contains_key("meta") && !doc.contains_key("groups")
        );
        // Stored exactly as sent, empty strings included.
        assert_eq!(doc["name"]["middleName"], "");
    }

    #[test]
    fn entra_create_body_with_extension_and_unknowns() {
        let d = data(json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "externalId":"0a21f0f2","UserName":"Test_User_00aa","active":"True",
            "emails":[{"primary":"true","type":"work","value":"Test_User_11bb@testuser.com"}],
            "meta":{"resourceType":"User"},
            "name":{"formatted":"givenName familyName","familyName":"familyName","givenName":"givenName"},
            "roles":[],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"Department":"Eng","manager":"m-1"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"701",
            "urn:ietf:params:scim:schemas:extension:acme:2.0:User":{"badge":"x"},
            "urn:ietf:params:scim:schemas:extension:acme:2.0:User:badge":"x",
            "favouriteColour":"teal"}))
        .unwrap();
        assert!(d.active);
        assert_eq!(
            d.doc,
            json!({"externalId":"0a21f0f2","userName":"Test_User_00aa","active":true,
                "emails":[{"primary":true,"type":"work","value":"Test_User_11bb@testuser.com"}],
                "name":{"formatted":"givenName familyName","familyName":"familyName","givenName":"givenName"},
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
                    {"department":"Eng","manager":{"value":"m-1"},"employeeNumber":"701"}})
        );
    }

    #[test]
    fn onelogin_single_object_email_and_defaults() {
        let d = data(json!({"userName":"a@b.c","emails":{"value":"a@b.c"},"nickName":null,"phoneNumbers":[]}))
            .unwrap();
        assert_eq!(d.doc["emails"], json!([{"value":"a@b.c"}]));
        assert_eq!(d.email.as_deref(), Some("a@b.c"));
        assert!(d.active);
        assert_eq!(d.doc["active"], true);
        assert!(d.doc.get("nickName").is_none() && d.doc.get("phoneNumbers").is_none());
    }

    #[test]
    fn email_projection_prefers_primary_then_work() {
        let pick = |emails: Value| data(json!({"userName":"u","emails":emails})).unwrap().email;
        assert_eq!(
            pick(
                json!([{"value":"h","type":"home"},{"value":"w","type":"work"},{"value":"p","type":"other","primary":true}])
            ),
            Some("p".into())
        );
        assert_eq!(
            pick(json!([{"value":"h","type":"home"},{"value":"w","type":"Work"}])),
            Some("w".into())
        );
        assert_eq!(pick(json!([{"value":"x"},{"value":"y"}])), Some("x".into()));
    }

    #[test]
    fn invalid_bodies() {
        let too_many: Vec<Value> = (0..=MAX_VALUES)
            .map(|i| json!({"value": i.to_string()}))
            .collect();
        for (body, needle) in [
            (json!([1]), "object"),
            (json!({"name":{"givenName":"x"}}), "userName is required"),
            (json!({"userName":"  "}), "userName"),
            (json!({"userName":42}), "userName"),
            (json!({"userName":"u","active":"yes"}), "active"),
            (json!({"userName":"u","active":1}), "active"),
            (json!({"userName":"u","displayName":7}), "displayName"),
            (json!({"userName":"u","name":"x"}), "name"),
            (
                json!({"userName":"u","emails":[{"value":"a","primary":"maybe"}]}),
                "emails.primary",
            ),
            (
                json!({"userName":"u","emails":[{"value":"a","primary":true},{"value":"b","primary":true}]}),
                "primary",
            ),
            (
                json!({"userName":"u","emails":[{"value":"a","type":"work"},{"value":"b","type":"WORK"}]}),
                "type",
            ),
            (json!({"userName":"u","emails":too_many}), "more than"),
            (
                json!({"userName":"u","title":"x".repeat(MAX_STRING_BYTES + 1)}),
                "longer",
            ),
            (json!({"userName":"u","displayName":"a\u{0}b"}), "NUL"),
            (
                json!({"userName":"u","displayName":"x".repeat(MAX_INDEXED_BYTES + 1)}),
                "longer",
            ),
            (
                json!({"userName":"u","externalId":"x".repeat(MAX_INDEXED_BYTES + 1)}),
                "longer",
            ),
            (
                json!({"userName":"u","emails":[{"value":"x".repeat(MAX_INDEXED_BYTES + 1),"type":"work"}]}),
                "longer",
            ),
            (
                json!({"userName":"u","emails":[{"value":"a\u{0}@x.test","type":"work"}]}),
                "NUL",
            ),
            (json!({"userName":"u","username":"v"}), "more than once"),
            (
                json!({"userName":"u","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":"x"}),
                "object",
            ),
        ] {
            let e = data(body.clone()).unwrap_err();
            assert_eq!(e.status, 400, "{body}");
            assert!(e.detail.contains(needle), "{body}: {}", e.detail);
        }
    }

    fn record(doc: Value) -> UserRecord {
        let d = user_from_request(&doc).unwrap();
        let t = time::OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap();
        UserRecord {
            id: UserId::from_trusted("8f1c6f0e-0000-4000-8000-000000000001".into()),
            tenant_id: TenantId::random(),
            user_name: d.user_name,
            external_id: d.external_id,
            display_name: d.display_name,
            email: d.email,
            active: d.active,
            doc: d.doc,
            quota_gb: QuotaGb::default(),
            used_bytes: 0,
            scim_managed: true,
            created_at: t,
            updated_at: t,
            version: 3,
            deleted_at: None,
            purge_at: None,
        }
    }

    #[test]
    fn render_full_user() {
        let u = record(
            json!({"userName":"a@b.c","name":{"givenName":"A","familyName":"B"},
            "emails":[{"value":"a@b.c","type":"work","primary":true}],"active":false,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"7"}}),
        );
        let r = render_user(&u, "https://h/scim/v2/t/");
        assert_eq!(r["schemas"], json!([USER_URN, ENTERPRISE_USER_URN]));
        assert_eq!(r["id"], u.id.as_str());
        assert_eq!(r["active"], false);
        assert_eq!(r["name"]["givenName"], "A");
        assert_eq!(r["emails"][0]["value"], "a@b.c");
        assert_eq!(
            r["meta"],
            json!({"resourceType":"User","created":"2026-01-01T00:00:00.000Z",
                "lastModified":"2026-01-01T00:00:00.000Z",
                "location":format!("https://h/scim/v2/t/Users/{}", u.id),"version":"W/\"3\""})
        );
        let plain = render_user(&record(json!({"userName":"x"})), "https://h");
        assert_eq!(plain["schemas"], json!([USER_URN]));
        assert_eq!(plain["active"], true);
        // After a PATCH `remove active` the document has none: nothing is synthesised.
        let mut removed = record(json!({"userName":"x"}));
        removed.doc.as_object_mut().unwrap().remove("active");
        assert!(render_user(&removed, "https://h").get("active").is_none());
    }

    #[test]
    fn projections() {
        let u = record(
            json!({"userName":"a@b.c","name":{"givenName":"A","familyName":"B"},
            "emails":[{"value":"a@b.c","type":"work"}],"title":"T",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"7","department":"D"}}),
        );
        let full = render_user(&u, "https://h");
        let proj = |a: Option<&str>, e: Option<&str>| {
            let mut r = full.clone();
            Projection::from_params(a, e).unwrap().apply(&mut r);
            r
        };
        assert_eq!(proj(None, None), full);
        let r = proj(Some("USERNAME, name.givenName,emails.value,nonsense"), None);
        assert_eq!(
            r,
            json!({"schemas":[USER_URN],"id":u.id.as_str(),"userName":"a@b.c",
                "name":{"givenName":"A"},"emails":[{"value":"a@b.c"}]})
        );
        let r = proj(
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"),
            None,
        );
        assert_eq!(
            r,
            json!({"schemas":[USER_URN, ENTERPRISE_USER_URN],"id":u.id.as_str(),
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"D"}})
        );
        let r = proj(
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"),
            None,
        );
        assert_eq!(r[ENTERPRISE_USER_URN], full[ENTERPRISE_USER_URN]);
        let r = proj(None, Some("emails,name.familyName,id,meta,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"));
        assert!(r.get("emails").is_none() && r.get("meta").is_none());
        assert_eq!(r["name"], json!({"givenName":"A"}));
        assert_eq!(r["id"], u.id.as_str());
        assert_eq!(r["schemas"], json!([USER_URN]));
        assert!(r.get(ENTERPRISE_USER_URN).is_none());
        let r = proj(None, Some("emails.value"));
        assert_eq!(r["emails"], json!([{"type":"work"}]));
    }

    /// The default projection's shortcut (nothing to remove: leave the resource alone)
    /// gives what the walk over every attribute gives, on resources where it applies and
    /// on resources where it must hand over to the walk.
    #[test]
    fn default_projection_shortcut_matches_the_walk() {
        let ent = ENTERPRISE_USER_URN;
        let base = render_user(
            &record(json!({"userName":"a@b.c","name":{"givenName":"A"},
                "emails":[{"value":"a@b.c","type":"work","primary":true}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":{"value":"m"}}})),
            "https://h",
        );
        let with = |f: &dyn Fn(&mut Map<String, Value>)| {
            let mut r = base.clone();
            f(r.as_object_mut().unwrap());
            r
        };
        let cases = [
            base.clone(),
            with(&|m| {
                m.insert("password".into(), json!("secret"));
            }),
            with(&|m| {
                m.insert("emails".into(), json!([]));
            }),
            with(&|m| {
                m.insert("emails".into(), json!([{}, {"value": "x"}]));
            }),
            with(&|m| {
                m.insert("name".into(), json!({}));
            }),
            with(&|m| {
                m.insert(ent.into(), json!({}));
            }),
            with(&|m| {
                m.insert(ent.into(), json!({"manager": {}}));
            }),
            with(&|m| {
                m.remove(ent);
            }),
            with(&|m| {
                m.insert("schemas".into(), json!(["stale"]));
            }),
            with(&|m| {
                m.insert("x-unknown".into(), json!({"a": 1}));
            }),
            with(&|m| {
                m.insert("groups".into(), json!([{"value": "g", "display": "G"}]));
            }),
        ];
        let p = Projection::from_params(None, None).unwrap();
        let mut shortcut_taken = 0;
        for case in cases {
            let mut fast = case.clone();
            p.apply(&mut fast);
            let mut walked = case.clone();
            p.apply_by_walk(walked.as_object_mut().unwrap());
            assert_eq!(fast, walked, "{case}");
            if default_keeps_all(p.rt(), case.as_object().unwrap()) {
                shortcut_taken += 1;
            }
        }
        // Both paths were exercised.
        assert!((2..11).contains(&shortcut_taken), "{shortcut_taken}");
    }

    #[test]
    fn etags() {
        assert_eq!(etag(7), "W/\"7\"");
        assert_eq!(parse_if_match("*").unwrap(), None);
        assert_eq!(parse_if_match(&etag(7)).unwrap(), Some(7));
        assert_eq!(parse_if_match(" \"12\" ").unwrap(), Some(12));
        assert_eq!(parse_if_match("W/\"3\", \"xyz\"").unwrap(), Some(3));
        assert_eq!(parse_if_match("\"abc\"").unwrap_err().status, 412);
        assert_eq!(parse_if_match("W/\"1\", W/\"2\"").unwrap_err().status, 400);
        for bad in ["", "7", "W/7", "\"7", "\"a\"b\"", ","] {
            let e = parse_if_match(bad).unwrap_err();
            assert_eq!(
                (e.status, e.scim_type),
                (400, Some(crate::ScimType::InvalidValue)),
                "{bad}"
            );
        }
    }
}
