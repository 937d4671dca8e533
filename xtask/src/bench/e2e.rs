//! `cargo xtask bench e2e`: the whole stack on loopback (release binaries: fake cloud,
//! restate-server, workflows, talis-host with the API component). Creates projects through
//! `project.create` and measures the time from the create answer to the task's completion
//! (every instance ready), provider calls per instance, Restate journal entries per task and the
//! peak RSS of each process. Prints the numbers and their ratio to the aims; exits non-zero when
//! a correctness aim (every machine ready, no duplicate, nothing left after the delete) fails.
//!
//! Scenarios (`BENCH_E2E_ONLY=zero-100,do-1000` runs a subset):
//! - `zero-<N>` (100, 1 000, 3 000, 10 000): one project, zero-latency fake cloud.
//! - `do-<N>` (100, 1 000, 10 000): one project, DigitalOcean-like: 45 s boot, DO's rate limits
//!   (250 calls per minute, 5 000 per hour), droplet limit raised to 10 000 as DO does on request.
//! - `demo-100`: `examples/create-100.json` (100 machines, each with a 20 GB volume mounted by its
//!   script) on the fake cloud's default, local-stack configuration (boot 2–5 s, IP after 1 s,
//!   250 calls per minute).
//! - `many-100x100`: 100 owners, each with its own API key, each creating a project of 100
//!   machines, all 100 creates sent at once; zero latency.
//! - `storm-1000`: [`talis_stack::storm`] (the same storm as the end-to-end test `storm::`, on
//!   release binaries): one project of 1 000 under provider faults (503s, 429 bursts, lost create
//!   answers) and 10 kill -9s spread over workflows, restate-server and talis-host; then
//!   `project.delete`. Fails the bench unless every machine became ready exactly once and the
//!   delete left nothing.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use talis_api::methods::{Method, public as m};
use talis_stack::fakecloud::CloudCounts;
use talis_stack::storm;
use talis_stack::workflows::{FullStack, INSTANT_FAKE, StackOptions};

/// DigitalOcean-like: every machine boots in 45 s (IP with it).
const DO_LIKE_BOOT_MS: u64 = 45_000;
/// DO's per-token API limits (sliding windows), also the fake's DO-like settings.
const DO_RATE_PER_MINUTE: usize = 250;
const DO_RATE_PER_HOUR: usize = 5_000;
/// Machines per DO multi-create call.
const DO_MULTI_CREATE: usize = 10;
/// The fake cloud's droplet limit in these benches (its default is 2 000; DigitalOcean raises an
/// account's limit on request, as `presets/digitalocean.toml` does): the largest scenarios hold
/// 10 000 machines.
const BENCH_DROPLET_LIMIT: u32 = 10_000;

/// The fake cloud's DO-like config (see `crates/fakecloud/presets/digitalocean.toml`), with
/// phone-homes retried like the script's `curl --retry`.
fn do_like_config() -> String {
    format!(
        "boot_delay_ms = {DO_LIKE_BOOT_MS}
boot_jitter_ms = 0
ip_delay_ms = {DO_LIKE_BOOT_MS}
rate_limit_per_minute = {DO_RATE_PER_MINUTE}
rate_limit_per_hour = {DO_RATE_PER_HOUR}
droplet_limit = {BENCH_DROPLET_LIMIT}
[phone_home]
attempts = 60
retry_delay_ms = 500
timeout_ms = 5000"
    )
}

/// Zero latency, no rate limits (the tests' instant config), room for 10 000 machines. Top-level
/// keys must come before the config's `[phone_home]` table.
fn zero_config() -> String {
    format!("droplet_limit = {BENCH_DROPLET_LIMIT}\n{INSTANT_FAKE}")
}

