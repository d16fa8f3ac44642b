//! Cursor paging (RFC 9865) of `/Users` and `/Groups`, beside index paging.
//!
//! A cursor is a position in the list, not server state: the sort key's value and the id
//! of the row at a page boundary (`cairn_core::query::Keyset`), which the store turns into
//! one index seek (`WHERE (key, id) > (…)`), so a deep page costs what the first does and
//! rows created or deleted meanwhile never shift a page. It is sent as base64url (RFC 4648
//! §5, no padding: only RFC 3986 unreserved characters, as RFC 9865 §2 asks) of a JSON
//! array `[version, direction, issued-at, list fingerprint, key, id]`.
//!
//! It needs no secret: everything it carries is bound as an SQL parameter of a query that
//! is still scoped to the requesting tenant, so a forged cursor can only name another
//! position in the caller's own list. It is nevertheless decoded strictly, and anything
//! that is not exactly what this version issues is 400 `invalidCursor`: a cursor of
//! another tenant, resource type, filter or sort order (the fingerprint), a key of the
//! wrong type, an id that is not one Cairn issues. A cursor older than `cursorTimeout`
//! (advertised in `/ServiceProviderConfig`) is 400 `expiredCursor` (RFC 9865 §2.2).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cairn_core::clock::format_ts;
use cairn_core::ids::{fold_case, TenantId};
use cairn_core::query::{AttrKind, AttrTarget, Keyset, Scalar, Seek, SortKey};
use cairn_scim::discovery::CURSOR_TIMEOUT_SECS;
use cairn_scim::list::MAX_COUNT;
use cairn_scim::{ScimError, ScimType};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

const VERSION: u64 = 1;
/// Longer than any cursor this version issues (ids are 36 characters, keys at most a
/// few hundred bytes).
const MAX_CURSOR_LEN: usize = 4096;
/// Clock skew tolerated between instances that issue and read a cursor.
const SKEW_SECS: i64 = 60;

/// A cursor request: where the page starts and what it is bound to.
pub(crate) struct CursorRequest {
    pub(crate) seek: Seek,
    /// The page size asked for; the store is asked for one more row, to know whether a
    /// next (or previous) page exists.
    pub(crate) count: u64,
    fingerprint: String,
    now: i64,
}

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::bad_request(ScimType::InvalidCursor, detail)
}

