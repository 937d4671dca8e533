//! `fakecloud --listen 127.0.0.1:PORT [--config faults.toml] [--snapshot state.json]
//! [--log-format text|json]`

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, ValueEnum};

#[derive(Parser)]
#[command(about = "DigitalOcean API v2 compatible fake cloud")]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:3100.
    #[arg(long)]
    listen: String,
    /// TOML file with realism knobs (boot delay, rate limits, faults...); presets in the
    /// crate's `presets/` (e.g. `digitalocean.toml`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Keep state in this JSON file (loaded at start, written on change). Overrides the config;
    /// cannot be changed at run time.
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// Log lines as human-readable text or as one JSON object per line.
    #[arg(long, env = "TALIS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let logs = tracing_subscriber::fmt().with_env_filter(
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "fakecloud=info".into()),
    );
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let mut config = match &args.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            fakecloud::Config::from_toml(&text)
                .with_context(|| format!("parsing {}", p.display()))?
        }
        None => fakecloud::Config::default(),
    };
    if args.snapshot.is_some() {
        config.snapshot = args.snapshot;
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "fakecloud listening");
    fakecloud::serve(config, listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
