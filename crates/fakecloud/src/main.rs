//! DigitalOcean API v2 compatible fake cloud for tests, benchmarks and the local stack.

fn main() {}
