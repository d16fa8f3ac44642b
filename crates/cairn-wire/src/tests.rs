use super::*;
use proptest::prelude::*;

const LIMIT: usize = 64 << 10;

/// Entra's matching query, as reported on the wire: `+` for spaces, `@` encoded, quotes raw.
const ENTRA: &[u8] =
    b"GET /scim/v2/t/Users?filter=userName+eq+\"alice%40example.com\" HTTP/1.1\r\n\
Host: cairn.example\r\nAuthorization: Bearer x\r\nAccept: application/scim+json\r\n\r\n";
const ENTRA_ENCODED: &[u8] =
    b"GET /scim/v2/t/Users?filter=userName+eq+%22alice%40example.com%22 HTTP/1.1\r\n\
Host: cairn.example\r\nAuthorization: Bearer x\r\nAccept: application/scim+json\r\n\r\n";

fn all(input: &[u8]) -> Vec<u8> {
    rewrite_all(input, &[], LIMIT).0
}

/// The output for every way of cutting `input` in two and in three pieces is the same.
fn same_for_every_cut(input: &[u8]) -> Vec<u8> {
    let whole = all(input);
    for a in 0..=input.len() {
        assert_eq!(rewrite_all(input, &[a], LIMIT).0, whole, "cut at {a}");
    }
    for a in (0..=input.len()).step_by(7) {
        for b in (a..=input.len()).step_by(5) {
            assert_eq!(rewrite_all(input, &[a, b], LIMIT).0, whole, "cuts {a} {b}");
        }
    }
    whole
}

#[test]
fn entras_raw_quotes_are_percent_encoded() {
    assert!(http::Uri::try_from("/Users?filter=userName+eq+\"a\"").is_err());
    assert_eq!(same_for_every_cut(ENTRA), ENTRA_ENCODED);
}

#[test]
fn a_clean_head_is_passed_on_in_place() {
    let head = b"GET /scim/v2/t/Users?filter=userName%20eq%20%22a%22 HTTP/1.1\r\nHost: h\r\n\r\n";
    let mut rw = Rewriter::new(LIMIT);
    assert_eq!(rw.step(head), Step::Pass(head.len()));
    assert!(rw.at_boundary());
    assert_eq!(rw.heads(), 1);
}

#[test]
fn every_liberal_byte_is_encoded_and_the_result_is_a_uri() {
    for b in 0x21u8..0x7f {
        if b == b'#' {
            continue;
        }
        let mut head = b"GET /p".to_vec();
        head.extend_from_slice(&[b, b'?', b'q', b'=', b]);
        head.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        let out = all(&head);
        let target = &out[4..out.len() - 13];
        assert!(
            http::Uri::try_from(target).is_ok(),
            "byte {:?}: {:?}",
            b as char,
            String::from_utf8_lossy(target)
        );
        assert_eq!(
            LIBERAL.contains(&b),
            target.len() == head.len() - 17 + 4,
            "byte {:?} rewritten iff liberal",
            b as char
        );
    }
}

#[test]
fn bodies_pass_untouched_and_the_next_head_is_found() {
    // A body that looks like a request with raw quotes, then Entra's request again.
    let body = b"GET /x?\"y\" HTTP/1.1\r\n\r\n";
    let mut input = format!(
        "POST /scim/v2/t/Users HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    input.extend_from_slice(body);
    input.extend_from_slice(ENTRA);
    let mut expected = input[..input.len() - ENTRA.len()].to_vec();
    expected.extend_from_slice(ENTRA_ENCODED);
    assert_eq!(same_for_every_cut(&input), expected);
}

#[test]
fn chunked_bodies_with_extensions_and_trailers_are_followed() {
    let mut input = b"POST /Users?a=\"1\" HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
6;ext=\"v\"\r\nGET /\"\r\n17 \t \r\nGET /x?\"y\" HTTP/1.1\r\n\r\n\r\n0\r\nX-T: \"t\"\r\n\r\n"
        .to_vec();
    input.extend_from_slice(ENTRA);
    let out = same_for_every_cut(&input);
    let expected = [
        &b"POST /Users?a=%221%22 HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"[..],
        &input[input.iter().position(|&b| b == b'6').unwrap()..input.len() - ENTRA.len()],
        ENTRA_ENCODED,
    ]
    .concat();
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&expected)
    );
}

#[test]
fn transfer_encoding_wins_over_content_length_as_in_hyper() {
    let input = b"POST / HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n\
0\r\n\r\nGET /?\"a\" HTTP/1.1\r\n\r\n";
    let out = same_for_every_cut(input);
    assert!(out.ends_with(b"GET /?%22a%22 HTTP/1.1\r\n\r\n"));
}

