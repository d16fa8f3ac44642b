//! HTTP/1.1 request framing in front of hyper's server connection.
//!
//! Identity providers send request targets that RFC 3986 does not allow: Microsoft Entra
//! ID's `GET /Users?filter=userName+eq+"alice%40example.com"` carries raw double quotes.
//! httparse (hyper's head parser) accepts them, but the `http` crate's `Uri` refuses `"`,
//! `<` and `>` in a query (and `<`, `>`, `` ` `` in a path), and hyper then answers 400
//! with an empty body before any handler runs. Neither hyper 1.x (no URI option on
//! `server::conn::http1::Builder`) nor httparse (it already accepts these bytes) has a
//! knob for it, so [`Rewriter`] works under hyper, on the byte stream: it finds each
//! request head with httparse and hyper's settings, percent-encodes the bytes of
//! [`LIBERAL`] in the request target (as WHATWG URL parsing does for browsers), and follows
//! the body by hyper's own rules (Content-Length, or chunked) so that it knows where the
//! next request starts on a keep-alive connection. Only request-target bytes change;
//! bodies pass through untouched, and a request whose head needs no change is not copied.
//!
//! It also checks each head the way hyper will (method, target, version, header count and
//! size, Content-Length and Transfer-Encoding), so a request hyper would refuse with an
//! empty 400/414/431 is replaced by [`STAND_IN`] and the server answers it with a body
//! that says why ([`Rewriter::take_refusal`]); the connection then reads nothing more.
//! [`io::RewriteIo`] is the adapter between a connection and hyper.

pub mod io;

use std::mem::MaybeUninit;
use std::ops::Range;

/// Bytes read in a request target as if percent-encoded: those RFC 3986 allows nowhere
/// in a URI (§2; appendix A), apart from space and controls (which end or break the
/// request line) and `%` and `#` (which keep their meaning).
pub const LIBERAL: &[u8] = b"\"<>{}|\\^`";

/// [`LIBERAL`] as a table (one load per byte of a target).
const IS_LIBERAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < LIBERAL.len() {
        t[LIBERAL[i] as usize] = true;
        i += 1;
    }
    t
};

/// hyper's limits on a request head (`proto::h1::role`): header fields, target length,
/// and the largest Content-Length (`body::length::MAX_LEN`).
const MAX_HEADERS: usize = 100;
const MAX_URI_LEN: usize = u16::MAX as usize - 1;
const MAX_CONTENT_LENGTH: u64 = u64::MAX - 2;

/// The request passed on in place of a refused one: it has no body and closes the
/// connection, and the server answers it with the [`Refusal`].
pub const STAND_IN: &[u8] = b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n";

/// Why a request head was refused, and the status to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
}

impl Refusal {
    fn new(status: u16, reason: impl Into<String>) -> Self {
        Refusal {
            status,
            reason: reason.into(),
        }
    }
}

/// Where the rewriter is in the byte stream of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before or inside a request head.
    Head,
    /// Inside a body with this many bytes to go (never 0).
    Length(u64),
    /// Inside a chunked body; the number is the chunk size being read or what is left of
    /// the chunk's data.
    Chunked(Chunk, u64),
    /// A chunked body broke a rule hyper also enforces: hyper fails that request and
    /// closes the connection, so what follows is passed through untouched.
    Lost,
    /// A head was refused: nothing more is passed on.
    Refused,
}

/// The states of hyper's chunked decoder (`proto::h1::decode::ChunkedState`), with the
/// same transitions, so both agree on where a chunked body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
}

/// How a head's body is framed.
enum Framing {
    Length(u64),
    Chunked,
}

/// What one look at the bytes of a head found.
enum Examined {
    /// The head is not complete yet.
    Partial,
    /// A head of `len` bytes; `rewritten` when `out` holds its percent-encoded form.
    Done {
        len: usize,
        framing: Framing,
        rewritten: bool,
    },
    Refused(Refusal),
}