/// The best possible create → all-ready time with DO-like latency, printed with the numbers as
/// [`DO_IDEAL_FORMULA`]: the machines need C = ⌈N / 10⌉ multi-create calls; DO counts calls in
/// sliding windows, so call k (from 0) can go out no earlier than 60 s × ⌊k / 250⌋ (the minute
/// window) nor 3 600 s × ⌊k / 5 000⌋ (the hour window); the last machine then boots in 45 s.
/// Look-ups are not counted (a lower bound).
fn do_like_ideal(instances: usize) -> Duration {
    let last_call = instances.div_ceil(DO_MULTI_CREATE).saturating_sub(1);
    let minute_wait = 60 * (last_call / DO_RATE_PER_MINUTE);
    let hour_wait = 3_600 * (last_call / DO_RATE_PER_HOUR);
    Duration::from_millis(DO_LIKE_BOOT_MS) + Duration::from_secs(minute_wait.max(hour_wait) as u64)
}

const DO_IDEAL_FORMULA: &str = "ideal(N) = 45 s boot + max(60 s × ⌊(C − 1) / 250⌋, \
     3600 s × ⌊(C − 1) / 5000⌋), C = ⌈N / 10⌉ multi-create calls \
     (DO's sliding windows: 250 calls/min, 5 000 calls/h; look-ups not counted)";

/// The fake's default boot (2 s + up to 3 s jitter): the demo's ideal is the slowest boot.
const DEMO_IDEAL: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Zero,
    Do,
    Demo,
    Many { owners: usize },
    Storm,
}

struct Scenario {
    name: &'static str,
    kind: Kind,
    /// Machines per project.
    instances: usize,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "zero-100",
        kind: Kind::Zero,
        instances: 100,
    },
    Scenario {
        name: "zero-1000",
        kind: Kind::Zero,
        instances: 1000,
    },
    Scenario {
        name: "zero-3000",
        kind: Kind::Zero,
        instances: 3000,
    },
    Scenario {
        name: "zero-10000",
        kind: Kind::Zero,
        instances: 10_000,
    },
    Scenario {
        name: "do-100",
        kind: Kind::Do,
        instances: 100,
    },
    Scenario {
        name: "do-1000",
        kind: Kind::Do,
        instances: 1000,
    },
    Scenario {
        name: "do-10000",
        kind: Kind::Do,
        instances: 10_000,
    },
    Scenario {
        name: "demo-100",
        kind: Kind::Demo,
        instances: 100,
    },
    Scenario {
        name: "many-100x100",
        kind: Kind::Many { owners: 100 },
        instances: 100,
    },
    Scenario {
        name: "storm-1000",
        kind: Kind::Storm,
        instances: storm::INSTANCES,
    },
];

/// One aim and what was measured against it (met when measured ≤ aim).
struct Check {
    what: String,
    measured: f64,
    aim: f64,
    unit: &'static str,
    /// A correctness aim: failing it fails the bench.
    must: bool,
}

impl Check {
    fn new(what: impl Into<String>, measured: f64, aim: f64, unit: &'static str) -> Self {
        Self {
            what: what.into(),
            measured,
            aim,
            unit,
            must: false,
        }
    }

    fn must(mut self) -> Self {
        self.must = true;
        self
    }

    fn met(&self) -> bool {
        self.measured <= self.aim
    }
}

