//! `POST /Bulk` (RFC 7644 §3.7).
//!
//! Each operation is sent, as its own request, through the same SCIM router that serves
//! single requests (`/scim/v2/{tenant}/Users…`, `/Groups…`), with the bulk request's
//! `Authorization`, `User-Agent` and `X-Request-Id`. So an operation is authenticated,
//! charged against the tenant's rate limit (`rate_limit.rs`), takes a group-write slot
//! (`group_writes.rs`), is validated and is audited exactly as the same request sent on
//! its own: there is no second implementation of any write.
//!
//! Atomicity is per operation, as RFC 7644 §3.7 describes: each operation commits (or
//! fails) on its own, and a failed operation does not undo the ones before it.
//! Operations run one at a time, in request order, except that a `POST` whose `bulkId`
//! another operation references runs before it (RFC 7644 §3.7.2 lets the service provider
//! reorder as long as the client's intent is kept). The request body is bounded by
//! `maxPayloadSize` (the SCIM body limit) and by `maxOperations`; beyond either the whole
//! request is refused with 413 (RFC 7644 §3.7.4). Successful operations are answered
//! without their resource body (RFC 7644 §3.7.3 allows it), so the response stays small.

use super::extract::{Scim, ScimBody, MAX_BODY};
use super::response::{ApiError, ApiResult, ScimJson};
use crate::{AppState, REQUEST_ID};
use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use cairn_scim::discovery::{BULK_MAX_OPERATIONS, BULK_MAX_PAYLOAD};
use cairn_scim::ScimError;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use tower::ServiceExt;

pub const BULK_REQUEST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE_URN: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

// What `/ServiceProviderConfig` advertises is what the body limit enforces.
const _: () = assert!(BULK_MAX_PAYLOAD as usize == MAX_BODY);

/// The largest error body of an operation copied into the bulk response.
const MAX_OP_RESPONSE: usize = 64 * 1024;

/// One parsed operation.
struct Op {
    method: Method,
    bulk_id: Option<String>,
    version: Option<String>,
    path: String,
    data: Option<Value>,
    /// The operation cannot run as sent: its result, decided before anything runs.
    invalid: Option<ScimError>,
}

pub async fn bulk(ctx: Scim, State(state): State<AppState>, req: Request) -> ApiResult<Response> {
    let headers = req.headers().clone();
    let ScimBody(body) = ScimBody::from_request(req, &state)
        .await
        .map_err(|e| match e.0.status {
            413 => ApiError(ScimError::new(
                413,
                None,
                format!("The size of the bulk operation exceeds the maxPayloadSize ({BULK_MAX_PAYLOAD})."),
            )),
            _ => e,
        })?;
    let (mut ops, fail_on_errors) = parse_request(body)?;
    let order = plan(&mut ops);
    let router: Router = Router::new()
        .nest("/scim/v2/{tenant}", super::routes())
        .with_state(state.clone());
    let base = state.services.tenant_url(ctx.0.tenant_id());
    let tenant = ctx.0.tenant_id().to_string();
    let mut created: HashMap<String, String> = HashMap::new();
    let mut results: Vec<Option<Value>> = vec![None; ops.len()];
    let mut errors = 0u64;
    for i in order {
        let op = &ops[i];
        let outcome = match &op.invalid {
            Some(e) => Outcome::error(e.clone()),
            None => match resolve(op, &created) {
                Err(e) => Outcome::error(e),
                Ok((path, data)) => dispatch(&router, &headers, &tenant, op, &path, data.as_ref())
                    .await
                    .with_location(&base, &path),
            },
        };
        if let (Some(id), Some(loc)) = (&op.bulk_id, &outcome.location) {
            if op.method == Method::POST && outcome.status < 300 {
                if let Some(new_id) = loc.rsplit('/').next() {
                    created.insert(id.clone(), new_id.to_owned());
                }
            }
        }
        if outcome.status >= 400 {
            errors += 1;
        }
        results[i] = Some(outcome.into_json(op));
        // RFC 7644 §3.7.3: after `failOnErrors` errors, the remaining operations are not
        // performed.
        if fail_on_errors.is_some_and(|max| errors >= max) {
            break;
        }
    }
    let operations: Vec<Value> = results.into_iter().flatten().collect();
    Ok(ScimJson(
        StatusCode::OK,
        json!({"schemas": [BULK_RESPONSE_URN], "Operations": operations}),
    )
    .into_response())
}

