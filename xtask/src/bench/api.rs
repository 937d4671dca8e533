//! `cargo xtask bench api`.

use anyhow::{Result, bail};

pub fn run() -> Result<()> {
    bail!("not implemented yet")
}
