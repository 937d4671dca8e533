//! The storm: a 1 000-machine deploy under the provider's faults and repeated kill -9s (issue 12's
//! "storm at scale"). One definition for the end-to-end test (`storm::` in `cargo xtask test`, debug
//! binaries) and the `storm-1000` scenario of `cargo xtask bench e2e` (release binaries), so both
//! run the same storm.

use std::time::Duration;

use crate::workflows::Victim;

/// Machines in the project.
pub const INSTANCES: usize = 1_000;

/// The fake cloud's config. Machines boot over 5–35 s, so kills land while machines are being
/// made and booted; every fifth provider call answers 503, 2 % start a burst of five 429s, and
/// 10 % of droplet creates are made but their answer is lost. Phone-homes retry for a minute
/// (like the script's `curl --retry`: the API may be down). No rate limit; the droplet limit
/// is raised to fit the project.
pub const FAKE_CONFIG: &str = r#"droplet_limit = 10000
boot_delay_ms = 5000
boot_jitter_ms = 30000
ip_delay_ms = 0
rate_limit_per_minute = 4294967295
rate_limit_per_hour = 4294967295
[phone_home]
attempts = 120
retry_delay_ms = 500
timeout_ms = 5000
[[faults]]
endpoint = "*"
kind = "error_5xx"
status = 503
probability = 0.2
[[faults]]
endpoint = "*"
kind = "rate_limit_429"
probability = 0.02
burst = 5
[[faults]]
endpoint = "droplets_create"
kind = "lost_response"
probability = 0.1
"#;

/// Kill -9s, one every [`KILL_EVERY`] once the first machine exists, cycling through
/// [`VICTIMS`]; each victim is restarted with its state ([`crate::workflows::FullStack::crash_and_restart`]).
pub const KILLS: usize = 10;
pub const VICTIMS: [Victim; 3] = [Victim::Workflows, Victim::Restate, Victim::Host];
pub const KILL_EVERY: Duration = Duration::from_millis(2500);

/// The victim of kill number `k` (from 0).
pub fn victim(k: usize) -> Victim {
    VICTIMS[k % VICTIMS.len()]
}
