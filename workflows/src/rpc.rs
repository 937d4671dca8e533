//! Client of the component's internal RPC (`POST {api}/internal/v1/<method>`, bearer secret).
//! Every method is idempotent on the component side, so a step that retries it is safe.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why an internal call failed, classified once for the retry policy of the calling step.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Network trouble or a 5xx: the component may be restarting; retry.
    #[error("internal RPC {method} unavailable: {detail}")]
    Unavailable { method: String, detail: String },
    /// The component refused the call (4xx, e.g. an illegal transition): retrying cannot help.
    #[error("internal RPC {method} refused ({code}): {message}")]
    Refused {
        method: String,
        code: String,
        message: String,
    },
}

impl RpcError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, RpcError::Unavailable { .. })
    }
}

#[derive(Clone)]
pub struct Internal {
    http: reqwest::Client,
    base: String,
    secret: String,
}

impl Internal {
    pub fn new(api_url: &str, secret: &str) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(64)
                .build()?,
            base: format!("{}/internal/v1", api_url.trim_end_matches('/')),
            secret: secret.to_string(),
        })
    }

    /// Calls `method` with `params` as the body; returns the envelope's `data`.
    pub async fn call<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<R, RpcError> {
        let unavailable = |detail: String| RpcError::Unavailable {
            method: method.to_string(),
            detail,
        };
        let resp = self
            .http
            .post(format!("{}/{method}", self.base))
            .bearer_auth(&self.secret)
            .json(params)
            .send()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(unavailable(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )));
        }
        let envelope: Value = serde_json::from_slice(&body).map_err(|e| RpcError::Refused {
            method: method.to_string(),
            code: status.as_u16().to_string(),
            message: format!("undecodable answer: {e}"),
        })?;
        let failed =
            !status.is_success() || envelope.get("success").and_then(Value::as_bool) == Some(false);
        if failed {
            let err = envelope.get("error").cloned().unwrap_or(Value::Null);
            return Err(RpcError::Refused {
                method: method.to_string(),
                code: err
                    .get("code")
                    .map(|c| c.to_string().trim_matches('"').to_string())
                    .unwrap_or_else(|| status.as_u16().to_string()),
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("no message")
                    .to_string(),
            });
        }
        let data = match envelope {
            Value::Object(mut m) if m.contains_key("success") => {
                m.remove("data").unwrap_or(Value::Null)
            }
            other => other,
        };
        serde_json::from_value(data).map_err(|e| RpcError::Refused {
            method: method.to_string(),
            code: "decode".into(),
            message: e.to_string(),
        })
    }
}
