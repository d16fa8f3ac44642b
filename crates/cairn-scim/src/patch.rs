//! PATCH (RFC 7644 §3.5.2) for Users: parsing the PatchOp message and applying its
//! operations atomically to a stored document, with every client quirk we know of.
//!
//! Quirks handled. "Compatibility page" below is Microsoft Learn's "Known issues and
//! resolutions with SCIM 2.0 protocol compliance", which shows what Entra sends with and
//! without the `aadOptscim062020` flag:
//! <https://learn.microsoft.com/en-us/entra/identity/app-provisioning/application-provisioning-config-problem-scim-compatibility>
//! - `op` in any case: Entra sends `Add`/`Replace`/`Remove` (compatibility page); the
//!   `Operations` key in any case; a missing `schemas` is tolerated, a wrong one is not;
//! - path-less `add`/`replace` whose value keys are themselves paths: plain (`active`),
//!   dotted (`name.givenName`), URN-qualified (`urn:…:enterprise:2.0:User:employeeNumber`)
//!   — Entra with `aadOptscim062020` (compatibility page); unknown keys and read-only keys
//!   (`id` in Okta's group rename) inside such a value are ignored, as on POST;
//! - booleans as `"True"`/`"False"` (Entra without the flag, compatibility page);
//! - `add`/`replace` on `emails[type eq "work"].value` with no such element creates
//!   `{"type":"work","value":…}` (create-on-absent: Entra's default mappings update the
//!   work email this way, and RFC 7644 §3.5.2 does not say what a filter matching nothing
//!   does), for any multi-valued attribute whose filter is a conjunction of `eq` tests;
//! - `remove` with `path: "members"` and a value array removes those elements by `value`
//!   (Entra without the flag, compatibility page; not RFC 7644 §3.5.2.2), implemented for
//!   every multi-valued attribute;
//! - OneLogin's single-object `emails`; Entra's manager as a bare string on the extension
//!   path;
//! - a path naming an attribute we do not know is 400 `invalidPath`, never silently
//!   ignored (RFC 7644 §3.12: a silent no-op would hide a mapping error), except for
//!   unknown extension schema URNs, which are ignored like on POST; a path naming a
//!   read-only attribute is 400 `mutability`;
//!   `password` is accepted and ignored.
//!
//! Semantics chosen where the RFC leaves room:
//! - `add` to a multi-valued attribute merges a new value into an existing one with the
//!   same `value`, else into the first with the same `type` (an identity provider that
//!   re-sends its one `work` email updates it rather than piling up copies), else appends;
//! - a filter on a multi-valued attribute (`emails[type eq "work"].value`) applies to
//!   every value it matches (RFC 7644 §3.5.2), as two values may share a `type`;
//! - `replace` on a complex single-valued attribute merges sub-attributes (RFC 7644
//!   §3.5.2.3); `replace` on a multi-valued attribute without a filter replaces the array;
//! - setting `primary: true` on one value clears it on the others (RFC 7644 §3.5.2);
//! - a `null` value in `add`/`replace` removes the target;
//! - `remove` with a filter that matches nothing is a no-op (retries stay idempotent);
//!   `add`/`replace` with a filter but no sub-attribute that matches nothing is `noTarget`;
//! - the result goes through the same normalisation as POST/PUT, so `userName` stays
//!   required (removing it is 400 `invalidValue`) and types and limits hold.

use crate::path::{self, PatchPath};
use crate::query::{matches, resolve_element_filter};
use crate::schema::{user_resource_type, AttrType, AttributeDef, Mutability, Unresolved};
use crate::user::{coerce, normalise, user_data};
use crate::ScimError;
use cairn_core::ids::fold_case;
use cairn_core::query::{AttrTarget, CompareOp, Filter, Scalar};
use cairn_core::user::UserData;
use serde_json::{Map, Value};

pub const PATCH_OP_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Most operations accepted in one request.
pub const MAX_OPERATIONS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Replace,
    Remove,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    pub op: OpKind,
    pub path: Option<PatchPath>,
    /// `None` when absent; `Some(Value::Null)` when sent as `null`.
    pub value: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PatchRequest {
    pub operations: Vec<PatchOp>,
}

fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// Parses a PatchOp message (RFC 7644 §3.5.2). Paths are parsed here, so a malformed path
/// fails before anything is read or written.
pub fn parse_patch(body: &Value) -> Result<PatchRequest, ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("a PATCH body must be a JSON object"))?;
    if let Some(schemas) = get_ci(obj, "schemas") {
        let ok = schemas.as_array().is_some_and(|a| {
            a.iter().any(|s| {
                s.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(PATCH_OP_URN))
            })
        });
        if !ok {
            return Err(ScimError::invalid_syntax(format!(
                "schemas must contain {PATCH_OP_URN}"
            )));
        }
    }
    let ops = get_ci(obj, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("Operations must be an array"))?;
    if ops.is_empty() {
        return Err(ScimError::invalid_syntax("Operations is empty"));
    }
    if ops.len() > MAX_OPERATIONS {
        return Err(ScimError::new(
            400,
            Some(crate::ScimType::TooMany),
            format!("at most {MAX_OPERATIONS} operations are accepted in one request"),
        ));
    }
    let operations = ops
        .iter()
        .enumerate()
        .map(|(i, op)| {
            parse_op(op).map_err(|e| ScimError {
                detail: format!("operation {}: {}", i + 1, e.detail),
                ..e
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(PatchRequest { operations })
}

fn parse_op(op: &Value) -> Result<PatchOp, ScimError> {
    let obj = op
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("an operation must be a JSON object"))?;
    let name = get_ci(obj, "op")
        .and_then(Value::as_str)
        .ok_or_else(|| ScimError::invalid_syntax("op is missing"))?;
    let kind = match name.trim().to_ascii_lowercase().as_str() {
        "add" => OpKind::Add,
        "replace" => OpKind::Replace,
        "remove" => OpKind::Remove,
        _ => {
            return Err(ScimError::invalid_syntax(format!(
                "op {name:?} is not add, replace or remove"
            )))
        }
    };
    let path = match get_ci(obj, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(path::parse(s)?),
        Some(_) => return Err(ScimError::invalid_path("path must be a string")),
    };
    let value = get_ci(obj, "value").cloned();
    match (kind, &path, &value) {
        // RFC 7644 §3.5.2.2.
        (OpKind::Remove, None, _) => Err(ScimError::no_target("remove needs a path")),
        (OpKind::Add | OpKind::Replace, _, None) => {
            Err(ScimError::invalid_syntax(format!("{name} needs a value")))
        }
        (OpKind::Add | OpKind::Replace, None, Some(v)) if !v.is_object() => Err(
            ScimError::invalid_value(format!("{name} without a path needs an object value")),
        ),
        _ => Ok(PatchOp {
            op: kind,
            path,
            value,
        }),
    }
}

/// Applies `req` to a copy of the stored document and returns the new account data;
/// any failing operation fails the whole request (RFC 7644 §3.5.2: atomic).
pub fn apply_user_patch(doc: &Value, req: &PatchRequest) -> Result<UserData, ScimError> {
    let mut work = doc.as_object().cloned().unwrap_or_default();
    for (i, op) in req.operations.iter().enumerate() {
        apply_op(&mut work, op).map_err(|e| ScimError {
            detail: format!("operation {}: {}", i + 1, e.detail),
            ..e
        })?;
    }
    let doc = normalise(&work).map_err(|e| ScimError {
        detail: format!("the patched resource is invalid: {}", e.detail),
        ..e
    })?;
    user_data(doc)
}

fn apply_op(work: &mut Map<String, Value>, op: &PatchOp) -> Result<(), ScimError> {
    match &op.path {
        Some(p) => apply_path(work, op.op, p, op.value.as_ref(), false),
        None => {
            let Some(Value::Object(values)) = &op.value else {
                return Err(ScimError::invalid_value("a value object is required"));
            };
            for (key, v) in values {
                apply_key(work, op.op, None, key, v)?;
            }
            Ok(())
        }
    }
}

/// One key of a path-less value object, treated as a path (Entra with
/// `aadOptscim062020` sends dotted and URN-qualified keys this way).
fn apply_key(
    work: &mut Map<String, Value>,
    kind: OpKind,
    urn: Option<&str>,
    key: &str,
    v: &Value,
) -> Result<(), ScimError> {
    let text = match urn {
        Some(u) => format!("{u}:{key}"),
        None => key.to_owned(),
    };
    match path::parse(&text) {
        Ok(p) => apply_path(work, kind, &p, Some(v), true),
        // Not even a path: an attribute we cannot know, ignored as on POST.
        Err(_) => Ok(()),
    }
}

/// Applies one operation at `p`. `lenient` is set for keys of a path-less value, where
/// unknown and read-only attributes are ignored instead of rejected.
fn apply_path(
    work: &mut Map<String, Value>,
    kind: OpKind,
    p: &PatchPath,
    value: Option<&Value>,
    lenient: bool,
) -> Result<(), ScimError> {
    let rt = user_resource_type();
    // A null value clears the target.
    let (kind, value) = match (kind, value) {
        (OpKind::Add | OpKind::Replace, Some(Value::Null)) => (OpKind::Remove, None),
        other => other,
    };

    // The whole extension object: `urn:…:enterprise:2.0:User`.
    if p.filter.is_none() && p.attr.sub.is_none() {
        if let Some(urn) = &p.attr.urn {
            if let Some(ext) = rt.extension(&format!("{urn}:{}", p.attr.name)) {
                return match (kind, value) {
                    (OpKind::Remove, _) => {
                        work.remove(ext.id);
                        Ok(())
                    }
                    (_, Some(Value::Object(values))) => {
                        for (k, v) in values {
                            apply_key(work, kind, Some(ext.id), k, v)?;
                        }
                        Ok(())
                    }
                    _ => Err(ScimError::invalid_value(format!(
                        "{} needs an object value",
                        ext.id
                    ))),
                };
            }
        }
    }

    let r = match rt.resolve(p.attr.urn.as_deref(), &p.attr.name, p.attr.sub.as_deref()) {
        Ok(r) => r,
        // Custom extensions are ignored, as on POST.
        Err(Unresolved::UnknownSchema(_)) => return Ok(()),
        Err(Unresolved::UnknownAttribute(_)) if lenient => return Ok(()),
        Err(Unresolved::UnknownAttribute(a)) => {
            return Err(ScimError::invalid_path(format!("unknown attribute {a:?}")))
        }
    };
    let attr = r.attr;
    let sub: Option<&'static AttributeDef> = match (&p.sub, r.sub) {
        (Some(s), _) => match attr.sub(s) {
            Some(d) => Some(d),
            None if lenient => return Ok(()),
            None => {
                return Err(ScimError::invalid_path(format!(
                    "{} has no sub-attribute {s:?}",
                    r.canonical()
                )))
            }
        },
        (None, s) => s,
    };
    let label = match sub {
        Some(s) => {
            let attr_only = crate::schema::ResolvedAttr { sub: None, ..r };
            format!("{}.{}", attr_only.canonical(), s.name)
        }
        None => r.canonical(),
    };
    // `password` is writeOnly: accepted and never stored (Okta's password sync).
    if attr.mutability == Mutability::WriteOnly {
        return Ok(());
    }
    if attr.mutability == Mutability::ReadOnly
        || sub.is_some_and(|s| s.mutability == Mutability::ReadOnly)
    {
        if lenient {
            return Ok(());
        }
        return Err(ScimError::mutability(format!("{label} is read-only")));
    }
    let filter = match &p.filter {
        None => None,
        Some(_) if !attr.is_multi_valued_complex() => {
            return Err(ScimError::invalid_path(format!(
                "{} is not multi-valued, so it takes no [filter]",
                r.canonical()
            )))
        }
        Some(f) => Some(resolve_element_filter(attr, f)?),
    };

    let container = if r.extension {
        let urn = r.schema.map_or("", |s| s.id);
        let slot = work.entry(urn).or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        match slot {
            Value::Object(m) => m,
            _ => unreachable!("just made an object"),
        }
    } else {
        work
    };
    let name = attr.name;

    match (filter, sub) {
        (None, None) => whole_attribute(container, attr, &label, kind, value),
        (None, Some(sub)) => {
            if attr.multi_valued {
                every_element_sub(container, attr, sub, &label, kind, value)
            } else {
                complex_sub(container, name, sub, &label, kind, value)
            }
        }
        (Some(f), None) => filtered_elements(container, attr, &f, &label, kind, value),
        (Some(f), Some(sub)) => filtered_sub(container, attr, &f, sub, &label, kind, value),
    }
}

fn elements(container: &mut Map<String, Value>, name: &str) -> Vec<Value> {
    match container.remove(name) {
        Some(Value::Array(a)) => a,
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![other],
    }
}

fn store_elements(
    container: &mut Map<String, Value>,
    name: &str,
    items: Vec<Value>,
    touched: &[usize],
) {
    let mut items = items;
    // RFC 7644 §3.5.2: a value made primary demotes the others.
    if let Some(&p) = touched
        .iter()
        .find(|&&i| items[i].get("primary") == Some(&Value::Bool(true)))
    {
        for (i, item) in items.iter_mut().enumerate() {
            if i != p && item.get("primary") == Some(&Value::Bool(true)) {
                item["primary"] = Value::Bool(false);
            }
        }
    }
    items.retain(|i| !matches!(i, Value::Object(m) if m.is_empty()));
    if !items.is_empty() {
        container.insert(name.to_owned(), Value::Array(items));
    }
}

fn same_value(def: &AttributeDef, a: &Value, b: &Value) -> bool {
    let case_exact = def.sub("value").is_some_and(|s| s.case_exact);
    match (a.get("value"), b.get("value")) {
        (Some(Value::String(x)), Some(Value::String(y))) => {
            if case_exact {
                x == y
            } else {
                fold_case(x) == fold_case(y)
            }
        }
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn same_type(a: &Value, b: &Value) -> bool {
    match (
        a.get("type").and_then(Value::as_str),
        b.get("type").and_then(Value::as_str),
    ) {
        (Some(x), Some(y)) => fold_case(x) == fold_case(y),
        _ => false,
    }
}

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                a.insert(k.clone(), v.clone());
            }
        }
        (a, b) => *a = b.clone(),
    }
}

