//! The HTTP trigger: route each request, add Spin's request headers, run a fresh instance of
//! the matched component, and turn traps and panics into a 500 without harming the host.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::app::App;
use crate::routes::RouteMatch;

pub struct Server {
    pub app: Arc<App>,
    pub max_body: usize,
    /// One permit per slot of the instance pool. A burst larger than the pool (e.g. a thousand
    /// machines phoning home at once) waits for a slot instead of failing instantiation.
    pub instances: Arc<tokio::sync::Semaphore>,
}

fn plain(status: StatusCode, text: &str) -> Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(text.to_string()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r
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
    pub async fn handle(
        self: Arc<Self>,
        client: SocketAddr,
        req: Request<Incoming>,
    ) -> Result<Response<HyperOutgoingBody>, Infallible> {
        let started = std::time::Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let resp = self.dispatch(client, req).await;
        tracing::debug!(
            "{method} {path} -> {} in {:?}",
            resp.status(),
            started.elapsed()
        );
        Ok(resp)
    }

    async fn dispatch(
        &self,
        client: SocketAddr,
        req: Request<Incoming>,
    ) -> Response<HyperOutgoingBody> {
        let Some(m) = self.app.router.route(req.uri().path()) else {
            return plain(StatusCode::NOT_FOUND, "");
        };
        let Some(component) = self.app.components.get(m.component) else {
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "");
        };
        let headers = spin_headers(&req, &m, client);
        let component_id = m.component.to_string();

        let too_large = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|len| len > self.max_body as u64);
        if too_large {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
        }
        let (mut parts, body) = req.into_parts();
        // Buffered with a cap: a chunked body without Content-Length is limited too.
        let body = match Limited::new(body, self.max_body).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
            }
            Err(e) => {
                tracing::debug!("reading request body: {e}");
                return plain(StatusCode::BAD_REQUEST, "");
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

        let state = match component.new_state(&self.app.resources) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(component = %component_id, "preparing instance: {e:#}");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "");
            }
        };
        let Ok(slot) = self.instances.clone().acquire_owned().await else {
            return plain(StatusCode::SERVICE_UNAVAILABLE, "");
        };
        let store = Store::new(&self.app.engine, state);
        let pre = component.pre.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The guest runs in its own task: it may keep streaming the body after answering,
        // and a trap or host panic there cannot take the connection task down with it.
        let task = tokio::spawn(async move {
            // Held until the instance is dropped with this task (it may outlive the answer);
            // locals drop in reverse order, so the store (and its pool slot) goes first.
            let _slot = slot;
            let mut store = store;
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
        });
        match rx.await {
            Ok(Ok(resp)) => resp,
            Ok(Err(code)) => {
                tracing::error!(component = %component_id, "component answered with an error: {code:?}");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "")
            }
            Err(_) => {
                let why = match task.await {
                    Ok(Ok(())) => "the component returned without sending a response".to_string(),
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(e) => format!("handler task failed: {e}"),
                };
                tracing::error!(component = %component_id, "request failed: {why}");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "")
            }
        }
    }

    /// Serves until `shutdown` resolves, then lets open requests finish (bounded).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        tokio::pin!(shutdown);
        loop {
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
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("connection from {client}: {e}");
                }
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
