//! Routes: HTTP → service call → envelope. No SQL and no business rules here.
//!
//! Every request goes: route (unknown path → 404) → method (known path, other method → 405
//! with `Allow`) → API key where one is needed (401, before the body is read) → body (400 when
//! missing or not JSON) → the service (which validates the params).

use serde_json::Value as Json;
use spin_sdk::http::Method;
use talis_api::methods::{self, Method as _, public as m};
use talis_api::rules::MAX_BODY_BYTES;
use talis_api::{Health, InstanceId, RouteError, RpcRequest, RpcResponse, Slug, TaskId};
use talis_core::auth::Caller;
use talis_core::service::PhoneHomeToken;
use talis_core::{Error, Outcome};

use crate::{After, Db, Reply, Req, Settings, with_service};

/// The routes this component serves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Route<'a> {
    Health,
    /// `GET /ready`: database and schema.
    Ready,
    /// `GET /api/v1/metrics`: fleet gauges (admin keys).
    Metrics,
    OpenApi,
    /// `POST /api/v1/`: the Talis envelope.
    Envelope,
    /// `POST /v1/<method>`: a public method, params as the body.
    Typed(&'static str),
    /// `POST /internal/v1/<method>`: the workflows' methods.
    Internal(&'static str),
    /// `/api/v1/instances` (GET, POST, DELETE) and `/api/v1/admin/instances` (GET).
    Instances {
        admin: bool,
    },
    /// `/api/v1[/admin]/instances/all-metadata`.
    AllMetadata,
    PublicIps,
    Instance(&'a str),
    InstanceTasks(&'a str),
    /// `POST /v1/phone-home/<instance id>?token=…`.
    PhoneHome(&'a str),
    /// `GET /api/v1/events`: `event.list` with its params in the query.
    Events,
}

impl<'a> Route<'a> {
    pub(crate) fn parse(path: &'a str) -> Option<Route<'a>> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        Some(match segments.as_slice() {
            ["health"] => Route::Health,
            ["ready"] => Route::Ready,
            ["api", "v1", "metrics"] => Route::Metrics,
            ["api", "v1", "openapi.json"] => Route::OpenApi,
            ["api", "v1", "events"] => Route::Events,
            ["api", "v1"] => Route::Envelope,
            ["v1", "phone-home", id] => Route::PhoneHome(id),
            ["v1", name] => Route::Typed(methods::public(name)?.name),
            ["internal", "v1", name] => Route::Internal(methods::internal(name)?.name),
            ["api", "v1", "instances"] => Route::Instances { admin: false },
            ["api", "v1", "admin", "instances"] => Route::Instances { admin: true },
            ["api", "v1", "instances", "all-metadata"]
            | ["api", "v1", "admin", "instances", "all-metadata"] => Route::AllMetadata,
            ["api", "v1", "instances", "public-ips"] => Route::PublicIps,
            ["api", "v1", "instances", id] => Route::Instance(id),
            ["api", "v1", "instances", id, "tasks"] => Route::InstanceTasks(id),
            _ => return None,
        })
    }

    /// The methods this route answers.
    pub(crate) fn allowed(&self) -> &'static [Method] {
        match self {
            Route::Health
            | Route::Ready
            | Route::Metrics
            | Route::OpenApi
            | Route::AllMetadata
            | Route::PublicIps
            | Route::Events => &[Method::Get],
            Route::Instance(_) | Route::InstanceTasks(_) => &[Method::Get],
            Route::Instances { admin: true } => &[Method::Get],
            Route::Instances { admin: false } => &[Method::Get, Method::Post, Method::Delete],
            Route::Envelope | Route::Typed(_) | Route::Internal(_) | Route::PhoneHome(_) => {
                &[Method::Post]
            }
        }
    }
}

fn method_name(m: &Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Delete => "DELETE",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Head => "HEAD",
        Method::Options => "OPTIONS",
        Method::Connect => "CONNECT",
        Method::Trace => "TRACE",
        Method::Other(_) => "OTHER",
    }
}

pub(crate) fn json_reply(status: u16, body: &impl serde::Serialize, after: After) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: serde_json::to_vec(body).unwrap_or_default(),
        after,
    }
}

fn route_error(status: u16, error: String) -> Reply {
    json_reply(status, &RouteError { error }, After::default())
}

fn after(o: &mut Outcome) -> After {
    After {
        dispatch: std::mem::take(&mut o.dispatch),
        cancel: std::mem::take(&mut o.cancel),
    }
}

fn envelope(result: Result<Outcome, Error>, id: Option<Json>) -> Reply {
    match result {
        Ok(mut o) => {
            let after = after(&mut o);
            json_reply(200, &RpcResponse::ok(o.data, id), after)
        }
        Err(e) => error_reply(e, id),
    }
}

