use super::*;
use crate::schema::ENTERPRISE_USER_URN;
use serde_json::json;

fn base_doc() -> Value {
    json!({
        "userName": "test.user@okta.local",
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
        "displayName": "Test User",
        "active": true
    })
}

fn run(doc: &Value, body: Value) -> Result<UserData, ScimError> {
    apply_user_patch(doc, &parse_patch(&body)?)
}

fn ops(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP_URN], "Operations": ops})
}

#[test]
fn okta_deactivate_and_reactivate() {
    let d = run(
        &base_doc(),
        ops(json!([{"op":"replace","value":{"active":false}}])),
    )
    .unwrap();
    assert!(!d.active);
    assert_eq!(d.doc["active"], false);
    let d = run(
        &d.doc,
        ops(json!([{"op":"replace","value":{"active":true}}])),
    )
    .unwrap();
    assert!(d.active);
}

#[test]
fn entra_default_capitalised_ops_with_string_booleans() {
    let d = run(
        &base_doc(),
        ops(json!([{"op":"Replace","path":"active","value":"False"}])),
    )
    .unwrap();
    assert!(!d.active);
    assert_eq!(d.doc["active"], false);
    let d = run(
        &d.doc,
        ops(json!([{"op":"REPLACE","path":"active","value":"True"}])),
    )
    .unwrap();
    assert!(d.active);
    let d = run(
        &base_doc(),
        ops(json!([
            {"op":"Replace","path":"emails[type eq \"work\"].value","value":"updatedEmail@microsoft.com"},
            {"op":"Replace","path":"name.familyName","value":"updatedFamilyName"}
        ])),
    )
    .unwrap();
    assert_eq!(d.email.as_deref(), Some("updatedEmail@microsoft.com"));
    assert_eq!(
        d.doc["emails"],
        json!([{"primary": true, "value": "updatedEmail@microsoft.com", "type": "work"}])
    );
    assert_eq!(d.doc["name"]["familyName"], "updatedFamilyName");
    assert_eq!(d.doc["name"]["givenName"], "Test");
    let d = run(
        &base_doc(),
        ops(json!([{"op":"Replace","path":"userName","value":"5b50642d@testuser.com"}])),
    )
    .unwrap();
    assert_eq!(d.user_name.as_str(), "5b50642d@testuser.com");
}

#[test]
fn entra_aadoptscim062020_pathless_combined_replace() {
    let d = run(
        &base_doc(),
        ops(json!([
            {"op":"replace","path":"emails[type eq \"work\"].value","value":"TestMhvaes@test.microsoft.com"},
            {"op":"replace","value":{"displayName":"Bjfe","name.givenName":"Kkom","name.familyName":"Unua",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"Aklq"}}
        ])),
    )
    .unwrap();
    assert_eq!(d.display_name.as_deref(), Some("Bjfe"));
    assert_eq!(
        d.doc["name"],
        json!({"givenName":"Kkom","familyName":"Unua"})
    );
    assert_eq!(d.doc[ENTERPRISE_USER_URN], json!({"employeeNumber":"Aklq"}));
    assert_eq!(d.email.as_deref(), Some("TestMhvaes@test.microsoft.com"));
    // No literal dotted or URN keys are stored: each is resolved as a path.
    let keys: Vec<&String> = d.doc.as_object().unwrap().keys().collect();
    assert!(
        keys.iter()
            .all(|k| !k.contains('.') || k.starts_with("urn:")),
        "{keys:?}"
    );
    assert!(!d
        .doc
        .as_object()
        .unwrap()
        .contains_key(&format!("{ENTERPRISE_USER_URN}:employeeNumber")));
}

