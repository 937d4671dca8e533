//! `cargo xtask bench observe`: the event log's costs, on a release `talis-host` serving the
//! release API component (no workflow engine).
//!
//! * Long-poll wake-up: an `event.list` with `wait_ms` waits on a task; after a random pause a
//!   `task.terminate` writes the event it waits for. Latency = long-poll answered − terminate
//!   sent (an upper bound of commit → answer), p50/p99 over the rounds.
//! * Event writes on `project.create` (100 and 10 000 instances): the same build and database,
//!   timed with events written and with event writes skipped by a SQLite trigger
//!   (`BEFORE INSERT ON events … RAISE(IGNORE)`: the statement still runs, no row or index entry
//!   is written), alternating the two per round so drift hits both alike. Each round uses a
//!   fresh owner, so the quota counts stay small and equal.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::build::cargo;

const ADMIN_KEY: &str = "bench-admin-key-of-at-least-32-characters";
const WAKE_ROUNDS: usize = 100;
/// (instances per create, rounds); each round times one create with and one without events.
const CREATE_RUNS: &[(u64, usize)] = &[(100, 40), (10_000, 6)];
const SKIP_EVENTS: &str = "CREATE TRIGGER IF NOT EXISTS bench_skip_events BEFORE INSERT ON events \
                           BEGIN SELECT RAISE(IGNORE); END";

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(&self, key: &str, method: &str, params: &Value) -> Result<Value> {
        let resp = self
            .http
            .post(format!("{}/v1/{method}", self.base))
            .bearer_auth(key)
            .json(params)
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        if !status.is_success() {
            bail!("{method} answered {status}: {body}");
        }
        Ok(body["data"].clone())
    }

    /// A fresh owner with room for big creates; its API key.
    async fn owner(&self, name: &str) -> Result<String> {
        let u = self
            .call(ADMIN_KEY, "user.create", &json!({ "username": name }))
            .await?;
        self.call(
            ADMIN_KEY,
            "quota.set",
            &json!({ "owner_id": u["id"], "max_instances": 1_000_000, "max_projects": 100_000 }),
        )
        .await?;
        Ok(u["api_key"].as_str().context("api_key")?.to_owned())
    }

    /// `project.create` with `n` instances of one request; (task id, milliseconds).
    async fn create(&self, key: &str, name: &str, n: u64) -> Result<(i64, f64)> {
        let params = json!({ "name": name, "instances": [{
            "provider": "do", "region": "nyc3", "size": "s-2vcpu-4gb", "image": "ubuntu-22-04-x64",
            "number_of_instances": n, "name": "node", "tags": ["bench"], "provision": true,
            "payload": "#!/bin/sh\nset -e\napt-get update\n",
            "volumes": [{ "name": "data", "size_gb": 20, "mount_point": "/mnt/data", "filesystem": "ext4" }] }] });
        let started = Instant::now();
        let d = self.call(key, "project.create", &params).await?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        Ok((d["task_id"].as_i64().context("task_id")?, ms))
    }

    /// The id of the task's newest event.
    async fn newest_event(&self, key: &str, task: i64) -> Result<Option<String>> {
        let mut after: Option<String> = None;
        loop {
            let page = self
                .call(
                    key,
                    "event.list",
                    &json!({ "task_id": task, "after": after, "limit": 1000 }),
                )
                .await?;
            if let Some(last) = page["rows"].as_array().and_then(|r| r.last()) {
                after = Some(last["id"].as_i64().context("event id")?.to_string());
            }
            if page["pagination"]["next_cursor"].is_null() {
                return Ok(after);
            }
        }
    }
}

