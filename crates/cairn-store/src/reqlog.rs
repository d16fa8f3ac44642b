//! The provisioning inspector's log as both backends store it (migration 0021): one row
//! per tenant and recorded batch, holding that batch's entries in a compact binary
//! encoding, instead of one row per SCIM request: recording must cost a request a few
//! percent at most, and a row with its B-tree updates per request costs far more than
//! appending a few hundred bytes to a batch (BENCHMARKS.md has the figures).
//!
//! Reading decodes a tenant's bounded window (10,000 entries by default) newest batch
//! first and filters in Rust, borrowing the strings from the row until an entry matches.
//!
//! The encoding itself is `cairn_core::reqlog` (the recorder encodes entries as they
//! happen); this module reads, trims and lists it.

use cairn_core::ids::TenantId;
pub(crate) use cairn_core::reqlog::Encoded;
use cairn_core::reqlog::{from_ms, ms, NONE, VERSION};
use cairn_core::requests::{Client, RequestEntry, RequestFilter, TokenHealth, ALL_CLIENTS};
use cairn_core::{Error, Result};
use std::collections::{BTreeMap, HashMap, VecDeque};
use time::OffsetDateTime;

fn corrupt(what: &str) -> Error {
    Error::Internal(format!("request log batch: {what}"))
}

/// An entry read from a batch, its strings borrowed from it.
#[derive(Debug, Clone)]
pub(crate) struct EntryRef<'a> {
    pub id: i64,
    pub at_ms: i64,
    pub status: u16,
    pub latency_us: i64,
    pub client: Client,
    pub token_id: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub dialect: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub scim_type: Option<&'a str>,
    pub error: Option<&'a str>,
    pub resource_type: Option<&'a str>,
    pub resource_id: Option<&'a str>,
    pub request_body: Option<&'a str>,
    pub response_body: Option<&'a str>,
    pub notes: Vec<&'a str>,
    /// The entry's encoded bytes, to re-encode a trimmed batch by copying.
    pub raw: &'a [u8],
}

impl EntryRef<'_> {
    pub fn at(&self) -> OffsetDateTime {
        from_ms(self.at_ms)
    }

    pub fn to_entry(&self, tenant: &TenantId) -> RequestEntry {
        let own = |s: Option<&str>| s.map(str::to_owned);
        RequestEntry {
            id: self.id,
            tenant_id: tenant.clone(),
            at: self.at(),
            token_id: own(self.token_id),
            method: self.method.to_owned(),
            path: self.path.to_owned(),
            client: self.client,
            dialect: own(self.dialect),
            user_agent: own(self.user_agent),
            status: self.status,
            scim_type: own(self.scim_type),
            error: own(self.error),
            latency_us: self.latency_us,
            resource_type: own(self.resource_type),
            resource_id: own(self.resource_id),
            notes: self.notes.iter().map(|n| (*n).to_owned()).collect(),
            request_body: own(self.request_body),
            response_body: own(self.response_body),
        }
    }

    /// Whether the entry passes the filter's conditions (all but its paging).
    pub fn matches(&self, f: &RequestFilter, since_ms: Option<i64>) -> bool {
        f.client.is_none_or(|c| c == self.client)
            && f.status_class.is_none_or(|c| self.status / 100 == c)
            && f.status.is_none_or(|s| s == self.status)
            && f.resource_id
                .as_deref()
                .is_none_or(|r| self.resource_id == Some(r))
            && since_ms.is_none_or(|s| self.at_ms >= s)
            && f.before_id.is_none_or(|b| self.id < b)
    }
}

/// Reads a batch's entries in the order they were recorded.
pub(crate) fn decode(blob: &[u8]) -> Result<Vec<EntryRef<'_>>> {
    entries(blob)?.collect()
}

