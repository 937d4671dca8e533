//! The workflows' metrics, in the Prometheus text format 0.0.4 (built with `prometheus-client`),
//! served with a liveness route on their own listener (`TALIS_METRICS_LISTEN`, see
//! [`serve`]). Every series is prefixed `talis_`; labels take bounded values only (endpoint
//! templates, step name constants, status codes, outcome words), never ids.
//!
//! One process-wide registry, so any module records with a plain function call
//! ([`webhook_delivery`], [`step`] …). Steps record from inside their journaled closures,
//! which run once per attempt and never on replay, so a replayed workflow does not count twice.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use talis_provider::{Exchange, Observer};

/// The path of the metrics on the metrics listener.
pub const METRICS_PATH: &str = "/metrics";
/// The liveness path on the metrics listener (200 while the process serves).
pub const HEALTH_PATH: &str = "/health";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderCall {
    method: &'static str,
    endpoint: &'static str,
    /// The HTTP status, or `error` when no answer came.
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Endpoint {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WaitBy {
    /// `client`: the provider client paused in process; `workflow`: a durable sleep.
    by: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Step {
    step: &'static str,
    /// `ok`, or `error` (the step's attempt failed; Restate may retry it).
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

fn seconds_histogram() -> Histogram {
    // 1 ms … 131 s: a loopback RPC takes milliseconds, a provider round with retries minutes.
    Histogram::new(exponential_buckets(0.001, 2.0, 18))
}

struct Metrics {
    registry: Registry,
    provider_requests: Family<ProviderCall, Counter>,
    provider_duration: Family<Endpoint, Histogram, fn() -> Histogram>,
    provider_rate_limited: Family<Endpoint, Counter>,
    rate_limit_wait: Family<WaitBy, Counter<f64>>,
    step_duration: Family<Step, Histogram, fn() -> Histogram>,
    tasks_active: Gauge,
    webhook_deliveries: Family<Outcome, Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("talis"),
            provider_requests: Family::default(),
            provider_duration: Family::new_with_constructor(seconds_histogram),
            provider_rate_limited: Family::default(),
            rate_limit_wait: Family::default(),
            step_duration: Family::new_with_constructor(seconds_histogram),
            tasks_active: Gauge::default(),
            webhook_deliveries: Family::default(),
        };
        // Series that exist before their first event, so `rate()` works from the start.
        for by in ["client", "workflow"] {
            let _ = m.rate_limit_wait.get_or_create(&WaitBy { by });
        }
        let r = &mut m.registry;
        r.register(
            "provider_requests",
            "HTTP requests to the cloud provider, by method, endpoint template and status (`error`: no answer)",
            m.provider_requests.clone(),
        );
        r.register(
            "provider_request_duration_seconds",
            "Time from sending a provider request to the end of its answer, by endpoint template",
            m.provider_duration.clone(),
        );
        r.register(
            "provider_rate_limited",
            "Provider answers 429 (rate limited), by endpoint template",
            m.provider_rate_limited.clone(),
        );
        r.register(
            "provider_rate_limit_wait_seconds",
            "Time spent waiting for the provider's rate limit: in the client (`client`) or as a durable workflow sleep (`workflow`)",
            m.rate_limit_wait.clone(),
        );
        r.register(
            "workflow_step_duration_seconds",
            "Duration of one attempt of a journaled workflow step, by step name and outcome",
            m.step_duration.clone(),
        );
        r.register(
            "workflow_tasks_active",
            "TaskWorkflow invocations executing in this process now (a suspended one is not counted)",
            m.tasks_active.clone(),
        );
        r.register(
            "webhook_deliveries",
            "Webhook delivery attempts, by outcome",
            m.webhook_deliveries.clone(),
        );
        m
    }
}

/// The Prometheus text exposition of every series.
pub fn encode() -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &METRICS.registry);
    out
}

