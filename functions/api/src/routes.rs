//! Routes: HTTP → service call → envelope. No SQL and no business rules here.

use serde_json::{Map, Value as Json, json};
use spin_sdk::http::Method;
use talis_api::{Health, MAX_BODY_BYTES, RpcRequest, RpcResponse, Slug};
use talis_core::{Error, Outcome};

use crate::{After, Db, Reply, Req, Settings, with_caller, with_service};

fn json_reply(status: u16, body: &impl serde::Serialize, after: After) -> Reply {
    Reply {
        status,
        body: serde_json::to_vec(body).unwrap_or_default(),
        after,
    }
}

fn envelope(result: Result<Outcome, Error>, id: Option<Json>) -> Reply {
    match result {
        Ok(o) => json_reply(
            200,
            &RpcResponse::ok(o.data, id),
            After {
                dispatch: o.dispatch,
                cancel: o.cancel,
            },
        ),
        Err(e) => {
            let r = RpcResponse::err(&e, id);
            json_reply(r.status(), &r, After::default())
        }
    }
}

/// The original REST style: the slug envelope.
fn slug(result: Result<Outcome, Error>, ok_status: u16, pick: impl FnOnce(Json) -> Json) -> Reply {
    match result {
        Ok(o) => json_reply(
            ok_status,
            &Slug::ok(pick(o.data.unwrap_or(Json::Null))),
            After {
                dispatch: o.dispatch,
                cancel: o.cancel,
            },
        ),
        Err(e) => json_reply(e.status(), &Slug::err(&e), After::default()),
    }
}

/// Bare object on success (the original's instance reads), slug envelope on error.
fn bare(result: Result<Outcome, Error>) -> Reply {
    match result {
        Ok(o) => json_reply(200, &o.data.unwrap_or(Json::Null), After::default()),
        Err(e) => json_reply(e.status(), &Slug::err(&e), After::default()),
    }
}

fn parse_body(req: &Req) -> Result<Json, Error> {
    if req.too_large {
        return Err(Error::TooLarge(MAX_BODY_BYTES));
    }
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Json::Null);
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

/// Runs a public method for the authenticated caller.
fn call(
    settings: &Settings,
    db: &Db,
    req: &Req,
    method: &str,
    params: Json,
) -> Result<Outcome, Error> {
    with_caller(settings, db, api_key(req), |svc, caller| {
        svc.call(caller, method, params)
    })
}

pub(crate) fn handle(settings: &Settings, db: &Db, req: &Req) -> Reply {
    let path = req.path.as_str();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (&req.method, segments.as_slice()) {
        (Method::Get, ["health"]) => json_reply(
            200,
            &Health {
                status: "healthy".into(),
            },
            After::default(),
        ),
        (Method::Get, ["api", "v1", "openapi.json"]) => {
            json_reply(200, &talis_api::openapi::document(), After::default())
        }
        (Method::Post, ["api", "v1"]) => rpc_envelope(settings, db, req),
        (Method::Post, ["v1", method]) => envelope(
            parse_body(req).and_then(|p| call(settings, db, req, method, p)),
            None,
        ),
        (Method::Post, ["internal", "v1", method]) => {
            let result = parse_body(req).and_then(|p| {
                with_service(settings, db, |svc| {
                    svc.verify_internal(
                        req.header("authorization")
                            .and_then(|h| h.strip_prefix("Bearer ")),
                    )?;
                    svc.call_internal(method, p)
                })
            });
            envelope(
                result.map(|data| Outcome {
                    data: Some(data),
                    ..Outcome::default()
                }),
                None,
            )
        }
        (Method::Get, ["api", "v1", "instances" | "admin", ..]) => {
            rest_read(settings, db, req, &segments[2..])
        }
        (Method::Post, ["api", "v1", "instances"]) => {
            let result =
                parse_body(req).and_then(|p| call(settings, db, req, "instance.create", p));
            slug(result, 201, |d| {
                d.get("instances").cloned().unwrap_or(Json::Null)
            })
        }
        (Method::Delete, ["api", "v1", "instances"]) => {
            let result =
                parse_body(req).and_then(|p| call(settings, db, req, "instance.terminate", p));
            slug(result, 200, |d| d)
        }
        (Method::Get | Method::Post | Method::Delete, _) if known_path(&segments) => json_reply(
            405,
            &json!({ "error": "Method Not Allowed" }),
            After::default(),
        ),
        (m, _) => json_reply(
            404,
            &json!({ "error": format!("Cannot {m} {path}") }),
            After::default(),
        ),
    }
}

