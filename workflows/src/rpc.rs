//! Client of the component's internal RPC (`POST {api}/internal/v1/<method>`, bearer secret),
//! typed by the method table: `call::<TaskClaim>(&params)` sends that method's params and
//! decodes its result. Every method is idempotent on the component side, so a step that
//! retries it is safe.

use std::time::Duration;

use talis_api::methods::Method;
use talis_api::{ErrorKind, RpcResponse};

/// Why an internal call failed, classified once for the retry policy of the calling step.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Network trouble, a 5xx or a 429: the component may be restarting or busy; retry.
    #[error("internal RPC {method} unavailable: {detail}")]
    Unavailable {
        method: &'static str,
        detail: String,
    },
    /// The component refused the call (4xx): retrying cannot help.
    #[error("internal RPC {method} refused ({kind:?}): {message}")]
    Refused {
        method: &'static str,
        kind: Option<ErrorKind>,
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
                .connect_timeout(Duration::from_secs(5))
                .pool_max_idle_per_host(64)
                .build()?,
            base: format!("{}/internal/v1", api_url.trim_end_matches('/')),
            secret: secret.to_string(),
        })
    }

    /// Calls method `M` and returns its result.
    pub async fn call<M: Method>(&self, params: &M::Params) -> Result<M::Result, RpcError> {
        let method = M::NAME;
        let unavailable = |detail: String| RpcError::Unavailable { method, detail };
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
        let refused = |kind, message: String| RpcError::Refused {
            method,
            kind,
            message,
        };
        let envelope: RpcResponse = serde_json::from_slice(&body)
            .map_err(|e| refused(None, format!("{status}: undecodable answer: {e}")))?;
        if let Some(e) = envelope.error {
            return Err(refused(Some(e.kind), e.message));
        }
        if !status.is_success() {
            return Err(refused(None, format!("{status} without an error")));
        }
        serde_json::from_value(envelope.data.unwrap_or(serde_json::Value::Null))
            .map_err(|e| refused(None, format!("answer does not match the contract: {e}")))
    }
}