/// Reads the `BulkRequest` (RFC 7644 §3.7.1): its operations and `failOnErrors`. A
/// request that cannot be read as a whole is refused as a whole.
fn parse_request(body: Value) -> Result<(Vec<Op>, Option<u64>), ScimError> {
    let Value::Object(obj) = body else {
        return Err(ScimError::invalid_syntax(
            "a BulkRequest must be a JSON object",
        ));
    };
    let mut operations = None;
    let mut fail_on_errors = None;
    for (k, v) in obj {
        match k.to_ascii_lowercase().as_str() {
            "operations" => operations = Some(v),
            "failonerrors" => {
                fail_on_errors = match &v {
                    Value::Null => None,
                    v => match v.as_u64() {
                        Some(n) if n >= 1 => Some(n),
                        _ => {
                            return Err(ScimError::invalid_value(
                                "failOnErrors must be an integer of at least 1",
                            ))
                        }
                    },
                }
            }
            "schemas" => {
                let ok = v.as_array().is_some_and(|a| {
                    a.iter().any(|s| {
                        s.as_str()
                            .is_some_and(|s| s.eq_ignore_ascii_case(BULK_REQUEST_URN))
                    })
                });
                if !ok {
                    return Err(ScimError::invalid_value(format!(
                        "schemas must contain {BULK_REQUEST_URN}"
                    )));
                }
            }
            _ => {}
        }
    }
    let Some(Value::Array(list)) = operations else {
        return Err(ScimError::invalid_syntax(
            "a BulkRequest needs an Operations array",
        ));
    };
    if list.len() > BULK_MAX_OPERATIONS as usize {
        return Err(ScimError::new(
            413,
            None,
            format!(
                "The number of operations ({}) exceeds the maxOperations ({BULK_MAX_OPERATIONS}).",
                list.len()
            ),
        ));
    }
    let ops: Vec<Op> = list.into_iter().map(parse_op).collect();
    let mut seen = HashMap::new();
    for op in &ops {
        if let Some(id) = &op.bulk_id {
            if seen.insert(id.as_str(), ()).is_some() {
                return Err(ScimError::invalid_value(format!(
                    "bulkId {id:?} is used by more than one operation; a bulkId must be unique within a request"
                )));
            }
        }
    }
    Ok((ops, fail_on_errors))
}

fn parse_op(v: Value) -> Op {
    let mut op = Op {
        method: Method::POST,
        bulk_id: None,
        version: None,
        path: String::new(),
        data: None,
        invalid: None,
    };
    let Value::Object(obj) = v else {
        op.invalid = Some(ScimError::invalid_syntax(
            "an operation must be a JSON object",
        ));
        return op;
    };
    let mut method = None;
    for (k, v) in obj {
        match k.to_ascii_lowercase().as_str() {
            "method" => method = v.as_str().map(str::to_ascii_uppercase),
            "bulkid" => op.bulk_id = v.as_str().map(str::to_owned),
            "version" => op.version = v.as_str().map(str::to_owned),
            "path" => op.path = v.as_str().unwrap_or_default().to_owned(),
            "data" => op.data = Some(v),
            _ => {}
        }
    }
    op.method = match method.as_deref() {
        Some("POST") => Method::POST,
        Some("PUT") => Method::PUT,
        Some("PATCH") => Method::PATCH,
        Some("DELETE") => Method::DELETE,
        other => {
            op.invalid = Some(ScimError::invalid_value(format!(
                "method must be POST, PUT, PATCH or DELETE, not {other:?}"
            )));
            return op;
        }
    };
    if op.method == Method::POST && op.bulk_id.as_deref().is_none_or(str::is_empty) {
        op.invalid = Some(ScimError::invalid_value(
            "a POST operation needs a bulkId (RFC 7644 §3.7)",
        ));
    } else if op.method != Method::DELETE && op.data.is_none() {
        op.invalid = Some(ScimError::invalid_syntax(format!(
            "a {} operation needs data",
            op.method
        )));
    } else if let Err(e) = canonical_path(&op.path) {
        op.invalid = Some(e);
    }
    op
}

