//! Realism knobs: loaded from a TOML file (`--config`), replaceable at run time with
//! `PUT /_fake/config` (JSON of the same shape; `snapshot` excepted). Every field has a
//! default, so a file only names what it changes. Presets live in this crate's `presets/`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// new → active after `boot_delay_ms` + uniform(0, `boot_jitter_ms`).
    pub boot_delay_ms: u64,
    pub boot_jitter_ms: u64,
    /// Public IPv4 appears this long after creation (may be after `active`, as at DO).
    pub ip_delay_ms: u64,
    /// Per-token limits; past them → 429 with `retry-after`.
    pub rate_limit_per_minute: u32,
    pub rate_limit_per_hour: u32,
    /// Account quotas (→ 422 like DigitalOcean).
    pub droplet_limit: u32,
    pub volume_limit: u32,
    pub phone_home: PhoneHome,
    /// Injected faults, checked in order; the first that fires applies.
    pub faults: Vec<Fault>,
    /// Seed of the fault and jitter RNG (same seed + same calls → same faults).
    pub seed: u64,
    /// Tags with this prefix should be on at most one live droplet; `/_fake/stats` counts the
    /// tags that are on more (duplicates).
    pub unique_tag_prefix: String,
    /// Droplets sharing a name and a tag with this prefix (a project) are duplicates too: a
    /// client that names machines uniquely within a group (as multi-create requires: it gives
    /// every droplet the same tags) relies on that.
    pub group_tag_prefix: String,
    /// Droplets carrying this tag but neither a `unique_tag_prefix` nor a `group_tag_prefix` tag
    /// are orphans, as are volumes carrying it that are attached to no droplet.
    pub owner_tag: String,
    /// Write state here (JSON) when it changes, and load it at start. Start-up only (the
    /// command line's `--snapshot` overrides it): `PUT /_fake/config` cannot change it.
    pub snapshot: Option<std::path::PathBuf>,
    /// Check request bodies against DigitalOcean's spec (vendored in this crate's `spec/`)
    /// and answer 400 naming the violations: a contract test for clients.
    pub validate_requests: bool,
}

impl Default for Config {
    /// DigitalOcean-like but fast: a few seconds of boot, DO's rate limits and quotas raised
    /// for local fleets.
    fn default() -> Self {
        Config {
            boot_delay_ms: 2_000,
            boot_jitter_ms: 3_000,
            ip_delay_ms: 1_000,
            rate_limit_per_minute: 250,
            rate_limit_per_hour: 5_000,
            droplet_limit: 2_000,
            volume_limit: 2_000,
            phone_home: PhoneHome::default(),
            faults: Vec::new(),
            seed: 1,
            unique_tag_prefix: "talis-instance-".into(),
            group_tag_prefix: "talis-project-".into(),
            owner_tag: "talis".into(),
            snapshot: None,
            validate_requests: false,
        }
    }
}

impl Config {
    /// No latency, no limits: for fast functional tests.
    pub fn instant() -> Self {
        Config {
            boot_delay_ms: 0,
            boot_jitter_ms: 0,
            ip_delay_ms: 0,
            rate_limit_per_minute: u32::MAX,
            rate_limit_per_hour: u32::MAX,
            ..Config::default()
        }
    }

    /// DigitalOcean's pace, for benchmarks: `presets/digitalocean.toml` (45 s boot with the
    /// IP, DO's 250 requests/min and 5 000/hour per token, droplet limit raised to 10 000).
    pub fn digitalocean() -> Self {
        Self::from_toml(DIGITALOCEAN).expect("presets/digitalocean.toml parses")
    }

    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

/// The DigitalOcean-like preset (a file, so that `--config` can name it too).
const DIGITALOCEAN: &str = include_str!("../presets/digitalocean.toml");

/// The phone-home POST, made like the script's `curl -fsS --retry` (see `phone_home`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PhoneHome {
    pub enabled: bool,
    /// Attempts in all (curl's `--retry` + 1); transient failures only are retried.
    pub attempts: u32,
    /// Pause between attempts (curl's `--retry-delay`), or the answer's `Retry-After` if
    /// longer.
    pub retry_delay_ms: u64,
    /// Per attempt (curl's `--max-time`).
    pub timeout_ms: u64,
    /// POSTs under way at once; more wait their turn (a machine pausing between attempts
    /// holds no slot). Each holds a socket of this process, where real machines each have
    /// their own: this keeps a wave of thousands of machines within the fake's file
    /// descriptors.
    pub max_in_flight: u32,
}

impl Default for PhoneHome {
    /// 120 attempts 1 s apart: a machine keeps trying for about 2 minutes while its API is
    /// briefly down (answering 502/503 or refusing connections).
    fn default() -> Self {
        PhoneHome {
            enabled: true,
            attempts: 120,
            retry_delay_ms: 1_000,
            timeout_ms: 5_000,
            max_in_flight: 256,
        }
    }
}

/// One injected fault. `endpoint` is DigitalOcean's operationId (e.g. `droplets_create`,
/// `droplets_list`) or `*` for every API endpoint.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    #[serde(default = "any_endpoint")]
    pub endpoint: String,
    pub kind: FaultKind,
    /// Chance per matching call, 0..=1.
    #[serde(default = "one")]
    pub probability: f64,
    /// Fire at most this many times (then the rule is spent); unlimited if absent.
    #[serde(default)]
    pub count: Option<u64>,
    /// `error_5xx`: the status to answer (default 500).
    #[serde(default)]
    pub status: Option<u16>,
    /// `stall`: how long to hold the request before processing it.
    #[serde(default)]
    pub stall_ms: Option<u64>,
    /// `rate_limit_429`: once fired, this many consecutive calls (this one included) get 429.
    #[serde(default)]
    pub burst: Option<u64>,
}

fn any_endpoint() -> String {
    "*".into()
}

fn one() -> f64 {
    1.0
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer a 5xx error body without doing anything.
    #[serde(rename = "error_5xx")]
    Error5xx,
    /// Answer 429 (in bursts) without doing anything.
    #[serde(rename = "rate_limit_429")]
    RateLimit429,
    /// Hold the request `stall_ms`, then process it (a client that timed out never learns).
    Stall,
    /// Close the connection without doing anything.
    Drop,
    /// Do the work, then close the connection without answering ("accepted but response lost").
    LostResponse,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_with_faults_parses_and_defaults_fill_in() {
        let c = Config::from_toml(
            r#"
            boot_delay_ms = 45000
            [[faults]]
            endpoint = "droplets_create"
            kind = "lost_response"
            count = 1
            [[faults]]
            kind = "rate_limit_429"
            probability = 0.1
            burst = 3
            "#,
        )
        .unwrap();
        assert_eq!(c.boot_delay_ms, 45_000);
        assert_eq!(c.rate_limit_per_minute, 250);
        assert_eq!(c.faults.len(), 2);
        assert_eq!(c.faults[0].kind, FaultKind::LostResponse);
        assert_eq!(c.faults[1].endpoint, "*");
        assert!(
            Config::from_toml("bogus = 1").is_err(),
            "unknown fields are refused"
        );
    }

    #[test]
    fn digitalocean_preset_is_do_paced_with_room_for_10_000() {
        let c = Config::digitalocean();
        assert_eq!(
            (
                c.boot_delay_ms,
                c.boot_jitter_ms,
                c.ip_delay_ms,
                c.rate_limit_per_minute,
                c.rate_limit_per_hour,
                c.droplet_limit
            ),
            (45_000, 0, 45_000, 250, 5_000, 10_000)
        );
        assert_eq!(c.phone_home, PhoneHome::default());
    }
}
