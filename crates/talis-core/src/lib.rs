//! The Talis service: the handlers of the method table (`talis_api::methods`) over SQL, API-key
//! auth and phone-home tokens, and the migrations. Knows nothing about HTTP, Spin or Restate:
//! the component hands it a connection, a caller and JSON params; it answers with a typed
//! result and the work to do after commit.

pub mod auth;
pub mod db;
pub mod error;
mod rows;
pub mod service;
pub mod settings;

pub use error::{Error, Result};
pub use service::{Config, Outcome, Service};

/// The storage format of timestamps: RFC 3339 UTC with milliseconds (sorts as text).
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn now() -> String {
    timestamp(chrono::Utc::now())
}
