//! Per-tenant rate limiting (429): a token bucket per tenant, refilled continuously, checked
//! once the token is verified. Limits are per process: with several API replicas a tenant gets
//! the limit from each.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How many requests a tenant may make.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// How many may come at once after a quiet period.
    pub burst: f64,
}

/// The buckets of every tenant seen.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<Uuid, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter with `limit` for every tenant.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `tenant`'s bucket, or says how long until one is available.
    pub fn check(&self, tenant: Uuid) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let (tokens, last) = buckets.entry(tenant).or_insert((self.limit.burst, now));
        let refilled = (*tokens + now.duration_since(*last).as_secs_f64() * self.limit.per_second)
            .min(self.limit.burst);
        *last = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err(Duration::from_secs_f64(
                (1.0 - refilled) / self.limit.per_second,
            ))
        }
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
}
