//! Retry policies of the journaled steps.

use std::time::Duration;

use restate_sdk::prelude::RunRetryPolicy;

/// Internal RPC steps: the component may be restarting, so never give up (the invocation stays
/// visible in the Restate UI meanwhile).
pub(crate) fn rpc_policy() -> RunRetryPolicy {
    RunRetryPolicy::new()
        .initial_delay(Duration::from_millis(100))
        .exponentiation_factor(2.0)
        .max_delay(Duration::from_secs(2))
}

/// Provider steps: transient errors back off up to ~2 minutes in total, then the step fails
/// terminally and its instances are failed with the last error.
pub(crate) fn provider_policy() -> RunRetryPolicy {
    RunRetryPolicy::new()
        .initial_delay(Duration::from_millis(200))
        .exponentiation_factor(2.0)
        .max_delay(Duration::from_secs(10))
        .max_attempts(20)
        .max_duration(Duration::from_secs(120))
}
