//! Starting `talis-workflows` (the Restate service endpoint) as a supervised process.

use std::path::Path;

use anyhow::Result;

use crate::process::{Ready, Service, Spec};
use crate::{bin, free_port};

/// Where the workflows find the API, the provider and their secrets.
#[derive(Clone, Debug)]
pub struct Options {
    /// Port of the h2c endpoint (`free_port()` in tests, `ports::WORKFLOWS` locally).
    pub port: u16,
    pub api_url: String,
    pub internal_secret: String,
    /// Base URL machines phone home to (the API's public URL).
    pub public_url: Option<String>,
    pub provider_url: String,
    pub provider_token: String,
    /// Extra environment (e.g. `TALIS_PROVISION_TIMEOUT_SECS`, `RUST_LOG`).
    pub env: Vec<(String, String)>,
}

impl Options {
    pub fn new(api_url: &str, internal_secret: &str, provider_url: &str, token: &str) -> Self {
        Self {
            port: free_port(),
            api_url: api_url.to_string(),
            internal_secret: internal_secret.to_string(),
            public_url: None,
            provider_url: provider_url.to_string(),
            provider_token: token.to_string(),
            env: Vec::new(),
        }
    }
}

/// A running workflows endpoint.
#[derive(Debug)]
pub struct Workflows {
    pub service: Service,
    pub port: u16,
}

impl Workflows {
    pub async fn start(opts: &Options, log_dir: &Path) -> Result<Self> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], opts.port));
        let mut spec = Spec::new("workflows", bin("talis-workflows"), log_dir)
            .env("WORKFLOWS_LISTEN", addr.to_string())
            .env("TALIS_API_URL", &opts.api_url)
            .env("TALIS_INTERNAL_SECRET", &opts.internal_secret)
            .env("DIGITALOCEAN_API_URL", &opts.provider_url)
            .env("DIGITALOCEAN_TOKEN", &opts.provider_token)
            .ready(Ready::Tcp(addr));
        if let Some(p) = &opts.public_url {
            spec = spec.env("TALIS_PUBLIC_URL", p);
        }
        for (k, v) in &opts.env {
            spec = spec.env(k, v);
        }
        Ok(Self {
            service: Service::start(spec).await?,
            port: opts.port,
        })
    }

    /// The URL to register with Restate as a deployment.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