/// An error as the envelope, with `Retry-After` when it asks to be retried.
pub(crate) fn error_reply(e: Error, id: Option<Json>) -> Reply {
    let retry_after = e.retry_after();
    let r = RpcResponse::err(e.to_wire(), id);
    let mut reply = json_reply(r.status(), &r, After::default());
    if let Some(secs) = retry_after {
        reply.headers.push(("retry-after".into(), secs.to_string()));
    }
    reply
}

/// The original REST style: the slug envelope.
fn slug(result: Result<Outcome, Error>, ok_status: u16, pick: impl FnOnce(Json) -> Json) -> Reply {
    match result {
        Ok(mut o) => {
            let after = after(&mut o);
            json_reply(
                ok_status,
                &Slug::ok(pick(o.data.unwrap_or(Json::Null))),
                after,
            )
        }
        Err(e) => json_reply(e.status(), &Slug::err(&e.to_wire()), After::default()),
    }
}

/// Bare object on success (the original's instance reads), slug envelope on error.
fn bare(result: Result<Outcome, Error>) -> Reply {
    match result {
        Ok(o) => json_reply(200, &o.data.unwrap_or(Json::Null), After::default()),
        Err(e) => json_reply(e.status(), &Slug::err(&e.to_wire()), After::default()),
    }
}

/// The request's JSON body; a body is required on every POST and DELETE.
pub(crate) fn parse_body(req: &Req) -> Result<Json, Error> {
    if req.too_large {
        return Err(Error::TooLarge(MAX_BODY_BYTES));
    }
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid("body", "is required: a JSON document"));
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| Error::BadRequest(format!("Invalid request format: {e}")))
}

/// The presented API key: `Authorization: Bearer`, or the `apikey` / `X-API-Key` headers that
/// the original's gateway and Go client use.
fn api_key(req: &Req) -> Option<&str> {
    req.header("authorization")
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .or_else(|| req.header("apikey"))
        .or_else(|| req.header("x-api-key"))
}

/// Authenticates, then reads the params with `params` (only once the key is good), then runs
/// the public method `name`.
fn call(
    settings: &Settings,
    db: &Db,
    req: &Req,
    name: &str,
    params: impl FnOnce() -> Result<Json, Error>,
) -> Result<Outcome, Error> {
    with_service(settings, db, |svc| {
        let caller: Caller = svc.authenticate(api_key(req))?;
        svc.call(&caller, name, params()?)
    })
}

pub(crate) fn handle(settings: &Settings, db: &Db, req: &Req) -> Reply {
    let Some(route) = Route::parse(&req.path) else {
        return route_error(
            404,
            format!("Cannot {} {}", method_name(&req.method), req.path),
        );
    };
    if !route.allowed().contains(&req.method) {
        let allow: Vec<&str> = route.allowed().iter().map(method_name).collect();
        let mut r = route_error(
            405,
            format!(
                "{} is not allowed on {}",
                method_name(&req.method),
                req.path
            ),
        );
        r.headers.push(("allow".into(), allow.join(", ")));
        return r;
    }
    match route {
        Route::Health => json_reply(
            200,
            &Health {
                status: "healthy".into(),
            },
            After::default(),
        ),
        Route::Ready => crate::ops::ready(settings, db),
        Route::Metrics => crate::ops::metrics(settings, db, api_key(req)),
        Route::OpenApi => json_reply(200, &talis_api::openapi::document(), After::default()),
        Route::Envelope => rpc_envelope(settings, db, req),
        Route::Typed(name) => envelope(call(settings, db, req, name, || parse_body(req)), None),
        Route::Internal(name) => {
            let result = with_service(settings, db, |svc| {
                svc.verify_internal(
                    req.header("authorization")
                        .and_then(|h| h.strip_prefix("Bearer ")),
                )?;
                svc.call_internal(name, parse_body(req)?)
            });
            envelope(result, None)
        }
        Route::Instances { .. } if req.method == Method::Post => {
            // The original's body is the bare array of instance requests.
            let result = call(settings, db, req, m::InstanceCreate::NAME, || {
                parse_body(req).map(|b| match b {
                    Json::Array(a) => serde_json::json!({ "instances": a }),
                    other => other,
                })
            });
            slug(result, 201, |d| {
                d.get("instances").cloned().unwrap_or(Json::Null)
            })
        }
        Route::Instances { .. } if req.method == Method::Delete => slug(
            call(settings, db, req, m::InstanceTerminate::NAME, || {
                parse_body(req)
            }),
            200,
            |d| d,
        ),
        Route::Instances { .. } | Route::AllMetadata => {
            bare(call(settings, db, req, m::InstanceList::NAME, || {
                query::<talis_api::InstanceList>(&req.query)
            }))
        }
        Route::PublicIps => bare(call(settings, db, req, m::InstancePublicIps::NAME, || {
            query::<talis_api::InstanceList>(&req.query)
        })),
        Route::Instance(id) => bare(call(settings, db, req, m::InstanceGet::NAME, || {
            path_id("id", id).map(|id| serde_json::json!({ "id": id }))
        })),
        Route::InstanceTasks(id) => {
            let result = call(settings, db, req, m::TaskListByInstance::NAME, || {
                let id = path_id("id", id)?;
                // The instance comes from the path, whatever the query says.
                let mut q = form_urlencoded::Serializer::new(String::new());
                q.extend_pairs(
                    form_urlencoded::parse(req.query.as_bytes())
                        .filter(|(k, _)| k != "instance_id"),
                );
                q.append_pair("instance_id", &id.to_string());
                query::<talis_api::TaskListByInstance>(&q.finish())
            });
            slug(result, 200, |d| d)
        }
        Route::PhoneHome(instance) => phone_home(settings, db, req, instance),
        Route::Events => bare(call(settings, db, req, m::EventList::NAME, || {
            events_query(&req.query)
        })),
    }
}

