//! Resolution of parsed filters and `sortBy` against the schema into Cairn's
//! storage-neutral query types (`cairn_core::query`), with SCIM's type rules; plus the
//! in-memory evaluation of element filters that PATCH value paths need.
//!
//! Mapping: `id`, `userName`, `externalId`, `displayName`, `active`, `meta.created` and
//! `meta.lastModified` become indexed columns; every other attribute is a JSON path of
//! canonical keys into the stored document, extension attributes under their schema URN.
//! Multi-valued attributes become `Filter::Any` over their elements; a comparison on a
//! multi-valued complex attribute without a sub-attribute compares its `value`
//! (RFC 7644 §3.4.2.2).

use crate::filter::{AttrPath, Expr, Test};
use crate::schema::{
    group_resource_type, user_resource_type, AttrType, AttributeDef, ResolvedAttr, ResourceTypeDef,
    Returned, Unresolved,
};
use crate::ScimError;
use cairn_core::clock::canonical_ts;
use cairn_core::query::{Attr, AttrKind, AttrTarget, CompareOp, Filter, Scalar, SortKey};
use serde_json::Value;

/// Resolves a parsed filter on `/Users`. Unknown attributes, `password`, and comparisons
/// the attribute's type does not allow are 400 `invalidFilter`.
pub fn resolve_user_filter(expr: &Expr) -> Result<Filter, ScimError> {
    resolve(user_resource_type(), expr)
}

/// Resolves `sortBy` and `sortOrder` (RFC 7644 §3.4.2.3) on `/Users`.
///
/// - No (or an empty) `sortBy`: `None`, the store's stable default order; `sortOrder`
///   alone is ignored.
/// - `sortOrder` is `ascending` (the default) or `descending`, in any case; anything else
///   is 400 `invalidValue`.
/// - An unknown attribute, `password`, a complex attribute without a sub-attribute, and
///   `meta` sub-attributes other than `created`/`lastModified` are 400 `invalidValue`:
///   we advertise `sort.supported`, so a sort we cannot honour is an error, not a silent
///   reordering.
/// - Multi-valued attributes (`emails`, `emails.value`) are 400 `invalidValue`. RFC 7644
///   asks for the primary (or first) value, but a `cairn_core::query` JSON path can only
///   name object keys, not an array element, so the store cannot express it yet.
pub fn resolve_user_sort(
    sort_by: Option<&str>,
    sort_order: Option<&str>,
) -> Result<Option<SortKey>, ScimError> {
    resolve_sort(user_resource_type(), sort_by, sort_order)
}

/// Resolves a parsed filter on `/Groups` (`displayName`, `externalId`, `id`, `meta.*`;
/// the same rules as on `/Users`). Members are a relation, not part of the stored
/// document: `members[value eq "…"]`, `members.value eq "…"` (the groups a user belongs
/// to), `members eq "…"` and `members pr` become `Filter::Member`, tests on the member's
/// id; other member sub-attributes are 400 `invalidFilter`.
pub fn resolve_group_filter(expr: &Expr) -> Result<Filter, ScimError> {
    members_to_relation(resolve(group_resource_type(), expr)?)
}

fn members_to_relation(f: Filter) -> Result<Filter, ScimError> {
    let is_members = |keys: &[String]| keys.first().is_some_and(|p| p == "members");
    Ok(match f {
        Filter::And(a, b) => Filter::And(
            Box::new(members_to_relation(*a)?),
            Box::new(members_to_relation(*b)?),
        ),
        Filter::Or(a, b) => Filter::Or(
            Box::new(members_to_relation(*a)?),
            Box::new(members_to_relation(*b)?),
        ),
        Filter::Not(a) => Filter::Not(Box::new(members_to_relation(*a)?)),
        Filter::Any { path, filter } if is_members(&path) => {
            Filter::Member(Box::new(member_element(*filter)?))
        }
        // `members pr`: the group has a member.
        Filter::Present(a) if matches!(&a.target, AttrTarget::Json(k) if is_members(k)) => {
            Filter::Member(Box::new(Filter::Present(Attr {
                target: AttrTarget::Value,
                ..a
            })))
        }
        Filter::Compare { attr, .. } if matches!(&attr.target, AttrTarget::Json(k) if is_members(k)) =>
        {
            return Err(member_sub_error());
        }
        other => other,
    })
}

