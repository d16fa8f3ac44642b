//! hyper itself as the oracle: pipelined requests with raw quotes in their targets and
//! bodies (Content-Length or chunked) that look like requests, written to a hyper HTTP/1
//! server through `RewriteIo` in arbitrary pieces, must each reach the service with the
//! target percent-encoded and the body intact; a head hyper would refuse is answered by
//! the service with its reason.

use cairn_wire::io::RewriteIo;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: usize = 64 << 10;

/// Serves `wire` (written in pieces ending at `cuts`) and returns the bodies of the
/// first `want` responses: `METHOD URI BODY-HEX` per request, or `REFUSED STATUS REASON`.
async fn serve(wire: Vec<u8>, cuts: Vec<usize>, want: usize) -> Vec<String> {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let (io, refusals) = RewriteIo::new(server, LIMIT);
    let seen = Arc::new(AtomicU64::new(0));
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let n = seen.fetch_add(1, Ordering::Relaxed);
        let refused = refusals.of(n).cloned();
        async move {
            let text = match refused {
                Some(r) => format!("REFUSED {} {}", r.status, r.reason),
                None => {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await?.to_bytes();
                    let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
                    format!("{} {} {hex}", parts.method, parts.uri)
                }
            };
            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(text))))
        }
    });
    let conn = tokio::spawn(async move {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.max_buf_size(LIMIT);
        let _ = b.serve_connection(TokioIo::new(io), service).await;
    });
    let writer = tokio::spawn(async move {
        let mut start = 0;
        let mut ends: Vec<usize> = cuts.into_iter().map(|c| c.min(wire.len())).collect();
        ends.sort_unstable();
        ends.push(wire.len());
        for end in ends {
            if end > start {
                if client.write_all(&wire[start..end]).await.is_err() {
                    break;
                }
                let _ = client.flush().await;
                tokio::task::yield_now().await;
                start = end;
            }
        }
        client
    });
    // Read the responses off the other half once everything is written.
    let mut client = writer.await.unwrap();
    let mut got = Vec::new();
    let mut buf = Vec::new();
    while got.len() < want {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), client.read(&mut chunk))
            .await
            .expect("responses")
            .unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .split("content-length: ")
                .nth(1)
                .and_then(|s| s.split("\r\n").next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if buf.len() < end + 4 + len {
                break;
            }
            got.push(String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned());
            buf.drain(..end + 4 + len);
        }
    }
    drop(client);
    let _ = conn.await;
    got
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn entra_requests_around_a_post_on_one_connection() {
    let body = br#"{"userName":"GET /x?\"y\" HTTP/1.1"}"#;
    let wire = [
        &b"GET /Users?filter=userName+eq+\"alice%40example.com\" HTTP/1.1\r\nHost: h\r\n\r\n"[..],
        format!("POST /Users HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
        body,
        b"POST /Groups?x=<{|}> HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab\"\r\n0\r\n\r\n",
        b"GET /Groups?filter=displayName+eq+\"a\\b^`\" HTTP/1.1\r\n\r\n",
    ]
    .concat();
    let got = rt().block_on(serve(wire, vec![5, 80, 81, 150, 200], 4));
    assert_eq!(
        got,
        [
            "GET /Users?filter=userName+eq+%22alice%40example.com%22 ".to_owned(),
            format!("POST /Users {}", hex(body)),
            format!("POST /Groups?x=%3C%7B%7C%7D%3E {}", hex(b"ab\"")),
            "GET /Groups?filter=displayName+eq+%22a%5Cb%5E%60%22 ".to_owned(),
        ]
    );
}

#[test]
fn a_refused_head_is_answered_with_its_reason_after_the_requests_before_it() {
    let wire = b"GET /a?\"1\" HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nGET /c HTTP/1.1\r\n\r\n".to_vec();
    let got = rt().block_on(serve(wire, vec![3, 30], 3));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], "GET /a?%221%22 ");
    assert!(got[1].starts_with("REFUSED 400 "), "{got:?}");
    assert!(got[1].contains("Content-Length"), "{got:?}");
}

/// A generated request: its bytes on the wire and what the service must report.
fn request() -> impl Strategy<Value = (Vec<u8>, String)> {
    (
        prop::collection::vec(
            prop::sample::select(b"ab09%+=&/?\"<>{}|\\^`".to_vec()),
            0..30,
        ),
        prop::collection::vec(
            prop_oneof![any::<u8>(), prop::sample::select(b"\r\n\" GET/".to_vec())],
            0..200,
        ),
        any::<bool>(),
        1usize..50,
    )
        .prop_map(|(target, body, chunked, chunk)| {
            let encoded: String = target
                .iter()
                .map(|&b| {
                    if cairn_wire::LIBERAL.contains(&b) {
                        format!("%{b:02X}")
                    } else {
                        (b as char).to_string()
                    }
                })
                .collect();
            let mut wire = [&b"PUT /"[..], &target, b" HTTP/1.1\r\n"].concat();
            if chunked {
                wire.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for c in body.chunks(chunk) {
                    wire.extend_from_slice(format!("{:X};e=\"GET /\"\r\n", c.len()).as_bytes());
                    wire.extend_from_slice(c);
                    wire.extend_from_slice(b"\r\n");
                }
                wire.extend_from_slice(b"0\r\n\r\n");
            } else {
                wire.extend_from_slice(
                    format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
                );
                wire.extend_from_slice(&body);
            }
            (wire, format!("PUT /{encoded} {}", hex(&body)))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn hyper_sees_every_request_as_sent(
        reqs in prop::collection::vec(request(), 1..5),
        cuts in prop::collection::vec(0usize..1500, 0..6),
    ) {
        let wire: Vec<u8> = reqs.iter().flat_map(|r| r.0.clone()).collect();
        let expected: Vec<String> = reqs.iter().map(|r| r.1.clone()).collect();
        let got = rt().block_on(serve(wire, cuts, expected.len()));
        prop_assert_eq!(got, expected);
    }
}