#[test]
fn entra_add_on_existing_and_absent_work_email() {
    let d = run(
        &base_doc(),
        ops(json!([{"op":"Add","path":"emails[type eq \"work\"].value","value":"x@y"}])),
    )
    .unwrap();
    assert_eq!(
        d.doc["emails"],
        json!([{"primary": true, "value": "x@y", "type": "work"}])
    );

    let mut doc = base_doc();
    doc.as_object_mut().unwrap().remove("emails");
    let d = run(
        &doc,
        ops(json!([
            {"op":"Add","path":"emails[type eq \"work\"].value","value":"x@y"},
            {"op":"add","path":"addresses[type eq \"work\"].locality","value":"Oslo"},
            {"op":"replace","path":"addresses[type eq \"work\"].postalCode","value":"0150"},
            {"op":"replace","path":"phoneNumbers[type eq \"mobile\"].value","value":"+47 1"},
            {"op":"replace","path":"phoneNumbers[type eq \"fax\"].value","value":"+47 2"}
        ])),
    )
    .unwrap();
    assert_eq!(d.doc["emails"], json!([{"type": "work", "value": "x@y"}]));
    assert_eq!(d.email.as_deref(), Some("x@y"));
    assert_eq!(
        d.doc["addresses"],
        json!([{"type": "work", "locality": "Oslo", "postalCode": "0150"}])
    );
    assert_eq!(
        d.doc["phoneNumbers"],
        json!([{"type": "mobile", "value": "+47 1"}, {"type": "fax", "value": "+47 2"}])
    );
}

#[test]
fn entra_single_value_add_and_extension_paths() {
    let d = run(
        &base_doc(),
        ops(json!([{"op":"Add","path":"nickName","value":"Babs"}])),
    )
    .unwrap();
    assert_eq!(d.doc["nickName"], "Babs");
    let d = run(
        &base_doc(),
        ops(json!([
            {"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber","value":"701"},
            {"op":"Replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"Eng"},
            {"op":"Replace","path":"externalId","value":"0a21f0f2"},
            {"op":"Replace","path":"displayName","value":"New Name"},
            {"op":"Replace","path":"title","value":"CTO"},
            {"op":"Replace","path":"preferredLanguage","value":"nb-NO"}
        ])),
    )
    .unwrap();
    assert_eq!(
        d.doc[ENTERPRISE_USER_URN],
        json!({"employeeNumber":"701","department":"Eng"})
    );
    assert_eq!(d.external_id.as_deref(), Some("0a21f0f2"));
    assert_eq!(d.display_name.as_deref(), Some("New Name"));
}

#[test]
fn entra_manager_as_bare_string() {
    let d = run(
        &base_doc(),
        ops(json!([{"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":"m-42"}])),
    )
    .unwrap();
    assert_eq!(
        d.doc[ENTERPRISE_USER_URN]["manager"],
        json!({"value":"m-42"})
    );
    let d = run(
        &d.doc,
        ops(json!([{"op":"replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value","value":"m-43"}])),
    )
    .unwrap();
    assert_eq!(
        d.doc[ENTERPRISE_USER_URN]["manager"],
        json!({"value":"m-43"})
    );
    let d = run(
        &d.doc,
        ops(json!([{"op":"remove","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"}])),
    )
    .unwrap();
    assert!(d.doc.get(ENTERPRISE_USER_URN).is_none());
}

#[test]
fn onelogin_single_object_emails() {
    let d = run(
        &base_doc(),
        ops(json!([{"op":"replace","value":{"emails":{"value":"one@login.com","type":"work","primary":true}}}])),
    )
    .unwrap();
    assert_eq!(
        d.doc["emails"],
        json!([{"value":"one@login.com","type":"work","primary":true}])
    );
    let d = run(
        &base_doc(),
        ops(json!([{"op":"add","path":"emails","value":{"value":"home@x.com","type":"home"}}])),
    )
    .unwrap();
    assert_eq!(d.doc["emails"].as_array().unwrap().len(), 2);
}

#[test]
fn jumpcloud_per_attribute_ops() {
    let d = run(
        &base_doc(),
        ops(json!([
            {"op":"replace","path":"name.givenName","value":"Jay"},
            {"op":"replace","path":"name.familyName","value":"Cloud"},
            {"op":"replace","path":"active","value":false},
            {"op":"replace","path":"displayName","value":"Jay Cloud"}
        ])),
    )
    .unwrap();
    assert_eq!(
        d.doc["name"],
        json!({"givenName":"Jay","familyName":"Cloud"})
    );
    assert!(!d.active);
}

#[test]
fn okta_pathless_value_with_read_only_and_unknown_keys() {
    let d = run(
        &base_doc(),
        ops(json!([{"op":"replace","value":{"id":"abf4","meta":{},"groups":[],"password":"p",
            "schemas":["x"],"displayName":"Renamed","favouriteColour":"teal",
            "urn:example:custom:1.0:User:badge":"7",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"costCenter":"42","nope":1}}}])),
    )
    .unwrap();
    assert_eq!(d.display_name.as_deref(), Some("Renamed"));
    assert_eq!(d.doc[ENTERPRISE_USER_URN], json!({"costCenter":"42"}));
    let obj = d.doc.as_object().unwrap();
    for k in [
        "id",
        "meta",
        "groups",
        "password",
        "favouriteColour",
        "schemas",
    ] {
        assert!(!obj.contains_key(k), "{k}");
    }
}

