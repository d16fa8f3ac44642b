//! The mapping between SCIM Group resources (RFC 7643 §4.2) and Cairn groups: request
//! bodies, rendering, and PATCH (RFC 7644 §3.5.2) folded into attribute changes plus one
//! member delta, so that a membership change never reads the whole group.
//!
//! Client forms handled (group operations in Okta's "SCIM 2.0 protocol reference",
//! <https://developer.okta.com/docs/api/openapi/okta-scim/guides/scim-20>, and in
//! Microsoft Learn's Entra SCIM tutorial,
//! <https://learn.microsoft.com/en-us/entra/identity/app-provisioning/use-scim-to-provision-users-and-groups>):
//! - Okta's rename without a path, `{"op":"replace","value":{"id":…,"displayName":…}}`:
//!   `id`, `meta`, `schemas` and unknown keys inside the value are ignored;
//! - Okta's `remove` with `members[value eq "…"]` (also `or` of several `value eq`), and
//!   `add` with `path: "members"` and a value array of `{value, display}`;
//! - full replacement, `replace` of `members` (and PUT);
//! - Entra's `Add` with `[{"$ref": null, "value": …}]`, capitalised ops;
//! - Entra's non-standard `Remove` with `path: "members"` and a value array: removes
//!   exactly the listed members, never the whole group (Microsoft Learn, "Known issues
//!   and resolutions with SCIM 2.0 protocol compliance"); `remove` of
//!   `members` without a value empties the group (RFC 7644 §3.5.2.2);
//! - several operations in one request, applied in order and atomically.
//!
//! A member's `display`, when the client sends one, is kept on the membership and
//! returned as sent (RFC 7643 §4.2); it ends with the membership.
//!
//! Members must be accounts of the tenant (the store checks this); an id that cannot be
//! an account id is 400 `invalidValue` on add, and a no-op on remove (idempotent retries).

use crate::error::ScimError;
use crate::patch::{OpKind, PatchRequest};
use crate::schema::{group_resource_type, split_urn, GROUP_URN};
use crate::user::etag;
use crate::Expr;
use cairn_core::clock::format_ts;
use cairn_core::group::{GroupData, GroupRecord, MemberChange};
use cairn_core::ids::UserId;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};

/// Longest displayName accepted, in characters.
pub const MAX_DISPLAY_NAME: usize = 256;
/// Longest externalId accepted, in bytes.
const MAX_EXTERNAL_ID: usize = 1024;

/// A POST or PUT body: the group's attributes and its members (ids as sent).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRequest {
    pub data: GroupData,
    pub members: Vec<UserId>,
    /// The `display` sent with members, to keep and return (RFC 7643 §4.2).
    pub displays: Vec<(UserId, String)>,
}

fn display_name(v: &Value) -> Result<String, ScimError> {
    let s = v
        .as_str()
        .ok_or_else(|| ScimError::invalid_value("displayName must be a string"))?;
    if s.trim().is_empty() {
        return Err(ScimError::invalid_value("displayName must not be empty"));
    }
    if s.chars().count() > MAX_DISPLAY_NAME {
        return Err(ScimError::invalid_value(format!(
            "displayName is longer than {MAX_DISPLAY_NAME} characters"
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(ScimError::invalid_value(
            "displayName must not contain control characters",
        ));
    }
    Ok(s.to_owned())
}

fn external_id(v: &Value) -> Result<Option<String>, ScimError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) if s.len() > MAX_EXTERNAL_ID => Err(ScimError::invalid_value(format!(
            "externalId is longer than {MAX_EXTERNAL_ID} bytes"
        ))),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(ScimError::invalid_value("externalId must be a string")),
    }
}

fn data(display_name: String, external_id: Option<String>) -> GroupData {
    let mut doc = Map::new();
    doc.insert("displayName".into(), json!(display_name));
    if let Some(e) = &external_id {
        doc.insert("externalId".into(), json!(e));
    }
    GroupData {
        display_name,
        external_id,
        doc: Value::Object(doc),
    }
}

/// The member ids in a `members` value: an array (or a single object, or bare strings)
/// of `{"value": id}`; `$ref` (null or not) and `type` are ignored (`display` is read by
/// [`member_displays`]).
fn member_values(v: &Value) -> Result<Vec<String>, ScimError> {
    let one = |item: &Value| -> Result<String, ScimError> {
        match item {
            Value::String(s) => Ok(s.clone()),
            Value::Object(o) => o
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("value"))
                .and_then(|(_, v)| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| ScimError::invalid_value("each member needs a string value")),
            _ => Err(ScimError::invalid_value(
                "members must be objects with a value",
            )),
        }
    };
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

