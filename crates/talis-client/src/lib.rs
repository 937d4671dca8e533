//! Typed async Rust client for the Talis API.
//!
//! One [`Client`] speaks both wire forms of the API: the envelope route (`POST /api/v1/` with
//! `{method, params, id}`) and the typed routes (`POST /v1/<method>` with the params as body).
//! Both answer the same envelope; errors come back as [`Error::Api`] carrying the server's
//! message and field path. Only connection failures are retried: then nothing reached the server.

mod error;
mod methods;

/// The wire types (params, results, models, statuses) of `talis-api`, re-exported for callers.
pub mod wire {
    pub use talis_api::*;
}

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

pub use error::{ApiError, Error, Result};

/// Which of the two equivalent routes requests go to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Route {
    /// `POST /api/v1/` with `{method, params, id}` (the original Talis form).
    #[default]
    Envelope,
    /// `POST /v1/<method>` with the params as the body.
    Typed,
}

/// Connection retries: exponential backoff from `initial`, doubling, at most `attempts` tries.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 5,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        }
    }
}

impl Retry {
    /// No retries at all (fail on the first connection error).
    pub fn none() -> Self {
        Self {
            attempts: 1,
            ..Self::default()
        }
    }

    fn delay(&self, attempt: u32) -> Duration {
        self.initial
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max)
    }
}

#[derive(Clone, Debug)]
pub struct ClientBuilder {
    base: String,
    api_key: Option<String>,
    timeout: Duration,
    retry: Retry,
    route: Route,
}

impl ClientBuilder {
    /// `Authorization: Bearer <key>` on every request.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into()).filter(|k| !k.is_empty());
        self
    }

    /// Whole-request timeout (default 30 s, as the original client).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    pub fn retry(mut self, r: Retry) -> Self {
        self.retry = r;
        self
    }

    pub fn route(mut self, r: Route) -> Self {
        self.route = r;
        self
    }

    pub fn build(self) -> Result<Client> {
        let mut base = Url::parse(&self.base)
            .map_err(|e| Error::Config(format!("API URL {:?}: {e}", self.base)))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "API URL {:?}: scheme must be http or https",
                self.base
            )));
        }
        // A base with a path prefix (behind a gateway) must end in '/' for `join` to keep it.
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        if let Some(key) = &self.api_key
            && reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).is_err()
        {
            return Err(Error::Config(
                "API key contains characters not allowed in a header".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(5)))
            .tcp_nodelay(true)
            .user_agent(concat!("talis-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Client {
            http,
            base,
            api_key: self.api_key,
            retry: self.retry,
            route: self.route,
        })
    }
}

/// A Talis API client. Cheap to clone (shares its connection pool).
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    api_key: Option<String>,
    retry: Retry,
    route: Route,
}

impl Client {
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base: base_url.into(),
            api_key: None,
            timeout: Duration::from_secs(30),
            retry: Retry::default(),
            route: Route::default(),
        }
    }

    /// A client with default settings.
    pub fn new(base_url: impl Into<String>, api_key: Option<String>) -> Result<Self> {
        let mut b = Self::builder(base_url);
        if let Some(k) = api_key {
            b = b.api_key(k);
        }
        b.build()
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// Calls an RPC method with untyped params and returns the envelope's `data` (null when absent).
    pub async fn call_value(&self, method: &str, params: &Value) -> Result<Value> {
        let (path, body) = match self.route {
            Route::Envelope => (
                "api/v1/".to_string(),
                serde_json::to_value(talis_api::RpcRequest {
                    method: method.to_string(),
                    params: params.clone(),
                    id: None,
                })
                .expect("an RPC request serialises"),
            ),
            Route::Typed => (format!("v1/{method}"), params.clone()),
        };
        self.send(Method::POST, &path, Some(&body)).await
    }

    /// Calls method `M`: its params serialised as JSON, `data` deserialised into its result.
    pub async fn call<M: talis_api::methods::Method>(
        &self,
        params: &M::Params,
    ) -> Result<M::Result> {
        let params = serde_json::to_value(params)
            .map_err(|e| Error::Config(format!("params of {}: {e}", M::NAME)))?;
        let data = self.call_value(M::NAME, &params).await?;
        decode(&self.url(M::NAME), data)
    }

    /// Calls method `M` with params as written (e.g. a request file, which the server then
    /// validates and names the offending field of); the answer is typed.
    pub async fn call_raw<M: talis_api::methods::Method>(
        &self,
        params: &Value,
    ) -> Result<M::Result> {
        let data = self.call_value(M::NAME, params).await?;
        decode(&self.url(M::NAME), data)
    }

    /// The API's health route (`GET /health`): Ok when the server answers 2xx.
    pub async fn health(&self) -> Result<()> {
        let url = self.url("health");
        let resp = self.send_raw(Method::GET, &url, None).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(Error::Protocol {
                url: url.to_string(),
                status: resp.status().as_u16(),
                detail: "health check failed".into(),
            })
        }
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("relative API paths are valid")
    }

    /// Sends one request and unwraps the Talis envelope.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let url = self.url(path);
        let resp = self.send_raw(method, &url, body).await?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|source| Error::Transport {
            url: url.to_string(),
            source,
        })?;
        unwrap_envelope(&url, status, &bytes)
    }

    /// Sends with retries on connection errors only: a refused or failed connect means the server
    /// never saw the request, so even a create is safe to resend.
    async fn send_raw(
        &self,
        method: Method,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<reqwest::Response> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.http.request(method.clone(), url.clone());
            if let Some(key) = &self.api_key {
                req = req.bearer_auth(key);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(resp) => return Ok(resp),
                Err(e) if e.is_connect() && attempt < self.retry.attempts => {
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
                Err(source) if source.is_connect() => {
                    return Err(Error::Connect {
                        url: url.to_string(),
                        attempts: attempt,
                        source,
                    });
                }
                Err(source) => {
                    return Err(Error::Transport {
                        url: url.to_string(),
                        source,
                    });
                }
            }
        }
    }
}