/// What [`Rewriter::step`] did with the start of its input.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// These input bytes go on unchanged.
    Pass(usize),
    /// These input bytes were consumed and nothing goes on (yet): part of a head held
    /// until it is complete, or input after a refusal.
    Take(usize),
    /// These input bytes were consumed and the slice goes on in their place (and in
    /// place of the bytes held before them): a rewritten head, or [`STAND_IN`].
    Head(usize, &'a [u8]),
}

/// The request-target rewriter of one connection (see the crate documentation).
#[derive(Debug)]
pub struct Rewriter {
    state: State,
    /// The start of a head that is not complete yet (at most `limit` bytes).
    held: Vec<u8>,
    /// The head passed on in place of the input's.
    out: Vec<u8>,
    /// The largest head passed on: hyper's read buffer (`max_buf_size`), which must hold
    /// a whole head.
    limit: usize,
    /// Heads passed on so far (the stand-in of a refused one included).
    heads: u64,
    refusal: Option<(u64, Refusal)>,
}

impl Rewriter {
    /// A rewriter for a new connection whose HTTP layer takes heads of up to `limit`
    /// bytes.
    pub fn new(limit: usize) -> Self {
        Rewriter {
            state: State::Head,
            held: Vec::new(),
            out: Vec::new(),
            limit: limit.max(STAND_IN.len()),
            heads: 0,
            refusal: None,
        }
    }

    /// The request heads passed on so far.
    pub fn heads(&self) -> u64 {
        self.heads
    }

    /// The refusal of a head, once: the index (from 0) of the request whose head was
    /// replaced by [`STAND_IN`], and why.
    pub fn take_refusal(&mut self) -> Option<(u64, Refusal)> {
        self.refusal.take()
    }

    /// Whether the rewriter is between requests (nothing held, no body under way).
    pub fn at_boundary(&self) -> bool {
        self.state == State::Head && self.held.is_empty()
    }

