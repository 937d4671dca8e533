//! The talis command-line interface.

fn main() {}
