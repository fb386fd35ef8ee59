//! Mutations per second per token (`HOOKLINE_TOKEN_MUTATION_RATE`, `..._BURST`): a token
//! bucket for each token that made a mutation lately.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Buckets kept before full ones (tokens idle for a second or more) are dropped.
const MAX_BUCKETS: usize = 10_000;

/// A mutation refused for its token's rate; it may be tried again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimited {
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Mutations that may still be made now.
    available: f64,
    at: Instant,
}

#[derive(Debug)]
pub(super) struct Limiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    pub(super) fn new(per_second: u32, burst: u32) -> Self {
        Self { per_second: f64::from(per_second), burst: f64::from(burst.max(1)), buckets: Mutex::default() }
    }

    /// Takes `count` mutations from the token's bucket, or says how long until they would fit.
    /// A batch larger than the burst passes when the bucket is full, and the token then owes
    /// what it took beyond it.
    pub(super) fn take(&self, token: &str, count: u32) -> Result<(), RateLimited> {
        self.take_at(token, count, Instant::now())
    }

    fn take_at(&self, token: &str, count: u32, now: Instant) -> Result<(), RateLimited> {
        let count = f64::from(count);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(token) {
            let (per_second, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| b.available + now.duration_since(b.at).as_secs_f64() * per_second < burst);
        }
        let bucket = buckets.entry(token.to_owned()).or_insert(Bucket { available: self.burst, at: now });
        let available =
            (bucket.available + now.duration_since(bucket.at).as_secs_f64() * self.per_second).min(self.burst);
        bucket.available = available;
        bucket.at = now;
        let needed = count.min(self.burst);
        if needed <= available {
            bucket.available -= count;
            return Ok(());
        }
        let missing = needed - available;
        Err(RateLimited { retry_after: Duration::from_secs_f64((missing / self.per_second).max(0.001)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_gets_its_burst_then_its_rate_and_others_are_not_held() {
        let limiter = Limiter::new(10, 5);
        let start = Instant::now();
        for _ in 0..5 {
            assert!(limiter.take_at("a", 1, start).is_ok());
        }
        let refused = limiter.take_at("a", 1, start).expect_err("over the burst");
        assert!((refused.retry_after.as_secs_f64() - 0.1).abs() < 1e-6, "{refused:?}");
        assert!(limiter.take_at("b", 5, start).is_ok(), "another token has its own bucket");
        assert!(limiter.take_at("a", 1, start + Duration::from_millis(100)).is_ok(), "refilled at 10/s");
        assert!(limiter.take_at("a", 3, start + Duration::from_millis(200)).is_err());
    }

    #[test]
    fn a_batch_counts_its_inputs() {
        let limiter = Limiter::new(100, 100);
        let start = Instant::now();
        assert!(limiter.take_at("a", 60, start).is_ok());
        let refused = limiter.take_at("a", 60, start).expect_err("60 of 40 left");
        assert!((refused.retry_after.as_secs_f64() - 0.2).abs() < 1e-6, "{refused:?}");
        let later = start + Duration::from_secs(1);
        assert!(limiter.take_at("a", 250, later).is_ok(), "a batch over the burst passes on a full bucket");
        let owed = limiter.take_at("a", 1, later).expect_err("and is paid back");
        assert!((owed.retry_after.as_secs_f64() - 1.51).abs() < 1e-6, "{owed:?}");
    }
}
