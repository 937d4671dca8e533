//! What can go wrong talking to Talis, split by what the caller can do about it: fix the request
//! (`Api`, with the server's field path), wait for the server (`Connect`), or report a bug
//! (`Protocol`).

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached even after the connection retries. Nothing was sent, so
    /// retrying later is always safe.
    #[error("cannot connect to {url} ({attempts} attempts): {}", root_cause(.source))]
    Connect {
        url: String,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },
    /// The request failed after it may have reached the server (timeout, reset mid-answer). Not
    /// retried automatically: a create may already have happened.
    #[error("request to {url} failed: {}", root_cause(.source))]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error envelope.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The server answered something that is not a Talis envelope (wrong URL, proxy page, bug).
    #[error("unexpected response from {url} (HTTP {status}): {detail}")]
    Protocol {
        url: String,
        status: u16,
        detail: String,
    },
    /// The client was configured with an unusable base URL or key.
    #[error("invalid client configuration: {0}")]
    Config(String),
}

/// The innermost cause ("Connection refused", "operation timed out"): reqwest's own message only
/// says that sending failed.
fn root_cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

impl Error {
    /// The server's error, if the server answered with one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            _ => None,
        }
    }
}

/// An error answered by the server: `{"error": {"code", "message", "data"}}` plus the HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status of the answer.
    pub status: u16,
    /// `error.code` of the envelope (equals the HTTP status for Talis).
    pub code: i64,
    /// What went wrong, as a word a program can match.
    pub kind: talis_api::ErrorKind,
    /// Human-readable message.
    pub message: String,
    /// Structured details, e.g. the offending field.
    pub data: Option<Value>,
}

impl ApiError {
    /// The path of the offending field (e.g. `instances[2].region`), when the server named one.
    pub fn field(&self) -> Option<&str> {
        let data = self.data.as_ref()?;
        ["field", "path"]
            .iter()
            .find_map(|k| data.get(*k).and_then(Value::as_str))
    }

    pub fn is_not_found(&self) -> bool {
        self.status == 404
    }

    pub fn is_unauthorized(&self) -> bool {
        self.status == 401 || self.status == 403
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)?;
        // Validation messages usually start with the field path already.
        if let Some(field) = self.field()
            && !self.message.contains(field)
        {
            write!(f, " (field: {field})")?;
        }
        write!(f, " [HTTP {}]", self.status)
    }
}

impl std::error::Error for ApiError {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
