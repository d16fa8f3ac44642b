//! Discovery documents (RFC 7644 §4, RFC 7643 §5–§7): `/ServiceProviderConfig`,
//! `/Schemas` and `/ResourceTypes`, generated from the schema registry.

use crate::list::{list_response, DEFAULT_COUNT, MAX_COUNT};
use crate::schema::{AttributeDef, ResourceTypeDef, SchemaDef, RESOURCE_TYPES, SCHEMAS};
use serde_json::{json, Map, Value};

pub const SERVICE_PROVIDER_CONFIG_URN: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const SCHEMA_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
pub const RESOURCE_TYPE_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";

/// How long a cursor stays valid between page requests, in seconds (RFC 9865 §4,
/// `cursorTimeout`).
pub const CURSOR_TIMEOUT_SECS: u64 = 3600;

/// The most operations one `POST /Bulk` may carry (RFC 7644 §3.7.4).
pub const BULK_MAX_OPERATIONS: u64 = 1000;
/// The largest `POST /Bulk` body, in bytes: the SCIM body limit (RFC 7644 §3.7.4).
pub const BULK_MAX_PAYLOAD: u64 = 1 << 20;

fn trim(base_url: &str) -> &str {
    base_url.trim_end_matches('/')
}

/// RFC 7643 §5. Rippling probes this endpoint as its connection test; Entra and Okta read
/// `patch`, `filter` and the authentication scheme (Entra's SCIM tutorial on Microsoft Learn,
/// Okta's SCIM 2.0 reference).
pub fn service_provider_config(base_url: &str) -> Value {
    let base = trim(base_url);
    json!({
        "schemas": [SERVICE_PROVIDER_CONFIG_URN],
        "documentationUri": "https://www.rfc-editor.org/rfc/rfc7644",
        "patch": {"supported": true},
        "bulk": {
            "supported": true,
            "maxOperations": BULK_MAX_OPERATIONS,
            "maxPayloadSize": BULK_MAX_PAYLOAD,
        },
        "filter": {"supported": true, "maxResults": MAX_COUNT},
        "pagination": {
            "cursor": true,
            "index": true,
            "defaultPaginationMethod": "index",
            "defaultPageSize": DEFAULT_COUNT,
            "maxPageSize": MAX_COUNT,
            "cursorTimeout": CURSOR_TIMEOUT_SECS,
        },
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with the tenant's SCIM API token, sent as `Authorization: Bearer <token>`.",
            "specUri": "https://www.rfc-editor.org/rfc/rfc6750",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    })
}

/// One attribute in RFC 7643 §7 form: camelCase keys, no nulls, `subAttributes` only for
/// complex attributes, `canonicalValues`/`referenceTypes` only when there are some.
fn attribute_doc(a: &AttributeDef) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(a.name));
    m.insert("type".into(), json!(a.kind.as_str()));
    m.insert("multiValued".into(), json!(a.multi_valued));
    m.insert("description".into(), json!(a.description));
    m.insert("required".into(), json!(a.required));
    m.insert("caseExact".into(), json!(a.case_exact));
    m.insert("mutability".into(), json!(a.mutability.as_str()));
    m.insert("returned".into(), json!(a.returned.as_str()));
    m.insert("uniqueness".into(), json!(a.uniqueness.as_str()));
    if !a.canonical_values.is_empty() {
        m.insert("canonicalValues".into(), json!(a.canonical_values));
    }
    if !a.reference_types.is_empty() {
        m.insert("referenceTypes".into(), json!(a.reference_types));
    }
    if !a.sub_attributes.is_empty() {
        m.insert(
            "subAttributes".into(),
            Value::Array(a.sub_attributes.iter().map(attribute_doc).collect()),
        );
    }
    Value::Object(m)
}

fn schema_doc(base: &str, s: &SchemaDef) -> Value {
    json!({
        "schemas": [SCHEMA_URN],
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "attributes": s.attributes.iter().map(attribute_doc).collect::<Vec<_>>(),
        "meta": {
            "resourceType": "Schema",
            "location": format!("{base}/Schemas/{}", s.id),
        },
    })
}

/// `GET /Schemas`: a ListResponse of every schema (Entra's Validator "Discover schema" mode).
pub fn schemas(base_url: &str) -> Value {
    let base = trim(base_url);
    let docs: Vec<Value> = SCHEMAS.iter().map(|s| schema_doc(base, s)).collect();
    list_response(docs.len() as u64, 1, docs)
}

/// `GET /Schemas/{id}`; the URN is compared without letter case.
pub fn schema(base_url: &str, id: &str) -> Option<Value> {
    crate::schema::schema_by_id(id).map(|s| schema_doc(trim(base_url), s))
}

fn resource_type_doc(base: &str, r: &ResourceTypeDef) -> Value {
    json!({
        "schemas": [RESOURCE_TYPE_URN],
        "id": r.id,
        "name": r.name,
        "endpoint": r.endpoint,
        "description": r.description,
        "schema": r.schema.id,
        "schemaExtensions": r
            .schema_extensions
            .iter()
            .map(|(s, required)| json!({"schema": s.id, "required": required}))
            .collect::<Vec<_>>(),
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{base}/ResourceTypes/{}", r.id),
        },
    })
}

