//! `cargo xtask bench host`: the cost of the Spin host. The same two handlers — a
//! hello-world and a JSON echo (parse + serialise) — served by the `spin-test` component on a
//! release `talis-host`, and by a native hyper server with the same logic. `wrk` (a separate
//! process) loads each on loopback, once with one connection (latency) and once with several
//! (throughput). Prints requests/s, p50/p99 and the host/native ratios.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

const DURATION: &str = "8s";
/// Loads: (connections, wrk threads).
const LOADS: [(u32, u32); 2] = [(1, 1), (16, 2)];

/// The JSON document echoed (≈1 KB, nested, mixed types).
fn echo_body() -> String {
    let items: Vec<serde_json::Value> = (0..12)
        .map(|i| {
            serde_json::json!({
                "id": i, "name": format!("instance-{i}"), "region": "nyc3",
                "size": "s-1vcpu-1gb", "ready": i % 2 == 0, "ip": null, "load": 0.25 * i as f64,
            })
        })
        .collect();
    serde_json::json!({"method": "bench.echo", "params": {"items": items}, "id": 1}).to_string()
}

#[derive(Clone, Debug)]
pub(super) struct Stats {
    pub(super) rps: f64,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
}

pub(super) fn ensure_wrk() -> Result<()> {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return Ok(());
    }
    eprintln!("wrk not found; installing it with apt-get (Debian package `wrk`)");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "wrk"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!("wrk is needed: install it with `apt-get install -y wrk`");
    }
    Ok(())
}

/// wrk's duration units → milliseconds ("850.00us", "1.20ms", "2.00s").
fn to_ms(v: &str) -> Option<f64> {
    let (num, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, 1.0)
    };
    num.parse::<f64>().ok().map(|n| n * factor)
}

fn parse_wrk(out: &str) -> Result<Stats> {
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut errors = String::new();
    for line in out.lines() {
        let mut w = line.split_whitespace();
        match (w.next(), w.next()) {
            (Some("Requests/sec:"), Some(v)) => rps = v.parse().ok(),
            (Some("50%"), Some(v)) => p50 = to_ms(v),
            (Some("99%"), Some(v)) => p99 = to_ms(v),
            (Some("Non-2xx"), _) | (Some("Socket"), _) => errors.push_str(line),
            _ => {}
        }
    }
    if !errors.is_empty() {
        bail!("wrk saw errors: {errors}\n{out}");
    }
    match (rps, p50, p99) {
        (Some(rps), Some(p50_ms), Some(p99_ms)) => Ok(Stats {
            rps,
            p50_ms,
            p99_ms,
        }),
        _ => bail!("cannot parse wrk output:\n{out}"),
    }
}

pub(super) fn wrk(
    url: &str,
    connections: u32,
    threads: u32,
    script: Option<&Path>,
) -> Result<Stats> {
    let mut c = Command::new("wrk");
    c.args([
        "--latency",
        "-d",
        DURATION,
        "-t",
        &threads.to_string(),
        "-c",
        &connections.to_string(),
    ]);
    if let Some(s) = script {
        c.arg("-s").arg(s);
    }
    c.arg(url);
    let out = c.output().context("running wrk")?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

/// The native baseline: the component's two handlers in plain hyper.
async fn native(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = |status: u16, ct: &'static str, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
        r.headers_mut()
            .insert("content-type", hyper::header::HeaderValue::from_static(ct));
        r
    };
    Ok(match req.uri().path() {
        "/hello" => text(200, "text/plain", Bytes::from_static(b"hello, world")),
        "/echo" => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(v) => text(200, "application/json", Bytes::from(v.to_string())),
                Err(e) => text(400, "text/plain", Bytes::from(e.to_string())),
            }
        }
        _ => text(404, "text/plain", Bytes::new()),
    })
}

/// Serves the native baseline on its own multi-threaded runtime (as talis-host does).
fn start_native() -> Result<(SocketAddr, tokio::runtime::Runtime)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    rt.spawn(async move {
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let conn = builder
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(native))
                .into_owned();
            tokio::spawn(conn);
        }
    });
    Ok((addr, rt))
}

pub fn run() -> Result<()> {
    let Some(work) = super::prepare_wasm_bench("host")? else {
        return Ok(());
    };
    let script = work.join("echo.lua");
    let body = echo_body();
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = [[{body}]]\n"
        ),
    )?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut opts = talis_stack::host::HostOptions::new(
        talis_stack::workspace_root().join("tests/components/spin-test/spin.toml"),
        "/hello",
    )
    .variable("api_token", "bench");
    opts.binary = Some(talis_stack::target_dir().join("release/talis-host"));
    opts.state_dir = Some(work.join("state"));
    opts.env = vec![("RUST_LOG".into(), "warn".into())];
    let started = std::time::Instant::now();
    let mut host = rt.block_on(talis_stack::host::start(&opts, &work))?;
    let host_start = started.elapsed();
    let (native_addr, native_rt) = start_native()?;
    let native_url = format!("http://{native_addr}");

    println!(
        "\ntalis-host (release) vs native hyper (release), wrk {DURATION} per run on loopback"
    );
    println!("host start-up (compile or cache + pre-instantiate): {host_start:?}\n");
    println!(
        "{:<8} {:>5} | {:>10} {:>8} {:>8} | {:>10} {:>8} {:>8} | {:>7} {:>7}",
        "route",
        "conns",
        "host rps",
        "p50 ms",
        "p99 ms",
        "native rps",
        "p50 ms",
        "p99 ms",
        "rps x",
        "p50 x"
    );
    let mut rows = Vec::new();
    for (route, script) in [("/hello", None), ("/echo", Some(script.as_path()))] {
        for (conns, threads) in LOADS {
            let h = wrk(&host.url(route), conns, threads, script)?;
            let n = wrk(&format!("{native_url}{route}"), conns, threads, script)?;
            println!(
                "{:<8} {:>5} | {:>10.0} {:>8.3} {:>8.3} | {:>10.0} {:>8.3} {:>8.3} | {:>7.2} {:>7.2}",
                route,
                conns,
                h.rps,
                h.p50_ms,
                h.p99_ms,
                n.rps,
                n.p50_ms,
                n.p99_ms,
                h.rps / n.rps,
                h.p50_ms / n.p50_ms
            );
            rows.push((route, conns, h, n));
        }
    }
    // Host overhead per request at one connection: the latency the host adds to the same logic.
    println!();
    for (route, conns, h, n) in &rows {
        if *conns == 1 {
            println!(
                "{route}: host adds {:.3} ms per request at p50 (one connection)",
                h.p50_ms - n.p50_ms
            );
        }
    }
    rt.block_on(host.service.stop(Duration::from_secs(10)))?;
    drop(native_rt);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let out = "Running 8s test @ http://127.0.0.1:1/hello
  1 threads and 1 connections
  Latency Distribution
     50%  120.00us
     75%  150.00us
     90%    1.20ms
     99%    2.50ms
  100 requests in 8.00s, 10.00KB read
Requests/sec:   8012.50
Transfer/sec:      1.00KB
";
        let s = parse_wrk(out).unwrap();
        assert_eq!(s.rps, 8012.5);
        assert!((s.p50_ms - 0.12).abs() < 1e-9);
        assert_eq!(s.p99_ms, 2.5);
        assert!(parse_wrk("Requests/sec: 1\n  Non-2xx or 3xx responses: 5").is_err());
    }
}
