//! The RPC service: method dispatch → validation → one transaction → typed result. Runs in the
//! Spin component (over Spin SQLite) and natively (over rusqlite) unchanged.

mod accounts;
mod internal;
mod projects;
mod tasks;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;

use crate::auth::{self, Caller};
use crate::db::{self, Row, RowExt, Sql, Value};
use crate::params::{Page, PageParams, Pagination};
use crate::{Error, Result};

/// Settings the service needs (from Spin variables in the component).
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub admin_api_key: String,
    pub internal_secret: String,
    pub public_url: String,
    /// Restate admin base URL (no trailing `/`); empty: tasks carry no UI link.
    pub restate_ui_url: String,
}

/// What a call produced: the `data` of the answer and the tasks to hand to the workflow engine
/// once the answer is committed.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    pub data: Option<Json>,
    pub dispatch: Vec<i64>,
    /// Tasks whose running workflow must be cancelled once the answer is committed.
    pub cancel: Vec<i64>,
}

/// Public methods (`POST /api/v1/` and `/v1/<method>`), with whether only an admin may call them.
pub const METHODS: &[(&str, bool)] = &[
    ("project.create", false),
    ("project.get", false),
    ("project.list", false),
    ("project.delete", false),
    ("project.listInstances", false),
    ("task.get", false),
    ("task.list", false),
    ("task.terminate", false),
    ("task.updateStatus", true),
    ("task.listByInstance", false),
    ("user.create", true),
    ("user.get", false),
    ("user.get.id", false),
    ("user.delete", true),
    ("sshkey.create", false),
    ("sshkey.list", false),
    ("sshkey.delete", false),
    ("apikey.create", false),
    ("apikey.list", false),
    ("apikey.revoke", false),
    ("instance.create", false),
    ("instance.list", false),
    ("instance.get", false),
    ("instance.terminate", false),
    ("instance.publicIps", false),
    ("instance.metadata", false),
];

/// Internal methods (`POST /internal/v1/<method>`), all idempotent.
pub const INTERNAL_METHODS: &[&str] = &[
    "task.claim",
    "instance.transition",
    "instance.transitionBatch",
    "task.event",
    "task.finish",
];

/// Default and largest page size of every list.
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 1000;

pub struct Service<'a> {
    db: &'a dyn Sql,
    cfg: &'a Config,
}

impl<'a> Service<'a> {
    /// Applies pending migrations (one cheap read when current).
    pub fn open(db: &'a dyn Sql, cfg: &'a Config) -> Result<Self> {
        db::prepare(db)?;
        Ok(Self { db, cfg })
    }

    /// For a connection whose schema this request has already checked with [`Service::open`]
    /// (the work after the answer reuses the request's connection).
    pub fn reopen(db: &'a dyn Sql, cfg: &'a Config) -> Self {
        Self { db, cfg }
    }

    /// Resolves a presented API key to the caller.
    pub fn authenticate(&self, presented: Option<&str>) -> Result<Caller> {
        auth::authenticate(self.db, &self.cfg.admin_api_key, presented)
    }