#[test]
fn remove_semantics() {
    let mut doc = base_doc();
    doc["emails"] = json!([
        {"value":"w@x","type":"work","primary":true},
        {"value":"h@x","type":"home"},
        {"value":"o@x","type":"other"}
    ]);
    doc["roles"] = json!([{"value":"a"},{"value":"b"},{"value":"c"}]);
    let d = run(
        &doc,
        ops(json!([
            {"op":"remove","path":"emails[type eq \"home\"]"},
            {"op":"remove","path":"emails[type eq \"nothing\"]"},
            {"op":"Remove","path":"roles","value":[{"value":"a"},{"value":"c"}]},
            {"op":"remove","path":"name.givenName"},
            {"op":"remove","path":"emails[type eq \"work\"].primary"},
            {"op":"remove","path":"nickName"},
            {"op":"remove","path":"password"}
        ])),
    )
    .unwrap();
    assert_eq!(
        d.doc["emails"],
        json!([{"value":"w@x","type":"work"},{"value":"o@x","type":"other"}])
    );
    assert_eq!(d.doc["roles"], json!([{"value":"b"}]));
    assert_eq!(d.doc["name"], json!({"familyName":"User"}));
    let d = run(
        &d.doc,
        ops(json!([{"op":"remove","path":"emails"},{"op":"remove","path":"name"}])),
    )
    .unwrap();
    assert!(d.doc.get("emails").is_none() && d.doc.get("name").is_none());
    assert_eq!(d.email, None);
}

#[test]
fn add_and_replace_on_multi_valued() {
    let d = run(
        &base_doc(),
        ops(json!([{"op":"add","path":"emails","value":[{"value":"h@x","type":"home","primary":true}]}])),
    )
    .unwrap();
    // The new primary demotes the old one (RFC 7644 §3.5.2).
    assert_eq!(
        d.doc["emails"],
        json!([{"primary": false, "value": "test.user@okta.local", "type": "work"},
               {"value":"h@x","type":"home","primary":true}])
    );
    assert_eq!(d.email.as_deref(), Some("h@x"));
    // Adding a work email again updates the work element instead of duplicating its type.
    let d = run(
        &base_doc(),
        ops(json!([{"op":"add","path":"emails","value":[{"value":"new@x","type":"work"}]}])),
    )
    .unwrap();
    assert_eq!(
        d.doc["emails"],
        json!([{"primary": true, "value": "new@x", "type": "work"}])
    );
    let d = run(
        &base_doc(),
        ops(json!([{"op":"replace","path":"emails","value":[{"value":"only@x"}]}])),
    )
    .unwrap();
    assert_eq!(d.doc["emails"], json!([{"value":"only@x"}]));
    let d = run(
        &base_doc(),
        ops(json!([{"op":"replace","path":"emails[type eq \"work\"]","value":{"value":"r@x","type":"work"}}])),
    )
    .unwrap();
    assert_eq!(d.doc["emails"], json!([{"value":"r@x","type":"work"}]));
    let d = run(
        &base_doc(),
        ops(json!([{"op":"replace","path":"emails[type eq \"work\"].primary","value":"False"}])),
    )
    .unwrap();
    assert_eq!(d.doc["emails"][0]["primary"], false);
    let d = run(
        &base_doc(),
        ops(json!([{"op":"replace","path":"name","value":{"givenName":"G"}}])),
    )
    .unwrap();
    assert_eq!(d.doc["name"], json!({"givenName":"G","familyName":"User"}));
    let d = run(
        &base_doc(),
        ops(json!([{"op":"replace","path":"displayName","value":null}])),
    )
    .unwrap();
    assert_eq!(d.display_name, None);
}