/// Counts one webhook delivery attempt. `outcome` is a fixed word (`delivered`, `failed`,
/// `retried` …), never a URL or a status text: it becomes a label value.
pub fn webhook_delivery(outcome: &'static str) {
    METRICS
        .webhook_deliveries
        .get_or_create(&Outcome { outcome })
        .inc();
}

/// Records a durable sleep a workflow takes for the provider's rate limit.
pub fn workflow_rate_limit_wait(wait: Duration) {
    METRICS
        .rate_limit_wait
        .get_or_create(&WaitBy { by: "workflow" })
        .inc_by(wait.as_secs_f64());
}

/// Runs one attempt of a step's side effect and records its duration under `step` (a
/// constant of `steps::names`).
pub async fn step<T, E>(
    step: &'static str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let r = work.await;
    METRICS
        .step_duration
        .get_or_create(&Step {
            step,
            outcome: if r.is_ok() { "ok" } else { "error" },
        })
        .observe(started.elapsed().as_secs_f64());
    r
}

/// Counts a TaskWorkflow invocation as active while the guard lives.
pub struct ActiveTask(());

impl ActiveTask {
    pub fn start() -> Self {
        METRICS.tasks_active.inc();
        Self(())
    }
}

impl Drop for ActiveTask {
    fn drop(&mut self) {
        METRICS.tasks_active.dec();
    }
}

/// The provider client's observer: every exchange and rate-limit wait into the series above.
pub struct ProviderMetrics;

impl Observer for ProviderMetrics {
    fn exchange(&self, e: &Exchange) {
        let status = e
            .status
            .map_or_else(|| "error".to_owned(), |s| s.to_string());
        METRICS
            .provider_requests
            .get_or_create(&ProviderCall {
                method: e.method,
                endpoint: e.endpoint,
                status,
            })
            .inc();
        let endpoint = Endpoint {
            endpoint: e.endpoint,
        };
        METRICS
            .provider_duration
            .get_or_create(&endpoint)
            .observe(e.elapsed.as_secs_f64());
        if e.status == Some(429) {
            METRICS.provider_rate_limited.get_or_create(&endpoint).inc();
        }
    }

    fn rate_limit_wait(&self, wait: Duration) {
        METRICS
            .rate_limit_wait
            .get_or_create(&WaitBy { by: "client" })
            .inc_by(wait.as_secs_f64());
    }
}

/// Serves `GET /metrics` and `GET /health` (HTTP/1.1) on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(answer))
                .await;
        });
    }
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match (req.method().as_str(), req.uri().path()) {
        ("GET", METRICS_PATH) => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            encode(),
        ),
        ("GET", HEALTH_PATH) => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        (_, METRICS_PATH | HEALTH_PATH) => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    Ok(Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response"))
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn series_are_prefixed_and_labelled_by_templates() {
        ProviderMetrics.exchange(&Exchange {
            method: "GET",
            endpoint: "/v2/droplets/{id}",
            status: Some(429),
            elapsed: Duration::from_millis(2),
        });
        ProviderMetrics.rate_limit_wait(Duration::from_millis(1500));
        webhook_delivery("delivered");
        let _: Result<(), ()> = step("claim", async { Ok(()) }).await;
        {
            let _t = ActiveTask::start();
            assert!(encode().contains("talis_workflow_tasks_active 1"));
        }
        let text = encode();
        for want in [
            r#"talis_provider_requests_total{method="GET",endpoint="/v2/droplets/{id}",status="429"} 1"#,
            r#"talis_provider_rate_limited_total{endpoint="/v2/droplets/{id}"} 1"#,
            r#"talis_provider_rate_limit_wait_seconds_total{by="client"} 1.5"#,
            r#"talis_provider_rate_limit_wait_seconds_total{by="workflow"} 0"#,
            r#"talis_webhook_deliveries_total{outcome="delivered"} 1"#,
            r#"talis_workflow_step_duration_seconds_count{step="claim",outcome="ok"} 1"#,
            "talis_workflow_tasks_active 0",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            assert!(line.starts_with("talis_"), "{line}");
        }
    }
}
