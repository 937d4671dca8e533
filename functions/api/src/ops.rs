//! Operators' routes: `GET /ready` (the database answers and its schema is current) and
//! `GET /api/v1/metrics` (the fleet as Prometheus gauges, admin keys only).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use talis_api::Readiness;
use talis_core::service::Fleet;

use crate::{After, Db, Reply, Settings, with_service};

/// `Content-Type` of the Prometheus text format 0.0.4.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /ready`: 200 with the schema version when the database answers a query and its schema
/// is the one this build expects (migrated first, as any request would), else 503.
pub(crate) fn ready(settings: &Settings, db: &Db) -> Reply {
    let checked = with_service(settings, db, |svc| svc.schema());
    let (status, body) = match checked {
        Ok(r) if r.ready() => (200, answer("ready", &r, None)),
        Ok(r) => (
            503,
            answer(
                "not ready",
                &r,
                Some(format!(
                    "the database schema is at version {}, this build needs {}",
                    r.schema_version, r.latest
                )),
            ),
        ),
        Err(e) => (
            503,
            Readiness {
                status: "not ready".into(),
                schema_version: None,
                latest_schema_version: talis_core::db::LATEST_VERSION,
                error: Some(format!("database: {e}")),
            },
        ),
    };
    crate::routes::json_reply(status, &body, After::default())
}

fn answer(status: &str, r: &talis_core::service::Schema, error: Option<String>) -> Readiness {
    Readiness {
        status: status.into(),
        schema_version: Some(r.schema_version),
        latest_schema_version: r.latest,
        error,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    status: &'static str,
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    state: &'static str,
}

/// The fleet's gauges in the Prometheus text format, every series prefixed `talis_fleet_`.
pub(crate) fn encode(fleet: &Fleet) -> String {
    let mut registry = Registry::with_prefix("talis_fleet");
    let instances = Family::<InstanceLabels, Gauge>::default();
    for (status, provider, n) in &fleet.instances {
        instances
            .get_or_create(&InstanceLabels {
                status: status.as_str(),
                provider: provider.clone(),
            })
            .set(*n);
    }
    let tasks = Family::<TaskLabels, Gauge>::default();
    for (status, n) in &fleet.tasks {
        tasks
            .get_or_create(&TaskLabels {
                status: status.as_str(),
            })
            .set(*n);
    }
    registry.register(
        "instances",
        "Instances of every owner, by status and provider",
        instances,
    );
    registry.register("tasks", "Tasks of every owner, by status", tasks);
    let webhooks = Family::<WebhookLabels, Gauge>::default();
    for (state, n) in [
        ("live", fleet.webhooks),
        ("failing", fleet.webhooks_failing),
    ] {
        webhooks.get_or_create(&WebhookLabels { state }).set(n);
    }
    registry.register(
        "webhooks",
        "Webhooks of every owner: live, and failing (the latest attempted delivery did not succeed)",
        webhooks,
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

/// `GET /api/v1/metrics`: 401 without a valid key, 403 for a key that is not admin.
pub(crate) fn metrics(settings: &Settings, db: &Db, key: Option<&str>) -> Reply {
    let fleet = with_service(settings, db, |svc| {
        let caller = svc.authenticate(key)?;
        svc.fleet(&caller)
    });
    match fleet {
        Ok(f) => Reply {
            status: 200,
            headers: vec![("content-type".into(), PROMETHEUS_TEXT.into())],
            body: encode(&f).into_bytes(),
            after: After::default(),
        },
        Err(e) => crate::routes::error_reply(e, None),
    }
}
