//! Watching the fleet, end to end on loopback: the event long-poll's wake-up, the workflows'
//! metrics and JSON logs, the API's fleet metrics (admin only), readiness with the schema
//! version, and the audit trail naming the API key and request of a call.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use talis_client::Client;
use talis_client::wire::events::{EventBody, EventKind, EventList};
use talis_client::wire::*;
use talis_e2e::metrics::sample;
use talis_stack::host::{self, HostOptions};
use talis_stack::workflows::{FullStack, Options, StackOptions, Workflows};

const ADMIN_KEY: &str = "observe-admin-key-of-at-least-32-characters";
const INTERNAL_SECRET: &str = "observe-internal-secret-of-at-least-32-chars";
const TASK_LIMIT: Duration = Duration::from_secs(90);
/// The long-poll's deadline: it looks every 50 ms (`LONG_POLL_EVERY`), so this leaves 150 ms
/// for the write's own request, the look's query and the answer on a loaded machine.
const WAKE_DEADLINE: Duration = Duration::from_millis(200);

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client")
}

fn client(base: &str, key: &str) -> Result<Client> {
    Ok(Client::builder(base)
        .api_key(key)
        .timeout(Duration::from_secs(60))
        .build()?)
}

async fn scrape(url: &str, key: Option<&str>) -> Result<prometheus_parse::Scrape> {
    let mut req = http().get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    talis_e2e::metrics::parse(req.send().await?).await
}

fn instances(n: u32) -> Value {
    json!([{ "provider": "do", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64",
             "number_of_instances": n, "name": "obs", "provision": true,
             "payload": "#!/bin/sh\necho hello\n" }])
}

/// The API component alone on talis-host (no workflow engine), with `sqlite` run first.
async fn api_alone(dir: &std::path::Path, sqlite: &[&str]) -> Result<host::Host> {
    let mut opts = HostOptions::new(talis_stack::workspace_root().join("spin.toml"), "/health")
        .variable("admin_api_key", ADMIN_KEY)
        .variable("internal_secret", INTERNAL_SECRET)
        .variable("public_url", "http://127.0.0.1:1")
        .variable("restate_ingress_url", "");
    opts.state_dir = Some(dir.join("spin"));
    opts.sqlite = sqlite.iter().map(|s| s.to_string()).collect();
    host::start(&opts, dir)
        .await
        .context("starting talis-host with the API component")
}

/// `event.list` with `wait_ms` answers within [`WAKE_DEADLINE`] of the write it waits for,
/// measured from sending the write (a `task.terminate`: pending → terminated, no workflow
/// engine) to receiving the long-poll's answer. Five rounds; the median is held to the deadline
/// and every round must see its own event.
#[tokio::test(flavor = "multi_thread")]
async fn long_poll_answers_within_200ms_of_the_write() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let api = api_alone(dir.path(), &[]).await?;
    let admin = client(&api.base_url, ADMIN_KEY)?;
    let mut took = Vec::new();
    for round in 0..5 {
        let created = admin
            .call_raw::<methods::public::ProjectCreate>(
                &json!({ "name": format!("poll-{round}"), "instances": instances(1) }),
            )
            .await?;
        let task = created.task_id.context("a task")?;
        let seen = admin
            .event_list(&EventList {
                task_id: Some(task),
                limit: Some(1000),
                ..EventList::default()
            })
            .await?;
        let after = seen.rows.last().map(|e| e.id.to_string());
        let waiting = {
            let admin = admin.clone();
            tokio::spawn(async move {
                let page = admin
                    .event_list(&EventList {
                        task_id: Some(task),
                        after,
                        wait_ms: Some(10_000),
                        ..EventList::default()
                    })
                    .await;
                (page, Instant::now())
            })
        };
        // Let the long-poll start waiting (it answers at once if it is late: no false pass).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = Instant::now();
        admin.task_terminate(&TaskRef::new(task)).await?;
        let (page, answered) = waiting.await?;
        let page = page?;
        let first = page.rows.first().context("the long-poll answered empty")?;
        ensure!(
            matches!(&first.body, EventBody::TaskStatus(d) if d.to == TaskStatus::Terminated),
            "round {round}: woke on {first:?}"
        );
        took.push(answered.saturating_duration_since(sent));
    }
    took.sort();
    eprintln!("long-poll wake-up after the write, 5 rounds: {took:?}");
    assert!(
        took[2] <= WAKE_DEADLINE,
        "median wake-up {:?} over the {WAKE_DEADLINE:?} deadline (all: {took:?})",
        took[2]
    );
    Ok(())
}