/// `add`/`replace`/`remove` on a whole attribute.
fn whole_attribute(
    container: &mut Map<String, Value>,
    attr: &AttributeDef,
    label: &str,
    kind: OpKind,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let name = attr.name;
    match kind {
        OpKind::Remove => match value {
            // Entra removes members with `path: "members"` and a value array
            // (not RFC 7644 §3.5.2.2): remove those elements, not the attribute.
            Some(v) if attr.multi_valued && !v.is_null() => {
                let given: Vec<Value> = match v {
                    Value::Array(a) => a.clone(),
                    Value::Object(_) => vec![v.clone()],
                    other => vec![Value::Object(Map::from_iter([(
                        "value".to_owned(),
                        other.clone(),
                    )]))],
                };
                let mut items = elements(container, name);
                items.retain(|e| {
                    !given.iter().any(|g| {
                        if g.get("value").is_some() {
                            same_value(attr, e, g)
                        } else {
                            e == g
                        }
                    })
                });
                store_elements(container, name, items, &[]);
            }
            _ => {
                container.remove(name);
            }
        },
        OpKind::Add | OpKind::Replace => {
            let v = value.unwrap_or(&Value::Null);
            let Some(new) = coerce(attr, v, label)? else {
                if kind == OpKind::Replace {
                    container.remove(name);
                }
                return Ok(());
            };
            if attr.multi_valued {
                let Value::Array(new_items) = new else {
                    unreachable!("coerce returns arrays for multi-valued attributes")
                };
                if kind == OpKind::Replace {
                    let touched: Vec<usize> = (0..new_items.len()).collect();
                    store_elements(container, name, new_items, &touched);
                    return Ok(());
                }
                let mut items = elements(container, name);
                let mut touched = Vec::new();
                for n in new_items {
                    let same = items
                        .iter()
                        .position(|e| same_value(attr, e, &n))
                        .or_else(|| items.iter().position(|e| same_type(e, &n)));
                    match same {
                        Some(i) => {
                            merge(&mut items[i], &n);
                            touched.push(i);
                        }
                        None => {
                            items.push(n);
                            touched.push(items.len() - 1);
                        }
                    }
                }
                store_elements(container, name, items, &touched);
            } else if attr.kind == AttrType::Complex {
                // RFC 7644 §3.5.2.1 and §3.5.2.3: sub-attributes not given are kept.
                let slot = container
                    .entry(name)
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                merge(slot, &new);
            } else {
                container.insert(name.to_owned(), new);
            }
        }
    }
    Ok(())
}

