//! Counts failed authentications per client address. Only failures count,
//! so well-behaved clients never meet the limit; an address that fails more
//! than `limit` times in a minute is refused until that minute is over.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many addresses are tracked before expired entries are swept.
const SWEEP_AT: usize = 10_000;

#[derive(Debug)]
pub struct FailureLimiter {
    limit: u32,
    window: Duration,
    windows: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl FailureLimiter {
    /// At most `limit` failures per address per minute.
    pub fn per_minute(limit: u32) -> Self {
        Self::new(limit, Duration::from_secs(60))
    }

    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry after)` while `address` has used up its failures.
    pub fn check(&self, address: IpAddr) -> Result<(), Duration> {
        self.check_at(address, Instant::now())
    }

    /// Counts one failure of `address`.
    pub fn record_failure(&self, address: IpAddr) {
        self.record_at(address, Instant::now());
    }

    fn check_at(&self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        match windows.get(&address) {
            Some(w) if w.failures >= self.limit && now < w.started + self.window => {
                Err(w.started + self.window - now)
            }
            _ => Ok(()),
        }
    }

    fn record_at(&self, address: IpAddr, now: Instant) {
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
        if entry.failures == self.limit {
            tracing::warn!(%address, failures = self.limit, "refusing an address that keeps presenting invalid credentials");
            metrics::counter!("shop_auth_addresses_limited_total").increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_the_limit_until_the_window_ends() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60));
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(
                limiter.check_at(a, t0).is_ok(),
                "failure {i} is still allowed"
            );
            limiter.record_at(a, t0);
        }
        let wait = limiter
            .check_at(a, t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(
            limiter.check_at(b, t0).is_ok(),
            "another address is not affected"
        );
        assert!(limiter.check_at(a, t0 + Duration::from_secs(60)).is_ok());
        limiter.record_at(a, t0 + Duration::from_secs(61));
        assert!(
            limiter.check_at(a, t0 + Duration::from_secs(61)).is_ok(),
            "a new window starts afresh"
        );
    }

    #[test]
    fn forgets_old_addresses() {
        let limiter = FailureLimiter::new(1, Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..SWEEP_AT as u32 {
            limiter.record_at(IpAddr::from(i.to_be_bytes()), t0);
        }
        limiter.record_at("10.9.9.9".parse().unwrap(), t0 + Duration::from_secs(2));
        assert_eq!(limiter.windows.lock().unwrap().len(), 1);
    }
}
