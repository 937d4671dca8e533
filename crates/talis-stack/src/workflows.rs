//! Starting `talis-workflows` (the Restate service endpoint) as a supervised process.

use std::path::Path;

use anyhow::Result;

use crate::process::{Ready, Service, Spec};
use crate::{bin, free_port};

/// What the local stack (`cargo xtask up`, tests, benches) lets webhooks reach despite the
/// SSRF guard: the loopback address receivers listen on here, and nothing else of 127/8 (so a
/// test can show that 127.0.0.2 stays refused). Set as the API's `webhook_allow_hosts` and the
/// workflows' `TALIS_WEBHOOK_ALLOW_HOSTS`.
pub const LOCAL_WEBHOOK_ALLOW_HOSTS: &str = "127.0.0.1";

/// Where the workflows find the API, the provider and their secrets.
#[derive(Clone, Debug)]
pub struct Options {
    /// Port of the h2c endpoint (`free_port()` in tests, `ports::WORKFLOWS` locally).
    pub port: u16,
    /// Port of the metrics and liveness listener (`free_port()` in tests,
    /// `ports::WORKFLOWS_METRICS` locally).
    pub metrics_port: u16,
    pub api_url: String,
    pub internal_secret: String,
    pub provider_url: String,
    pub provider_token: String,
    /// Extra environment (e.g. `TALIS_PROVISION_TIMEOUT_SECS`, `RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// The binary; `talis-workflows` next to the running executable by default.
    pub binary: Option<std::path::PathBuf>,
}

impl Options {
    pub fn new(api_url: &str, internal_secret: &str, provider_url: &str, token: &str) -> Self {
        Self {
            port: free_port(),
            metrics_port: free_port(),
            api_url: api_url.to_string(),
            internal_secret: internal_secret.to_string(),
            provider_url: provider_url.to_string(),
            provider_token: token.to_string(),
            env: Vec::new(),
            binary: None,
        }
    }
}

/// A running workflows endpoint.
#[derive(Debug)]
pub struct Workflows {
    pub service: Service,
    pub port: u16,
    pub metrics_port: u16,
}

/// The command line of a workflows endpoint (service `workflows`, log `workflows.log`).
pub fn spec(opts: &Options, log_dir: &Path) -> Spec {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], opts.port));
    let program = opts
        .binary
        .clone()
        .unwrap_or_else(|| bin("talis-workflows"));
    let mut spec = Spec::new("workflows", program, log_dir)
        .env("WORKFLOWS_LISTEN", addr.to_string())
        .env(
            "TALIS_METRICS_LISTEN",
            format!("127.0.0.1:{}", opts.metrics_port),
        )
        .env("TALIS_API_URL", &opts.api_url)
        .env("TALIS_INTERNAL_SECRET", &opts.internal_secret)
        .env("DIGITALOCEAN_API_URL", &opts.provider_url)
        .env("DIGITALOCEAN_TOKEN", &opts.provider_token)
        .env("TALIS_WEBHOOK_ALLOW_HOSTS", LOCAL_WEBHOOK_ALLOW_HOSTS)
        .ready(Ready::Tcp(addr));
    for (k, v) in &opts.env {
        spec = spec.env(k, v);
    }
    spec
}

impl Workflows {
    pub async fn start(opts: &Options, log_dir: &Path) -> Result<Self> {
        Ok(Self {
            service: Service::start(spec(opts, log_dir)).await?,
            port: opts.port,
            metrics_port: opts.metrics_port,
        })
    }

    /// A URL on the metrics listener (`/metrics`, `/health`).
    pub fn metrics_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.metrics_port)
    }

    /// The URL to register with Restate as a deployment.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Knobs of a [`FullStack`].
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// Fake cloud config (TOML text: boot delay, rate limits, faults...); `None` = instant.
    pub fake_config: Option<String>,
    /// Creation → phone-home deadline of the workflows.
    pub provision_timeout_secs: u64,
    /// Longest pause between project polls.
    pub poll_max_ms: u64,
    /// Where the binaries are (e.g. `target/release` for benchmarks); next to the running
    /// executable when `None`.
    pub bin_dir: Option<std::path::PathBuf>,
    /// Extra environment of the workflows (e.g. `TALIS_WEBHOOK_RETRY_INITIAL_MS`).
    pub workflows_env: Vec<(String, String)>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            fake_config: None,
            provision_timeout_secs: 120,
            poll_max_ms: 2000,
            bin_dir: None,
            workflows_env: Vec::new(),
        }
    }
}

/// The internal RPC secret of every [`FullStack`] (at least 32 characters: the API treats
/// shorter secrets as unset); tests call the internal RPC with it.
pub const STACK_INTERNAL_SECRET: &str = "e2e-internal-secret-0123456789abcdef";

/// The fake cloud's config for functional tests: no latency, no limits, and a phone-home that
/// retries like the script's `curl --retry` (so a restarting API does not lose it).
pub const INSTANT_FAKE: &str = r#"
boot_delay_ms = 0
boot_jitter_ms = 0
ip_delay_ms = 0
rate_limit_per_minute = 4294967295
rate_limit_per_hour = 4294967295
[phone_home]
attempts = 60
retry_delay_ms = 500
timeout_ms = 5000
"#;

/// A process of the [`FullStack`] that crash tests and the storm benchmark kill and restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Victim {
    Workflows,
    Restate,
    Host,
}