/// `/Users`, `/Groups`, or one resource under them (its id possibly a `bulkId:` reference),
/// with the endpoint in its canonical letter case. Nothing else can be reached from a bulk
/// request: no query, no other endpoint, no nested `/Bulk`.
fn canonical_path(path: &str) -> Result<String, ScimError> {
    let bad = || {
        ScimError::invalid_path(format!(
            "path must be /Users, /Groups, /Users/{{id}} or /Groups/{{id}}, not {path:?}"
        ))
    };
    let rest = path.strip_prefix('/').ok_or_else(bad)?;
    let (endpoint, id) = match rest.split_once('/') {
        Some((e, id)) => (e, Some(id)),
        None => (rest, None),
    };
    let endpoint = if endpoint.eq_ignore_ascii_case("Users") {
        "Users"
    } else if endpoint.eq_ignore_ascii_case("Groups") {
        "Groups"
    } else {
        return Err(bad());
    };
    match id {
        None => Ok(format!("/{endpoint}")),
        Some(id)
            if !id.is_empty()
                && id.len() <= 256
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~:".contains(&b)) =>
        {
            Ok(format!("/{endpoint}/{id}"))
        }
        Some(_) => Err(bad()),
    }
}

/// The `bulkId`s an operation refers to, in its path and anywhere in its data (RFC 7644
/// §3.7.2: "bulkId:" followed by the id, as a whole string value).
fn references(op: &Op) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(id) = op
        .path
        .rsplit('/')
        .next()
        .and_then(|s| s.strip_prefix("bulkId:"))
    {
        out.push(id.to_owned());
    }
    if let Some(d) = &op.data {
        // An explicit stack: a deeply nested body cannot exhaust the thread's stack.
        let mut stack = vec![d];
        while let Some(v) = stack.pop() {
            match v {
                Value::String(s) => {
                    if let Some(id) = s.strip_prefix("bulkId:") {
                        out.push(id.to_owned());
                    }
                }
                Value::Array(a) => stack.extend(a),
                Value::Object(o) => stack.extend(o.values()),
                _ => {}
            }
        }
    }
    out
}

/// The order the operations run in: request order, each `POST` another operation
/// references moved before its first referrer. Operations on a reference cycle (RFC 7644
/// §3.7.1: a `POST` whose data refers, directly or through other `POST`s, to its own
/// `bulkId`) are not run: they are answered 409, which RFC 7644 §3.7.1 permits instead of
/// resolving the cycle (Cairn's groups have only users as members, so a cycle of groups
/// could not be created anyway).
fn plan(ops: &mut [Op]) -> Vec<usize> {
    let by_id: HashMap<String, usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| o.method == Method::POST && o.invalid.is_none())
        .filter_map(|(i, o)| o.bulk_id.clone().map(|b| (b, i)))
        .collect();
    let deps: Vec<Vec<usize>> = ops
        .iter()
        .map(|o| {
            let mut d: Vec<usize> = references(o)
                .iter()
                .filter_map(|r| by_id.get(r).copied())
                .collect();
            d.dedup();
            d
        })
        .collect();
    // Iterative depth-first search: 0 unseen, 1 on the stack, 2 placed.
    let mut mark = vec![0u8; ops.len()];
    let mut order = Vec::with_capacity(ops.len());
    let mut circular = vec![false; ops.len()];
    for root in 0..ops.len() {
        if mark[root] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        mark[root] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&dep) = deps[node].get(*next) {
                *next += 1;
                match mark[dep] {
                    0 => {
                        mark[dep] = 1;
                        stack.push((dep, 0));
                    }
                    1 => {
                        // A back edge: every operation from `dep` up to `node` is on the
                        // cycle.
                        if let Some(from) = stack.iter().position(|&(n, _)| n == dep) {
                            for &(n, _) in &stack[from..] {
                                circular[n] = true;
                            }
                        }
                    }
                    _ => {}
                }
            } else {
                mark[node] = 2;
                order.push(node);
                stack.pop();
            }
        }
    }
    for (i, op) in ops.iter_mut().enumerate() {
        if circular[i] && op.invalid.is_none() {
            op.invalid = Some(ScimError::new(
                409,
                None,
                format!(
                    "operation {} ({}) is part of a circular bulkId reference that cannot be resolved (RFC 7644 §3.7.1)",
                    op.bulk_id.as_deref().unwrap_or("without bulkId"),
                    op.path
                ),
            ));
        }
    }
    order
}