/// The entries of a batch one at a time, in the order they were recorded: a listing
/// looks at each once and keeps few, so the batch is never held decoded as a whole.
pub(crate) fn entries(blob: &[u8]) -> Result<Entries<'_>> {
    let (&version, rest) = blob.split_first().ok_or_else(|| corrupt("empty"))?;
    if version != VERSION {
        return Err(corrupt(&format!("unknown version {version}")));
    }
    Ok(Entries(rest))
}

pub(crate) struct Entries<'a>(&'a [u8]);

impl<'a> Iterator for Entries<'a> {
    type Item = Result<EntryRef<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let r = next_entry(self.0);
        match r {
            Ok((e, rest)) => {
                self.0 = rest;
                Some(Ok(e))
            }
            Err(e) => {
                // A corrupt batch ends here.
                self.0 = &[];
                Some(Err(e))
            }
        }
    }
}

fn next_entry(start: &[u8]) -> Result<(EntryRef<'_>, &[u8])> {
    let mut r = Reader(start);
    let id = r.i64()?;
    let at_ms = r.i64()?;
    let status = u16::from_le_bytes(r.take(2)?.try_into().expect("2 bytes"));
    let latency_us = r.i64()?;
    let client = *ALL_CLIENTS
        .get(usize::from(r.take(1)?[0]))
        .unwrap_or(&Client::Other);
    let token_id = r.opt()?;
    let method = r.str()?;
    let path = r.str()?;
    let dialect = r.opt()?;
    let user_agent = r.opt()?;
    let scim_type = r.opt()?;
    let error = r.opt()?;
    let resource_type = r.opt()?;
    let resource_id = r.opt()?;
    let request_body = r.opt()?;
    let response_body = r.opt()?;
    let n = r.u32()?;
    let mut notes = Vec::with_capacity((n as usize).min(64));
    for _ in 0..n {
        notes.push(r.str()?);
    }
    let used = start.len() - r.0.len();
    let e = EntryRef {
        id,
        at_ms,
        status,
        latency_us,
        client,
        token_id,
        method,
        path,
        dialect,
        user_agent,
        scim_type,
        error,
        resource_type,
        resource_id,
        request_body,
        response_body,
        notes,
        raw: &start[..used],
    };
    Ok((e, r.0))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(corrupt("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn opt(&mut self) -> Result<Option<&'a str>> {
        match self.u32()? {
            NONE => Ok(None),
            n => {
                let b = self.take(n as usize)?;
                std::str::from_utf8(b)
                    .map(Some)
                    .map_err(|_| corrupt("not UTF-8"))
            }
        }
    }
    fn str(&mut self) -> Result<&'a str> {
        self.opt()?.ok_or_else(|| corrupt("missing string"))
    }
}