    /// Consumes the start of `input` (at least one byte of a non-empty input).
    pub fn step<'a>(&'a mut self, input: &[u8]) -> Step<'a> {
        if input.is_empty() {
            return Step::Take(0);
        }
        match self.state {
            State::Lost => Step::Pass(input.len()),
            State::Refused => Step::Take(input.len()),
            State::Length(rest) => {
                let n = rest.min(input.len() as u64);
                self.state = match rest - n {
                    0 => State::Head,
                    left => State::Length(left),
                };
                Step::Pass(n as usize)
            }
            State::Chunked(chunk, size) => Step::Pass(self.chunked(chunk, size, input)),
            State::Head => self.head(input),
        }
    }

    /// Runs the rewriter over `region`, bytes just read, in place: returns how many bytes
    /// at the start of `region` go on; what must follow them (when a rewritten head is
    /// longer than the space it came from) is appended to `spill`.
    pub fn rewrite_in_place(&mut self, region: &mut [u8], spill: &mut Vec<u8>) -> usize {
        let (mut r, mut w) = (0, 0);
        let mut spilling = false;
        while r < region.len() {
            match self.step(&region[r..]) {
                Step::Pass(n) => {
                    if spilling {
                        spill.extend_from_slice(&region[r..r + n]);
                    } else if w != r {
                        region.copy_within(r..r + n, w);
                        w += n;
                    } else {
                        w += n;
                    }
                    r += n;
                }
                Step::Take(n) => r += n,
                Step::Head(n, bytes) => {
                    r += n;
                    if !spilling && bytes.len() <= r - w {
                        region[w..w + bytes.len()].copy_from_slice(bytes);
                        w += bytes.len();
                    } else {
                        spilling = true;
                        spill.extend_from_slice(bytes);
                    }
                }
            }
        }
        w
    }

    fn refuse(&mut self, consumed: usize, refusal: Refusal) -> Step<'_> {
        self.refusal = Some((self.heads, refusal));
        self.heads += 1;
        self.state = State::Refused;
        self.held = Vec::new();
        Step::Head(consumed, STAND_IN)
    }

    fn begin_body(&mut self, framing: Framing) {
        self.heads += 1;
        self.state = match framing {
            Framing::Length(0) => State::Head,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunk::Start, 0),
        };
    }

    fn head<'a>(&'a mut self, input: &[u8]) -> Step<'a> {
        if self.held.is_empty() {
            // The usual case: the whole head arrived in one read.
            return match examine(input, &mut self.out, self.limit) {
                Examined::Partial if input.len() >= self.limit => {
                    let limit = self.limit;
                    self.refuse(input.len(), too_large(limit))
                }
                Examined::Partial => {
                    self.held.extend_from_slice(input);
                    Step::Take(input.len())
                }
                Examined::Done {
                    len,
                    framing,
                    rewritten,
                } => {
                    self.begin_body(framing);
                    if rewritten {
                        Step::Head(len, &self.out)
                    } else {
                        Step::Pass(len)
                    }
                }
                Examined::Refused(r) => self.refuse(input.len(), r),
            };
        }
        let before = self.held.len();
        let take = input.len().min(self.limit.saturating_sub(before).max(1));
        self.held.extend_from_slice(&input[..take]);
        match examine(&self.held, &mut self.out, self.limit) {
            Examined::Partial if self.held.len() >= self.limit => {
                let limit = self.limit;
                self.refuse(take, too_large(limit))
            }
            Examined::Partial => Step::Take(take),
            // A head is complete only once its final line ending is in: the bytes held
            // before were incomplete, so the head ends in this input.
            Examined::Done {
                len,
                framing,
                rewritten,
            } if len > before => {
                self.begin_body(framing);
                if !rewritten {
                    self.out.clear();
                    self.out.extend_from_slice(&self.held[..len]);
                }
                self.held.clear();
                Step::Head(len - before, &self.out)
            }
            Examined::Done { .. } => self.refuse(
                take,
                Refusal::new(400, "the request head could not be delimited"),
            ),
            Examined::Refused(r) => self.refuse(take, r),
        }
    }

    /// Follows a chunked body as hyper's decoder does; returns the bytes consumed (up to
    /// the body's last byte, or all of `input`).
    fn chunked(&mut self, mut chunk: Chunk, mut size: u64, input: &[u8]) -> usize {
        let mut i = 0;
        while i < input.len() {
            if chunk == Chunk::Data {
                let n = size.min((input.len() - i) as u64);
                size -= n;
                i += n as usize;
                if size == 0 {
                    chunk = Chunk::DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            let next = match (chunk, b) {
                (Chunk::Start | Chunk::Size, b) if b.is_ascii_hexdigit() => {
                    let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
                    match size.checked_mul(16).and_then(|s| s.checked_add(digit)) {
                        Some(s) => {
                            size = s;
                            Some(Chunk::Size)
                        }
                        None => None,
                    }
                }
                (Chunk::Size | Chunk::SizeLws, b'\t' | b' ') => Some(Chunk::SizeLws),
                (Chunk::Size | Chunk::SizeLws, b';') => Some(Chunk::Extension),
                (Chunk::Size | Chunk::SizeLws | Chunk::Extension, b'\r') => Some(Chunk::SizeLf),
                (Chunk::Extension, b'\n') => None,
                (Chunk::Extension, _) => Some(Chunk::Extension),
                (Chunk::SizeLf, b'\n') if size == 0 => Some(Chunk::EndCr),
                (Chunk::SizeLf, b'\n') => Some(Chunk::Data),
                (Chunk::DataCr, b'\r') => Some(Chunk::DataLf),
                (Chunk::DataLf, b'\n') => Some(Chunk::Start),
                (Chunk::EndCr, b'\r') => Some(Chunk::EndLf),
                (Chunk::Trailer, b'\r') => Some(Chunk::TrailerLf),
                (Chunk::EndCr | Chunk::Trailer, _) => Some(Chunk::Trailer),
                (Chunk::TrailerLf, b'\n') => Some(Chunk::EndCr),
                (Chunk::EndLf, b'\n') => {
                    self.state = State::Head;
                    return i;
                }
                _ => None,
            };
            match next {
                Some(c) => chunk = c,
                None => {
                    self.state = State::Lost;
                    return input.len();
                }
            }
        }
        self.state = State::Chunked(chunk, size);
        input.len()
    }
}

fn too_large(limit: usize) -> Refusal {
    Refusal::new(
        431,
        format!("the request head (request line and header fields) is larger than {limit} bytes"),
    )
}

/// Offsets of `part` (a slice of `whole`) in `whole`.
fn range_in(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    start..start + part.len()
}

/// Parses a head as hyper does and, when its target has bytes of [`LIBERAL`], writes the
/// head with them percent-encoded to `out`.
fn examine(buf: &[u8], out: &mut Vec<u8>, limit: usize) -> Examined {
    let mut headers = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Partial) => return Examined::Partial,
        // A head larger than the HTTP layer's buffer is refused whether it arrived in one
        // read or in several (hyper could not hold it either).
        Ok(httparse::Status::Complete(len)) if len > limit => {
            return Examined::Refused(too_large(limit))
        }
        Ok(httparse::Status::Complete(len)) => len,
        Err(e) => return Examined::Refused(parse_refusal(e, req.method.is_none())),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Examined::Refused(Refusal::new(400, "malformed request line"));
    };
    if http::Method::from_bytes(method.as_bytes()).is_err() {
        return Examined::Refused(Refusal::new(400, "the request method is not valid"));
    }
    let target_range = range_in(buf, target.as_bytes());
    let liberal = target.bytes().filter(|&b| IS_LIBERAL[b as usize]).count();
    if target.len() + 2 * liberal > MAX_URI_LEN {
        return Examined::Refused(Refusal::new(
            414,
            format!("the request target is longer than {MAX_URI_LEN} bytes"),
        ));
    }
    let framing = match framing(req.headers, version == 1) {
        Ok(f) => f,
        Err(r) => return Examined::Refused(r),
    };
    let rewritten = liberal > 0;
    let valid = if rewritten {
        out.clear();
        out.reserve(len + 2 * liberal);
        out.extend_from_slice(&buf[..target_range.start]);
        for &b in &buf[target_range.clone()] {
            if IS_LIBERAL[b as usize] {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            } else {
                out.push(b);
            }
        }
        let end = out.len();
        out.extend_from_slice(&buf[target_range.end..len]);
        if out.len() > limit {
            return Examined::Refused(Refusal::new(
                431,
                format!(
                    "the request head is larger than {limit} bytes once its target is \
                     percent-encoded"
                ),
            ));
        }
        uri_check(&out[target_range.start..end])
    } else {
        uri_check(target.as_bytes())
    };
    if let Err(e) = valid {
        return Examined::Refused(Refusal::new(
            400,
            format!("the request target is not a valid URI ({e})"),
        ));
    }
    Examined::Done {
        len,
        framing,
        rewritten,
    }
}