/// A machine's report: checked and applied by the service (no key; the URL's token is the
/// credential).
fn phone_home(settings: &Settings, db: &Db, req: &Req, instance: &str) -> Reply {
    let query: std::collections::HashMap<_, _> =
        form_urlencoded::parse(req.query.as_bytes()).collect();
    let number = |k: &str| query.get(k).and_then(|v| v.parse::<i64>().ok());
    let result = (|| {
        let instance = InstanceId::new(path_id("id", instance)?).ok_or(Error::Unauthorized)?;
        let (Some(task), Some(expires), Some(token)) = (
            number("task").and_then(TaskId::new),
            number("exp"),
            query.get("token"),
        ) else {
            return Err(Error::Unauthorized);
        };
        with_service(settings, db, |svc| {
            svc.phone_home(
                instance,
                PhoneHomeToken {
                    task,
                    expires,
                    token,
                },
                || parse_body(req),
            )
        })
    })();
    match result {
        Ok(applied) => json_reply(
            202,
            &Slug::ok(serde_json::to_value(applied).unwrap_or_default()),
            After::default(),
        ),
        Err(e) => error_reply(e, None),
    }
}

/// A positive integer from the path.
fn path_id(field: &str, s: &str) -> Result<i64, Error> {
    s.parse::<i64>()
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| Error::invalid(field, "must be a positive integer"))
}

/// A REST route's query string, decoded with the types of the params it stands for (so `limit`
/// is a number and `project_name=007` stays a name), as the params object of its method.
fn query<T: serde::de::DeserializeOwned + serde::Serialize>(query: &str) -> Result<Json, Error> {
    let typed: T = serde_path_to_error::deserialize(serde_urlencoded::Deserializer::new(
        form_urlencoded::parse(query.as_bytes()),
    ))
    .map_err(|e| {
        let field = e.path().to_string();
        Error::invalid(
            if field == "." { "query".into() } else { field },
            e.into_inner().to_string(),
        )
    })?;
    serde_json::to_value(typed).map_err(|e| Error::Db(e.to_string()))
}

/// `event.list`'s params from a query string: `kinds` repeated (`kinds=a&kinds=b`, OpenAPI's
/// form style) or comma-separated; the rest as in [`query`].
fn events_query(raw: &str) -> Result<Json, Error> {
    let (kinds, rest): (Vec<_>, Vec<_>) =
        form_urlencoded::parse(raw.as_bytes()).partition(|(k, _)| k == "kinds");
    let rest = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(rest)
        .finish();
    let mut params = query::<talis_api::EventList>(&rest)?;
    if !kinds.is_empty() {
        let kinds: Vec<Json> = kinds
            .iter()
            .flat_map(|(_, v)| v.split(','))
            .map(|k| Json::from(k.trim()))
            .collect();
        params["kinds"] = Json::Array(kinds);
    }
    Ok(params)
}

fn rpc_envelope(settings: &Settings, db: &Db, req: &Req) -> Reply {
    let mut id = None;
    let result = with_service(settings, db, |svc| {
        let caller = svc.authenticate(api_key(req))?;
        let env: RpcRequest = serde_json::from_value(parse_body(req)?)
            .map_err(|e| Error::BadRequest(format!("Invalid request format: {e}")))?;
        id = env.id.filter(|i| !i.is_null());
        if id
            .as_ref()
            .is_some_and(|i| !(i.is_string() || i.is_number()))
        {
            id = None;
            return Err(Error::invalid("id", "must be a string or a number"));
        }
        if env.method.trim().is_empty() {
            return Err(Error::invalid("method", "is required"));
        }
        svc.call(&caller, &env.method, env.params)
    });
    envelope(result, id)
}
