//! `cargo xtask bench fakecloud`: requests/s of the fake cloud, so that it is never the
//! bottleneck of end-to-end benchmarks. A release `fakecloud` (and, for comparison, the debug
//! build the tests use) is loaded by `wrk` on loopback with the calls a workflow makes: a small
//! authenticated GET, one droplet, the by-tag poll of a 100-droplet project (one page of 200),
//! and single creates. Rate limits are lifted for the run; boot delay is 0. Then `scale`: one
//! project of 10 000 droplets, created, polled, phoning home and deleted (see its doc).
//!
//! `BENCH_FAKECLOUD_ONLY=wrk` or `=scale` runs one part.

mod scale;

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use talis_stack::fakecloud::{FakeCloud, Options};
use talis_stack::process::Service;

use super::host::{Stats, ensure_wrk, wrk};
use crate::build::{cargo, run as run_cmd};

const TOKEN: &str = "bench-token";
/// Loads: (connections, wrk threads).
const LOADS: [(u32, u32); 2] = [(1, 1), (16, 2)];
/// DigitalOcean's per-token limit, 250 requests per minute, in requests per second.
const DO_LIMIT_RPS: f64 = 250.0 / 60.0;

const CONFIG: &str = "boot_delay_ms = 0\nboot_jitter_ms = 0\nip_delay_ms = 0\n\
    rate_limit_per_minute = 4294967295\nrate_limit_per_hour = 4294967295\n\
    droplet_limit = 4294967295\n[phone_home]\nenabled = false\n";

struct Scenario {
    name: &'static str,
    path: String,
    script: String,
}

fn auth_script(extra: &str) -> String {
    format!("wrk.headers[\"Authorization\"] = \"Bearer {TOKEN}\"\n{extra}")
}

async fn start(
    dir: &std::path::Path,
    release: bool,
    config: &str,
    snapshot: Option<std::path::PathBuf>,
) -> Result<FakeCloud> {
    let cfg = dir.join("bench.toml");
    std::fs::write(&cfg, config)?;
    let (mut spec, base_url) = talis_stack::fakecloud::spec(
        &Options {
            config: Some(cfg),
            snapshot,
            ..Options::default()
        },
        dir,
    );
    let profile = if release { "release" } else { "debug" };
    spec.program = talis_stack::target_dir().join(profile).join("fakecloud");
    spec.name = format!("fakecloud-{profile}");
    let service = Service::start(spec).await?;
    Ok(FakeCloud { service, base_url })
}

/// 100 droplets tagged like one Talis project; returns one droplet id.
async fn seed(fc: &FakeCloud) -> Result<u64> {
    let http = reqwest::Client::new();
    let mut id = 0;
    for b in 0..10 {
        let names: Vec<String> = (0..10).map(|i| format!("bench-{b}-{i}")).collect();
        let r: Value = http
            .post(format!("{}/v2/droplets", fc.base_url))
            .bearer_auth(TOKEN)
            .json(
                &json!({"names": names, "region": "nyc3", "size": "s-1vcpu-1gb",
                "image": "ubuntu-24-04-x64", "tags": ["talis", "talis-project-bench"]}),
            )
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        id = r["droplets"][0]["id"]
            .as_u64()
            .context("created droplet id")?;
    }
    Ok(id)
}

fn scenarios(droplet: u64) -> Vec<Scenario> {
    vec![
        Scenario {
            name: "GET /v2/account",
            path: "/v2/account".into(),
            script: auth_script(""),
        },
        Scenario {
            name: "GET /v2/droplets/{id}",
            path: format!("/v2/droplets/{droplet}"),
            script: auth_script(""),
        },
        Scenario {
            name: "GET /v2/droplets?tag_name= (100)",
            path: "/v2/droplets?tag_name=talis-project-bench&per_page=200".into(),
            script: auth_script(""),
        },
        Scenario {
            name: "POST /v2/droplets (1)",
            path: "/v2/droplets".into(),
            script: auth_script(
                "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
                 wrk.body = '{\"name\":\"b\",\"region\":\"nyc3\",\"size\":\"s-1vcpu-1gb\",\
                 \"image\":\"ubuntu-24-04-x64\",\"tags\":[\"talis\",\"talis-instance-b\"]}'\n",
            ),
        },
    ]
}

fn print_row(name: &str, conns: u32, s: &Stats) {
    println!(
        "{name:<36} {conns:>5} {:>10.0} {:>8.2} {:>8.2} {:>10.0}x",
        s.rps,
        s.p50_ms,
        s.p99_ms,
        s.rps / DO_LIMIT_RPS
    );
}

pub fn run() -> Result<()> {
    let only = std::env::var("BENCH_FAKECLOUD_ONLY").unwrap_or_default();
    let mut build = cargo();
    build.args(["build", "--release", "-p", "fakecloud"]);
    run_cmd(build)?;
    let mut build = cargo();
    build.args(["build", "-p", "fakecloud"]);
    run_cmd(build)?;
    let dir = talis_stack::target_dir().join("bench/fakecloud");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let rt = tokio::runtime::Runtime::new()?;
    if only != "scale" {
        wrk_part(&rt, &dir)?;
    }
    if only != "wrk" {
        let snapshot = Some(dir.join("scale-state.json"));
        let mut fc = rt.block_on(start(&dir, true, &scale::config(), snapshot))?;
        let pid = fc.service.pid();
        rt.block_on(scale::run(&fc, pid))?;
        rt.block_on(fc.service.stop(Duration::from_secs(30)))?;
    }
    Ok(())
}

/// Requests/s of the calls a workflow makes, under wrk.
fn wrk_part(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> Result<()> {
    ensure_wrk()?;

    println!(
        "\nfakecloud under wrk on loopback (rate limits lifted, boot 0); last column: vs DO's 250/min"
    );
    println!(
        "{:<36} {:>5} {:>10} {:>8} {:>8} {:>11}",
        "release build", "conns", "req/s", "p50 ms", "p99 ms", "headroom"
    );
    let mut fc = rt.block_on(start(dir, true, CONFIG, None))?;
    let droplet = rt.block_on(seed(&fc))?;
    let script = dir.join("bench.lua");
    for sc in scenarios(droplet) {
        std::fs::write(&script, &sc.script)?;
        for (conns, threads) in LOADS {
            let s = wrk(
                &format!("{}{}", fc.base_url, sc.path),
                conns,
                threads,
                Some(&script),
            )?;
            print_row(sc.name, conns, &s);
        }
    }
    let stats = rt.block_on(fc.stats())?;
    println!(
        "droplets created during the run: {} (all answered 202)",
        stats["droplets"]["created"]
    );
    rt.block_on(fc.service.stop(Duration::from_secs(5)))?;

    println!("{:<36}", "debug build (what tests start)");
    let mut fc = rt.block_on(start(dir, false, CONFIG, None))?;
    let droplet = rt.block_on(seed(&fc))?;
    for sc in scenarios(droplet).into_iter().take(3) {
        std::fs::write(&script, &sc.script)?;
        let (conns, threads) = LOADS[1];
        let s = wrk(
            &format!("{}{}", fc.base_url, sc.path),
            conns,
            threads,
            Some(&script),
        )?;
        print_row(sc.name, conns, &s);
    }
    rt.block_on(fc.service.stop(Duration::from_secs(5)))?;
    Ok(())
}