/// `GET /ready` reports the schema version the database is at and the one the build expects;
/// a database whose schema cannot be prepared (a foreign `users` table) answers 503 with why.
#[tokio::test(flavor = "multi_thread")]
async fn ready_reports_the_schema_version_and_503_when_it_cannot_be_prepared() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let api = api_alone(dir.path(), &[]).await?;
    let r = http().get(api.url("/ready")).send().await?;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await?;
    assert_eq!(body["status"], "ready", "{body}");
    let version = body["schema_version"].as_i64().context("schema_version")?;
    assert!(version > 0, "{body}");
    assert_eq!(body["latest_schema_version"].as_i64(), Some(version));
    let db = rusqlite::Connection::open(dir.path().join("spin/sqlite_db.db"))?;
    let user_version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    assert_eq!(user_version, version);
    // Liveness stays what it was.
    assert_eq!(http().get(api.url("/health")).send().await?.status(), 200);

    let broken = tempfile::tempdir()?;
    let api = api_alone(broken.path(), &["CREATE TABLE users (x TEXT)"]).await?;
    let r = http().get(api.url("/ready")).send().await?;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await?;
    assert_eq!(body["status"], "not ready", "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("migration 1"),
        "{body}"
    );
    Ok(())
}

/// The workflows alone with `TALIS_LOG_FORMAT=json`: every log line is one JSON object, and the
/// metrics listener serves liveness and Prometheus text with the series that exist from the
/// start.
#[tokio::test(flavor = "multi_thread")]
async fn workflows_log_json_and_serve_metrics_and_health() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut opts = Options::new(
        "http://127.0.0.1:9",
        INTERNAL_SECRET,
        "http://127.0.0.1:9",
        "tok",
    );
    opts.env = vec![
        ("TALIS_LOG_FORMAT".into(), "json".into()),
        ("RUST_LOG".into(), "debug,restate_sdk=debug".into()),
    ];
    let wf = Workflows::start(&opts, dir.path()).await?;
    let health = http().get(wf.metrics_url("/health")).send().await?;
    assert_eq!(health.status(), 200);
    let m = scrape(&wf.metrics_url("/metrics"), None).await?;
    assert_eq!(
        sample(
            &m,
            "talis_provider_rate_limit_wait_seconds_total",
            &[("by", "workflow")]
        ),
        0.0
    );
    assert!(
        m.docs.contains_key("talis_workflow_tasks_active"),
        "{:?}",
        m.docs
    );
    assert_eq!(
        http().get(wf.metrics_url("/nope")).send().await?.status(),
        404
    );
    let log = std::fs::read_to_string(&wf.service.spec.log)?;
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(lines.len() >= 2, "too few log lines:\n{log}");
    for l in &lines {
        let v: Value = serde_json::from_str(l).with_context(|| format!("not JSON: {l}"))?;
        ensure!(
            v["level"].is_string() && v["timestamp"].is_string() && v["message"].is_string(),
            "{l}"
        );
        // Secrets never reach the log.
        ensure!(!l.contains("s3cret") && !l.contains("\"tok\""), "{l}");
    }
    assert!(
        lines.iter().any(|l| l.contains("metrics on http://")),
        "{log}"
    );
    Ok(())
}

