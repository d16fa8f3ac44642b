//! Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP) and recovery codes: the
//! second factor of password sign-ins.
//!
//! Written out here rather than taken from a TOTP crate: the algorithm is a dozen lines on
//! `hmac` (already in the tree) and `sha1`, where the crates bring their own base32, URL
//! and image code that Cairn does not use.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

/// RFC 6238 §4.1: the time step X (30 s, the value every authenticator app uses).
pub const STEP_SECONDS: i64 = 30;
/// Digits of a code (RFC 4226 §5.3; authenticator apps show 6).
pub const DIGITS: u32 = 6;
/// Steps accepted either side of the current one, for clock drift and typing time
/// (RFC 6238 §5.2 recommends at most one).
pub const SKEW_STEPS: i64 = 1;
/// How many recovery codes an enrolment gives out.
pub const RECOVERY_CODES: usize = 10;
/// RFC 4226 §4 requires at least 128 bits and recommends 160: the HMAC-SHA-1 block.
const SECRET_BYTES: usize = 20;

/// A shared TOTP secret. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl TotpSecret {
    pub fn generate() -> Self {
        let mut b = vec![0u8; SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut b);
        TotpSecret(b)
    }
    pub fn from_bytes(b: Vec<u8>) -> Self {
        TotpSecret(b)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// The secret as authenticator apps take it typed in: RFC 4648 §6 base32, unpadded.
    pub fn base32(&self) -> String {
        base32(&self.0)
    }
    /// The `otpauth://` URI a QR code carries (the Key Uri Format authenticator apps read,
    /// github.com/google/google-authenticator/wiki/Key-Uri-Format).
    pub fn uri(&self, issuer: &str, account: &str) -> String {
        let enc = |s: &str| -> String {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect()
        };
        format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
            enc(issuer),
            enc(account),
            self.base32(),
            enc(issuer)
        )
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

/// RFC 4648 §6 base32 without padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The time step `at` falls in (RFC 6238 §4.2, T0 = 0).
pub fn step_of(at: OffsetDateTime) -> i64 {
    at.unix_timestamp().div_euclid(STEP_SECONDS)
}

/// HOTP (RFC 4226 §5.3) of `counter`: HMAC-SHA-1, dynamic truncation, 6 digits.
pub fn code_at_step(secret: &TotpSecret, step: i64) -> u32 {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(&step.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = usize::from(h[19] & 0x0f);
    let bin = u32::from_be_bytes([
        h[offset] & 0x7f,
        h[offset + 1],
        h[offset + 2],
        h[offset + 3],
    ]);
    bin % 10u32.pow(DIGITS)
}

/// The step among the current one ± [`SKEW_STEPS`] whose code is `code`, if any. Every
/// candidate is computed and compared in constant time, so the answer's timing does not
/// tell which step (or digit) matched.
pub fn matching_step(secret: &TotpSecret, code: &str, at: OffsetDateTime) -> Option<i64> {
    let code = code.trim().replace(' ', "");
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_of(at);
    let mut found = None;
    for step in (now - SKEW_STEPS)..=(now + SKEW_STEPS) {
        let expect = format!("{:06}", code_at_step(secret, step));
        if bool::from(expect.as_bytes().ct_eq(code.as_bytes())) && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// A recovery code as shown to its owner once: 10 characters of base32 in two groups
/// (50 random bits: with sign-in throttling, far beyond guessing; SHA-256 suffices to
/// store it, no slow hash needed).
pub fn generate_recovery_code() -> String {
    let mut b = [0u8; 7];
    rand::rngs::OsRng.fill_bytes(&mut b);
    let s = base32(&b);
    format!("{}-{}", &s[..5], &s[5..10]).to_lowercase()
}

/// Whether `input` has the shape of a recovery code (a TOTP code is six digits).
pub fn looks_like_recovery_code(input: &str) -> bool {
    let n = normalise_recovery_code(input);
    n.len() == 10 && n.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn normalise_recovery_code(input: &str) -> String {
    input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The stored form of a recovery code: SHA-256 of its normalised text (case, spaces and
/// the dash do not matter when it is typed back).
pub fn recovery_code_hash(input: &str) -> [u8; 32] {
    Sha256::digest(format!("cairn-recovery:{}", normalise_recovery_code(input)).as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 rows (the 8-digit values' last 6 digits: truncation
    /// to fewer digits is the same number modulo 10^6).
    #[test]
    fn codes_match_the_rfc_6238_test_vectors() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec());
        for (t, expect) in [
            (59i64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            let at = OffsetDateTime::from_unix_timestamp(t).unwrap();
            assert_eq!(
                code_at_step(&secret, step_of(at)),
                expect % 1_000_000,
                "T={t}"
            );
        }
    }

    #[test]
    fn a_code_matches_its_step_and_the_neighbours_only() {
        let secret = TotpSecret::generate();
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let now = step_of(at);
        for d in -1..=1 {
            let code = format!("{:06}", code_at_step(&secret, now + d));
            assert_eq!(matching_step(&secret, &code, at), Some(now + d));
        }
        let far = format!("{:06}", code_at_step(&secret, now + 2));
        // A far code may collide with a near one by chance (1 in 10^6 per step).
        if (-1..=1).all(|d| code_at_step(&secret, now + d) != code_at_step(&secret, now + 2)) {
            assert_eq!(matching_step(&secret, &far, at), None);
        }
        assert_eq!(matching_step(&secret, "12345", at), None);
        assert_eq!(matching_step(&secret, "abcdef", at), None);
    }

    #[test]
    fn base32_follows_rfc_4648_test_vectors() {
        for (input, expect) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), expect);
        }
    }

    #[test]
    fn recovery_codes_are_random_and_hash_the_same_however_typed() {
        let a = generate_recovery_code();
        assert_ne!(a, generate_recovery_code());
        assert!(looks_like_recovery_code(&a));
        assert!(!looks_like_recovery_code("123456"));
        assert_eq!(
            recovery_code_hash(&a),
            recovery_code_hash(&format!(" {} ", a.to_uppercase().replace('-', "")))
        );
        assert!(!format!("{:?}", TotpSecret::generate()).contains('A'));
    }
}
