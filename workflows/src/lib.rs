//! Restate durable workflows executing Talis tasks.
//!
//! One `TaskWorkflow` per task (keyed by the task id, so the component's trigger is idempotent)
//! claims the task through the component's internal RPC, drives the provider in named journaled
//! steps, and records every transition back through the internal RPC. See `docs/workflows.md`.

pub mod config;
pub mod plan;
pub mod rpc;
mod steps;
mod workflow;

use std::sync::Arc;

use anyhow::Result;
use talis_provider::Provider;

pub use workflow::TaskWorkflow;

use config::Config;

/// Everything a step needs: configuration, the internal RPC client and the provider client.
/// Shared by all concurrent invocations.
pub struct App {
    pub config: Config,
    pub rpc: rpc::Internal,
    pub provider: Arc<dyn Provider>,
}

impl App {
    pub fn new(config: Config) -> Result<Arc<Self>> {
        let provider = talis_provider::DigitalOcean::new(talis_provider::Config::new(
            &config.do_api_url,
            &config.do_token,
        ))?;
        Ok(Arc::new(Self {
            rpc: rpc::Internal::new(&config.api_url, &config.internal_secret)?,
            provider: Arc::new(provider),
            config,
        }))
    }
}
