//! Provider errors, classified once: the workflows retry what [`Error::is_retryable`] says and
//! show the rest to the user.

use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The provider answered with an error status (other than 429). `id` and `message` are the
    /// provider's own (DigitalOcean: `{"id","message","request_id"}`).
    #[error("provider answered {status} ({id}): {message}")]
    Api {
        status: u16,
        id: String,
        message: String,
        request_id: Option<String>,
    },
    /// 429, or our own limiter says the token's quota is exhausted for longer than we wait.
    #[error("rate limited by the provider; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    #[error("request to the provider timed out")]
    Timeout,
    /// Could not connect (refused, DNS...). Nothing reached the provider.
    #[error("cannot connect to the provider: {0}")]
    Connect(String),
    /// The connection broke mid-request or mid-response: the request may or may not have taken
    /// effect (only idempotent operations may blindly retry).
    #[error("connection to the provider broke: {0}")]
    Transport(String),
    /// A 2xx answer we cannot understand: a contract mismatch, not worth retrying.
    #[error("unexpected answer from the provider: {0}")]
    Decode(String),
    /// Input refused before any call; names the offending field.
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// An idempotency invariant failed (e.g. two machines carry one instance's tag).
    #[error("{0}")]
    Conflict(String),
}

impl Error {
    /// Retryable: 429, 5xx, timeouts, connection errors. Everything else is terminal.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api { status, .. } => *status >= 500,
            Error::RateLimited { .. }
            | Error::Timeout
            | Error::Connect(_)
            | Error::Transport(_) => true,
            Error::Decode(_) | Error::Invalid { .. } | Error::Conflict(_) => false,
        }
    }

    /// How long to wait before retrying, when the provider said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            Error::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            message: message.into(),
        }
    }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        let (timeout, connect, decode) = (e.is_timeout(), e.is_connect(), e.is_decode());
        // The whole cause chain (e.g. "... connection reset by peer"), without the URL.
        let e = e.without_url();
        let mut detail = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            src = s.source();
        }
        if timeout {
            Error::Timeout
        } else if connect {
            Error::Connect(detail)
        } else if decode {
            Error::Decode(detail)
        } else {
            Error::Transport(detail)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let api = |status| Error::Api {
            status,
            id: "x".into(),
            message: "m".into(),
            request_id: None,
        };
        let cases = [
            (api(500), true),
            (api(503), true),
            (api(400), false),
            (api(404), false),
            (api(422), false),
            (
                Error::RateLimited {
                    retry_after: Duration::from_secs(1),
                },
                true,
            ),
            (Error::Timeout, true),
            (Error::Connect("refused".into()), true),
            (Error::Transport("reset".into()), true),
            (Error::Decode("bad json".into()), false),
            (Error::invalid("name", "empty"), false),
            (Error::Conflict("two".into()), false),
        ];
        for (e, retryable) in cases {
            assert_eq!(e.is_retryable(), retryable, "{e:?}");
        }
    }
}
