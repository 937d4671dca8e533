//! The RPC service: one handler per entry of the method table (`talis_api::methods`), over one
//! SQL connection. A call goes: access → decode and validate (`talis_api::decode`, the
//! boundary) → handler (one transaction) → typed result. Runs in the Spin component (over Spin
//! SQLite) and natively (over rusqlite) unchanged.

mod accounts;
mod create;
mod events;
mod fleet;

mod instances;
mod internal;
mod phone_home;
mod quotas;

pub use fleet::{Fleet, Schema};
pub use phone_home::{PhoneHomeApplied, PhoneHomeToken};
mod projects;
mod tasks;
mod webhooks;

use std::cell::{Cell, RefCell};

use garde::Validate;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use talis_api::decode::{Valid, decode};
use talis_api::methods::{Access, Mode};
use talis_api::rules::DEFAULT_LIMIT;
use talis_api::{OwnerId, Page, Pagination, Paging, TaskId};

use crate::auth::{self, Caller};
use crate::db::{self, Row, Sql, Value};
use crate::{Error, Result};

/// Settings the service needs (from Spin variables in the component).
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub admin_api_key: String,
    pub internal_secret: String,
    pub public_url: String,
    /// Restate admin base URL (no trailing `/`); empty: tasks carry no UI link.
    pub restate_ui_url: String,
    /// This deployment's identity, carried by every provider resource it makes.
    pub deployment: String,
    /// Every owner's default quotas.
    pub quotas: talis_api::Quotas,
    /// Days events are kept (`event_retention_days`).
    pub event_retention_days: u32,
    /// Longest an `event.list` long-poll holds its request (`event_wait_max_ms`, at most
    /// [`talis_api::events::MAX_WAIT_MS`]).
    pub event_wait_max_ms: u32,
    /// Hosts webhooks may reach despite the SSRF guard (`webhook_allow_hosts`).
    pub webhook_allow_hosts: talis_api::egress::AllowList,
}

/// What a call produced: the `data` of the answer, and the work to do once it is committed.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    pub data: Option<Json>,
    /// Tasks to hand to the workflow engine.
    pub dispatch: Vec<TaskId>,
    /// Tasks whose running workflow must stop (and destroy what it made).
    pub cancel: Vec<TaskId>,
}

/// Work a handler asks for after its transaction commits.
#[derive(Debug, Default)]
struct AfterCommit {
    dispatch: Vec<TaskId>,
    cancel: Vec<TaskId>,
}

pub struct Service<'a> {
    db: &'a dyn Sql,
    cfg: &'a Config,
    after: RefCell<AfterCommit>,
    /// The request this service answers (for the audit trail).
    request_id: RefCell<String>,
    /// Inside a transaction: a nested [`Service::tx`] joins it.
    in_tx: Cell<bool>,
    /// Webhook deliveries to hand to the workflow engine once committed.
    kicks: RefCell<Vec<talis_api::webhooks::WebhookKick>>,
    /// The webhooks of each owner seen in the current transaction.
    subscriptions: webhooks::Cache,
}

