//! Restate durable workflows executing Talis tasks.
//!
//! One `TaskWorkflow` per task (keyed by the task id, so the component's trigger is idempotent)
//! claims the task through the component's internal RPC and runs it in chunks of bounded size
//! (`TaskChunk` children for large tasks), driving the provider in named journaled steps and
//! recording every transition back through the internal RPC. Decisions that need no I/O live in
//! [`plan`] and [`wait`] with native tests. See `docs/workflows.md`.
//!
//! Webhook deliveries run here too ([`webhooks`]): a dispatcher and one virtual object per
//! webhook that delivers its messages in order, with durable retries. See `docs/webhooks.md`.

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
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use talis_provider::Provider;

pub use chunk::TaskChunk;
pub use housekeeping::Housekeeping;
pub use task::TaskWorkflow;
pub use webhooks::{WebhookDispatch, WebhookEndpoint};

use config::Config;

/// Everything a step needs: configuration, the internal RPC client, the provider client and
/// the webhook sender. Shared by all concurrent invocations.
pub struct App {
    pub config: Config,
    pub rpc: rpc::Internal,
    pub provider: Arc<dyn Provider>,
    pub webhooks: webhooks::Sender,
}

impl App {
    pub fn new(config: Config) -> Result<Arc<Self>> {
        let mut do_config = talis_provider::Config::new(&config.do_api_url, &config.do_token);
        do_config.settle = Duration::from_millis(config.provider_settle_ms);
        do_config.max_rate_limit_wait =
            Duration::from_millis(config.provider_max_rate_limit_wait_ms);
        let provider = talis_provider::DigitalOcean::new(do_config)?
            .with_observer(Arc::new(metrics::ProviderMetrics));
        Ok(Arc::new(Self {
            rpc: rpc::Internal::new(&config.api_url, &config.internal_secret)?,
            provider: Arc::new(provider),
            webhooks: webhooks::Sender::new(&config)?,
            config,
        }))
    }
}
