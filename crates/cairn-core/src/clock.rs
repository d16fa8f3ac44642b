//! Injected time, so expiry, retention and audit timestamps are testable.

use std::sync::atomic::{AtomicI64, Ordering};
use time::OffsetDateTime;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
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
}

/// Canonical text form of a timestamp: UTC, millisecond precision, fixed width, so that
/// text order equals time order in every backend.
pub fn format_ts(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
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
    fn canonical_form_orders_as_text() {
        let a = canonical_ts("2026-01-02T03:04:05+02:00").unwrap();
        let b = canonical_ts("2026-01-02T01:04:05.5Z").unwrap();
        assert_eq!(a, "2026-01-02T01:04:05.000Z");
        assert!(a < b);
        assert_eq!(canonical_ts("yesterday"), None);
    }
}
