//! The Talis RPC API as a Spin HTTP component: routes, auth header extraction, `Sql` over Spin
//! SQLite, and the workflow trigger over outbound HTTP after commit. Thin: decode → core → encode.

// `#[http_component]` generates the component's export glue, which is unsafe code.
#![allow(unsafe_code)]

mod ops;
mod routes;
mod trigger;

use std::cell::{Cell, OnceCell, RefCell};

use futures::StreamExt;
use spin_sdk::http::{Fields, IncomingRequest, Method, OutgoingResponse, ResponseOutparam};
use spin_sdk::http_component;
use spin_sdk::sqlite::{Connection, Value as SpinValue};
use talis_api::TaskId;
use talis_core::db::{Row, Sql, Value};
use talis_core::{Error, Service, settings};

/// `Sql` over one Spin SQLite connection (one per request, so `BEGIN … COMMIT` is ours alone).
struct SpinSql(Connection);

impl Sql for SpinSql {
    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, String> {
        let params: Vec<SpinValue> = params
            .iter()
            .map(|v| match v {
                Value::Null => SpinValue::Null,
                Value::Integer(i) => SpinValue::Integer(*i),
                Value::Real(f) => SpinValue::Real(*f),
                Value::Text(s) => SpinValue::Text(s.clone()),
                Value::Blob(b) => SpinValue::Blob(b.clone()),
            })
            .collect();
        let result = self.0.execute(sql, &params).map_err(|e| e.to_string())?;
        Ok(result
            .rows
            .into_iter()
            .map(|row| {
                row.values
                    .into_iter()
                    .map(|v| match v {
                        SpinValue::Null => Value::Null,
                        SpinValue::Integer(i) => Value::Integer(i),
                        SpinValue::Real(f) => Value::Real(f),
                        SpinValue::Text(s) => Value::Text(s),
                        SpinValue::Blob(b) => Value::Blob(b),
                    })
                    .collect()
            })
            .collect())
    }
}

/// The component's settings, read from Spin variables (unset reads as empty).
pub(crate) struct Settings {
    pub core: talis_core::Config,
    pub restate_ingress_url: String,
    /// This request's id: the client's `x-request-id` when it is a plain token, else a new one;
    /// answered in `x-request-id` and recorded in the audit events.
    pub request_id: String,
}

fn variable(name: &str) -> String {
    spin_sdk::variables::get(name)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn settings() -> Settings {
    Settings {
        core: talis_core::Config {
            admin_api_key: variable(settings::ADMIN_API_KEY),
            internal_secret: variable(settings::INTERNAL_SECRET),
            public_url: variable(settings::PUBLIC_URL),
            restate_ui_url: variable(settings::RESTATE_UI_URL)
                .trim_end_matches('/')
                .to_owned(),
            deployment: variable(settings::DEPLOYMENT_ID),
            quotas: quotas(),
            event_retention_days: number(
                settings::EVENT_RETENTION_DAYS,
                settings::DEFAULT_EVENT_RETENTION_DAYS,
            ),
            event_wait_max_ms: number(settings::EVENT_WAIT_MAX_MS, talis_api::events::MAX_WAIT_MS),
            webhook_allow_hosts: allow_list(),
        },
        restate_ingress_url: variable(settings::RESTATE_INGRESS_URL)
            .trim_end_matches('/')
            .to_owned(),
        request_id: String::new(),
    }
}

/// The client's request id if it is 1 to 64 letters, digits, '-' or '_'; else a new random one.
fn request_id(presented: Option<&str>) -> String {
    match presented {
        Some(id)
            if (1..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            id.to_owned()
        }
        _ => format!("{:016x}", rand::random::<u64>()),
    }
}

/// A numeric variable: unset keeps `default`, and so does one that is not a number (reported).
fn number(name: &str, default: u32) -> u32 {
    let v = variable(name);
    if v.is_empty() {
        return default;
    }
    v.parse().unwrap_or_else(|_| {
        eprintln!("talis: variable {name} = {v:?} is not a number; using the default {default}");
        default
    })
}

/// Hosts webhooks may reach despite the SSRF guard; a malformed list is reported and allows
/// nothing (the safe reading).
fn allow_list() -> talis_api::egress::AllowList {
    let v = variable(settings::WEBHOOK_ALLOW_HOSTS);
    v.parse().unwrap_or_else(|e| {
        eprintln!(
            "talis: variable {}: {e}; webhooks may reach public addresses only",
            settings::WEBHOOK_ALLOW_HOSTS
        );
        Default::default()
    })
}

/// Every owner's default quotas (unset variables keep the built-in defaults).
fn quotas() -> talis_api::Quotas {
    let d = talis_api::Quotas::default();
    let read = number;
    talis_api::Quotas {
        max_instances: read(settings::MAX_INSTANCES_PER_OWNER, d.max_instances),
        max_projects: read(settings::MAX_PROJECTS_PER_OWNER, d.max_projects),
        max_api_keys: read(settings::MAX_API_KEYS_PER_OWNER, d.max_api_keys),
        max_ssh_keys: read(settings::MAX_SSH_KEYS_PER_OWNER, d.max_ssh_keys),
        max_webhooks: read(settings::MAX_WEBHOOKS_PER_OWNER, d.max_webhooks),
    }
}

/// An HTTP request reduced to what the routes need.
pub(crate) struct Req {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The body exceeded `MAX_BODY_BYTES` and was not read in full.
    pub too_large: bool,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// What to answer, and what to do once the answer is sent.
pub(crate) struct Reply {
    pub status: u16,
    /// Headers besides `x-request-id`; `content-type` is `application/json` unless named here.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub after: After,
}

#[derive(Default)]
pub(crate) struct After {
    /// Committed tasks to trigger.
    pub dispatch: Vec<TaskId>,
    /// Terminated tasks whose running workflow is told to stop and compensate.
    pub cancel: Vec<TaskId>,
}

#[http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    let method = req.method();
    let (path, query) = match req.path_with_query() {
        Some(pq) => match pq.split_once('?') {
            Some((p, q)) => (p.to_owned(), q.to_owned()),
            None => (pq, String::new()),
        },
        None => ("/".to_owned(), String::new()),
    };
    let headers = req.headers().entries();
    let (body, too_large) = read_body(req).await;
    let req = Req {
        method,
        path,
        query,
        headers,
        body,
        too_large,
    };
    let settings = Settings {
        request_id: request_id(req.header("x-request-id")),
        ..settings()
    };
    let db = Db::default();

    let reply = routes::handle(&settings, &db, &req);
    let After { dispatch, cancel } = reply.after;
    let mut headers = vec![(
        "x-request-id".to_owned(),
        settings.request_id.clone().into_bytes(),
    )];
    if !reply
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        headers.push(("content-type".to_owned(), b"application/json".to_vec()));
    }
    headers.extend(reply.headers.into_iter().map(|(k, v)| (k, v.into_bytes())));
    let response = OutgoingResponse::new(Fields::from_list(&headers).expect("valid headers"));
    let _ = response.set_status_code(reply.status);
    // The answer goes out first: the trigger must never delay or fail a committed call.
    let _ = out.set_with_body(response, reply.body).await;
    trigger::cancel(&settings, &db, cancel).await;
    trigger::dispatch_and_sweep(&settings, &db, dispatch).await;
    let kicks = db.kicks.take();
    trigger::deliver_and_sweep(&settings, &db, kicks).await;
}