fn member_sub_error() -> ScimError {
    ScimError::invalid_filter(
        "of a group's members only value (the member's id) can be filtered on, e.g. members[value eq \"…\"]",
    )
}

/// A filter on one member element, its `value` turned into the member's id. Ids are
/// stored in lower case (`cairn_core::ids`), so a case-insensitive test is a case-exact
/// test of the lower-cased value, which the membership index can serve.
fn member_element(f: Filter) -> Result<Filter, ScimError> {
    let value = |a: Attr| -> Result<Attr, ScimError> {
        match &a.target {
            AttrTarget::Json(k) if k.len() == 1 && k[0] == "value" => Ok(Attr {
                target: AttrTarget::Value,
                case_exact: true,
                ..a
            }),
            _ => Err(member_sub_error()),
        }
    };
    Ok(match f {
        Filter::And(a, b) => {
            Filter::And(Box::new(member_element(*a)?), Box::new(member_element(*b)?))
        }
        Filter::Or(a, b) => {
            Filter::Or(Box::new(member_element(*a)?), Box::new(member_element(*b)?))
        }
        Filter::Not(a) => Filter::Not(Box::new(member_element(*a)?)),
        Filter::Present(a) => Filter::Present(value(a)?),
        Filter::Compare { attr, op, value: v } => Filter::Compare {
            attr: value(attr)?,
            op,
            value: match v {
                Scalar::String(s) => Scalar::String(s.to_lowercase()),
                other => other,
            },
        },
        Filter::Any { .. } | Filter::Member(_) => return Err(member_sub_error()),
    })
}

/// Resolves `sortBy` and `sortOrder` on `/Groups`, with the rules of [`resolve_user_sort`].
pub fn resolve_group_sort(
    sort_by: Option<&str>,
    sort_order: Option<&str>,
) -> Result<Option<SortKey>, ScimError> {
    resolve_sort(group_resource_type(), sort_by, sort_order)
}

fn resolve_sort(
    rt: &ResourceTypeDef,
    sort_by: Option<&str>,
    sort_order: Option<&str>,
) -> Result<Option<SortKey>, ScimError> {
    let Some(by) = sort_by.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let descending = match sort_order.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("ascending") => false,
        Some("descending") => true,
        Some(_) => {
            return Err(ScimError::invalid_value(
                "sortOrder must be \"ascending\" or \"descending\"",
            ))
        }
    };
    let bad = |why: &str| ScimError::invalid_value(format!("cannot sort by {by:?}: {why}"));
    let r = rt
        .find_attribute(by)
        .map_err(|_| bad("no such attribute"))?;
    if r.attr.returned == Returned::Never || r.leaf().returned == Returned::Never {
        return Err(bad("the attribute is never returned"));
    }
    if r.attr.multi_valued {
        return Err(bad("sorting by a multi-valued attribute is not supported"));
    }
    if r.leaf().kind == AttrType::Complex {
        return Err(bad("name one of its sub-attributes"));
    }
    let attr = column_or_json(&r).map_err(|_| bad("the attribute cannot be sorted by"))?;
    Ok(Some(SortKey { attr, descending }))
}

