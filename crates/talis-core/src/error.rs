//! The domain error. Converted to the wire format in one place (`talis_api::RpcError::from`).

/// Everything a call can fail with. Every client mistake maps to a 4xx; only a storage failure
/// that is not the caller's fault is a 500.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// The envelope or body itself is unusable (bad JSON, missing method).
    #[error("{0}")]
    BadRequest(String),
    /// One field of the params is wrong; `field` is its path, e.g. `instances[2].volumes[0].size_gb`.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("unknown method '{0}'")]
    UnknownMethod(String),
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    /// Not found, or owned by someone else (never leak existence).
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("database error: {0}")]
    Db(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The HTTP status (and envelope `error.code`) of this error.
    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest(_) | Error::Invalid { .. } | Error::UnknownMethod(_) => 400,
            Error::Unauthorized => 401,
            Error::Forbidden(_) => 403,
            Error::NotFound(_) => 404,
            Error::Conflict(_) => 409,
            Error::TooLarge(_) => 413,
            Error::Db(_) => 500,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
