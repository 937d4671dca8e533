//! Starting `fakecloud` as a supervised process (see `process`): on a given or free port, with
//! an optional config file (TOML: boot delay, rate limits, faults...), ready when
//! `GET /_fake/health` answers. The base URL it returns is what a DigitalOcean client needs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::process::{Ready, Service, Spec};

/// Options for [`start`]. `Default` = free port, the fake's own defaults (DO-like but fast).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Listen port on 127.0.0.1; `None` picks a free one.
    pub port: Option<u16>,
    /// `--config` file.
    pub config: Option<PathBuf>,
    /// `--snapshot` file (state kept across restarts).
    pub snapshot: Option<PathBuf>,
}

/// A started fake cloud.
#[derive(Debug)]
pub struct FakeCloud {
    pub service: Service,
    /// `http://127.0.0.1:PORT` (no `/v2`).
    pub base_url: String,
}

impl FakeCloud {
    /// `GET /_fake/stats` (calls per endpoint and status, live resources, duplicates, orphans).
    pub async fn stats(&self) -> Result<serde_json::Value> {
        Ok(reqwest::get(format!("{}/_fake/stats", self.base_url))
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

/// The fake cloud's own counts (from `/_fake/stats`): what is live, and what went wrong.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloudCounts {
    pub live_droplets: u64,
    pub live_volumes: u64,
    /// Instances with more than one machine (tags or names that should be unique).
    pub duplicates: u64,
    /// Machines and volumes that belong to no instance.
    pub orphans: u64,
}

impl CloudCounts {
    pub fn from_stats(stats: &serde_json::Value) -> Self {
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        Self {
            live_droplets: n(&stats["droplets"]["live"]),
            live_volumes: n(&stats["volumes"]["live"]),
            duplicates: n(&stats["duplicates"]["count"]),
            orphans: n(&stats["orphans"]["count"]),
        }
    }
}

/// The command line of a fake cloud, for callers that manage the [`Service`] themselves.
pub fn spec(opts: &Options, log_dir: &Path) -> (Spec, String) {
    let port = opts.port.unwrap_or_else(crate::free_port);
    let base_url = format!("http://127.0.0.1:{port}");
    let mut spec = Spec::new("fakecloud", crate::bin("fakecloud"), log_dir)
        .args(["--listen".to_string(), format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "fakecloud=info")
        .ready(Ready::Http(format!("{base_url}/_fake/health")))
        .ready_timeout(Duration::from_secs(20));
    if let Some(c) = &opts.config {
        spec = spec.arg("--config").arg(c.display().to_string());
    }
    if let Some(s) = &opts.snapshot {
        spec = spec.arg("--snapshot").arg(s.display().to_string());
    }
    (spec, base_url)
}

/// Starts `fakecloud` (the binary next to the running executable, see [`crate::bin`]) and waits
/// until it answers.
pub async fn start(opts: &Options, log_dir: &Path) -> Result<FakeCloud> {
    let (spec, base_url) = spec(opts, log_dir);
    let service = Service::start(spec).await?;
    Ok(FakeCloud { service, base_url })
}