fn resolve(rt: &ResourceTypeDef, expr: &Expr) -> Result<Filter, ScimError> {
    Ok(match expr {
        Expr::And(a, b) => Filter::And(Box::new(resolve(rt, a)?), Box::new(resolve(rt, b)?)),
        Expr::Or(a, b) => Filter::Or(Box::new(resolve(rt, a)?), Box::new(resolve(rt, b)?)),
        Expr::Not(e) => Filter::Not(Box::new(resolve(rt, e)?)),
        Expr::Present(path) => {
            let r = lookup(rt, path)?;
            if r.attr.multi_valued {
                match r.sub {
                    Some(sub) => Filter::Any {
                        path: r.attr_keys(),
                        filter: Box::new(Filter::Present(element_attr(sub))),
                    },
                    None => Filter::Present(json_attr(r.attr_keys(), r.attr)),
                }
            } else if r.schema.is_none() && r.sub.is_none() && r.attr.kind == AttrType::Complex {
                return Err(ScimError::invalid_filter(format!(
                    "{} cannot be filtered on as a whole; use one of its sub-attributes",
                    r.canonical()
                )));
            } else {
                Filter::Present(column_or_json(&r)?)
            }
        }
        Expr::Compare { path, op, value } => {
            let r = lookup(rt, path)?;
            if r.attr.multi_valued {
                // `emails eq "x"` compares each element's `value` (RFC 7644 §3.4.2.2).
                let sub = match r.sub {
                    Some(s) => Some(s),
                    None if r.attr.kind == AttrType::Complex => r.attr.sub("value"),
                    None => None,
                };
                let (attr, def) = match sub {
                    Some(s) => (element_attr(s), s),
                    None if r.attr.kind != AttrType::Complex => (
                        Attr {
                            target: AttrTarget::Value,
                            kind: kind(r.attr.kind),
                            case_exact: r.attr.case_exact,
                        },
                        r.attr,
                    ),
                    None => {
                        return Err(ScimError::invalid_filter(format!(
                            "{} has no value to compare; use one of its sub-attributes",
                            r.canonical()
                        )))
                    }
                };
                Filter::Any {
                    path: r.attr_keys(),
                    filter: Box::new(compare(attr, def, &r.canonical(), *op, value)?),
                }
            } else {
                if r.leaf().kind == AttrType::Complex {
                    return Err(ScimError::invalid_filter(format!(
                        "{} is complex; compare one of its sub-attributes",
                        r.canonical()
                    )));
                }
                compare(column_or_json(&r)?, r.leaf(), &r.canonical(), *op, value)?
            }
        }
        Expr::ValuePath { attr, filter, sub } => {
            let r = lookup(rt, attr)?;
            if !r.attr.is_multi_valued_complex() {
                return Err(ScimError::invalid_filter(format!(
                    "{} is not a multi-valued complex attribute, so it takes no [filter]",
                    r.canonical()
                )));
            }
            let mut inner = resolve_element_filter(r.attr, filter)?;
            if let Some((name, test)) = sub {
                let def = sub_def(r.attr, name)?;
                let label = format!("{}.{}", r.attr.name, def.name);
                let t = match test {
                    Test::Present => Filter::Present(element_attr(def)),
                    Test::Compare(op, v) => compare(element_attr(def), def, &label, *op, v)?,
                };
                inner = Filter::And(Box::new(inner), Box::new(t));
            }
            Filter::Any {
                path: r.attr_keys(),
                filter: Box::new(inner),
            }
        }
    })
}

/// Resolves the filter inside `attr[…]`: paths name sub-attributes of `parent`, and the
/// result is relative to one element.
pub fn resolve_element_filter(parent: &AttributeDef, expr: &Expr) -> Result<Filter, ScimError> {
    Ok(match expr {
        Expr::And(a, b) => Filter::And(
            Box::new(resolve_element_filter(parent, a)?),
            Box::new(resolve_element_filter(parent, b)?),
        ),
        Expr::Or(a, b) => Filter::Or(
            Box::new(resolve_element_filter(parent, a)?),
            Box::new(resolve_element_filter(parent, b)?),
        ),
        Expr::Not(e) => Filter::Not(Box::new(resolve_element_filter(parent, e)?)),
        Expr::Present(p) => Filter::Present(element_attr(element_sub(parent, p)?)),
        Expr::Compare { path, op, value } => {
            let def = element_sub(parent, path)?;
            let label = format!("{}.{}", parent.name, def.name);
            compare(element_attr(def), def, &label, *op, value)?
        }
        Expr::ValuePath { .. } => {
            return Err(ScimError::invalid_filter("value filters cannot be nested"))
        }
    })
}

fn element_sub(parent: &AttributeDef, p: &AttrPath) -> Result<&'static AttributeDef, ScimError> {
    if p.urn.is_some() || p.sub.is_some() {
        return Err(ScimError::invalid_filter(format!(
            "inside {}[…] name a sub-attribute of {}, not {p}",
            parent.name, parent.name
        )));
    }
    sub_def(parent, &p.name)
}

fn sub_def(parent: &AttributeDef, name: &str) -> Result<&'static AttributeDef, ScimError> {
    let def = parent.sub(name).ok_or_else(|| {
        ScimError::invalid_filter(format!("{} has no sub-attribute {name:?}", parent.name))
    })?;
    if def.returned == Returned::Never {
        return Err(ScimError::invalid_filter(format!(
            "{}.{} cannot be used in a filter",
            parent.name, def.name
        )));
    }
    Ok(def)
}

