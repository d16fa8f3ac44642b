//! The default representation of a user written straight from its stored document.
//!
//! A `GET` without `attributes` or `excludedAttributes` (what Okta and Entra send) would
//! otherwise parse the stored JSON into a tree of `Value`s, copy it into the
//! representation, walk it for the projection, serialise it and drop it: most of the
//! instructions a read costs. Here the document is split only at its top level, each
//! stored attribute is copied into the response as the text it is stored as, and the
//! derived attributes (`id`, `schemas`, `meta`, `groups`, `active`) are written around
//! them. Whenever the document holds anything the default projection would change (an
//! attribute never returned by default, an empty complex value), or anything unusual
//! (an escaped key, a stored `id`), it declines and the caller renders through
//! [`crate::user::render_user`] and [`crate::user::Projection`] instead, so both paths
//! give the same resource (a test compares them).

use crate::schema::{user_resource_type, AttrType, AttributeDef, Returned, SchemaDef, USER_URN};
use crate::user::etag;
use cairn_core::clock::format_ts;
use cairn_core::user::{DocJson, UserRecord};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;

/// Writes the default representation of `u`, with `groups` (rendered group references;
/// none: no `groups` attribute), to `out` and returns `true`; or returns `false` with
/// `out` unchanged when the document needs the general renderer.
pub fn write_user(
    u: &UserRecord<DocJson>,
    groups: &[Value],
    base_url: &str,
    out: &mut Vec<u8>,
) -> bool {
    let Ok(Entries(entries)) = serde_json::from_str::<Entries<'_>>(&u.doc.0) else {
        return false;
    };
    let rt = user_resource_type();
    let mut has_user_name = false;
    for (key, raw) in &entries {
        let Some(key) = key else { return false };
        match *key {
            // Derived, never stored: a document that holds one goes the general way.
            "id" | "meta" | "schemas" | "groups" => return false,
            "userName" => has_user_name = true,
            _ => {}
        }
        let kept = match rt.extension(key) {
            Some(ext) => extension_kept(ext, raw.get()),
            None => attribute_kept(rt.resolve(None, key, None).ok().map(|r| r.attr), raw.get()),
        };
        if !kept {
            return false;
        }
    }

    out.reserve(u.doc.0.len() + 400);
    out.extend_from_slice(b"{\"schemas\":[");
    string(out, USER_URN);
    for (ext, _) in rt.schema_extensions {
        if entries.iter().any(|(k, _)| *k == Some(ext.id)) {
            out.push(b',');
            string(out, ext.id);
        }
    }
    out.extend_from_slice(b"],\"id\":");
    string(out, u.id.as_str());
    for (key, raw) in &entries {
        let Some(key) = key else { continue };
        out.extend_from_slice(b",\"");
        // Unescaped in the stored text (or the split declined), so written as it was.
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        if *key == "active" {
            // The column is authoritative for the value.
            out.extend_from_slice(if u.active { b"true" } else { b"false" });
        } else {
            out.extend_from_slice(raw.get().as_bytes());
        }
    }
    if !has_user_name {
        out.extend_from_slice(b",\"userName\":");
        string(out, u.user_name.as_str());
    }
    out.extend_from_slice(b",\"meta\":{\"resourceType\":\"User\",\"created\":");
    string(out, &format_ts(u.created_at));
    out.extend_from_slice(b",\"lastModified\":");
    string(out, &format_ts(u.updated_at));
    out.extend_from_slice(b",\"location\":");
    string(
        out,
        &format!("{}/Users/{}", base_url.trim_end_matches('/'), u.id),
    );
    out.extend_from_slice(b",\"version\":");
    string(out, &etag(u.version));
    out.push(b'}');
    if !groups.is_empty() {
        out.extend_from_slice(b",\"groups\":");
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, groups);
    }
    out.push(b'}');
    true
}