fn known_path(segments: &[&str]) -> bool {
    matches!(
        segments,
        ["health"] | ["api", "v1", ..] | ["v1", _] | ["internal", "v1", _]
    )
}

fn rpc_envelope(settings: &Settings, db: &Db, req: &Req) -> Reply {
    let body = match parse_body(req) {
        Ok(b) => b,
        Err(e) => return envelope(Err(e), None),
    };
    let env: RpcRequest = match serde_json::from_value(body) {
        Ok(e) => e,
        Err(e) => {
            return envelope(
                Err(Error::BadRequest(format!("Invalid request format: {e}"))),
                None,
            );
        }
    };
    let id = env.id.filter(|i| !i.is_null());
    if id
        .as_ref()
        .is_some_and(|i| !(i.is_string() || i.is_number()))
    {
        return envelope(
            Err(Error::invalid("id", "must be a string or a number")),
            None,
        );
    }
    if env.method.trim().is_empty() {
        return envelope(Err(Error::BadRequest("Method is required".into())), id);
    }
    envelope(call(settings, db, req, &env.method, env.params), id)
}

/// The original's GET routes under `/api/v1/instances` and `/api/v1/admin/instances`.
fn rest_read(settings: &Settings, db: &Db, req: &Req, rest: &[&str]) -> Reply {
    let rest = if rest.first() == Some(&"admin") {
        &rest[1..]
    } else {
        rest
    };
    let q = query_params(&req.query);
    match rest {
        ["instances"] | ["instances", "all-metadata"] => {
            bare(call(settings, db, req, "instance.list", q))
        }
        ["instances", "public-ips"] => bare(call(settings, db, req, "instance.publicIps", q)),
        ["instances", id] => match id.parse::<u64>() {
            Ok(id) => bare(call(settings, db, req, "instance.get", json!({ "id": id }))),
            Err(_) => bare(Err(Error::invalid(
                "id",
                "instance id must be a positive integer",
            ))),
        },
        ["instances", id, "tasks"] => match id.parse::<u64>() {
            Ok(id) => {
                let mut q = q;
                q["instance_id"] = json!(id);
                slug(
                    call(settings, db, req, "task.listByInstance", q),
                    200,
                    |d| d,
                )
            }
            Err(_) => slug(
                Err(Error::invalid("instance_id", "must be a positive integer")),
                200,
                |d| d,
            ),
        },
        _ => json_reply(
            404,
            &json!({ "error": format!("Cannot GET {}", req.path) }),
            After::default(),
        ),
    }
}

/// Query string → params object. Numeric and boolean keys are typed so that the service's
/// decoder accepts them; a malformed value stays a string and is reported with its name.
fn query_params(query: &str) -> Json {
    let mut m = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k), percent_decode(v));
        // The original Go client sends the status filter under these names.
        let k = match k.as_str() {
            "instance_status" | "status_filter" => "status".to_owned(),
            _ => k,
        };
        let value = match k.as_str() {
            "limit" | "offset" | "page" | "owner_id" => {
                v.parse::<u64>().map(Json::from).unwrap_or(Json::String(v))
            }
            "include_deleted" => match v.as_str() {
                "true" | "1" => Json::Bool(true),
                "false" | "0" | "" => Json::Bool(false),
                _ => Json::String(v),
            },
            _ => Json::String(v),
        };
        m.insert(k, value);
    }
    Json::Object(m)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `POST /v1/phone-home/{instance_id}?token=…` → (instance id, token).
pub(crate) fn phone_home_target(req: &Req) -> Option<(i64, String)> {
    let id = req
        .path
        .strip_prefix("/v1/phone-home/")?
        .trim_end_matches('/');
    if req.method != Method::Post {
        return None;
    }
    let token = req
        .query
        .split('&')
        .find_map(|p| p.strip_prefix("token="))
        .map(percent_decode)
        .unwrap_or_default();
    Some((id.parse().unwrap_or(0), token))
}
