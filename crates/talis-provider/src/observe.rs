//! The one place a client reports what it did with the provider, for metrics: every HTTP
//! exchange (endpoint template, status, duration) and every wait for the rate limit. The
//! workflows plug their Prometheus counters in here; the client itself keeps no metrics.

use std::time::Duration;

/// One HTTP exchange with the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exchange {
    /// `GET`, `POST`, `DELETE` …
    pub method: &'static str,
    /// The path template, e.g. `/v2/droplets/{id}`: never a raw id, so it is a bounded label.
    pub endpoint: &'static str,
    /// The status answered; `None` when no answer came (timeout, connection failure).
    pub status: Option<u16>,
    /// From sending the request to the end of the answer's body.
    pub elapsed: Duration,
}

/// Receives what a client did. Called inline on every request: keep it cheap (counters).
pub trait Observer: Send + Sync {
    /// One exchange ended (each attempt of a retried request is one exchange).
    fn exchange(&self, exchange: &Exchange);

    /// The client paused `wait` before sending, for the provider's rate limit (its own
    /// limiter, or a 429's `retry-after` before an ensure round's next look-up).
    fn rate_limit_wait(&self, wait: Duration) {
        let _ = wait;
    }
}

/// A request path and the template it was made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Path {
    pub template: &'static str,
    pub path: String,
}

impl Path {
    /// A path without parameters.
    pub(crate) fn fixed(template: &'static str) -> Self {
        Self {
            template,
            path: template.to_owned(),
        }
    }

    /// `template` with its one `{…}` placeholder replaced by `value`.
    pub(crate) fn with(template: &'static str, value: impl std::fmt::Display) -> Self {
        let path = match (template.find('{'), template.find('}')) {
            (Some(open), Some(close)) if open < close => {
                format!("{}{value}{}", &template[..open], &template[close + 1..])
            }
            _ => template.to_owned(),
        };
        Self { template, path }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_their_placeholder() {
        let p = Path::with("/v2/droplets/{id}/actions", 42);
        assert_eq!(p.path, "/v2/droplets/42/actions");
        assert_eq!(p.template, "/v2/droplets/{id}/actions");
        assert_eq!(
            Path::with("/v2/volumes/{id}", "ab-c").path,
            "/v2/volumes/ab-c"
        );
        assert_eq!(Path::fixed("/v2/droplets").path, "/v2/droplets");
    }
}
