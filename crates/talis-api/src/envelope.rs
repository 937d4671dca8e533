//! The wire envelopes: the Talis RPC envelope `{method, params, id}` → `{data, error, id,
//! success}`, the original REST routes' slug envelope `{slug, error, data}`, and the plain
//! `{error}` body of routing errors (404, 405). Each is declared here exactly as it is sent.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /api/v1/` body: `{method, params, id}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RpcRequest {
    pub method: String,
    /// The method's params; absent or `null` means no params (`{}`).
    #[serde(default = "no_params", deserialize_with = "null_as_no_params")]
    pub params: Value,
    /// Echoed back; a string (the original) or a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
}

fn no_params() -> Value {
    Value::Object(Default::default())
}

fn null_as_no_params<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => no_params(),
        v => v,
    })
}

/// The answer of every RPC route, success or not. The HTTP status equals `error.code` on error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RpcResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "request_id_schema")]
    pub id: Option<Value>,
    pub success: bool,
}

pub(crate) fn request_id_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "The request's `id`, echoed back: a string or a number (null: none).",
        "oneOf": [{ "type": "string", "nullable": true }, { "type": "number" }]
    })
}

/// What went wrong, as a word a program can match (the HTTP status is in `code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The body is not usable JSON, or the envelope is malformed.
    BadRequest,
    /// One field of the params is wrong (`data.field`, `data.reason`).
    Invalid,
    UnknownMethod,
    /// No API key, or an unknown or revoked one.
    Unauthorized,
    /// The key may not do this (admin only, another owner's `owner_id`).
    Forbidden,
    /// Not found, or owned by someone else.
    NotFound,
    /// The request conflicts with what exists (a name taken, an idempotency key reused).
    Conflict,
    /// A status change not allowed from the current status.
    IllegalTransition,
    /// The task is finished and may not change its instances any more.
    TaskFinished,
    /// Over an owner's quota (`data`: the quota, its limit, the current use and the request).
    QuotaExceeded,
    /// The body is larger than the limit.
    TooLarge,
    /// Not now: retry after the `Retry-After` seconds (503).
    RetryLater,
    /// A storage failure that is not the caller's fault.
    Internal,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RpcError {
    /// The HTTP status: 400 invalid, 401 no/invalid key, 403 not allowed or over quota, 404 not
    /// found (or not yours), 409 conflict, 413 too large, 500 storage failure.
    pub code: u16,
    pub kind: ErrorKind,
    pub message: String,
    /// Validation errors: `{"field": "<path>", "reason": "...", "errors": [{field, reason}…]}`;
    /// quota errors: `{"quota", "limit", "used", "requested"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
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

    pub fn err(error: RpcError, id: Option<Value>) -> Self {
        Self {
            data: None,
            error: Some(error),
            id,
            success: false,
        }
    }

    /// The HTTP status of this answer.
    pub fn status(&self) -> u16 {
        self.error.as_ref().map_or(200, |e| e.code)
    }
}

/// The original's REST envelope (`POST`/`DELETE /api/v1/instances`, instance tasks, and the
/// errors of its instance reads): every key always present.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Slug {
    pub slug: SlugKind,
    /// Empty on success.
    pub error: String,
    /// The result; null on error.
    pub data: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SlugKind {
    Success,
    InvalidInput,
    NotFound,
    ServerError,
    Error,
}

impl Slug {
    pub fn ok(data: Value) -> Self {
        Slug {
            slug: SlugKind::Success,
            error: String::new(),
            data,
        }
    }

    pub fn err(e: &RpcError) -> Self {
        let slug = match e.code {
            400 | 413 => SlugKind::InvalidInput,
            404 => SlugKind::NotFound,
            500.. => SlugKind::ServerError,
            _ => SlugKind::Error,
        };
        Slug {
            slug,
            error: e.message.clone(),
            data: Value::Null,
        }
    }
}

/// The body of a routing error: an unknown path (404) or a known path called with a method it
/// does not serve (405, with `Allow`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RouteError {
    pub error: String,
}

/// `GET /health`: liveness.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    pub status: String,
}

/// `GET /ready`: the database answers and its schema is the one this build expects (200), or
/// why not (503).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Readiness {
    /// `ready` or `not ready`.
    pub status: String,
    /// The database's schema version; null when the database did not answer.
    pub schema_version: Option<i64>,
    /// The schema version this build expects.
    pub latest_schema_version: i64,
    /// Why it is not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_shape_matches_the_original() {
        let ok = serde_json::to_value(RpcResponse::ok(None, Some("1".into()))).unwrap();
        assert_eq!(ok, serde_json::json!({ "id": "1", "success": true }));
        let e = RpcError {
            code: 404,
            kind: ErrorKind::NotFound,
            message: "task not found".into(),
            data: None,
        };
        assert_eq!(Slug::err(&e).slug, SlugKind::NotFound);
        let err = serde_json::to_value(RpcResponse::err(e, None)).unwrap();
        assert_eq!(
            err,
            serde_json::json!({ "error": { "code": 404, "kind": "not_found", "message": "task not found" }, "success": false })
        );
    }
}
