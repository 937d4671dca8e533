//! Default local ports of `cargo xtask up` and the deploy manifests: the one place they are named.
//! Tests use free ports instead (`free_port`), so parallel runs never collide with a running stack.

/// The Spin app (talis-host or `spin up`): the Talis API.
pub const API: u16 = 3000;
/// The fake cloud (DigitalOcean API v2 subset).
pub const FAKECLOUD: u16 = 3100;
/// The workflows service endpoint (h2c), registered with Restate as a deployment.
pub const WORKFLOWS: u16 = 9080;
/// The workflows' metrics and liveness listener (`GET /metrics`, `GET /health`; HTTP/1).
pub const WORKFLOWS_METRICS: u16 = 9081;
/// Restate ingress: where the API triggers workflows.
pub const RESTATE_INGRESS: u16 = 8080;
/// Restate admin API; the web UI is served under `/ui/`.
pub const RESTATE_ADMIN: u16 = 9070;
/// Restate node-to-node port.
pub const RESTATE_NODE: u16 = 5122;

/// `cargo xtask up --cluster`: a service with several replicas keeps its port above for the
/// balancer in front of them, and replica `i` (0-based) listens on the next ports up. Restate's
/// node-to-node port has no balancer: node `i` uses `replica(RESTATE_NODE, i)`.
pub const fn replica(port: u16, i: u16) -> u16 {
    port + 1 + i
}

/// Workflows replica `i` of `--cluster`: above the metrics port, which sits right after the
/// balancer's ([`WORKFLOWS_METRICS`]); the replicas' own metrics listeners take free ports.
pub const fn workflows_replica(i: u16) -> u16 {
    replica(WORKFLOWS_METRICS, i)
}
