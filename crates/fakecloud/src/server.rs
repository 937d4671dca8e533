//! HTTP edge of the fake: routing to `cloud`, bearer auth, per-token rate limits, fault
//! injection, `ratelimit-*` headers, the `/_fake/` control routes, stats, phone-home and
//! snapshots.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::cloud::{Answer, ApiError, Cloud, Page};
use crate::config::{Config, FaultKind};
use crate::ratelimit::Window;

/// Largest request body accepted (user_data is ≤ 64 KiB).
const MAX_BODY: usize = 1 << 20;
/// Marker line in user_data (see the project's phone-home convention).
pub const PHONE_HOME_MARKER: &str = "# talis-phone-home:";

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Inner {
    cloud: Cloud,
    config: Config,
    rng: StdRng,
    windows: HashMap<String, Window>,
    /// Per fault rule: times fired, and calls left in a 429 burst.
    fault_fired: Vec<u64>,
    fault_burst: Vec<u64>,
    /// operationId → status (or "dropped"/"lost") → count.
    calls: BTreeMap<&'static str, BTreeMap<String, u64>>,
    phone_home: BTreeMap<&'static str, u64>,
}

impl Inner {
    fn new(config: Config, cloud: Cloud) -> Self {
        let n = config.faults.len();
        Inner {
            rng: StdRng::seed_from_u64(config.seed),
            cloud,
            config,
            windows: HashMap::new(),
            fault_fired: vec![0; n],
            fault_burst: vec![0; n],
            calls: BTreeMap::new(),
            phone_home: BTreeMap::new(),
        }
    }

    fn record(&mut self, op: &'static str, outcome: impl Into<String>) {
        *self
            .calls
            .entry(op)
            .or_default()
            .entry(outcome.into())
            .or_default() += 1;
    }

    /// The first fault rule that fires for `op`, if any.
    fn pick_fault(&mut self, op: &str) -> Option<(FaultKind, u16, u64)> {
        for (i, f) in self.config.faults.iter().enumerate() {
            if f.endpoint != "*" && f.endpoint != op {
                continue;
            }
            let status = f.status.unwrap_or(500);
            let stall = f.stall_ms.unwrap_or(5_000);
            if self.fault_burst[i] > 0 {
                self.fault_burst[i] -= 1;
                return Some((f.kind, status, stall));
            }
            if f.count.is_some_and(|c| self.fault_fired[i] >= c) {
                continue;
            }
            if self.rng.random_bool(f.probability.clamp(0.0, 1.0)) {
                self.fault_fired[i] += 1;
                if f.kind == FaultKind::RateLimit429 {
                    self.fault_burst[i] = f.burst.unwrap_or(1).saturating_sub(1);
                }
                return Some((f.kind, status, stall));
            }
        }
        None
    }
}

/// The fake cloud: shared by every connection.
pub struct Fake {
    inner: Mutex<Inner>,
    /// Loaded on first use when `validate_requests` is on.
    spec: Mutex<Option<crate::contract::Spec>>,
    http: reqwest::Client,
    dirty: AtomicBool,
}

/// Connection is closed without an answer (dropped-connection and lost-response faults).
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

type Resp = Response<Full<Bytes>>;