/// `name.givenName`, `urn:…:User:manager.value`.
fn complex_sub(
    container: &mut Map<String, Value>,
    name: &str,
    sub: &AttributeDef,
    label: &str,
    kind: OpKind,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    match kind {
        OpKind::Remove => {
            if let Some(Value::Object(m)) = container.get_mut(name) {
                m.remove(sub.name);
                if m.is_empty() {
                    container.remove(name);
                }
            }
        }
        OpKind::Add | OpKind::Replace => {
            let Some(v) = coerce(sub, value.unwrap_or(&Value::Null), label)? else {
                return Ok(());
            };
            let slot = container
                .entry(name)
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            slot[sub.name] = v;
        }
    }
    Ok(())
}

/// `emails.value` without a filter: every element (creating one if there is none).
fn every_element_sub(
    container: &mut Map<String, Value>,
    attr: &AttributeDef,
    sub: &AttributeDef,
    label: &str,
    kind: OpKind,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let mut items = elements(container, attr.name);
    let mut touched = Vec::new();
    match kind {
        OpKind::Remove => {
            for item in items.iter_mut() {
                if let Value::Object(m) = item {
                    m.remove(sub.name);
                }
            }
        }
        OpKind::Add | OpKind::Replace => {
            if let Some(v) = coerce(sub, value.unwrap_or(&Value::Null), label)? {
                if items.is_empty() {
                    items.push(Value::Object(Map::new()));
                }
                for (i, item) in items.iter_mut().enumerate() {
                    if !item.is_object() {
                        *item = Value::Object(Map::new());
                    }
                    item[sub.name] = v.clone();
                    touched.push(i);
                }
            }
        }
    }
    store_elements(container, attr.name, items, &touched);
    Ok(())
}

