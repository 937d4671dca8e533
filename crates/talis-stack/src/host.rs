//! Starting `talis-host up` (the Spin-compatible host) as a supervised process (see `process`):
//! a manifest, a free loopback port, variables as `SPIN_VARIABLE_<NAME>` like `spin up`,
//! optional `--sqlite` statements and runtime config, ready when a route answers 2xx.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::process::{Ready, Service, Spec, free_port};

/// How to start a host.
#[derive(Clone, Debug)]
pub struct HostOptions {
    /// Name of the service and of its log file (`<log_dir>/<name>.log`).
    pub name: String,
    pub manifest: PathBuf,
    /// Application variables, passed as `SPIN_VARIABLE_<NAME>` environment variables.
    pub variables: Vec<(String, String)>,
    /// `--sqlite` arguments: SQL for the default database or `@file[:label]`.
    pub sqlite: Vec<String>,
    pub runtime_config: Option<PathBuf>,
    /// State directory (`.spin` beside the manifest when `None`, as with `spin up`).
    pub state_dir: Option<PathBuf>,
    /// Route probed with `GET` until it answers 2xx, e.g. `/health`.
    pub ready_path: String,
    pub ready_timeout: Duration,
    /// Extra environment for the host process (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// Extra command-line arguments (e.g. `--max-request-body`).
    pub args: Vec<String>,
    /// The binary; `talis-host` next to the running executable by default.
    pub binary: Option<PathBuf>,
}

impl HostOptions {
    pub fn new(manifest: impl Into<PathBuf>, ready_path: impl Into<String>) -> Self {
        Self {
            name: "talis-host".into(),
            manifest: manifest.into(),
            variables: Vec::new(),
            sqlite: Vec::new(),
            runtime_config: None,
            state_dir: None,
            ready_path: ready_path.into(),
            // A debug host compiling a component without a warm cache needs a few seconds.
            ready_timeout: Duration::from_secs(120),
            env: Vec::new(),
            args: Vec::new(),
            binary: None,
        }
    }

    pub fn variable(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.variables.push((name.into(), value.into()));
        self
    }
}

/// A running host and where it listens.
#[derive(Debug)]
pub struct Host {
    pub service: Service,
    /// `http://127.0.0.1:<port>`
    pub base_url: String,
    pub port: u16,
}

impl Host {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

/// The command line for `opts` on `port` (kept separate so a caller can inspect or tweak it).
pub fn spec(opts: &HostOptions, port: u16, log_dir: &Path) -> Spec {
    let program = opts
        .binary
        .clone()
        .unwrap_or_else(|| crate::bin("talis-host"));
    let base_url = format!("http://127.0.0.1:{port}");
    let mut spec = Spec::new(&opts.name, program, log_dir)
        .args(["up", "-f"])
        .arg(opts.manifest.display().to_string())
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .ready(Ready::Http(format!("{base_url}{}", opts.ready_path)))
        .ready_timeout(opts.ready_timeout);
    for s in &opts.sqlite {
        spec = spec.arg("--sqlite").arg(s.clone());
    }
    if let Some(rc) = &opts.runtime_config {
        spec = spec
            .arg("--runtime-config-file")
            .arg(rc.display().to_string());
    }
    if let Some(dir) = &opts.state_dir {
        spec = spec.arg("--state-dir").arg(dir.display().to_string());
    }
    spec = spec.args(opts.args.iter().cloned());
    for (name, value) in &opts.variables {
        spec = spec.env(
            format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()),
            value.clone(),
        );
    }
    for (k, v) in &opts.env {
        spec = spec.env(k.clone(), v.clone());
    }
    spec
}

/// Starts the host on a free loopback port and waits until `ready_path` answers.
pub async fn start(opts: &HostOptions, log_dir: &Path) -> Result<Host> {
    let port = free_port();
    let service = Service::start(spec(opts, port, log_dir)).await?;
    Ok(Host {
        service,
        base_url: format!("http://127.0.0.1:{port}"),
        port,
    })
}
