//! The domain error, and the one place it becomes a wire error ([`Error::to_wire`]).

use serde_json::json;
use talis_api::decode::Invalid;
use talis_api::{ErrorKind, IllegalTransition, RpcError};

/// Everything a call can fail with. Every client mistake maps to a 4xx; only a storage failure
/// that is not the caller's fault is a 500.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// The body itself is unusable (bad JSON, a malformed envelope, a missing body).
    #[error("{0}")]
    BadRequest(String),
    /// The params: the first field that is wrong, and the others.
    #[error("{0}")]
    Invalid(Invalid),
    #[error("unknown method '{0}'")]
    UnknownMethod(String),
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    /// Not found, or owned by someone else (never leak existence).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A name in the params refers to nothing (e.g. a stored SSH key).
    #[error("{field}: {what} not found")]
    NotFoundField { field: String, what: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    IllegalTransition(IllegalTransition),
    /// A finished task may not change its instances (except to compensate a terminated one).
    #[error("task {0} is {1}")]
    TaskFinished(i64, &'static str),
    /// Over an owner's quota: nothing was written.
    #[error("quota {quota} exceeded: {used} in use + {requested} requested > limit {limit}")]
    QuotaExceeded {
        quota: &'static str,
        limit: i64,
        used: i64,
        requested: i64,
    },
    /// Not now: the caller should try again after `after_secs` (answered 503 + `Retry-After`).
    #[error("{reason}; retry in {after_secs} s")]
    RetryLater { reason: String, after_secs: u32 },
    #[error("request body is larger than {0} bytes (max_body_bytes)")]
    TooLarge(usize),
    #[error("database error: {0}")]
    Db(String),
}

impl From<Invalid> for Error {
    fn from(e: Invalid) -> Self {
        Error::Invalid(e)
    }
}

impl From<IllegalTransition> for Error {
    fn from(e: IllegalTransition) -> Self {
        Error::IllegalTransition(e)
    }
}

impl Error {
    /// One field is wrong.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid(Invalid::field(field, reason))
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadRequest(_) => ErrorKind::BadRequest,
            Error::Invalid(_) => ErrorKind::Invalid,
            Error::UnknownMethod(_) => ErrorKind::UnknownMethod,
            Error::Unauthorized => ErrorKind::Unauthorized,
            Error::Forbidden(_) => ErrorKind::Forbidden,
            Error::NotFound(_) | Error::NotFoundField { .. } => ErrorKind::NotFound,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::IllegalTransition(_) => ErrorKind::IllegalTransition,
            Error::TaskFinished(..) => ErrorKind::TaskFinished,
            Error::QuotaExceeded { .. } => ErrorKind::QuotaExceeded,
            Error::TooLarge(_) => ErrorKind::TooLarge,
            Error::RetryLater { .. } => ErrorKind::RetryLater,
            Error::Db(_) => ErrorKind::Internal,
        }
    }

    /// The HTTP status (and envelope `error.code`) of this error.
    pub fn status(&self) -> u16 {
        match self.kind() {
            ErrorKind::BadRequest | ErrorKind::Invalid | ErrorKind::UnknownMethod => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden | ErrorKind::QuotaExceeded => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict | ErrorKind::IllegalTransition | ErrorKind::TaskFinished => 409,
            ErrorKind::TooLarge => 413,
            ErrorKind::RetryLater => 503,
            ErrorKind::Internal => 500,
        }
    }

    /// Seconds to put in `Retry-After`, for errors that ask to be retried.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Error::RetryLater { after_secs, .. } => Some(*after_secs),
            _ => None,
        }
    }

    /// The one place domain errors become wire errors. Storage details stay out of answers.
    pub fn to_wire(&self) -> RpcError {
        let data = match self {
            Error::Invalid(e) => {
                let all: Vec<_> = std::iter::once(&e.first)
                    .chain(&e.others)
                    .map(|f| json!({ "field": f.field, "reason": f.reason }))
                    .collect();
                Some(json!({ "field": e.first.field, "reason": e.first.reason, "errors": all }))
            }
            Error::NotFoundField { field, .. } => Some(json!({ "field": field })),
            Error::QuotaExceeded {
                quota,
                limit,
                used,
                requested,
            } => Some(
                json!({ "quota": quota, "limit": limit, "used": used, "requested": requested }),
            ),
            _ => None,
        };
        let message = match self {
            Error::Db(_) => "internal database error".to_owned(),
            other => other.to_string(),
        };
        RpcError {
            code: self.status(),
            kind: self.kind(),
            message,
            data,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_once() {
        let e = Error::invalid("instances[0].region", "is required").to_wire();
        assert_eq!((e.code, e.kind), (400, ErrorKind::Invalid));
        assert_eq!(e.message, "instances[0].region: is required");
        assert_eq!(e.data.unwrap()["field"], "instances[0].region");
        let db = Error::Db("no such table: secret_stuff".into()).to_wire();
        assert_eq!(
            (db.code, db.message.as_str()),
            (500, "internal database error")
        );
        let q = Error::QuotaExceeded {
            quota: "max_instances_per_owner",
            limit: 10,
            used: 8,
            requested: 5,
        }
        .to_wire();
        assert_eq!((q.code, q.kind), (403, ErrorKind::QuotaExceeded));
        assert!(q.message.contains("max_instances_per_owner"));
    }
}