async fn read_body(req: IncomingRequest) -> (Vec<u8>, bool) {
    let mut stream = req.into_body_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                body.extend(c);
                if body.len() > talis_api::rules::MAX_BODY_BYTES {
                    return (Vec::new(), true);
                }
            }
            Err(_) => break,
        }
    }
    (body, false)
}

/// The request's database connection: opened on first use, its schema checked once, and kept
/// for the work after the answer (trigger bookkeeping, sweep), which so needs no second open.
#[derive(Default)]
pub(crate) struct Db {
    conn: OnceCell<SpinSql>,
    checked: Cell<bool>,
    /// Webhook deliveries committed by this request, to hand to Restate after the answer.
    kicks: RefCell<Vec<talis_api::webhooks::WebhookKick>>,
}

impl Db {
    fn sql(&self) -> Result<&SpinSql, Error> {
        if let Some(c) = self.conn.get() {
            return Ok(c);
        }
        let c = Connection::open_default().map_err(|e| Error::Db(e.to_string()))?;
        Ok(self.conn.get_or_init(|| SpinSql(c)))
    }
}

/// Runs `f` on the service over the request's connection.
pub(crate) fn with_service<T>(
    settings: &Settings,
    db: &Db,
    f: impl FnOnce(&Service<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    let sql = db.sql()?;
    let svc = if db.checked.get() {
        Service::reopen(sql, &settings.core)
    } else {
        let svc = Service::open(sql, &settings.core)?;
        db.checked.set(true);
        svc
    };
    svc.set_request_id(&settings.request_id);
    let out = f(&svc);
    // Whatever committed (even under a call that failed afterwards) has its deliveries.
    db.kicks.borrow_mut().extend(svc.take_kicks());
    log_storage_error(settings, &out);
    out
}

/// The caller only sees "internal database error" (storage details are not theirs to read);
/// the operator sees the cause, once, on stderr (the host's log), with the request id.
fn log_storage_error<T>(settings: &Settings, out: &Result<T, Error>) {
    match out {
        Err(Error::Db(cause)) => eprintln!(
            "talis: database error (request {}): {cause}",
            settings.request_id
        ),
        Err(e @ Error::RetryLater { .. }) => {
            eprintln!("talis: request {} refused: {e}", settings.request_id)
        }
        _ => {}
    }
}