impl Victim {
    /// How long the process stays down: long enough for callers to notice (connections
    /// refused, Restate retrying the endpoint); talis-host a little longer, so machines'
    /// phone-homes meet a dead API and must retry.
    pub fn down_for(self) -> std::time::Duration {
        std::time::Duration::from_millis(match self {
            Victim::Workflows | Victim::Restate => 500,
            Victim::Host => 1500,
        })
    }
}

/// The whole stack on loopback: fake cloud, restate-server, workflows (registered), talis-host
/// serving the API component from the workspace's `spin.toml`. State and logs live under `dir`,
/// so any process can be killed and restarted with its state.
#[derive(Debug)]
pub struct FullStack {
    pub dir: std::path::PathBuf,
    pub fake: crate::fakecloud::FakeCloud,
    pub restate: crate::restate::Restate,
    pub workflows: Workflows,
    pub host: Service,
    pub api_url: String,
    pub admin_key: String,
    http: reqwest::Client,
}

impl FullStack {
    pub async fn start(dir: &Path, opts: StackOptions) -> Result<Self> {
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let fake_config = dir.join("fakecloud.toml");
        std::fs::write(
            &fake_config,
            opts.fake_config.as_deref().unwrap_or(INSTANT_FAKE),
        )?;
        let binary = |name: &str| match &opts.bin_dir {
            Some(d) => d.join(name),
            None => bin(name),
        };
        let (mut fake_spec, fake_url) = crate::fakecloud::spec(
            &crate::fakecloud::Options {
                config: Some(fake_config),
                snapshot: Some(dir.join("fakecloud-state.json")),
                ..Default::default()
            },
            &logs,
        );
        fake_spec.program = binary("fakecloud");
        let fake = crate::fakecloud::FakeCloud {
            service: Service::start(fake_spec).await?,
            base_url: fake_url,
        };
        let restate = crate::restate::Restate::start(
            &dir.join("restate"),
            &logs,
            crate::restate::Ports::free(),
        )
        .await?;
        let api_port = free_port();
        let api_url = format!("http://127.0.0.1:{api_port}");
        let internal_secret = STACK_INTERNAL_SECRET.to_string();
        let admin_key = "e2e-admin-key-0123456789abcdef0123456789".to_string();
        let mut wo = Options::new(&api_url, &internal_secret, &fake.base_url, "e2e-do-token");
        wo.env = vec![
            (
                "TALIS_PROVISION_TIMEOUT_SECS".into(),
                opts.provision_timeout_secs.to_string(),
            ),
            ("TALIS_POLL_MAX_MS".into(), opts.poll_max_ms.to_string()),
        ];
        wo.env.extend(opts.workflows_env.iter().cloned());
        wo.binary = Some(binary("talis-workflows"));
        let workflows = Workflows::start(&wo, &logs).await?;
        restate.register(&workflows.url()).await?;
        let mut host_opts =
            crate::host::HostOptions::new(crate::workspace_root().join("spin.toml"), "/health")
                .variable("admin_api_key", &admin_key)
                .variable("internal_secret", &internal_secret)
                .variable("restate_ingress_url", restate.ingress_url())
                .variable("public_url", &api_url)
                .variable("webhook_allow_hosts", LOCAL_WEBHOOK_ALLOW_HOSTS);
        host_opts.state_dir = Some(dir.join("spin"));
        host_opts.binary = Some(binary("talis-host"));
        host_opts.env = vec![("RUST_LOG".into(), "warn".into())];
        let host_spec = crate::host::spec(&host_opts, api_port, &logs);
        let host = Service::start(host_spec).await?;
        Ok(Self {
            dir: dir.to_path_buf(),
            fake,
            restate,
            workflows,
            host,
            api_url,
            admin_key,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()?,
        })
    }

    /// Calls a public RPC method as admin (`POST /v1/<method>`); returns `data` or the error.
    pub async fn call(&self, method: &str, params: serde_json::Value) -> Result<serde_json::Value> {
        self.call_as(&self.admin_key, method, params).await
    }

    /// Calls a public RPC method with an owner's API key; returns `data` or the error.
    pub async fn call_as(
        &self,
        api_key: &str,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let r = self
            .http
            .post(format!("{}/v1/{method}", self.api_url))
            .bearer_auth(api_key)
            .json(&params)
            .send()
            .await?;
        let status = r.status();
        let body: serde_json::Value = r.json().await?;
        if !status.is_success() || body["success"] == serde_json::Value::Bool(false) {
            anyhow::bail!("{method} answered {status}: {body}");
        }
        Ok(body["data"].clone())
    }

    /// Crashes one process (SIGKILL: no clean-up runs), leaves it down for
    /// [`Victim::down_for`], then restarts it with its state and ports and waits until it
    /// serves again (Restate: admin and ingress).
    pub async fn crash_and_restart(&mut self, victim: Victim) -> Result<()> {
        match victim {
            Victim::Workflows => self.workflows.service.kill9().await?,
            Victim::Restate => self.restate.service.kill9().await?,
            Victim::Host => self.host.kill9().await?,
        }
        tokio::time::sleep(victim.down_for()).await;
        match victim {
            Victim::Workflows => self.workflows.service.restart().await,
            Victim::Restate => self.restate.restart().await,
            Victim::Host => self.host.restart().await,
        }
    }

    /// `GET /_fake/stats` of the fake cloud.
    pub async fn fake_stats(&self) -> Result<serde_json::Value> {
        self.fake.stats().await
    }

    /// Replaces the fake cloud's config at run time (`PUT /_fake/config`, JSON).
    pub async fn set_fake_config(&self, config: &serde_json::Value) -> Result<()> {
        self.http
            .put(format!("{}/_fake/config", self.fake.base_url))
            .json(config)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}
