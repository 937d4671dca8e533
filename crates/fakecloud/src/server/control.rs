//! The control routes under `/_fake/` (no token, never rate-limited or faulted): `health`,
//! `stats`, `config` (read, or replace the knobs at run time) and `reset`.
//!
//! The snapshot path is not a run-time knob: it is where the fake writes its state, set at
//! start-up (`--snapshot`); a `PUT /_fake/config` that names another path is refused with 400,
//! so the control route cannot be made to write files anywhere on disk.

use std::path::PathBuf;
use std::sync::Arc;

use http::{Method, Request};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::wire::{Resp, error_response, json_response, read_json};
use crate::config::Config;
use crate::error::ApiError;
use crate::fake::Fake;

impl Fake {
    pub(super) async fn control(self: Arc<Self>, req: Request<Incoming>, what: &str) -> Resp {
        let method = req.method().clone();
        match (method, what) {
            (Method::GET, "health") => json_response(200, Some(json!({"status": "ok"})), None),
            (Method::GET, "stats") => json_response(200, Some(self.stats()), None),
            (Method::GET, "config") => {
                let c = self.lock().config.clone();
                json_response(200, Some(serde_json::to_value(c).unwrap_or_default()), None)
            }
            (Method::PUT, "config") => match read_json(req).await {
                Ok(body) => match self.replace_config(body) {
                    Ok(c) => {
                        json_response(200, Some(serde_json::to_value(c).unwrap_or_default()), None)
                    }
                    Err(e) => error_response(&e, None),
                },
                Err(e) => error_response(&e, None),
            },
            (Method::POST, "reset") => {
                self.reset();
                json_response(204, None, None)
            }
            _ => error_response(&ApiError::not_found(), None),
        }
    }

    /// `PUT /_fake/config`: the new knobs (absent fields take their defaults), refused whole
    /// if it would move the snapshot.
    fn replace_config(&self, body: Value) -> Result<Config, ApiError> {
        if let Some(asked) = body.get("snapshot") {
            let asked: Option<PathBuf> = serde_json::from_value(asked.clone())
                .map_err(|e| ApiError::bad_request(format!("snapshot: {e}")))?;
            if asked != self.snapshot {
                return Err(ApiError::bad_request(
                    "snapshot: the snapshot path is set at start-up (--snapshot) and cannot be changed through /_fake/config",
                ));
            }
        }
        let config: Config = serde_json::from_value(body)
            .map_err(|e| ApiError::unprocessable(format!("config: {e}")))?;
        self.set_config(config);
        Ok(self.lock().config.clone())
    }
}