/// Milliseconds from sending the write to the long-poll's answer, and from the write's answer.
async fn wake_up(api: &Api, key: &str, round: usize) -> Result<(f64, f64)> {
    let (task, _) = api.create(key, &format!("wake-{round}"), 1).await?;
    let after = api.newest_event(key, task).await?;
    let poll = {
        let (http, base, key) = (api.http.clone(), api.base.clone(), key.to_owned());
        tokio::spawn(async move {
            let api = Api { http, base };
            let r = api
                .call(
                    &key,
                    "event.list",
                    &json!({ "task_id": task, "after": after, "wait_ms": 10_000 }),
                )
                .await;
            (r, Instant::now())
        })
    };
    // The long-poll is waiting by then; the random part spreads the write over its 50 ms looks.
    let pause = 100 + rand::random_range(0..50);
    tokio::time::sleep(Duration::from_millis(pause)).await;
    let sent = Instant::now();
    api.call(key, "task.terminate", &json!({ "task_id": task }))
        .await?;
    let written = Instant::now();
    let (page, answered) = poll.await?;
    let page = page?;
    ensure!(
        page["rows"][0]["data"]["to"] == "terminated",
        "the long-poll woke on {page}"
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok((
        ms(answered.saturating_duration_since(sent)),
        ms(answered.saturating_duration_since(written)),
    ))
}

fn events(db: &rusqlite::Connection) -> Result<i64> {
    Ok(db.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?)
}

async fn measure(api: &Api, db_path: &Path) -> Result<()> {
    let key = api.owner("wake").await?;
    let mut from_sent = Vec::new();
    let mut from_written = Vec::new();
    for round in 0..WAKE_ROUNDS {
        let (s, w) = wake_up(api, &key, round).await?;
        from_sent.push(s);
        from_written.push(w);
    }
    println!(
        "\nevent.list long-poll wake-up ({WAKE_ROUNDS} rounds; the API looks every 50 ms), ms:"
    );
    println!("{:<44} {:>8} {:>8} {:>8}", "", "p50", "p99", "max");
    for (what, v) in [
        ("write sent -> long-poll answered", &from_sent),
        ("write answered -> long-poll answered", &from_written),
    ] {
        println!(
            "{what:<44} {:>8.1} {:>8.1} {:>8.1}",
            pct(v, 0.5),
            pct(v, 0.99),
            pct(v, 1.0)
        );
    }

    let db = rusqlite::Connection::open(db_path)?;
    db.busy_timeout(Duration::from_secs(10))?;
    println!("\nproject.create with and without event writes (same build, same database), ms:");
    println!(
        "{:<30} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "", "with p50", "w/o p50", "with max", "w/o max", "p50 ratio"
    );
    for &(n, rounds) in CREATE_RUNS {
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            let key = api.owner(&format!("c{n}-{r}")).await?;
            // Alternate which mode goes first, so neither always meets a warmer cache.
            for skip in [r % 2 == 1, r % 2 == 0] {
                if skip {
                    db.execute_batch(SKIP_EVENTS)?;
                } else {
                    db.execute_batch("DROP TRIGGER IF EXISTS bench_skip_events")?;
                }
                let before = events(&db)?;
                let (_, ms) = api
                    .create(&key, &format!("c-{}-{r}", u8::from(skip)), n)
                    .await?;
                let written = events(&db)? - before;
                ensure!(
                    (written == 0) == skip,
                    "skip={skip} but {written} events written"
                );
                if skip {
                    without.push(ms);
                } else {
                    with.push(ms);
                }
            }
        }
        db.execute_batch("DROP TRIGGER IF EXISTS bench_skip_events")?;
        println!(
            "{:<30} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>8.3}",
            format!("{n} instances ({rounds} rounds)"),
            pct(&with, 0.5),
            pct(&without, 0.5),
            pct(&with, 1.0),
            pct(&without, 1.0),
            pct(&with, 0.5) / pct(&without, 0.5)
        );
    }
    Ok(())
}

pub fn run() -> Result<()> {
    if cfg!(debug_assertions) {
        let mut c = cargo();
        c.args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "xtask",
            "--",
            "bench",
            "observe",
        ]);
        return crate::build::run(c);
    }
    crate::build::components()?;
    let mut c = cargo();
    c.args(["build", "--release", "-p", "talis-host"]);
    crate::build::run(c)?;
    let work = talis_stack::target_dir().join("bench-observe");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let db_path = work.join("observe.db");
    let rc = work.join("runtime-config.toml");
    std::fs::write(
        &rc,
        format!(
            "[sqlite_database.default]\ntype = \"spin\"\npath = {:?}\n",
            db_path.display().to_string()
        ),
    )?;
    let mut opts = talis_stack::host::HostOptions::new(
        talis_stack::workspace_root().join("spin.toml"),
        "/health",
    )
    .variable("admin_api_key", ADMIN_KEY)
    .variable("restate_ingress_url", "");
    opts.binary = Some(talis_stack::target_dir().join("release/talis-host"));
    opts.state_dir = Some(work.join("state"));
    opts.runtime_config = Some(rc);
    opts.env = vec![("RUST_LOG".into(), "warn".into())];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let host = talis_stack::host::start(&opts, &work).await?;
        let api = Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            base: host.base_url.clone(),
        };
        let r = measure(&api, &db_path).await;
        drop(host);
        r
    })
}
