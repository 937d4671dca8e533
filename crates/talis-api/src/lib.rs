//! The wire contract of the Talis API: the envelope, the REST "slug" envelope, and the params and
//! results of every method. Domain models and params come from `talis-core` (the service decodes
//! them there) and are re-exported here, so clients depend on this crate only.

pub mod internal;
pub mod openapi;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
pub use talis_core::Error;
pub use talis_core::model::*;
pub use talis_core::params::*;
pub use talis_core::service::{DEFAULT_LIMIT, MAX_LIMIT, METHODS};
pub use talis_core::status::*;

/// `POST /api/v1/` body: `{method, params, id}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RpcRequest {
    pub method: String,
    #[serde(default)]
    pub params: Value,
    /// Echoed back; a string (the original) or a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
}

/// The answer of every RPC route, success or not. The HTTP status equals `error.code` on error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RpcResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    pub success: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RpcError {
    /// The HTTP status: 400 invalid, 401 no/invalid key, 403 not allowed, 404 not found (or not
    /// yours), 409 conflict, 413 too large, 500 storage failure.
    pub code: u16,
    pub message: String,
    /// For validation errors: `{"field": "<path>", "reason": "..."}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl From<&Error> for RpcError {
    /// The one place domain errors become wire errors. Storage details stay out of answers.
    fn from(e: &Error) -> Self {
        let (message, data) = match e {
            Error::Invalid { field, reason } => (
                e.to_string(),
                Some(serde_json::json!({ "field": field, "reason": reason })),
            ),
            Error::Db(_) => ("internal database error".to_owned(), None),
            other => (other.to_string(), None),
        };
        RpcError {
            code: e.status(),
            message,
            data,
        }
    }
}

impl RpcResponse {
    pub fn ok(data: Option<Value>, id: Option<Value>) -> Self {
        Self {
            data,
            error: None,
            id,
            success: true,
        }
    }
    pub fn err(e: &Error, id: Option<Value>) -> Self {
        Self {
            data: None,
            error: Some(e.into()),
            id,
            success: false,
        }
    }
    /// The HTTP status of this answer.
    pub fn status(&self) -> u16 {
        self.error.as_ref().map_or(200, |e| e.code)
    }
}

/// The original's REST envelope (`POST`/`DELETE /api/v1/instances`, instance tasks):
/// every key always present.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Slug {
    /// `success`, `invalid-input`, `not-found`, `server-error` or `error`.
    pub slug: String,
    pub error: String,
    pub data: Value,
}

impl Slug {
    pub fn ok(data: Value) -> Self {
        Slug {
            slug: "success".into(),
            error: String::new(),
            data,
        }
    }
    pub fn err(e: &Error) -> Self {
        let slug = match e.status() {
            400 | 413 => "invalid-input",
            404 => "not-found",
            500.. => "server-error",
            _ => "error",
        };
        Slug {
            slug: slug.into(),
            error: RpcError::from(e).message,
            data: Value::Null,
        }
    }
}

/// `GET /health`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    pub status: String,
}

/// Largest accepted request body (a 10 000-instance create with inline scripts fits).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_once() {
        let e = RpcError::from(&Error::invalid("instances[0].region", "is required"));
        assert_eq!(e.code, 400);
        assert_eq!(e.message, "instances[0].region: is required");
        assert_eq!(e.data.unwrap()["field"], "instances[0].region");
        let db = RpcError::from(&Error::Db("no such table: secret_stuff".into()));
        assert_eq!(
            (db.code, db.message.as_str()),
            (500, "internal database error")
        );
        assert_eq!(Slug::err(&Error::NotFound("instance")).slug, "not-found");
    }

    #[test]
    fn envelope_shape_matches_the_original() {
        let ok = serde_json::to_value(RpcResponse::ok(None, Some("1".into()))).unwrap();
        assert_eq!(ok, serde_json::json!({ "id": "1", "success": true }));
        let err = serde_json::to_value(RpcResponse::err(&Error::NotFound("task"), None)).unwrap();
        assert_eq!(
            err,
            serde_json::json!({ "error": { "code": 404, "message": "task not found" }, "success": false })
        );
    }
}
