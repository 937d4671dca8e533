//! Test component exercising the Spin host: routing, headers, SQLite, variables, outbound HTTP,
//! traps and limits (`/spin` computes forever, `/sleep/<ms>` blocks in a host call).
//!
//! One component answers on every route of `spin.toml`; it dispatches on `spin-path-info`
//! (the part below the matched wildcard route), so the same `.wasm` can be mounted under
//! several components with different permissions.

// `#[http_component]` expands to the component's export glue (`export_name`, unsafe ABI code).
#![allow(unsafe_code)]

use serde_json::{Value as Json, json};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::{key_value, sqlite, sqlite3, variables};

fn json_response(status: u16, body: &Json) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string())
        .build()
}

fn text(status: u16, body: impl Into<String>) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(body.into())
        .build()
}

#[spin_sdk::http_component]
async fn handle(req: Request) -> Response {
    let info = req
        .header("spin-path-info")
        .and_then(|h| h.as_str())
        .unwrap_or_default()
        .to_string();
    let (head, rest) = match info.trim_start_matches('/').split_once('/') {
        Some((h, r)) => (h.to_string(), r.to_string()),
        None => (info.trim_start_matches('/').to_string(), String::new()),
    };
    match head.as_str() {
        "hello" => text(200, "hello, world"),
        "echo" => echo_json(&req),
        "db" => db_v2(&req),
        "db3" => db_v3(&req),
        "var" => variable(&rest),
        "config" => config(&rest),
        "kv" => kv(&req, &rest),
        "wkv" => wasi_keyvalue(),
        "env" => text(200, std::env::var(&rest).unwrap_or_default()),
        "file" => match std::fs::read_to_string(format!("/{rest}")) {
            Ok(s) => text(200, s),
            Err(e) => text(404, e.to_string()),
        },
        "outbound" => outbound(&req).await,
        "log" => {
            println!("spin-test stdout: {rest}");
            eprintln!("spin-test stderr: {rest}");
            text(200, "logged")
        }
        // Limits: a guest that computes forever, one blocked in a host call (the clock).
        "spin" => spin_forever(),
        "sleep" => match rest.parse::<u64>() {
            Ok(ms) => {
                std::thread::sleep(std::time::Duration::from_millis(ms));
                text(200, "slept")
            }
            Err(e) => text(400, e.to_string()),
        },
        "panic" => panic!("spin-test: deliberate panic"),
        "trap" => core::arch::wasm32::unreachable(),
        "noresponse" => std::process::exit(3),
        _ => headers(&req),
    }
}