    /// Runs one public method.
    pub fn call(&self, caller: &Caller, method: &str, params: Json) -> Result<Outcome> {
        let admin_only = METHODS
            .iter()
            .find(|m| m.0 == method)
            .ok_or_else(|| Error::UnknownMethod(method.into()))?
            .1;
        if admin_only && !caller.admin {
            return Err(Error::Forbidden(format!(
                "{method} requires an admin API key"
            )));
        }
        let c = caller;
        match method {
            "project.create" => self.project_create(c, decode_ref(&params)?, &params),
            "project.get" => data(self.project_get(c, decode(params)?)?),
            "project.list" => data(self.project_list(c, decode(params)?)?),
            "project.delete" => self.project_delete(c, decode(params)?),
            "project.listInstances" => data(self.project_list_instances(c, decode(params)?)?),
            "task.get" => data(self.task_get(c, decode(params)?)?),
            "task.list" => data(self.task_list(c, decode(params)?)?),
            "task.terminate" => {
                let task = self.task_terminate(c, decode(params)?)?;
                let id = task.id;
                // The workflow stops, destroys what it made and records it (see internal.rs).
                data(task).map(|o| Outcome {
                    cancel: vec![id],
                    ..o
                })
            }
            "task.updateStatus" => data(self.task_update_status(c, decode(params)?)?),
            "task.listByInstance" => data(self.task_list_by_instance(c, decode(params)?)?),
            "user.create" => data(self.user_create(decode(params)?)?),
            "user.get" => data(self.user_get(c, decode(params)?)?),
            "user.get.id" => data(self.user_get_id(c, decode(params)?)?),
            "user.delete" => self
                .user_delete(decode(params)?)
                .map(|()| Outcome::default()),
            "sshkey.create" => data(self.sshkey_create(c, decode(params)?)?),
            "sshkey.list" => data(self.sshkey_list(c, decode(params)?)?),
            "sshkey.delete" => self
                .sshkey_delete(c, decode(params)?)
                .map(|()| Outcome::default()),
            "apikey.create" => data(self.apikey_create(c, decode(params)?)?),
            "apikey.list" => data(self.apikey_list(c, decode(params)?)?),
            "apikey.revoke" => self
                .apikey_revoke(c, decode(params)?)
                .map(|()| Outcome::default()),
            "instance.create" => {
                // The original's REST body is a bare array of instance requests.
                let params = match params {
                    Json::Array(a) => serde_json::json!({ "instances": a }),
                    other => other,
                };
                self.instance_create(c, decode_ref(&params)?, &params)
            }
            "instance.list" | "instance.metadata" => data(self.instance_list(c, decode(params)?)?),
            "instance.get" => data(self.instance_get(c, decode(params)?)?),
            "instance.terminate" => self.instance_terminate(c, decode(params)?),
            "instance.publicIps" => data(self.instance_public_ips(c, decode(params)?)?),
            _ => Err(Error::UnknownMethod(method.into())),
        }
    }

    /// Runs one internal method (the caller has presented the internal secret).
    pub fn call_internal(&self, method: &str, params: Json) -> Result<Json> {
        match method {
            "task.claim" => to_json(self.task_claim(decode(params)?)?),
            "instance.transition" => to_json(self.instance_transition(decode(params)?)?),
            "instance.transitionBatch" => to_json(self.instance_transition_batch(decode(params)?)?),
            "task.event" => to_json(self.task_event(decode(params)?)?),
            "task.finish" => to_json(self.task_finish(decode(params)?)?),
            _ => Err(Error::UnknownMethod(method.into())),
        }
    }

    /// Checks the internal bearer secret.
    pub fn verify_internal(&self, presented: Option<&str>) -> Result<()> {
        auth::verify_internal(&self.cfg.internal_secret, presented)
    }

    /// Tasks committed but not yet accepted by the workflow engine, older than `min_age_secs`.
    pub fn undispatched(&self, min_age_secs: i64, limit: i64) -> Result<Vec<i64>> {
        let before = crate::timestamp(chrono::Utc::now() - chrono::Duration::seconds(min_age_secs));
        let rows = db::query(
            self.db,
            "SELECT id FROM tasks WHERE dispatched_at IS NULL AND created_at <= ? \
             AND status IN ('pending', 'running') ORDER BY created_at LIMIT ?",
            &[before.into(), limit.into()],
        )?;
        Ok(rows.iter().map(|r| r.int(0)).collect())
    }

    /// Records that the workflow engine accepted a task's trigger.
    pub fn mark_dispatched(&self, task_id: i64) -> Result<()> {
        db::query(
            self.db,
            "UPDATE tasks SET dispatched_at = ? WHERE id = ? AND dispatched_at IS NULL",
            &[crate::now().into(), task_id.into()],
        )?;
        Ok(())
    }

    /// Checks a phone-home token and returns the instance's current create task (the workflow
    /// that waits for the call).
    pub fn phone_home_task(&self, instance_id: i64, token: &str) -> Result<i64> {
        if !auth::verify_phone_home(&self.cfg.internal_secret, instance_id, token) {
            return Err(Error::Unauthorized);
        }
        db::query_opt(
            self.db,
            "SELECT create_task_id FROM instances WHERE id = ?",
            &[instance_id.into()],
        )?
        .map(|r| r.int(0))
        .ok_or(Error::NotFound("instance"))
    }

