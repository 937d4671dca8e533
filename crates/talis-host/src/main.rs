//! Spin-compatible local host for Spin HTTP components (wasmtime).

fn main() {}
