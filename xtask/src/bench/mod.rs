//! `cargo xtask bench <which>`: benchmarks that print numbers and ratios.

mod api;
mod e2e;
mod fakecloud;
mod host;
mod observe;
mod webhooks;

use std::path::PathBuf;

use anyhow::Result;

use crate::build::cargo;
use clap::Subcommand;

#[derive(Subcommand, Clone, Copy)]
pub enum Which {
    /// talis-host vs a native hyper server: hello-world and JSON echo.
    Host,
    /// project.create (100 instances) and task.get through talis-host vs natively on rusqlite.
    Api,
    /// Requests/s of the fake cloud.
    Fakecloud,
    /// Create-to-ready time for 100 and 1 000 instances, provider calls, peak RSS.
    E2e,
    /// The event log: long-poll wake-up latency, and project.create with vs without event writes.
    Observe,
    /// Webhook deliveries per second to a local receiver (several webhooks, one owner).
    Webhooks,
}

pub fn run(which: Which) -> Result<()> {
    match which {
        Which::Host => host::run(),
        Which::Api => api::run(),
        Which::Fakecloud => fakecloud::run(),
        Which::E2e => e2e::run(),
        Which::Observe => observe::run(),
        Which::Webhooks => webhooks::run(),
    }
}

/// Common start of the benches that compare talis-host with a native server in this process:
/// the native side must be optimised like the host, so a debug xtask (what `cargo xtask` builds)
/// re-runs the bench from a release build and answers `None`. Otherwise checks for wrk, builds the
/// components and a release host, and returns a fresh work directory `target/bench-<name>`.
fn prepare_wasm_bench(name: &str) -> Result<Option<PathBuf>> {
    if cfg!(debug_assertions) {
        let mut c = cargo();
        c.args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "xtask",
            "--",
            "bench",
            name,
        ]);
        crate::build::run(c)?;
        return Ok(None);
    }
    host::ensure_wrk()?;
    crate::build::components()?;
    let mut c = cargo();
    c.args(["build", "--release", "-p", "talis-host"]);
    crate::build::run(c)?;
    let work = talis_stack::target_dir().join(format!("bench-{name}"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    Ok(Some(work))
}

/// Builds what the whole stack runs, for benches on release binaries: npm's restate-server, the
/// components, and release host, fake cloud and workflows. Answers the release binaries' dir.
fn release_stack() -> Result<PathBuf> {
    crate::build::npm()?;
    crate::build::components()?;
    let mut c = cargo();
    c.args([
        "build",
        "--release",
        "-p",
        "talis-host",
        "-p",
        "fakecloud",
        "-p",
        "talis-workflows",
    ]);
    crate::build::run(c)?;
    Ok(talis_stack::target_dir().join("release"))
}
