//! DigitalOcean API v2 client: typed calls for the subset Talis uses, rate limiting shared per
//! token, retries of what is safe to retry, and the [`Provider`](crate::Provider) implementation.
//!
//! Point it at the real API with [`Config::new`]`(DEFAULT_BASE_URL, token)` or
//! [`Config::from_env`]; at the fake cloud with its `http://127.0.0.1:PORT` base URL.

pub mod api;
mod provider;

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::limiter::RateLimiter;
use crate::observe::{Exchange, Observer, Path};
use api::{
    Account, Action, Droplet, DropletCreate, ErrorBody, Image, Region, Size, SshKey, Volume,
    VolumeCreate,
};

pub const DEFAULT_BASE_URL: &str = "https://api.digitalocean.com";
/// Environment variables read by [`Config::from_env`].
pub const ENV_TOKEN: &str = "DIGITALOCEAN_TOKEN";
pub const ENV_BASE_URL: &str = "DIGITALOCEAN_API_URL";
/// DigitalOcean's largest page.
const PER_PAGE: u32 = 200;
/// DigitalOcean accepts at most 10 `names` per create call.
pub const MAX_BATCH: usize = 10;

#[derive(Clone)]
pub struct Config {
    /// Scheme and host, without `/v2` (e.g. `https://api.digitalocean.com`).
    pub base_url: String,
    pub token: String,
    /// Whole-request timeout.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Attempts for requests that are safe to repeat (GET, DELETE, any 429, connect failures).
    pub max_attempts: u32,
    /// First backoff between attempts; doubles each time, capped at 5 s.
    pub backoff: Duration,
    /// Longest the client itself waits for the rate limit; beyond, it returns
    /// [`Error::RateLimited`] so a workflow can sleep durably instead.
    pub max_rate_limit_wait: Duration,
    /// Attempts of a whole look-up-then-create in `ensure_*`.
    pub ensure_attempts: u32,
    /// After an ambiguous failure (timeout, broken connection, 5xx) `ensure_*` waits this long
    /// before looking up again, so a create still in flight lands first and is found instead of
    /// being repeated. Should exceed the provider's own processing time of a create.
    pub settle: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("base_url", &self.base_url)
            .field("token", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl Config {
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> Self {
        Config {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            token: token.into(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_attempts: 4,
            backoff: Duration::from_millis(250),
            max_rate_limit_wait: Duration::from_secs(60),
            ensure_attempts: 6,
            settle: Duration::from_secs(5),
        }
    }

    /// `DIGITALOCEAN_TOKEN` (required) and `DIGITALOCEAN_API_URL` (default: the real API).
    pub fn from_env() -> Result<Self> {
        let token = std::env::var(ENV_TOKEN)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| Error::invalid("DIGITALOCEAN_TOKEN", "not set"))?;
        let base = std::env::var(ENV_BASE_URL).unwrap_or_else(|_| DEFAULT_BASE_URL.to_string());
        Ok(Config::new(base, token))
    }
}

/// Whether a request may be sent again after an ambiguous failure (5xx, broken connection).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// GET, DELETE, tag assignment: repeating has the same effect.
    Safe,
    /// Creates: a lost answer may hide a success, so only the caller (ensure_*) may retry,
    /// after looking up what exists. 429 and connect failures are still retried (nothing done).
    Unsafe,
}

#[derive(Clone, Debug)]
pub struct DigitalOcean {
    http: reqwest::Client,
    config: Arc<Config>,
    limiter: Arc<RateLimiter>,
    observer: Watcher,
}

/// The observer, if any (a newtype so the client stays `Debug`).
#[derive(Clone, Default)]
struct Watcher(Option<Arc<dyn Observer>>);

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Some(observer)"
        } else {
            "None"
        })
    }
}

impl Watcher {
    fn exchange(&self, e: &Exchange) {
        if let Some(o) = &self.0 {
            o.exchange(e);
        }
    }

    fn rate_limit_wait(&self, wait: Duration) {
        if let Some(o) = &self.0 {
            o.rate_limit_wait(wait);
        }
    }
}

impl From<&'static str> for Path {
    fn from(template: &'static str) -> Self {
        Path::fixed(template)
    }
}