    fn tx<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        db::transaction(self.db, f)
    }

    fn q(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        db::query(self.db, sql, params)
    }

    fn q1(&self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        db::query_opt(self.db, sql, params)
    }

    /// One page of `SELECT {columns} FROM {from} WHERE {filter}`, keyed and ordered by `id_col`.
    #[allow(clippy::too_many_arguments)]
    fn page<T>(
        &self,
        columns: &str,
        from: &str,
        filter: &str,
        args: Vec<Value>,
        id_col: &str,
        decode_row: fn(&Row) -> T,
        id_of: fn(&T) -> i64,
        p: &PageParams,
    ) -> Result<Page<T>> {
        let limit = match p.limit {
            None => DEFAULT_LIMIT,
            Some(l) if (1..=MAX_LIMIT).contains(&(l as i64)) => l as i64,
            Some(_) => {
                return Err(Error::invalid(
                    "limit",
                    format!("must be between 1 and {MAX_LIMIT}"),
                ));
            }
        };
        let after = p
            .cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(decode_cursor)
            .transpose()?
            .unwrap_or(0);
        // `page` (original clients) only applies without a cursor.
        let offset = match (after, p.offset) {
            (0, Some(o)) => o as i64,
            (0, None) => (p.page.unwrap_or(1).max(1) as i64 - 1) * limit,
            _ => 0,
        };
        let total = db::scalar(
            self.db,
            &format!("SELECT COUNT(*) FROM {from} WHERE {filter}"),
            &args,
        )?;
        let mut all = args;
        all.extend([after.into(), (limit + 1).into(), offset.into()]);
        let rows = self.q(
            &format!("SELECT {columns} FROM {from} WHERE {filter} AND {id_col} > ? ORDER BY {id_col} LIMIT ? OFFSET ?"),
            &all,
        )?;
        let mut rows: Vec<T> = rows.iter().map(decode_row).collect();
        let next_cursor = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|r| encode_cursor(id_of(r)))
        } else {
            None
        };
        Ok(Page {
            rows,
            pagination: Pagination {
                total,
                limit,
                page: offset / limit + 1,
                offset,
                next_cursor,
            },
        })
    }
}

/// Cursors are opaque to clients: hex of `after:<id>`.
fn encode_cursor(id: i64) -> String {
    hex::encode(format!("after:{id}"))
}

fn decode_cursor(c: &str) -> Result<i64> {
    hex::decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("after:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| Error::invalid("cursor", "is not a cursor returned by this API"))
}

/// Decodes params into the method's type; a type error names the field path.
fn decode<T: DeserializeOwned>(params: Json) -> Result<T> {
    let params = if params.is_null() {
        Json::Object(Default::default())
    } else {
        params
    };
    serde_path_to_error::deserialize(params).map_err(field_error)
}

/// [`decode`] for methods that also keep the params as sent (idempotency), without a copy.
fn decode_ref<T: DeserializeOwned>(params: &Json) -> Result<T> {
    if params.is_null() {
        return decode(Json::Null);
    }
    serde_path_to_error::deserialize(params).map_err(field_error)
}

fn field_error(e: serde_path_to_error::Error<serde_json::Error>) -> Error {
    let path = e.path().to_string();
    let field = if path == "." {
        "params".to_owned()
    } else {
        path
    };
    Error::invalid(field, e.into_inner().to_string())
}

fn to_json<T: Serialize>(v: T) -> Result<Json> {
    serde_json::to_value(v).map_err(|e| Error::Db(format!("encoding result: {e}")))
}

fn data<T: Serialize>(v: T) -> Result<Outcome> {
    Ok(Outcome {
        data: Some(to_json(v)?),
        ..Outcome::default()
    })
}

/// A JSON array of ids, for `IN (SELECT value FROM json_each(?))`.
fn id_list(ids: &[i64]) -> Value {
    Value::Text(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
}
