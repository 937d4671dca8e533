//! Webhooks end to end: real restate-server, real talis-workflows, real talis-host running the
//! API component, and a real HTTP receiver — all on loopback (no traffic ever leaves it, not
//! even to show that something is refused).
//!
//! - Messages are retried (the receiver answers 503 twice, then 204), delivered one at a time
//!   in order, signed as Standard Webhooks says, and a `kill -9` of the workflows between
//!   attempts neither loses nor duplicates one.
//! - Metadata and private addresses are refused when the webhook is created (400 on `url`), and
//!   a name that resolves to a loopback address outside the allow list is refused at delivery
//!   without any connection.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use talis_api::events::EventKind;
use talis_api::signing::{Secret, TOLERANCE_SECS};
use talis_api::webhooks::{
    DeliveryStatus, WebhookCreate, WebhookDeliveries, WebhookDelivery, WebhookRef,
};
use talis_api::{ApiKeyCreate, OwnerList, QuotaSet, UserCreate};
use talis_client::Client;
use talis_stack::workflows::{FullStack, StackOptions};

const LIMIT: Duration = Duration::from_secs(90);

/// One request as the receiver saw it, and what it answered.
#[derive(Clone, Debug)]
struct Arrival {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
    answered: u16,
    at: Instant,
}

/// A webhook receiver: answers 503 to the first `failures` requests of each `webhook-id`, then
/// 204, and remembers every request.
struct Receiver {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Arrival>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(ip: IpAddr, failures: usize) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let log: Arc<Mutex<Vec<Arrival>>> = Arc::default();
        let shared = log.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let log = log.clone();
                            async move {
                                let header = |n: &str| {
                                    req.headers()
                                        .get(n)
                                        .and_then(|v| v.to_str().ok())
                                        .unwrap_or_default()
                                        .to_owned()
                                };
                                let (id, timestamp, signature) = (
                                    header("webhook-id"),
                                    header("webhook-timestamp"),
                                    header("webhook-signature"),
                                );
                                let body = req.into_body().collect().await?.to_bytes();
                                let mut log = log.lock().unwrap();
                                let seen = log.iter().filter(|a| a.id == id).count();
                                let answered = if seen < failures { 503 } else { 204 };
                                log.push(Arrival {
                                    id,
                                    timestamp,
                                    signature,
                                    body: String::from_utf8_lossy(&body).into_owned(),
                                    answered,
                                    at: Instant::now(),
                                });
                                Ok::<_, hyper::Error>(
                                    hyper::Response::builder()
                                        .status(answered)
                                        .body(Full::new(Bytes::new()))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, log, server })
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.log.lock().unwrap().clone()
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Waits (bounded) until `done` holds for the receiver's log.
async fn wait_for(
    receiver: &Receiver,
    what: &str,
    done: impl Fn(&[Arrival]) -> bool,
) -> Result<Vec<Arrival>> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let a = receiver.arrivals();
        if done(&a) {
            return Ok(a);
        }
        if Instant::now() > deadline {
            bail!("{what} not seen after {LIMIT:?}; arrivals: {a:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A new owner: a client with its key, its id and the key.
async fn owner(stack: &FullStack, name: &str) -> Result<(Client, talis_api::OwnerId, String)> {
    let admin = Client::new(&stack.api_url, Some(stack.admin_key.clone()))?;
    let user = admin
        .user_create(&UserCreate {
            username: name.into(),
            ..Default::default()
        })
        .await?;
    Ok((
        Client::new(&stack.api_url, Some(user.api_key.clone()))?,
        user.id,
        user.api_key,
    ))
}

async fn deliveries(client: &Client, webhook: talis_api::RowId) -> Result<Vec<WebhookDelivery>> {
    let page = client
        .webhook_deliveries(&WebhookDeliveries {
            webhook_id: webhook,
            status: None,
            owner_id: None,
            limit: Some(1000),
            cursor: None,
            page: None,
            offset: None,
        })
        .await?;
    Ok(page.rows)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn retried_messages_arrive_in_order_signed_and_once_across_a_workflows_kill() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut stack = FullStack::start(
        dir.path(),
        StackOptions {
            workflows_env: vec![
                ("TALIS_WEBHOOK_RETRY_INITIAL_MS".into(), "1000".into()),
                ("TALIS_WEBHOOK_RETRY_MAX_SECS".into(), "3".into()),
            ],
            ..StackOptions::default()
        },
    )
    .await?;
    let receiver = Receiver::start(IpAddr::from([127, 0, 0, 1]), 2).await?;
    let (alice, _, _) = owner(&stack, "alice").await?;
    let created = alice
        .webhook_create(&WebhookCreate {
            url: receiver.url(),
            events: vec![EventKind::ApiCall],
            ..Default::default()
        })
        .await?;
    let secret = Secret::parse(&created.secret).map_err(anyhow::Error::msg)?;
    // Three audited calls, three messages: the webhook's own creation, then two API keys.
    for name in ["first", "second"] {
        alice
            .apikey_create(&ApiKeyCreate {
                name: name.into(),
                ..Default::default()
            })
            .await?;
    }

    // The first attempt of the first message failed; its retry waits on a durable timer.
    wait_for(&receiver, "a first attempt", |a| !a.is_empty()).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.workflows.service.kill9().await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stack.workflows.service.restart().await?;

    let delivered = |a: &[Arrival]| a.iter().filter(|a| a.answered == 204).count();
    wait_for(&receiver, "three delivered messages", |a| delivered(a) >= 3).await?;
    // Nothing more comes once every message is delivered.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let arrivals = receiver.arrivals();

    let mut by_id: BTreeMap<&str, Vec<&Arrival>> = BTreeMap::new();
    for a in &arrivals {
        by_id.entry(&a.id).or_default().push(a);
    }
    assert_eq!(by_id.len(), 3, "{arrivals:#?}");
    for (id, tries) in &by_id {
        let answers: Vec<u16> = tries.iter().map(|a| a.answered).collect();
        assert!(tries.len() >= 3, "{id}: {answers:?}");
        assert_eq!(
            answers.iter().filter(|s| **s == 204).count(),
            1,
            "{id}: {answers:?}"
        );
        assert_eq!(
            answers.last(),
            Some(&204),
            "nothing after the success: {id}: {answers:?}"
        );
        for a in tries {
            assert!(
                secret.verify(
                    id,
                    &a.timestamp,
                    a.body.as_bytes(),
                    &a.signature,
                    now_secs(),
                    TOLERANCE_SECS
                ),
                "signature of {id}: {a:?}"
            );
            assert_eq!(a.body, tries[0].body, "the same body on every attempt");
        }
    }

    // In order, one at a time: each message's first attempt comes after the previous one's
    // success.
    let mut messages: Vec<&Vec<&Arrival>> = by_id.values().collect();
    messages.sort_by_key(|tries| tries[0].at);
    let methods: Vec<String> = messages
        .iter()
        .map(|tries| {
            let body: Value = serde_json::from_str(&tries[0].body).unwrap();
            assert_eq!(body["type"], "api.call");
            body["data"]["method"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        methods,
        ["webhook.create", "apikey.create", "apikey.create"]
    );
    for pair in messages.windows(2) {
        let done = pair[0].last().unwrap().at;
        assert!(
            pair[1][0].at > done,
            "a message started before the previous one was delivered"
        );
    }

    // The owner sees the same story.
    let rows = deliveries(&alice, created.webhook.id).await?;
    assert_eq!(rows.len(), 3);
    for d in &rows {
        assert_eq!(d.status, DeliveryStatus::Delivered, "{d:?}");
        assert_eq!(d.last_status, Some(204));
        assert!(d.attempts >= 3, "{d:?}");
        assert!(by_id.contains_key(d.message_id.as_str()), "{d:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_addresses_at_create_and_at_delivery_and_the_quota() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // A name pinned to 127.0.0.2: loopback, but not the allowed 127.0.0.1.
    let stack = FullStack::start(
        dir.path(),
        StackOptions {
            workflows_env: vec![("TALIS_WEBHOOK_RESOLVE".into(), "hook.test=127.0.0.2".into())],
            ..StackOptions::default()
        },
    )
    .await?;
    let receiver = Receiver::start(IpAddr::from([127, 0, 0, 2]), 0).await?;
    let (bob, bob_id, bob_key) = owner(&stack, "bob").await?;

    // Refused as written, without DNS and without any traffic.
    for url in [
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[fd00:ec2::254]/".to_owned(),
        "http://metadata.google.internal/computeMetadata/v1/".to_owned(),
        "http://10.0.0.1/hook".to_owned(),
        "http://192.168.1.10/hook".to_owned(),
        "http://100.64.0.1/hook".to_owned(),
        "http://[fe80::1]/hook".to_owned(),
        receiver.url(),
        format!("http://localhost:{}/hook", receiver.addr.port()),
        "ftp://example.com/".to_owned(),
    ] {
        let e = bob
            .webhook_create(&WebhookCreate {
                url: url.clone(),
                events: vec![EventKind::ApiCall],
                ..Default::default()
            })
            .await
            .expect_err(&url);
        let e = e.api().with_context(|| format!("{url}: {e}"))?;
        assert_eq!(
            (e.status, e.field()),
            (400, Some("url")),
            "{url}: {}",
            e.message
        );
    }

    // Accepted as written; refused where the name resolves, before any connection.
    let created = bob
        .webhook_create(&WebhookCreate {
            url: format!("http://hook.test:{}/hook", receiver.addr.port()),
            events: vec![EventKind::TaskStatus],
            ..Default::default()
        })
        .await?;
    let ping = bob
        .webhook_test(&WebhookRef {
            id: created.webhook.id,
            owner_id: None,
        })
        .await?;
    let deadline = Instant::now() + LIMIT;
    let failed = loop {
        let rows = deliveries(&bob, created.webhook.id).await?;
        if let Some(d) = rows
            .iter()
            .find(|d| d.id == ping.id && d.status == DeliveryStatus::Failed)
        {
            break d.clone();
        }
        if Instant::now() > deadline {
            bail!(
                "the ping was not failed after {LIMIT:?}: {rows:?}\n{}",
                stack.workflows.service.log_tail(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let error = failed.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("127.0.0.2") && error.contains("loopback"),
        "{error}"
    );
    assert!(error.contains("TALIS_WEBHOOK_ALLOW_HOSTS"), "{error}");
    assert_eq!(
        (failed.attempts, failed.last_status),
        (1, None),
        "{failed:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        receiver.arrivals().is_empty(),
        "the refused address was contacted"
    );

    // The CLI: create (the secret is shown once), list (never the secret), deliveries.
    let talis = |args: &[&str]| -> Result<Value> {
        let out = std::process::Command::new(talis_stack::bin("talis"))
            .args(args)
            .args(["-o", "json"])
            .env("TALIS_API_URL", &stack.api_url)
            .env("TALIS_API_KEY", &bob_key)
            .env("TALIS_CONFIG", dir.path().join("no-config.toml"))
            .output()?;
        if !out.status.success() {
            bail!("talis {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let other = format!("http://127.0.0.1:{}/other", receiver.addr.port());
    let made = talis(&[
        "webhook",
        "create",
        "--url",
        &other,
        "-e",
        "api.call,task.status",
    ])?;
    assert!(
        made["secret"]
            .as_str()
            .unwrap_or_default()
            .starts_with("whsec_"),
        "{made}"
    );
    assert_eq!(made["events"], json!(["task.status", "api.call"]));
    let listed = talis(&["webhook", "list"])?;
    assert_eq!(listed["rows"].as_array().map(Vec::len), Some(2), "{listed}");
    for secret in [&created.secret, made["secret"].as_str().unwrap_or_default()] {
        assert!(!listed.to_string().contains(secret), "{listed}");
    }
    let id = created.webhook.id.to_string();
    let shown = talis(&["webhook", "deliveries", &id, "--status", "failed"])?;
    assert_eq!(shown["rows"][0]["id"], json!(ping.id), "{shown}");

    // The quota names itself.
    let admin = Client::new(&stack.api_url, Some(stack.admin_key.clone()))?;
    admin
        .quota_set(&QuotaSet {
            owner_id: bob_id,
            max_instances: None,
            max_projects: None,
            max_api_keys: None,
            max_ssh_keys: None,
            max_webhooks: Some(2),
        })
        .await?;
    let e = bob
        .webhook_create(&WebhookCreate {
            url: other.clone(),
            events: vec![EventKind::ApiCall],
            ..Default::default()
        })
        .await
        .expect_err("over quota");
    let e = e.api().context("an API error")?;
    assert_eq!(e.status, 403, "{}", e.message);
    assert!(
        e.message.contains("max_webhooks_per_owner"),
        "{}",
        e.message
    );

    // Deleting empties the list.
    talis(&["webhook", "delete", &id])?;
    bob.webhook_delete(&WebhookRef {
        id: serde_json::from_value(made["id"].clone())?,
        owner_id: None,
    })
    .await?;
    assert!(
        bob.webhook_list(&OwnerList::default())
            .await?
            .rows
            .is_empty()
    );
    Ok(())
}