fn lookup(rt: &ResourceTypeDef, p: &AttrPath) -> Result<ResolvedAttr, ScimError> {
    let r = rt
        .resolve(p.urn.as_deref(), &p.name, p.sub.as_deref())
        .map_err(|e| match e {
            Unresolved::UnknownSchema(u) => {
                ScimError::invalid_filter(format!("unknown schema {u:?} in attribute {p}"))
            }
            Unresolved::UnknownAttribute(a) => {
                ScimError::invalid_filter(format!("unknown attribute {a:?}"))
            }
        })?;
    // `password` is writeOnly and never returned (RFC 7643 §4.1.1): filtering on it would
    // leak it.
    if r.attr.returned == Returned::Never || r.leaf().returned == Returned::Never {
        return Err(ScimError::invalid_filter(format!(
            "{} cannot be used in a filter",
            r.canonical()
        )));
    }
    Ok(r)
}

pub(crate) fn kind(t: AttrType) -> AttrKind {
    match t {
        AttrType::String => AttrKind::String,
        AttrType::Boolean => AttrKind::Boolean,
        AttrType::Decimal => AttrKind::Decimal,
        AttrType::Integer => AttrKind::Integer,
        AttrType::DateTime => AttrKind::DateTime,
        AttrType::Binary => AttrKind::Binary,
        AttrType::Reference => AttrKind::Reference,
        AttrType::Complex => AttrKind::Complex,
    }
}

fn json_attr(keys: Vec<String>, def: &AttributeDef) -> Attr {
    Attr {
        target: AttrTarget::Json(keys),
        kind: kind(def.kind),
        case_exact: def.case_exact,
    }
}

fn element_attr(def: &AttributeDef) -> Attr {
    json_attr(vec![def.name.to_owned()], def)
}

/// A single-valued attribute: an indexed column where there is one, else a JSON path.
fn column_or_json(r: &ResolvedAttr) -> Result<Attr, ScimError> {
    let leaf = r.leaf();
    let column = |target| Attr {
        target,
        kind: kind(leaf.kind),
        case_exact: leaf.case_exact,
    };
    let core = !r.extension;
    Ok(
        match (r.schema.is_none(), r.attr.name, r.sub.map(|s| s.name)) {
            (true, "id", None) => column(AttrTarget::Id),
            (true, "externalId", None) => column(AttrTarget::ExternalId),
            (true, "meta", Some("created")) => column(AttrTarget::Created),
            (true, "meta", Some("lastModified")) => column(AttrTarget::LastModified),
            (true, _, _) => {
                return Err(ScimError::invalid_filter(format!(
                    "{} cannot be used in a filter",
                    r.canonical()
                )))
            }
            (false, "userName", None) if core => column(AttrTarget::UserName),
            (false, "displayName", None) if core => column(AttrTarget::DisplayName),
            (false, "active", None) if core => column(AttrTarget::Active),
            _ => {
                let mut keys = r.attr_keys();
                if let Some(s) = r.sub {
                    keys.push(s.name.to_owned());
                }
                json_attr(keys, leaf)
            }
        },
    )
}

