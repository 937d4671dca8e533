//! `cargo xtask bench webhooks`: delivery throughput of webhooks to a local receiver.
//!
//! The whole stack on loopback (release binaries, zero-latency fake cloud). One owner subscribes
//! [`WEBHOOKS`] webhooks to `instance.status` on one HTTP receiver in this process (answers 204
//! at once), then creates a project of [`INSTANCES`] machines: each instance's status changes
//! become events, and each event one delivery per webhook. Throughput = deliveries received /
//! (last arrival − first arrival). Deliveries of one webhook go one at a time, in order (a
//! Restate virtual object per webhook), so the aggregate is what several webhooks reach.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use talis_api::methods::{Method, public as m};
use talis_stack::workflows::{FullStack, StackOptions};

const WEBHOOKS: usize = 8;
const INSTANCES: u64 = 500;
/// The aim for deliveries per second to a local receiver.
const AIM_PER_SEC: f64 = 500.0;
const DEADLINE: Duration = Duration::from_secs(600);

pub fn run() -> Result<()> {
    let bin_dir = super::release_stack()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(measure(&bin_dir))
}

/// Arrival times of every request the receiver answered.
type Arrivals = Arc<Mutex<Vec<Instant>>>;

async fn receiver() -> Result<(String, Arrivals)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let arrivals: Arrivals = Arc::default();
    let log = arrivals.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    log.lock().unwrap().push(Instant::now());
                    async {
                        hyper::Response::builder()
                            .status(204)
                            .body(Full::new(Bytes::new()))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((url, arrivals))
}

/// `POST /v1/<method>` with `key`; the answer's `data`.
async fn call(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    method: &str,
    p: Value,
) -> Result<Value> {
    let r: Value = http
        .post(format!("{base}/v1/{method}"))
        .bearer_auth(key)
        .json(&p)
        .send()
        .await?
        .json()
        .await?;
    if r["success"] != Value::Bool(true) {
        bail!("{method}: {r}");
    }
    Ok(r["data"].clone())
}

async fn measure(bin_dir: &std::path::Path) -> Result<()> {
    let dir = talis_stack::target_dir().join("bench-webhooks");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let stack = FullStack::start(
        &dir,
        StackOptions {
            bin_dir: Some(bin_dir.to_path_buf()),
            ..StackOptions::default()
        },
    )
    .await
    .context("starting the stack")?;
    let (url, arrivals) = receiver().await?;
    let http = reqwest::Client::new();
    let base = stack.api_url.as_str();
    let owner = stack
        .call(m::UserCreate::NAME, json!({ "username": "bench" }))
        .await?;
    let key = owner["api_key"].as_str().context("api_key")?.to_owned();
    for _ in 0..WEBHOOKS {
        call(
            &http,
            base,
            &key,
            m::WebhookCreate::NAME,
            json!({ "url": url, "events": ["instance.status"] }),
        )
        .await?;
    }
    let created = call(
        &http,
        base,
        &key,
        m::ProjectCreate::NAME,
        json!({ "name": "hooks", "instances": [{
            "provider": "do", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64",
            "number_of_instances": INSTANCES, "name": "node" }] }),
    )
    .await?;
    let task = created["task_id"].clone();
    let started = Instant::now();
    loop {
        let t = call(
            &http,
            base,
            &key,
            m::TaskGet::NAME,
            json!({ "task_id": task }),
        )
        .await?;
        if matches!(
            t["status"].as_str(),
            Some("completed" | "failed" | "terminated")
        ) {
            break;
        }
        if started.elapsed() > DEADLINE {
            bail!("task {task} did not finish in {DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every instance.status event of the owner, counted page by page (`after` the last id).
    let mut events = 0;
    let mut after: Option<String> = None;
    loop {
        let page = call(
            &http,
            base,
            &key,
            m::EventList::NAME,
            json!({ "kinds": ["instance.status"], "limit": 1000, "after": after }),
        )
        .await?;
        let rows = page["rows"].as_array().context("rows")?;
        events += rows.len();
        match rows.last() {
            Some(last) if rows.len() == 1000 => after = Some(last["id"].to_string()),
            _ => break,
        }
    }
    let expected = events * WEBHOOKS;
    while arrivals.lock().unwrap().len() < expected {
        if started.elapsed() > DEADLINE {
            bail!(
                "{} of {expected} deliveries arrived in {DEADLINE:?}",
                arrivals.lock().unwrap().len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = arrivals.lock().unwrap().clone();
    let span = *got.last().unwrap() - got[0];
    let rate = got.len() as f64 / span.as_secs_f64().max(1e-3);
    println!("\n## Webhook delivery throughput (release, loopback receiver answering 204)\n");
    println!(
        "| webhooks | events | deliveries | first → last arrival | deliveries/s | aim ≥ {AIM_PER_SEC:.0}/s | ratio |"
    );
    println!("|---:|---:|---:|---:|---:|---|---:|");
    println!(
        "| {WEBHOOKS} | {events} | {} | {:.2} s | {rate:.0} | {} | {:.2} |",
        got.len(),
        span.as_secs_f64(),
        if rate >= AIM_PER_SEC { "met" } else { "missed" },
        rate / AIM_PER_SEC
    );
    Ok(())
}
