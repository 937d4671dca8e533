//! The phone-home POST against a real loopback receiver, judged as the script's
//! `curl -fsS --retry` would: transient answers (503, 429 ...) retried, honouring
//! `Retry-After`; other refusals final at once; at most `max_in_flight` POSTs at a time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fakecloud::{Config, PhoneHome};
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

/// What the receiver answers, in turn (the last answer repeats).
type Script = Vec<(u16, Option<&'static str>)>;

#[derive(Default)]
struct Seen {
    /// When each request arrived.
    at: Vec<Instant>,
    open: usize,
    max_open: usize,
}

/// A phone-home endpoint answering `script` after `hold` per request.
async fn receiver(script: Script, hold: Duration) -> (String, Arc<Mutex<Seen>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/v1/phone-home/7?token=t",
        listener.local_addr().unwrap()
    );
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    tokio::spawn(async move {
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        while let Ok((stream, _)) = listener.accept().await {
            let (s, script) = (s.clone(), script.clone());
            let svc = hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                let (s, script) = (s.clone(), script.clone());
                async move {
                    let n = {
                        let mut g = s.lock().unwrap();
                        g.at.push(Instant::now());
                        g.open += 1;
                        g.max_open = g.max_open.max(g.open);
                        g.at.len() - 1
                    };
                    tokio::time::sleep(hold).await;
                    s.lock().unwrap().open -= 1;
                    let (status, retry_after) = script[n.min(script.len() - 1)];
                    let mut r = Response::new(Full::new(Bytes::new()));
                    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                    if let Some(v) = retry_after {
                        r.headers_mut().insert("retry-after", v.parse().unwrap());
                    }
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            tokio::spawn(
                builder
                    .serve_connection(TokioIo::new(stream), svc)
                    .into_owned(),
            );
        }
    });
    (url, seen)
}

fn config(phone_home: PhoneHome) -> Config {
    Config {
        phone_home,
        ..Config::instant()
    }
}

/// Creates `n` droplets (one multi-create) whose user_data phones home to `url`.
async fn create(fake: &fakecloud::Running, n: usize, url: &str) {
    let names: Vec<String> = (0..n).map(|i| format!("ph-{i}")).collect();
    let r = reqwest::Client::new()
        .post(format!("{}/v2/droplets", fake.base_url()))
        .bearer_auth("t")
        .json(&json!({"names": names, "region": "nyc3", "size": "s-1vcpu-1gb",
            "image": "ubuntu-24-04-x64",
            "user_data": format!("#!/bin/sh\n# talis-phone-home: {url}\ncurl -fsS --retry 120 -X POST '{url}'\n")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

/// Waits until `/_fake/stats` counts `total` phone-home outcomes; returns them.
async fn outcomes(fake: &fakecloud::Running, total: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = fake.fake.stats()["phone_home"].clone();
        let counted: u64 = s
            .as_object()
            .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
        if counted >= total {
            return s;
        }
        assert!(Instant::now() < deadline, "phone-homes not counted: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn quick_retries() -> PhoneHome {
    PhoneHome {
        retry_delay_ms: 50,
        ..PhoneHome::default()
    }
}

#[tokio::test]
async fn transient_answers_are_retried_until_accepted() {
    let (url, seen) = receiver(vec![(503, None), (503, None), (204, None)], Duration::ZERO).await;
    let fake = fakecloud::spawn(config(quick_retries())).await.unwrap();
    create(&fake, 1, &url).await;
    assert_eq!(outcomes(&fake, 1).await, json!({"ok": 1}));
    assert_eq!(seen.lock().unwrap().at.len(), 3, "two 503s, then 204");
}

#[tokio::test]
async fn a_refusal_is_final_at_once() {
    let (url, seen) = receiver(vec![(403, None), (204, None)], Duration::ZERO).await;
    let fake = fakecloud::spawn(config(quick_retries())).await.unwrap();
    create(&fake, 1, &url).await;
    assert_eq!(outcomes(&fake, 1).await, json!({"refused": 1}));
    // Ten retry delays later, still the one request.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(seen.lock().unwrap().at.len(), 1, "a 403 is not retried");
    assert_eq!(fake.fake.stats()["phone_home"], json!({"refused": 1}));
}

#[tokio::test]
async fn retry_after_is_honoured_when_longer_than_the_delay() {
    let (url, seen) = receiver(vec![(429, Some("1")), (204, None)], Duration::ZERO).await;
    let fake = fakecloud::spawn(config(quick_retries())).await.unwrap();
    create(&fake, 1, &url).await;
    assert_eq!(outcomes(&fake, 1).await, json!({"ok": 1}));
    let at = seen.lock().unwrap().at.clone();
    assert_eq!(at.len(), 2);
    assert!(
        at[1] - at[0] >= Duration::from_secs(1),
        "waited {:?}, not the 1 s Retry-After asked",
        at[1] - at[0]
    );
}

#[tokio::test]
async fn attempts_run_out_on_transient_failures() {
    let (url, seen) = receiver(vec![(502, None)], Duration::ZERO).await;
    let fake = fakecloud::spawn(config(PhoneHome {
        attempts: 3,
        ..quick_retries()
    }))
    .await
    .unwrap();
    create(&fake, 1, &url).await;
    assert_eq!(outcomes(&fake, 1).await, json!({"failed": 1}));
    assert_eq!(seen.lock().unwrap().at.len(), 3);
}

#[tokio::test]
async fn at_most_max_in_flight_posts_at_once() {
    let (url, seen) = receiver(vec![(204, None)], Duration::from_millis(50)).await;
    let fake = fakecloud::spawn(config(PhoneHome {
        max_in_flight: 3,
        ..PhoneHome::default()
    }))
    .await
    .unwrap();
    create(&fake, 10, &url).await;
    assert_eq!(outcomes(&fake, 10).await, json!({"ok": 10}));
    let g = seen.lock().unwrap();
    assert_eq!(g.at.len(), 10);
    assert!(g.max_open <= 3, "{} POSTs at once", g.max_open);
}
