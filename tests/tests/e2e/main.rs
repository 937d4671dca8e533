//! The end-to-end tests, one module per concern (see `tests/README.md`). One test binary rather
//! than one per file: each binary links the whole client stack again, and on a 2-core CI machine
//! nineteen of them cost minutes of compiling and linking. nextest still runs every test in its
//! own process; `.config/nextest.toml` selects the heavy ones by module path.

mod api_auth;
mod api_internal;
mod api_lists;
mod api_openapi;
mod api_routes;
mod api_scale;
mod api_trigger;
mod api_validation;
mod chaos;
mod cli;
mod cli_observe;
mod cluster;
mod deploy;
mod host;
mod observe;
mod restate_identity;
mod safety;
mod storm;
mod webhooks;
mod workflows;
