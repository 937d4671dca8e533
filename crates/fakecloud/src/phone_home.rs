//! Phone-home: what the last line of a Talis cloud-init script does on a real machine. When a
//! droplet is active with its IP and its `user_data` has a line `# talis-phone-home: <URL>`,
//! the fake POSTs `{"droplet_id","public_ip","status":"ok"}` to `<URL>` as
//! `curl -fsS --retry N --retry-delay D --retry-connrefused -X POST <URL>` would:
//!
//! - an answer below 400 ends it (`-f` fails only from 400; redirects are not followed, as
//!   without `-L`): `ok`;
//! - a transient failure — a timeout, a connection error, or HTTP 408, 429, 500, 502, 503,
//!   504 — is retried after `retry_delay_ms`, or after the answer's `Retry-After` if that is
//!   longer, up to `attempts` attempts in all: `failed` when they run out;
//! - any other answer (a 4xx but 408/429, a 501 ...) is final at once: `refused`.
//!
//! One scheduler task keeps the phone-homes due, earliest first, and starts each when its
//! droplet boots. At most `max_in_flight` POSTs are under way at once (each holds a socket of
//! this one process, where real machines each have their own); a machine pausing between
//! attempts holds no slot, so its attempts run out on the clock as a real machine's would.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::config::PhoneHome;
use crate::fake::{Fake, Inner, now_ms};

/// Marker line in user_data (see the project's phone-home convention).
pub const PHONE_HOME_MARKER: &str = "# talis-phone-home:";

/// How long the scheduler sleeps when nothing is due (a new phone-home wakes it earlier).
const IDLE: Duration = Duration::from_secs(3600);

/// Extracts `<URL>` from a `# talis-phone-home: <URL>` line.
pub fn phone_home_url(user_data: &str) -> Option<String> {
    user_data.lines().find_map(|l| {
        let url = l.trim().strip_prefix(PHONE_HOME_MARKER)?.trim();
        (url.starts_with("http://") || url.starts_with("https://")).then(|| url.to_string())
    })
}

/// How a phone-home ended, as counted in `/_fake/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// A final refusal (no retry).
    Refused,
    /// Every attempt met a transient failure.
    Failed,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// What `curl -f --retry` makes of one attempt.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Done,
    Final(StatusCode),
    /// Retry, not before this (from `Retry-After`).
    Transient(Option<Duration>),
}

