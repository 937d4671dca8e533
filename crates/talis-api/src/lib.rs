//! Talis RPC request and response types (wire contract), built on talis-core.