fn decode<R: DeserializeOwned>(url: &Url, data: Value) -> Result<R> {
    serde_json::from_value(data).map_err(|e| Error::Protocol {
        url: url.to_string(),
        status: 200,
        detail: format!("answer does not match the expected type: {e}"),
    })
}

/// `{data, error:{code,message,data}, id, success}` → `data` or [`ApiError`].
fn unwrap_envelope(url: &Url, status: StatusCode, bytes: &[u8]) -> Result<Value> {
    let protocol = |detail: String| Error::Protocol {
        url: url.to_string(),
        status: status.as_u16(),
        detail,
    };
    let resp: talis_api::RpcResponse = serde_json::from_slice(bytes).map_err(|_| {
        let text = String::from_utf8_lossy(bytes);
        let text: String = text.trim().chars().take(200).collect();
        protocol(if text.is_empty() {
            "empty body".into()
        } else {
            format!("not a Talis envelope: {text}")
        })
    })?;
    match (resp.success, resp.error) {
        (true, _) if status.is_success() => Ok(resp.data.unwrap_or(Value::Null)),
        (_, Some(e)) => Err(Error::Api(ApiError {
            status: status.as_u16(),
            code: i64::from(e.code),
            kind: e.kind,
            message: e.message,
            data: e.data.filter(|d| !d.is_null()),
        })),
        (_, None) => Err(protocol("failure without an error".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use talis_api::methods::Method;

    fn url() -> Url {
        Url::parse("http://127.0.0.1:1/api/v1/").unwrap()
    }

    #[test]
    fn envelope_cases() {
        let ok = unwrap_envelope(
            &url(),
            StatusCode::OK,
            br#"{"data":{"id":1},"success":true}"#,
        );
        assert_eq!(ok.unwrap(), serde_json::json!({"id": 1}));
        let no_data = unwrap_envelope(&url(), StatusCode::OK, br#"{"success":true}"#);
        assert_eq!(no_data.unwrap(), Value::Null);

        let err = unwrap_envelope(
            &url(),
            StatusCode::BAD_REQUEST,
            br#"{"error":{"code":400,"kind":"invalid","message":"region is required","data":{"field":"instances[0].region"}},"success":false}"#,
        )
        .unwrap_err();
        let api = err.api().expect("api error");
        assert_eq!(api.field(), Some("instances[0].region"));
        assert_eq!(
            err.to_string(),
            "region is required (field: instances[0].region) [HTTP 400]"
        );

        let html = unwrap_envelope(&url(), StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>");
        assert!(matches!(html, Err(Error::Protocol { status: 502, .. })));
        let not_envelope = unwrap_envelope(&url(), StatusCode::OK, br#"{"hello":1}"#);
        assert!(matches!(not_envelope, Err(Error::Protocol { .. })));
    }

    #[test]
    fn base_url_keeps_prefix() {
        let c = Client::new("http://gw.example/talis", None).unwrap();
        assert_eq!(c.url("api/v1/").as_str(), "http://gw.example/talis/api/v1/");
        assert!(matches!(
            Client::new("ftp://x", None),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let r = Retry::default();
        assert_eq!(r.delay(1), Duration::from_millis(100));
        assert_eq!(r.delay(2), Duration::from_millis(200));
        assert_eq!(r.delay(10), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn connect_errors_are_retried_then_reported() {
        // A port that was free a moment ago: connections are refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::builder(format!("http://127.0.0.1:{port}"))
            .retry(Retry {
                attempts: 3,
                initial: Duration::from_millis(5),
                max: Duration::from_millis(10),
            })
            .build()
            .unwrap();
        let err = c
            .call_value(talis_api::methods::public::ProjectList::NAME, &Value::Null)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Connect { attempts: 3, .. }), "{err}");
    }

    #[tokio::test]
    async fn failures_after_connect_are_not_retried() {
        // The server accepts and hangs up without answering: the request may have been acted on,
        // so the client must not send it again.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = accepts.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(sock);
            }
        });
        let c = Client::new(format!("http://127.0.0.1:{port}"), None).unwrap();
        let err = c
            .call_value(
                talis_api::methods::public::ProjectCreate::NAME,
                &Value::Null,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Transport { .. }), "{err}");
        assert_eq!(accepts.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