/// A JSON string literal.
fn string(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Whether the default projection keeps a top-level attribute exactly as stored.
fn attribute_kept(def: Option<&AttributeDef>, raw: &str) -> bool {
    let Some(def) = def else {
        return true; // not in the schema: the projection leaves it alone
    };
    if def.returned == Returned::Always {
        return true;
    }
    !def.omitted_by_default()
        && (def.kind != AttrType::Complex
            || !(holds_empty_container(raw) || def.sub_attributes.iter().any(hidden_sub)))
}

/// Whether an extension's object is kept exactly as stored.
fn extension_kept(ext: &SchemaDef, raw: &str) -> bool {
    raw.starts_with('{')
        && !holds_empty_container(raw)
        && ext
            .attributes
            .iter()
            .all(|a| !a.omitted_by_default() && !a.sub_attributes.iter().any(hidden_sub))
}

fn hidden_sub(s: &AttributeDef) -> bool {
    s.returned == Returned::Never
}

/// Whether the JSON text contains `{}` or `[]` (whitespace allowed inside) anywhere: the
/// projection drops empty complex values. Brackets inside strings count too, which only
/// sends such a document the general way.
fn holds_empty_container(raw: &str) -> bool {
    let b = raw.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        let close = match c {
            b'{' => b'}',
            b'[' => b']',
            _ => return false,
        };
        b[i + 1..]
            .iter()
            .find(|x| !x.is_ascii_whitespace())
            .is_some_and(|&x| x == close)
    })
}

/// The top level of a stored document: each key (`None` when it had escapes, which the
/// writer does not reproduce) and its value as the text it is stored as.
struct Entries<'a>(Vec<(Option<&'a str>, &'a RawValue)>);

