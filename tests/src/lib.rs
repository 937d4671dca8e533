//! End-to-end tests against the real processes (`tests/tests/e2e/`: one binary, one module per
//! concern) and the helpers they share:
//!
//! - [`api`]: the real API component on a real talis-host with its own SQLite file; typed
//!   clients (public and internal) for it, raw HTTP for tests about the wire itself, and
//!   builders of valid requests.
//! - [`flow`]: the full stack (fake cloud, restate-server, workflows, host): create a project,
//!   wait for its task, read its instances, check the fake cloud's counters.
//! - [`keys`]: valid OpenSSH public keys (the API parses them).
//! - [`metrics`]: Prometheus answers parsed and looked up as a scraper would.
//! - [`openapi`]: checks an answer against the served OpenAPI document.

pub mod api;
pub mod flow;
pub mod keys;
pub mod metrics;
pub mod openapi;