/// What ties a cursor to the list it pages: tenant, resource type, filter text and sort.
fn fingerprint(
    tenant: &TenantId,
    resource: &str,
    filter: Option<&str>,
    sort: Option<&SortKey>,
) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "{tenant}\n{resource}\n{}\n{sort:?}",
        filter.unwrap_or("")
    ));
    let d = h.finalize();
    d[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a sort key can order a cursor list: attributes the store keeps as columns,
/// whose values a row carries (`key_of`).
fn cursor_sortable(sort: Option<&SortKey>) -> bool {
    sort.is_none_or(|k| {
        matches!(
            k.attr.target,
            AttrTarget::Id
                | AttrTarget::UserName
                | AttrTarget::DisplayName
                | AttrTarget::ExternalId
                | AttrTarget::Active
                | AttrTarget::Created
                | AttrTarget::LastModified
        )
    })
}

impl CursorRequest {
    /// The cursor request of a listing, if it asks for one (`cursor` present, even
    /// empty: RFC 9865 §2's first page). `count` is the parsed `count` parameter, or
    /// `None` when absent.
    // The list's parameters and identity, each named: a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_params(
        cursor: Option<&str>,
        start_index: Option<&str>,
        count: Option<u64>,
        tenant: &TenantId,
        resource: &str,
        filter: Option<&str>,
        sort: Option<&SortKey>,
        now: OffsetDateTime,
    ) -> Result<Option<CursorRequest>, ScimError> {
        let Some(text) = cursor else {
            return Ok(None);
        };
        if start_index.is_some_and(|s| !s.trim().is_empty()) {
            return Err(ScimError::invalid_value(
                "use either startIndex (index paging) or cursor (cursor paging), not both",
            ));
        }
        let count = match count {
            None => cairn_scim::list::DEFAULT_COUNT,
            Some(0) => {
                return Err(ScimError::bad_request(
                    ScimType::InvalidCount,
                    format!("count must be between 1 and maxPageSize ({MAX_COUNT}) with a cursor"),
                ))
            }
            Some(n) => n.min(MAX_COUNT),
        };
        if !cursor_sortable(sort) {
            return Err(ScimError::invalid_value(
                "with a cursor, sortBy may name id, userName, displayName, externalId, active, \
                 meta.created or meta.lastModified; use startIndex to sort by other attributes",
            ));
        }
        let fingerprint = fingerprint(tenant, resource, filter, sort);
        let now = now.unix_timestamp();
        let seek = decode(text.trim(), &fingerprint, sort, now)?;
        Ok(Some(CursorRequest {
            seek,
            count,
            fingerprint,
            now,
        }))
    }

    /// Rows to ask the store for.
    pub(crate) fn fetch(&self) -> u64 {
        self.count + 1
    }

    /// Trims the store's rows (one more than `count` if there are more) to the page and
    /// returns `(nextCursor, previousCursor)`.
    pub(crate) fn finish<T>(
        &self,
        items: &mut Vec<T>,
        keyset: impl Fn(&T) -> Keyset,
    ) -> (Option<String>, Option<String>) {
        let n = self.count as usize;
        let more = items.len() > n;
        let at = |pos: Option<&T>, after: bool| pos.map(|t| self.encode(&keyset(t), after));
        match &self.seek {
            Seek::First | Seek::After(_) => {
                items.truncate(n);
                let next = if more { at(items.last(), true) } else { None };
                let prev = match self.seek {
                    Seek::After(_) => at(items.first(), false),
                    _ => None,
                };
                (next, prev)
            }
            Seek::Before(_) => {
                if more {
                    items.drain(..items.len() - n);
                }
                let prev = if more { at(items.first(), false) } else { None };
                (at(items.last(), true), prev)
            }
        }
    }

    fn encode(&self, k: &Keyset, after: bool) -> String {
        let key = match &k.key {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => json!(b),
            Scalar::Int(i) => json!(i),
            Scalar::Decimal(d) => json!(d),
            Scalar::String(s) => json!(s),
        };
        let v = json!([
            VERSION,
            if after { "a" } else { "b" },
            self.now,
            self.fingerprint,
            key,
            k.id
        ]);
        URL_SAFE_NO_PAD.encode(v.to_string())
    }
}

/// Decodes a cursor strictly: exactly what [`CursorRequest::encode`] writes, for this
/// list, not expired.
fn decode(text: &str, fp: &str, sort: Option<&SortKey>, now: i64) -> Result<Seek, ScimError> {
    if text.is_empty() {
        return Ok(Seek::First);
    }
    let bad = || {
        invalid(
            "the cursor is not one this service provider issued for this list; send an empty \
             cursor for the first page, then the nextCursor or previousCursor of a response, \
             with the same filter and sort",
        )
    };
    if text.len() > MAX_CURSOR_LEN {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let Some([version, dir, issued, got_fp, key, id]) = v.as_array().map(Vec::as_slice) else {
        return Err(bad());
    };
    if version.as_u64() != Some(VERSION) || got_fp.as_str() != Some(fp) {
        return Err(bad());
    }
    let after = match dir.as_str() {
        Some("a") => true,
        Some("b") => false,
        _ => return Err(bad()),
    };
    let issued = issued.as_i64().ok_or_else(bad)?;
    if issued > now + SKEW_SECS {
        return Err(bad());
    }
    if now - issued > CURSOR_TIMEOUT_SECS as i64 {
        return Err(ScimError::bad_request(
            ScimType::ExpiredCursor,
            format!(
                "the cursor has expired; do not wait longer than cursorTimeout ({CURSOR_TIMEOUT_SECS} s) between pages, or start again with an empty cursor"
            ),
        ));
    }
    let id = id.as_str().ok_or_else(bad)?;
    // Only the canonical form of the version 7 UUIDs Cairn issues.
    match uuid::Uuid::try_parse(id) {
        Ok(u) if u.to_string() == id => {}
        _ => return Err(bad()),
    }
    let key = match (sort, key) {
        (_, Value::Null) => Scalar::Null,
        (None, _) => return Err(bad()),
        (Some(k), Value::Bool(b)) if k.attr.kind == AttrKind::Boolean => Scalar::Bool(*b),
        (Some(k), Value::String(s)) if k.attr.kind != AttrKind::Boolean && s.len() <= 2048 => {
            Scalar::String(s.clone())
        }
        _ => return Err(bad()),
    };
    let pos = Keyset {
        key,
        id: id.to_owned(),
    };
    Ok(if after {
        Seek::After(pos)
    } else {
        Seek::Before(pos)
    })
}

/// The values of a row a sort key can name.
pub(crate) struct RowKeys<'a> {
    pub(crate) id: &'a str,
    pub(crate) user_name: Option<&'a str>,
    pub(crate) display_name: Option<&'a str>,
    pub(crate) external_id: Option<&'a str>,
    pub(crate) active: Option<bool>,
    pub(crate) created: OffsetDateTime,
    pub(crate) updated: OffsetDateTime,
}

