//! Fuzzes `cairn_wire::Rewriter`, which percent-encodes raw `"`, `<`, `{`… in request
//! targets under hyper: on arbitrary bytes it must never panic, how the bytes are cut
//! into reads must never change what goes on, and its output must need no further
//! rewriting and frame into the same requests (so it never desynchronises); on a
//! sequence of well-formed requests built from the input (Content-Length and chunked
//! bodies that look like requests), every head's target comes out encoded and every
//! body untouched, request boundaries exactly where they were.
#![no_main]

use cairn_wire::{rewrite_all, LIBERAL, STAND_IN};
use libfuzzer_sys::fuzz_target;

/// Read positions cut from the first bytes of `data` (up to 6 cuts).
fn cuts(data: &[u8]) -> (Vec<usize>, &[u8]) {
    if data.is_empty() {
        return (Vec::new(), data);
    }
    let n = ((data[0] % 7) as usize).min((data.len() - 1) / 2);
    let cuts = data[1..1 + 2 * n]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]) as usize)
        .collect();
    (cuts, &data[1 + 2 * n..])
}

fn arbitrary(data: &[u8]) {
    let (cuts, input) = cuts(data);
    for limit in [64, 64 << 10] {
        let (whole, mut rw) = rewrite_all(input, &[], limit);
        let (cut, _) = rewrite_all(input, &cuts, limit);
        assert_eq!(whole, cut, "output depends on how the input is cut");
        assert!(
            whole.len() <= 3 * input.len() + STAND_IN.len(),
            "output out of bounds"
        );
        if rw.take_refusal().is_none() && rw.at_boundary() {
            let (again, rw2) = rewrite_all(&whole, &cuts, limit);
            assert_eq!(again, whole, "output not a fixed point");
            assert_eq!(rw2.heads(), rw.heads(), "output frames differently");
        }
    }
}

fn structured(data: &[u8]) {
    let (cuts, mut data) = cuts(data);
    let (mut input, mut expected, mut heads) = (Vec::new(), Vec::new(), 0u64);
    const TARGET: &[u8] = b"aZ09-._~!$&'()*+,;=:@/?%[]\"<>{}|\\^`";
    while data.len() >= 4 && heads < 8 {
        let (tlen, blen, kind) = (data[0] as usize % 40, data[1] as usize, data[2]);
        data = &data[3..];
        let target: Vec<u8> = data
            .iter()
            .take(tlen)
            .map(|b| TARGET[*b as usize % TARGET.len()])
            .collect();
        data = &data[target.len()..];
        let body = &data[..blen.min(data.len())];
        data = &data[body.len()..];
        let encoded: Vec<u8> = target
            .iter()
            .flat_map(|&b| {
                if LIBERAL.contains(&b) {
                    format!("%{b:02X}").into_bytes()
                } else {
                    vec![b]
                }
            })
            .collect();
        let (framing, wire_body) = if kind % 2 == 0 {
            (
                format!("Content-Length: {}\r\n", body.len()).into_bytes(),
                body.to_vec(),
            )
        } else {
            let mut wire = Vec::new();
            for c in body.chunks(1 + (kind as usize >> 1) % 31) {
                wire.extend_from_slice(format!("{:x};x=\"GET /\"\r\n", c.len()).as_bytes());
                wire.extend_from_slice(c);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\nT: \"GET /\"\r\n\r\n");
            (b"Transfer-Encoding: chunked\r\n".to_vec(), wire)
        };
        let head = |t: &[u8]| [&b"POST /"[..], t, b" HTTP/1.1\r\n", &framing, b"\r\n"].concat();
        input.extend_from_slice(&head(&target));
        input.extend_from_slice(&wire_body);
        expected.extend_from_slice(&head(&encoded));
        expected.extend_from_slice(&wire_body);
        heads += 1;
    }
    let (out, mut rw) = rewrite_all(&input, &cuts, 64 << 10);
    assert!(rw.take_refusal().is_none());
    assert_eq!(out, expected, "a boundary moved or a body changed");
    assert_eq!(rw.heads(), heads);
    assert!(rw.at_boundary());
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((mode, rest)) if mode % 2 == 0 => arbitrary(rest),
        Some((_, rest)) => structured(rest),
        None => {}
    }
});
