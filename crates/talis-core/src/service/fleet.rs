//! The fleet as numbers, for operators (admin only): instances by status and provider, tasks by
//! status, live and failing webhooks, and the readiness of the database. The component renders them as Prometheus gauges
//! (`GET /api/v1/metrics`) and answers `GET /ready` with the schema check.

use talis_api::{InstanceStatus, TaskStatus};

use super::Service;
use crate::auth::Caller;
use crate::db::{self, RowExt};
use crate::{Error, Result};

/// Counts over every owner's rows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fleet {
    /// (status, provider, count); every status of every provider present, zeros included.
    pub instances: Vec<(InstanceStatus, String, i64)>,
    /// (status, count) for every task status, zeros included.
    pub tasks: Vec<(TaskStatus, i64)>,
    /// Webhooks not deleted.
    pub webhooks: i64,
    /// Live webhooks whose latest attempted delivery has not succeeded (being retried, or
    /// failed for good): their receivers are down or refusing.
    pub webhooks_failing: i64,
}

/// The database's schema as `GET /ready` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Schema {
    /// The schema version of the database (`PRAGMA user_version`, or the migrations table
    /// where the runtime refuses that pragma).
    pub schema_version: i64,
    /// The version this build expects ([`db::LATEST_VERSION`]).
    pub latest: i64,
}

impl Schema {
    pub fn ready(&self) -> bool {
        self.schema_version >= self.latest
    }
}

impl Service<'_> {
    /// The fleet's counts; admin keys only.
    pub fn fleet(&self, caller: &Caller) -> Result<Fleet> {
        if !caller.admin {
            return Err(Error::Forbidden(
                "the fleet metrics require an admin API key".into(),
            ));
        }
        let mut fleet = Fleet::default();
        let mut providers: Vec<String> = vec![talis_api::Provider::default().as_str().to_owned()];
        let counted = self.q(
            "SELECT status, provider_id, COUNT(*) FROM instances GROUP BY status, provider_id",
            &[],
        )?;
        for r in &counted {
            let provider = r.text(1);
            if !providers.contains(&provider) {
                providers.push(provider);
            }
        }
        for provider in &providers {
            for &status in InstanceStatus::ALL {
                let n = counted
                    .iter()
                    .filter(|r| r.text(0) == status.as_str() && r.text(1) == *provider)
                    .map(|r| r.int(2))
                    .sum();
                fleet.instances.push((status, provider.clone(), n));
            }
        }
        let tasks = self.q("SELECT status, COUNT(*) FROM tasks GROUP BY status", &[])?;
        for &status in TaskStatus::ALL {
            let n = tasks
                .iter()
                .filter(|r| r.text(0) == status.as_str())
                .map(|r| r.int(1))
                .sum();
            fleet.tasks.push((status, n));
        }
        fleet.webhooks = db::scalar(
            self.db,
            "SELECT COUNT(*) FROM webhooks WHERE deleted_at IS NULL",
            &[],
        )?;
        fleet.webhooks_failing = db::scalar(
            self.db,
            "SELECT COUNT(*) FROM webhooks w WHERE w.deleted_at IS NULL AND ( \
               SELECT d.status FROM webhook_deliveries d \
               WHERE d.webhook_id = w.id AND d.attempts > 0 ORDER BY d.id DESC LIMIT 1 \
             ) IN ('pending', 'failed')",
            &[],
        )?;
        Ok(fleet)
    }

    /// One cheap query on the database and its schema version (migrated first, as any request
    /// would: a readiness probe must not keep a fresh database from being prepared).
    pub fn schema(&self) -> Result<Schema> {
        db::scalar(self.db, "SELECT 1", &[])?;
        Ok(Schema {
            schema_version: db::schema_version(self.db),
            latest: db::LATEST_VERSION,
        })
    }
}
