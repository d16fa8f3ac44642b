//! Listing responses (RFC 7644 §3.4.2): `startIndex`/`count` paging and the
//! `ListResponse` envelope.

use crate::ScimError;
use serde_json::{json, Value};

pub const LIST_RESPONSE_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// The largest page served; advertised as `filter.maxResults` in `/ServiceProviderConfig`.
pub const MAX_COUNT: u64 = 1000;
/// Okta pages with `count=100` and expects at least that by default (Okta's SCIM 2.0
/// reference, <https://developer.okta.com/docs/api/openapi/okta-scim/guides/scim-20>).
pub const DEFAULT_COUNT: u64 = 100;

/// Parses `startIndex` and `count` (RFC 7644 §3.4.2.4) into a 1-based start and a page size.
///
/// Absent or empty parameters take their defaults; `startIndex < 1` means 1 and negative
/// `count` means 0 (both per the RFC); `count` above [`MAX_COUNT`] is clamped, and so is a
/// start beyond `i64::MAX` (so storage offsets cannot overflow). Anything that is not an
/// integer is 400 `invalidValue`.
pub fn paging(start_index: Option<&str>, count: Option<&str>) -> Result<(u64, u64), ScimError> {
    let start = match parse_int("startIndex", start_index)? {
        None => 1,
        Some(n) if n < 1 => 1,
        Some(n) => n.min(i128::from(i64::MAX)) as u64,
    };
    let count = match parse_int("count", count)? {
        None => DEFAULT_COUNT,
        Some(n) if n < 0 => 0,
        Some(n) => n.min(i128::from(MAX_COUNT)) as u64,
    };
    Ok((start, count))
}

/// An integer of any size, saturated to the `i128` range so absurd values still order
/// correctly.
fn parse_int(name: &str, v: Option<&str>) -> Result<Option<i128>, ScimError> {
    let Some(s) = v.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ScimError::invalid_value(format!(
            "{name} must be an integer, not {s:?}"
        )));
    }
    let mut n: i128 = 0;
    for b in digits.bytes() {
        n = n.saturating_mul(10).saturating_add(i128::from(b - b'0'));
    }
    Ok(Some(if neg { -n } else { n }))
}

/// A `ListResponse` (RFC 7644 §3.4.2): every number a JSON integer and `itemsPerPage` the
/// number of resources actually returned, as RFC 7644 §3.4.2 defines it (not the
/// requested `count`).
pub fn list_response(total: u64, start_index: u64, resources: Vec<Value>) -> Value {
    // Built by hand: `json!` would pass `resources` through `to_value`, a deep copy of
    // every resource on the page by serialising it.
    let mut m = serde_json::Map::new();
    m.insert("schemas".into(), json!([LIST_RESPONSE_URN]));
    m.insert("totalResults".into(), total.into());
    m.insert("startIndex".into(), start_index.into());
    m.insert("itemsPerPage".into(), resources.len().into());
    m.insert("Resources".into(), Value::Array(resources));
    Value::Object(m)
}

/// Writes a `ListResponse` of `items` resources up to the opening bracket of
/// `Resources`; the caller writes the resources, comma-separated, then `]}`. The same
/// fields as [`list_response`], for resources written as text.
pub fn write_list_head(out: &mut Vec<u8>, total: u64, start_index: u64, items: usize) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "{{\"schemas\":[\"{LIST_RESPONSE_URN}\"],\"totalResults\":{total},\"startIndex\":{start_index},\"itemsPerPage\":{items},\"Resources\":["
    );
}

