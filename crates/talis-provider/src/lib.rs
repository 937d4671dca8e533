//! Cloud provider clients behind one [`Provider`] trait, used by the workflows.
//!
//! * [`Provider`]: provider-neutral operations the workflows need (idempotent ensure-by-tag,
//!   batch create, one-call project polling, delete by tag, volumes, orphans).
//! * [`DigitalOcean`]: the DigitalOcean API v2 client (also talks to `fakecloud`).
//! * [`tags`]: the one place that names the tags Talis puts on provider resources.
//! * [`observe`]: the hook through which a client reports every request (endpoint template,
//!   status, duration) and rate-limit wait, for the workflows' metrics.
//! * [`Error`]: retryable (429, 5xx, timeouts, connection errors) vs terminal (other 4xx,
//!   with the provider's message kept for the user).

pub mod digitalocean;
mod error;
mod limiter;
mod model;
pub mod observe;
mod provider;
pub mod tags;

pub use digitalocean::{Config, DigitalOcean};
pub use error::{Error, Result};
pub use limiter::RateLimiter;
pub use model::{
    BatchMember, Ensured, Machine, MachineBatch, MachineSpec, MachineStatus, Volume, VolumeSpec,
};
pub use observe::{Exchange, Observer};
pub use provider::{OnBatch, Provider, RoundStart};
