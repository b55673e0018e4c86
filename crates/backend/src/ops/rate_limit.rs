//! Per-principal rate limits: a token bucket per principal name, kept in this process's
//! memory. Several instances behind a balancer each count on their own, so the effective limit
//! is the flag's value times the instances a principal's requests are spread over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimit;

/// Past this many principals, buckets that have refilled completely are forgotten (a full
/// bucket is what a new one would be), so the map cannot grow with every name ever seen.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self { limit, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token from `principal`'s bucket; `Err(wait)` when it is empty, with how long
    /// until a token is back.
    pub fn check(&self, principal: &str) -> Result<(), Duration> {
        self.check_at(principal, Instant::now())
    }

    fn check_at(&self, principal: &str, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.limit.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            let limit = self.limit;
            buckets.retain(|_, bucket| refilled(*bucket, limit, now) < burst);
        }
        let bucket = buckets.entry(principal.to_owned()).or_insert(Bucket { tokens: burst, refilled_at: now });
        bucket.tokens = refilled(*bucket, self.limit, now);
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.limit.per_second))
        }
    }
}

fn refilled(bucket: Bucket, limit: RateLimit, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.refilled_at).as_secs_f64();
    (bucket.tokens + elapsed * limit.per_second).min(f64::from(limit.burst))
}

/// The `Retry-After` value for a wait: whole seconds, rounded up, at least 1 (0 would invite
/// an immediate retry that is refused again).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_gets_its_burst_then_waits_for_the_rate() {
        let limiter = RateLimiter::new(RateLimit { per_second: 2.0, burst: 2 });
        let start = Instant::now();
        assert!(limiter.check_at("alice", start).is_ok(), "first of the burst");
        assert!(limiter.check_at("alice", start).is_ok(), "second of the burst");
        let wait = limiter.check_at("alice", start).expect_err("the burst is spent");
        assert_eq!(wait, Duration::from_millis(500), "one token comes back every half second");
        assert!(limiter.check_at("alice", start + Duration::from_millis(500)).is_ok(), "refilled");
    }

    #[test]
    fn principals_have_their_own_buckets() {
        let limiter = RateLimiter::new(RateLimit { per_second: 1.0, burst: 1 });
        let now = Instant::now();
        assert!(limiter.check_at("alice", now).is_ok());
        assert!(limiter.check_at("alice", now).is_err(), "alice spent hers");
        assert!(limiter.check_at("bob", now).is_ok(), "bob's bucket is untouched by alice");
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1, "never zero");
    }
}