#[test]
fn parse_errors() {
    for (body, status_type) in [
        (json!("x"), crate::ScimType::InvalidSyntax),
        (json!({"Operations":[]}), crate::ScimType::InvalidSyntax),
        (
            json!({"schemas":["urn:wrong"],"Operations":[{"op":"add","path":"nickName","value":"x"}]}),
            crate::ScimType::InvalidSyntax,
        ),
        (
            json!({"Operations":[{"op":"merge","path":"nickName","value":"x"}]}),
            crate::ScimType::InvalidSyntax,
        ),
        (
            json!({"Operations":[{"path":"nickName","value":"x"}]}),
            crate::ScimType::InvalidSyntax,
        ),
        (
            json!({"Operations":[{"op":"add","path":"nickName"}]}),
            crate::ScimType::InvalidSyntax,
        ),
        (
            json!({"Operations":[{"op":"add","value":"x"}]}),
            crate::ScimType::InvalidValue,
        ),
        (
            json!({"Operations":[{"op":"remove"}]}),
            crate::ScimType::NoTarget,
        ),
        (
            json!({"Operations":[{"op":"remove","path":"emails[type eq"}]}),
            crate::ScimType::InvalidPath,
        ),
        (
            json!({"Operations":[{"op":"remove","path":7}]}),
            crate::ScimType::InvalidPath,
        ),
    ] {
        let e = parse_patch(&body).unwrap_err();
        assert_eq!(
            (e.status, e.scim_type),
            (400, Some(status_type)),
            "{body}: {}",
            e.detail
        );
    }
    let many: Vec<Value> = (0..=MAX_OPERATIONS)
        .map(|_| json!({"op":"add","path":"nickName","value":"x"}))
        .collect();
    assert_eq!(
        parse_patch(&json!({"Operations": many}))
            .unwrap_err()
            .status,
        400
    );
    // Tolerated: no schemas, odd key case.
    let r =
        parse_patch(&json!({"operations":[{"OP":"Add","Path":"nickName","Value":"x"}]})).unwrap();
    assert_eq!(r.operations[0].op, OpKind::Add);
}

