//! Per-tenant rate limiting (429), with `governor`: a GCRA limiter keyed by tenant, checked
//! once the token is verified. Limits are per process: with several API replicas a tenant gets
//! the limit from each.
//!
//! Tenants that have been quiet long enough to be back at a full burst are forgotten now and
//! then, so the key map does not grow with every tenant ever seen.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use uuid::Uuid;

/// How many requests a tenant may make.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// How many may come at once after a quiet period.
    pub burst: f64,
}

/// Every how many checks the limiter forgets tenants that are back at a full burst.
const EVICT_EVERY: u64 = 4096;

/// The limiter of every tenant seen.
#[derive(Debug)]
pub struct RateLimiter {
    limiter: DefaultKeyedRateLimiter<Uuid>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl RateLimiter {
    /// A limiter with `limit` for every tenant (at least one request per burst, and a rate of
    /// at most one per nanosecond).
    pub fn new(limit: RateLimit) -> Self {
        let period =
            Duration::from_secs_f64(1.0 / limit.per_second.max(1e-9)).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(limit.burst.clamp(1.0, f64::from(u32::MAX)) as u32)
            .unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// Takes one request from `tenant`'s allowance, or says how long until one is available.
    pub fn check(&self, tenant: Uuid) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % EVICT_EVERY == EVICT_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(&tenant)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// How many tenants the limiter currently remembers.
    pub fn tenants(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_requests_wait_for_the_refill() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 3.0,
        });
        let tenant = Uuid::nil();
        for _ in 0..3 {
            assert!(limiter.check(tenant).is_ok());
        }
        let wait = limiter.check(tenant).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        // Another tenant has its own bucket.
        assert!(limiter.check(Uuid::max()).is_ok());
        std::thread::sleep(Duration::from_millis(120));
        assert!(limiter.check(tenant).is_ok());
    }

    #[test]
    fn quiet_tenants_are_forgotten() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 1000.0,
            burst: 1.0,
        });
        for _ in 0..100 {
            let _ = limiter.check(Uuid::new_v4());
        }
        assert_eq!(limiter.tenants(), 100);
        // Every tenant is back at a full burst after a millisecond; the periodic sweep drops
        // them (one tenant, the last checked, may be remembered again).
        std::thread::sleep(Duration::from_millis(5));
        for _ in 0..EVICT_EVERY {
            let _ = limiter.check(Uuid::nil());
        }
        assert!(limiter.tenants() <= 2, "{}", limiter.tenants());
    }
}
