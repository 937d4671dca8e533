//! Test component exercising the Spin host: routing, headers, SQLite, variables, outbound HTTP, traps.
