//! The `fakecloud` binary, started through talis-stack as the other tests will: boot and IP
//! delays, the phone-home of user_data, the snapshot across a restart, rate-limit headers and
//! the connection-level faults.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use talis_stack::fakecloud::{FakeCloud, Options, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "binary-test";

async fn launch(
    config: &str,
    snapshot: Option<std::path::PathBuf>,
) -> (FakeCloud, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("fake.toml");
    std::fs::write(&cfg, config).unwrap();
    let fc = start(
        &Options {
            config: Some(cfg),
            snapshot,
            ..Options::default()
        },
        dir.path(),
    )
    .await
    .unwrap();
    (fc, dir)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn create(fc: &FakeCloud, body: Value) -> reqwest::Response {
    http()
        .post(format!("{}/v2/droplets", fc.base_url))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn droplet(fc: &FakeCloud, id: u64) -> Value {
    let r = http()
        .get(format!("{}/v2/droplets/{id}", fc.base_url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    r.json::<Value>().await.unwrap()["droplet"].clone()
}

/// A one-shot HTTP receiver: returns the body of the first request it gets.
async fn receiver() -> (String, tokio::task::JoinHandle<String>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/phone-home/abc", l.local_addr().unwrap());
    let h = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .unwrap();
                    return format!("{}\n{}", head.lines().next().unwrap(), body);
                }
            }
            if n == 0 {
                return text;
            }
        }
    });
    (url, h)
}

