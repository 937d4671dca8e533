//! The RPC service run natively on rusqlite (the same code the component runs on Spin SQLite).

mod guards;
mod lifecycle;
mod plans;
mod support;
