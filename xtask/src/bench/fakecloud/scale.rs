//! The scale part of `cargo xtask bench fakecloud`: one project of 10 000 droplets made as the
//! DigitalOcean-like 10 000-machine benchmark makes it — multi-create (10 names per call, 4
//! clients at once), polled by tag in pages of 200, every machine phoning home 45 s after its
//! creation, then deleted by tag — against a release `fakecloud` keeping a snapshot (as the
//! local stack and the end-to-end benches run it). Prints the time of each phase and, from a
//! probe that reads `/v2/account` all along, how long the fake's state lock kept a cheap call
//! waiting in each phase.
//!
//! Rate limits are lifted: at DigitalOcean's 250 calls/min the 1 000 creates alone would take
//! 4 minutes of waiting, and the fake's limiter costs the same O(1) per call either way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use talis_stack::fakecloud::FakeCloud;

use super::TOKEN;

const MACHINES: usize = 10_000;
/// DigitalOcean's multi-create takes at most 10 names.
const PER_CREATE: usize = 10;
const CREATE_CLIENTS: usize = 4;
/// DigitalOcean's largest page.
const PER_PAGE: usize = 200;
const BOOT_MS: u64 = 45_000;
const PROJECT_TAG: &str = "talis-project-scale";

/// DigitalOcean-like boot, rate limits lifted (see the module doc), room for 10 000 droplets.
pub(super) fn config() -> String {
    format!(
        "boot_delay_ms = {BOOT_MS}\nboot_jitter_ms = 0\nip_delay_ms = {BOOT_MS}\n\
         rate_limit_per_minute = 4294967295\nrate_limit_per_hour = 4294967295\n\
         droplet_limit = {MACHINES}\n"
    )
}

/// What the phone-home receiver saw: requests, connections open at once (the fake's sockets
/// held for phone-homes), first and last arrival.
#[derive(Default)]
struct Received {
    count: AtomicU64,
    open: AtomicU64,
    max_open: AtomicU64,
    first_ms: AtomicU64,
    last_ms: AtomicU64,
}

/// A loopback phone-home endpoint answering 204 at once, like a healthy Talis API.
async fn receiver(epoch: Instant) -> Result<(SocketAddr, Arc<Received>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let seen = Arc::new(Received::default());
    let s = seen.clone();
    tokio::spawn(async move {
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        while let Ok((stream, _)) = listener.accept().await {
            let open = s.open.fetch_add(1, Ordering::AcqRel) + 1;
            s.max_open.fetch_max(open, Ordering::AcqRel);
            let s = s.clone();
            let svc = {
                let s = s.clone();
                hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let now = epoch.elapsed().as_millis() as u64 + 1;
                    let _ =
                        s.first_ms
                            .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
                    s.last_ms.fetch_max(now, Ordering::AcqRel);
                    s.count.fetch_add(1, Ordering::AcqRel);
                    let mut r = Response::new(Full::new(Bytes::new()));
                    *r.status_mut() = hyper::StatusCode::NO_CONTENT;
                    std::future::ready(Ok::<_, std::convert::Infallible>(r))
                })
            };
            let conn = builder
                .serve_connection(TokioIo::new(stream), svc)
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
                s.open.fetch_sub(1, Ordering::AcqRel);
            });
        }
    });
    Ok((addr, seen))
}

/// A cloud-init script of the size Talis sends (≈1.5 KB), carrying the phone-home marker.
fn user_data(receiver: SocketAddr, batch: usize) -> String {
    let url = format!("http://{receiver}/v1/phone-home/{batch}?token=t{batch:08}");
    let mut s = format!("#!/bin/sh\n# talis-phone-home: {url}\n");
    for i in 0..20 {
        s.push_str(&format!(
            "echo 'provisioning step {i} of the payload, padded to a realistic size' >> /var/log/p\n"
        ));
    }
    s.push_str(&format!("curl -fsS --retry 20 -X POST '{url}'\n"));
    s
}