/// Bytes an origin-form target may hold that the `http` crate (1.x) accepts anywhere in
/// a path or query: visible ASCII but [`LIBERAL`] (which go percent-encoded) and `#`.
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        t[b] = !IS_LIBERAL[b] && b != b'#' as usize;
        b += 1;
    }
    t
};

/// Whether hyper will accept `target` as a `Uri`. Most targets are `/…` made of
/// [`PLAIN`] bytes, which it always accepts: they skip the parse (an allocation and a
/// copy), the rest are parsed as hyper will (`tests::plain_targets_are_uris` holds the
/// shortcut to the `http` version in use).
fn uri_check(target: &[u8]) -> Result<(), http::uri::InvalidUri> {
    if target.first() == Some(&b'/')
        && target.len() <= MAX_URI_LEN
        && target.iter().all(|&b| PLAIN[b as usize])
    {
        return Ok(());
    }
    http::Uri::try_from(target).map(drop)
}

fn parse_refusal(e: httparse::Error, in_method: bool) -> Refusal {
    match e {
        httparse::Error::Token if in_method => {
            Refusal::new(400, "the request method is not a valid token")
        }
        httparse::Error::Token => Refusal::new(
            400,
            "the request target contains a byte that is not allowed (a control character, \
             DEL or a second space)",
        ),
        httparse::Error::Version => Refusal::new(
            400,
            "malformed request line, or an HTTP version other than HTTP/1.0 and HTTP/1.1",
        ),
        httparse::Error::HeaderName => {
            Refusal::new(400, "a header field name is not a valid token")
        }
        httparse::Error::HeaderValue => Refusal::new(
            400,
            "a header field value contains a byte that is not allowed",
        ),
        httparse::Error::NewLine => Refusal::new(400, "malformed line ending in the request head"),
        httparse::Error::TooManyHeaders => Refusal::new(
            431,
            format!("the request has more than {MAX_HEADERS} header fields"),
        ),
        httparse::Error::Status => Refusal::new(400, "malformed request head"),
    }
}

