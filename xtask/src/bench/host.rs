//! `cargo xtask bench host`.

use anyhow::{Result, bail};

pub fn run() -> Result<()> {
    bail!("not implemented yet")
}
