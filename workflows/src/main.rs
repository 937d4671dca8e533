//! `talis-workflows`: the Restate service endpoint (h2c) executing Talis tasks as durable
//! workflows. Configuration comes from the environment (see [`config::Config`]).

use anyhow::{Context, Result};
use clap::Parser;
use hyper_util::rt::{TokioExecutor, TokioIo};
use restate_sdk::prelude::*;
use tracing::{info, warn};

use talis_workflows::config::{Config, LogFormat};
use talis_workflows::{
    App, Housekeeping, TaskChunk, TaskWorkflow, WebhookDispatch, WebhookEndpoint, metrics,
};

fn init_logs(format: LogFormat) {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,restate_sdk=warn".into()),
        )
        .with_ansi(false)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let config = Config::parse();
    init_logs(config.log_format);
    if !secret_is_strong(&config.internal_secret) {
        anyhow::bail!(
            "TALIS_INTERNAL_SECRET is shorter than {} characters: the API would refuse it (set the same long secret on both sides)",
            talis_api::rules::MIN_SECRET_LEN
        );
    }
    let listen = config.listen;
    let metrics_listener = metrics::bind(config.metrics_listen)
        .await
        .with_context(|| format!("binding the metrics listener {}", config.metrics_listen))?;
    info!(
        "metrics on http://{}{} (liveness: {})",
        metrics_listener.local_addr()?,
        metrics::METRICS_PATH,
        metrics::HEALTH_PATH
    );
    tokio::spawn(metrics::serve(metrics_listener));
    let app = App::new(config)?;
    let mut builder = Endpoint::builder()
        .bind(TaskWorkflow(app.clone()))
        .bind(TaskChunk(app.clone()))
        .bind(Housekeeping(app.clone()))
        .bind(WebhookDispatch)
        .bind(WebhookEndpoint(app.clone()));
    for key in app
        .config
        .restate_identity_keys
        .iter()
        .filter(|k| !k.trim().is_empty())
    {
        builder = builder
            .identity_key(key.trim())
            .map_err(|e| anyhow::anyhow!("TALIS_RESTATE_IDENTITY_KEYS: {e:?}"))?;
    }
    let endpoint = restate_sdk::hyper::HyperEndpoint::new(builder.build());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    info!("talis-workflows listening on {}", listener.local_addr()?);
    // The SDK's own server leaves Nagle on, which costs ~45 ms per journal round trip; accept
    // connections here and serve h2c with TCP_NODELAY.
    loop {
        let (stream, remote) = tokio::select! {
            r = listener.accept() => r?,
            _ = shutdown_signal() => {
                info!("shutting down");
                return Ok(());
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            warn!("set_nodelay for {remote}: {e}");
        }
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), endpoint);
            if let Err(e) = conn.await {
                warn!("connection from {remote}: {e}");
            }
        });
    }
}

/// The API counts a shorter internal secret as unset, so every internal call would fail: say so at start.
fn secret_is_strong(secret: &str) -> bool {
    secret.chars().count() >= talis_api::rules::MIN_SECRET_LEN
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