/// A comparison, with the value checked and converted for the attribute's type.
fn compare(
    attr: Attr,
    def: &AttributeDef,
    label: &str,
    op: CompareOp,
    value: &Scalar,
) -> Result<Filter, ScimError> {
    let bad = |why: String| Err(ScimError::invalid_filter(format!("{label}: {why}")));
    let op_name = crate::filter::op_str(op);
    let ordering = matches!(
        op,
        CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
    );
    let substring = matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew);
    if matches!(value, Scalar::Null) {
        if !matches!(op, CompareOp::Eq | CompareOp::Ne) {
            return bad(format!("null cannot be compared with {op_name}"));
        }
        return Ok(Filter::Compare {
            attr,
            op,
            value: Scalar::Null,
        });
    }
    let value = match def.kind {
        AttrType::Boolean => {
            if ordering || substring {
                return bad(format!("{op_name} does not apply to a boolean attribute"));
            }
            match value {
                Scalar::Bool(b) => Scalar::Bool(*b),
                // Entra sends booleans as "True"/"False" without `aadOptscim062020`.
                Scalar::String(s) if s.eq_ignore_ascii_case("true") => Scalar::Bool(true),
                Scalar::String(s) if s.eq_ignore_ascii_case("false") => Scalar::Bool(false),
                _ => return bad("expected true or false".into()),
            }
        }
        AttrType::Binary | AttrType::String | AttrType::Reference => {
            if def.kind == AttrType::Binary && ordering {
                return bad(format!("{op_name} does not apply to a binary attribute"));
            }
            match value {
                Scalar::String(s) => Scalar::String(s.clone()),
                // An unquoted integer is its text (`externalId eq 12345`).
                Scalar::Int(i) => Scalar::String(i.to_string()),
                _ => return bad("expected a string".into()),
            }
        }
        AttrType::DateTime => match value {
            Scalar::String(s) if substring => Scalar::String(s.clone()),
            Scalar::String(s) => match canonical_ts(s) {
                Some(t) => Scalar::String(t),
                None => return bad(format!("{s:?} is not an RFC 3339 date and time")),
            },
            _ => return bad("expected a date and time string".into()),
        },
        AttrType::Integer | AttrType::Decimal => {
            if substring {
                return bad(format!("{op_name} does not apply to a number"));
            }
            match (def.kind, value) {
                (AttrType::Integer, Scalar::Int(i)) => Scalar::Int(*i),
                (AttrType::Decimal, Scalar::Int(i)) => Scalar::Decimal(*i as f64),
                (AttrType::Decimal, Scalar::Decimal(d)) => Scalar::Decimal(*d),
                _ => return bad("expected a number".into()),
            }
        }
        AttrType::Complex => return bad("compare one of its sub-attributes".into()),
    };
    Ok(Filter::Compare { attr, op, value })
}

/// Evaluates an element filter (from [`resolve_element_filter`]) against one element of a
/// multi-valued attribute, as PATCH value paths need (RFC 7644 §3.5.2).
pub(crate) fn matches(filter: &Filter, element: &Value) -> bool {
    match filter {
        Filter::And(a, b) => matches(a, element) && matches(b, element),
        Filter::Or(a, b) => matches(a, element) || matches(b, element),
        Filter::Not(e) => !matches(e, element),
        Filter::Present(attr) => match get(&attr.target, element) {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        },
        Filter::Compare { attr, op, value } => {
            compare_json(get(&attr.target, element), *op, value, attr.case_exact)
        }
        Filter::Any { path, filter } => match get(&AttrTarget::Json(path.clone()), element) {
            Some(Value::Array(items)) => items.iter().any(|i| matches(filter, i)),
            _ => false,
        },
        // Element filters never name group members (`resolve_element_filter`).
        Filter::Member(_) => false,
    }
}

fn get<'v>(target: &AttrTarget, v: &'v Value) -> Option<&'v Value> {
    match target {
        AttrTarget::Json(keys) => {
            let mut cur = v;
            for k in keys {
                cur = cur.as_object()?.get(k)?;
            }
            Some(cur)
        }
        AttrTarget::Value => Some(v),
        _ => None,
    }
}

