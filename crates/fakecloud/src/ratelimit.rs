//! Per-token request windows (per minute and per hour), O(1) per request: one counter per
//! second in a ring of an hour, with running sums for the last minute and hour.

const HOUR: u64 = 3_600;
const MINUTE: u64 = 60;

#[derive(Debug)]
pub struct Window {
    buckets: Box<[u32; HOUR as usize]>,
    /// Last second accounted for.
    now_sec: u64,
    minute: u64,
    hour: u64,
    /// Oldest second that may still hold requests.
    oldest: u64,
}

/// What the response headers say, and whether the request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub limit: u32,
    pub remaining: u64,
    /// Epoch seconds when the oldest counted request expires.
    pub reset: u64,
    /// `Some(seconds)` when refused with 429.
    pub retry_after: Option<u64>,
}

impl Window {
    pub fn new(now_sec: u64) -> Self {
        Window {
            buckets: Box::new([0; HOUR as usize]),
            now_sec,
            minute: 0,
            hour: 0,
            oldest: now_sec,
        }
    }

    fn bucket(&mut self, sec: u64) -> &mut u32 {
        &mut self.buckets[(sec % HOUR) as usize]
    }

    fn advance(&mut self, now_sec: u64) {
        if now_sec <= self.now_sec {
            return;
        }
        if now_sec - self.now_sec >= HOUR {
            self.buckets.fill(0);
            self.minute = 0;
            self.hour = 0;
        } else {
            for s in self.now_sec + 1..=now_sec {
                // Second s-60 leaves the minute; second s-3600 (same slot as s) leaves the hour.
                self.minute -= u64::from(self.buckets[((s + HOUR - MINUTE) % HOUR) as usize]);
                let slot = self.bucket(s);
                let gone = u64::from(std::mem::take(slot));
                self.hour -= gone;
            }
            // The minute sum must not count seconds already cleared as part of the hour.
            self.minute = self.minute.min(self.hour);
        }
        self.now_sec = now_sec;
        let floor = now_sec.saturating_sub(HOUR - 1);
        self.oldest = self.oldest.max(floor);
        while self.oldest < now_sec && self.buckets[(self.oldest % HOUR) as usize] == 0 {
            self.oldest += 1;
        }
    }

    /// Counts a request at `now_sec` unless over a limit.
    pub fn check(&mut self, now_sec: u64, per_minute: u32, per_hour: u32) -> Verdict {
        self.advance(now_sec);
        let over_minute = self.minute >= u64::from(per_minute);
        let over_hour = self.hour >= u64::from(per_hour);
        let retry_after = if over_hour {
            Some((self.oldest + HOUR).saturating_sub(now_sec).max(1))
        } else if over_minute {
            let start = now_sec.saturating_sub(MINUTE - 1);
            let first = (start..=now_sec)
                .find(|s| self.buckets[(s % HOUR) as usize] > 0)
                .unwrap_or(now_sec);
            Some((first + MINUTE).saturating_sub(now_sec).max(1))
        } else {
            *self.bucket(now_sec) += 1;
            self.minute += 1;
            self.hour += 1;
            if self.hour == 1 {
                self.oldest = now_sec;
            }
            None
        };
        Verdict {
            limit: per_hour,
            remaining: u64::from(per_hour).saturating_sub(self.hour),
            reset: self.oldest + HOUR,
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minute_and_hour_limits() {
        let t0 = 1_000_000;
        let mut w = Window::new(t0);
        for i in 0..5 {
            let v = w.check(t0, 5, 100);
            assert_eq!(v.retry_after, None, "request {i}");
            assert_eq!(v.remaining, 100 - (i + 1));
        }
        let v = w.check(t0 + 10, 5, 100);
        assert_eq!(v.retry_after, Some(50), "minute window frees at t0+60");
        assert_eq!(w.check(t0 + 60, 5, 100).retry_after, None, "window slid");
        assert_eq!(w.minute, 1);
        assert_eq!(w.hour, 6);

        let mut w = Window::new(t0);
        for s in 0..3 {
            assert_eq!(w.check(t0 + s * 100, 1000, 3).retry_after, None);
        }
        let v = w.check(t0 + 500, 1000, 3);
        assert_eq!(v.retry_after, Some(HOUR - 500));
        assert_eq!(v.reset, t0 + HOUR);
        assert_eq!(
            w.check(t0 + HOUR, 1000, 3).retry_after,
            None,
            "oldest expired"
        );
        assert_eq!(
            w.check(t0 + 3 * HOUR, 1000, 3).remaining,
            2,
            "long idle resets"
        );
    }
}
