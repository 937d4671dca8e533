//! The event log: written by every change in the change's own transaction (instance and task
//! status, provider steps, mutating API calls), read by `event.list` with a long-poll, and
//! rendered as a task's `logs`.

use std::time::{Duration, Instant};

use serde_json::Value as Json;
use talis_api::decode::Valid;
use talis_api::events::{ApiCallData, Event, EventBody, EventList, MAX_WAIT_MS};
use talis_api::rules::DEFAULT_LIMIT;
use talis_api::{InstanceId, OwnerId, Page, Pagination, ProjectId, TaskId};

use super::Service;
use crate::auth::Caller;
use crate::db::{RowExt, Value};
use crate::{Result, now};

/// How often a long-poll looks for new events: wakes within this of the change it waits for.
pub const LONG_POLL_EVERY: Duration = Duration::from_millis(50);
/// Lines a task's `logs` shows (the latest; `event.list` has them all).
pub const MAX_LOG_LINES: usize = 1_000;

/// Where an event belongs.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct On {
    pub owner: Option<OwnerId>,
    pub project: Option<ProjectId>,
    pub task: Option<TaskId>,
    pub instance: Option<InstanceId>,
}

impl Service<'_> {
    /// Appends an event (inside the caller's transaction), with its webhook deliveries. With a
    /// `dedup` key, a second event of the same task and key is not written; returns whether it
    /// was.
    pub(crate) fn record_event(
        &self,
        on: On,
        body: &EventBody,
        dedup: Option<&str>,
    ) -> Result<bool> {
        self.tx(|| self.insert_event(on, body, dedup))
    }

    fn insert_event(&self, on: On, body: &EventBody, dedup: Option<&str>) -> Result<bool> {
        let rows = self.q(
            "INSERT INTO events (at, owner_id, kind, project_id, task_id, instance_id, data, dedup_key) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
            &[
                now().into(),
                on.owner.unwrap_or(OwnerId::ADMIN).into(),
                body.kind().as_str().into(),
                on.project.into(),
                on.task.into(),
                on.instance.into(),
                body.data_json().into(),
                dedup.into(),
            ],
        )?;
        if let Some(id) = rows.first().map(|r| r.int(0)) {
            self.fan_out(id, &on, body.kind())?;
        }
        Ok(!rows.is_empty())
    }

    /// The audit event of a mutating call: who (owner, key), what (method, target) and which
    /// request.
    pub(crate) fn record_call(&self, caller: &Caller, method: &str, params: &Json) -> Result<()> {
        let owner = caller.acting_for(
            params
                .get("owner_id")
                .and_then(|o| serde_json::from_value(o.clone()).ok()),
        )?;
        let target: serde_json::Map<String, Json> = [
            "name",
            "project_name",
            "projectName",
            "username",
            "task_id",
            "instance_id",
            "id",
        ]
        .iter()
        .filter_map(|k| {
            params
                .get(*k)
                .filter(|v| !v.is_null())
                .map(|v| ((*k).to_owned(), v.clone()))
        })
        .chain(
            params
                .get("instance_ids")
                .and_then(Json::as_array)
                .map(|a| ("instance_ids".to_owned(), a.len().into())),
        )
        .collect();
        let body = EventBody::ApiCall(ApiCallData {
            method: method.to_owned(),
            owner_id: owner,
            key_id: caller.key.as_ref().map(|k| k.id),
            key_prefix: caller
                .key
                .as_ref()
                .map_or_else(|| "admin_api_key".to_owned(), |k| k.prefix.clone()),
            request_id: self.request_id.borrow().clone(),
            target: Json::Object(target),
        });
        self.record_event(
            On {
                owner: Some(owner),
                ..On::default()
            },
            &body,
            None,
        )
        .map(drop)
    }

    /// The caller's events after the cursor; with `wait_ms`, waits for the first one.
    pub(super) fn event_list(&self, c: &Caller, p: Valid<EventList>) -> Result<Page<Event>> {
        let scope = c.scope(p.owner_id)?;
        let mut filter = String::from("1 = 1");
        let mut args: Vec<Value> = Vec::new();
        if let Some(owner) = scope {
            filter.push_str(" AND e.owner_id = ?");
            args.push(owner.into());
        }
        if let Some(name) = &p.project {
            let owner = scope.unwrap_or(c.owner_id);
            let project = self.project_by_name(owner, name)?;
            filter.push_str(" AND e.project_id = ?");
            args.push(project.id.into());
        }
        if let Some(t) = p.task_id {
            filter.push_str(" AND e.task_id = ?");
            args.push(t.into());
        }
        if let Some(i) = p.instance_id {
            filter.push_str(" AND e.instance_id = ?");
            args.push(i.into());
        }
        if let Some(kinds) = &p.kinds {
            filter.push_str(" AND e.kind IN (SELECT value FROM json_each(?))");
            args.push(serde_json::to_string(kinds).unwrap_or_default().into());
        }
        let after: i64 = p.after.as_deref().and_then(|a| a.parse().ok()).unwrap_or(0);
        let limit = i64::from(p.limit.unwrap_or(DEFAULT_LIMIT));
        let cap = self.cfg.event_wait_max_ms.min(MAX_WAIT_MS);
        let wait = Duration::from_millis(u64::from(p.wait_ms.unwrap_or(0).min(cap)));
        let deadline = Instant::now() + wait;
        loop {
            let page = self.events_after(&filter, &args, after, limit)?;
            if !page.rows.is_empty() || Instant::now() >= deadline {
                return Ok(page);
            }
            std::thread::sleep(
                LONG_POLL_EVERY.min(deadline.saturating_duration_since(Instant::now())),
            );
        }
    }

    fn events_after(
        &self,
        filter: &str,
        args: &[Value],
        after: i64,
        limit: i64,
    ) -> Result<Page<Event>> {
        let mut all = args.to_vec();
        all.extend([after.into(), (limit + 1).into()]);
        let rows = self.q(
            &format!(
                "SELECT e.id, e.at, e.kind, p.name, e.task_id, e.instance_id, e.data FROM events e \
                 LEFT JOIN projects p ON p.id = e.project_id WHERE {filter} AND e.id > ? ORDER BY e.id LIMIT ?"
            ),
            &all,
        )?;
        let mut events: Vec<Event> = rows
            .iter()
            .filter_map(|r| {
                Some(Event {
                    id: r.int(0),
                    at: r.text(1),
                    project: r.opt_text(3),
                    task_id: r.opt_int(4).map(TaskId::from_db),
                    instance_id: r.opt_int(5).map(InstanceId::from_db),
                    body: EventBody::from_stored(&r.text(2), &r.text(6))?,
                })
            })
            .collect();
        let next_cursor = if events.len() as i64 > limit {
            events.truncate(limit as usize);
            events.last().map(|e| e.id.to_string())
        } else {
            None
        };
        let total = events.len() as i64;
        Ok(Page {
            rows: events,
            pagination: Pagination {
                total,
                limit,
                page: 1,
                offset: 0,
                next_cursor,
            },
        })
    }

    /// A task's history as the original's `logs` text: one line per event, the latest
    /// [`MAX_LOG_LINES`].
    pub(super) fn task_logs(&self, task: TaskId) -> Result<String> {
        let rows = self.q(
            "SELECT at, kind, instance_id, data FROM (SELECT id, at, kind, instance_id, data FROM events \
             WHERE task_id = ? AND kind != 'api.call' ORDER BY id DESC LIMIT ?) ORDER BY id",
            &[task.into(), (MAX_LOG_LINES as i64).into()],
        )?;
        let lines: Vec<String> = rows
            .iter()
            .filter_map(|r| {
                let who = r
                    .opt_int(2)
                    .map(|i| format!(" instance {i}"))
                    .unwrap_or_default();
                let line = match EventBody::from_stored(&r.text(1), &r.text(3))? {
                    EventBody::InstanceStatus(d) => {
                        let detail = d
                            .error
                            .or(d.public_ip.map(|ip| format!("ip {ip}")))
                            .or(d.provider_ref.map(|m| format!("machine {m}")));
                        format!(
                            "{} {}{who}: {} {}",
                            r.text(0),
                            d.step,
                            d.to,
                            detail.unwrap_or_default()
                        )
                    }
                    EventBody::TaskStatus(d) => format!(
                        "{} task: {} {}",
                        r.text(0),
                        d.to,
                        d.error.unwrap_or_default()
                    ),
                    EventBody::ProviderStep(d) => {
                        format!("{} {}{who}: {} {}", r.text(0), d.step, d.status, d.detail)
                    }
                    EventBody::Reconcile(d) => {
                        format!("{} reconcile: destroyed {}", r.text(0), d.names.join(", "))
                    }
                    EventBody::ApiCall(_) => return None,
                };
                Some(line.trim_end().to_owned())
            })
            .collect();
        Ok(lines.join("\n"))
    }

    /// Deletes events older than `days` days, at most `limit` at a time; returns how many.
    pub fn purge_events(&self, days: u32, limit: i64) -> Result<i64> {
        let before = crate::timestamp(chrono::Utc::now() - chrono::Duration::days(i64::from(days)));
        let rows = self.tx(|| {
            self.q(
                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < ? ORDER BY id LIMIT ?) RETURNING id",
                &[before.into(), limit.into()],
            )
        })?;
        Ok(rows.len() as i64)
    }
}
