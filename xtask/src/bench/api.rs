//! `cargo xtask bench api`: the API component on a release `talis-host` against the same core
//! logic served natively (hyper + rusqlite, same JSON in and out, same SQLite file settings), both
//! over loopback HTTP with keep-alive. Measures `project.create` with 100 instances (p50/p99 and
//! creates/s), the cheap read `task.get`, and one 10 000-instance `project.create`; prints the
//! Wasm/native ratios.

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
use talis_core::{Config, Error, Service};

use crate::build::cargo;

const ADMIN_KEY: &str = "bench-admin-key";
/// Sequential 100-instance creates measured (after warm-up).
const CREATES: usize = 300;
/// Sequential task.get calls measured.
const READS: usize = 3000;
/// Concurrent clients of the throughput run (the machine has 2 cores).
const CLIENTS: usize = 2;
const BIG_RUNS: usize = 3;

/// Latencies of one kind of call, in milliseconds.
struct Lat(Vec<f64>);

impl Lat {
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
    }
    fn mean(&self) -> f64 {
        self.0.iter().sum::<f64>() / self.0.len() as f64
    }
}

struct Measured {
    create: Lat,
    /// Creates per second with `CLIENTS` concurrent clients.
    creates_per_s: f64,
    read: Lat,
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
        let (d, ms) = self
            .call(
                &self.key,
                "project.create",
                &json!({ "name": name, "instances": instances(n) }),
            )
            .await?;
        Ok((d["task_id"].as_i64().context("task_id")?, ms))
    }
}

async fn measure(base: &str, tag: &str) -> Result<Measured> {
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
            "user.create",
            &json!({ "username": format!("bench-{tag}") }),
        )
        .await?;
    c.key = user["api_key"].as_str().context("api_key")?.to_owned();

    for i in 0..30 {
        c.create(&format!("warm-{i}"), 100).await?;
    }
    let mut create = Vec::with_capacity(CREATES);
    let mut tasks = Vec::with_capacity(CREATES);
    for i in 0..CREATES {
        let (task, ms) = c.create(&format!("p-{i}"), 100).await?;
        create.push(ms);
        tasks.push(task);
    }
    let mut read = Vec::with_capacity(READS);
    for i in 0..READS + 300 {
        let (_, ms) = c
            .call(
                &c.key,
                "task.get",
                &json!({ "task_id": tasks[i % tasks.len()] }),
            )
            .await?;
        if i >= 300 {
            read.push(ms);
        }
    }
    let c = Arc::new(c);
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|w| {
            let c = c.clone();
            tokio::spawn(async move {
                for i in 0..CREATES / CLIENTS {
                    c.create(&format!("t-{w}-{i}"), 100).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for w in workers {
        w.await??;
    }
    let creates_per_s = (CREATES / CLIENTS * CLIENTS) as f64 / started.elapsed().as_secs_f64();
    let mut big = Vec::new();
    for i in 0..BIG_RUNS {
        big.push(c.create(&format!("big-{i}"), 10_000).await?.1);
    }
    Ok(Measured {
        create: Lat(create),
        creates_per_s,
        read: Lat(read),
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
        Err(e) => RpcResponse::err(&e, None),
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
    // The native side must be optimized like the host: re-run this benchmark from a release xtask.
    if cfg!(debug_assertions) {
        let mut c = cargo();
        c.args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "xtask",
            "--",
            "bench",
            "api",
        ]);
        return crate::build::run(c);
    }
    crate::build::components()?;
    let mut c = cargo();
    c.args(["build", "--release", "-p", "talis-host"]);
    crate::build::run(c)?;

    let work = talis_stack::target_dir().join("bench-api");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let wasm_db = work.join("wasm.db");
    let mut opts = talis_stack::host::HostOptions::new(
        talis_stack::workspace_root().join("spin.toml"),
        "/health",
    )
    .variable("admin_api_key", ADMIN_KEY);
    opts.binary = Some(talis_stack::target_dir().join("release/talis-host"));
    opts.state_dir = Some(work.join("state"));
    opts.runtime_config = Some(runtime_config(&work, &wasm_db)?);
    opts.env = vec![("RUST_LOG".into(), "warn".into())];
    let wasm = rt.block_on(async {
        let host = talis_stack::host::start(&opts, &work).await?;
        let m = measure(&host.base_url, "wasm").await;
        drop(host);
        m
    })?;

    let (addr, native_rt) = start_native(&work.join("native.db"))?;
    let native = rt.block_on(measure(&format!("http://{addr}"), "native"))?;
    drop(native_rt);

    let row =
        |name: &str, w: f64, n: f64| println!("{name:<44} {w:>10.2} {n:>10.2} {:>8.2}", w / n);
    println!(
        "\nAPI: talis-host (release, Wasm) vs the same core natively (hyper + rusqlite), loopback HTTP, file SQLite"
    );
    println!("{:<44} {:>10} {:>10} {:>8}", "", "wasm", "native", "ratio");
    row(
        "project.create 100 instances p50 (ms)",
        wasm.create.pct(0.5),
        native.create.pct(0.5),
    );
    row(
        "project.create 100 instances p99 (ms)",
        wasm.create.pct(0.99),
        native.create.pct(0.99),
    );
    row(
        "project.create 100 instances mean (ms)",
        wasm.create.mean(),
        native.create.mean(),
    );
    row(
        &format!("creates/s ({CLIENTS} clients)"),
        wasm.creates_per_s,
        native.creates_per_s,
    );
    row(
        "task.get p50 (ms)",
        wasm.read.pct(0.5),
        native.read.pct(0.5),
    );
    row(
        "task.get p99 (ms)",
        wasm.read.pct(0.99),
        native.read.pct(0.99),
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
        "\n{CREATES} sequential creates, {READS} reads, {BIG_RUNS} big creates per side. Targets: create p99 <= 15 ms, \
         ratio <= 1.3, 10 000 instances <= 1000 ms."
    );
    Ok(())
}