fn judge(status: StatusCode, retry_after: Option<&str>) -> Attempt {
    match status.as_u16() {
        0..400 => Attempt::Done,
        408 | 429 | 500 | 502 | 503 | 504 => {
            Attempt::Transient(retry_after.and_then(parse_retry_after))
        }
        _ => Attempt::Final(status),
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let ms = at.timestamp_millis().saturating_sub(now_ms() as i64).max(0);
    Some(Duration::from_millis(ms as u64))
}

fn retry_after(r: &reqwest::Response) -> Option<&str> {
    r.headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
}

/// A phone-home to make now.
struct Job {
    droplet: u64,
    url: String,
    public_ip: String,
    config: PhoneHome,
    /// The `max_in_flight` permits.
    slots: Arc<Semaphore>,
    generation: u64,
}

/// Queues the phone-homes of new droplets `ids` (at their boot), if enabled and their
/// user_data asks for one. Wake the scheduler afterwards.
pub fn schedule(inner: &mut Inner, ids: &[u64]) {
    if !inner.config.phone_home.enabled {
        return;
    }
    for id in ids {
        let Some(d) = inner.cloud.droplets().get(id) else {
            continue;
        };
        let wants = d.user_data.as_deref().and_then(phone_home_url).is_some();
        if wants && !d.phoned_home {
            inner
                .phone_home_due
                .insert((d.active_ms.max(d.ip_ms), d.id));
        }
    }
}

impl Inner {
    /// Takes the phone-homes due at `now`; also returns when the next one is due.
    fn take_due(&mut self, now: u64) -> (Vec<Job>, Option<u64>) {
        let mut jobs = Vec::new();
        while let Some(&(at, id)) = self.phone_home_due.first() {
            if at > now {
                return (jobs, Some(at));
            }
            self.phone_home_due.pop_first();
            // Destroyed or powered off before it booted: no script runs.
            let Some(d) = self.cloud.droplets().get(&id).filter(|d| !d.off) else {
                continue;
            };
            let Some(url) = d.user_data.as_deref().and_then(phone_home_url) else {
                continue;
            };
            jobs.push(Job {
                droplet: id,
                url,
                public_ip: d.public_ip(),
                config: self.config.phone_home.clone(),
                slots: self.phone_home_slots.clone(),
                generation: self.generation,
            });
        }
        (jobs, None)
    }
}

impl Fake {
    /// Re-queues the phone-homes of droplets loaded from a snapshot that had not phoned home.
    fn resume_phone_homes(&self) {
        let mut g = self.lock();
        let ids: Vec<u64> = g
            .cloud
            .droplets()
            .values()
            .filter(|d| !d.phoned_home)
            .map(|d| d.id)
            .collect();
        schedule(&mut g, &ids);
    }

    /// One phone-home, then its outcome recorded.
    async fn phone_home(self: Arc<Self>, job: Job) {
        let outcome = self.post(&job).await;
        let mut g = self.lock();
        if g.generation == job.generation {
            g.counters.phone_home(outcome.name());
            g.cloud.mark_phoned_home(job.droplet);
        }
        drop(g);
        self.mark_dirty();
    }

    /// The script's `curl -fsS --retry`, see the module doc.
    async fn post(&self, job: &Job) -> Outcome {
        let c = &job.config;
        let body = json!({ "droplet_id": job.droplet, "public_ip": job.public_ip, "status": "ok" });
        let attempts = c.attempts.max(1);
        for attempt in 1..=attempts {
            let slot = job.slots.acquire().await;
            let sent = self
                .http
                .post(&job.url)
                .timeout(Duration::from_millis(c.timeout_ms))
                .json(&body)
                .send()
                .await;
            drop(slot);
            let not_before = match sent {
                Ok(r) => match judge(r.status(), retry_after(&r)) {
                    Attempt::Done => return Outcome::Ok,
                    Attempt::Final(status) => {
                        tracing::warn!(droplet = job.droplet, %status, "phone-home refused; not retried");
                        return Outcome::Refused;
                    }
                    Attempt::Transient(not_before) => {
                        tracing::debug!(droplet = job.droplet, attempt, status = %r.status(), "phone-home to retry");
                        not_before
                    }
                },
                Err(e) => {
                    tracing::debug!(droplet = job.droplet, attempt, error = %e.without_url(), "phone-home to retry");
                    None
                }
            };
            if attempt < attempts {
                let delay = Duration::from_millis(c.retry_delay_ms);
                tokio::time::sleep(not_before.map_or(delay, |d| d.max(delay))).await;
            }
        }
        tracing::warn!(
            droplet = job.droplet,
            attempts,
            "phone-home failed: attempts exhausted"
        );
        Outcome::Failed
    }
}

/// Starts the phone-homes as they fall due, until aborted.
pub fn spawn_scheduler(fake: Arc<Fake>) -> tokio::task::JoinHandle<()> {
    fake.resume_phone_homes();
    tokio::spawn(async move {
        loop {
            let (jobs, next) = fake.lock().take_due(now_ms());
            for job in jobs {
                tokio::spawn(fake.clone().phone_home(job));
            }
            let wait = next.map_or(IDLE, |at| {
                Duration::from_millis(at.saturating_sub(now_ms()))
            });
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = fake.phone_home_wake.notified() => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `curl -f --retry`'s classification (curl's tool_operate.c): only these statuses retry.
    #[test]
    fn statuses_are_judged_like_curl() {
        let t = |s: u16| judge(StatusCode::from_u16(s).unwrap(), None);
        for s in [200, 201, 204, 301, 302, 399] {
            assert_eq!(t(s), Attempt::Done, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(t(s), Attempt::Transient(None), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 410, 422, 501, 505] {
            assert!(matches!(t(s), Attempt::Final(_)), "{s}");
        }
        assert_eq!(
            judge(StatusCode::SERVICE_UNAVAILABLE, Some("7")),
            Attempt::Transient(Some(Duration::from_secs(7)))
        );
        assert_eq!(
            judge(
                StatusCode::TOO_MANY_REQUESTS,
                Some("Wed, 21 Oct 2015 07:28:00 GMT")
            ),
            Attempt::Transient(Some(Duration::ZERO)),
            "a date in the past: at once"
        );
        assert_eq!(
            judge(StatusCode::FORBIDDEN, Some("5")),
            Attempt::Final(StatusCode::FORBIDDEN),
            "Retry-After does not make a 403 transient"
        );
    }

    #[test]
    fn marker_line_gives_the_url() {
        let ud = "#!/bin/sh\n  # talis-phone-home: http://h:1/v1/phone-home/3?token=x \nrest\n";
        assert_eq!(
            phone_home_url(ud).as_deref(),
            Some("http://h:1/v1/phone-home/3?token=x")
        );
        assert_eq!(phone_home_url("# talis-phone-home: ftp://h/x"), None);
        assert_eq!(phone_home_url("#!/bin/sh\necho hi\n"), None);
    }
}
