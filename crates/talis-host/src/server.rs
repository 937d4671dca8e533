//! The HTTP trigger: route each request, add Spin's request headers, run a fresh instance of
//! the matched component, and turn traps and panics into a 500 without harming the host.
//! Before app routing it serves Spin's reserved `/.well-known/spin/{health,info}` and the
//! host's metrics. Every wait on a client, a guest or a free instance is bounded by a
//! [`Limits`] entry, and the answer names it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::app::App;
use crate::limits::{Limit, Limits, RETRY_AFTER_SECS};
use crate::metrics::{self, Metrics};
use crate::routes::RouteMatch;

/// Spin's reserved path prefix, answered by the host before app routing.
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

pub struct Server {
    pub app: Arc<App>,
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
    /// Where the metrics are served (`None`: not served).
    pub metrics_path: Option<String>,
    /// One permit per slot of the instance pool. A burst larger than the pool (e.g. a thousand
    /// machines phoning home at once) waits for a slot, up to `--instance-wait-timeout`.
    instances: Arc<Semaphore>,
}

/// Why a guest execution ended (decided in its task, where the metrics are counted).
#[derive(Debug)]
enum Outcome {
    Finished,
    /// Stopped by the execution deadline (epoch interruption, or the timeout around a guest
    /// blocked in a host call).
    Deadline,
    Failed,
}

/// The error an epoch-deadline callback returns to stop the guest.
#[derive(Debug, thiserror::Error)]
#[error("execution deadline reached")]
struct DeadlineReached;

fn plain(status: StatusCode, text: &str) -> Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(text.to_string()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    if !text.is_empty() {
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    r
}

/// An answer caused by a limit: the status and a line naming the limit's flag and value.
fn limited(status: StatusCode, message: String) -> Response<HyperOutgoingBody> {
    plain(status, &format!("{message}\n"))
}

/// The headers Spin adds to every request it hands to a component.
fn spin_headers(
    req: &Request<Incoming>,
    m: &RouteMatch<'_>,
    client: SocketAddr,
) -> Vec<(String, String)> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut h = vec![
        ("spin-path-info".to_string(), m.path_info.clone()),
        (
            "spin-full-url".to_string(),
            format!("http://{host}{path_and_query}"),
        ),
        ("spin-matched-route".to_string(), m.based_route.clone()),
        ("spin-base-path".to_string(), "/".to_string()),
        (
            "spin-raw-component-route".to_string(),
            m.raw_route.to_string(),
        ),
        (
            "spin-component-route".to_string(),
            m.raw_route_or_prefix.to_string(),
        ),
        ("spin-client-addr".to_string(), client.to_string()),
    ];
    for (name, value) in &m.params {
        h.push((
            format!(
                "spin-path-match-{}",
                name.replace('_', "-").to_ascii_lowercase()
            ),
            value.clone(),
        ));
    }
    h
}

impl Server {
    pub fn new(
        app: Arc<App>,
        limits: Arc<Limits>,
        metrics: Arc<Metrics>,
        metrics_path: Option<String>,
    ) -> Self {
        for (route, component) in app.router.routes() {
            if route.starts_with(WELL_KNOWN_PREFIX.trim_end_matches('/'))
                || metrics_path.as_deref() == Some(route)
            {
                tracing::warn!(
                    "route {route} of component {component} is served by the host ({WELL_KNOWN_PREFIX}... or --metrics-path) and never reaches the component"
                );
            }
        }
        let instances = Arc::new(Semaphore::new(limits.max_instances as usize));
        Self {
            app,
            limits,
            metrics,
            metrics_path,
            instances,
        }
    }

