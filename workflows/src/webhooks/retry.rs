//! When a failed delivery is tried again: exponential backoff with jitter, at least what the
//! receiver's `Retry-After` asks (within the cap), for as long as the retry period after the
//! delivery was made lasts. A delivery gets at least one attempt, even when it waited longer
//! than the period behind earlier deliveries of a failing webhook.

use std::time::Duration;

/// The retry schedule (`TALIS_WEBHOOK_RETRY_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Pause after the first failed attempt (doubles after each).
    pub initial: Duration,
    /// Longest pause.
    pub max: Duration,
    /// Retries end this long after the delivery was made.
    pub retry_for: Duration,
}

/// Jitter spreads retries of many deliveries failing together: each pause is scaled by a
/// factor in `[1 - JITTER, 1 + JITTER)`.
pub const JITTER: f64 = 0.2;

impl RetryPolicy {
    /// The pause after failed attempt number `attempt` (1-based); `jitter` in `[-1, 1)` picks
    /// where in the jitter band it falls.
    pub fn pause(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        let doubled = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(31)));
        let base = doubled.min(self.max);
        let jittered = base.mul_f64((1.0 + JITTER * jitter.clamp(-1.0, 1.0)).max(0.0));
        jittered.max(retry_after.unwrap_or_default()).min(self.max)
    }

    /// The pause before the next attempt, or `None` when the retry period (from `created_ms`)
    /// would be over by then.
    pub fn next(
        &self,
        attempt: u32,
        created_ms: i64,
        now_ms: i64,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        let pause = self.pause(attempt, retry_after, jitter);
        let due = now_ms.saturating_add(pause.as_millis() as i64);
        let end = created_ms.saturating_add(self.retry_for.as_millis() as i64);
        (due <= end).then_some(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(3_600),
            retry_for: DAY,
        }
    }

    #[test]
    fn pauses_double_up_to_the_cap_within_the_jitter_band() {
        let p = policy();
        let secs = |a| p.pause(a, None, 0.0).as_secs();
        assert_eq!(
            (1..=12).map(secs).collect::<Vec<_>>(),
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(p.pause(1, None, -1.0), Duration::from_secs(4));
        assert_eq!(p.pause(1, None, 0.999).as_millis(), 5_999);
        // Never beyond the cap, jitter or not; huge attempt numbers do not overflow.
        assert_eq!(p.pause(40, None, 0.9), p.max);
        assert_eq!(p.pause(u32::MAX, None, 0.0), p.max);
        // Retry-After is honoured up to the cap.
        assert_eq!(
            p.pause(1, Some(Duration::from_secs(120)), 0.0),
            Duration::from_secs(120)
        );
        assert_eq!(p.pause(1, Some(DAY), 0.0), p.max);
    }

    #[test]
    fn retries_stop_when_the_period_after_the_delivery_is_over() {
        let p = policy();
        let created = 1_000_000;
        let mut now = created;
        let mut attempts = 1;
        while let Some(pause) = p.next(attempts, created, now, None, 0.0) {
            now += pause.as_millis() as i64;
            attempts += 1;
        }
        let spent = Duration::from_millis((now - created) as u64);
        assert!(spent <= DAY && spent > DAY - p.max, "{spent:?}");
        assert_eq!(attempts, 33, "attempts over a day at 5 s doubling to 1 h");
        // A delivery that waited past its period behind others gets one attempt and no retry.
        assert_eq!(
            p.next(1, created, created + DAY.as_millis() as i64, None, 0.0),
            None
        );
    }
}
