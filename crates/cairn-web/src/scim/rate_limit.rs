//! The per-tenant SCIM request budget: a token bucket per tenant (`cairn serve
//! --scim-rate-limit N`), refilled at N requests/second up to a burst of 2×N.
//!
//! It is charged by the `Scim` extractor *after* authentication, for three reasons: an
//! unauthenticated flood naming a tenant in the URL cannot spend that tenant's budget and
//! lock its identity provider out; buckets exist only for tenants that presented a live
//! token, so the map is bounded by the number of tenants and cannot be grown with made-up
//! tenant ids; and the limit is a fairness rule between tenants, not the defence against
//! token guessing (tokens carry 256 bits, and a refused token costs one SHA-256 and a
//! cached lookup).

use cairn_core::ids::TenantId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Token buckets, one per tenant.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: u32,
    /// Tokens added per second.
    rate: f64,
    /// Bucket capacity.
    burst: f64,
    buckets: Mutex<HashMap<TenantId, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `per_second` requests/second per tenant with bursts of twice that; `None` for 0
    /// (no limit).
    pub fn per_second(per_second: u32) -> Option<RateLimiter> {
        (per_second > 0).then(|| RateLimiter {
            per_second,
            rate: f64::from(per_second),
            burst: 2.0 * f64::from(per_second),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// The sustained rate, requests/second.
    pub fn rate(&self) -> u32 {
        self.per_second
    }

    /// Takes one token from the tenant's bucket at `now`, or says how long until one is
    /// available.
    pub fn check(&self, tenant: &TenantId, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = buckets.entry(tenant.clone()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }
}

/// The `Retry-After` value for a wait: whole seconds, rounded up, at least 1. With a rate
/// of at least one request/second, a single token is never more than a second away, so
/// this is always 1 — the value `ApiError` sends with every 429.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId::random()
    }

    #[test]
    fn zero_disables() {
        assert!(RateLimiter::per_second(0).is_none());
    }

    #[test]
    fn a_burst_of_twice_the_rate_then_refusals_then_refill() {
        let l = RateLimiter::per_second(10).unwrap();
        let (t, t0) = (tenant(), Instant::now());
        for _ in 0..20 {
            assert!(l.check(&t, t0).is_ok());
        }
        let wait = l.check(&t, t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100));
        assert_eq!(retry_after_secs(wait), 1);
        // A tenth of a second later, one request's worth is back.
        assert!(l.check(&t, t0 + Duration::from_millis(100)).is_ok());
        assert!(l.check(&t, t0 + Duration::from_millis(100)).is_err());
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..20 {
            assert!(l.check(&t, later).is_ok());
        }
        assert!(l.check(&t, later).is_err());
    }

    #[test]
    fn tenants_have_separate_buckets() {
        let l = RateLimiter::per_second(1).unwrap();
        let (a, b, t0) = (tenant(), tenant(), Instant::now());
        assert!(l.check(&a, t0).is_ok());
        assert!(l.check(&a, t0).is_ok());
        assert!(l.check(&a, t0).is_err());
        assert!(l.check(&b, t0).is_ok());
        assert!(l.check(&b, t0).is_ok());
    }

    #[test]
    fn sustained_rate_is_honoured() {
        let l = RateLimiter::per_second(100).unwrap();
        let (t, t0) = (tenant(), Instant::now());
        // One request every 10 ms for ten seconds never runs dry.
        for i in 0..1000 {
            assert!(
                l.check(&t, t0 + Duration::from_millis(10 * i)).is_ok(),
                "{i}"
            );
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
    }
}
