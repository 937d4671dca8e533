//! Talis domain: models, enums, validation, status state machines, SQL access behind the `Sql`
//! trait, and the RPC service. Knows nothing about HTTP, Spin or Restate.

pub mod auth;
pub mod db;
pub mod error;
pub mod model;
pub mod params;
pub mod service;
pub mod settings;
pub mod status;
pub mod validate;

pub use error::{Error, Result};
pub use service::{Config, Outcome, Service};

/// The storage format of timestamps: RFC 3339 UTC with milliseconds (sorts as text).
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn now() -> String {
    timestamp(chrono::Utc::now())
}