impl DigitalOcean {
    pub fn new(config: Config) -> Result<Self> {
        if config.token.trim().is_empty() {
            return Err(Error::invalid("token", "must not be empty"));
        }
        url::Url::parse(&config.base_url).map_err(|e| Error::invalid("base_url", e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("talis-provider/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::invalid("config", e.to_string()))?;
        Ok(DigitalOcean {
            http,
            limiter: RateLimiter::for_token(&config.token),
            config: Arc::new(config),
            observer: Watcher::default(),
        })
    }

    /// Reports every exchange and rate-limit wait of this client (and its clones) to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Watcher(Some(observer));
        self
    }

    /// A rate-limit pause outside [`DigitalOcean::call`] (the ensure rounds' retries).
    pub(crate) fn rate_limit_waited(&self, wait: Duration) {
        self.observer.rate_limit_wait(wait);
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    // ---- droplets ----

    /// `POST /v2/droplets` (one `name` or up to 10 `names`). Not retried on ambiguous failures.
    pub async fn create_droplets(&self, req: &DropletCreate) -> Result<Vec<Droplet>> {
        let n = req.names.as_ref().map_or(1, Vec::len);
        if n == 0 || n > MAX_BATCH || (req.name.is_some() == req.names.is_some()) {
            return Err(Error::invalid("names", "give either name or 1..=10 names"));
        }
        let v: Value = self
            .call(Method::POST, "/v2/droplets", &[], Some(req), Repeat::Unsafe)
            .await?;
        if let Some(d) = v.get("droplet") {
            return Ok(vec![decode(d.clone())?]);
        }
        decode(v.get("droplets").cloned().unwrap_or(Value::Null))
    }

    /// `GET /v2/droplets/{id}`; `None` on 404.
    pub async fn get_droplet(&self, id: u64) -> Result<Option<Droplet>> {
        let r: Result<Value> = self
            .call(
                Method::GET,
                Path::with("/v2/droplets/{id}", id),
                &[],
                NO_BODY,
                Repeat::Safe,
            )
            .await;
        match r {
            Ok(v) => Ok(Some(decode(v["droplet"].clone())?)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v2/droplets?tag_name=` (all pages, 200 per page). `None` lists every droplet.
    pub async fn list_droplets(&self, tag: Option<&str>) -> Result<Vec<Droplet>> {
        let q: Vec<(&str, String)> = tag
            .map(|t| ("tag_name", t.to_string()))
            .into_iter()
            .collect();
        self.list_all("/v2/droplets", "droplets", &q).await
    }

    /// `DELETE /v2/droplets/{id}`; Ok if already gone.
    pub async fn delete_droplet(&self, id: u64) -> Result<()> {
        self.delete(Path::with("/v2/droplets/{id}", id), &[]).await
    }

    /// `DELETE /v2/droplets?tag_name=`.
    pub async fn delete_droplets_by_tag(&self, tag: &str) -> Result<()> {
        self.delete("/v2/droplets", &[("tag_name", tag.to_string())])
            .await
    }

    /// `POST /v2/droplets/{id}/actions` with `{"type": kind}` (power_on, power_off, reboot...).
    pub async fn droplet_action(&self, id: u64, kind: &str) -> Result<Action> {
        let v: Value = self
            .call(
                Method::POST,
                Path::with("/v2/droplets/{id}/actions", id),
                &[],
                Some(&serde_json::json!({ "type": kind })),
                Repeat::Unsafe,
            )
            .await?;
        decode(v["action"].clone())
    }

    // ---- volumes ----

    pub async fn create_volume(&self, req: &VolumeCreate) -> Result<Volume> {
        let v: Value = self
            .call(Method::POST, "/v2/volumes", &[], Some(req), Repeat::Unsafe)
            .await?;
        decode(v["volume"].clone())
    }

    pub async fn get_volume(&self, id: &str) -> Result<Option<Volume>> {
        let r: Result<Value> = self
            .call(
                Method::GET,
                Path::with("/v2/volumes/{id}", id),
                &[],
                NO_BODY,
                Repeat::Safe,
            )
            .await;
        match r {
            Ok(v) => Ok(Some(decode(v["volume"].clone())?)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v2/volumes?name=&region=` (all pages).
    pub async fn list_volumes(
        &self,
        name: Option<&str>,
        region: Option<&str>,
    ) -> Result<Vec<Volume>> {
        let mut q = Vec::new();
        if let Some(n) = name {
            q.push(("name", n.to_string()));
        }
        if let Some(r) = region {
            q.push(("region", r.to_string()));
        }
        self.list_all("/v2/volumes", "volumes", &q).await
    }

    pub async fn delete_volume(&self, id: &str) -> Result<()> {
        self.delete(Path::with("/v2/volumes/{id}", id), &[]).await
    }

    /// `POST /v2/volumes/{id}/actions` `{"type":"attach"|"detach","droplet_id","region"}`.
    pub async fn volume_action(
        &self,
        volume_id: &str,
        kind: &str,
        droplet_id: u64,
        region: &str,
    ) -> Result<Action> {
        let body = serde_json::json!({ "type": kind, "droplet_id": droplet_id, "region": region });
        let v: Value = self
            .call(
                Method::POST,
                Path::with("/v2/volumes/{volume_id}/actions", volume_id),
                &[],
                Some(&body),
                Repeat::Unsafe,
            )
            .await?;
        decode(v["action"].clone())
    }

    // ---- ssh keys, tags, catalogue, account ----

    pub async fn create_ssh_key(&self, name: &str, public_key: &str) -> Result<SshKey> {
        let body = serde_json::json!({ "name": name, "public_key": public_key });
        let v: Value = self
            .call(
                Method::POST,
                "/v2/account/keys",
                &[],
                Some(&body),
                Repeat::Unsafe,
            )
            .await?;
        decode(v["ssh_key"].clone())
    }

    pub async fn list_ssh_keys(&self) -> Result<Vec<SshKey>> {
        self.list_all("/v2/account/keys", "ssh_keys", &[]).await
    }

    /// `POST /v2/tags`; an already existing tag is fine.
    pub async fn create_tag(&self, name: &str) -> Result<()> {
        let body = serde_json::json!({ "name": name });
        let r: Result<Value> = self
            .call(Method::POST, "/v2/tags", &[], Some(&body), Repeat::Safe)
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.status(), Some(409 | 422)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `POST /v2/tags` then `POST /v2/tags/{tag}/resources` for droplets: DigitalOcean answers
    /// 404 when assigning a tag that does not exist yet.
    pub async fn tag_droplets(&self, tag: &str, ids: &[u64]) -> Result<()> {
        self.create_tag(tag).await?;
        let resources: Vec<Value> = ids
            .iter()
            .map(|id| serde_json::json!({ "resource_id": id.to_string(), "resource_type": "droplet" }))
            .collect();
        let body = serde_json::json!({ "resources": resources });
        self.call::<Value>(
            Method::POST,
            Path::with("/v2/tags/{tag}/resources", tag),
            &[],
            Some(&body),
            Repeat::Safe,
        )
        .await
        .map(drop)
    }

    pub async fn list_regions(&self) -> Result<Vec<Region>> {
        self.list_all("/v2/regions", "regions", &[]).await
    }

    pub async fn list_sizes(&self) -> Result<Vec<Size>> {
        self.list_all("/v2/sizes", "sizes", &[]).await
    }

    /// Distribution images (`type=distribution`).
    pub async fn list_images(&self) -> Result<Vec<Image>> {
        self.list_all("/v2/images", "images", &[("type", "distribution".into())])
            .await
    }

    pub async fn account(&self) -> Result<Account> {
        let v: Value = self
            .call(Method::GET, "/v2/account", &[], NO_BODY, Repeat::Safe)
            .await?;
        decode(v["account"].clone())
    }

    // ---- plumbing ----

    async fn delete(&self, path: impl Into<Path>, query: &[(&str, String)]) -> Result<()> {
        match self
            .call::<Value>(Method::DELETE, path, query, NO_BODY, Repeat::Safe)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every page of a list endpoint: follows `links.pages.next` until it is absent.
    async fn list_all<T: DeserializeOwned>(
        &self,
        path: &'static str,
        key: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for page in 1u32.. {
            let mut q = query.to_vec();
            q.push(("per_page", PER_PAGE.to_string()));
            q.push(("page", page.to_string()));
            let v: Value = self
                .call(Method::GET, path, &q, NO_BODY, Repeat::Safe)
                .await?;
            let items: Vec<T> = decode(v.get(key).cloned().unwrap_or(Value::Array(vec![])))?;
            let has_next = v
                .pointer("/links/pages/next")
                .is_some_and(|n| n.is_string());
            let empty = items.is_empty();
            out.extend(items);
            if !has_next || empty {
                break;
            }
        }
        Ok(out)
    }

    /// One API call with rate limiting and the retries `repeat` allows. Returns the JSON body
    /// (`Value::Null` for 204). Every attempt is reported to the observer.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: impl Into<Path>,
        query: &[(&str, String)],
        body: Option<&impl Serialize>,
        repeat: Repeat,
    ) -> Result<T> {
        let path = path.into();
        let url = format!("{}{}", self.config.base_url, path.path);
        let report = |status: Option<u16>, started: std::time::Instant| {
            self.observer.exchange(&Exchange {
                method: method_name(&method),
                endpoint: path.template,
                status,
                elapsed: started.elapsed(),
            });
        };
        let attempts = self.config.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= attempts;
            let wait = self.limiter.delay();
            if wait > self.config.max_rate_limit_wait {
                return Err(Error::RateLimited { retry_after: wait });
            }
            if !wait.is_zero() {
                tracing::debug!(?wait, "waiting for the provider rate limit");
                self.observer.rate_limit_wait(wait);
                tokio::time::sleep(wait).await;
            }
            let started = std::time::Instant::now();
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.config.token)
                .query(query);
            if let Some(b) = body {
                req = req.json(b);
            }
            let err = match req.send().await {
                Err(e) => {
                    report(None, started);
                    Error::from(e)
                }
                Ok(resp) => {
                    let status = resp.status();
                    self.limiter.observe(status.as_u16(), resp.headers());
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .map(Duration::from_secs);
                    let bytes = resp.bytes().await;
                    report(Some(status.as_u16()), started);
                    match bytes {
                        // A body cut short is a broken connection, not a contract mismatch.
                        Err(e) => match Error::from(e) {
                            Error::Decode(d) => Error::Transport(d),
                            other => other,
                        },
                        Ok(bytes) if status.is_success() => {
                            return if status == StatusCode::NO_CONTENT || bytes.is_empty() {
                                decode(Value::Null)
                            } else {
                                serde_json::from_slice(&bytes)
                                    .map_err(|e| Error::Decode(e.to_string()))
                            };
                        }
                        Ok(_) if status == StatusCode::TOO_MANY_REQUESTS => Error::RateLimited {
                            retry_after: retry_after.unwrap_or_else(|| self.limiter.delay()),
                        },
                        Ok(bytes) => api_error(status, &bytes),
                    }
                }
            };
            // 429 and refused connections did nothing at the provider: always safe to repeat.
            let nothing_done = matches!(err, Error::RateLimited { .. } | Error::Connect(_));
            if last || !err.is_retryable() || !(nothing_done || repeat == Repeat::Safe) {
                return Err(err);
            }
            let backoff = backoff(self.config.backoff, attempt);
            tracing::debug!(%err, ?backoff, attempt, "retrying provider call");
            tokio::time::sleep(backoff).await;
        }
    }
}

const NO_BODY: Option<&Value> = None;

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        _ => "OTHER",
    }
}

fn decode<T: DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::Decode(e.to_string()))
}

fn api_error(status: StatusCode, body: &[u8]) -> Error {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    // The tags API answers 400 with `{"error","messages","root_causes"}` instead.
    let root_causes = || {
        serde_json::from_slice::<Value>(body)
            .ok()?
            .get("error")?
            .as_str()
            .map(str::to_string)
    };
    let (id, message, request_id) = match (parsed, root_causes()) {
        (Some(b), _) => (b.id, b.message, b.request_id),
        (None, Some(message)) => ("bad_request".to_string(), message, None),
        (None, None) => (
            status
                .canonical_reason()
                .unwrap_or("error")
                .to_lowercase()
                .replace(' ', "_"),
            String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            None,
        ),
    };
    Error::Api {
        status: status.as_u16(),
        id,
        message,
        request_id,
    }
}

/// Exponential backoff with a little jitter (from the clock: no RNG needed for this).
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1 << attempt.saturating_sub(1).min(6));
    let capped = exp.min(Duration::from_secs(5));
    let jitter_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 100)
        .unwrap_or(0);
    if capped.is_zero() {
        capped
    } else {
        capped + Duration::from_millis(u64::from(jitter_ms))
    }
}
