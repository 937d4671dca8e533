//! Actions: the record every create, power change and volume attach/detach leaves, readable at
//! `GET /v2/actions/{id}`; each completes one second after it started.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Cloud, iso};
use crate::catalog;
use crate::error::{Answer, ApiError};

/// How long an action stays `in-progress`.
const ACTION_MS: u64 = 1_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Action {
    pub id: u64,
    pub kind: String,
    pub resource_id: Option<u64>,
    pub resource_type: String,
    pub region: Option<String>,
    pub started_ms: u64,
}

impl Cloud {
    /// Records an action started `now`; returns its id.
    pub(super) fn record_action(
        &mut self,
        kind: &str,
        resource_id: Option<u64>,
        resource_type: &str,
        region: Option<&str>,
        now: u64,
    ) -> u64 {
        let id = self.next_id();
        self.actions.insert(
            id,
            Arc::new(Action {
                id,
                kind: kind.to_string(),
                resource_id,
                resource_type: resource_type.to_string(),
                region: region.map(str::to_string),
                started_ms: now,
            }),
        );
        id
    }

    pub fn get_action(&self, id: u64, now: u64, host: &str) -> Answer {
        if !self.actions.contains_key(&id) {
            return Err(ApiError::not_found());
        }
        Ok((
            200,
            Some(json!({ "action": self.action_json(id, now, host) })),
        ))
    }

    pub(super) fn action_json(&self, id: u64, now: u64, _host: &str) -> Value {
        let a = &self.actions[&id];
        let done = now >= a.started_ms + ACTION_MS;
        let region = a.region.as_deref().and_then(catalog::region);
        json!({
            "id": a.id,
            "status": if done { "completed" } else { "in-progress" },
            "type": a.kind,
            "started_at": iso(a.started_ms),
            "completed_at": if done { Value::from(iso(a.started_ms + ACTION_MS)) } else { Value::Null },
            "resource_id": a.resource_id,
            "resource_type": a.resource_type,
            "region": region.map(catalog::region_json),
            "region_slug": a.region,
        })
    }
}