#[test]
fn apply_errors() {
    for (op, scim_type, needle) in [
        (
            json!({"op":"replace","path":"nope","value":"x"}),
            crate::ScimType::InvalidPath,
            "nope",
        ),
        (
            json!({"op":"replace","path":"name.nope","value":"x"}),
            crate::ScimType::InvalidPath,
            "name.nope",
        ),
        (
            json!({"op":"replace","path":"emails[type eq \"work\"].nope","value":"x"}),
            crate::ScimType::InvalidPath,
            "nope",
        ),
        (
            json!({"op":"replace","path":"id","value":"x"}),
            crate::ScimType::Mutability,
            "id",
        ),
        (
            json!({"op":"replace","path":"meta.created","value":"x"}),
            crate::ScimType::Mutability,
            "meta",
        ),
        (
            json!({"op":"add","path":"groups","value":[{"value":"g"}]}),
            crate::ScimType::Mutability,
            "groups",
        ),
        (
            json!({"op":"add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.displayName","value":"x"}),
            crate::ScimType::Mutability,
            "manager.displayName",
        ),
        (
            json!({"op":"remove","path":"userName"}),
            crate::ScimType::InvalidValue,
            "userName",
        ),
        (
            json!({"op":"replace","path":"active","value":"maybe"}),
            crate::ScimType::InvalidValue,
            "active",
        ),
        (
            json!({"op":"replace","path":"emails[type eq \"home\"]","value":{"value":"x"}}),
            crate::ScimType::NoTarget,
            "emails",
        ),
        (
            json!({"op":"replace","path":"emails[type ne \"work\"].value","value":"x"}),
            crate::ScimType::NoTarget,
            "emails",
        ),
        (
            json!({"op":"replace","path":"name[givenName eq \"x\"]","value":"x"}),
            crate::ScimType::InvalidPath,
            "name",
        ),
        (
            json!({"op":"replace","path":"emails[nope eq \"x\"].value","value":"x"}),
            crate::ScimType::InvalidFilter,
            "nope",
        ),
        (
            json!({"op":"add","path":"emails","value":[{"value":"a","primary":true},{"value":"b","primary":true}]}),
            crate::ScimType::InvalidValue,
            "primary",
        ),
    ] {
        let e = run(&base_doc(), ops(json!([op.clone()]))).unwrap_err();
        assert_eq!(
            (e.status, e.scim_type),
            (400, Some(scim_type)),
            "{op}: {}",
            e.detail
        );
        assert!(e.detail.contains(needle), "{op}: {}", e.detail);
        assert!(
            e.detail.starts_with("operation 1") || e.detail.starts_with("the patched resource"),
            "{}",
            e.detail
        );
    }
    // Ignored: password, unknown extension URNs.
    run(
        &base_doc(),
        ops(json!([{"op":"replace","path":"password","value":"x"}])),
    )
    .unwrap();
    run(
        &base_doc(),
        ops(json!([{"op":"replace","path":"urn:example:custom:1.0:User:badge","value":"x"}])),
    )
    .unwrap();
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn arb_op() -> impl Strategy<Value = Value> {
        let text = "[a-zA-Z0-9@. ]{1,12}";
        let paths = prop_oneof![
            Just("displayName"),
            Just("nickName"),
            Just("title"),
            Just("externalId"),
            Just("name.givenName"),
            Just("name.familyName"),
            Just("emails[type eq \"work\"].value"),
            Just("emails[type eq \"home\"].value"),
            Just("phoneNumbers[type eq \"mobile\"].value"),
            Just("addresses[type eq \"work\"].locality"),
            Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"),
            Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"),
            Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"),
        ];
        let kinds = prop_oneof![Just("add"), Just("Replace"), Just("remove")];
        let active = prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            Just(json!("True")),
            Just(json!("False")),
        ];
        prop_oneof![
            (kinds, paths.clone(), text).prop_map(|(k, p, v)| json!({"op": k, "path": p, "value": v})),
            (prop_oneof![Just("add"), Just("replace")], paths, text)
                .prop_map(|(k, p, v)| json!({"op": k, "value": {p: v}})),
            active.clone().prop_map(|a| json!({"op": "Replace", "path": "active", "value": a})),
            active.prop_map(|a| json!({"op": "replace", "value": {"active": a}})),
            (text, prop_oneof![Just("work"), Just("home"), Just("other")], any::<bool>())
                .prop_map(|(v, t, p)| json!({"op": "add", "path": "emails", "value": [{"value": v, "type": t, "primary": p}]})),
            text.prop_map(|u| json!({"op": "replace", "path": "userName", "value": u.trim().to_owned() + "u"})),
            Just(json!({"op": "remove", "path": "emails[type eq \"work\"]"})),
        ]
    }

    proptest! {
        /// Whatever a run of PATCHes leaves in a document (emptied lists, removed
        /// attributes, extensions), the user written from its stored text equals the one
        /// rendered and projected.
        #[test]
        fn patched_documents_are_written_as_they_are_rendered(ops_list in proptest::collection::vec(arb_op(), 1..12)) {
            let d = run(&base_doc(), ops(Value::Array(ops_list))).unwrap();
            crate::user_json::tests::assert_paths_agree(&d.doc);
        }

        #[test]
        fn random_valid_ops_keep_the_document_valid(ops_list in proptest::collection::vec(arb_op(), 1..12)) {
            let doc = base_doc();
            let d = run(&doc, ops(Value::Array(ops_list.clone()))).unwrap();
            // The result is a fixed point of normalisation.
            let again = crate::user::user_from_request(&d.doc).unwrap();
            prop_assert_eq!(&again.doc, &d.doc);
            prop_assert_eq!(again, d);
        }

        #[test]
        fn replace_then_read(v in "[a-zA-Z0-9 ]{1,20}", which in 0usize..5) {
            let (path, read): (&str, fn(&Value) -> &Value) = match which {
                0 => ("displayName", |d| &d["displayName"]),
                1 => ("name.givenName", |d| &d["name"]["givenName"]),
                2 => ("emails[type eq \"work\"].value", |d| &d["emails"][0]["value"]),
                3 => ("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", |d| &d[ENTERPRISE_USER_URN]["department"]),
                _ => ("addresses[type eq \"home\"].region", |d| &d["addresses"][0]["region"]),
            };
            let d = run(&base_doc(), ops(json!([{"op": "replace", "path": path, "value": v}]))).unwrap();
            prop_assert_eq!(read(&d.doc), &json!(v));
        }

        #[test]
        fn add_then_remove_sub_attribute_round_trips(v in "[a-zA-Z]{1,10}", which in 0usize..3) {
            let path = ["name.middleName", "name.honorificPrefix", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"][which];
            let start = crate::user::user_from_request(&base_doc()).unwrap();
            let added = run(&start.doc, ops(json!([{"op": "add", "path": path, "value": v}]))).unwrap();
            prop_assert_ne!(&added.doc, &start.doc);
            let removed = run(&added.doc, ops(json!([{"op": "remove", "path": path}]))).unwrap();
            prop_assert_eq!(removed, start);
        }

        /// RFC 7644 §3.5.2: a request whose last operation fails is refused as a whole,
        /// although every operation before it applies (the valid prefix alone succeeds), and
        /// the error names the last operation. (That nothing is stored is shown end to end:
        /// it/entra.rs `entra_patch_is_atomic`, it/bad_input.rs
        /// `invalid_patches_are_rejected_atomically`, where a store could half-apply it.)
        #[test]
        fn a_failing_last_op_fails_the_whole_request(ops_list in proptest::collection::vec(arb_op(), 0..6)) {
            let doc = base_doc();
            let n = ops_list.len();
            // (An empty operation list is refused on its own: RFC 7644 §3.5.2 wants one.)
            if n > 0 {
                prop_assert!(run(&doc, ops(Value::Array(ops_list.clone()))).is_ok());
            }
            let mut all = ops_list;
            all.push(json!({"op": "replace", "path": "id", "value": "x"}));
            let e = run(&doc, ops(Value::Array(all))).unwrap_err();
            let expected = format!("operation {}: ", n + 1);
            prop_assert!(e.detail.starts_with(&expected), "{}", e.detail);
        }
    }
}

