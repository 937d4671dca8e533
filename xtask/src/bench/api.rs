//! `cargo xtask bench api`: the API component on a release `talis-host` against the same core
//! logic served natively (hyper + rusqlite, same JSON in and out, same SQLite file settings), both
//! over loopback HTTP and loaded by `wrk` like `bench host`. Measures `project.create` with 100
//! instances (p50/p99, creates/s), the cheap read `task.get`, and a 10 000-instance
//! `project.create`; prints the Wasm/native ratios.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use talis_api::RpcResponse;
use talis_api::methods::{Method, public as m};
use talis_core::{Config, Error, Service};

use super::host::{Stats, wrk};

const ADMIN_KEY: &str = "bench-admin-key-of-at-least-32-characters";
/// Connections of the throughput run (the machine has 2 cores).
const CLIENTS: u32 = 2;
const BIG_RUNS: usize = 3;

/// Latencies of the big creates, in milliseconds.
struct Lat(Vec<f64>);

impl Lat {
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
    }
}

struct Measured {
    /// `project.create` with 100 instances on one connection (latency).
    create: Stats,
    /// The same on `CLIENTS` connections (throughput).
    create_par: Stats,
    read: Stats,
    big: Lat,
}

fn instances(n: u64) -> Value {
    json!([{ "provider": "do", "region": "nyc3", "size": "s-2vcpu-4gb", "image": "ubuntu-22-04-x64",
             "number_of_instances": n, "name": "lightnode", "tags": ["celestia", "light-node"], "provision": true,
             "payload": "#!/bin/sh\nset -e\napt-get update\n",
             "volumes": [{ "name": "data", "size_gb": 20, "mount_point": "/mnt/data", "filesystem": "ext4" }] }])
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    async fn call(&self, key: &str, method: &str, params: &Value) -> Result<(Value, f64)> {
        let started = Instant::now();
        let resp = self
            .http
            .post(format!("{}/v1/{method}", self.base))
            .bearer_auth(key)
            .json(params)
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if !status.is_success() {
            bail!("{method} answered {status}: {body}");
        }
        Ok((body["data"].clone(), ms))
    }

    async fn create(&self, name: &str, n: u64) -> Result<(i64, f64)> {
        let params = json!({ "name": name, "instances": instances(n) });
        let (d, ms) = self
            .call(&self.key, m::ProjectCreate::NAME, &params)
            .await?;
        Ok((d["task_id"].as_i64().context("task_id")?, ms))
    }
}

/// A wrk script posting `project.create` with 100 instances under unique project names
/// (`<run>-<wrk thread>-<counter>`), so every request really creates.
fn create_script(dir: &Path, key: &str, run: &str) -> Result<PathBuf> {
    let path = dir.join(format!("create-{run}.lua"));
    let tail = format!(",\"instances\":{}}}", instances(100));
    let lua = [
        "wrk.method = \"POST\"".to_owned(),
        "wrk.headers[\"Content-Type\"] = \"application/json\"".to_owned(),
        format!("wrk.headers[\"Authorization\"] = \"Bearer {key}\""),
        "local threads = 0".to_owned(),
        "function setup(thread) threads = threads + 1; thread:set(\"tid\", threads) end".to_owned(),
        "counter = 0".to_owned(),
        format!("local tail = [[{tail}]]"),
        "function request()".to_owned(),
        "  counter = counter + 1".to_owned(),
        format!(
            "  return wrk.format(nil, nil, nil, '{{\"name\":\"{run}-' .. tostring(tid) .. '-' .. counter .. '\"' .. tail)"
        ),
        "end".to_owned(),
    ];
    std::fs::write(&path, lua.join("\n") + "\n")?;
    Ok(path)
}