/// Generates the dispatch from the method table: each entry's name runs the handler of the
/// same name, `fn(&self, &Caller, Valid<Params>) -> Result<Result>` (a missing or mistyped
/// handler does not compile).
macro_rules! public_dispatch {
    ($($(#[doc = $doc:literal])* $m:ident $f:ident $name:literal $access:ident $mode:ident ($p:ty) -> ($r:ty);)*) => {
        impl Service<'_> {
            /// Runs one public method for `caller`.
            pub fn call(&self, caller: &Caller, method: &str, params: Json) -> Result<Outcome> {
                match method {
                    $($name => self.run::<$p, $r>($name, caller, Access::$access, Mode::$mode, params, |p| self.$f(caller, p)),)*
                    _ => Err(Error::UnknownMethod(method.into())),
                }
            }
        }
    };
}
talis_api::public_methods!(public_dispatch);

/// The same for the internal methods, whose handlers take no caller.
macro_rules! internal_dispatch {
    ($($(#[doc = $doc:literal])* $m:ident $f:ident $name:literal $access:ident $mode:ident ($p:ty) -> ($r:ty);)*) => {
        impl Service<'_> {
            /// Runs one internal method (the caller has presented the internal secret).
            pub fn call_internal(&self, method: &str, params: Json) -> Result<Outcome> {
                match method {
                    $($name => self.run::<$p, $r>($name, &Caller::ADMIN, Access::$access, Mode::$mode, params, |p| self.$f(p)),)*
                    _ => Err(Error::UnknownMethod(method.into())),
                }
            }
        }
    };
}
talis_api::internal_methods!(internal_dispatch);

impl<'a> Service<'a> {
    /// Applies pending migrations (one cheap read when current).
    pub fn open(db: &'a dyn Sql, cfg: &'a Config) -> Result<Self> {
        db::prepare(db)?;
        Ok(Self::reopen(db, cfg))
    }

    /// For a connection whose schema this request has already checked with [`Service::open`]
    /// (the work after the answer reuses the request's connection).
    pub fn reopen(db: &'a dyn Sql, cfg: &'a Config) -> Self {
        Self {
            db,
            cfg,
            after: RefCell::default(),
            request_id: RefCell::default(),
            in_tx: Cell::new(false),
            kicks: RefCell::default(),
            subscriptions: webhooks::Cache::default(),
        }
    }

    /// Names the request in the audit events of the calls that follow.
    pub fn set_request_id(&self, id: &str) {
        *self.request_id.borrow_mut() = id.to_owned();
    }

    /// Resolves a presented API key to the caller.
    pub fn authenticate(&self, presented: Option<&str>) -> Result<Caller> {
        auth::authenticate(self.db, &self.cfg.admin_api_key, presented)
    }

    /// Checks the internal bearer secret.
    pub fn verify_internal(&self, presented: Option<&str>) -> Result<()> {
        auth::verify_internal(&self.cfg.internal_secret, presented)
    }

    /// Access, the boundary, the handler, and the answer with its after-commit work.
    #[allow(clippy::too_many_arguments)]
    fn run<P, R>(
        &self,
        name: &str,
        caller: &Caller,
        access: Access,
        mode: Mode,
        params: Json,
        handler: impl FnOnce(Valid<P>) -> Result<R>,
    ) -> Result<Outcome>
    where
        P: DeserializeOwned + Validate<Context = ()>,
        R: Serialize,
    {
        if access == Access::Admin && !caller.admin {
            return Err(Error::Forbidden(format!(
                "{name} requires an admin API key"
            )));
        }
        // A change made through the API is recorded with who made it, in its transaction.
        let audited = (mode == Mode::Write && access != Access::Internal).then(|| params.clone());
        let params = decode::<P>(params)?;
        self.after.take();
        let result = match audited {
            Some(raw) => self.tx(|| {
                let r = handler(params)?;
                self.record_call(caller, name, &raw)?;
                Ok(r)
            }),
            None => handler(params),
        };
        let after = self.after.take();
        let data = to_json(result?)?;
        Ok(Outcome {
            data: Some(data).filter(|d| !d.is_null()),
            dispatch: after.dispatch,
            cancel: after.cancel,
        })
    }

    /// Hands `task` to the workflow engine once the call commits.
    fn dispatch_after_commit(&self, task: TaskId) {
        self.after.borrow_mut().dispatch.push(task);
    }

    /// Stops `task`'s running workflow once the call commits.
    fn cancel_after_commit(&self, tasks: impl IntoIterator<Item = TaskId>) {
        self.after.borrow_mut().cancel.extend(tasks);
    }

    /// Tasks committed but not yet accepted by the workflow engine, older than `min_age_secs`.
    pub fn undispatched(&self, min_age_secs: i64, limit: i64) -> Result<Vec<TaskId>> {
        let before = crate::timestamp(chrono::Utc::now() - chrono::Duration::seconds(min_age_secs));
        let rows = self.q(
            "SELECT id FROM tasks WHERE dispatched_at IS NULL AND created_at <= ? \
             AND status IN ('pending', 'running') ORDER BY created_at LIMIT ?",
            &[before.into(), limit.into()],
        )?;
        Ok(rows
            .iter()
            .map(|r| TaskId::from_db(db::RowExt::int(r.as_slice(), 0)))
            .collect())
    }

    /// Terminated tasks whose workflow has not yet taken its cancel, asked for at least
    /// `min_age_secs` ago (the call that terminated them sends it first).
    pub fn cancels_pending(&self, min_age_secs: i64, limit: i64) -> Result<Vec<TaskId>> {
        let before = crate::timestamp(chrono::Utc::now() - chrono::Duration::seconds(min_age_secs));
        let rows = self.q(
            "SELECT id FROM tasks WHERE cancel_requested_at IS NOT NULL AND cancel_requested_at <= ? \
             ORDER BY cancel_requested_at LIMIT ?",
            &[before.into(), limit.into()],
        )?;
        Ok(rows
            .iter()
            .map(|r| TaskId::from_db(db::RowExt::int(r.as_slice(), 0)))
            .collect())
    }

    /// Records that the workflow engine took a task's cancel.
    pub fn cancel_delivered(&self, task: TaskId) -> Result<()> {
        // Every write goes through `tx`: a plain write would wait for the lock inside SQLite,
        // holding a host worker, instead of taking its turn (`BEGIN IMMEDIATE`).
        self.tx(|| {
            self.q(
                "UPDATE tasks SET cancel_requested_at = NULL WHERE id = ?",
                &[task.into()],
            )
        })?;
        Ok(())
    }

    /// Records that the workflow engine accepted a task's trigger.
    pub fn mark_dispatched(&self, task: TaskId) -> Result<()> {
        self.tx(|| {
            self.q(
                "UPDATE tasks SET dispatched_at = ? WHERE id = ? AND dispatched_at IS NULL",
                &[crate::now().into(), task.get().into()],
            )
        })?;
        Ok(())
    }

    /// One transaction around `f`; inside another, `f` joins it. Work queued for after the
    /// commit is dropped with a rollback.
    fn tx<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        if self.in_tx.get() {
            return f();
        }
        self.in_tx.set(true);
        // Webhooks read under this transaction's write lock are current until it ends.
        self.subscriptions.clear();
        let kicks = self.kicks.borrow().len();
        let out = db::transaction(self.db, f);
        if out.is_err() {
            self.kicks.borrow_mut().truncate(kicks);
        }
        self.subscriptions.clear();
        self.in_tx.set(false);
        out
    }

    fn q(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        db::query(self.db, sql, params)
    }

    fn q1(&self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        db::query_opt(self.db, sql, params)
    }

    /// One page of `SELECT {columns} FROM {from} WHERE {filter}`, keyed and ordered by `id_col`.
    fn page<T>(
        &self,
        query: PageQuery<'_>,
        args: Vec<Value>,
        decode_row: impl Fn(&Row) -> T,
        id_of: fn(&T) -> i64,
        p: Paging<'_>,
    ) -> Result<Page<T>> {
        let limit = i64::from(p.limit.unwrap_or(DEFAULT_LIMIT));
        // The cursor is the last id of the previous page (digits, checked at the boundary).
        let after: i64 = p.cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
        // `page` and `offset` (original clients) only apply without a cursor.
        let offset = match (after, p.offset) {
            (0, Some(o)) => i64::from(o),
            (0, None) => (i64::from(p.page.unwrap_or(1).max(1)) - 1) * limit,
            _ => 0,
        };
        let PageQuery {
            columns,
            from,
            filter,
            id_col,
        } = query;
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
            rows.last().map(|r| id_of(r).to_string())
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

/// What one [`Service::page`] reads.
struct PageQuery<'a> {
    columns: &'a str,
    from: &'a str,
    filter: &'a str,
    id_col: &'a str,
}

fn to_json<T: Serialize>(v: T) -> Result<Json> {
    serde_json::to_value(v).map_err(|e| Error::Db(format!("encoding result: {e}")))
}

/// A JSON array of ids, for `IN (SELECT value FROM json_each(?))`.
fn id_list(ids: impl IntoIterator<Item = i64>) -> Value {
    Value::Text(
        serde_json::to_string(&ids.into_iter().collect::<Vec<_>>()).unwrap_or_else(|_| "[]".into()),
    )
}

/// `owner_id = ? AND <rest>` for a scoped caller, `<rest>` for an unscoped admin.
fn owner_filter(scope: Option<OwnerId>, rest: &str) -> (String, Vec<Value>) {
    match scope {
        Some(owner) => (format!("owner_id = ? AND {rest}"), vec![owner.get().into()]),
        None => (rest.to_owned(), Vec::new()),
    }
}