#[tokio::test]
async fn boots_assigns_ip_and_phones_home() {
    let (fc, _dir) = launch(
        "boot_delay_ms = 600\nboot_jitter_ms = 0\nip_delay_ms = 200\n[phone_home]\nattempts = 1\n",
        None,
    )
    .await;
    let (url, got) = receiver().await;
    let user_data =
        format!("#!/bin/sh\n# talis-phone-home: {url}\nset -e\ncurl -fsS -X POST {url}\n");
    let started = Instant::now();
    let r = create(&fc, json!({"name": "ph-1", "region": "nyc3", "size": "s-1vcpu-1gb",
        "image": "ubuntu-24-04-x64", "user_data": user_data, "tags": ["talis", "talis-instance-1"]})).await;
    assert_eq!(r.status(), 202);
    let d: Value = r.json().await.unwrap();
    let id = d["droplet"]["id"].as_u64().unwrap();
    assert_eq!(d["droplet"]["status"], "new");
    assert_eq!(d["droplet"]["networks"]["v4"], json!([]));

    let request = tokio::time::timeout(Duration::from_secs(10), got)
        .await
        .unwrap()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(600),
        "phoned home after boot, not at {elapsed:?}"
    );
    assert!(
        request.starts_with("POST /v1/phone-home/abc HTTP/1.1"),
        "{request}"
    );
    let body: Value = serde_json::from_str(request.lines().last().unwrap()).unwrap();
    let d = droplet(&fc, id).await;
    assert_eq!(d["status"], "active");
    let public = d["networks"]["v4"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["type"] == "public")
        .unwrap();
    assert_eq!(
        body,
        json!({"droplet_id": id, "public_ip": public["ip_address"], "status": "ok"})
    );

    // Counted once the POST's answer arrived.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = fc.stats().await.unwrap();
        if s["phone_home"]["ok"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "phone-home not counted: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn snapshot_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("state.json");
    let (mut fc, _d) = launch(
        "boot_delay_ms = 0\nboot_jitter_ms = 0\n",
        Some(snap.clone()),
    )
    .await;
    let r = create(
        &fc,
        json!({"names": ["s-1", "s-2"], "region": "ams3", "size": "s-1vcpu-1gb",
        "image": "debian-12-x64", "tags": ["keep"]}),
    )
    .await;
    assert_eq!(r.status(), 202);
    fc.service.stop(Duration::from_secs(5)).await.unwrap();
    assert!(snap.exists(), "snapshot written on SIGTERM");
    fc.service.restart().await.unwrap();
    let list: Value = http()
        .get(format!("{}/v2/droplets?tag_name=keep", fc.base_url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["meta"]["total"], 2);
    // Ids keep increasing after the restart (no reuse).
    let r: Value = create(
        &fc,
        json!({"name": "s-3", "region": "ams3", "size": "s-1vcpu-1gb", "image": "debian-12-x64"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let max_old = list["droplets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(r["droplet"]["id"].as_u64().unwrap() > max_old);
}

#[tokio::test]
async fn rate_limit_headers_and_429() {
    let (fc, _dir) = launch(
        "rate_limit_per_minute = 3\nrate_limit_per_hour = 100\n",
        None,
    )
    .await;
    let get = || {
        http()
            .get(format!("{}/v2/account", fc.base_url))
            .bearer_auth(TOKEN)
            .send()
    };
    for left in [99, 98, 97] {
        let r = get().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["ratelimit-limit"], "100");
        assert_eq!(
            r.headers()["ratelimit-remaining"],
            left.to_string().as_str()
        );
        let reset: u64 = r.headers()["ratelimit-reset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(reset > 1_700_000_000);
    }
    let r = get().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], "too_many_requests");
    // Another token has its own window.
    let r = http()
        .get(format!("{}/v2/account", fc.base_url))
        .bearer_auth("other")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn connection_faults_drop_or_lose_the_answer() {
    let (fc, _dir) = launch(
        r#"
        boot_delay_ms = 0
        [[faults]]
        endpoint = "droplets_create"
        kind = "drop"
        count = 1
        [[faults]]
        endpoint = "droplets_create"
        kind = "lost_response"
        count = 1
        [[faults]]
        endpoint = "droplets_create"
        kind = "error_5xx"
        status = 503
        count = 1
        "#,
        None,
    )
    .await;
    let body =
        json!({"name": "f", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"});
    let send = || {
        http()
            .post(format!("{}/v2/droplets", fc.base_url))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    assert!(send().await.is_err(), "dropped connection");
    assert!(send().await.is_err(), "lost answer");
    let r = send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(send().await.unwrap().status(), 202);
    let s = fc.stats().await.unwrap();
    assert_eq!(
        s["calls"]["droplets_create"],
        json!({"dropped": 1, "lost": 1, "503": 1, "202": 1})
    );
    assert_eq!(s["droplets"]["live"], 2, "the lost answer's droplet exists");
}

#[tokio::test]
async fn control_routes_replace_config_and_reset() {
    let (fc, _dir) = launch("boot_delay_ms = 0\n", None).await;
    let c = http();
    let cfg: Value = c
        .get(format!("{}/_fake/config", fc.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cfg["boot_delay_ms"], 0);
    assert_eq!(cfg["rate_limit_per_minute"], 250, "defaults fill in");

    // Faults set at run time apply at once; a bad config is refused and changes nothing.
    let put = |body: Value| {
        c.put(format!("{}/_fake/config", fc.base_url))
            .json(&body)
            .send()
    };
    let r = put(json!({"faults": [{"endpoint": "account_get", "kind": "error_5xx", "status": 502, "count": 1}]})).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = put(json!({"boot_delay_ms": "soon"})).await.unwrap();
    assert_eq!(r.status(), 422);
    let account = || {
        c.get(format!("{}/v2/account", fc.base_url))
            .bearer_auth(TOKEN)
            .send()
    };
    assert_eq!(account().await.unwrap().status(), 502);
    assert_eq!(account().await.unwrap().status(), 200, "count = 1: spent");

    let r = create(
        &fc,
        json!({"name": "x", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}),
    )
    .await;
    assert_eq!(r.status(), 202);
    let s = fc.stats().await.unwrap();
    assert_eq!(s["droplets"]["live"], 1);
    assert_eq!(s["calls"]["account_get"], json!({"502": 1, "200": 1}));
    let r = c
        .post(format!("{}/_fake/reset", fc.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let s = fc.stats().await.unwrap();
    assert_eq!(s["droplets"]["live"], 0);
    assert_eq!(s["total_calls"], 0);
}

/// The snapshot path is set at start-up only: the control route cannot point it elsewhere
/// (it would write the state anywhere on disk).
#[tokio::test]
async fn control_route_cannot_move_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("state.json");
    let elsewhere = dir.path().join("elsewhere.json");
    let (mut fc, _d) = launch("boot_delay_ms = 0\n", Some(snap.clone())).await;
    let c = http();
    let put = |body: Value| {
        c.put(format!("{}/_fake/config", fc.base_url))
            .json(&body)
            .send()
    };
    let r = put(json!({"snapshot": elsewhere, "boot_delay_ms": 5}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["message"].as_str().unwrap().starts_with("snapshot:"),
        "names the field: {e}"
    );
    // Refused whole; the same path, or none named, is accepted and keeps it.
    let cfg: Value = c
        .get(format!("{}/_fake/config", fc.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cfg["boot_delay_ms"], 0);
    assert_eq!(put(json!({"snapshot": snap})).await.unwrap().status(), 200);
    let r = put(json!({"boot_delay_ms": 0})).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["snapshot"], json!(snap));

    let r = create(
        &fc,
        json!({"name": "k", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}),
    )
    .await;
    assert_eq!(r.status(), 202);
    fc.service.stop(Duration::from_secs(5)).await.unwrap();
    assert!(snap.exists(), "the state is still written where it was");
    assert!(!elsewhere.exists(), "and nowhere else");
}

/// `TALIS_LOG_FORMAT=json` (or `--log-format json`): one JSON object per log line.
#[tokio::test]
async fn logs_as_json_lines_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, _url) = talis_stack::fakecloud::spec(&Options::default(), dir.path());
    let spec = spec.env("TALIS_LOG_FORMAT", "json");
    let log = spec.log.clone();
    let mut service = talis_stack::process::Service::start(spec).await.unwrap();
    service.stop(Duration::from_secs(5)).await.unwrap();
    let text = std::fs::read_to_string(log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "fakecloud listening" && l["level"] == "INFO"),
        "{text}"
    );
}