/// A probe reading `/v2/account` back to back: (ms since epoch at the start, latency ms).
fn probe(
    fc_url: String,
    epoch: Instant,
    stop: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<Vec<(u64, f64)>> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut out = Vec::new();
        while stop.load(Ordering::Acquire) == 0 {
            let t = Instant::now();
            let ok = http
                .get(format!("{fc_url}/v2/account"))
                .bearer_auth("probe")
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                let at = t.duration_since(epoch).as_millis() as u64;
                out.push((at, t.elapsed().as_secs_f64() * 1000.0));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        out
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One full by-tag listing of the project (every page); returns (droplets, ms, max page ms).
async fn list_all(http: &reqwest::Client, fc: &FakeCloud) -> Result<(usize, f64, f64)> {
    let started = Instant::now();
    let mut url = format!(
        "{}/v2/droplets?tag_name={PROJECT_TAG}&per_page={PER_PAGE}",
        fc.base_url
    );
    let mut bodies = Vec::new();
    let mut slowest: f64 = 0.0;
    loop {
        let t = Instant::now();
        let body = http
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        slowest = slowest.max(t.elapsed().as_secs_f64() * 1000.0);
        // Only the link to the next page is read while timing; the pages are counted after.
        let next = find_next(&body);
        bodies.push(body);
        match next {
            Some(n) => url = n,
            None => break,
        }
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut n = 0;
    for b in &bodies {
        let v: Value = serde_json::from_slice(b)?;
        n += v["droplets"].as_array().map_or(0, Vec::len);
    }
    Ok((n, ms, slowest))
}

/// `links.pages.next` of a listing, found in the text (cheaper than parsing 0.5 MB in a debug
/// build, which would be timed as the fake's).
fn find_next(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let at = text.rfind("\"next\":\"")? + "\"next\":\"".len();
    let end = text[at..].find('"')?;
    Some(text[at..at + end].to_string())
}

pub(super) async fn run(fc: &FakeCloud, pid: Option<u32>) -> Result<()> {
    let epoch = Instant::now();
    let (rx_addr, seen) = receiver(epoch).await?;
    let stop = Arc::new(AtomicU64::new(0));
    let probe = probe(fc.base_url.clone(), epoch, stop.clone());
    let http = reqwest::Client::new();
    let mut phases: Vec<(&str, u64, u64)> = Vec::new();
    let ms = |i: Instant| i.duration_since(epoch).as_millis() as u64;

    println!(
        "\nscale: one project of {MACHINES} droplets (release fakecloud with a snapshot, boot {} s, rate limits lifted)",
        BOOT_MS / 1000
    );
    // Creation: 1 000 multi-creates from 4 clients.
    let t = Instant::now();
    let mut workers = Vec::new();
    for w in 0..CREATE_CLIENTS {
        let (http, base) = (http.clone(), fc.base_url.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for batch in (w..MACHINES / PER_CREATE).step_by(CREATE_CLIENTS) {
                let names: Vec<String> = (0..PER_CREATE)
                    .map(|i| format!("m{}.i{}", batch * PER_CREATE + i, batch * PER_CREATE + i))
                    .collect();
                let body = json!({"names": names, "region": "nyc3", "size": "s-1vcpu-1gb",
                    "image": "ubuntu-24-04-x64", "tags": ["talis", PROJECT_TAG],
                    "user_data": user_data(rx_addr, batch)});
                let t = Instant::now();
                let r = http
                    .post(format!("{base}/v2/droplets"))
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
                    .await?;
                if r.status() != 202 {
                    bail!("create answered {}: {}", r.status(), r.text().await?);
                }
                r.bytes().await?;
                lat.push((batch, t.elapsed().as_secs_f64() * 1000.0));
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    for w in workers {
        lat.extend(w.await??);
    }
    let created = t.elapsed();
    phases.push(("create", ms(t), ms(Instant::now())));
    lat.sort_by_key(|(b, _)| *b);
    let calls = lat.len();
    let tenth = |from: usize| {
        let mut v: Vec<f64> = lat[from..from + calls / 10].iter().map(|x| x.1).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let (first, last) = (tenth(0), tenth(calls - calls / 10));
    println!(
        "create   {calls} calls of {PER_CREATE} in {:.2} s ({:.0} calls/s); per call p50/p99 ms: first 10% {:.2}/{:.2}, last 10% {:.2}/{:.2}",
        created.as_secs_f64(),
        calls as f64 / created.as_secs_f64(),
        percentile(&first, 0.5),
        percentile(&first, 0.99),
        percentile(&last, 0.5),
        percentile(&last, 0.99),
    );

    // Polling the project by tag while every machine is `new`: first rendering, then cached.
    for what in ["list (new, first)", "list (new, again)"] {
        let t = Instant::now();
        let (n, total_ms, page_ms) = list_all(&http, fc).await?;
        phases.push((what, ms(t), ms(Instant::now())));
        if n != MACHINES {
            bail!("{what}: listed {n} droplets, not {MACHINES}");
        }
        println!(
            "{what:<18} {} pages in {total_ms:.0} ms (slowest page {page_ms:.1} ms)",
            MACHINES.div_ceil(PER_PAGE)
        );
    }

    // The phone-home wave: every machine boots 45 s after its create; the project is polled
    // as a workflow would (one full listing, then 2 s) meanwhile.
    let t = Instant::now();
    let deadline = t + Duration::from_millis(BOOT_MS) + created + Duration::from_secs(120);
    let mut listings = Vec::new();
    while seen.count.load(Ordering::Acquire) < MACHINES as u64 {
        if Instant::now() > deadline {
            bail!(
                "only {} of {MACHINES} phone-homes arrived",
                seen.count.load(Ordering::Acquire)
            );
        }
        let (_, total_ms, _) = list_all(&http, fc).await?;
        listings.push(total_ms);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    phases.push(("boot + phone-home", ms(t), ms(Instant::now())));
    let (first_ph, last_ph) = (
        seen.first_ms.load(Ordering::Acquire),
        seen.last_ms.load(Ordering::Acquire),
    );
    // The last create answered at the end of the create phase; its machines became active
    // BOOT_MS later.
    let last_active = phases[0].2 + BOOT_MS;
    listings.sort_by(f64::total_cmp);
    println!(
        "phone-home {MACHINES} received over {:.2} s, the last {:+.2} s after the last machine's boot; at most {} connections open at once",
        (last_ph - first_ph) as f64 / 1000.0,
        (last_ph as f64 - last_active as f64) / 1000.0,
        seen.max_open.load(Ordering::Acquire),
    );
    println!(
        "list during the wave: {} full listings, median {:.0} ms, max {:.0} ms",
        listings.len(),
        percentile(&listings, 0.5),
        percentile(&listings, 1.0)
    );
    let t = Instant::now();
    let (n, total_ms, page_ms) = list_all(&http, fc).await?;
    phases.push(("list (active)", ms(t), ms(Instant::now())));
    println!("list (active)      {n} droplets in {total_ms:.0} ms (slowest page {page_ms:.1} ms)");

    // Counted by the fake once each answer arrived.
    let wait = Instant::now() + Duration::from_secs(30);
    loop {
        let s = fc.stats().await?;
        if s["phone_home"]["ok"] == MACHINES as u64 {
            break;
        }
        if Instant::now() > wait {
            bail!("phone-homes not all counted: {}", s["phone_home"]);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let t = Instant::now();
    let r = http
        .delete(format!(
            "{}/v2/droplets?tag_name={PROJECT_TAG}",
            fc.base_url
        ))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    let deleted = t.elapsed();
    phases.push(("delete by tag", ms(t), ms(Instant::now())));
    if r.status() != 204 {
        bail!("delete by tag answered {}", r.status());
    }
    let s = fc.stats().await?;
    println!(
        "delete by tag      {} droplets in {:.1} ms; live afterwards: {}",
        s["droplets"]["destroyed"],
        deleted.as_secs_f64() * 1000.0,
        s["droplets"]["live"]
    );

    // Let the probe see the snapshot written after the delete.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(1, Ordering::Release);
    let probes = probe.await.context("probe")?;
    let mut line = String::from("probe GET /v2/account, worst wait per phase (ms):");
    for (name, from, to) in &phases {
        let worst = probes
            .iter()
            .filter(|(at, _)| (from..=to).contains(&at))
            .map(|(_, l)| *l)
            .fold(0.0, f64::max);
        line.push_str(&format!(" {name} {worst:.1};"));
    }
    println!("{line}");
    println!(
        "fakecloud peak RSS: {:.0} MiB",
        super::super::e2e::peak_rss_mib(pid)
    );
    Ok(())
}
