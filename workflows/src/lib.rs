//! Restate durable workflows executing Talis tasks.
//!
//! One `TaskWorkflow` per task (keyed by the task id, so the component's trigger is idempotent)
//! claims the task through the component's internal RPC and runs it in chunks of bounded size
//! (`TaskChunk` children for large tasks), driving the provider in named journaled steps and
//! recording every transition back through the internal RPC. Decisions that need no I/O live in
//! [`plan`] and [`wait`] with native tests. See `docs/workflows.md`.

mod chunk;
pub mod config;
pub mod housekeeping;
pub mod metrics;
pub mod plan;
mod policy;
pub mod rpc;
mod steps;
mod task;
pub mod wait;

use std::sync::Arc;

use anyhow::Result;
use talis_provider::Provider;

pub use chunk::TaskChunk;
pub use housekeeping::Housekeeping;
pub use task::TaskWorkflow;

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
        ))?
        .with_observer(Arc::new(metrics::ProviderMetrics));
        Ok(Arc::new(Self {
            rpc: rpc::Internal::new(&config.api_url, &config.internal_secret)?,
            provider: Arc::new(provider),
            config,
        }))
    }
}