struct Key<'a>(Option<&'a str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Some(v)))
            }
            fn visit_str<E>(self, _: &str) -> Result<Key<'de>, E> {
                Ok(Key(None))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Entries<'de>, A::Error> {
                let mut v = Vec::with_capacity(m.size_hint().unwrap_or(8));
                while let Some((k, raw)) = m.next_entry::<Key<'de>, &'de RawValue>()? {
                    v.push((k.0, raw));
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::user::{render_user, user_from_request, Projection};
    use cairn_core::ids::{QuotaGb, TenantId, UserId};
    use serde_json::json;

    fn record(doc: &Value, active: bool) -> UserRecord<DocJson> {
        let t = time::OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap();
        UserRecord {
            id: UserId::from_trusted("8f1c6f0e-0000-4000-8000-000000000001".into()),
            tenant_id: TenantId::random(),
            user_name: cairn_core::ids::UserName::from_trusted("fallback@x".into()),
            external_id: None,
            display_name: None,
            email: None,
            active,
            doc: DocJson(doc.to_string()),
            quota_gb: QuotaGb::default(),
            used_bytes: 0,
            scim_managed: true,
            created_at: t,
            updated_at: t + time::Duration::milliseconds(1234),
            version: 7,
            deleted_at: None,
            purge_at: None,
        }
    }

    /// What the general path gives: render, attach groups, default projection.
    fn general(u: &UserRecord<DocJson>, groups: &[Value]) -> Value {
        let parsed = u.clone().parsed().unwrap();
        let mut r = render_user(&parsed, "https://h/scim/v2/t/");
        if !groups.is_empty() {
            r.as_object_mut()
                .unwrap()
                .insert("groups".into(), Value::Array(groups.to_vec()));
        }
        Projection::from_params(None, None).unwrap().apply(&mut r);
        r
    }

    /// Renders `doc` both ways (active and suspended, with and without a group) and
    /// asserts they agree; returns whether the writer took it.
    pub(crate) fn assert_paths_agree(doc: &Value) -> bool {
        let group = json!({"value": "g1", "$ref": "https://h/scim/v2/t/Groups/g1",
            "display": "G", "type": "direct"});
        let mut wrote_any = false;
        for active in [true, false] {
            for groups in [vec![], vec![group.clone()]] {
                let u = record(doc, active);
                let mut out = Vec::new();
                if write_user(&u, &groups, "https://h/scim/v2/t/", &mut out) {
                    let got: Value = serde_json::from_slice(&out).unwrap();
                    assert_eq!(got, general(&u, &groups), "{doc}");
                    wrote_any = true;
                } else {
                    assert!(out.is_empty());
                }
            }
        }
        wrote_any
    }

    #[test]
    fn written_user_equals_the_general_rendering_or_declines() {
        let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let okta = user_from_request(&json!({
            "userName": "a@b.c", "name": {"givenName": "A \"q\" \u{e9}", "familyName": "B"},
            "emails": [{"value": "a@b.c", "type": "work", "primary": true}],
            "displayName": "A B", "active": true, "externalId": "x1",
            ent: {"employeeNumber": "7", "manager": {"value": "m1"}}
        }))
        .unwrap()
        .doc;
        let group = json!({"value": "g1", "$ref": "https://h/scim/v2/t/Groups/g1",
            "display": "Eng <b>", "type": "direct"});
        let with = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
            let mut d = okta.clone();
            f(d.as_object_mut().unwrap());
            d
        };
        let cases: Vec<(Value, bool)> = vec![
            (okta.clone(), true),
            (json!({"userName": "plain"}), true),
            (
                with(&|m| {
                    m.remove("userName");
                }),
                true,
            ),
            (
                with(&|m| {
                    m.remove("active");
                }),
                true,
            ),
            (
                with(&|m| {
                    m.insert("x-unknown".into(), json!({"a": [1, {}]}));
                }),
                true,
            ),
            (
                with(&|m| {
                    m.insert("password".into(), json!("secret"));
                }),
                false,
            ),
            (
                with(&|m| {
                    m.insert("emails".into(), json!([]));
                }),
                false,
            ),
            (
                with(&|m| {
                    m.insert("emails".into(), json!([{}]));
                }),
                false,
            ),
            (
                with(&|m| {
                    m.insert("name".into(), json!({}));
                }),
                false,
            ),
            (
                with(&|m| {
                    m.insert(ent.into(), json!({}));
                }),
                false,
            ),
            (
                with(&|m| {
                    m.insert(ent.into(), json!({"manager": {}}));
                }),
                false,
            ),
            (
                with(&|m| {
                    m.insert("nickName".into(), json!("{}"));
                }),
                true,
            ),
            (
                // Inside a complex value a string "{}" looks empty to the scan: declined,
                // which is only slower.
                with(&|m| {
                    m.insert("name".into(), json!({"givenName": "{}"}));
                }),
                false,
            ),
            (
                with(&|m| {
                    m.insert("id".into(), json!("spoof"));
                }),
                false,
            ),
            (
                with(&|m| {
                    m.insert("schemas".into(), json!(["x"]));
                }),
                false,
            ),
            (
                with(&|m| {
                    m.insert("a\"b".into(), json!(1));
                }),
                false,
            ),
        ];
        for (doc, fast) in cases {
            for active in [true, false] {
                for groups in [vec![], vec![group.clone()]] {
                    let u = record(&doc, active);
                    let mut out = b"prefix".to_vec();
                    let wrote = write_user(&u, &groups, "https://h/scim/v2/t/", &mut out);
                    assert_eq!(wrote, fast, "{doc}");
                    if wrote {
                        let got: Value = serde_json::from_slice(&out[6..]).unwrap();
                        assert_eq!(got, general(&u, &groups), "{doc}");
                    } else {
                        assert_eq!(out, b"prefix", "declining leaves the buffer alone");
                    }
                }
            }
        }
    }

    #[test]
    fn a_document_that_is_not_an_object_declines() {
        for text in ["[]", "1", "", "{", "null"] {
            let mut u = record(&json!({}), true);
            u.doc = DocJson(text.into());
            assert!(!write_user(&u, &[], "https://h", &mut Vec::new()), "{text}");
        }
    }

    #[test]
    fn empty_containers_are_found_anywhere() {
        assert!(holds_empty_container("[]"));
        assert!(holds_empty_container("{ }"));
        assert!(holds_empty_container("[{\"a\":1},{\n}]"));
        assert!(!holds_empty_container("[{\"a\":1}]"));
        assert!(!holds_empty_container("{\"a\":[1]}"));
    }
}
