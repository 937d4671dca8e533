//! The Talis wire contract, declared once and shared by every part: the API component and the
//! service (talis-core) decode it, the workflows speak its internal part, the client and the CLI
//! send it.
//!
//! - [`ids`]: typed ids (`OwnerId`, `ProjectId`, `TaskId`, `InstanceId`).
//! - [`status`]: every status and action as an enum, and their state machines.
//! - [`model`]: the rows the API answers with.
//! - [`params`]: params and results of the public methods, with their constraints
//!   ([`rules`], [`fields`]) as attributes that are both checked and published.
//! - [`internal`]: the workflows' internal RPC, with typed refusal reasons.
//! - [`methods`]: the method table every dispatch, listing, client and document derives from.
//! - [`decode`]: the boundary (JSON → validated params, or the field that is wrong).
//! - [`envelope`], [`openapi`]: the wire envelopes and the OpenAPI document.
//! - [`cloudinit`], [`phone_home`]: the provisioning script and its signed phone-home URL,
//!   shared by the workflows (which make them) and the service (which checks them).
//! - [`webhooks`], [`egress`], [`signing`]: webhooks on the wire, the SSRF guard both the API
//!   and the workflows apply, and Standard Webhooks signatures.
//!
//! It depends on no other Talis crate and does no I/O.

pub mod cloudinit;
pub mod decode;
pub mod egress;
pub mod envelope;
pub mod events;
pub mod fields;
pub mod ids;
pub mod internal;
pub mod methods;
pub mod model;
pub mod openapi;
pub mod params;
pub mod phone_home;
pub mod rules;
pub mod signing;
pub mod status;
pub mod webhooks;

pub use envelope::*;
pub use events::{Event, EventBody, EventKind, EventList};
pub use fields::{ProjectConfig, Tag};
pub use ids::*;
pub use model::*;
pub use params::*;
pub use status::*;