    pub async fn handle(
        self: Arc<Self>,
        client: SocketAddr,
        req: Request<Incoming>,
    ) -> Result<Response<HyperOutgoingBody>, Infallible> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let (route, resp) = self.dispatch(client, req).await;
        self.metrics
            .request(&route, resp.status().as_u16(), started.elapsed());
        tracing::debug!(
            "{method} {path} -> {} in {:?}",
            resp.status(),
            started.elapsed()
        );
        Ok(resp)
    }

    /// The answer and the `route` label it is counted under.
    async fn dispatch(
        &self,
        client: SocketAddr,
        req: Request<Incoming>,
    ) -> (String, Response<HyperOutgoingBody>) {
        let path = req.uri().path();
        if self.metrics_path.as_deref() == Some(path) {
            let mut r = plain(StatusCode::OK, &self.metrics.encode());
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                ),
            );
            return (path.to_string(), r);
        }
        if let Some(name) = path.strip_prefix(WELL_KNOWN_PREFIX) {
            return (metrics::WELL_KNOWN.to_string(), self.well_known(name));
        }
        let app = self.app.clone();
        let Some(m) = app.router.route(path) else {
            return (
                metrics::UNMATCHED.to_string(),
                plain(StatusCode::NOT_FOUND, ""),
            );
        };
        let route = m.raw_route.to_string();
        (route, self.run(client, req, m).await)
    }

    /// Spin's reserved routes: `health` answers 200 "OK", `info` the app's name and version.
    fn well_known(&self, name: &str) -> Response<HyperOutgoingBody> {
        match name {
            "health" => plain(StatusCode::OK, "OK"),
            "info" => {
                let mut info = serde_json::json!({ "name": self.app.name });
                if let Some(v) = &self.app.version {
                    info["version"] = v.clone().into();
                }
                let mut r = plain(
                    StatusCode::OK,
                    &serde_json::to_string_pretty(&info).unwrap_or_default(),
                );
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                r
            }
            _ => plain(StatusCode::NOT_FOUND, ""),
        }
    }

    /// A free instance slot, waiting at most `--instance-wait-timeout` when all are busy.
    async fn instance_slot(&self) -> Option<OwnedSemaphorePermit> {
        match self.instances.clone().try_acquire_owned() {
            Ok(p) => return Some(p),
            Err(TryAcquireError::Closed) => return None,
            Err(TryAcquireError::NoPermits) => {}
        }
        let waiting = Instant::now();
        let slot = tokio::time::timeout(
            self.limits.instance_wait_timeout,
            self.instances.clone().acquire_owned(),
        )
        .await;
        self.metrics.pool_wait(waiting.elapsed());
        match slot {
            Ok(Ok(p)) => Some(p),
            _ => {
                self.metrics.timeout(Limit::InstanceWait);
                None
            }
        }
    }

    async fn run(
        &self,
        client: SocketAddr,
        req: Request<Incoming>,
        m: RouteMatch<'_>,
    ) -> Response<HyperOutgoingBody> {
        let Some(component) = self.app.components.get(m.component) else {
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "");
        };
        let headers = spin_headers(&req, &m, client);
        let component_id = m.component.to_string();
        let limits = &self.limits;

        let too_large = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|len| len > limits.max_request_body as u64);
        let body_too_large = || {
            limited(
                StatusCode::PAYLOAD_TOO_LARGE,
                Limit::MaxRequestBody.describe(limits, "request body too large"),
            )
        };
        if too_large {
            return body_too_large();
        }
        let (mut parts, body) = req.into_parts();
        // Buffered with a cap: a chunked body without Content-Length is limited too. Bounded
        // in time as well, so a client that sends half a body and stops cannot hold the
        // connection (and up to the body limit in memory) forever.
        let body = Limited::new(body, limits.max_request_body).collect();
        let body = match tokio::time::timeout(limits.body_read_timeout, body).await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return body_too_large();
            }
            Ok(Err(e)) => {
                tracing::debug!("reading request body: {e}");
                return plain(StatusCode::BAD_REQUEST, "");
            }
            Err(_) => {
                self.metrics.timeout(Limit::BodyRead);
                let message = Limit::BodyRead.describe(limits, "request body not received in time");
                tracing::info!(client = %client, "{message}");
                let mut r = limited(StatusCode::REQUEST_TIMEOUT, message);
                // The rest of the body is not read: the connection cannot carry another request.
                r.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                return r;
            }
        };
        for (k, v) in headers {
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
                parts.headers.insert(k, v);
            }
        }
        if !parts.headers.contains_key(http::header::HOST) {
            parts
                .headers
                .insert(http::header::HOST, HeaderValue::from_static("localhost"));
        }
        let req = Request::from_parts(parts, Full::new(body));

        let state = match component.new_state(&self.app.resources, limits, &self.metrics) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(component = %component_id, "preparing instance: {e:#}");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "");
            }
        };
        let Some(slot) = self.instance_slot().await else {
            let message = Limit::InstanceWait.describe(
                limits,
                "no free instance: all --max-instances slots stayed busy",
            );
            tracing::warn!(component = %component_id, "{message}");
            let mut r = limited(StatusCode::SERVICE_UNAVAILABLE, message);
            r.headers_mut().insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(RETRY_AFTER_SECS),
            );
            return r;
        };
        let mut store = Store::new(&self.app.engine, state);
        // The execution deadline, two ways: the epoch ticker interrupts a guest that keeps
        // computing (yielding to other tasks at every tick meanwhile), and the timeout around
        // the whole task stops a guest blocked in a host call (sleep, outbound HTTP, ...).
        let deadline = Instant::now() + limits.execution_deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Error::new(DeadlineReached))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let pre = component.pre.clone();
        let metrics = self.metrics.clone();
        let deadline_message = Limit::ExecutionDeadline.describe(
            limits,
            "the component did not finish within the execution deadline and was stopped",
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The guest runs in its own task: it may keep streaming the body after answering,
        // and a trap or host panic there cannot take the connection task down with it.
        let task = {
            let component_id = component_id.clone();
            let deadline_message = deadline_message.clone();
            tokio::spawn(async move {
                // Held until the instance is dropped with this task (it may outlive the
                // answer); locals drop in reverse order, so the store (and its pool slot) goes
                // first. A stopped instance is dropped here, never reused.
                let _slot = slot;
                let mut store = store;
                let guest = async {
                    let req = store
                        .data_mut()
                        .http()
                        .new_incoming_request(Scheme::Http, req)?;
                    let out = store.data_mut().http().new_response_outparam(tx)?;
                    let proxy = pre.instantiate_async(&mut store).await?;
                    proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut store, req, out)
                        .await
                };
                let outcome = match tokio::time::timeout_at(deadline.into(), guest).await {
                    Ok(Ok(())) => Outcome::Finished,
                    Ok(Err(e)) if e.is::<DeadlineReached>() => Outcome::Deadline,
                    Err(_elapsed) => Outcome::Deadline,
                    Ok(Err(e)) => {
                        metrics.trap(&component_id);
                        tracing::error!(component = %component_id, "request failed: {e:#}");
                        Outcome::Failed
                    }
                };
                if let Outcome::Deadline = outcome {
                    metrics.deadline_hit(&component_id);
                    tracing::warn!(component = %component_id, "{deadline_message}");
                }
                outcome
            })
        };
        match rx.await {
            Ok(Ok(resp)) => resp,
            Ok(Err(code)) => {
                tracing::error!(component = %component_id, "component answered with an error: {code:?}");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "")
            }
            Err(_) => match task.await {
                Ok(Outcome::Deadline) => limited(StatusCode::GATEWAY_TIMEOUT, deadline_message),
                Ok(Outcome::Failed) => plain(StatusCode::INTERNAL_SERVER_ERROR, ""),
                Ok(Outcome::Finished) => {
                    tracing::error!(component = %component_id, "request failed: the component returned without sending a response");
                    plain(StatusCode::INTERNAL_SERVER_ERROR, "")
                }
                Err(e) => {
                    tracing::error!(component = %component_id, "request failed: handler task failed: {e}");
                    plain(StatusCode::INTERNAL_SERVER_ERROR, "")
                }
            },
        }
    }

    /// Serves until `shutdown` resolves, then lets open requests finish (bounded). At most
    /// `--max-connections` connections are open at once: beyond that the listener stops
    /// accepting, so new connections wait in the kernel's listen backlog (a burst is served
    /// late rather than refused) until one closes.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        // Without a timer hyper never times a client out: a client that sends half its
        // headers (or nothing, on a kept-alive connection) would hold the connection forever.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout);
        let connections = Arc::new(Semaphore::new(self.limits.max_connections));
        tokio::pin!(shutdown);
        loop {
            let permit = match connections.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    self.metrics.connection_limit_wait();
                    tracing::warn!(
                        "{}",
                        Limit::MaxConnections.describe(
                            &self.limits,
                            "connection limit reached: new connections wait until one closes"
                        )
                    );
                    tokio::select! {
                        p = connections.clone().acquire_owned() => match p {
                            Ok(p) => p,
                            Err(_) => break,
                        },
                        () = &mut shutdown => break,
                    }
                }
            };
            let (stream, client) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            let service = hyper::service::service_fn(move |req| server.clone().handle(client, req));
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            let conn = graceful.watch(conn);
            let server = self.clone();
            server.metrics.connection_opened();
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = conn.await {
                    let header_timeout = e
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_timeout);
                    if header_timeout {
                        // Also how idle keep-alive connections end: not worth more than debug.
                        server.metrics.timeout(Limit::HeaderRead);
                        tracing::debug!(
                            "closed the connection from {client}: {}",
                            Limit::HeaderRead
                                .describe(&server.limits, "no complete request headers in time")
                        );
                    } else {
                        tracing::debug!("connection from {client}: {e}");
                    }
                }
                server.metrics.connection_closed();
            });
        }
        drop(listener);
        tracing::info!("shutting down: waiting for open requests");
        if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("open requests did not finish within 10s; exiting anyway");
        }
    }
}
