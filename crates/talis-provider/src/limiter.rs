//! Rate limiting shared by every client of one token, driven by the provider's own signals:
//! `ratelimit-remaining`/`ratelimit-reset` headers and 429 `retry-after`. DigitalOcean counts
//! per token, so two clients with the same token in one process must wait together.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

#[derive(Debug, Default)]
pub struct RateLimiter {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// No request before this instant (set by a 429's `retry-after`).
    blocked_until: Option<Instant>,
    /// Last `ratelimit-remaining` seen, and when its window resets.
    remaining: Option<u64>,
    reset_at: Option<SystemTime>,
}

impl RateLimiter {
    /// The limiter of `token`, shared process-wide. The registry is keyed by a hash, so tokens
    /// are not kept in a second place in memory.
    pub fn for_token(token: &str) -> Arc<RateLimiter> {
        static REGISTRY: OnceLock<Mutex<HashMap<u64, Arc<RateLimiter>>>> = OnceLock::new();
        let key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            token.hash(&mut h);
            h.finish()
        };
        let mut map = REGISTRY
            .get_or_init(Default::default)
            .lock()
            .expect("rate limiter registry lock");
        map.entry(key).or_default().clone()
    }

    /// How long to wait before the next request may be sent (zero if it may go now).
    pub fn delay(&self) -> Duration {
        let s = self.state.lock().expect("rate limiter lock");
        let now = Instant::now();
        let mut wait = s
            .blocked_until
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or_default();
        if s.remaining == Some(0)
            && let Some(reset) = s.reset_at
        {
            wait = wait.max(reset.duration_since(SystemTime::now()).unwrap_or_default());
        }
        wait
    }

    /// Learns from a response's headers; `too_many` is true for a 429.
    pub fn observe(&self, status: u16, headers: &HeaderMap) {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let mut s = self.state.lock().expect("rate limiter lock");
        if let Some(r) = num("ratelimit-remaining") {
            s.remaining = Some(r);
        }
        if let Some(reset) = num("ratelimit-reset") {
            s.reset_at = Some(UNIX_EPOCH + Duration::from_secs(reset));
        }
        if status == 429 {
            // No retry-after: wait until the window resets, or a second if unknown.
            let wait = num("retry-after")
                .map(Duration::from_secs)
                .unwrap_or_else(|| {
                    s.reset_at
                        .and_then(|r| r.duration_since(SystemTime::now()).ok())
                        .unwrap_or(Duration::from_secs(1))
                });
            let until = Instant::now() + wait.max(Duration::from_millis(50));
            s.blocked_until = Some(s.blocked_until.map_or(until, |b| b.max(until)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_per_token_and_driven_by_headers() {
        let a = RateLimiter::for_token("limiter-test-token");
        let b = RateLimiter::for_token("limiter-test-token");
        let other = RateLimiter::for_token("limiter-test-other");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &other));
        assert_eq!(a.delay(), Duration::ZERO);

        let mut h = HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        a.observe(429, &h);
        assert!(b.delay() > Duration::from_secs(2), "shared with b");
        assert_eq!(other.delay(), Duration::ZERO);

        let reset = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 10;
        let mut h = HeaderMap::new();
        h.insert("ratelimit-remaining", "0".parse().unwrap());
        h.insert("ratelimit-reset", reset.to_string().parse().unwrap());
        other.observe(200, &h);
        assert!(other.delay() > Duration::from_secs(8));
    }
}