/// The `ListResponse` of a cursor page (RFC 9865 §2): no `startIndex`, and `nextCursor`
/// (absent on the last page) and `previousCursor` (absent on the first).
pub fn cursor_list_response(
    total: u64,
    next: Option<&str>,
    previous: Option<&str>,
    resources: Vec<Value>,
) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("schemas".into(), json!([LIST_RESPONSE_URN]));
    m.insert("totalResults".into(), total.into());
    m.insert("itemsPerPage".into(), resources.len().into());
    if let Some(n) = next {
        m.insert("nextCursor".into(), n.into());
    }
    if let Some(p) = previous {
        m.insert("previousCursor".into(), p.into());
    }
    m.insert("Resources".into(), Value::Array(resources));
    Value::Object(m)
}

/// [`write_list_head`] for a cursor page: the fields of [`cursor_list_response`]. Cursors
/// are base64url text, so they need no escaping.
pub fn write_cursor_list_head(
    out: &mut Vec<u8>,
    total: u64,
    items: usize,
    next: Option<&str>,
    previous: Option<&str>,
) {
    use std::io::Write;
    let _ = write!(
        out,
        "{{\"schemas\":[\"{LIST_RESPONSE_URN}\"],\"totalResults\":{total},\"itemsPerPage\":{items},"
    );
    for (name, v) in [("nextCursor", next), ("previousCursor", previous)] {
        if let Some(v) = v {
            debug_assert!(v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            let _ = write!(out, "\"{name}\":\"{v}\",");
        }
    }
    out.extend_from_slice(b"\"Resources\":[");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_defaults_and_clamps() {
        assert_eq!(paging(None, None).unwrap(), (1, DEFAULT_COUNT));
        assert_eq!(paging(Some(""), Some(" ")).unwrap(), (1, DEFAULT_COUNT));
        assert_eq!(paging(Some("1"), Some("2")).unwrap(), (1, 2));
        assert_eq!(paging(Some("101"), Some("100")).unwrap(), (101, 100));
        assert_eq!(paging(Some("0"), Some("0")).unwrap(), (1, 0));
        assert_eq!(paging(Some("-5"), Some("-1")).unwrap(), (1, 0));
        assert_eq!(paging(None, Some("5000")).unwrap(), (1, MAX_COUNT));
        let huge = "9".repeat(100);
        assert_eq!(
            paging(Some(&huge), Some(&huge)).unwrap(),
            (i64::MAX as u64, MAX_COUNT)
        );
        assert_eq!(
            paging(Some(&format!("-{huge}")), Some(&format!("-{huge}"))).unwrap(),
            (1, 0)
        );
    }

    #[test]
    fn paging_rejects_non_integers() {
        for bad in ["abc", "1.5", "-", "1e3", "0x10"] {
            let e = paging(Some(bad), None).unwrap_err();
            assert_eq!(e.status, 400);
            assert_eq!(e.scim_type, Some(crate::ScimType::InvalidValue));
            assert!(paging(None, Some(bad)).is_err());
        }
    }

    #[test]
    fn list_response_counts_resources() {
        let r = list_response(7, 3, vec![json!({"id": "a"}), json!({"id": "b"})]);
        assert_eq!(r["schemas"][0], LIST_RESPONSE_URN);
        assert_eq!(r["totalResults"], 7);
        assert_eq!(r["startIndex"], 3);
        assert_eq!(r["itemsPerPage"], 2);
        assert!(r["itemsPerPage"].is_u64());
        let empty = list_response(0, 1, Vec::new());
        assert_eq!(empty["Resources"], json!([]));
        // Written as text, the same document.
        for (items, body) in [(2, r#"{"id":"a"},{"id":"b"}"#), (0, "")] {
            let mut out = Vec::new();
            write_list_head(&mut out, 7, 3, items);
            out.extend_from_slice(body.as_bytes());
            out.extend_from_slice(b"]}");
            let parsed: Value = serde_json::from_slice(&out).unwrap();
            let want = if items == 2 {
                list_response(7, 3, vec![json!({"id": "a"}), json!({"id": "b"})])
            } else {
                list_response(7, 3, vec![])
            };
            assert_eq!(parsed, want);
        }
        assert_eq!(empty["itemsPerPage"], 0);
    }
}
