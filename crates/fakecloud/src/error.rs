//! DigitalOcean's error answer, `{"id","message","request_id"}` with a status, as one type
//! that every resource returns and the HTTP edge (`server::wire`) renders.

use serde_json::Value;

/// An error answered with DigitalOcean's body `{"id","message","request_id"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub id: &'static str,
    pub message: String,
    /// The tags API answers 400 with `{"error","messages","root_causes"}` instead.
    pub with_root_causes: bool,
}

impl ApiError {
    pub fn new(status: u16, id: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            id,
            message: message.into(),
            with_root_causes: false,
        }
    }
    pub fn not_found() -> Self {
        Self::new(
            404,
            "not_found",
            "The resource you were accessing could not be found.",
        )
    }
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, "unprocessable_entity", message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "bad_request", message)
    }
    pub fn too_many_requests() -> Self {
        Self::new(429, "too_many_requests", "API Rate limit exceeded.")
    }
    /// The tags API's 400 shape.
    pub fn tag_bad_request(message: impl Into<String>) -> Self {
        ApiError {
            with_root_causes: true,
            ..Self::bad_request(message)
        }
    }
}

/// A status and an optional JSON body, or an error.
pub type Answer = Result<(u16, Option<Value>), ApiError>;
