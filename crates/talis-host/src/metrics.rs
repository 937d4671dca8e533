//! The host's own metrics, served in the Prometheus text format (0.0.4) at `--metrics-path`.
//! Every series is prefixed `talis_host_`. Labels have bounded values only: routes are the
//! manifest's route patterns (never a request's raw path), components are manifest ids.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::limits::Limit;

/// The `route` label of requests that matched no route.
pub const UNMATCHED: &str = "<unmatched>";
/// The `route` label of Spin's reserved `/.well-known/spin/...` paths.
pub const WELL_KNOWN: &str = "/.well-known/spin/...";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabel {
    component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms … 64 s: a fresh instance answers in well under a millisecond; long-polls and
    // the execution deadline (60 s by default) sit at the top.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_25, 2.0, 19,
    ))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    latency: Family<Route, Histogram, fn() -> Histogram>,
    pool_waits: Counter,
    pool_wait_seconds: Counter<f64>,
    traps: Family<ComponentLabel, Counter>,
    deadline_hits: Family<ComponentLabel, Counter>,
    timeouts: Family<Kind, Counter>,
    connections_open: Gauge,
    connection_limit_waits: Counter,
}

impl Metrics {
    /// Series for every component and every kind of timeout start at 0, so they exist (and
    /// `rate()` works) before the first event.
    pub fn new<'a>(components: impl IntoIterator<Item = &'a str>) -> Self {
        let m = Self {
            registry: Registry::with_prefix("talis_host"),
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            pool_waits: Counter::default(),
            pool_wait_seconds: Counter::default(),
            traps: Family::default(),
            deadline_hits: Family::default(),
            timeouts: Family::default(),
            connections_open: Gauge::default(),
            connection_limit_waits: Counter::default(),
        };
        for component in components {
            let label = ComponentLabel {
                component: component.to_string(),
            };
            let _ = m.traps.get_or_create(&label);
            let _ = m.deadline_hits.get_or_create(&label);
        }
        for limit in Limit::TIMEOUTS {
            let _ = m.timeouts.get_or_create(&Kind { kind: limit.kind() });
        }
        m.register()
    }

    /// Registers every series (the families are shared handles: clones count into the same
    /// series).
    fn register(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "requests",
            "HTTP requests answered, by manifest route pattern and status",
            self.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time from a request's headers to its answer's headers, by manifest route pattern",
            self.latency.clone(),
        );
        r.register(
            "instance_pool_waits",
            "Requests that found every instance slot busy and had to wait",
            self.pool_waits.clone(),
        );
        r.register(
            "instance_pool_wait_seconds",
            "Total time requests spent waiting for a free instance slot",
            self.pool_wait_seconds.clone(),
        );
        r.register(
            "guest_traps",
            "Guest executions that ended in a trap or error (panic, unreachable, exit), by component",
            self.traps.clone(),
        );
        r.register(
            "execution_deadline_hits",
            "Guest executions stopped by the execution deadline, by component",
            self.deadline_hits.clone(),
        );
        r.register(
            "timeouts",
            "Limits that ran out, by kind (header_read, body_read, instance_wait, execution_deadline, outbound_connect, outbound_first_byte, outbound_between_bytes)",
            self.timeouts.clone(),
        );
        r.register(
            "connections_open",
            "Client connections open now",
            self.connections_open.clone(),
        );
        r.register(
            "connection_limit_waits",
            "Times the listener stopped accepting because --max-connections were open",
            self.connection_limit_waits.clone(),
        );
        self
    }

    /// The Prometheus text exposition of every series.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    pub fn request(&self, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RouteStatus {
                route: route.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&Route {
                route: route.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn pool_wait(&self, waited: Duration) {
        self.pool_waits.inc();
        self.pool_wait_seconds.inc_by(waited.as_secs_f64());
    }

    pub fn trap(&self, component: &str) {
        self.traps
            .get_or_create(&ComponentLabel {
                component: component.to_string(),
            })
            .inc();
    }

    pub fn deadline_hit(&self, component: &str) {
        self.deadline_hits
            .get_or_create(&ComponentLabel {
                component: component.to_string(),
            })
            .inc();
        self.timeout(Limit::ExecutionDeadline);
    }

    pub fn timeout(&self, limit: Limit) {
        self.timeouts
            .get_or_create(&Kind { kind: limit.kind() })
            .inc();
    }

    pub fn connection_opened(&self) {
        self.connections_open.inc();
    }

    pub fn connection_closed(&self) {
        self.connections_open.dec();
    }

    pub fn connection_limit_wait(&self) {
        self.connection_limit_waits.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_prefixed_and_labelled() {
        let m = Metrics::new(["main"]);
        m.request("/users/:id", 200, Duration::from_millis(3));
        m.request("/users/:id", 200, Duration::from_millis(3));
        m.deadline_hit("main");
        m.pool_wait(Duration::from_millis(1500));
        let text = m.encode();
        assert!(
            text.contains(r#"talis_host_requests_total{route="/users/:id",status="200"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"talis_host_request_duration_seconds_count{route="/users/:id"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"talis_host_timeouts_total{kind="execution_deadline"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("talis_host_instance_pool_wait_seconds_total 1.5"),
            "{text}"
        );
        assert!(
            text.contains(r#"talis_host_guest_traps_total{component="main"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"talis_host_timeouts_total{kind="outbound_connect"} 0"#),
            "{text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("talis_host_"), "{line}");
        }
    }
}
