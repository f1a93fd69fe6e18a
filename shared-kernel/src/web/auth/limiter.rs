//! Counts failed authentications per client address. Only failures count,
//! and only failures are refused: an address that fails more than `limit`
//! times in a minute has its further failures answered 429, each after a
//! delay, until that minute is over, while valid credentials from it still
//! pass. Many clients can share an address (behind a NAT, or a proxy not
//! listed in `SHOP__SERVER__TRUSTED_PROXIES`), and one of them guessing must
//! not lock the others out; the delay is what slows the guessing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many addresses are tracked before expired entries are swept.
const SWEEP_AT: usize = 10_000;

/// How long a failure past the limit waits before it is answered: a guesser
/// gets at most one answer per this much time on each connection it holds
/// (and the connections of one client are limited too).
pub const PENALTY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct FailureLimiter {
    limit: u32,
    window: Duration,
    penalty: Duration,
    windows: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl FailureLimiter {
    /// At most `limit` failures per address per minute answered as such.
    pub fn per_minute(limit: u32) -> Self {
        Self::new(limit, Duration::from_secs(60), PENALTY)
    }

    pub fn new(limit: u32, window: Duration, penalty: Duration) -> Self {
        Self {
            limit,
            window,
            penalty,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one failure of `address`. Within the limit: `Ok`, answer it as
    /// the failure it is. Past it: `Err(retry after)`, after the penalty
    /// delay (answer 429).
    pub async fn record_failure(&self, address: IpAddr) -> Result<(), Duration> {
        let verdict = self.record_at(address, Instant::now());
        if verdict.is_err() {
            metrics::counter!("shop_auth_failures_limited_total").increment(1);
            tokio::time::sleep(self.penalty).await;
        }
        verdict
    }

    fn record_at(&self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= SWEEP_AT {
            let window = self.window;
            windows.retain(|_, w| now < w.started + window);
        }
        let entry = windows.entry(address).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= entry.started + self.window {
            *entry = Window {
                started: now,
                failures: 0,
            };
        }
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures <= self.limit {
            return Ok(());
        }
        if entry.failures == self.limit + 1 {
            tracing::warn!(%address, failures = self.limit, "slowing an address that keeps presenting invalid credentials (its valid ones still pass)");
            metrics::counter!("shop_auth_addresses_limited_total").increment(1);
        }
        Err(entry.started + self.window - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_failures_past_the_limit_until_the_window_ends() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60), PENALTY);
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(
                limiter.record_at(a, t0).is_ok(),
                "failure {i} is answered as such"
            );
        }
        let wait = limiter
            .record_at(a, t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(
            limiter.record_at(b, t0).is_ok(),
            "another address is not affected"
        );
        assert!(
            limiter.record_at(a, t0 + Duration::from_secs(61)).is_ok(),
            "a new window starts afresh"
        );
    }

    #[tokio::test]
    async fn a_failure_past_the_limit_waits_the_penalty() {
        let penalty = Duration::from_millis(200);
        let limiter = FailureLimiter::new(1, Duration::from_secs(60), penalty);
        let a = "10.0.0.1".parse().unwrap();
        let started = Instant::now();
        assert!(limiter.record_failure(a).await.is_ok());
        assert!(started.elapsed() < penalty, "within the limit: at once");
        assert!(limiter.record_failure(a).await.is_err());
        assert!(started.elapsed() >= penalty, "past it: after the penalty");
    }

    #[test]
    fn forgets_old_addresses() {
        let limiter = FailureLimiter::new(1, Duration::from_secs(1), PENALTY);
        let t0 = Instant::now();
        for i in 0..SWEEP_AT as u32 {
            let _ = limiter.record_at(IpAddr::from(i.to_be_bytes()), t0);
        }
        let _ = limiter.record_at("10.9.9.9".parse().unwrap(), t0 + Duration::from_secs(2));
        assert_eq!(limiter.windows.lock().unwrap().len(), 1);
    }
}