impl Fake {
    pub fn new(config: Config) -> anyhow::Result<Arc<Self>> {
        let cloud = match &config.snapshot {
            Some(p) if p.exists() => {
                let text = std::fs::read_to_string(p)?;
                serde_json::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("snapshot {}: {e}", p.display()))?
            }
            _ => Cloud::default(),
        };
        Ok(Arc::new(Fake {
            inner: Mutex::new(Inner::new(config, cloud)),
            spec: Mutex::new(None),
            http: reqwest::Client::builder().build()?,
            dirty: AtomicBool::new(false),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the snapshot file if the state changed since the last write.
    pub fn save_snapshot(&self) -> anyhow::Result<()> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let (path, text) = {
            let g = self.lock();
            let Some(p) = g.config.snapshot.clone() else {
                return Ok(());
            };
            (p, serde_json::to_string(&g.cloud)?)
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Resp, Dropped> {
        let path = req.uri().path().to_string();
        if let Some(rest) = path.strip_prefix("/_fake/") {
            return Ok(self.control(req, rest).await);
        }
        let Some(route) = Route::parse(req.method(), &path) else {
            return Ok(error_response(&ApiError::not_found(), None));
        };
        let op = route.op();
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        // Unauthenticated calls are limited too (DigitalOcean counts them per client; here
        // they share one window) and carry the same headers.
        let authenticated = token.is_some();
        let (verdict, fault) = {
            let mut g = self.lock();
            let (pm, ph) = (g.config.rate_limit_per_minute, g.config.rate_limit_per_hour);
            let now_sec = now_ms() / 1000;
            let verdict = g
                .windows
                .entry(token.unwrap_or_default())
                .or_insert_with(|| Window::new(now_sec))
                .check(now_sec, pm, ph);
            let fault = if verdict.retry_after.is_some() || !authenticated {
                None
            } else {
                g.pick_fault(op)
            };
            if verdict.retry_after.is_some() {
                g.record(op, "429");
            } else if !authenticated {
                g.record(op, "401");
            }
            (verdict, fault)
        };
        if !authenticated && verdict.retry_after.is_none() {
            let e = ApiError::new(401, "Unauthorized", "Unable to authenticate you");
            return Ok(error_response(&e, Some(verdict)));
        }
        let rl = Some(verdict);
        if verdict.retry_after.is_some() {
            return Ok(error_response(&too_many(), rl));
        }
        let mut lost = false;
        match fault {
            Some((FaultKind::Error5xx, status, _)) => {
                self.lock().record(op, status.to_string());
                let e = ApiError::new(
                    status,
                    if status == 503 {
                        "service_unavailable"
                    } else {
                        "server_error"
                    },
                    "Server Error",
                );
                return Ok(error_response(&e, rl));
            }
            Some((FaultKind::RateLimit429, _, _)) => {
                self.lock().record(op, "429");
                return Ok(error_response(&too_many(), rl));
            }
            Some((FaultKind::Drop, _, _)) => {
                self.lock().record(op, "dropped");
                return Err(Dropped);
            }
            Some((FaultKind::Stall, _, ms)) => {
                // Processed after the stall even if the client gave up meanwhile (it cannot
                // know whether its request took effect).
                let fake = self.clone();
                return tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    fake.process(req, route, rl, false).await
                })
                .await
                .unwrap_or(Err(Dropped));
            }
            Some((FaultKind::LostResponse, _, _)) => lost = true,
            None => {}
        }
        self.process(req, route, rl, lost).await
    }

    async fn process(
        self: Arc<Self>,
        req: Request<Incoming>,
        route: Route,
        rl: Option<crate::ratelimit::Verdict>,
        lost: bool,
    ) -> Result<Resp, Dropped> {
        let op = route.op();
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| format!("http://{h}"))
            .unwrap_or_default();
        let query: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let method = req.method().clone();
        let body = match read_json(req).await {
            Ok(b) => b,
            Err(e) => {
                self.lock().record(op, e.status.to_string());
                return Ok(error_response(&e, rl));
            }
        };
        if let Err(e) = self.check_request(&route, &body) {
            self.lock().record(op, "400");
            return Ok(error_response(&e, rl));
        }
        let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let page = Page {
            page: q("page").and_then(|p| p.parse().ok()).unwrap_or(1),
            per_page: q("per_page").and_then(|p| p.parse().ok()).unwrap_or(20),
            base: {
                let keep: Vec<String> = query
                    .iter()
                    .filter(|(k, _)| k != "page" && k != "per_page")
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let path = route.path();
                if keep.is_empty() {
                    format!("{host}{path}")
                } else {
                    format!("{host}{path}?{}", keep.join("&"))
                }
            },
        };
        let now = now_ms();
        let mut phone_home = Vec::new();
        // Droplet reads answer pre-rendered text (see `Cloud::droplet_text`).
        let mut text: Option<String> = None;
        let answer: Answer = {
            let mut g = self.lock();
            let Inner {
                cloud, config, rng, ..
            } = &mut *g;
            let r =
                match &route {
                    Route::Account => Ok((200, Some(cloud.account(config)))),
                    Route::Regions => Ok((
                        200,
                        Some(list_static(
                            "regions",
                            &page,
                            crate::catalog::REGIONS,
                            crate::catalog::region_json,
                        )),
                    )),
                    Route::Sizes => Ok((
                        200,
                        Some(list_static(
                            "sizes",
                            &page,
                            crate::catalog::SIZES,
                            crate::catalog::size_json,
                        )),
                    )),
                    Route::Images => Ok((
                        200,
                        Some(list_static(
                            "images",
                            &page,
                            crate::catalog::IMAGES,
                            crate::catalog::image_json,
                        )),
                    )),
                    Route::DropletsCreate => cloud
                        .create_droplets(&body, config, rng, now, &host)
                        .map(|(v, ids)| {
                            phone_home = ids;
                            (202, Some(v))
                        }),
                    Route::DropletsList => {
                        text = Some(cloud.list_droplets(q("tag_name"), q("name"), &page, now));
                        Ok((200, None))
                    }
                    Route::DropletsDeleteByTag => match q("tag_name") {
                        Some(t) => cloud.delete_droplets_by_tag(t),
                        None => Err(ApiError::bad_request("tag_name is required")),
                    },
                    Route::Droplet(id) => cloud.get_droplet(*id, now).map(|t| {
                        text = Some(t);
                        (200, None)
                    }),
                    Route::DropletDelete(id) => cloud.delete_droplet(*id),
                    Route::DropletActions(id) => cloud.droplet_action(*id, &body, now, &host),
                    Route::Action(id) => cloud.get_action(*id, now, &host),
                    Route::VolumesCreate => cloud.create_volume(&body, config, now),
                    Route::VolumesList => {
                        Ok((200, Some(cloud.list_volumes(q("name"), q("region"), &page))))
                    }
                    Route::Volume(id) => cloud.get_volume(id),
                    Route::VolumeDelete(id) => cloud.delete_volume(id),
                    Route::VolumeActions(id) => cloud.volume_action(id, &body, now, &host),
                    Route::KeysCreate => cloud.create_ssh_key(&body),
                    Route::KeysList => Ok((200, Some(cloud.list_ssh_keys(&page)))),
                    Route::Key(k) => cloud.get_ssh_key(k),
                    Route::KeyDelete(k) => cloud.delete_ssh_key(k),
                    Route::TagsCreate => cloud.create_tag(&body),
                    Route::TagsList => Ok((200, Some(cloud.list_tags(&page)))),
                    Route::Tag(t) => cloud.get_tag(t),
                    Route::TagDelete(t) => cloud.delete_tag(t),
                    Route::TagAssign(t) => cloud.tag_resources(t, &body, true),
                    Route::TagUnassign(t) => cloud.tag_resources(t, &body, false),
                };
            let outcome = if lost {
                "lost".to_string()
            } else {
                r.as_ref()
                    .map_or_else(|e| e.status, |(s, _)| *s)
                    .to_string()
            };
            g.record(op, outcome);
            r
        };
        if method != Method::GET && answer.is_ok() {
            self.dirty.store(true, Ordering::Release);
        }
        for id in phone_home {
            self.clone().schedule_phone_home(id);
        }
        if lost {
            return Err(Dropped);
        }
        Ok(match answer {
            Ok((status, _)) if text.is_some() => {
                text_response(status, text.unwrap_or_default(), rl)
            }
            Ok((status, body)) => json_response(status, body, rl),
            Err(e) => error_response(&e, rl),
        })
    }

    /// With `validate_requests`, refuses a body that violates the operation's request schema.
    fn check_request(&self, route: &Route, body: &Value) -> Result<(), ApiError> {
        if !self.lock().config.validate_requests {
            return Ok(());
        }
        let Some(op_file) = route.request_spec() else {
            return Ok(());
        };
        let mut guard = self.spec.lock().unwrap_or_else(|p| p.into_inner());
        let spec = guard.get_or_insert_with(crate::contract::Spec::vendored);
        let errors = spec
            .operation(op_file)
            .and_then(|op| spec.request_schema(&op))
            .map(|schema| spec.validate(&schema, body))
            .unwrap_or_else(|e| vec![e]);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!(
                "request violates the API spec: {}",
                errors.join("; ")
            )))
        }
    }

    /// When droplet `id` is active with its IP, POSTs to the phone-home URL in its user_data,
    /// as the cloud-init script would.
    fn schedule_phone_home(self: Arc<Self>, id: u64) {
        let (url, at, cfg) = {
            let g = self.lock();
            let Some(d) = g.cloud.droplets.get(&id) else {
                return;
            };
            if !g.config.phone_home.enabled || d.phoned_home {
                return;
            }
            let Some(url) = d.user_data.as_deref().and_then(phone_home_url) else {
                return;
            };
            (url, d.active_ms.max(d.ip_ms), g.config.phone_home.clone())
        };
        tokio::spawn(async move {
            let wait = at.saturating_sub(now_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let ip = {
                let g = self.lock();
                match g.cloud.droplets.get(&id) {
                    Some(d) if !d.off => d.public_ip(),
                    _ => return,
                }
            };
            let body = json!({ "droplet_id": id, "public_ip": ip, "status": "ok" });
            let mut outcome = "failed";
            for attempt in 0..cfg.attempts.max(1) {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(cfg.retry_delay_ms)).await;
                }
                let r = self
                    .http
                    .post(&url)
                    .timeout(Duration::from_millis(cfg.timeout_ms))
                    .json(&body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        outcome = "ok";
                        break;
                    }
                    Ok(r) => {
                        tracing::warn!(droplet = id, status = %r.status(), "phone-home refused")
                    }
                    Err(e) => {
                        tracing::warn!(droplet = id, error = %e.without_url(), "phone-home failed")
                    }
                }
            }
            let mut g = self.lock();
            *g.phone_home.entry(outcome).or_default() += 1;
            if let Some(d) = g.cloud.droplets.get_mut(&id) {
                d.phoned_home = true;
            }
            drop(g);
            self.dirty.store(true, Ordering::Release);
        });
    }

    async fn control(self: Arc<Self>, req: Request<Incoming>, what: &str) -> Resp {
        let method = req.method().clone();
        match (method, what) {
            (Method::GET, "health") => json_response(200, Some(json!({"status": "ok"})), None),
            (Method::GET, "stats") => json_response(200, Some(self.stats()), None),
            (Method::GET, "config") => {
                let c = self.lock().config.clone();
                json_response(200, Some(serde_json::to_value(c).unwrap_or_default()), None)
            }
            (Method::PUT, "config") => {
                let body = match read_json(req).await {
                    Ok(b) => b,
                    Err(e) => return error_response(&e, None),
                };
                match serde_json::from_value::<Config>(body) {
                    Ok(c) => {
                        self.set_config(c.clone());
                        json_response(200, Some(serde_json::to_value(c).unwrap_or_default()), None)
                    }
                    Err(e) => {
                        error_response(&ApiError::unprocessable(format!("config: {e}")), None)
                    }
                }
            }
            (Method::POST, "reset") => {
                let mut g = self.lock();
                let c = g.config.clone();
                *g = Inner::new(c, Cloud::default());
                drop(g);
                self.dirty.store(true, Ordering::Release);
                json_response(204, None, None)
            }
            _ => error_response(&ApiError::not_found(), None),
        }
    }

    /// Replaces the knobs (faults start afresh); state, stats and rate windows are kept.
    pub fn set_config(&self, config: Config) {
        let mut g = self.lock();
        let cloud = std::mem::take(&mut g.cloud);
        let calls = std::mem::take(&mut g.calls);
        let phone_home = std::mem::take(&mut g.phone_home);
        let windows = std::mem::take(&mut g.windows);
        *g = Inner::new(config, cloud);
        g.calls = calls;
        g.phone_home = phone_home;
        g.windows = windows;
    }

    /// `/_fake/stats`: calls per endpoint and status, live resources, duplicates, orphans.
    pub fn stats(&self) -> Value {
        let g = self.lock();
        let now = now_ms();
        let prefix = g.config.unique_tag_prefix.as_str();
        let group = g.config.group_tag_prefix.as_str();
        let owner = g.config.owner_tag.as_str();
        let mut by_tag: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        let mut by_name: BTreeMap<(&str, &str), Vec<u64>> = BTreeMap::new();
        let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
        let mut orphan_droplets = Vec::new();
        for d in g.cloud.droplets.values() {
            *by_status.entry(d.status(now)).or_default() += 1;
            for t in &d.tags {
                by_tag.entry(t).or_default().push(d.id);
                if !group.is_empty() && t.starts_with(group) {
                    by_name.entry((t, &d.name)).or_default().push(d.id);
                }
            }
            let has_owner = d.tags.iter().any(|t| t == owner);
            let has_key = d
                .tags
                .iter()
                .any(|t| t.starts_with(prefix) || (!group.is_empty() && t.starts_with(group)));
            if has_owner && !has_key {
                orphan_droplets.push(d.id);
            }
        }
        let mut duplicates: BTreeMap<String, &Vec<u64>> = by_tag
            .iter()
            .filter(|(t, ids)| t.starts_with(prefix) && ids.len() > 1)
            .map(|(t, ids)| (t.to_string(), ids))
            .collect();
        duplicates.extend(
            by_name
                .iter()
                .filter(|(_, ids)| ids.len() > 1)
                .map(|((t, n), ids)| (format!("{t}/{n}"), ids)),
        );
        // A volume is orphaned when no droplet has it attached any more.
        let orphan_volumes: Vec<&str> = g
            .cloud
            .volumes
            .iter()
            .filter(|v| v.droplet_ids.is_empty() && v.tags.iter().any(|t| t == owner))
            .map(|v| v.id.as_str())
            .collect();
        let total: u64 = g.calls.values().flat_map(|m| m.values()).sum();
        json!({
            "calls": g.calls,
            "total_calls": total,
            "droplets": {
                "live": g.cloud.droplets.len(),
                "created": g.cloud.droplets_created,
                "destroyed": g.cloud.droplets_destroyed,
                "by_status": by_status,
                "by_tag": by_tag.iter().map(|(t, ids)| (*t, ids.len())).collect::<BTreeMap<_, _>>(),
            },
            "volumes": {
                "live": g.cloud.volumes.len(),
                "attached": g.cloud.volumes.iter().filter(|v| !v.droplet_ids.is_empty()).count(),
            },
            "duplicates": { "count": duplicates.len(), "by_tag": duplicates },
            "orphans": {
                "count": orphan_droplets.len() + orphan_volumes.len(),
                "droplets": orphan_droplets,
                "volumes": orphan_volumes,
            },
            "phone_home": g.phone_home,
        })
    }

    /// Re-arms phone-home for droplets loaded from a snapshot that had not phoned home.
    fn resume_phone_homes(self: &Arc<Self>) {
        let ids: Vec<u64> = self
            .lock()
            .cloud
            .droplets
            .values()
            .filter(|d| !d.phoned_home)
            .map(|d| d.id)
            .collect();
        for id in ids {
            self.clone().schedule_phone_home(id);
        }
    }
}