fn refusal_of(input: &[u8]) -> (Vec<u8>, Option<(u64, Refusal)>) {
    let (out, mut rw) = rewrite_all(input, &[], LIMIT);
    (out, rw.take_refusal())
}

#[test]
fn what_hyper_would_refuse_is_replaced_by_the_stand_in_with_a_reason() {
    let ok = b"GET / HTTP/1.1\r\n\r\n";
    let cases: &[(&[u8], u16, &str)] = &[
        (b"GET /a\x01 HTTP/1.1\r\n\r\n", 400, "target"),
        (b"GET /\xff\xfe HTTP/1.1\r\n\r\n", 400, "target"),
        (b"GET /\xc3\xa9#\xff HTTP/1.1\r\n\r\n", 400, "target"),
        (b"G(T / HTTP/1.1\r\n\r\n", 400, "method"),
        (b"GET / HTTP/2.0\r\n\r\n", 400, "version"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "version"),
        (
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            400,
            "header field name",
        ),
        (
            b"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
            400,
            "Content-Length",
        ),
        (
            b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            400,
            "Content-Length",
        ),
        (
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            400,
            "differ",
        ),
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "HTTP/1.0",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            400,
            "chunked",
        ),
    ];
    for (bad, status, words) in cases {
        let input = [&ok[..], bad, ok].concat();
        let (out, refusal) = refusal_of(&input);
        let (n, r) =
            refusal.unwrap_or_else(|| panic!("{:?} not refused", String::from_utf8_lossy(bad)));
        assert_eq!(
            (n, r.status),
            (1, *status),
            "{:?}: {}",
            String::from_utf8_lossy(bad),
            r.reason
        );
        assert!(
            r.reason.contains(words),
            "{:?}: {}",
            String::from_utf8_lossy(bad),
            r.reason
        );
        // The request before goes on, the stand-in replaces the bad one, nothing after.
        assert_eq!(out, [&ok[..], STAND_IN].concat());
    }
}

#[test]
fn heads_beyond_the_limit_and_header_floods_are_refused_with_431() {
    let big = [&b"GET / HTTP/1.1\r\nX: "[..], &[b'a'; 200], b"\r\n\r\n"].concat();
    // Whether the head arrives in pieces or whole (found by the request_target fuzz
    // target: a whole head over the limit used to pass).
    for cuts in [&[10, 50, 100][..], &[]] {
        let (out, mut rw) = rewrite_all(&big, cuts, 128);
        assert_eq!(out, STAND_IN, "{cuts:?}");
        assert_eq!(rw.take_refusal().unwrap().1.status, 431);
    }
    // Growing past the limit by percent-encoding alone is refused too.
    let quotes = [&b"GET /?"[..], &[b'"'; 60], b" HTTP/1.1\r\n\r\n"].concat();
    assert!(quotes.len() < 128);
    let (out, mut rw) = rewrite_all(&quotes, &[], 128);
    assert_eq!(
        (out.as_slice(), rw.take_refusal().unwrap().1.status),
        (STAND_IN, 431)
    );
    let mut flood = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..101 {
        flood.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    flood.extend_from_slice(b"\r\n");
    assert_eq!(refusal_of(&flood).1.unwrap().1.status, 431);
}

#[test]
fn a_broken_chunked_body_stops_rewriting_for_good() {
    let input =
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /?\"a\" HTTP/1.1\r\n\r\n";
    let (out, mut rw) = rewrite_all(input, &[], LIMIT);
    assert_eq!(out, input, "passed through untouched");
    assert!(rw.take_refusal().is_none());
}

/// One request of a generated sequence, and what must go on for it.
#[derive(Debug, Clone)]
struct Req {
    input: Vec<u8>,
    expected: Vec<u8>,
}

fn target_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => prop::sample::select(b"abcXYZ019-._~!$&'()*+,;=:@/?%[]".to_vec()),
        2 => prop::sample::select(LIBERAL.to_vec()),
    ]
}

