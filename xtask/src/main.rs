//! `cargo xtask <command>`: the project's chores in plain Rust.

mod bench;
mod build;
mod fuzz;
mod up;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Talis project chores")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the Spin components (wasm32-wasip2, release) and the native binaries.
    Build,
    /// Build everything, then run every unit and end-to-end test.
    Test {
        /// Extra arguments passed to `cargo nextest run` (e.g. a test filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Formatting and clippy (-D warnings) for native and wasm crates.
    Lint,
    /// Benchmarks that print numbers and ratios.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
    /// Run the whole stack locally on the fake cloud.
    Up(up::Args),
    /// Fuzz the API against its served OpenAPI document (schemathesis, fixed seed).
    FuzzApi,
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Build => build::all(),
        Cmd::Test { args } => build::test(&args),
        Cmd::Lint => build::lint(),
        Cmd::Bench { which } => bench::run(which),
        Cmd::Up(args) => up::run(args),
        Cmd::FuzzApi => fuzz::run(),
    }
}
