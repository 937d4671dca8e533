//! `cargo xtask up`: the whole stack locally on the fake cloud.

use anyhow::{Result, bail};

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    bail!("not implemented yet")
}