fn read_script(dir: &Path, key: &str, task_id: i64) -> Result<PathBuf> {
    let path = dir.join("read.lua");
    let lua = [
        "wrk.method = \"POST\"".to_owned(),
        "wrk.headers[\"Content-Type\"] = \"application/json\"".to_owned(),
        format!("wrk.headers[\"Authorization\"] = \"Bearer {key}\""),
        format!("wrk.body = '{{\"task_id\": {task_id}}}'"),
    ];
    std::fs::write(&path, lua.join("\n") + "\n")?;
    Ok(path)
}

async fn measure(base: &str, tag: &str, work: &Path) -> Result<Measured> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let mut c = Client {
        http,
        base: base.to_owned(),
        key: String::new(),
    };
    let (user, _) = c
        .call(
            ADMIN_KEY,
            m::UserCreate::NAME,
            &json!({ "username": format!("bench-{tag}") }),
        )
        .await?;
    c.key = user["api_key"].as_str().context("api_key")?.to_owned();
    let mut task = 0;
    for i in 0..30 {
        task = c.create(&format!("warm-{i}"), 100).await?.0;
    }
    let dir = work.join(tag);
    std::fs::create_dir_all(&dir)?;
    let (seq, par) = (
        create_script(&dir, &c.key, "seq")?,
        create_script(&dir, &c.key, "par")?,
    );
    let read = read_script(&dir, &c.key, task)?;
    let (create_url, read_url) = (
        format!("{base}/v1/project.create"),
        format!("{base}/v1/task.get"),
    );
    // wrk is a blocking child process; keep it off the async runtime.
    let (create, create_par, read) = tokio::task::spawn_blocking(move || -> Result<_> {
        Ok((
            wrk(&create_url, 1, 1, Some(&seq))?,
            wrk(&create_url, CLIENTS, CLIENTS, Some(&par))?,
            wrk(&read_url, 1, 1, Some(&read))?,
        ))
    })
    .await??;
    let mut big = Vec::new();
    for i in 0..BIG_RUNS {
        big.push(c.create(&format!("big-{i}"), 10_000).await?.1);
    }
    Ok(Measured {
        create,
        create_par,
        read,
        big: Lat(big),
    })
}

/// The runtime config that puts the component's default database at `db`.
fn runtime_config(dir: &Path, db: &Path) -> Result<PathBuf> {
    let rc = dir.join("runtime-config.toml");
    std::fs::write(
        &rc,
        format!(
            "[sqlite_database.default]\ntype = \"spin\"\npath = {:?}\n",
            db.display().to_string()
        ),
    )?;
    Ok(rc)
}

/// Connections of the native baseline, pooled per database like talis-host does.
struct Pool {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl Pool {
    fn checkout(&self) -> rusqlite::Result<rusqlite::Connection> {
        if let Some(c) = self.idle.lock().expect("pool").pop() {
            return Ok(c);
        }
        let c = rusqlite::Connection::open(&self.path)?;
        c.busy_timeout(Duration::from_secs(5))?;
        Ok(c)
    }
}

/// The native baseline of `POST /v1/<method>`: the component's work without Wasm.
fn native_call(
    pool: &Pool,
    cfg: &Config,
    method: &str,
    auth: Option<&str>,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let conn = match pool.checkout() {
        Ok(c) => c,
        Err(e) => return (500, e.to_string().into_bytes()),
    };
    let result = serde_json::from_slice::<Value>(body)
        .map_err(|e| Error::BadRequest(format!("Invalid request format: {e}")))
        .and_then(|params| {
            let svc = Service::open(&conn, cfg)?;
            let caller = svc.authenticate(auth)?;
            svc.call(&caller, method, params)
        });
    pool.idle.lock().expect("pool").push(conn);
    let resp = match result {
        Ok(o) => RpcResponse::ok(o.data, None),
        Err(e) => RpcResponse::err(e.to_wire(), None),
    };
    (resp.status(), serde_json::to_vec(&resp).unwrap_or_default())
}

fn start_native(db: &Path) -> Result<(SocketAddr, tokio::runtime::Runtime)> {
    let pool = Arc::new(Pool {
        path: db.to_owned(),
        idle: Mutex::new(Vec::new()),
    });
    let cfg = Arc::new(Config {
        admin_api_key: ADMIN_KEY.into(),
        ..Config::default()
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    rt.spawn(async move {
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let (pool, cfg) = (pool.clone(), cfg.clone());
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (pool, cfg) = (pool.clone(), cfg.clone());
                async move {
                    let method = req
                        .uri()
                        .path()
                        .strip_prefix("/v1/")
                        .unwrap_or("")
                        .to_owned();
                    let auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|h| h.to_str().ok())
                        .and_then(|h| h.strip_prefix("Bearer "))
                        .map(str::to_owned);
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let (status, out) = native_call(&pool, &cfg, &method, auth.as_deref(), &body);
                    let mut r = Response::new(Full::new(Bytes::from(out)));
                    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
                    Ok::<_, Infallible>(r)
                }
            });
            tokio::spawn(
                builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned(),
            );
        }
    });
    Ok((addr, rt))
}