fn request() -> impl Strategy<Value = Req> {
    (
        prop::sample::select(vec!["GET", "POST", "PATCH", "PUT", "DELETE"]),
        prop::collection::vec(target_byte(), 0..40),
        // Bodies that may look like heads with raw quotes.
        prop::collection::vec(
            prop_oneof![
                any::<u8>(),
                prop::sample::select(b"\r\n\" GET/HTTP1.".to_vec())
            ],
            0..120,
        ),
        0u8..3,
        prop::collection::vec(1usize..40, 0..5),
        any::<bool>(),
    )
        .prop_map(|(method, target, body, framing, chunks, ext)| {
            let mut encoded = Vec::new();
            for &b in &target {
                if LIBERAL.contains(&b) {
                    encoded.extend_from_slice(format!("%{b:02X}").as_bytes());
                } else {
                    encoded.push(b);
                }
            }
            let line = |t: &[u8]| {
                [
                    format!("{method} /").as_bytes(),
                    t,
                    b" HTTP/1.1\r\nHost: h\r\n",
                ]
                .concat()
            };
            let (framing_head, wire_body) = match framing {
                0 if body.is_empty() => (Vec::new(), Vec::new()),
                0 | 1 => (
                    format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes(),
                    body.clone(),
                ),
                _ => {
                    let mut wire = Vec::new();
                    let mut rest = &body[..];
                    for &c in chunks.iter().chain(std::iter::once(&usize::MAX)) {
                        let n = c.min(rest.len());
                        if n == 0 {
                            break;
                        }
                        wire.extend_from_slice(format!("{n:x}").as_bytes());
                        if ext {
                            wire.extend_from_slice(b" ;name=\"GET /\"");
                        }
                        wire.extend_from_slice(b"\r\n");
                        wire.extend_from_slice(&rest[..n]);
                        wire.extend_from_slice(b"\r\n");
                        rest = &rest[n..];
                    }
                    wire.extend_from_slice(b"0\r\n");
                    if ext {
                        wire.extend_from_slice(b"X-Trailer: \"GET /\"\r\n");
                    }
                    wire.extend_from_slice(b"\r\n");
                    (b"Transfer-Encoding: chunked\r\n\r\n".to_vec(), wire)
                }
            };
            let end = if framing_head.is_empty() {
                b"\r\n".to_vec()
            } else {
                framing_head
            };
            Req {
                input: [line(&target), end.clone(), wire_body.clone()].concat(),
                expected: [line(&encoded), end, wire_body].concat(),
            }
        })
}

proptest! {
    /// The shortcut of `uri_check`: every `/…` target of plain bytes is a URI for the
    /// `http` crate in use, and so is every target after rewriting.
    #[test]
    fn plain_targets_are_uris(rest in prop::collection::vec(0x21u8..0x7f, 0..200)) {
        let target = [&b"/"[..], &rest].concat();
        if target.iter().all(|&b| PLAIN[b as usize]) {
            prop_assert!(http::Uri::try_from(target.as_slice()).is_ok());
        }
        let head = [&b"GET "[..], &target, b" HTTP/1.1\r\n\r\n"].concat();
        let (out, mut rw) = rewrite_all(&head, &[], LIMIT);
        prop_assert!(rw.take_refusal().is_none(), "{:?}", String::from_utf8_lossy(&head));
        prop_assert!(http::Uri::try_from(&out[4..out.len() - 13]).is_ok());
    }

    /// Sequences of requests on one connection, cut anywhere: every head's target is
    /// encoded, every body (which may look like a head) goes on untouched, and the
    /// rewriter ends between requests having counted each head.
    #[test]
    fn keep_alive_sequences_keep_their_boundaries(
        reqs in prop::collection::vec(request(), 1..6),
        cuts in prop::collection::vec(0usize..2000, 0..8),
    ) {
        let input: Vec<u8> = reqs.iter().flat_map(|r| r.input.clone()).collect();
        let expected: Vec<u8> = reqs.iter().flat_map(|r| r.expected.clone()).collect();
        let (out, mut rw) = rewrite_all(&input, &cuts, LIMIT);
        prop_assert!(rw.take_refusal().is_none());
        prop_assert_eq!(&out, &expected);
        prop_assert!(rw.at_boundary());
        prop_assert_eq!(rw.heads(), reqs.len() as u64);
        // Idempotent: what goes on needs no more rewriting and frames the same.
        let (again, rw2) = rewrite_all(&out, &[], LIMIT);
        prop_assert_eq!(again, out);
        prop_assert_eq!(rw2.heads(), reqs.len() as u64);
    }

    /// Arbitrary bytes never panic, and how they are cut into reads never changes what
    /// goes on.
    #[test]
    fn arbitrary_bytes_frame_the_same_however_cut(
        input in prop::collection::vec(any::<u8>(), 0..600),
        cuts in prop::collection::vec(0usize..600, 0..8),
    ) {
        let (whole, _) = rewrite_all(&input, &[], 256);
        let (cut, _) = rewrite_all(&input, &cuts, 256);
        prop_assert_eq!(whole, cut);
    }
}
