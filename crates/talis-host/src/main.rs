//! `talis-host up`: a Spin-compatible local host for Spin HTTP components on wasmtime.
//! Same command line, manifest, variables, routing, headers and imports as `spin up`, so the
//! same `.wasm` and `spin.toml` run here and on Spin. On top of Spin's behaviour it bounds
//! every wait on clients, guests and outbound services (`limits`), serves Prometheus metrics
//! (`metrics`) and can log JSON lines.

mod app;
mod glob;
mod guest_output;
mod kv;
mod limits;
mod manifest;
mod metrics;
mod outbound;
mod routes;
mod server;
mod sqlite;
mod state;
mod variables;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// Host side of the Spin interfaces beyond WASI (see the top-level `wit/world.wit`).
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "talis:host/spin-imports",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/sqlite.connection": crate::sqlite::Connection,
            "spin:sqlite/sqlite.connection": crate::sqlite::Connection,
            "fermyon:spin/key-value.store": crate::kv::KvStore,
            "wasi:keyvalue/store.bucket": crate::kv::KvStore,
            "wasi:keyvalue/atomics.cas": crate::kv::KvCas,
        },
    });
}

#[derive(Parser)]
#[command(version, about = "Spin-compatible local host for Spin HTTP components")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the application (like `spin up`).
    Up(UpArgs),
}

#[derive(clap::Args)]
struct UpArgs {
    /// The application manifest, or a directory containing spin.toml.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    from: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// SQL to run against the default database before serving, or `@file[:label]`. Repeatable.
    #[arg(long = "sqlite")]
    sqlite: Vec<String>,
    /// Spin runtime configuration file (sqlite_database, key_value_store, state_dir).
    #[arg(long = "runtime-config-file")]
    runtime_config_file: Option<PathBuf>,
    /// Directory for the app's state (default: .spin beside the manifest).
    #[arg(long = "state-dir")]
    state_dir: Option<PathBuf>,
    /// Set an application variable: NAME=VALUE (overrides SPIN_VARIABLE_NAME). Repeatable.
    #[arg(long = "variable", value_parser = key_value)]
    variables: Vec<(String, String)>,
    /// Pass an environment variable to all components: KEY=VALUE. Repeatable.
    #[arg(short = 'e', long = "env", value_parser = key_value)]
    env: Vec<(String, String)>,
    /// `PRAGMA synchronous` of every SQLite connection: `normal` (a commit survives a crash of
    /// any process; a power loss may roll back the last commits) or `full` (every commit
    /// fsynced).
    #[arg(
        long,
        env = "TALIS_HOST_SQLITE_SYNCHRONOUS",
        value_enum,
        default_value_t
    )]
    sqlite_synchronous: sqlite::Synchronous,
    #[command(flatten)]
    limits: limits::Limits,
    /// Path where the host serves its Prometheus metrics, before app routing (it shadows an
    /// app route of the same path).
    #[arg(long, env = "TALIS_HOST_METRICS_PATH", default_value = "/metrics")]
    metrics_path: String,
    /// Do not serve metrics (the path then reaches the app like any other).
    #[arg(long, env = "TALIS_HOST_NO_METRICS")]
    no_metrics: bool,
    /// Log format: `text` (human-readable) or `json` (one JSON object per line, component
    /// output included).
    #[arg(long, env = "TALIS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into());
    // Colours only for a person at a terminal, not in log files.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

fn main() -> std::process::ExitCode {
    let Cmd::Up(args) = Cli::parse().cmd;
    let format = args.log_format;
    init_logs(format);
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(up(args)));
    // One readable line (the whole cause chain), never a Debug dump with a backtrace:
    // start-up errors name the manifest line and field, and must be the last thing logged.
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            match format {
                LogFormat::Text => eprintln!("Error: {e:#}"),
                LogFormat::Json => tracing::error!("{e:#}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn up(args: UpArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let json = args.log_format == LogFormat::Json;
    let opts = app::Options {
        manifest: args.from,
        runtime_config: args.runtime_config_file,
        state_dir: args.state_dir,
        sqlite: args.sqlite,
        variables: args.variables,
        env: args.env,
        max_instances: args.limits.max_instances,
        guest_output_as_logs: json,
        sqlite_synchronous: args.sqlite_synchronous,
    };
    // Compiling components is CPU-bound; keep it off the async workers.
    let app = tokio::task::spawn_blocking(move || app::App::load(&opts)).await??;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    // Spin's start-up lines on stdout; with JSON logs, log events instead (every line JSON).
    if json {
        tracing::info!(url = %format!("http://{addr}"), "serving");
        for (route, component) in app.router.routes() {
            tracing::info!(component, url = %format!("http://{addr}{route}"), "route");
        }
    } else {
        println!("Serving http://{addr}");
        println!("Available Routes:");
        for (route, component) in app.router.routes() {
            println!("  {component}: http://{addr}{route}");
        }
    }
    tracing::info!("{} ready in {:?}", app.name, started.elapsed());
    let metrics_path = (!args.no_metrics).then_some(args.metrics_path);
    let metrics = metrics::Metrics::new(app.components.keys().map(String::as_str));
    let server = Arc::new(server::Server::new(
        Arc::new(app),
        Arc::new(args.limits),
        Arc::new(metrics),
        metrics_path,
    ));
    server.serve(listener, shutdown_signal()).await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
