//! The host's limits: how long and how much a client, a guest or an outbound service may take
//! before the host gives up on it. Each is a command-line flag with an environment variable and
//! a default, declared once here; every answer or log line caused by a limit names its flag
//! (see [`Limit::describe`]), so an operator knows which knob to turn.

use std::time::Duration;

/// Seconds a client is told to wait (`Retry-After`) after the instance-pool wait ran out: slots
/// free up at request speed, so a short pause is enough to find one.
pub const RETRY_AFTER_SECS: u64 = 1;

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 30s, 500ms, 2m)"))
}

/// The limits, as `talis-host up` flags (flattened into its arguments).
#[derive(clap::Args, Clone, Debug)]
pub struct Limits {
    /// Longest wait for a request's headers, also how long an idle keep-alive connection is
    /// kept (HTTP/1). A client that is slower gets its connection closed.
    #[arg(long, env = "TALIS_HOST_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub header_read_timeout: Duration,
    /// Longest wait for a whole request body once the headers are in (→ 408).
    #[arg(long, env = "TALIS_HOST_BODY_READ_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub body_read_timeout: Duration,
    /// Largest request body accepted, in bytes (→ 413).
    #[arg(long, env = "TALIS_HOST_MAX_REQUEST_BODY", default_value_t = 16 << 20)]
    pub max_request_body: usize,
    /// Most client connections open at once; further connections wait in the listen backlog
    /// until one closes.
    #[arg(long, env = "TALIS_HOST_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Most requests handled at the same time (size of the instance pool). Each live instance
    /// holds memory (its linear memory, a database connection); a long-poll holds one for up
    /// to its wait.
    #[arg(long, env = "TALIS_HOST_MAX_INSTANCES", default_value_t = 64)]
    pub max_instances: u32,
    /// Longest wait for a free instance when all are busy (→ 503 with Retry-After).
    #[arg(long, env = "TALIS_HOST_INSTANCE_WAIT_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub instance_wait_timeout: Duration,
    /// Longest a guest's write transaction (`BEGIN IMMEDIATE`) waits for the earlier writers of
    /// this process, which go one at a time in arrival order; then the guest hears SQLite's
    /// "database is locked".
    #[arg(long, env = "TALIS_HOST_SQLITE_WRITE_WAIT", default_value = "5s", value_parser = duration)]
    pub sqlite_write_wait: Duration,
    /// Longest a guest may run for one request, computing or waiting on host calls, including
    /// streaming its answer (→ 504; the instance is discarded). Well above 30 s long-polls.
    #[arg(long, env = "TALIS_HOST_EXECUTION_DEADLINE", default_value = "60s", value_parser = duration)]
    pub execution_deadline: Duration,
    /// Longest wait for an outbound HTTP connection (caps the guest's own connect timeout).
    #[arg(long, env = "TALIS_HOST_OUTBOUND_CONNECT_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub outbound_connect_timeout: Duration,
    /// Longest wait for an outbound response's headers (caps the guest's first-byte timeout).
    /// Below the execution deadline, so the guest sees an error it can answer with.
    #[arg(long, env = "TALIS_HOST_OUTBOUND_FIRST_BYTE_TIMEOUT", default_value = "45s", value_parser = duration)]
    pub outbound_first_byte_timeout: Duration,
    /// Longest pause between two parts of an outbound response body (caps the guest's
    /// between-bytes timeout).
    #[arg(long, env = "TALIS_HOST_OUTBOUND_BETWEEN_BYTES_TIMEOUT", default_value = "45s", value_parser = duration)]
    pub outbound_between_bytes_timeout: Duration,
}

/// One limit, for messages, logs and the `kind` label of `talis_host_timeouts_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    HeaderRead,
    BodyRead,
    MaxRequestBody,
    MaxConnections,
    InstanceWait,
    SqliteWriteWait,
    ExecutionDeadline,
    OutboundConnect,
    OutboundFirstByte,
    OutboundBetweenBytes,
}

impl Limit {
    /// The limits counted in `talis_host_timeouts_total`.
    pub const TIMEOUTS: [Limit; 8] = [
        Self::HeaderRead,
        Self::BodyRead,
        Self::InstanceWait,
        Self::SqliteWriteWait,
        Self::ExecutionDeadline,
        Self::OutboundConnect,
        Self::OutboundFirstByte,
        Self::OutboundBetweenBytes,
    ];

