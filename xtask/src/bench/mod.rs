//! `cargo xtask bench <which>`: benchmarks that print numbers and ratios.

mod api;
mod e2e;
mod fakecloud;
mod host;

use anyhow::Result;
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
}

pub fn run(which: Which) -> Result<()> {
    match which {
        Which::Host => host::run(),
        Which::Api => api::run(),
        Which::Fakecloud => fakecloud::run(),
        Which::E2e => e2e::run(),
    }
}