/// The body's framing by hyper's rules (`Server::parse`, after RFC 9112 §6.3): a final
/// `chunked` Transfer-Encoding wins over Content-Length; differing or invalid
/// Content-Lengths, another final transfer coding, or Transfer-Encoding in HTTP/1.0
/// are refused.
fn framing(headers: &[httparse::Header<'_>], http11: bool) -> Result<Framing, Refusal> {
    let (mut is_te, mut chunked, mut is_cl) = (false, false, false);
    let mut length: Option<u64> = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return Err(Refusal::new(
                    400,
                    "Transfer-Encoding is not allowed in an HTTP/1.0 request",
                ));
            }
            is_te = true;
            if is_cl {
                length = None;
            }
            chunked = ends_in_chunked(h.value);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            is_cl = true;
            if is_te {
                continue;
            }
            let Some(n) = digits(h.value) else {
                return Err(Refusal::new(400, "the Content-Length is not a number"));
            };
            match length {
                Some(prev) if prev != n => {
                    return Err(Refusal::new(
                        400,
                        "the request has Content-Length fields that differ",
                    ))
                }
                Some(_) => {}
                None if n > MAX_CONTENT_LENGTH => {
                    return Err(Refusal::new(400, "the Content-Length is too large"))
                }
                None => length = Some(n),
            }
        }
    }
    if is_te && !chunked {
        return Err(Refusal::new(
            400,
            "the request's Transfer-Encoding does not end in chunked (RFC 9112 §6.3)",
        ));
    }
    Ok(if chunked {
        Framing::Chunked
    } else {
        Framing::Length(length.unwrap_or(0))
    })
}

/// hyper's `headers::is_chunked_`: the value is visible ASCII and its last coding is
/// `chunked`.
fn ends_in_chunked(value: &[u8]) -> bool {
    let visible = value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
    visible
        && value
            .rsplit(|&b| b == b',')
            .next()
            .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// hyper's `headers::from_digits`: ASCII digits only, no sign, no overflow.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| match b {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(b - b'0')),
        _ => None,
    })
}

/// The whole of `input` through a new rewriter with heads of up to `limit` bytes, fed in
/// pieces that end at `cuts` (offsets into `input`), as reads would deliver it; returns
/// what goes on, and the rewriter.
pub fn rewrite_all(input: &[u8], cuts: &[usize], limit: usize) -> (Vec<u8>, Rewriter) {
    let mut rw = Rewriter::new(limit);
    let mut out = Vec::new();
    let mut start = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    ends.sort_unstable();
    ends.push(input.len());
    for end in ends {
        if end <= start {
            continue;
        }
        let mut region = input[start..end].to_vec();
        let mut spill = Vec::new();
        let kept = rw.rewrite_in_place(&mut region, &mut spill);
        out.extend_from_slice(&region[..kept]);
        out.extend_from_slice(&spill);
        start = end;
    }
    (out, rw)
}

#[cfg(test)]
mod tests;