    /// The command-line flag (without `--`); the field names of [`Limits`] in kebab case.
    pub fn flag(self) -> &'static str {
        match self {
            Self::HeaderRead => "header-read-timeout",
            Self::BodyRead => "body-read-timeout",
            Self::MaxRequestBody => "max-request-body",
            Self::MaxConnections => "max-connections",
            Self::InstanceWait => "instance-wait-timeout",
            Self::SqliteWriteWait => "sqlite-write-wait",
            Self::ExecutionDeadline => "execution-deadline",
            Self::OutboundConnect => "outbound-connect-timeout",
            Self::OutboundFirstByte => "outbound-first-byte-timeout",
            Self::OutboundBetweenBytes => "outbound-between-bytes-timeout",
        }
    }

    /// The `kind` label of the timeouts counter.
    pub fn kind(self) -> &'static str {
        match self {
            Self::HeaderRead => "header_read",
            Self::BodyRead => "body_read",
            Self::MaxRequestBody => "max_request_body",
            Self::MaxConnections => "max_connections",
            Self::InstanceWait => "instance_wait",
            Self::SqliteWriteWait => "sqlite_write_wait",
            Self::ExecutionDeadline => "execution_deadline",
            Self::OutboundConnect => "outbound_connect",
            Self::OutboundFirstByte => "outbound_first_byte",
            Self::OutboundBetweenBytes => "outbound_between_bytes",
        }
    }

    /// The configured value, readable (`30s`, `16777216 bytes`).
    pub fn value(self, l: &Limits) -> String {
        let d = |d: Duration| humantime::format_duration(d).to_string();
        match self {
            Self::HeaderRead => d(l.header_read_timeout),
            Self::BodyRead => d(l.body_read_timeout),
            Self::MaxRequestBody => format!("{} bytes", l.max_request_body),
            Self::MaxConnections => l.max_connections.to_string(),
            Self::InstanceWait => d(l.instance_wait_timeout),
            Self::SqliteWriteWait => d(l.sqlite_write_wait),
            Self::ExecutionDeadline => d(l.execution_deadline),
            Self::OutboundConnect => d(l.outbound_connect_timeout),
            Self::OutboundFirstByte => d(l.outbound_first_byte_timeout),
            Self::OutboundBetweenBytes => d(l.outbound_between_bytes_timeout),
        }
    }

    /// `<what> (--<flag> = <value>)`: the line a client or the log gets.
    pub fn describe(self, l: &Limits, what: &str) -> String {
        format!("{what} (--{} = {})", self.flag(), self.value(l))
    }
}

impl Limits {
    /// A guest's outbound request options, capped by the host's outbound limits: the guest may
    /// ask for less time, never for more (wasi-http's own default is 600 s).
    pub fn cap_outbound(
        &self,
        guest: Option<wasmtime_wasi_http::RequestOptions>,
    ) -> wasmtime_wasi_http::RequestOptions {
        let g = guest.unwrap_or_default();
        let cap =
            |asked: Option<Duration>, host: Duration| Some(asked.map_or(host, |a| a.min(host)));
        wasmtime_wasi_http::RequestOptions {
            connect_timeout: cap(g.connect_timeout, self.outbound_connect_timeout),
            first_byte_timeout: cap(g.first_byte_timeout, self.outbound_first_byte_timeout),
            between_bytes_timeout: cap(
                g.between_bytes_timeout,
                self.outbound_between_bytes_timeout,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        limits: Limits,
    }

    fn limits(args: &[&str]) -> Limits {
        Cli::parse_from(std::iter::once("x").chain(args.iter().copied())).limits
    }

    #[test]
    fn flags_match_the_limit_names() {
        // Every flag a message names must exist (a renamed field would otherwise leave
        // messages pointing at a flag that is gone).
        for (limit, value) in [
            (Limit::HeaderRead, "1s"),
            (Limit::BodyRead, "1s"),
            (Limit::MaxRequestBody, "1"),
            (Limit::MaxConnections, "1"),
            (Limit::InstanceWait, "1s"),
            (Limit::ExecutionDeadline, "1s"),
            (Limit::OutboundConnect, "1s"),
            (Limit::OutboundFirstByte, "1s"),
            (Limit::OutboundBetweenBytes, "1s"),
        ] {
            let flag = format!("--{}", limit.flag());
            let l = limits(&[&flag, value]);
            assert!(
                limit.value(&l).starts_with('1'),
                "{flag}: {}",
                limit.value(&l)
            );
        }
    }

    #[test]
    fn defaults_and_messages() {
        let l = limits(&[]);
        assert_eq!(l.execution_deadline, Duration::from_secs(60));
        assert_eq!(l.header_read_timeout, Duration::from_secs(30));
        assert_eq!(
            Limit::ExecutionDeadline.describe(&l, "execution deadline exceeded"),
            "execution deadline exceeded (--execution-deadline = 1m)"
        );
        let l = limits(&["--body-read-timeout", "250ms"]);
        assert_eq!(l.body_read_timeout, Duration::from_millis(250));
    }

    #[test]
    fn guest_outbound_options_are_capped() {
        let l = limits(&[
            "--outbound-connect-timeout",
            "2s",
            "--outbound-first-byte-timeout",
            "3s",
        ]);
        let none = l.cap_outbound(None);
        assert_eq!(none.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(none.first_byte_timeout, Some(Duration::from_secs(3)));
        assert_eq!(none.between_bytes_timeout, Some(Duration::from_secs(45)));
        let asked = l.cap_outbound(Some(wasmtime_wasi_http::RequestOptions {
            connect_timeout: Some(Duration::from_secs(1)),
            first_byte_timeout: Some(Duration::from_secs(600)),
            between_bytes_timeout: None,
        }));
        assert_eq!(asked.connect_timeout, Some(Duration::from_secs(1)));
        assert_eq!(asked.first_byte_timeout, Some(Duration::from_secs(3)));
    }
}