/// The operation's path and data with every `bulkId:` reference replaced by the id of the
/// resource its `POST` created; a reference to a `bulkId` no successful `POST` of this
/// request declared is 409 (RFC 7644 §3.7.2).
fn resolve(
    op: &Op,
    created: &HashMap<String, String>,
) -> Result<(String, Option<Value>), ScimError> {
    let lookup = |id: &str| -> Result<String, ScimError> {
        created.get(id).cloned().ok_or_else(|| {
            ScimError::new(
                409,
                None,
                format!(
                    "bulkId:{id} cannot be resolved: no successful POST in this request has bulkId {id:?}"
                ),
            )
        })
    };
    let path = canonical_path(&op.path)?;
    let path = match path.rsplit_once('/') {
        Some((head, last)) if last.starts_with("bulkId:") => {
            format!("{head}/{}", lookup(&last["bulkId:".len()..])?)
        }
        _ => path,
    };
    let data = match &op.data {
        None => None,
        Some(d) => {
            let mut d = d.clone();
            let mut stack = vec![&mut d];
            while let Some(v) = stack.pop() {
                match v {
                    Value::String(s) => {
                        if let Some(id) = s.strip_prefix("bulkId:") {
                            *s = lookup(id)?;
                        }
                    }
                    Value::Array(a) => stack.extend(a.iter_mut()),
                    Value::Object(o) => stack.extend(o.values_mut()),
                    _ => {}
                }
            }
            Some(d)
        }
    };
    Ok((path, data))
}

/// What one operation came to.
struct Outcome {
    status: u16,
    location: Option<String>,
    version: Option<String>,
    /// The error body, for a failure.
    response: Option<Value>,
}

impl Outcome {
    fn error(e: ScimError) -> Outcome {
        Outcome {
            status: e.status,
            location: None,
            version: None,
            response: Some(e.to_body()),
        }
    }

    /// RFC 7644 §3.7.3: every result has a `location` but that of a failed POST.
    fn with_location(mut self, base: &str, path: &str) -> Outcome {
        if self.location.is_none() && path.matches('/').count() == 2 {
            self.location = Some(format!("{base}{path}"));
        }
        self
    }

    fn into_json(self, op: &Op) -> Value {
        let mut m = Map::new();
        m.insert("method".into(), op.method.as_str().into());
        if let Some(b) = &op.bulk_id {
            m.insert("bulkId".into(), b.clone().into());
        }
        if let Some(v) = self.version {
            m.insert("version".into(), v.into());
        }
        if let Some(l) = self.location {
            m.insert("location".into(), l.into());
        }
        m.insert("status".into(), self.status.to_string().into());
        if let Some(r) = self.response {
            m.insert("response".into(), r);
        }
        Value::Object(m)
    }
}