struct Measured {
    name: String,
    /// Machines in all projects.
    instances: usize,
    tasks: usize,
    /// The create answer as shown in the table (one value, or p50 / p99 of many).
    answer: String,
    /// Create answer → every task complete (many: first create sent → last task complete).
    to_ready: Duration,
    ideal: Option<Duration>,
    /// The time aim of the main table's "vs aim" column.
    time_aim: Option<Duration>,
    ready: usize,
    calls: u64,
    calls_detail: Value,
    /// Restate journal entries of the create tasks' invocations (`None`: the query failed).
    journal_entries: Option<u64>,
    rss_mib: Vec<(&'static str, f64)>,
    /// Seen (polling every 200 ms) when the first / every instance had its machine recorded.
    first_made: Option<Duration>,
    all_made: Option<Duration>,
    checks: Vec<Check>,
    notes: Vec<String>,
}

pub fn run() -> Result<()> {
    let bin_dir = super::release_stack()?;
    let only: Option<Vec<String>> = std::env::var("BENCH_E2E_ONLY")
        .ok()
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    if let Some(o) = &only
        && let Some(unknown) = o.iter().find(|n| SCENARIOS.iter().all(|s| s.name != *n))
    {
        let names: Vec<_> = SCENARIOS.iter().map(|s| s.name).collect();
        bail!(
            "BENCH_E2E_ONLY names an unknown scenario {unknown:?}; known: {}",
            names.join(",")
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    for s in SCENARIOS {
        if only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|n| n == s.name))
        {
            continue;
        }
        eprintln!("== {}", s.name);
        let m = rt
            .block_on(scenario(&bin_dir, s))
            .with_context(|| format!("scenario {}", s.name))?;
        print_one(&m);
        results.push(m);
    }
    per_machine_ratio(&mut results);
    print_tables(&results);
    let failed: Vec<String> = results
        .iter()
        .flat_map(|m| {
            m.checks
                .iter()
                .filter(|c| c.must && !c.met())
                .map(move |c| format!("{}: {} = {}", m.name, c.what, c.measured))
        })
        .collect();
    if !failed.is_empty() {
        bail!("correctness aims failed: {}", failed.join("; "));
    }
    Ok(())
}

/// zero-10000's aim: a machine costs at 10 000 at most 1.5× what it costs at 1 000 (when both
/// ran in this run).
fn per_machine_ratio(results: &mut [Measured]) {
    let per_machine = |m: &Measured| m.to_ready.as_secs_f64() / m.instances as f64;
    let Some(small) = results
        .iter()
        .find(|m| m.name == "zero-1000")
        .map(per_machine)
    else {
        return;
    };
    if let Some(big) = results.iter_mut().find(|m| m.name == "zero-10000") {
        let ratio = per_machine(big) / small;
        big.checks.push(Check::new(
            "time per machine at 10 000 ÷ at 1 000 (same run)",
            ratio,
            1.5,
            "×",
        ));
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".to_string(), |d| format!("{:.2} s", d.as_secs_f64()))
}

fn print_tables(results: &[Measured]) {
    println!("\n## End to end (create answer → all instances ready)\n");
    println!(
        "| scenario | create answer | machines recorded: first / all | to all ready | ideal | vs aim | ready | provider calls / instance | journal entries / task | peak RSS MiB (restate, workflows, host, fakecloud) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for m in results {
        let vs_aim = m.time_aim.map_or("-".to_string(), |aim| {
            format!(
                "{:.2}× of {:.1} s",
                m.to_ready.as_secs_f64() / aim.as_secs_f64(),
                aim.as_secs_f64()
            )
        });
        println!(
            "| {} | {} | {} / {} | {:.2} s | {} | {} | {}/{} | {:.2} | {} | {} |",
            m.name,
            m.answer,
            secs(m.first_made),
            secs(m.all_made),
            m.to_ready.as_secs_f64(),
            m.ideal
                .map_or("-".to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
            vs_aim,
            m.ready,
            m.instances,
            m.calls as f64 / m.instances as f64,
            m.journal_entries
                .map_or("query failed".to_string(), |e| format!(
                    "{:.1}",
                    e as f64 / m.tasks as f64
                )),
            m.rss_mib
                .iter()
                .map(|(_, v)| format!("{v:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!("\n## Aims\n");
    println!("| scenario | aim | measured | aim value | measured / aim | met |");
    println!("|---|---|---:|---:|---:|---|");
    for m in results {
        for c in &m.checks {
            let ratio = if c.aim > 0.0 {
                format!("{:.2}", c.measured / c.aim)
            } else {
                "-".to_string()
            };
            println!(
                "| {} | {} | {:.2} {} | {:.2} {} | {} | {}{} |",
                m.name,
                c.what,
                c.measured,
                c.unit,
                c.aim,
                c.unit,
                ratio,
                if c.met() { "yes" } else { "**no**" },
                if c.must { " (must)" } else { "" }
            );
        }
    }
    if results.iter().any(|m| m.name.starts_with("do-")) {
        println!("\nDO-like ideal: {DO_IDEAL_FORMULA}");
    }
    for m in results {
        for n in &m.notes {
            println!("\n{}: {n}", m.name);
        }
    }
}

fn print_one(m: &Measured) {
    eprintln!(
        "{}: answer {}, all ready after {:.2} s (ideal {}), {}/{} ready, {:.2} calls/instance {}, journal entries {:?} over {} task(s)",
        m.name,
        m.answer,
        m.to_ready.as_secs_f64(),
        secs(m.ideal),
        m.ready,
        m.instances,
        m.calls as f64 / m.instances as f64,
        m.calls_detail,
        m.journal_entries,
        m.tasks
    );
    eprintln!(
        "  machines recorded: first after {}, all after {}",
        secs(m.first_made),
        secs(m.all_made)
    );
    for (p, v) in &m.rss_mib {
        eprintln!("  peak RSS {p}: {v:.0} MiB");
    }
    for c in &m.checks {
        eprintln!(
            "  aim {}: {:.2} {} (aim {:.2} {}) {}",
            c.what,
            c.measured,
            c.unit,
            c.aim,
            c.unit,
            if c.met() { "met" } else { "NOT met" }
        );
    }
    for n in &m.notes {
        eprintln!("  {n}");
    }
}

async fn start_stack(bin_dir: &std::path::Path, name: &str, fake: String) -> Result<FullStack> {
    let dir = talis_stack::target_dir().join("bench-e2e").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let opts = StackOptions {
        fake_config: Some(fake),
        provision_timeout_secs: 1800,
        poll_max_ms: 5000,
        bin_dir: Some(bin_dir.to_path_buf()),
        ..StackOptions::default()
    };
    FullStack::start(&dir, opts)
        .await
        .with_context(|| format!("starting the stack for {name}"))
}

async fn scenario(bin_dir: &std::path::Path, s: &Scenario) -> Result<Measured> {
    match s.kind {
        Kind::Many { owners } => many(bin_dir, s, owners).await,
        _ => single(bin_dir, s).await,
    }
}

/// One request of `n` machines (the shape every generated scenario uses).
fn project_request(name: &str, n: usize) -> Value {
    json!({
        "name": name,
        "instances": [{
            "provider": "do", "region": "nyc3", "size": "s-1vcpu-1gb",
            "image": "ubuntu-24-04-x64", "number_of_instances": n, "name": "node",
            "provision": true, "payload": "#!/bin/sh\ntrue\n", "execute_payload": true,
        }],
    })
}

/// One project: zero, do, demo and storm.
async fn single(bin_dir: &std::path::Path, s: &Scenario) -> Result<Measured> {
    let name = s.name;
    let (fake, ideal, time_aim) = match s.kind {
        Kind::Do => {
            let ideal = do_like_ideal(s.instances);
            let slack = if s.instances > 1000 { 5 } else { 2 };
            (
                do_like_config(),
                Some(ideal),
                Some(ideal + Duration::from_secs(slack)),
            )
        }
        Kind::Demo => (
            String::new(),
            Some(DEMO_IDEAL),
            Some(DEMO_IDEAL + Duration::from_secs(2)),
        ),
        Kind::Storm => (storm::FAKE_CONFIG.to_string(), None, None),
        _ => {
            // 1.5 s per 100 machines, scaled (the original aim); 3 000 and 10 000 have their own.
            let aim = match s.instances {
                3000 => 6.0,
                10_000 => 20.0,
                n => 1.5 * n as f64 / 100.0,
            };
            (
                zero_config(),
                Some(Duration::ZERO),
                Some(Duration::from_secs_f64(aim)),
            )
        }
    };
    let mut stack = start_stack(bin_dir, name, fake).await?;
    let req = if s.kind == Kind::Demo {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/create-100.json");
        serde_json::from_str(&std::fs::read_to_string(&path).with_context(|| format!("{path:?}"))?)?
    } else {
        project_request("bench", s.instances)
    };
    let project = req["name"].as_str().unwrap_or("bench").to_string();
    let started = Instant::now();
    let created = stack.call(m::ProjectCreate::NAME, req).await?;
    let create_answer = started.elapsed();
    let answered = Instant::now();
    let task_id = created["task_id"].as_u64().context("task_id")?;
    let limit = ideal.unwrap_or_default() + Duration::from_secs(1800);
    let storm = s.kind == Kind::Storm;
    // Progress an owner sees: when the first and the last instance show their machine.
    let (mut first_made, mut all_made) = (None, None);
    let mut next_look = Instant::now();
    // Calls the host refused while it was saturated (or down, in the storm).
    let mut shed: Vec<String> = Vec::new();
    let mut kills_done = 0;
    let mut kills_mid_run = 0;
    let mut next_kill: Option<Instant> = None;
    let task = loop {
        if all_made.is_none() && Instant::now() >= next_look {
            next_look = Instant::now() + Duration::from_millis(200);
            match made(&stack, &project, first_made.is_none()).await {
                Ok((any, all)) => {
                    if any && first_made.is_none() {
                        first_made = Some(answered.elapsed());
                    }
                    if all {
                        all_made = Some(answered.elapsed());
                    }
                }
                Err(e) => shed.push(e.to_string()),
            }
        }
        let t = match stack
            .call(m::TaskGet::NAME, json!({"task_id": task_id}))
            .await
        {
            Ok(t) => t,
            Err(e) => {
                shed.push(e.to_string());
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let status = t["status"].as_str().unwrap_or("");
        if matches!(status, "completed" | "failed" | "terminated") {
            break t;
        }
        if answered.elapsed() > limit {
            bail!("{name}: task not finished after {limit:?}");
        }
        if storm && kills_done < storm::KILLS {
            // The kills start once the first machine exists, so they land mid-run.
            if next_kill.is_none() && first_made.is_some() {
                next_kill = Some(Instant::now());
            }
            if next_kill.is_some_and(|k| Instant::now() >= k) {
                let victim = storm::victim(kills_done);
                if status == "running" {
                    kills_mid_run += 1;
                }
                eprintln!(
                    "  kill -9 #{} {victim:?} at {:.1} s (task {status})",
                    kills_done + 1,
                    answered.elapsed().as_secs_f64()
                );
                stack
                    .crash_and_restart(victim)
                    .await
                    .with_context(|| format!("restarting {victim:?}"))?;
                kills_done += 1;
                next_kill = Some(Instant::now() + storm::KILL_EVERY);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let to_ready = answered.elapsed();
    let mut notes = Vec::new();
    if let Some(e) = shed.first() {
        notes.push(format!(
            "{} polling calls refused by the host; first: {e}",
            shed.len()
        ));
    }
    let ready = task["result"]["counts"]["ready"].as_u64().unwrap_or(0) as usize;
    let stats = stack.fake_stats().await?;
    let calls = stats["total_calls"].as_u64().unwrap_or(0);
    let journal_entries = journal(&stack, &[task_id], &mut notes).await;
    let mut checks = Vec::new();
    if let Some(aim) = time_aim {
        checks.push(Check::new(
            "create answer → all ready",
            to_ready.as_secs_f64(),
            aim.as_secs_f64(),
            "s",
        ));
    }
    let rss_mib = peak_rss(&stack);
    if s.instances == 10_000 && s.kind == Kind::Zero {
        checks.push(Check::new(
            "create answer",
            create_answer.as_secs_f64(),
            1.0,
            "s",
        ));
        for (process, aim) in [
            ("workflows", 300.0),
            ("talis-host", 300.0),
            ("restate", 1024.0),
        ] {
            let v = rss_mib
                .iter()
                .find(|(p, _)| *p == process)
                .map_or(0.0, |r| r.1);
            checks.push(Check::new(format!("peak RSS {process}"), v, aim, "MiB"));
        }
    }
    if storm {
        let at_ready = CloudCounts::from_stats(&stats);
        checks.push(
            Check::new(
                "instances not ready",
                (s.instances - ready.min(s.instances)) as f64,
                0.0,
                "",
            )
            .must(),
        );
        checks.push(
            Check::new(
                "duplicate droplets at the end of the create",
                at_ready.duplicates as f64,
                0.0,
                "",
            )
            .must(),
        );
        checks.push(Check::new(
            "kill -9s that landed while the task ran",
            (storm::KILLS - kills_mid_run) as f64,
            0.0,
            "missed",
        ));
        let after = delete_project(&stack, &project, &mut notes).await?;
        checks.push(
            Check::new(
                "live machines after project.delete",
                after.live_droplets as f64,
                0.0,
                "",
            )
            .must(),
        );
        checks.push(
            Check::new(
                "live volumes after project.delete",
                after.live_volumes as f64,
                0.0,
                "",
            )
            .must(),
        );
        checks.push(
            Check::new(
                "orphans after project.delete",
                after.orphans as f64,
                0.0,
                "",
            )
            .must(),
        );
        notes.push(format!(
            "storm: {ready}/{} ready, {} duplicate droplets; {kills_mid_run}/{} kill -9s while the task ran; after project.delete: {} live machines, {} live volumes, {} orphans, {} duplicates; faults fired (calls by endpoint and status): {}",
            s.instances,
            at_ready.duplicates,
            storm::KILLS,
            after.live_droplets,
            after.live_volumes,
            after.orphans,
            after.duplicates,
            stats["calls"]
        ));
    }
    Ok(Measured {
        name: name.to_string(),
        instances: s.instances,
        tasks: 1,
        answer: format!("{:.0} ms", create_answer.as_secs_f64() * 1000.0),
        to_ready,
        ideal,
        time_aim,
        ready,
        calls,
        calls_detail: stats["calls"].clone(),
        journal_entries,
        rss_mib,
        first_made,
        all_made,
        checks,
        notes,
    })
}

/// Whether any / every instance of the project has its machine recorded: cheap filtered
/// look-ups of one row (a full listing of 10 000 instances every 200 ms would load the host the
/// benchmark measures). `any` is only asked while `want_any`.
async fn made(stack: &FullStack, project: &str, want_any: bool) -> Result<(bool, bool)> {
    let one = |status: &str| {
        stack.call(
            m::ProjectListInstances::NAME,
            json!({"name": project, "status": status, "limit": 1}),
        )
    };
    let rows = |v: &Value| v["rows"].as_array().map_or(0, Vec::len);
    let all = rows(&one("pending").await?) == 0;
    let mut any = all;
    if want_any && !any {
        for status in ["created", "provisioning", "ready"] {
            if rows(&one(status).await?) > 0 {
                any = true;
                break;
            }
        }
    }
    Ok((any, all))
}

/// `project.delete` (retried while the host restarts), waits for its task, and returns what the
/// fake cloud holds afterwards.
async fn delete_project(
    stack: &FullStack,
    project: &str,
    notes: &mut Vec<String>,
) -> Result<CloudCounts> {
    let started = Instant::now();
    let queued = retry(|| stack.call(m::ProjectDelete::NAME, json!({"name": project}))).await?;
    if let Some(task_id) = queued["task_id"].as_u64() {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let Ok(t) = stack
                .call(m::TaskGet::NAME, json!({"task_id": task_id}))
                .await
                && let Some(status @ ("completed" | "failed" | "terminated")) = t["status"].as_str()
            {
                notes.push(format!(
                    "project.delete: task {status} after {:.2} s",
                    started.elapsed().as_secs_f64()
                ));
                break;
            }
            if Instant::now() > deadline {
                bail!("the delete task {task_id} did not finish within 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(CloudCounts::from_stats(&stack.fake_stats().await?))
}

/// Retries a call for up to a minute (the API may be restarting).
async fn retry<F, Fut>(mut f: F) -> Result<Value>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Value>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// `many-100x100`: `owners` users made by the admin, each with its own API key, each creating
/// one project of `s.instances` machines; all creates sent at once.
async fn many(bin_dir: &std::path::Path, s: &Scenario, owners: usize) -> Result<Measured> {
    let stack = start_stack(bin_dir, s.name, zero_config()).await?;
    let mut keys = Vec::with_capacity(owners);
    for i in 0..owners {
        let made = stack
            .call(
                m::UserCreate::NAME,
                json!({"username": format!("owner{i:03}")}),
            )
            .await?;
        keys.push(made["api_key"].as_str().context("api_key")?.to_string());
    }
    let started = Instant::now();
    let creates = keys.iter().enumerate().map(|(i, key)| {
        let stack = &stack;
        async move {
            let sent = started.elapsed();
            let t = Instant::now();
            let created = stack
                .call_as(
                    key,
                    m::ProjectCreate::NAME,
                    project_request(&format!("many{i:03}"), s.instances),
                )
                .await?;
            let answer = t.elapsed();
            let task_id = created["task_id"].as_u64().context("task_id")?;
            anyhow::Ok((task_id, sent, answer, Instant::now()))
        }
    });
    let created: Vec<_> = futures::future::join_all(creates)
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let last_sent = created.iter().map(|c| c.1).max().unwrap_or_default();
    let mut answers: Vec<Duration> = created.iter().map(|c| c.2).collect();
    answers.sort();
    // Each project's create answer → its task complete, seen by polling every task in turn.
    let mut to_ready: Vec<Option<Duration>> = vec![None; created.len()];
    let mut ready = 0;
    let mut shed = Vec::new();
    let limit = Duration::from_secs(1800);
    while to_ready.iter().any(Option::is_none) {
        for (i, (task_id, _, _, answered)) in created.iter().enumerate() {
            if to_ready[i].is_some() {
                continue;
            }
            match stack
                .call(m::TaskGet::NAME, json!({"task_id": task_id}))
                .await
            {
                Ok(t)
                    if matches!(
                        t["status"].as_str(),
                        Some("completed" | "failed" | "terminated")
                    ) =>
                {
                    to_ready[i] = Some(answered.elapsed());
                    ready += t["result"]["counts"]["ready"].as_u64().unwrap_or(0) as usize;
                }
                Ok(_) => {}
                Err(e) => shed.push(e.to_string()),
            }
        }
        if started.elapsed() > limit {
            bail!("{}: tasks not finished after {limit:?}", s.name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_done = started.elapsed();
    let mut per_project: Vec<Duration> = to_ready.into_iter().flatten().collect();
    per_project.sort();
    let median = per_project[per_project.len() / 2];
    let slowest = *per_project.last().context("no projects")?;
    let p =
        |v: &[Duration], q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    let (p50, p99) = (p(&answers, 0.5), p(&answers, 0.99));
    let total = owners * s.instances;
    let stats = stack.fake_stats().await?;
    let mut notes = vec![format!(
        "{owners} creates sent within {:.0} ms; create answers p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; project ready (its answer → its task complete): fastest {:.2} s, median {:.2} s, slowest {:.2} s",
        last_sent.as_secs_f64() * 1000.0,
        p50.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0,
        answers.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        per_project[0].as_secs_f64(),
        median.as_secs_f64(),
        slowest.as_secs_f64()
    )];
    if let Some(e) = shed.first() {
        notes.push(format!(
            "{} polling calls refused by the host; first: {e}",
            shed.len()
        ));
    }
    let task_ids: Vec<u64> = created.iter().map(|c| c.0).collect();
    let journal_entries = journal(&stack, &task_ids, &mut notes).await;
    let checks = vec![
        Check::new("creates sent within", last_sent.as_secs_f64(), 1.0, "s"),
        Check::new(
            "instances not ready",
            (total - ready.min(total)) as f64,
            0.0,
            "",
        ),
        Check::new("create answer p99", p99.as_secs_f64() * 1000.0, 50.0, "ms"),
        Check::new(
            "slowest project ready ÷ median",
            slowest.as_secs_f64() / median.as_secs_f64(),
            2.0,
            "×",
        ),
    ];
    Ok(Measured {
        name: s.name.to_string(),
        instances: total,
        tasks: owners,
        answer: format!(
            "p50 {:.0} / p99 {:.0} ms",
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0
        ),
        to_ready: all_done,
        ideal: Some(Duration::ZERO),
        time_aim: None,
        ready,
        calls: stats["total_calls"].as_u64().unwrap_or(0),
        calls_detail: stats["calls"].clone(),
        journal_entries,
        rss_mib: peak_rss(&stack),
        first_made: None,
        all_made: None,
        checks,
        notes,
    })
}

/// Restate journal entries of the tasks' invocations (every handler of `TaskWorkflow/<task>`
/// and of its `TaskChunk/<task>.<chunk>` children), from the admin's SQL introspection
/// (`sys_journal` joined to `sys_invocation` for the keys). Notes the split by service;
/// `None` (and a note) when the query fails.
async fn journal(stack: &FullStack, task_ids: &[u64], notes: &mut Vec<String>) -> Option<u64> {
    let keys = task_ids
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT i.target_service_name AS service, COUNT(*) AS entries \
         FROM sys_journal j JOIN sys_invocation i ON j.id = i.id \
         WHERE i.target_service_name IN ('TaskWorkflow', 'TaskChunk') \
         AND split_part(i.target_service_key, '.', 1) IN ({keys}) \
         GROUP BY i.target_service_name"
    );
    match talis_stack::restate::query(&stack.restate.admin_url(), &sql).await {
        Ok(rows) => {
            let mut total = 0;
            let mut split = Vec::new();
            for r in &rows {
                let n = r["entries"].as_u64().unwrap_or(0);
                total += n;
                split.push(format!("{} {n}", r["service"].as_str().unwrap_or("?")));
            }
            notes.push(format!(
                "journal entries: {total} over {} task(s) ({})",
                task_ids.len(),
                split.join(", ")
            ));
            Some(total)
        }
        Err(e) => {
            notes.push(format!("journal entries: {e:#}"));
            None
        }
    }
}

fn peak_rss(stack: &FullStack) -> Vec<(&'static str, f64)> {
    vec![
        ("restate", peak_rss_mib(stack.restate.service.pid())),
        ("workflows", peak_rss_mib(stack.workflows.service.pid())),
        ("talis-host", peak_rss_mib(stack.host.pid())),
        ("fakecloud", peak_rss_mib(stack.fake.service.pid())),
    ]
}

/// Peak resident set size (`VmHWM`) of a process, in MiB.
pub(super) fn peak_rss_mib(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn do_like_ideal_counts_the_minute_and_hour_windows() {
        // 100 calls or fewer fit the first minute: just the boot.
        assert_eq!(do_like_ideal(1000), Duration::from_secs(45));
        // 1 000 calls: the last goes out in the fourth minute window (60 s × ⌊999 / 250⌋).
        assert_eq!(do_like_ideal(10_000), Duration::from_secs(45 + 180));
        // 5 001 calls: the hour window holds the last one back for an hour.
        assert_eq!(do_like_ideal(50_010), Duration::from_secs(45 + 3600));
    }
}
