//! Environment configuration of the workflows service. Secrets are read here and never logged.

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Clone, clap::Parser)]
#[command(
    name = "talis-workflows",
    about = "Talis durable task workflows (Restate service endpoint)"
)]
pub struct Config {
    /// Address of the h2c endpoint Restate invokes.
    #[arg(long, env = "WORKFLOWS_LISTEN", default_value = "127.0.0.1:9080")]
    pub listen: SocketAddr,
    /// Base URL of the Talis API component (internal RPC under `/internal/v1/`).
    #[arg(long, env = "TALIS_API_URL", default_value = "http://127.0.0.1:3000")]
    pub api_url: String,
    /// Shared secret of the internal RPC (the component's `internal_secret` variable).
    #[arg(long, env = "TALIS_INTERNAL_SECRET", hide_env_values = true)]
    pub internal_secret: String,
    /// DigitalOcean API base URL (the fake cloud locally).
    #[arg(
        long,
        env = "DIGITALOCEAN_API_URL",
        default_value = "https://api.digitalocean.com"
    )]
    pub do_api_url: String,
    /// DigitalOcean API token.
    #[arg(long, env = "DIGITALOCEAN_TOKEN", hide_env_values = true)]
    pub do_token: String,
    /// How long a create already sent may take to land at the provider: an ensure round waits
    /// this long before looking up again after an ambiguous failure, and before its look-up
    /// when it resumes a round a crashed attempt may have started.
    #[arg(long, env = "TALIS_PROVIDER_SETTLE_MS", default_value_t = 5000)]
    pub provider_settle_ms: u64,
    /// Longest rate-limit wait the provider client spends holding a step; a longer one (the
    /// provider's `retry-after`) ends the step and the chunk sleeps it out durably.
    #[arg(
        long,
        env = "TALIS_PROVIDER_MAX_RATE_LIMIT_WAIT_MS",
        default_value_t = 60_000
    )]
    pub provider_max_rate_limit_wait_ms: u64,
    /// How long a machine may take from creation to phone-home before it is failed and destroyed.
    #[arg(long, env = "TALIS_PROVISION_TIMEOUT_SECS", default_value_t = 900)]
    pub provision_timeout_secs: u64,
    /// Longest pause between two looks at a chunk's progress (looks start fast and back off).
    #[arg(long, env = "TALIS_POLL_MAX_MS", default_value_t = 5000)]
    pub poll_max_ms: u64,
    /// Most instances one workflow chunk handles; a larger task runs its chunks as child
    /// workflows (1 to 1000).
    #[arg(long, env = "TALIS_CHUNK_SIZE", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub chunk_size: u32,
    /// Restate request-identity public keys (`publickeyv1_…`, comma-separated): when set, the
    /// endpoint answers only requests signed by a Restate server holding the private key, so
    /// no other pod can invoke the workflows directly.
    #[arg(long, env = "TALIS_RESTATE_IDENTITY_KEYS", value_delimiter = ',')]
    pub restate_identity_keys: Vec<String>,
    /// Seconds between two housekeeping ticks (reconcile sweep, event retention).
    #[arg(long, env = "TALIS_HOUSEKEEPING_SECS", default_value_t = 300)]
    pub housekeeping_secs: u64,
    /// Hosts and networks webhooks may reach despite the SSRF guard: host names, addresses and
    /// CIDRs, comma-separated (the same list as the API's `webhook_allow_hosts`).
    #[arg(long, env = "TALIS_WEBHOOK_ALLOW_HOSTS", default_value = "")]
    pub webhook_allow_hosts: String,
    /// Fixed addresses for webhook host names, `host=address` comma-separated (like curl's
    /// `--resolve`): for split-horizon DNS. The addresses are checked like resolved ones.
    #[arg(long, env = "TALIS_WEBHOOK_RESOLVE", default_value = "")]
    pub webhook_resolve: String,
    /// Longest wait for a receiver's answer to one delivery attempt.
    #[arg(long, env = "TALIS_WEBHOOK_TIMEOUT_SECS", default_value_t = 15)]
    pub webhook_timeout_secs: u64,
    /// How long after its event a delivery is retried before it is marked failed.
    #[arg(long, env = "TALIS_WEBHOOK_RETRY_FOR_SECS", default_value_t = 86_400)]
    pub webhook_retry_for_secs: u64,
    /// Pause after a delivery's first failed attempt; it doubles after each failure.
    #[arg(long, env = "TALIS_WEBHOOK_RETRY_INITIAL_MS", default_value_t = 5_000)]
    pub webhook_retry_initial_ms: u64,
    /// Longest pause between two attempts of one delivery.
    #[arg(long, env = "TALIS_WEBHOOK_RETRY_MAX_SECS", default_value_t = 3_600)]
    pub webhook_retry_max_secs: u64,
    /// Address of the HTTP/1 listener serving `GET /metrics` (Prometheus text) and `GET /health`
    /// (liveness).
    #[arg(long, env = "TALIS_METRICS_LISTEN", default_value = "127.0.0.1:9081")]
    pub metrics_listen: SocketAddr,
    /// Log lines for people (`text`) or one JSON object per line (`json`).
    #[arg(long, env = "TALIS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `--log-format` (the same flag and variable as talis-host and the fake cloud).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    pub fn provision_timeout(&self) -> Duration {
        Duration::from_secs(self.provision_timeout_secs)
    }

    pub fn housekeeping_every(&self) -> Duration {
        Duration::from_secs(self.housekeeping_secs.max(1))
    }

    pub fn poll_max(&self) -> Duration {
        Duration::from_millis(self.poll_max_ms)
    }
}