/// `GET /ResourceTypes`.
pub fn resource_types(base_url: &str) -> Value {
    let base = trim(base_url);
    let docs: Vec<Value> = RESOURCE_TYPES
        .iter()
        .map(|r| resource_type_doc(base, r))
        .collect();
    list_response(docs.len() as u64, 1, docs)
}

/// `GET /ResourceTypes/{name}`.
pub fn resource_type(base_url: &str, name: &str) -> Option<Value> {
    crate::schema::resource_type_by_name(name).map(|r| resource_type_doc(trim(base_url), r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ENTERPRISE_USER_URN, USER_URN};

    const BASE: &str = "https://cairn.example/scim/v2/t1";

    fn has_null(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Array(a) => a.iter().any(has_null),
            Value::Object(o) => o.values().any(has_null),
            _ => false,
        }
    }

    #[test]
    fn service_provider_config_advertises_what_we_do() {
        let c = service_provider_config(BASE);
        assert_eq!(c["patch"]["supported"], true);
        assert_eq!(c["filter"]["supported"], true);
        assert_eq!(c["filter"]["maxResults"], MAX_COUNT);
        assert_eq!(c["bulk"]["supported"], true);
        assert_eq!(c["pagination"]["cursor"], true);
        assert_eq!(c["pagination"]["index"], true);
        assert_eq!(c["pagination"]["maxPageSize"], MAX_COUNT);
        assert_eq!(c["bulk"]["maxOperations"], BULK_MAX_OPERATIONS);
        assert_eq!(c["bulk"]["maxPayloadSize"], BULK_MAX_PAYLOAD);
        assert_eq!(c["changePassword"]["supported"], false);
        assert_eq!(c["sort"]["supported"], true);
        assert_eq!(c["etag"]["supported"], true);
        assert_eq!(c["authenticationSchemes"][0]["type"], "oauthbearertoken");
        assert_eq!(c["authenticationSchemes"][0]["primary"], true);
        assert_eq!(
            c["meta"]["location"],
            format!("{BASE}/ServiceProviderConfig")
        );
        assert!(!has_null(&c));
    }

    #[test]
    fn schemas_list_user_enterprise_and_group_without_nulls() {
        let l = schemas(&format!("{BASE}/"));
        assert_eq!(l["totalResults"], 3);
        assert_eq!(l["itemsPerPage"], 3);
        assert!(!has_null(&l));
        let user = &l["Resources"][0];
        assert_eq!(user["id"], USER_URN);
        assert_eq!(user["meta"]["resourceType"], "Schema");
        assert_eq!(
            user["meta"]["location"],
            format!("{BASE}/Schemas/{USER_URN}")
        );
        let attrs = user["attributes"].as_array().unwrap();
        let user_name = attrs.iter().find(|a| a["name"] == "userName").unwrap();
        assert_eq!(user_name["required"], true);
        assert_eq!(user_name["uniqueness"], "server");
        assert_eq!(user_name["caseExact"], false);
        let emails = attrs.iter().find(|a| a["name"] == "emails").unwrap();
        assert_eq!(emails["multiValued"], true);
        assert_eq!(emails["subAttributes"].as_array().unwrap().len(), 4);
        let password = attrs.iter().find(|a| a["name"] == "password").unwrap();
        assert_eq!(password["returned"], "never");
        assert_eq!(password["mutability"], "writeOnly");
        assert_eq!(l["Resources"][1]["id"], ENTERPRISE_USER_URN);
        let group = &l["Resources"][2];
        assert_eq!(group["id"], crate::schema::GROUP_URN);
        let members = group["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "members")
            .unwrap();
        assert_eq!(members["multiValued"], true);
        assert!(schema(BASE, &ENTERPRISE_USER_URN.to_uppercase()).is_some());
        assert!(schema(BASE, "urn:nope").is_none());
    }

    #[test]
    fn resource_types_list_user_and_group() {
        let l = resource_types(BASE);
        assert_eq!(l["totalResults"], 2);
        let u = &l["Resources"][0];
        assert_eq!(u["endpoint"], "/Users");
        assert_eq!(u["schema"], USER_URN);
        assert_eq!(u["schemaExtensions"][0]["schema"], ENTERPRISE_USER_URN);
        assert_eq!(u["schemaExtensions"][0]["required"], false);
        assert_eq!(u["meta"]["location"], format!("{BASE}/ResourceTypes/User"));
        assert_eq!(resource_type(BASE, "user").unwrap()["id"], "User");
        let g = resource_type(BASE, "group").unwrap();
        assert_eq!(g["endpoint"], "/Groups");
        assert_eq!(g["schema"], crate::schema::GROUP_URN);
        assert!(resource_type(BASE, "Device").is_none());
    }
}