/// The kept entries of a trimmed batch, re-encoded by copying their bytes.
pub(crate) fn reencode(tenant_id: &str, kept: &[&EntryRef<'_>]) -> Encoded {
    let mut g = Encoded::new(tenant_id.to_owned());
    for e in kept {
        g.push_raw(e.id, e.at_ms, e.raw);
    }
    g
}

/// What a trim leaves of a batch: `None`, nothing (delete the row); else the new row.
pub(crate) fn trim(
    tenant_id: &str,
    blob: &[u8],
    keep: impl Fn(&EntryRef<'_>) -> bool,
) -> Result<Option<Encoded>> {
    let entries = decode(blob)?;
    let kept: Vec<&EntryRef<'_>> = entries.iter().filter(|e| keep(e)).collect();
    Ok((!kept.is_empty()).then(|| reencode(tenant_id, &kept)))
}

/// Keeps the newest `n` entries (by id) of a batch.
pub(crate) fn keep_newest(tenant_id: &str, blob: &[u8], n: usize) -> Result<Option<Encoded>> {
    if n == 0 {
        return Ok(None);
    }
    let entries = decode(blob)?;
    let mut ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
    ids.sort_unstable_by_key(|&id| std::cmp::Reverse(id));
    let min_kept = ids.get(n - 1).copied().unwrap_or(i64::MIN);
    let kept: Vec<&EntryRef<'_>> = entries.iter().filter(|e| e.id >= min_kept).collect();
    Ok(Some(reencode(tenant_id, &kept)))
}

/// Collects a listing from a tenant's batches, fed newest batch (largest `last_id`) first.
pub(crate) struct Listing<'f> {
    f: &'f RequestFilter,
    since_ms: Option<i64>,
    limit: usize,
    out: Vec<RequestEntry>,
}

impl<'f> Listing<'f> {
    pub fn new(f: &'f RequestFilter) -> Listing<'f> {
        let limit = if f.limit == 0 {
            cairn_core::requests::PAGE
        } else {
            f.limit
        } as usize;
        Listing {
            f,
            since_ms: f.since.map(ms),
            limit,
            out: Vec::new(),
        }
    }

    /// Whether a batch whose newest entry is `last_id` can still contribute (batches
    /// come newest first, so once the page is full of newer entries, none can).
    pub fn wants(&self, last_id: i64) -> bool {
        self.out.len() < self.limit || self.out.last().is_some_and(|e| e.id < last_id)
    }

    pub fn add(&mut self, tenant: &TenantId, blob: &[u8]) -> Result<()> {
        // A batch's entries are in id order, so only its last `limit` matches can make
        // the page: only those are kept, and only they are copied out of the row.
        let mut newest: VecDeque<EntryRef<'_>> = VecDeque::with_capacity(self.limit.min(1024));
        for e in entries(blob)? {
            let e = e?;
            if e.matches(self.f, self.since_ms) {
                if newest.len() == self.limit {
                    newest.pop_front();
                }
                newest.push_back(e);
            }
        }
        self.out.extend(newest.iter().map(|e| e.to_entry(tenant)));
        self.out.sort_unstable_by_key(|e| std::cmp::Reverse(e.id));
        self.out.truncate(self.limit);
        Ok(())
    }

    pub fn finish(self) -> Vec<RequestEntry> {
        self.out
    }
}

/// The health of each token, folded from every batch of a tenant.
#[derive(Default)]
pub(crate) struct Health {
    by_token: HashMap<String, (TokenHealth, i64)>,
    groups: BTreeMap<(String, i64, Option<String>), i64>,
}

impl Health {
    pub fn add(&mut self, blob: &[u8], since: OffsetDateTime) -> Result<()> {
        let since_ms = ms(since);
        for e in entries(blob)? {
            let e = e?;
            let Some(token) = e.token_id else { continue };
            let (h, best) = match self.by_token.get_mut(token) {
                Some(x) => x,
                None => self
                    .by_token
                    .entry(token.to_owned())
                    .or_insert((TokenHealth::default(), i64::MIN)),
            };
            let at = e.at();
            if h.last_request_at.is_none_or(|l| at > l) {
                h.last_request_at = Some(at);
            }
            // The last success is the newest by id, as the log is ordered.
            if e.status < 400 && e.id > *best {
                *best = e.id;
                h.last_success_at = Some(at);
                h.last_success_client = Some(e.client);
            }
            if e.at_ms >= since_ms {
                *self
                    .groups
                    .entry((
                        token.to_owned(),
                        i64::from(e.status),
                        e.scim_type.map(str::to_owned),
                    ))
                    .or_default() += 1;
            }
        }
        Ok(())
    }

    pub fn finish(self) -> Vec<TokenHealth> {
        let by_token = self
            .by_token
            .into_iter()
            .map(|(t, (h, _))| (t, h))
            .collect();
        let groups = self
            .groups
            .into_iter()
            .map(|((t, s, k), n)| (t, s, k, n))
            .collect();
        cairn_core::requests::health_of(by_token, groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::reqlog::encode_batch;

    fn entry(tenant: &str, at: OffsetDateTime, status: u16) -> RequestEntry {
        RequestEntry {
            id: 0,
            tenant_id: TenantId::from_trusted(tenant.to_owned()),
            at,
            token_id: Some("tok".into()),
            method: "PATCH".into(),
            path: "/Users/u1?aadOptscim062020".into(),
            client: Client::Entra,
            dialect: Some("Entra with aadOptscim062020".into()),
            user_agent: None,
            status,
            scim_type: Some("uniqueness".into()),
            error: Some("ünïcode ✓".into()),
            latency_us: -1,
            resource_type: Some("User".into()),
            resource_id: Some("u1".into()),
            notes: vec!["one".into(), String::new()],
            request_body: Some("{}".into()),
            response_body: None,
        }
    }

    #[test]
    fn batches_round_trip_per_tenant() {
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let mut b = entry("b", t + time::Duration::milliseconds(5), 500);
        b.client = Client::Rippling;
        b.notes.clear();
        b.token_id = None;
        let batch = vec![entry("a", t, 200), b.clone(), entry("a", t, 409)];
        let mut enc = encode_batch(&batch, 0);
        for g in &mut enc {
            g.rebase(41);
        }
        assert_eq!(enc.len(), 2);
        let a = &enc[0];
        // Each tenant's entries get consecutive ids, tenants in order of appearance.
        assert_eq!((a.first_id, a.last_id, a.count), (41, 42, 2));
        assert_eq!(enc[1].tenant_id, "b");
        assert_eq!((enc[1].first_id, enc[1].last_id), (43, 43));
        let got = decode(&a.blob).unwrap();
        let mut want = batch[2].clone();
        want.id = 42;
        assert_eq!(got[1].to_entry(&want.tenant_id), want);
        let got = decode(&enc[1].blob).unwrap();
        let mut want = b;
        want.id = 43;
        assert_eq!(got[0].to_entry(&want.tenant_id), want);
        // Truncated or foreign data is an error, not a panic.
        assert!(decode(&a.blob[..a.blob.len() - 1]).is_err());
        assert!(decode(&[2]).is_err());
        assert!(decode(&[]).is_err());
    }

    #[test]
    fn a_listing_keeps_the_newest_matches_of_a_large_batch() {
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let batch: Vec<_> = (0..1000)
            .map(|i| entry("a", t, if i % 2 == 0 { 200 } else { 409 }))
            .collect();
        let enc = encode_batch(&batch, 1).remove(0);
        let f = RequestFilter {
            limit: 3,
            status: Some(409),
            ..Default::default()
        };
        let mut l = Listing::new(&f);
        l.add(&batch[0].tenant_id, &enc.blob).unwrap();
        let ids: Vec<i64> = l.finish().iter().map(|e| e.id).collect();
        // Ids 1..=1000; the 409s are the even ids; newest first.
        assert_eq!(ids, [1000, 998, 996]);
    }

    #[test]
    fn trims_keep_the_newest_and_copy_bytes() {
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let batch: Vec<_> = (0..5)
            .map(|i| entry("a", t + time::Duration::seconds(i), 200))
            .collect();
        let enc = encode_batch(&batch, 10).remove(0);
        let two = keep_newest("a", &enc.blob, 2).unwrap().unwrap();
        assert_eq!((two.first_id, two.last_id, two.count), (13, 14, 2));
        assert_eq!(two.oldest_ms, ms(t + time::Duration::seconds(3)));
        assert_eq!(
            decode(&two.blob).unwrap()[1]
                .to_entry(&batch[0].tenant_id)
                .id,
            14
        );
        assert!(keep_newest("a", &enc.blob, 0).unwrap().is_none());
        assert_eq!(keep_newest("a", &enc.blob, 9).unwrap().unwrap(), enc);
        let old = trim("a", &enc.blob, |e| e.at() >= t + time::Duration::seconds(4))
            .unwrap()
            .unwrap();
        assert_eq!((old.first_id, old.count), (14, 1));
        assert!(trim("a", &enc.blob, |_| false).unwrap().is_none());
    }
}
