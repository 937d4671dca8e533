//! `cargo xtask bench fakecloud`.

use anyhow::{Result, bail};

pub fn run() -> Result<()> {
    bail!("not implemented yet")
}