pub fn run() -> Result<()> {
    let Some(work) = super::prepare_wasm_bench("api")? else {
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let mut opts = talis_stack::host::HostOptions::new(
        talis_stack::workspace_root().join("spin.toml"),
        "/health",
    )
    .variable("admin_api_key", ADMIN_KEY)
    // Measure the API alone: no workflow trigger after the answers.
    .variable("restate_ingress_url", "");
    opts.binary = Some(talis_stack::target_dir().join("release/talis-host"));
    opts.state_dir = Some(work.join("state"));
    opts.runtime_config = Some(runtime_config(&work, &work.join("wasm.db"))?);
    opts.env = vec![("RUST_LOG".into(), "warn".into())];
    let wasm = rt.block_on(async {
        let host = talis_stack::host::start(&opts, &work).await?;
        let m = measure(&host.base_url, "wasm", &work).await;
        drop(host);
        m
    })?;

    let (addr, native_rt) = start_native(&work.join("native.db"))?;
    let native = rt.block_on(measure(&format!("http://{addr}"), "native", &work))?;
    drop(native_rt);

    let row =
        |name: &str, w: f64, n: f64| println!("{name:<44} {w:>10.2} {n:>10.2} {:>8.2}", w / n);
    println!(
        "\nAPI: talis-host (release, Wasm) vs the same core natively (hyper + rusqlite); wrk, loopback, SQLite file (WAL)"
    );
    println!("{:<44} {:>10} {:>10} {:>8}", "", "wasm", "native", "ratio");
    row(
        "project.create 100 instances p50 (ms)",
        wasm.create.p50_ms,
        native.create.p50_ms,
    );
    row(
        "project.create 100 instances p99 (ms)",
        wasm.create.p99_ms,
        native.create.p99_ms,
    );
    row(
        "creates/s (1 connection)",
        wasm.create.rps,
        native.create.rps,
    );
    row(
        &format!("creates/s ({CLIENTS} connections)"),
        wasm.create_par.rps,
        native.create_par.rps,
    );
    row("task.get p50 (ms)", wasm.read.p50_ms, native.read.p50_ms);
    row("task.get p99 (ms)", wasm.read.p99_ms, native.read.p99_ms);
    row(
        "task.get req/s (1 connection)",
        wasm.read.rps,
        native.read.rps,
    );
    row(
        "project.create 10 000 instances p50 (ms)",
        wasm.big.pct(0.5),
        native.big.pct(0.5),
    );
    row(
        "project.create 10 000 instances max (ms)",
        wasm.big.pct(1.0),
        native.big.pct(1.0),
    );
    println!(
        "\nwrk runs of 8 s each; {BIG_RUNS} 10 000-instance creates per side. Targets: create p99 <= 15 ms, \
         create ratio <= 1.3, 10 000 instances <= 1000 ms."
    );
    Ok(())
}
