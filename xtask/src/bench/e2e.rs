//! `cargo xtask bench e2e`.

use anyhow::{Result, bail};

pub fn run() -> Result<()> {
    bail!("not implemented yet")
}
