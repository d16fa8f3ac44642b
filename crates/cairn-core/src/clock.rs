//! Injected time, so expiry, retention and audit timestamps are testable.

use std::sync::atomic::{AtomicI64, Ordering};
use time::OffsetDateTime;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;

    /// `now()` as Unix milliseconds; the wall clock gives it without building a date
    /// (the request log stamps every SCIM request with it).
    fn unix_ms(&self) -> i64 {
        crate::reqlog::ms(self.now())
    }
}

/// The wall clock, optionally shifted (the shift exists so that operators and tests can
/// exercise retention without waiting 30 days; it is never set by default).
#[derive(Debug, Default)]
pub struct SystemClock {
    offset_secs: AtomicI64,
}

impl SystemClock {
    pub fn with_offset_secs(offset: i64) -> Self {
        SystemClock {
            offset_secs: AtomicI64::new(offset),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        let shift = self.offset_secs.load(Ordering::Relaxed);
        OffsetDateTime::now_utc() + time::Duration::seconds(shift)
    }

    fn unix_ms(&self) -> i64 {
        let shift = self.offset_secs.load(Ordering::Relaxed);
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        since.saturating_add(shift.saturating_mul(1000))
    }
}

/// Canonical text form of a timestamp: UTC, millisecond precision, fixed width, so that
/// text order equals time order in every backend.
pub fn format_ts(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    if let Ok(year) = u16::try_from(t.year()) {
        if year <= 9999 {
            // Every read renders two of these: digits written directly, not through
            // `format!`'s machinery (a tenth of the instructions).
            let mut b = *b"0000-00-00T00:00:00.000Z";
            let mut put = |at: usize, width: usize, mut v: u16| {
                for i in (at..at + width).rev() {
                    b[i] = b'0' + (v % 10) as u8;
                    v /= 10;
                }
            };
            put(0, 4, year);
            put(5, 2, u8::from(t.month()).into());
            put(8, 2, t.day().into());
            put(11, 2, t.hour().into());
            put(14, 2, t.minute().into());
            put(17, 2, t.second().into());
            put(20, 3, t.millisecond());
            // All ASCII: the conversion cannot fail.
            return std::str::from_utf8(&b)
                .map(str::to_owned)
                .unwrap_or_default();
        }
    }
    format_ts_by_fmt(t)
}

/// [`format_ts`] through `format!`: years outside 0–9999, and the reference its
/// hand-written digits are tested against.
fn format_ts_by_fmt(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Parses an RFC 3339 timestamp (any offset) into UTC.
pub fn parse_ts(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.to_offset(time::UtcOffset::UTC))
}

/// Re-formats any RFC 3339 timestamp in the canonical form, for comparisons in filters.
pub fn canonical_ts(s: &str) -> Option<String> {
    parse_ts(s).map(format_ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_ms_is_now_with_the_same_offset() {
        for offset in [0, 86_400 * 40, -3_600] {
            let c = SystemClock::with_offset_secs(offset);
            let before = crate::reqlog::ms(c.now());
            let fast = c.unix_ms();
            let after = crate::reqlog::ms(c.now());
            assert!(before <= fast && fast <= after, "{before} {fast} {after}");
        }
    }

    #[test]
    fn canonical_form_orders_as_text() {
        let a = canonical_ts("2026-01-02T03:04:05+02:00").unwrap();
        let b = canonical_ts("2026-01-02T01:04:05.5Z").unwrap();
        assert_eq!(a, "2026-01-02T01:04:05.000Z");
        assert!(a < b);
        assert_eq!(canonical_ts("yesterday"), None);
    }

    #[test]
    fn written_digits_match_the_formatted_form() {
        let slow = |t: OffsetDateTime| format_ts_by_fmt(t.to_offset(time::UtcOffset::UTC));
        for s in [
            "0000-01-01T00:00:00Z",
            "0009-02-03T04:05:06.007Z",
            "1999-12-31T23:59:59.999Z",
            "2026-11-28T10:20:30.456+05:30",
            "9999-12-31T23:59:59.999Z",
        ] {
            let t = parse_ts(s).unwrap();
            assert_eq!(format_ts(t), slow(t), "{s}");
        }
        let mut t = parse_ts("2026-01-01T00:00:00Z").unwrap();
        for _ in 0..500 {
            t += time::Duration::milliseconds(86_399_999 + 13);
            assert_eq!(format_ts(t), slow(t));
        }
        assert_eq!(
            format_ts(parse_ts("2026-01-02T03:04:05.678Z").unwrap()),
            "2026-01-02T03:04:05.678Z"
        );
    }
}
