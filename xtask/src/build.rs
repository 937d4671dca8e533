//! Building and testing: the wasm components, the native binaries, the test run.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// Spin components, built for wasm32-wasip2 in release (small, fast to instantiate).
pub const COMPONENTS: &[&str] = &["talis-api-fn", "spin-test-component"];

pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(talis_stack::workspace_root());
    c
}

pub fn run(mut cmd: Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("running {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

pub fn components() -> Result<()> {
    let mut c = cargo();
    c.args(["build", "--release", "--target", "wasm32-wasip2"]);
    for p in COMPONENTS {
        c.args(["-p", p]);
    }
    run(c)
}

/// Native binaries of the default members; `release` for benchmarks and the local stack.
pub fn binaries(release: bool) -> Result<()> {
    let mut c = cargo();
    c.args(["build", "--bins"]);
    if release {
        c.arg("--release");
    }
    run(c)
}

/// npm packages (the pinned Restate server and CLI), installed once from package-lock.json.
pub fn npm() -> Result<()> {
    let root = talis_stack::workspace_root();
    if !root.join("package-lock.json").exists()
        || root.join("node_modules/.package-lock.json").exists()
    {
        return Ok(());
    }
    let mut c = Command::new("npm");
    c.current_dir(&root).args(["ci", "--no-audit", "--no-fund"]);
    run(c)
}

pub fn all() -> Result<()> {
    npm()?;
    components()?;
    binaries(false)
}

/// `cargo nextest`, installed on first use (the README's test command needs it).
fn ensure_nextest() -> Result<()> {
    let mut probe = cargo();
    probe
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if probe.status().is_ok_and(|s| s.success()) {
        return Ok(());
    }
    eprintln!(
        "cargo-nextest is missing; installing it with `cargo install --locked cargo-nextest` (once, a few minutes)…"
    );
    let mut c = cargo();
    c.args(["install", "--locked", "cargo-nextest"]);
    run(c).context("installing cargo-nextest failed; install it yourself with `cargo install --locked cargo-nextest`")
}

pub fn test(extra: &[String]) -> Result<()> {
    ensure_nextest()?;
    all()?;
    let mut c = cargo();
    c.args(["nextest", "run", "--no-fail-fast"]).args(extra);
    run(c)
}

pub fn lint() -> Result<()> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run(fmt)?;
    let mut native = cargo();
    native.args(["clippy", "--all-targets", "--", "-D", "warnings"]);
    run(native)?;
    let mut wasm = cargo();
    wasm.args(["clippy", "--target", "wasm32-wasip2"]);
    for p in COMPONENTS {
        wasm.args(["-p", p]);
    }
    wasm.args(["--", "-D", "warnings"]);
    run(wasm)
}