/// Never returns and never calls the host: only epoch interruption can stop it.
fn spin_forever() -> Response {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Every `spin-*` header plus method and body length, for routing and header tests.
fn headers(req: &Request) -> Response {
    let mut spin = serde_json::Map::new();
    for (name, value) in req.headers() {
        if name.starts_with("spin-") {
            spin.insert(
                name.to_string(),
                json!(value.as_str().unwrap_or("<binary>")),
            );
        }
    }
    json_response(
        200,
        &json!({
            "method": req.method().to_string(),
            "uri": req.uri(),
            "body_len": req.body().len(),
            "headers": spin,
        }),
    )
}

fn echo_json(req: &Request) -> Response {
    match serde_json::from_slice::<Json>(req.body()) {
        Ok(v) => json_response(200, &v),
        Err(e) => text(400, e.to_string()),
    }
}

/// `{"integer": 1}`, `{"real": 1.5}`, `{"text": "a"}`, `{"blob": [1, 2]}`, `"null"`.
fn to_json(v: Value) -> Json {
    match v {
        Value::Integer(i) => json!({ "integer": i }),
        Value::Real(f) => json!({ "real": f }),
        Value::Text(s) => json!({ "text": s }),
        Value::Blob(b) => json!({ "blob": b }),
        Value::Null => json!("null"),
    }
}

fn from_json(v: &Json) -> Result<Value, String> {
    if v == "null" || v.is_null() {
        return Ok(Value::Null);
    }
    let (kind, inner) = v
        .as_object()
        .and_then(|o| o.iter().next())
        .ok_or_else(|| format!("bad parameter {v}"))?;
    Ok(match kind.as_str() {
        "integer" => Value::Integer(inner.as_i64().ok_or("integer")?),
        "real" => Value::Real(inner.as_f64().ok_or("real")?),
        "text" => Value::Text(inner.as_str().ok_or("text")?.to_string()),
        "blob" => Value::Blob(
            inner
                .as_array()
                .ok_or("blob")?
                .iter()
                .map(|b| b.as_u64().unwrap_or(0) as u8)
                .collect(),
        ),
        other => return Err(format!("unknown value kind {other}")),
    })
}

/// Version-independent value, converted to/from both SDK interface versions.
enum Value {
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

/// `{"db": "default", "sql": "...", "params": [...]}`
fn parse_query(req: &Request) -> Result<(String, String, Vec<Value>), String> {
    let q: Json = serde_json::from_slice(req.body()).map_err(|e| e.to_string())?;
    let db = q["db"].as_str().unwrap_or("default").to_string();
    let sql = q["sql"].as_str().ok_or("missing sql")?.to_string();
    let params = q["params"]
        .as_array()
        .map(|a| a.iter().map(from_json).collect::<Result<Vec<_>, _>>())
        .transpose()?
        .unwrap_or_default();
    Ok((db, sql, params))
}

fn db_error(e: impl std::fmt::Debug) -> Response {
    let e = format!("{e:?}");
    let status = if e.contains("AccessDenied") {
        403
    } else if e.contains("NoSuchDatabase") {
        404
    } else {
        500
    };
    json_response(status, &json!({ "error": e }))
}

fn db_v2(req: &Request) -> Response {
    let (db, sql, params) = match parse_query(req) {
        Ok(q) => q,
        Err(e) => return text(400, e),
    };
    let conn = match sqlite::Connection::open(&db) {
        Ok(c) => c,
        Err(e) => return db_error(e),
    };
    let params: Vec<sqlite::Value> = params
        .into_iter()
        .map(|v| match v {
            Value::Integer(i) => sqlite::Value::Integer(i),
            Value::Real(f) => sqlite::Value::Real(f),
            Value::Text(s) => sqlite::Value::Text(s),
            Value::Blob(b) => sqlite::Value::Blob(b),
            Value::Null => sqlite::Value::Null,
        })
        .collect();
    match conn.execute(&sql, &params) {
        Ok(r) => json_response(
            200,
            &json!({
                "columns": r.columns,
                "rows": r.rows.into_iter().map(|row| row.values.into_iter().map(|v| to_json(match v {
                    sqlite::Value::Integer(i) => Value::Integer(i),
                    sqlite::Value::Real(f) => Value::Real(f),
                    sqlite::Value::Text(s) => Value::Text(s),
                    sqlite::Value::Blob(b) => Value::Blob(b),
                    sqlite::Value::Null => Value::Null,
                })).collect::<Vec<_>>()).collect::<Vec<_>>(),
            }),
        ),
        Err(e) => db_error(e),
    }
}

fn db_v3(req: &Request) -> Response {
    let (db, sql, params) = match parse_query(req) {
        Ok(q) => q,
        Err(e) => return text(400, e),
    };
    let conn = match sqlite3::Connection::open(&db) {
        Ok(c) => c,
        Err(e) => return db_error(e),
    };
    let params: Vec<sqlite3::Value> = params
        .into_iter()
        .map(|v| match v {
            Value::Integer(i) => sqlite3::Value::Integer(i),
            Value::Real(f) => sqlite3::Value::Real(f),
            Value::Text(s) => sqlite3::Value::Text(s),
            Value::Blob(b) => sqlite3::Value::Blob(b),
            Value::Null => sqlite3::Value::Null,
        })
        .collect();
    match conn.execute(&sql, &params) {
        Ok(r) => json_response(
            200,
            &json!({
                "columns": r.columns,
                "rows": r.rows.into_iter().map(|row| row.values.into_iter().map(|v| to_json(match v {
                    sqlite3::Value::Integer(i) => Value::Integer(i),
                    sqlite3::Value::Real(f) => Value::Real(f),
                    sqlite3::Value::Text(s) => Value::Text(s),
                    sqlite3::Value::Blob(b) => Value::Blob(b),
                    sqlite3::Value::Null => Value::Null,
                })).collect::<Vec<_>>()).collect::<Vec<_>>(),
                "changes": conn.changes(),
                "last_insert_rowid": conn.last_insert_rowid(),
            }),
        ),
        Err(e) => db_error(e),
    }
}

fn variable(name: &str) -> Response {
    match variables::get(name) {
        Ok(v) => text(200, v),
        Err(variables::Error::Undefined(m)) => text(404, format!("undefined: {m}")),
        Err(variables::Error::InvalidName(m)) => text(400, format!("invalid name: {m}")),
        Err(e) => text(500, format!("{e:?}")),
    }
}

fn config(name: &str) -> Response {
    use spin_sdk::wit::wasi::config::store;
    if name.is_empty() {
        return match store::get_all() {
            Ok(all) => json_response(200, &json!(all)),
            Err(e) => text(500, format!("{e:?}")),
        };
    }
    match store::get(name) {
        Ok(Some(v)) => text(200, v),
        Ok(None) => text(404, "none"),
        Err(e) => text(500, format!("{e:?}")),
    }
}

fn kv(req: &Request, key: &str) -> Response {
    let store = match key_value::Store::open_default() {
        Ok(s) => s,
        Err(e) => {
            return text(
                if matches!(e, key_value::Error::AccessDenied) {
                    403
                } else {
                    500
                },
                format!("{e:?}"),
            );
        }
    };
    let r = match req.method() {
        Method::Put => store.set(key, req.body()).map(|()| text(200, "stored")),
        Method::Delete => store.delete(key).map(|()| text(200, "deleted")),
        _ if key.is_empty() => store.get_keys().map(|k| json_response(200, &json!(k))),
        _ => store.get(key).map(|v| match v {
            Some(v) => text(200, String::from_utf8_lossy(&v)),
            None => text(404, "no such key"),
        }),
    };
    r.unwrap_or_else(|e| text(500, format!("{e:?}")))
}

/// A scripted tour of `wasi:keyvalue` (store, atomics, batch) on the default store.
fn wasi_keyvalue() -> Response {
    use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store};
    let bucket = match store::open("default") {
        Ok(b) => b,
        Err(store::Error::AccessDenied) => return text(403, "AccessDenied"),
        Err(e) => return text(500, format!("{e:?}")),
    };
    let run = || -> Result<Json, String> {
        let e = |e: store::Error| format!("{e:?}");
        bucket.set("a", b"1").map_err(e)?;
        let a = bucket.get("a").map_err(e)?;
        let exists = (
            bucket.exists("a").map_err(e)?,
            bucket.exists("zz").map_err(e)?,
        );
        atomics::increment(&bucket, "n", 5).map_err(e)?;
        let n = atomics::increment(&bucket, "n", 5).map_err(e)?;
        batch::set_many(
            &bucket,
            &[
                ("b1".to_string(), b"x".to_vec()),
                ("b2".to_string(), b"y".to_vec()),
            ],
        )
        .map_err(e)?;
        let many =
            batch::get_many(&bucket, &["b1".to_string(), "missing".to_string()]).map_err(e)?;
        batch::delete_many(&bucket, &["b2".to_string()]).map_err(e)?;
        let mut keys = bucket.list_keys(None).map_err(e)?.keys;
        keys.sort();
        // Compare-and-swap: succeeds on an unchanged key, fails after an interfering write.
        let cas = atomics::Cas::new(&bucket, "c").map_err(e)?;
        let before = cas.current().map_err(e)?;
        let first = atomics::swap(cas, b"x").is_ok();
        let cas = atomics::Cas::new(&bucket, "c").map_err(e)?;
        cas.current().map_err(e)?;
        bucket.set("c", b"interfering").map_err(e)?;
        let second = match atomics::swap(cas, b"z") {
            Ok(()) => "swapped".to_string(),
            Err(atomics::CasError::CasFailed(_)) => "cas-failed".to_string(),
            Err(atomics::CasError::StoreError(err)) => format!("{err:?}"),
        };
        let c = bucket.get("c").map_err(e)?;
        Ok(json!({
            "a": a.map(|v| String::from_utf8_lossy(&v).into_owned()),
            "exists": [exists.0, exists.1],
            "n": n,
            "many": many.into_iter().map(|(k, v)| json!([k, v.map(|v| String::from_utf8_lossy(&v).into_owned())])).collect::<Vec<_>>(),
            "keys": keys,
            "cas_before": before,
            "cas_first": first,
            "cas_second": second,
            "c": c.map(|v| String::from_utf8_lossy(&v).into_owned()),
        }))
    };
    match run() {
        Ok(v) => json_response(200, &v),
        Err(e) => text(500, e),
    }
}

/// `GET /outbound` with header `x-target: <url>`: fetch it and report what happened.
async fn outbound(req: &Request) -> Response {
    let Some(target) = req.header("x-target").and_then(|h| h.as_str()) else {
        return text(400, "missing x-target");
    };
    let out = Request::get(target).build();
    match spin_sdk::http::send::<_, Response>(out).await {
        Ok(resp) => json_response(
            200,
            &json!({
                "status": *resp.status(),
                "body": String::from_utf8_lossy(resp.body()),
            }),
        ),
        Err(e) => json_response(502, &json!({ "error": format!("{e:?}") })),
    }
}
