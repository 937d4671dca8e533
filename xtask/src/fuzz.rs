//! `cargo xtask fuzz-api`: holds the API to its OpenAPI document. Starts talis-host with the
//! real component on a fresh SQLite file and runs schemathesis (`fuzz/requirements.txt`) with
//! every check against the served document, with a fixed seed and case budget so CI is
//! deterministic. Fails on any failure.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use talis_stack::host::{self, HostOptions};

/// Fuzzing cases per operation (the coverage phase adds its boundary cases): several thousand
/// cases in all, within the 3-minute budget on 2 cores.
const MAX_EXAMPLES: &str = "5";
/// Fixed, so every run generates the same cases.
const SEED: &str = "20261129";
const ADMIN_KEY: &str = "fuzz-admin-key-of-at-least-32-characters";
const INTERNAL_SECRET: &str = "fuzz-internal-secret-of-at-least-32-chars";

/// The schemathesis CLI: `.venv-fuzz/bin/st` (what .ci/run installs), else `st` on PATH.
fn schemathesis() -> Result<PathBuf> {
    let venv = talis_stack::workspace_root().join(".venv-fuzz/bin/st");
    if venv.exists() {
        return Ok(venv);
    }
    if Command::new("st")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok("st".into());
    }
    bail!(
        "schemathesis is not installed; install it with:\n  python3 -m venv .venv-fuzz && .venv-fuzz/bin/pip install -r fuzz/requirements.txt"
    )
}

pub fn run() -> Result<()> {
    let st = schemathesis()?;
    crate::build::components()?;
    let mut c = crate::build::cargo();
    c.args(["build", "--bin", "talis-host"]);
    crate::build::run(c)?;
    let started = Instant::now();
    let rt = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("talis.db");
    let rc = dir.path().join("runtime-config.toml");
    std::fs::write(
        &rc,
        format!(
            "[sqlite_database.default]\ntype = \"spin\"\npath = {:?}\n",
            db.display().to_string()
        ),
    )?;
    let mut opts = HostOptions::new(talis_stack::workspace_root().join("spin.toml"), "/health");
    opts.runtime_config = Some(rc);
    opts.state_dir = Some(dir.path().join("state"));
    opts.ready_timeout = Duration::from_secs(180);
    let opts = opts
        .variable("admin_api_key", ADMIN_KEY)
        .variable("internal_secret", INTERNAL_SECRET)
        .variable("public_url", "http://127.0.0.1:1")
        // No workflow engine: triggers are skipped, tasks stay queued.
        .variable("restate_ingress_url", "")
        // Long-polls answer after 100 ms at most, so thousands of generated cases stay quick.
        .variable("event_wait_max_ms", "100");
    let host = rt
        .block_on(host::start(&opts, &dir.path().join("logs")))
        .context("starting talis-host")?;
    let report = talis_stack::target_dir().join("fuzz-api");
    let status = Command::new(&st)
        .current_dir(talis_stack::workspace_root())
        .env("TALIS_FUZZ_ADMIN_KEY", ADMIN_KEY)
        .env("TALIS_FUZZ_INTERNAL_SECRET", INTERNAL_SECRET)
        .args([
            "--config-file",
            "fuzz/schemathesis.toml",
            "run",
            &host.url("/api/v1/openapi.json"),
        ])
        .args([
            "--checks",
            "all",
            "--seed",
            SEED,
            "--max-examples",
            MAX_EXAMPLES,
        ])
        .args([
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--no-color",
        ])
        .args(["--request-timeout", "20", "--report", "junit"])
        .arg("--report-dir")
        .arg(&report)
        .status()
        .context("running schemathesis")?;
    drop(host);
    println!(
        "fuzz-api finished in {:.0} s (report: {})",
        started.elapsed().as_secs_f64(),
        report.display()
    );
    if !status.success() {
        bail!("schemathesis found failures (see above)");
    }
    Ok(())
}
