//! The encoding of the provisioning inspector's log (one row per tenant and recorded
//! batch; `cairn-store`'s `reqlog` module reads it back). It lives here, below the web
//! layer, so that the recorder can encode an entry straight from the request it
//! describes, borrowing every string, instead of building a [`RequestEntry`] of owned
//! strings for the store to encode later.
//!
//! Encoding, version 1: a version byte, then per entry, integers little-endian:
//! `id` i64, `at` i64 (Unix milliseconds: the precision the log always kept), `status`
//! u16, `latency_us` i64, the client's index in [`ALL_CLIENTS`] u8, then the strings
//! `token_id?`, `method`, `path`, `dialect?`, `user_agent?`, `scim_type?`, `error?`,
//! `resource_type?`, `resource_id?`, `request_body?`, `response_body?`, each as a u32
//! length and UTF-8 bytes (length `u32::MAX`: absent), and the notes as a u32 count and
//! that many strings.

use crate::clock::format_ts;
use crate::requests::{Client, RequestEntry, ALL_CLIENTS};
use time::OffsetDateTime;

pub const VERSION: u8 = 1;
pub const NONE: u32 = u32::MAX;

/// One tenant's part of a recorded batch, encoded, with the columns kept beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub tenant_id: String,
    pub first_id: i64,
    pub last_id: i64,
    pub oldest_ms: i64,
    pub newest_ms: i64,
    pub count: i64,
    pub blob: Vec<u8>,
    /// Where each entry's id is in `blob`, for [`Encoded::rebase`].
    pub id_at: Vec<usize>,
}

impl Encoded {
    pub fn new(tenant_id: String) -> Encoded {
        let mut blob = Vec::with_capacity(4096);
        blob.push(VERSION);
        Encoded {
            tenant_id,
            first_id: i64::MAX,
            last_id: i64::MIN,
            oldest_ms: i64::MAX,
            newest_ms: i64::MIN,
            count: 0,
            blob,
            id_at: Vec::new(),
        }
    }

    fn note(&mut self, id: i64, at_ms: i64) {
        self.first_id = self.first_id.min(id);
        self.last_id = self.last_id.max(id);
        self.oldest_ms = self.oldest_ms.min(at_ms);
        self.newest_ms = self.newest_ms.max(at_ms);
        self.count += 1;
    }

    /// Appends an encoded entry (`raw`, as [`encode_entry`] or a decoded entry's bytes
    /// left it), giving it the id `id`.
    pub fn push_raw(&mut self, id: i64, at_ms: i64, raw: &[u8]) {
        self.note(id, at_ms);
        let at = self.blob.len();
        self.id_at.push(at);
        self.blob.extend_from_slice(raw);
        if let Some(b) = self.blob.get_mut(at..at + 8) {
            b.copy_from_slice(&id.to_le_bytes());
        }
    }

    /// Adds `first_id` to every id: a batch is encoded with ids counted from 0, and given
    /// its real ids once the store has allocated them.
    pub fn rebase(&mut self, first_id: i64) {
        for &at in &self.id_at {
            let b = &mut self.blob[at..at + 8];
            let id = i64::from_le_bytes((&*b).try_into().expect("8 bytes")) + first_id;
            b.copy_from_slice(&id.to_le_bytes());
        }
        self.first_id += first_id;
        self.last_id += first_id;
    }

    pub fn oldest_at(&self) -> String {
        format_ts(from_ms(self.oldest_ms))
    }

    pub fn newest_at(&self) -> String {
        format_ts(from_ms(self.newest_ms))
    }
}

pub fn ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap_or(i64::MAX)
}

pub fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Longest string kept: entries are capped long before 4 GiB (bodies at 16 KiB, the
/// request line by the HTTP server); a longer string would be cut rather than corrupt
/// the batch.
const MAX_STR: usize = NONE as usize - 1;

fn put_str(b: &mut Vec<u8>, s: &str) {
    let s = &s.as_bytes()[..s.len().min(MAX_STR)];
    b.extend_from_slice(&(s.len() as u32).to_le_bytes());
    b.extend_from_slice(s);
}

fn put_opt(b: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.extend_from_slice(&NONE.to_le_bytes()),
    }
}

