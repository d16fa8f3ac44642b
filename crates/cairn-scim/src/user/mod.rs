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
//! - two values of one multi-valued attribute may have the same `type` (RFC 7643 §2.4
//!   and §4.1.2 set no uniqueness rule on `type`; vendors' conformance collections post
//!   two `work` emails), and are kept as sent; a PATCH path filter such as
//!   `emails[type eq "work"].value` then applies to each of them (RFC 7644 §3.5.2);
//! - at most one value per multi-valued attribute may be `primary` (RFC 7643 §2.4);
//! - limits: strings up to [`MAX_STRING_BYTES`], at most [`MAX_VALUES`] values per
//!   multi-valued attribute;
//! - `userName` is required; create and PUT store `active` (default `true`); only a PATCH
//!   `remove` takes it out, and an account without it counts as active.
//!
//! Submodules: `request` (request bodies → stored document and indexed columns),
//! `render` (accounts → SCIM resources), `projection` (`attributes` /
//! `excludedAttributes`); ETags and `If-Match` are here.

use crate::ScimError;
use std::collections::HashSet;

mod projection;
mod render;
mod request;

pub use projection::Projection;
pub use render::{render_user, render_user_doc};
pub(crate) use request::{coerce, normalise, user_data};
pub use request::{user_from_request, MAX_INDEXED_BYTES, MAX_STRING_BYTES, MAX_VALUES};

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

#[cfg(test)]
mod tests {
    use super::projection::*;
    use super::render::*;
    use super::request::*;
    use super::*;
    use crate::schema::{ENTERPRISE_USER_URN, USER_URN};
    use cairn_core::ids::{QuotaGb, TenantId, UserId};
    use cairn_core::user::{UserData, UserRecord};
    use serde_json::{json, Map, Value};

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

    /// A vendor's conformance collection posts two `work` emails: both are kept, in
    /// order, and the projected email is the primary one, else the first `work` one.
    #[test]
    fn two_values_of_one_type_are_kept() {
        let emails = json!([{"value":"a@x.test","type":"work"},{"value":"b@x.test","type":"WORK","primary":true}]);
        let d = data(json!({"userName":"u","emails":emails})).unwrap();
        assert_eq!(d.doc["emails"], emails);
        assert_eq!(d.email, Some("b@x.test".into()));
        let d = data(json!({"userName":"u","emails":[{"value":"a@x.test","type":"work"},{"value":"b@x.test","type":"work"}]})).unwrap();
        assert_eq!(d.email, Some("a@x.test".into()));
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