/// The `(id, display)` pairs of a `members` value, for members sent with a string
/// `display` (RFC 7643 §4.2: "A human-readable name, primarily used for display
/// purposes"), kept as sent; members without one, or whose value names no account, have
/// none.
fn member_displays(v: &Value) -> Result<Vec<(UserId, String)>, ScimError> {
    fn get<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| v.as_str())
    }
    let items = match v {
        Value::Array(items) => items.as_slice(),
        other => std::slice::from_ref(other),
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Object(o) = item else { continue };
        let (Some(id), Some(display)) = (get(o, "value"), get(o, "display")) else {
            continue;
        };
        if display.chars().count() > MAX_DISPLAY_NAME {
            return Err(ScimError::invalid_value(format!(
                "members.display is longer than {MAX_DISPLAY_NAME} characters"
            )));
        }
        if let Some(id) = UserId::parse(id) {
            out.push((id, display.to_owned()));
        }
    }
    Ok(out)
}

/// The member `display` values an `add` or `replace` of a PatchOp message sends, in
/// operation order (a later one for the same member wins).
pub fn patch_member_displays(req: &PatchRequest) -> Result<Vec<(UserId, String)>, ScimError> {
    let mut out = Vec::new();
    for op in req.operations.iter().filter(|o| o.op != OpKind::Remove) {
        let Some(v) = &op.value else { continue };
        match &op.path {
            Some(path) if path.filter.is_none() && path.sub_attr().is_none() => {
                let key = match &path.attr.urn {
                    Some(u) => format!("{u}:{}", path.attr.name),
                    None => path.attr.name.clone(),
                };
                if attribute(&key) == Some("members") {
                    out.extend(member_displays(v)?);
                }
            }
            Some(_) => {}
            None => {
                if let Value::Object(values) = v {
                    for (k, v) in values {
                        if attribute(k) == Some("members") {
                            out.extend(member_displays(v)?);
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Ids to add: each must be able to name an account.
fn ids_to_add(values: Vec<String>) -> Result<Vec<UserId>, ScimError> {
    values
        .into_iter()
        .map(|v| {
            UserId::parse(&v).ok_or_else(|| {
                ScimError::invalid_value(format!("members: {v:?} is not a user of this tenant"))
            })
        })
        .collect()
}

/// Ids to remove: one that cannot name an account is not a member.
fn ids_to_remove(values: Vec<String>) -> Vec<UserId> {
    values.iter().filter_map(|v| UserId::parse(v)).collect()
}

/// The canonical name of a top-level Group attribute key (`displayName`, `externalId`,
/// `members`, or a read-only one); `None` for keys to ignore (unknown attributes, other
/// schemas).
fn attribute(key: &str) -> Option<&'static str> {
    let (urn, name) = split_urn(key);
    if urn.is_some_and(|u| !u.eq_ignore_ascii_case(GROUP_URN)) {
        return None;
    }
    [
        "displayName",
        "externalId",
        "members",
        "id",
        "meta",
        "schemas",
    ]
    .into_iter()
    .find(|a| a.eq_ignore_ascii_case(name))
}

/// Maps a POST or PUT body.
pub fn group_from_request(body: &Value) -> Result<GroupRequest, ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("a Group must be a JSON object"))?;
    let mut name = None;
    let mut ext = None;
    let mut members = Vec::new();
    let mut displays = Vec::new();
    for (k, v) in obj {
        match attribute(k) {
            Some("displayName") => name = Some(display_name(v)?),
            Some("externalId") => ext = external_id(v)?,
            Some("members") => {
                members = ids_to_add(member_values(v)?)?;
                displays = member_displays(v)?;
            }
            _ => {}
        }
    }
    let name = name.ok_or_else(|| ScimError::invalid_value("displayName is required"))?;
    let mut seen = HashSet::new();
    members.retain(|u| seen.insert(u.clone()));
    Ok(GroupRequest {
        data: data(name, ext),
        members,
        displays,
    })
}

/// The representation of a group. `members` is `None` when they were not loaded (the
/// client excluded them); then the attribute is absent.
pub fn render_group(g: &GroupRecord, members: Option<&[UserId]>, base_url: &str) -> Value {
    render_group_with(g, members, &HashMap::new(), base_url)
}

/// [`render_group`], each member with the `display` recorded for it, if any.
pub fn render_group_with(
    g: &GroupRecord,
    members: Option<&[UserId]>,
    displays: &HashMap<UserId, String>,
    base_url: &str,
) -> Value {
    let base = base_url.trim_end_matches('/');
    let mut m = Map::new();
    m.insert("schemas".into(), json!([GROUP_URN]));
    m.insert("id".into(), json!(g.id.as_str()));
    m.insert("displayName".into(), json!(g.display_name));
    if let Some(e) = &g.external_id {
        m.insert("externalId".into(), json!(e));
    }
    if let Some(ms) = members {
        m.insert(
            "members".into(),
            Value::Array(
                ms.iter()
                    .map(|u| {
                        let mut m = json!({"value": u.as_str(), "$ref": format!("{base}/Users/{u}"), "type": "User"});
                        if let Some(d) = displays.get(u) {
                            m["display"] = json!(d);
                        }
                        m
                    })
                    .collect(),
            ),
        );
    }
    m.insert(
        "meta".into(),
        json!({
            "resourceType": "Group",
            "created": format_ts(g.created_at),
            "lastModified": format_ts(g.updated_at),
            "location": format!("{base}/Groups/{}", g.id),
            "version": etag(g.version),
        }),
    );
    Value::Object(m)
}

/// Member operations folded in request order into one change.
struct Members {
    /// `Some` once the request replaced (or emptied) the whole member list.
    replace: Option<Vec<UserId>>,
    add: Vec<UserId>,
    remove: Vec<UserId>,
}

impl Members {
    fn add(&mut self, ids: Vec<UserId>) {
        for u in ids {
            match &mut self.replace {
                Some(all) => {
                    if !all.contains(&u) {
                        all.push(u);
                    }
                }
                None => {
                    self.remove.retain(|r| *r != u);
                    if !self.add.contains(&u) {
                        self.add.push(u);
                    }
                }
            }
        }
    }
    fn remove(&mut self, ids: Vec<UserId>) {
        let set: HashSet<UserId> = ids.iter().cloned().collect();
        match &mut self.replace {
            Some(all) => all.retain(|u| !set.contains(u)),
            None => {
                self.add.retain(|u| !set.contains(u));
                for u in ids {
                    if !self.remove.contains(&u) {
                        self.remove.push(u);
                    }
                }
            }
        }
    }
    fn replace(&mut self, ids: Vec<UserId>) {
        let mut seen = HashSet::new();
        self.replace = Some(ids.into_iter().filter(|u| seen.insert(u.clone())).collect());
        self.add.clear();
        self.remove.clear();
    }
    fn into_change(self) -> MemberChange {
        match self.replace {
            Some(all) => MemberChange::Replace(all),
            None => MemberChange::Delta {
                add: self.add,
                remove: self.remove,
            },
        }
    }
}

/// The ids selected by a `members[…]` filter, which must be `value eq "…"` tests joined
/// by `or`: anything else would need the whole member list.
fn filter_ids(e: &Expr, out: &mut Vec<String>) -> Result<(), ScimError> {
    use crate::filter::{CompareOp, Scalar};
    match e {
        Expr::Or(a, b) => {
            filter_ids(a, out)?;
            filter_ids(b, out)
        }
        Expr::Compare {
            path,
            op: CompareOp::Eq,
            value: Scalar::String(s),
        } if path.urn.is_none()
            && path.sub.is_none()
            && path.name.eq_ignore_ascii_case("value") =>
        {
            out.push(s.clone());
            Ok(())
        }
        _ => Err(ScimError::invalid_filter(
            "members[…] supports value eq \"id\" (joined by or)",
        )),
    }
}

/// Applies a PatchOp message to a group: the new attributes and the member change.
pub fn apply_group_patch(
    current: &GroupData,
    req: &PatchRequest,
) -> Result<(GroupData, MemberChange), ScimError> {
    let mut name = current.display_name.clone();
    let mut ext = current.external_id.clone();
    let mut members = Members {
        replace: None,
        add: Vec::new(),
        remove: Vec::new(),
    };
    for (i, op) in req.operations.iter().enumerate() {
        let r = (|| -> Result<(), ScimError> {
            let Some(path) = &op.path else {
                // add/replace without a path: the value's keys are attribute paths.
                let Some(Value::Object(values)) = &op.value else {
                    return Err(ScimError::invalid_value("a value object is required"));
                };
                for (k, v) in values {
                    set(op.op, k, v, &mut name, &mut ext, &mut members)?;
                }
                return Ok(());
            };
            let attr_key = match &path.attr.urn {
                Some(u) => format!("{u}:{}", path.attr.name),
                None => path.attr.name.clone(),
            };
            let Some(attr) = attribute(&attr_key) else {
                return match split_urn(&attr_key).0 {
                    // An extension we do not know: ignored, as on POST.
                    Some(u) if !u.eq_ignore_ascii_case(GROUP_URN) => Ok(()),
                    _ => Err(ScimError::invalid_path(format!(
                        "the Group has no attribute {:?}",
                        path.attr.name
                    ))),
                };
            };
            if path.sub_attr().is_some() || (path.filter.is_some() && attr != "members") {
                return Err(ScimError::invalid_path(format!(
                    "{path} is not supported on Groups; use members or members[value eq \"…\"]"
                )));
            }
            if let Some(filter) = &path.filter {
                if op.op != OpKind::Remove {
                    return Err(ScimError::invalid_path(
                        "add/replace on members[…] is not supported; add to members instead",
                    ));
                }
                let mut ids = Vec::new();
                filter_ids(filter, &mut ids)?;
                members.remove(ids_to_remove(ids));
                return Ok(());
            }
            match op.op {
                OpKind::Remove => match attr {
                    "members" => match &op.value {
                        // Entra: remove exactly the listed members, never the whole group.
                        Some(v) if !v.is_null() => members.remove(ids_to_remove(member_values(v)?)),
                        _ => members.replace(Vec::new()),
                    },
                    "externalId" => ext = None,
                    "displayName" => {
                        return Err(ScimError::invalid_value(
                            "displayName is required and cannot be removed",
                        ))
                    }
                    _ => {
                        return Err(ScimError::mutability(format!("{attr} is read-only")));
                    }
                },
                OpKind::Add | OpKind::Replace => {
                    let v = op.value.as_ref().unwrap_or(&Value::Null);
                    if matches!(attr, "id" | "meta" | "schemas") {
                        return Err(ScimError::mutability(format!("{attr} is read-only")));
                    }
                    set(op.op, &attr_key, v, &mut name, &mut ext, &mut members)?;
                }
            }
            Ok(())
        })();
        r.map_err(|e| ScimError {
            detail: format!("operation {}: {}", i + 1, e.detail),
            ..e
        })?;
    }
    Ok((data(name, ext), members.into_change()))
}

/// `add`/`replace` of one attribute (a path, or a key of a path-less value).
fn set(
    kind: OpKind,
    key: &str,
    v: &Value,
    name: &mut String,
    ext: &mut Option<String>,
    members: &mut Members,
) -> Result<(), ScimError> {
    match attribute(key) {
        Some("displayName") => {
            if v.is_null() {
                return Err(ScimError::invalid_value(
                    "displayName is required and cannot be removed",
                ));
            }
            *name = display_name(v)?;
        }
        Some("externalId") => *ext = external_id(v)?,
        Some("members") => {
            let ids = ids_to_add(member_values(v)?)?;
            match kind {
                OpKind::Replace => members.replace(ids),
                _ => members.add(ids),
            }
        }
        // Okta's rename carries `id` in the value; read-only and unknown keys are
        // ignored, as on POST.
        _ => {}
    }
    Ok(())
}

/// The Group resource type, for projections and filters.
pub fn resource_type() -> &'static crate::schema::ResourceTypeDef {
    group_resource_type()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::parse_patch;

    fn cur() -> GroupData {
        data("Eng".into(), None)
    }

    fn ids(n: usize) -> Vec<UserId> {
        let mut v: Vec<UserId> = (0..n).map(|_| UserId::random()).collect();
        v.sort();
        v
    }

    fn patch(ops: Value) -> (GroupData, MemberChange) {
        let req = parse_patch(&json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": ops
        }))
        .unwrap();
        apply_group_patch(&cur(), &req).unwrap()
    }

    #[test]
    fn okta_rename_without_path_ignores_id() {
        let (d, m) =
            patch(json!([{"op":"replace","value":{"id":"abf4","displayName":"Test SCIMv2"}}]));
        assert_eq!(d.display_name, "Test SCIMv2");
        assert!(m.is_none());
    }

    #[test]
    fn okta_membership_remove_by_filter_then_add() {
        let u = ids(2);
        let (_, m) = patch(json!([
            {"op":"remove","path":format!("members[value eq \"{}\"]", u[0])},
            {"op":"add","path":"members","value":[{"value":u[1].as_str(),"display":"x@okta.local"}]}
        ]));
        assert_eq!(
            m,
            MemberChange::Delta {
                add: vec![u[1].clone()],
                remove: vec![u[0].clone()]
            }
        );
    }

    #[test]
    fn entra_add_with_null_ref_and_remove_with_value_array() {
        let u = ids(3);
        let (d, m) = patch(json!([
            {"op":"Add","path":"members","value":[{"$ref":null,"value":u[0].as_str()}]},
            {"op":"Remove","path":"members","value":[{"value":u[1].as_str()},{"value":u[2].as_str()}]},
            {"op":"Replace","path":"displayName","value":"Renamed"}
        ]));
        assert_eq!(d.display_name, "Renamed");
        assert_eq!(
            m,
            MemberChange::Delta {
                add: vec![u[0].clone()],
                remove: vec![u[1].clone(), u[2].clone()]
            }
        );
    }

    #[test]
    fn full_replace_and_remove_all() {
        let u = ids(2);
        let (_, m) = patch(json!([
            {"op":"replace","path":"members","value":[{"value":u[0].as_str()},{"value":u[1].as_str()}]},
            {"op":"remove","path":format!("members[value eq \"{}\"]", u[1])}
        ]));
        assert_eq!(m, MemberChange::Replace(vec![u[0].clone()]));
        let (_, m) = patch(json!([{"op":"remove","path":"members"}]));
        assert_eq!(m, MemberChange::Replace(vec![]));
    }

    #[test]
    fn add_then_remove_of_one_member_cancels_out() {
        let u = ids(1);
        let (_, m) = patch(json!([
            {"op":"add","path":"members","value":[{"value":u[0].as_str()}]},
            {"op":"remove","path":"members","value":[{"value":u[0].as_str()}]}
        ]));
        assert_eq!(
            m,
            MemberChange::Delta {
                add: vec![],
                remove: vec![u[0].clone()]
            }
        );
    }

    #[test]
    fn bad_member_ids_and_paths_are_400() {
        let req = parse_patch(
            &json!({"Operations":[{"op":"add","path":"members","value":[{"value":"not-a-user"}]}]}),
        )
        .unwrap();
        let e = apply_group_patch(&cur(), &req).unwrap_err();
        assert_eq!(e.status, 400);
        let req = parse_patch(&json!({"Operations":[{"op":"replace","path":"nope","value":"x"}]}))
            .unwrap();
        assert_eq!(apply_group_patch(&cur(), &req).unwrap_err().status, 400);
        let req =
            parse_patch(&json!({"Operations":[{"op":"remove","path":"displayName"}]})).unwrap();
        assert_eq!(apply_group_patch(&cur(), &req).unwrap_err().status, 400);
    }

    #[test]
    fn request_bodies() {
        let u = ids(1);
        let r = group_from_request(&json!({
            "schemas":[GROUP_URN, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
            "externalId":"8aa1","displayName":"displayName","meta":{"resourceType":"Group"},
            "members":[{"value":u[0].as_str(),"display":"a"}, {"value":u[0].as_str()}]
        }))
        .unwrap();
        assert_eq!(r.data.display_name, "displayName");
        assert_eq!(r.data.external_id.as_deref(), Some("8aa1"));
        assert_eq!(r.members, u);
        assert!(group_from_request(&json!({"members":[]})).is_err());
        assert!(group_from_request(&json!({"displayName":""})).is_err());
    }

    /// RFC 7643 §4.2 `members.display`: kept from POST/PUT bodies and from PATCH adds and
    /// replaces (with a path or without), never from removes; too long is refused.
    #[test]
    fn member_displays_are_read_from_requests() {
        let u = ids(2);
        let (a, b) = (u[0].as_str(), u[1].as_str());
        let req = group_from_request(&json!({"displayName":"G","members":[
            {"value":a,"Display":"Ann"},{"value":b},{"value":"not-an-id","display":"x"}]}));
        assert!(req.is_err(), "an unknown id is still refused");
        let req = group_from_request(&json!({"displayName":"G","members":[
            {"value":a,"Display":"Ann"},{"value":b}]}))
        .unwrap();
        assert_eq!(req.displays, vec![(u[0].clone(), "Ann".to_owned())]);
        let p = parse_patch(&json!({"Operations":[
            {"op":"add","path":"members","value":[{"value":a,"display":"A"}]},
            {"op":"remove","path":"members","value":[{"value":b,"display":"gone"}]},
            {"op":"replace","value":{"members":[{"value":b,"display":"B"}]}}]}))
        .unwrap();
        assert_eq!(
            patch_member_displays(&p).unwrap(),
            vec![
                (u[0].clone(), "A".to_owned()),
                (u[1].clone(), "B".to_owned())
            ]
        );
        let long = "x".repeat(MAX_DISPLAY_NAME + 1);
        assert!(group_from_request(
            &json!({"displayName":"G","members":[{"value":a,"display":long}]})
        )
        .is_err());
    }
}