fn client_index(c: Client) -> u8 {
    ALL_CLIENTS.iter().position(|x| *x == c).unwrap_or(0) as u8
}

/// One entry's fields, borrowed from wherever they are (the request being recorded, or
/// a [`RequestEntry`]).
#[derive(Debug, Clone, Copy)]
pub struct EntryFields<'a> {
    pub at_ms: i64,
    pub status: u16,
    pub latency_us: i64,
    pub client: Client,
    pub token_id: Option<&'a str>,
    pub method: &'a str,
    /// The path below the tenant's base URL; with `query`, stored as `path?query`.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub dialect: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub scim_type: Option<&'a str>,
    pub error: Option<&'a str>,
    pub resource_type: Option<&'a str>,
    pub resource_id: Option<&'a str>,
    pub request_body: Option<&'a str>,
    pub response_body: Option<&'a str>,
    pub notes: &'a [String],
}

impl<'a> EntryFields<'a> {
    pub fn of(e: &'a RequestEntry) -> EntryFields<'a> {
        EntryFields {
            at_ms: ms(e.at),
            status: e.status,
            latency_us: e.latency_us,
            client: e.client,
            token_id: e.token_id.as_deref(),
            method: &e.method,
            path: &e.path,
            query: None,
            dialect: e.dialect.as_deref(),
            user_agent: e.user_agent.as_deref(),
            scim_type: e.scim_type.as_deref(),
            error: e.error.as_deref(),
            resource_type: e.resource_type.as_deref(),
            resource_id: e.resource_id.as_deref(),
            request_body: e.request_body.as_deref(),
            response_body: e.response_body.as_deref(),
            notes: &e.notes,
        }
    }
}

/// Appends one entry to `b`, with the id `id`.
pub fn encode_entry(b: &mut Vec<u8>, id: i64, e: &EntryFields<'_>) {
    b.extend_from_slice(&id.to_le_bytes());
    b.extend_from_slice(&e.at_ms.to_le_bytes());
    b.extend_from_slice(&e.status.to_le_bytes());
    b.extend_from_slice(&e.latency_us.to_le_bytes());
    b.push(client_index(e.client));
    put_opt(b, e.token_id);
    put_str(b, e.method);
    match e.query {
        // `path?query` without building the string first.
        Some(q) if e.path.len() + 1 + q.len() <= MAX_STR => {
            b.extend_from_slice(&((e.path.len() + 1 + q.len()) as u32).to_le_bytes());
            b.extend_from_slice(e.path.as_bytes());
            b.push(b'?');
            b.extend_from_slice(q.as_bytes());
        }
        // Longer than the format holds (the recorder clips both long before).
        _ => put_str(b, e.path),
    }
    put_opt(b, e.dialect);
    put_opt(b, e.user_agent);
    put_opt(b, e.scim_type);
    put_opt(b, e.error);
    put_opt(b, e.resource_type);
    put_opt(b, e.resource_id);
    put_opt(b, e.request_body);
    put_opt(b, e.response_body);
    b.extend_from_slice(&(e.notes.len() as u32).to_le_bytes());
    for n in e.notes {
        put_str(b, n);
    }
}

/// Encodes `entries` per tenant (a batch usually holds one), giving each tenant's
/// entries consecutive ids from `first_id` on, tenants in the order they first appear.
pub fn encode_batch(entries: &[RequestEntry], first_id: i64) -> Vec<Encoded> {
    let mut out: Vec<Encoded> = Vec::with_capacity(1);
    let mut scratch = Vec::new();
    for e in entries {
        let t = e.tenant_id.as_str();
        let g = match out.iter().position(|g| g.tenant_id == t) {
            Some(p) => &mut out[p],
            None => {
                out.push(Encoded::new(t.to_owned()));
                out.last_mut().expect("just pushed")
            }
        };
        let f = EntryFields::of(e);
        scratch.clear();
        encode_entry(&mut scratch, 0, &f);
        g.push_raw(g.count, f.at_ms, &scratch);
    }
    let mut next = first_id;
    for g in &mut out {
        g.rebase(next);
        next += g.count;
    }
    out
}
