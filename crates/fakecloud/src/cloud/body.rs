//! Reading DigitalOcean request bodies: required strings and string lists, refused with the
//! 422 messages DigitalOcean gives.

use serde_json::Value;

use crate::error::ApiError;

/// A required, non-blank string field.
pub fn str_field<'a>(body: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    body.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::unprocessable(format!("{field} is required")))
}

/// An optional list of strings (absent or null: empty).
pub fn string_list(body: &Value, field: &str) -> Result<Vec<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::unprocessable(format!("{field} must be strings")))
            })
            .collect(),
        Some(_) => Err(ApiError::unprocessable(format!("{field} must be an array"))),
    }
}

/// An optional string field, empty when absent.
pub fn optional_str<'a>(body: &'a Value, field: &str) -> &'a str {
    body.get(field).and_then(Value::as_str).unwrap_or("")
}