/// A create made with an owner's second API key: its audit event names that key, the request id
/// the client sent (answered in `x-request-id`) and the owner; the workflows count the provider
/// calls it made, by endpoint template; the fleet metrics are admin-only and count its
/// instances; the OpenAPI document describes both operators' routes.
#[tokio::test(flavor = "multi_thread")]
async fn a_create_is_audited_with_its_key_and_counted_in_the_metrics() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let stack = FullStack::start(dir.path(), StackOptions::default()).await?;
    let admin = client(&stack.api_url, &stack.admin_key)?;
    let user = admin
        .user_create(&UserCreate {
            username: "watcher".into(),
            ..UserCreate::default()
        })
        .await?;
    let first = client(&stack.api_url, &user.api_key)?;
    let second = first
        .apikey_create(&ApiKeyCreate {
            name: "ci".into(),
            owner_id: None,
        })
        .await?;
    let before = scrape(&stack.workflows.metrics_url("/metrics"), None).await?;
    let creates = |s: &prometheus_parse::Scrape| {
        sample(
            s,
            "talis_provider_requests_total",
            &[("method", "POST"), ("endpoint", "/v2/droplets")],
        )
    };

    let r = http()
        .post(format!("{}/v1/project.create", stack.api_url))
        .bearer_auth(&second.api_key)
        .header("x-request-id", "observe-req-1")
        .json(&json!({ "name": "audited", "instances": instances(3) }))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("observe-req-1")
    );
    let created: Value = r.json().await?;
    let task = TaskId::new(created["data"]["task_id"].as_i64().context("task_id")?)
        .context("a task id")?;

    let calls = first
        .event_list(&EventList {
            kinds: Some(vec![EventKind::ApiCall]),
            ..EventList::default()
        })
        .await?;
    let audit = calls
        .rows
        .iter()
        .find_map(|e| match &e.body {
            EventBody::ApiCall(d) if d.method == "project.create" => Some(d.clone()),
            _ => None,
        })
        .context("no api.call event of the create")?;
    assert_eq!(audit.key_id, Some(second.key.id));
    assert_eq!(audit.key_prefix, second.key.prefix);
    assert_eq!(audit.request_id, "observe-req-1");
    assert_eq!(audit.owner_id, user.id);
    assert_eq!(audit.target["name"], "audited");
    // The key itself is never recorded.
    assert!(!serde_json::to_string(&calls)?.contains(&second.api_key));

    let deadline = Instant::now() + TASK_LIMIT;
    loop {
        let t = first.task_get(&TaskRef::new(task)).await?;
        if t.status.is_terminal() {
            assert_eq!(t.status, TaskStatus::Completed, "{}", t.logs);
            break;
        }
        ensure!(Instant::now() < deadline, "task not finished: {}", t.logs);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let after = scrape(&stack.workflows.metrics_url("/metrics"), None).await?;
    assert!(
        creates(&after) > creates(&before),
        "no droplet create counted: {:?}",
        after.samples
    );
    for s in after
        .samples
        .iter()
        .filter(|s| s.metric.starts_with("talis_provider_request"))
    {
        let endpoint = s.labels.get("endpoint").unwrap_or_default();
        // Templates only: no raw id in any path segment.
        ensure!(
            endpoint.starts_with("/v2/")
                && endpoint
                    .split('/')
                    .all(|seg| seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_digit())),
            "endpoint label {endpoint:?}"
        );
    }
    assert!(
        sample(
            &after,
            "talis_workflow_step_duration_seconds_count",
            &[("step", "ensure machines"), ("outcome", "ok")]
        ) >= 1.0,
        "{:?}",
        after.samples
    );
    assert_eq!(
        sample(&after, "talis_workflow_tasks_active", &[]),
        0.0,
        "the task is over"
    );

    let fleet = format!("{}/api/v1/metrics", stack.api_url);
    assert_eq!(http().get(&fleet).send().await?.status(), 401);
    let as_user = http().get(&fleet).bearer_auth(&user.api_key).send().await?;
    assert_eq!(as_user.status(), 403);
    let m = scrape(&fleet, Some(&stack.admin_key)).await?;
    assert_eq!(
        sample(
            &m,
            "talis_fleet_instances",
            &[("status", "ready"), ("provider", "do")]
        ),
        3.0
    );
    assert_eq!(
        sample(&m, "talis_fleet_instances", &[("status", "failed")]),
        0.0
    );
    assert_eq!(
        sample(&m, "talis_fleet_tasks", &[("status", "completed")]),
        1.0
    );

    let doc: Value = http()
        .get(format!("{}/api/v1/openapi.json", stack.api_url))
        .send()
        .await?
        .json()
        .await?;
    let op = &doc["paths"]["/api/v1/metrics"]["get"];
    for code in ["200", "401", "403"] {
        assert!(op["responses"].get(code).is_some(), "{op}");
    }
    assert!(
        doc["paths"]["/ready"]["get"]["responses"]
            .get("503")
            .is_some()
    );
    Ok(())
}