/// Sends one operation through the SCIM router as the request it stands for.
async fn dispatch(
    router: &Router,
    headers: &HeaderMap,
    tenant: &str,
    op: &Op,
    path: &str,
    data: Option<&Value>,
) -> Outcome {
    let mut req = Request::builder()
        .method(op.method.clone())
        .uri(format!("/scim/v2/{tenant}{path}"));
    for name in [header::AUTHORIZATION, header::USER_AGENT, REQUEST_ID] {
        if let Some(v) = headers.get(&name) {
            req = req.header(name, v.clone());
        }
    }
    if let Some(v) = op
        .version
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        req = req.header(header::IF_MATCH, v);
    }
    let body = match data {
        Some(d) => {
            req = req.header(header::CONTENT_TYPE, super::response::SCIM_JSON);
            Body::from(serde_json::to_vec(d).unwrap_or_default())
        }
        None => Body::empty(),
    };
    let req = match req.body(body) {
        Ok(r) => r,
        Err(e) => return Outcome::error(ScimError::invalid_value(format!("{e}"))),
    };
    let resp = match router.clone().oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = resp.status().as_u16();
    let (location, version) = {
        let h = resp.headers();
        let get = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        (get(header::LOCATION), get(header::ETAG))
    };
    let response = if status >= 400 {
        let bytes = axum::body::to_bytes(resp.into_body(), MAX_OP_RESPONSE)
            .await
            .unwrap_or_default();
        Some(
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| ScimError::new(status, None, "the operation failed").to_body()),
        )
    } else {
        None
    };
    Outcome {
        status,
        location,
        version,
        response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_scim::ScimType;

    fn ops(v: Value) -> Vec<Op> {
        parse_request(json!({"schemas": [BULK_REQUEST_URN], "Operations": v}))
            .unwrap()
            .0
    }

    #[test]
    fn referenced_posts_run_first_and_cycles_are_409() {
        let mut o = ops(json!([
            {"method": "POST", "path": "/Groups", "bulkId": "g",
             "data": {"displayName": "G", "members": [{"value": "bulkId:u"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "u", "data": {"userName": "a"}},
        ]));
        assert_eq!(plan(&mut o), vec![1, 0]);
        assert!(o.iter().all(|o| o.invalid.is_none()));

        // RFC 7644 §3.7.1's example: group A has B as a member and B has A.
        let mut o = ops(json!([
            {"method": "POST", "path": "/Groups", "bulkId": "qwerty",
             "data": {"displayName": "Group A", "members": [{"type": "Group", "value": "bulkId:ytrewq"}]}},
            {"method": "POST", "path": "/Groups", "bulkId": "ytrewq",
             "data": {"displayName": "Group B", "members": [{"type": "Group", "value": "bulkId:qwerty"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "x", "data": {"userName": "x"}},
        ]));
        plan(&mut o);
        assert_eq!(o[0].invalid.as_ref().unwrap().status, 409);
        assert_eq!(o[1].invalid.as_ref().unwrap().status, 409);
        assert!(o[2].invalid.is_none());
    }

    #[test]
    fn a_deep_chain_plans_without_recursion() {
        let n = BULK_MAX_OPERATIONS as usize;
        let list: Vec<Value> = (0..n)
            .map(|i| {
                json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"),
                       "data": {"userName": format!("u{i}"), "x": format!("bulkId:b{}", i + 1)}})
            })
            .collect();
        let mut o = ops(Value::Array(list));
        let order = plan(&mut o);
        assert_eq!(order.len(), n);
        assert_eq!(order[0], n - 1);
    }

    #[test]
    fn paths_are_confined_to_users_and_groups() {
        assert_eq!(canonical_path("/users").unwrap(), "/Users");
        assert_eq!(
            canonical_path("/GROUPS/bulkId:q").unwrap(),
            "/Groups/bulkId:q"
        );
        for bad in [
            "",
            "Users",
            "/Bulk",
            "/Users/a/b",
            "/Users/../x",
            "/Users?x=1",
            "/Users/",
            "/Schemas",
        ] {
            assert!(canonical_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn whole_request_errors() {
        let e = parse_request(json!({"Operations": {}})).err().unwrap();
        assert_eq!(e.status, 400);
        let too_many: Vec<Value> = (0..=BULK_MAX_OPERATIONS)
            .map(|_| json!({"method": "DELETE", "path": "/Users/x"}))
            .collect();
        let e = parse_request(json!({"Operations": too_many}))
            .err()
            .unwrap();
        assert_eq!(e.status, 413);
        let e = parse_request(json!({"failOnErrors": 0, "Operations": []}))
            .err()
            .unwrap();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        let dup = json!([
            {"method": "POST", "path": "/Users", "bulkId": "a", "data": {}},
            {"method": "POST", "path": "/Users", "bulkId": "a", "data": {}},
        ]);
        assert!(parse_request(json!({"Operations": dup})).is_err());
    }
}