/// Extracts `<URL>` from a `# talis-phone-home: <URL>` line.
pub fn phone_home_url(user_data: &str) -> Option<String> {
    user_data.lines().find_map(|l| {
        let url = l.trim().strip_prefix(PHONE_HOME_MARKER)?.trim();
        (url.starts_with("http://") || url.starts_with("https://")).then(|| url.to_string())
    })
}

fn too_many() -> ApiError {
    ApiError::new(429, "too_many_requests", "API Rate limit exceeded.")
}

fn list_static<T>(key: &str, page: &Page, all: &[T], f: fn(&T) -> Value) -> Value {
    let refs: Vec<&T> = all.iter().collect();
    crate::cloud::paginate(key, &refs, page, |t| f(t))
}

async fn read_json(req: Request<Incoming>) -> Result<Value, ApiError> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| ApiError::bad_request("request body too large or unreadable"))?
        .to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))
}

fn json_response(status: u16, body: Option<Value>, rl: Option<crate::ratelimit::Verdict>) -> Resp {
    text_response(status, body.map(|b| b.to_string()).unwrap_or_default(), rl)
}

/// A JSON answer (empty text: no body, as for 204) with DigitalOcean's headers.
fn text_response(status: u16, body: String, rl: Option<crate::ratelimit::Verdict>) -> Resp {
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

fn error_response(e: &ApiError, rl: Option<crate::ratelimit::Verdict>) -> Resp {
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

/// The API routes, each named by DigitalOcean's operationId (used in stats and fault rules).
#[derive(Debug, Clone)]
enum Route {
    Account,
    Regions,
    Sizes,
    Images,
    DropletsCreate,
    DropletsList,
    DropletsDeleteByTag,
    Droplet(u64),
    DropletDelete(u64),
    DropletActions(u64),
    Action(u64),
    VolumesCreate,
    VolumesList,
    Volume(String),
    VolumeDelete(String),
    VolumeActions(String),
    KeysCreate,
    KeysList,
    Key(String),
    KeyDelete(String),
    TagsCreate,
    TagsList,
    Tag(String),
    TagDelete(String),
    TagAssign(String),
    TagUnassign(String),
}

impl Route {
    fn parse(method: &Method, path: &str) -> Option<Route> {
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let m = method.clone();
        use Method as M;
        Some(match (m, segs.as_slice()) {
            (M::GET, ["v2", "account"]) => Route::Account,
            (M::GET, ["v2", "regions"]) => Route::Regions,
            (M::GET, ["v2", "sizes"]) => Route::Sizes,
            (M::GET, ["v2", "images"]) => Route::Images,
            (M::POST, ["v2", "droplets"]) => Route::DropletsCreate,
            (M::GET, ["v2", "droplets"]) => Route::DropletsList,
            (M::DELETE, ["v2", "droplets"]) => Route::DropletsDeleteByTag,
            (M::GET, ["v2", "droplets", id]) => Route::Droplet(id.parse().ok()?),
            (M::DELETE, ["v2", "droplets", id]) => Route::DropletDelete(id.parse().ok()?),
            (M::POST, ["v2", "droplets", id, "actions"]) => Route::DropletActions(id.parse().ok()?),
            (M::GET, ["v2", "actions", id]) => Route::Action(id.parse().ok()?),
            (M::POST, ["v2", "volumes"]) => Route::VolumesCreate,
            (M::GET, ["v2", "volumes"]) => Route::VolumesList,
            (M::GET, ["v2", "volumes", id]) => Route::Volume(id.to_string()),
            (M::DELETE, ["v2", "volumes", id]) => Route::VolumeDelete(id.to_string()),
            (M::POST, ["v2", "volumes", id, "actions"]) => Route::VolumeActions(id.to_string()),
            (M::POST, ["v2", "account", "keys"]) => Route::KeysCreate,
            (M::GET, ["v2", "account", "keys"]) => Route::KeysList,
            (M::GET, ["v2", "account", "keys", k]) => Route::Key(k.to_string()),
            (M::DELETE, ["v2", "account", "keys", k]) => Route::KeyDelete(k.to_string()),
            (M::POST, ["v2", "tags"]) => Route::TagsCreate,
            (M::GET, ["v2", "tags"]) => Route::TagsList,
            (M::GET, ["v2", "tags", t]) => Route::Tag(t.to_string()),
            (M::DELETE, ["v2", "tags", t]) => Route::TagDelete(t.to_string()),
            (M::POST, ["v2", "tags", t, "resources"]) => Route::TagAssign(t.to_string()),
            (M::DELETE, ["v2", "tags", t, "resources"]) => Route::TagUnassign(t.to_string()),
            _ => return None,
        })
    }

    /// DigitalOcean's operationId.
    fn op(&self) -> &'static str {
        match self {
            Route::Account => "account_get",
            Route::Regions => "regions_list",
            Route::Sizes => "sizes_list",
            Route::Images => "images_list",
            Route::DropletsCreate => "droplets_create",
            Route::DropletsList => "droplets_list",
            Route::DropletsDeleteByTag => "droplets_destroy_byTag",
            Route::Droplet(_) => "droplets_get",
            Route::DropletDelete(_) => "droplets_destroy",
            Route::DropletActions(_) => "dropletActions_post",
            Route::Action(_) => "actions_get",
            Route::VolumesCreate => "volumes_create",
            Route::VolumesList => "volumes_list",
            Route::Volume(_) => "volumes_get",
            Route::VolumeDelete(_) => "volumes_delete",
            Route::VolumeActions(_) => "volumeActions_post_byId",
            Route::KeysCreate => "sshKeys_create",
            Route::KeysList => "sshKeys_list",
            Route::Key(_) => "sshKeys_get",
            Route::KeyDelete(_) => "sshKeys_delete",
            Route::TagsCreate => "tags_create",
            Route::TagsList => "tags_list",
            Route::Tag(_) => "tags_get",
            Route::TagDelete(_) => "tags_delete",
            Route::TagAssign(_) => "tags_assign_resources",
            Route::TagUnassign(_) => "tags_unassign_resources",
        }
    }

    /// The spec file of operations that take a JSON request body.
    fn request_spec(&self) -> Option<&'static str> {
        Some(match self {
            Route::DropletsCreate => "droplets/droplets_create.yml",
            Route::DropletActions(_) => "droplets/dropletActions_post.yml",
            Route::VolumesCreate => "volumes/volumes_create.yml",
            Route::VolumeActions(_) => "volumes/volumeActions_post_byId.yml",
            Route::KeysCreate => "ssh_keys/sshKeys_create.yml",
            Route::TagsCreate => "tags/tags_create.yml",
            Route::TagAssign(_) => "tags/tags_assign_resources.yml",
            Route::TagUnassign(_) => "tags/tags_unassign_resources.yml",
            _ => return None,
        })
    }

    fn path(&self) -> String {
        match self {
            Route::DropletsList => "/v2/droplets".into(),
            Route::VolumesList => "/v2/volumes".into(),
            Route::KeysList => "/v2/account/keys".into(),
            Route::TagsList => "/v2/tags".into(),
            Route::Regions => "/v2/regions".into(),
            Route::Sizes => "/v2/sizes".into(),
            Route::Images => "/v2/images".into(),
            _ => String::new(),
        }
    }
}

/// Serves the fake on `listener` until `shutdown` resolves.
pub async fn serve_until(
    fake: Arc<Fake>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    fake.resume_phone_homes();
    let saver = {
        let fake = fake.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Err(e) = fake.save_snapshot() {
                    tracing::error!(error = %e, "writing the snapshot");
                }
            }
        })
    };
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer): (_, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let fake = fake.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| fake.clone().handle(req));
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
    saver.abort();
    fake.save_snapshot()?;
    Ok(())
}