/// A row's position in a list ordered by `sort`, as the store compares it: the value
/// folded exactly when the store's `ORDER BY` folds it (a case-insensitive text
/// attribute), timestamps in their stored text form.
pub(crate) fn keyset_of(sort: Option<&SortKey>, r: &RowKeys<'_>) -> Keyset {
    let key = match sort {
        None => Scalar::Null,
        Some(k) => {
            let text = |s: Option<String>| {
                let textual = matches!(
                    k.attr.kind,
                    AttrKind::String | AttrKind::Reference | AttrKind::Binary | AttrKind::DateTime
                );
                match s {
                    None => Scalar::Null,
                    Some(s) if !k.attr.case_exact && textual => Scalar::String(fold_case(&s)),
                    Some(s) => Scalar::String(s),
                }
            };
            match k.attr.target {
                AttrTarget::Id => text(Some(r.id.to_owned())),
                AttrTarget::UserName => text(r.user_name.map(str::to_owned)),
                AttrTarget::DisplayName => text(r.display_name.map(str::to_owned)),
                AttrTarget::ExternalId => text(r.external_id.map(str::to_owned)),
                AttrTarget::Created => text(Some(format_ts(r.created))),
                AttrTarget::LastModified => text(Some(format_ts(r.updated))),
                AttrTarget::Active => r.active.map_or(Scalar::Null, Scalar::Bool),
                // Refused by `cursor_sortable`.
                _ => Scalar::Null,
            }
        }
    };
    Keyset {
        key,
        id: r.id.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cursor: &str, now: i64) -> Result<Option<CursorRequest>, ScimError> {
        CursorRequest::from_params(
            Some(cursor),
            None,
            Some(10),
            &TenantId::parse("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").unwrap(),
            "Users",
            None,
            None,
            OffsetDateTime::from_unix_timestamp(now).unwrap(),
        )
    }

    #[test]
    fn cursors_round_trip_and_forgeries_are_invalid() {
        let r = req("", 1_000_000).unwrap().unwrap();
        assert_eq!(r.seek, Seek::First);
        let pos = Keyset {
            key: Scalar::Null,
            id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c".into(),
        };
        let c = r.encode(&pos, true);
        assert!(c
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(
            req(&c, 1_000_100).unwrap().unwrap().seek,
            Seek::After(pos.clone())
        );
        let b = r.encode(&pos, false);
        assert_eq!(req(&b, 1_000_100).unwrap().unwrap().seek, Seek::Before(pos));
        // Expired after cursorTimeout.
        let e = req(&c, 1_000_000 + CURSOR_TIMEOUT_SECS as i64 + 1)
            .err()
            .unwrap();
        assert_eq!(e.scim_type, Some(ScimType::ExpiredCursor));
        for forged in [
            "x".to_owned(),
            "%%%".to_owned(),
            URL_SAFE_NO_PAD.encode("[1,\"a\",1000000,\"00\",null,\"x\"]"),
            URL_SAFE_NO_PAD.encode("{}"),
            URL_SAFE_NO_PAD.encode("' OR 1=1 --"),
            // The right fingerprint, a direction this version does not write.
            URL_SAFE_NO_PAD.encode(
                String::from_utf8(URL_SAFE_NO_PAD.decode(&c).unwrap())
                    .unwrap()
                    .replace("\"a\"", "\"z\""),
            ),
            format!("{c}="),
            "A".repeat(MAX_CURSOR_LEN + 1),
        ] {
            let e = req(&forged, 1_000_100)
                .err()
                .unwrap_or_else(|| panic!("accepted {forged}"));
            assert_eq!(e.scim_type, Some(ScimType::InvalidCursor), "{forged}");
            assert_eq!(e.status, 400);
        }
        // Another tenant's (or list's) cursor is invalid here.
        let other = CursorRequest::from_params(
            Some(""),
            None,
            None,
            &TenantId::random(),
            "Users",
            None,
            None,
            OffsetDateTime::from_unix_timestamp(1_000_000).unwrap(),
        )
        .unwrap()
        .unwrap();
        let theirs = other.encode(
            &Keyset {
                key: Scalar::Null,
                id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c".into(),
            },
            true,
        );
        let e = req(&theirs, 1_000_100).err().unwrap();
        assert_eq!(e.scim_type, Some(ScimType::InvalidCursor));
    }

    /// Whatever a client sends as a cursor is a valid position in its own list or 400
    /// `invalidCursor` (or `expiredCursor`), never a panic: random base64url text, every
    /// one-character change of a real cursor, and well-formed arrays with the right
    /// fingerprint but values of the wrong kind.
    #[test]
    fn arbitrary_cursors_are_positions_or_invalid() {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let ok_or_invalid = |text: &str| match req(text, 1_000_100) {
            Ok(Some(r)) => assert!(matches!(
                r.seek,
                Seek::After(_) | Seek::Before(_) | Seek::First
            )),
            Ok(None) => unreachable!("a cursor was given"),
            Err(e) => {
                assert_eq!(e.status, 400, "{text}");
                assert!(
                    matches!(
                        e.scim_type,
                        Some(ScimType::InvalidCursor | ScimType::ExpiredCursor)
                    ),
                    "{text}: {e}"
                );
            }
        };
        for _ in 0..5000 {
            let len = (next() % 300) as usize;
            let text: String = (0..len)
                .map(|_| ALPHABET[(next() % 64) as usize] as char)
                .collect();
            ok_or_invalid(&text);
        }
        let r = req("", 1_000_000).unwrap().unwrap();
        let valid = r.encode(
            &Keyset {
                key: Scalar::Null,
                id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c".into(),
            },
            true,
        );
        for i in 0..valid.len() {
            for c in ALPHABET.iter().step_by(7) {
                let mut t = valid.clone().into_bytes();
                t[i] = *c;
                ok_or_invalid(&String::from_utf8(t).unwrap());
            }
        }
        let fp = r.fingerprint.clone();
        for key in [
            json!(1),
            json!(true),
            json!({}),
            json!([]),
            json!("x".repeat(5000)),
            json!(null),
        ] {
            for id in [
                json!("0193A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5C"),
                json!("' OR 1=1 --"),
                json!(7),
                json!(null),
                json!("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"),
            ] {
                let v = json!([VERSION, "a", 1_000_000, fp, key, id]);
                ok_or_invalid(&URL_SAFE_NO_PAD.encode(v.to_string()));
            }
        }
    }

    #[test]
    fn pages_know_their_neighbours() {
        let r = req("", 0).unwrap().unwrap();
        let key = |i: &u32| Keyset {
            key: Scalar::Null,
            id: format!("0193a1b2-c3d4-7e5f-8a9b-{i:012}"),
        };
        let mut items: Vec<u32> = (0..11).collect();
        let (next, prev) = r.finish(&mut items, key);
        assert_eq!(items.len(), 10);
        assert!(next.is_some() && prev.is_none());
        let mut last: Vec<u32> = (0..3).collect();
        let (next, prev) = r.finish(&mut last, key);
        assert!(next.is_none() && prev.is_none());
        let e = CursorRequest::from_params(
            Some(""),
            None,
            Some(0),
            &TenantId::random(),
            "Users",
            None,
            None,
            OffsetDateTime::UNIX_EPOCH,
        )
        .err()
        .unwrap();
        assert_eq!(e.scim_type, Some(ScimType::InvalidCount));
        let e = CursorRequest::from_params(
            Some(""),
            Some("1"),
            None,
            &TenantId::random(),
            "Users",
            None,
            None,
            OffsetDateTime::UNIX_EPOCH,
        )
        .err()
        .unwrap();
        assert_eq!(e.status, 400);
    }
}
