//! The HTTP edge: a connection per client (HTTP/1.1, keep-alive), and every API request through
//! the same steps — route, bearer token, per-token rate limit, injected fault, the operation
//! (`api`), DigitalOcean's answer (`wire`). `/_fake/` goes to the control routes instead.

mod api;
mod control;
mod routes;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, header};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::error::ApiError;
use crate::fake::{Fake, now_ms};
use crate::faults::Effect;
use crate::ratelimit::{Verdict, Window};
use api::{ApiRequest, Body};
use routes::Route;
use wire::{Resp, error_response, json_response, read_json, text_response};

/// Connection is closed without an answer (dropped-connection and lost-response faults).
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

fn bearer_token(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

impl Fake {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Resp, Dropped> {
        let path = req.uri().path().to_string();
        if let Some(rest) = path.strip_prefix("/_fake/") {
            return Ok(self.control(req, rest).await);
        }
        let Some(route) = Route::parse(req.method(), &path) else {
            return Ok(error_response(&ApiError::not_found(), None));
        };
        let op = route.op();
        let token = bearer_token(&req);
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
                let g = &mut *g;
                g.faults.pick(op, &mut g.rng)
            };
            if verdict.retry_after.is_some() {
                g.counters.call(op, "429");
            } else if !authenticated {
                g.counters.call(op, "401");
            }
            (verdict, fault)
        };
        let rl = Some(verdict);
        if verdict.retry_after.is_some() {
            return Ok(error_response(&ApiError::too_many_requests(), rl));
        }
        if !authenticated {
            let e = ApiError::new(401, "Unauthorized", "Unable to authenticate you");
            return Ok(error_response(&e, rl));
        }
        let lose_answer = match fault {
            None => false,
            Some(Effect::Answer(e)) => {
                self.lock().counters.call(op, e.status.to_string());
                return Ok(error_response(&e, rl));
            }
            Some(Effect::Drop) => {
                self.lock().counters.call(op, "dropped");
                return Err(Dropped);
            }
            Some(Effect::Stall(d)) => {
                // Processed after the stall even if the client gave up meanwhile (it cannot
                // know whether its request took effect).
                let fake = self.clone();
                return tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    fake.process(req, route, rl, false).await
                })
                .await
                .unwrap_or(Err(Dropped));
            }
            Some(Effect::LoseAnswer) => true,
        };
        self.process(req, route, rl, lose_answer).await
    }

    /// Reads the request, answers it, and records the outcome (`lost` when the answer is to
    /// be lost by fault injection).
    async fn process(
        self: Arc<Self>,
        req: Request<Incoming>,
        route: Route,
        rl: Option<Verdict>,
        lose_answer: bool,
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
                self.lock().counters.call(op, e.status.to_string());
                return Ok(error_response(&e, rl));
            }
        };
        if let Err(e) = self.check_request(&route, &body) {
            self.lock().counters.call(op, "400");
            return Ok(error_response(&e, rl));
        }
        let request = ApiRequest {
            route,
            host,
            query,
            body,
        };
        let answer = {
            let mut g = self.lock();
            let answer = api::answer(&mut g, &request, now_ms());
            let outcome = if lose_answer {
                "lost".to_string()
            } else {
                answer
                    .as_ref()
                    .map_or_else(|e| e.status, |(s, _)| *s)
                    .to_string()
            };
            g.counters.call(op, outcome);
            answer
        };
        if method != Method::GET && answer.is_ok() {
            self.mark_dirty();
            if matches!(request.route, Route::DropletsCreate) {
                self.phone_home_wake.notify_one();
            }
        }
        if lose_answer {
            return Err(Dropped);
        }
        Ok(match answer {
            Ok((status, Body::Text(t))) => text_response(status, t, rl),
            Ok((status, Body::Json(v))) => json_response(status, v, rl),
            Err(e) => error_response(&e, rl),
        })
    }
}

/// Serves the fake on `listener` until `shutdown` resolves, with its phone-home scheduler and
/// snapshot writer; writes the snapshot a last time on the way out.
pub async fn serve_until(
    fake: Arc<Fake>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let scheduler = crate::phone_home::spawn_scheduler(fake.clone());
    let writer = crate::snapshot::spawn_writer(fake.clone());
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
    scheduler.abort();
    writer.abort();
    fake.save_snapshot()?;
    Ok(())
}