fn compare_json(v: Option<&Value>, op: CompareOp, value: &Scalar, case_exact: bool) -> bool {
    use std::cmp::Ordering;
    let v = v.filter(|v| !v.is_null());
    if op == CompareOp::Ne {
        return !compare_json(v, CompareOp::Eq, value, case_exact);
    }
    let ord = |o: Ordering| match op {
        CompareOp::Eq => o == Ordering::Equal,
        CompareOp::Gt => o == Ordering::Greater,
        CompareOp::Ge => o != Ordering::Less,
        CompareOp::Lt => o == Ordering::Less,
        CompareOp::Le => o != Ordering::Greater,
        _ => false,
    };
    match (value, v) {
        (Scalar::Null, v) => op == CompareOp::Eq && v.is_none(),
        (Scalar::String(want), Some(Value::String(have))) => {
            let (have, want) = if case_exact {
                (have.clone(), want.clone())
            } else {
                (
                    cairn_core::ids::fold_case(have),
                    cairn_core::ids::fold_case(want),
                )
            };
            match op {
                CompareOp::Co => have.contains(&want),
                CompareOp::Sw => have.starts_with(&want),
                CompareOp::Ew => have.ends_with(&want),
                _ => ord(have.cmp(&want)),
            }
        }
        (Scalar::Bool(want), Some(have)) => {
            let have = match have {
                Value::Bool(b) => Some(*b),
                Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
                Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
                _ => None,
            };
            op == CompareOp::Eq && have == Some(*want)
        }
        (Scalar::Int(_) | Scalar::Decimal(_), Some(Value::Number(n))) => {
            let want = match value {
                Scalar::Int(i) => *i as f64,
                Scalar::Decimal(d) => *d,
                _ => return false,
            };
            n.as_f64()
                .and_then(|h| h.partial_cmp(&want))
                .is_some_and(ord)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::parse;
    use crate::schema::ENTERPRISE_USER_URN;
    use crate::ScimType;
    use proptest::prelude::*;

    fn resolve_str(f: &str) -> Result<Filter, ScimError> {
        resolve_user_filter(&parse(f)?)
    }
    fn attr(target: AttrTarget, kind: AttrKind, case_exact: bool) -> Attr {
        Attr {
            target,
            kind,
            case_exact,
        }
    }
    fn json(keys: &[&str]) -> AttrTarget {
        AttrTarget::Json(keys.iter().map(|k| k.to_string()).collect())
    }
    fn eq(a: Attr, v: &str) -> Filter {
        Filter::Compare {
            attr: a,
            op: CompareOp::Eq,
            value: Scalar::String(v.into()),
        }
    }

    #[test]
    fn columns() {
        assert_eq!(
            resolve_str(r#"userName eq "Alice@X""#).unwrap(),
            eq(
                attr(AttrTarget::UserName, AttrKind::String, false),
                "Alice@X"
            )
        );
        assert_eq!(
            resolve_str("EXTERNALID eq jyoung").unwrap(),
            eq(
                attr(AttrTarget::ExternalId, AttrKind::String, true),
                "jyoung"
            )
        );
        assert_eq!(
            resolve_str(r#"id eq "abc""#).unwrap(),
            eq(attr(AttrTarget::Id, AttrKind::String, true), "abc")
        );
        assert_eq!(
            resolve_str(r#"displayName eq "Test User""#).unwrap(),
            eq(
                attr(AttrTarget::DisplayName, AttrKind::String, false),
                "Test User"
            )
        );
        assert_eq!(
            resolve_str(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "a""#).unwrap(),
            eq(attr(AttrTarget::UserName, AttrKind::String, false), "a")
        );
        assert_eq!(
            resolve_str(r#"active eq "False""#).unwrap(),
            Filter::Compare {
                attr: attr(AttrTarget::Active, AttrKind::Boolean, false),
                op: CompareOp::Eq,
                value: Scalar::Bool(false)
            }
        );
        assert_eq!(
            resolve_str(r#"meta.lastModified gt "2026-01-02T03:04:05+02:00""#).unwrap(),
            Filter::Compare {
                attr: attr(AttrTarget::LastModified, AttrKind::DateTime, false),
                op: CompareOp::Gt,
                value: Scalar::String("2026-01-02T01:04:05.000Z".into())
            }
        );
        assert!(matches!(
            resolve_str(r#"meta.created ge "2026-01-01T00:00:00Z""#).unwrap(),
            Filter::Compare {
                attr: Attr {
                    target: AttrTarget::Created,
                    ..
                },
                ..
            }
        ));
    }

    #[test]
    fn json_paths_and_extensions() {
        assert_eq!(
            resolve_str(r#"name.familyName co "O'Malley""#).unwrap(),
            Filter::Compare {
                attr: attr(json(&["name", "familyName"]), AttrKind::String, false),
                op: CompareOp::Co,
                value: Scalar::String("O'Malley".into())
            }
        );
        assert_eq!(
            resolve_str(&format!(r#"{ENTERPRISE_USER_URN}:employeeNumber eq "7""#)).unwrap(),
            eq(
                attr(
                    json(&[ENTERPRISE_USER_URN, "employeeNumber"]),
                    AttrKind::String,
                    false
                ),
                "7"
            )
        );
        assert_eq!(
            resolve_str(&format!(r#"{ENTERPRISE_USER_URN}:manager.value eq "m1""#)).unwrap(),
            eq(
                attr(
                    json(&[ENTERPRISE_USER_URN, "manager", "value"]),
                    AttrKind::String,
                    false
                ),
                "m1"
            )
        );
        assert_eq!(
            resolve_str("title pr").unwrap(),
            Filter::Present(attr(json(&["title"]), AttrKind::String, false))
        );
    }

    #[test]
    fn multi_valued() {
        let any = |f: Filter| Filter::Any {
            path: vec!["emails".into()],
            filter: Box::new(f),
        };
        let value = || attr(json(&["value"]), AttrKind::String, false);
        let ty = || attr(json(&["type"]), AttrKind::String, false);
        assert_eq!(
            resolve_str(r#"emails.value eq "u@c.com""#).unwrap(),
            any(eq(value(), "u@c.com"))
        );
        assert_eq!(
            resolve_str(r#"emails eq "u@c.com""#).unwrap(),
            any(eq(value(), "u@c.com"))
        );
        assert_eq!(
            resolve_str(r#"emails[type eq "work"].value eq "u@c.com""#).unwrap(),
            any(Filter::And(
                Box::new(eq(ty(), "work")),
                Box::new(eq(value(), "u@c.com"))
            ))
        );
        assert_eq!(
            resolve_str(r#"emails[type eq "work"]"#).unwrap(),
            any(eq(ty(), "work"))
        );
        assert_eq!(
            resolve_str("emails pr").unwrap(),
            Filter::Present(attr(json(&["emails"]), AttrKind::Complex, false))
        );
        assert_eq!(
            resolve_str(r#"emails[primary eq "True"]"#).unwrap(),
            any(Filter::Compare {
                attr: attr(json(&["primary"]), AttrKind::Boolean, false),
                op: CompareOp::Eq,
                value: Scalar::Bool(true)
            })
        );
        // Okta and Entra combine the joining attribute with others.
        let f = resolve_str(r#"userName eq "a" and emails[type eq "work"].value eq "b""#).unwrap();
        assert!(matches!(f, Filter::And(_, ref r) if matches!(**r, Filter::Any { .. })));
        let f = resolve_str(r#"not (userName eq "a") or active eq true"#).unwrap();
        assert!(matches!(f, Filter::Or(ref l, _) if matches!(**l, Filter::Not(_))));
    }

    #[test]
    fn type_errors_are_invalid_filter() {
        for (bad, needle) in [
            (r#"nope eq "x""#, "nope"),
            (r#"name.nope eq "x""#, "name.nope"),
            (r#"urn:example:custom:1.0:User:badge eq "x""#, "urn:example"),
            (r#"password eq "x""#, "password"),
            (r#"emails[nope eq "x"]"#, "nope"),
            (r#"emails[type eq "work"].nope eq "x""#, "nope"),
            ("active gt true", "boolean"),
            (r#"active eq "yes""#, "true or false"),
            ("active co true", "boolean"),
            (r#"x509Certificates.value gt "a""#, "binary"),
            ("userName eq true", "string"),
            ("userName eq 1.5", "string"),
            (r#"meta.created gt "yesterday""#, "RFC 3339"),
            (r#"meta.location eq "x""#, "meta.location"),
            (r#"name eq "x""#, "complex"),
            (r#"addresses eq "x""#, "addresses"),
            (r#"userName[value eq "x"]"#, "multi-valued"),
            ("userName gt null", "null"),
            ("meta pr", "meta"),
        ] {
            let e = resolve_str(bad).unwrap_err();
            assert_eq!(e.scim_type, Some(crate::ScimType::InvalidFilter), "{bad}");
            assert!(e.detail.contains(needle), "{bad}: {}", e.detail);
        }
    }

    #[test]
    fn sort_keys() {
        assert_eq!(resolve_user_sort(None, Some("descending")).unwrap(), None);
        assert_eq!(resolve_user_sort(Some(" "), None).unwrap(), None);
        assert_eq!(
            resolve_user_sort(Some("username"), None).unwrap(),
            Some(SortKey {
                attr: attr(AttrTarget::UserName, AttrKind::String, false),
                descending: false
            })
        );
        let k = resolve_user_sort(Some("name.familyName"), Some("Descending"))
            .unwrap()
            .unwrap();
        assert!(k.descending);
        assert_eq!(k.attr.target, json(&["name", "familyName"]));
        let k = resolve_user_sort(Some("meta.lastModified"), Some("ascending"))
            .unwrap()
            .unwrap();
        assert_eq!(k.attr.target, AttrTarget::LastModified);
        for (by, order) in [
            ("nope", None),
            ("emails", None),
            ("emails.value", None),
            ("name", None),
            ("password", None),
            ("userName", Some("up")),
        ] {
            let e = resolve_user_sort(Some(by), order).unwrap_err();
            assert_eq!(e.scim_type, Some(crate::ScimType::InvalidValue), "{by}");
        }
    }

    #[test]
    fn group_member_filters_become_the_relation() {
        let g = |s: &str| resolve_group_filter(&parse(s).unwrap());
        let id = "0193A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B";
        let want = Filter::Member(Box::new(Filter::Compare {
            attr: Attr {
                target: AttrTarget::Value,
                kind: AttrKind::String,
                case_exact: true,
            },
            op: CompareOp::Eq,
            value: Scalar::String(id.to_lowercase()),
        }));
        assert_eq!(g(&format!("members[value eq \"{id}\"]")).unwrap(), want);
        assert_eq!(g(&format!("members.value eq \"{id}\"")).unwrap(), want);
        assert_eq!(g(&format!("members eq \"{id}\"")).unwrap(), want);
        assert!(matches!(
            g("members pr").unwrap(),
            Filter::Member(f) if matches!(*f, Filter::Present(_))
        ));
        assert!(matches!(
            g(&format!("displayName sw \"a\" and not (members.value eq \"{id}\")")).unwrap(),
            Filter::And(_, r) if matches!(*r, Filter::Not(_))
        ));
        for bad in [
            r#"members.display eq "x""#,
            r#"members[type eq "User"]"#,
            r#"members[value eq "x" or display eq "y"]"#,
            r#"members.$ref eq "x""#,
        ] {
            let e = g(bad).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidFilter), "{bad}: {e}");
        }
    }

    #[test]
    fn element_matching() {
        let emails = crate::schema::user_resource_type()
            .find_attribute("emails")
            .unwrap()
            .attr;
        let f = |s: &str| resolve_element_filter(emails, &parse(s).unwrap()).unwrap();
        let e = serde_json::json!({"type": "Work", "value": "A@x.com", "primary": true});
        assert!(matches(&f(r#"type eq "work""#), &e));
        assert!(matches(&f(r#"value co "@X.""#), &e));
        assert!(matches(&f(r#"type eq "work" and primary eq true"#), &e));
        assert!(!matches(&f(r#"type eq "home" or not (primary pr)"#), &e));
        assert!(matches(&f(r#"display eq null and type ne "home""#), &e));
        assert!(!matches(&f(r#"value sw "B""#), &e));
    }

    fn arb_well_typed() -> impl Strategy<Value = String> {
        let string_attrs = prop_oneof![
            Just("userName"),
            Just("externalId"),
            Just("id"),
            Just("displayName"),
            Just("name.givenName"),
            Just("emails.value"),
            Just("emails"),
            Just("phoneNumbers.type"),
            Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"),
            Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"),
        ];
        let ops = prop_oneof![
            Just("eq"),
            Just("ne"),
            Just("co"),
            Just("sw"),
            Just("ew"),
            Just("gt"),
            Just("le")
        ];
        let leaf = prop_oneof![
            (string_attrs.clone(), ops, any::<String>())
                .prop_map(|(a, o, v)| format!("{a} {o} {}", serde_json::to_string(&v).unwrap())),
            (any::<bool>(), prop_oneof![Just("eq"), Just("ne")])
                .prop_map(|(b, o)| format!("active {o} {b}")),
            string_attrs.prop_map(|a| format!("{a} pr")),
            "[a-z@.]{0,8}".prop_map(|v| format!(r#"emails[type eq "work"].value eq "{v}""#)),
            (0i64..2_000_000_000).prop_map(|s| format!(
                "meta.created gt \"{}\"",
                cairn_core::clock::format_ts(time::OffsetDateTime::from_unix_timestamp(s).unwrap())
            )),
        ];
        leaf.prop_recursive(3, 12, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} and {b}")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) or {b}")),
                inner.prop_map(|a| format!("not ({a})")),
            ]
        })
    }

    proptest! {
        #[test]
        fn well_typed_filters_resolve(f in arb_well_typed()) {
            let e = parse(&f).unwrap();
            prop_assert!(resolve_user_filter(&e).is_ok(), "{}", f);
        }

        #[test]
        fn any_parsed_filter_resolves_or_errors(e in crate::filter::tests::arb_expr()) {
            if let Err(err) = resolve_user_filter(&e) {
                prop_assert_eq!(err.status, 400);
            }
        }
    }
}
