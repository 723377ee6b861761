//! Rate limiting (429), with `governor`: GCRA limiters keyed by tenant and by client address.
//! Limits are per process: with several API replicas a client gets the limit from each.
//!
//! - Per tenant: checked once the token is verified (`extract::TenantUser`).
//! - Per client IP address ([`IpLimiter`], the [`limit_by_ip`] layer): what a tenant's limit
//!   does not cover — the unauthenticated routes (`/health`, `/ready`, `/metrics`, the OpenAPI
//!   document, `/docs`), the platform routes (`/api/v1/tenants`), unknown paths, and every
//!   request refused 401. An address over its allowance is refused every request, a valid
//!   token's too, until the allowance refills: so a flood of bad tokens is slowed down, and a
//!   token guesser learns nothing faster than the limit. A tenant's authenticated requests do
//!   not count against their address (the tenant's own limit covers them). IPv6 addresses
//!   count by their /64, which one client usually holds whole.
//!
//! Keys that have been quiet long enough to be back at a full burst are forgotten now and
//! then, so the key maps do not grow with every tenant or address ever seen.

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

use crate::error::ApiError;
use crate::AppState;

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

/// The limiter of every key (tenant, or client address) seen.
#[derive(Debug)]
pub struct RateLimiter<K: Hash + Eq + Clone = Uuid> {
    limiter: DefaultKeyedRateLimiter<K>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter with `limit` for every key (at least one request per burst, and a rate of at
    /// most one per nanosecond).
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

    /// Takes one request from `key`'s allowance, or says how long until one is available.
    pub fn check(&self, key: K) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % EVICT_EVERY == EVICT_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// How many keys the limiter currently remembers.
    pub fn tenants(&self) -> usize {
        self.limiter.len()
    }
}

/// The per-address limiter, with the addresses over their allowance: those are refused every
/// request until it refills, whatever the route.
#[derive(Debug)]
pub struct IpLimiter {
    limiter: RateLimiter<IpAddr>,
    /// Addresses refused until the instant given (kept small: expired ones are swept).
    refused: Mutex<HashMap<IpAddr, Instant>>,
    /// How many addresses `refused` holds, read without its lock: with none (the usual case)
    /// a request does not take it.
    refused_len: AtomicUsize,
}

/// Past this many addresses in the refused map, expired ones are swept out on the next refusal.
const SWEEP_REFUSED_ABOVE: usize = 1024;

impl IpLimiter {
    /// A limiter with `limit` for every client address.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limiter: RateLimiter::new(limit),
            refused: Mutex::new(HashMap::new()),
            refused_len: AtomicUsize::new(0),
        }
    }

    /// How long `ip` is still refused, if it is over its allowance.
    pub fn refused(&self, ip: IpAddr) -> Option<Duration> {
        if self.refused_len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let key = client_key(ip);
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        let until = *refused.get(&key)?;
        let now = Instant::now();
        if until > now {
            Some(until - now)
        } else {
            refused.remove(&key);
            self.refused_len.store(refused.len(), Ordering::Relaxed);
            None
        }
    }

    /// Takes one request from `ip`'s allowance; when there is none, `ip` is refused until
    /// there is, and the wait is returned.
    pub fn charge(&self, ip: IpAddr) -> Result<(), Duration> {
        let key = client_key(ip);
        self.limiter.check(key).inspect_err(|wait| {
            let now = Instant::now();
            let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
            if refused.len() > SWEEP_REFUSED_ABOVE {
                refused.retain(|_, until| *until > now);
            }
            refused.insert(key, now + *wait);
            self.refused_len.store(refused.len(), Ordering::Relaxed);
        })
    }
}

/// The address a client is counted by: IPv4 (also mapped into IPv6) as it is, IPv6 by its /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Set by `extract::TenantUser` when a request's token verified and its tenant's limit was
/// applied: such a request does not count against its address.
#[derive(Debug, Clone, Default)]
pub(crate) struct TenantLimited(Arc<AtomicBool>);

impl TenantLimited {
    /// Marks the request as covered by its tenant's limit.
    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Whether `path` belongs to a tenant's routes (covered by the tenant's limit once the token
/// verifies), as opposed to the unauthenticated and platform routes, limited per address up
/// front.
fn tenant_route(path: &str) -> bool {
    path.starts_with("/api/v1/")
        && path != "/api/v1/tenants"
        && !path.starts_with("/api/v1/tenants/")
        && path != crate::ops::OPENAPI_PATH
        && path != crate::ops::ASYNCAPI_PATH
}

/// The per-address limit (see the module's documentation): a request from an address over its
/// allowance is 429 before anything else; one on an unauthenticated or platform route counts
/// before it runs; one on a tenant's route counts after, when it was refused 401 or no tenant's
/// limit covered it (an unknown path).
pub async fn limit_by_ip(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let (Some(limiter), Some(ConnectInfo(peer))) = (
        state.ip_limiter.clone(),
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .copied(),
    ) else {
        return next.run(request).await;
    };
    let ip = peer.ip();
    if let Some(retry_after) = limiter.refused(ip) {
        return ApiError::TooManyRequests { retry_after }.into_response();
    }
    if !tenant_route(request.uri().path()) {
        if let Err(retry_after) = limiter.charge(ip) {
            return ApiError::TooManyRequests { retry_after }.into_response();
        }
        return next.run(request).await;
    }
    let limited = TenantLimited::default();
    request.extensions_mut().insert(limited.clone());
    let response = next.run(request).await;
    if response.status() == axum::http::StatusCode::UNAUTHORIZED || !limited.is_set() {
        let _ = limiter.charge(ip);
    }
    response
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
    fn an_address_over_its_allowance_is_refused_until_it_refills_and_v6_counts_by_its_64() {
        let limiter = IpLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 2.0,
        });
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(limiter.refused(ip).is_none());
        assert!(limiter.charge(ip).is_ok());
        assert!(limiter.charge(ip).is_ok());
        assert!(limiter.charge(ip).is_err());
        let wait = limiter.refused(ip).expect("refused while over");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        // Another address is not affected; one in the same IPv6 /64 is.
        assert!(limiter.refused("192.0.2.8".parse().unwrap()).is_none());
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        assert!(limiter.charge(a).is_ok());
        assert!(limiter.charge(a).is_ok());
        assert!(limiter.charge(b).is_err());
        assert!(limiter
            .refused("2001:db8:0:1::1".parse().unwrap())
            .is_none());
        std::thread::sleep(Duration::from_millis(120));
        assert!(limiter.refused(ip).is_none());
        assert!(limiter.charge(ip).is_ok());
    }

    #[test]
    fn tenant_routes_are_told_from_platform_and_unauthenticated_ones() {
        for path in [
            "/api/v1/purchase-orders",
            "/api/v1/audit/verify",
            "/api/v1/nowhere",
        ] {
            assert!(tenant_route(path), "{path}");
        }
        for path in [
            "/health",
            "/ready",
            "/metrics",
            "/docs/",
            "/api/v1/openapi.json",
            "/api/v1/asyncapi.json",
            "/api/v1/tenants",
            "/api/v1/tenants/x",
        ] {
            assert!(!tenant_route(path), "{path}");
        }
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
