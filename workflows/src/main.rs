//! Restate durable workflows executing Talis tasks.

fn main() {}