#[test]
fn remove_active_leaves_it_absent_and_the_account_active() {
    let deactivated = run(
        &base_doc(),
        ops(json!([{"op":"replace","path":"active","value":false}])),
    )
    .unwrap();
    let d = run(
        &deactivated.doc,
        ops(json!([{"op":"remove","path":"active"}])),
    )
    .unwrap();
    assert!(d.doc.get("active").is_none(), "{}", d.doc);
    assert!(d.active);
    let d = run(
        &d.doc,
        ops(json!([{"op":"add","path":"active","value":false}])),
    )
    .unwrap();
    assert_eq!(d.doc["active"], false);
    assert!(!d.active);
}

/// Two values of one `type` (RFC 7643 sets no uniqueness rule on it): a filter on the
/// type applies to each (RFC 7644 §3.5.2); a path-less `add` of a known value updates
/// that value, not the first of its type.
#[test]
fn a_type_filter_applies_to_every_value_of_that_type() {
    let doc = json!({
        "userName": "u",
        "emails": [
            {"value": "a@x.test", "type": "work", "primary": true},
            {"value": "b@x.test", "type": "work"},
            {"value": "h@x.test", "type": "home"}
        ]
    });
    let d = run(
        &doc,
        ops(json!([{"op":"Replace","path":"emails[type eq \"work\"].display","value":"Work"}])),
    )
    .unwrap();
    let emails = d.doc["emails"].as_array().unwrap();
    assert_eq!(emails[0]["display"], "Work");
    assert_eq!(emails[1]["display"], "Work");
    assert!(emails[2].get("display").is_none());
    let d = run(
        &doc,
        ops(json!([{"op":"replace","path":"emails[type eq \"work\"].value","value":"c@x.test"}])),
    )
    .unwrap();
    let values: Vec<&str> = d.doc["emails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["c@x.test", "c@x.test", "h@x.test"]);
    let d = run(
        &doc,
        ops(json!([{"op":"remove","path":"emails[type eq \"work\"]"}])),
    )
    .unwrap();
    assert_eq!(
        d.doc["emails"],
        json!([{"value": "h@x.test", "type": "home"}])
    );
    let d = run(
        &doc,
        ops(json!([{"op":"add","path":"emails","value":[{"value":"b@x.test","type":"work","display":"B"}]}])),
    )
    .unwrap();
    let emails = d.doc["emails"].as_array().unwrap();
    assert_eq!(emails.len(), 3);
    assert!(emails[0].get("display").is_none(), "{emails:?}");
    assert_eq!(emails[1]["display"], "B");
}
