//! DigitalOcean's HTTP shapes in and out: a JSON request body (size-limited), and answers with
//! its headers (`content-type`, `x-request-id`, `ratelimit-*`, `retry-after`) and error
//! bodies.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::ratelimit::Verdict;

/// Largest request body accepted (user_data is ≤ 64 KiB).
const MAX_BODY: usize = 1 << 20;

pub type Resp = Response<Full<Bytes>>;

/// The request's JSON body; `Null` when empty.
pub async fn read_json(req: Request<Incoming>) -> Result<Value, ApiError> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| {
            ApiError::bad_request(format!(
                "request body too large (over {MAX_BODY} bytes) or unreadable"
            ))
        })?
        .to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))
}

pub fn json_response(status: u16, body: Option<Value>, rl: Option<Verdict>) -> Resp {
    text_response(status, body.map(|b| b.to_string()).unwrap_or_default(), rl)
}

/// A JSON answer (empty text: no body, as for 204) with DigitalOcean's headers.
pub fn text_response(status: u16, body: String, rl: Option<Verdict>) -> Resp {
    let has_body = !body.is_empty();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    if has_body {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        h.insert("x-request-id", v);
    }
    if let Some(v) = rl {
        h.insert("ratelimit-limit", v.limit.into());
        h.insert("ratelimit-remaining", v.remaining.into());
        h.insert("ratelimit-reset", v.reset.into());
        if let Some(s) = v.retry_after {
            h.insert(header::RETRY_AFTER, s.into());
        }
    }
    r
}

/// DigitalOcean's error body (or the tags API's variant); a 429 always says when to retry.
pub fn error_response(e: &ApiError, rl: Option<Verdict>) -> Resp {
    let request_id = uuid::Uuid::new_v4().to_string();
    let body = if e.with_root_causes {
        json!({ "error": e.message, "messages": null, "root_causes": [e.message] })
    } else {
        json!({ "id": e.id, "message": e.message, "request_id": request_id })
    };
    let mut r = json_response(e.status, Some(body), rl);
    if e.status == 429 && !r.headers().contains_key(header::RETRY_AFTER) {
        r.headers_mut().insert(header::RETRY_AFTER, 1u64.into());
    }
    r
}
