//! Typed async Rust client for the Talis API.