/// `emails[type eq "work"]` without a sub-attribute.
fn filtered_elements(
    container: &mut Map<String, Value>,
    attr: &AttributeDef,
    filter: &Filter,
    label: &str,
    kind: OpKind,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let mut items = elements(container, attr.name);
    let hits: Vec<usize> = (0..items.len())
        .filter(|&i| matches(filter, &items[i]))
        .collect();
    match kind {
        OpKind::Remove => {
            let mut i = 0;
            items.retain(|_| {
                i += 1;
                !hits.contains(&(i - 1))
            });
            store_elements(container, attr.name, items, &[]);
        }
        OpKind::Add | OpKind::Replace => {
            let v = value.unwrap_or(&Value::Null);
            let single = AttributeDef {
                multi_valued: false,
                ..*attr
            };
            let new = coerce(&single, v, label)?;
            if hits.is_empty() {
                store_elements(container, attr.name, items, &[]);
                return Err(ScimError::no_target(format!(
                    "no value of {label} matches the filter"
                )));
            }
            if let Some(new) = new {
                for &i in &hits {
                    if kind == OpKind::Replace {
                        items[i] = new.clone();
                    } else {
                        merge(&mut items[i], &new);
                    }
                }
            }
            store_elements(container, attr.name, items, &hits);
        }
    }
    Ok(())
}

/// `emails[type eq "work"].value`, creating the element when none matches (Entra expects
/// it; see the module documentation).
fn filtered_sub(
    container: &mut Map<String, Value>,
    attr: &AttributeDef,
    filter: &Filter,
    sub: &AttributeDef,
    label: &str,
    kind: OpKind,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let mut items = elements(container, attr.name);
    let mut hits: Vec<usize> = (0..items.len())
        .filter(|&i| matches(filter, &items[i]))
        .collect();
    match kind {
        OpKind::Remove => {
            for &i in &hits {
                if let Value::Object(m) = &mut items[i] {
                    m.remove(sub.name);
                }
            }
            store_elements(container, attr.name, items, &[]);
        }
        OpKind::Add | OpKind::Replace => {
            let Some(v) = coerce(sub, value.unwrap_or(&Value::Null), label)? else {
                store_elements(container, attr.name, items, &[]);
                return Ok(());
            };
            if hits.is_empty() {
                let Some(base) = element_from_filter(filter) else {
                    store_elements(container, attr.name, items, &[]);
                    return Err(ScimError::no_target(format!(
                        "no value of {} matches the filter, and the filter does not describe a new one",
                        attr.name
                    )));
                };
                items.push(Value::Object(base));
                hits.push(items.len() - 1);
            }
            for &i in &hits {
                if !items[i].is_object() {
                    items[i] = Value::Object(Map::new());
                }
                items[i][sub.name] = v.clone();
            }
            store_elements(container, attr.name, items, &hits);
        }
    }
    Ok(())
}

/// The element a filter made only of `eq` tests joined by `and` describes:
/// `type eq "work"` → `{"type": "work"}`.
fn element_from_filter(filter: &Filter) -> Option<Map<String, Value>> {
    fn walk(f: &Filter, out: &mut Map<String, Value>) -> bool {
        match f {
            Filter::And(a, b) => walk(a, out) && walk(b, out),
            Filter::Compare {
                attr,
                op: CompareOp::Eq,
                value,
            } => {
                let AttrTarget::Json(keys) = &attr.target else {
                    return false;
                };
                let [key] = keys.as_slice() else {
                    return false;
                };
                let v = match value {
                    Scalar::String(s) => Value::String(s.clone()),
                    Scalar::Bool(b) => Value::Bool(*b),
                    Scalar::Int(i) => Value::from(*i),
                    _ => return false,
                };
                out.insert(key.clone(), v);
                true
            }
            _ => false,
        }
    }
    let mut out = Map::new();
    walk(filter, &mut out).then_some(out)
}

#[cfg(test)]
mod tests;
