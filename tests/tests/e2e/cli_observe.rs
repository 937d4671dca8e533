//! `talis events` (a page, `--follow` on the long-poll), the `task get` summary and
//! `talis quota`, against talis-host running the real API component (no workflow engine, so
//! tasks stay pending until terminated).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use talis_stack::host::{self, Host, HostOptions};

const ADMIN_KEY: &str = "cli-observe-admin-key-of-at-least-32-chars";
/// Longest a `talis` run may take here.
const RUN_LIMIT: Duration = Duration::from_secs(60);

async fn api(dir: &Path) -> Result<Host> {
    let mut opts = HostOptions::new(talis_stack::workspace_root().join("spin.toml"), "/health")
        .variable("admin_api_key", ADMIN_KEY)
        .variable("internal_secret", "cli-observe-internal-secret-of-32-chars")
        .variable("restate_ingress_url", "")
        .variable("public_url", "http://127.0.0.1:1");
    opts.state_dir = Some(dir.join("spin"));
    host::start(&opts, dir).await
}

fn talis_bin() -> PathBuf {
    let bin = talis_stack::bin("talis");
    assert!(
        bin.exists(),
        "{} missing: run `cargo xtask build`",
        bin.display()
    );
    bin
}

fn talis(url: &str, key: &str, home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(talis_bin());
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("TALIS_API_URL", url)
        .env("TALIS_API_KEY", key)
        .args(args);
    c
}

/// Runs `talis` to the end (bounded); stdout.
fn run(mut c: Command) -> Result<String> {
    let out = c.output()?;
    ensure!(
        out.status.success(),
        "{c:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

async fn call(host: &Host, key: &str, method: &str, params: Value) -> Result<Value> {
    let r: Value = reqwest::Client::new()
        .post(host.url(&format!("/v1/{method}")))
        .bearer_auth(key)
        .json(&params)
        .send()
        .await?
        .json()
        .await?;
    ensure!(r["success"] == true, "{method}: {r}");
    Ok(r["data"].clone())
}

/// `--follow` prints the task's history as JSON lines, then each new event as it is written,
/// and ends when the task finishes; `-o table` prints one line per event instead.
#[tokio::test(flavor = "multi_thread")]
async fn events_follow_a_task_until_it_finishes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let host = api(dir.path()).await?;
    let created = call(
        &host,
        ADMIN_KEY,
        "project.create",
        json!({ "name": "followed", "instances": [{ "provider": "do", "region": "nyc3",
                 "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64", "number_of_instances": 2,
                 "name": "f" }] }),
    )
    .await?;
    let task = created["task_id"].as_i64().context("task_id")?;
    let task_arg = task.to_string();
    let mut follow = talis(
        &host.base_url,
        ADMIN_KEY,
        dir.path(),
        &["-o", "json", "events", "--task", &task_arg, "--follow"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()?;
    let mut lines = BufReader::new(follow.stdout.take().context("stdout")?).lines();
    // The history first: the task's creation.
    let first: Value = serde_json::from_str(&lines.next().context("no first line")??)?;
    assert_eq!(first["kind"], "task.status", "{first}");
    assert_eq!(first["data"]["to"], "pending", "{first}");

    call(
        &host,
        ADMIN_KEY,
        "task.terminate",
        json!({ "task_id": task }),
    )
    .await?;
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(s) = follow.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            follow.kill()?;
            anyhow::bail!("`talis events --follow` did not end after the task finished");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let rest: Vec<Value> = lines
        .map(|l| Ok(serde_json::from_str(&l?)?))
        .collect::<Result<_>>()?;
    let last = rest.last().context("nothing after the history")?;
    assert_eq!(last["kind"], "task.status", "{rest:?}");
    assert_eq!(last["data"]["to"], "terminated", "{rest:?}");

    // One line per event in table form, e.g. "… #2 task.status [project followed task 1]: pending → terminated".
    let text = run(talis(
        &host.base_url,
        ADMIN_KEY,
        dir.path(),
        &["-o", "table", "events", "--task", &task_arg, "--follow"],
    ))?;
    assert!(
        text.lines()
            .any(|l| l.contains("task.status") && l.contains("pending → terminated")),
        "{text}"
    );

    // A page, filtered by kind: the audit trail of the calls above.
    let page: Value = serde_json::from_str(&run(talis(
        &host.base_url,
        ADMIN_KEY,
        dir.path(),
        &["-o", "json", "events", "--kind", "api.call"],
    ))?)?;
    let methods: Vec<&str> = page["rows"]
        .as_array()
        .context("rows")?
        .iter()
        .filter_map(|e| e["data"]["method"].as_str())
        .collect();
    assert_eq!(methods, ["project.create", "task.terminate"]);
    Ok(())
}

/// `talis task get` on a terminal-like table output shows the summary; `--logs` the history;
/// JSON keeps the task object.
#[tokio::test(flavor = "multi_thread")]
async fn task_get_summarises_and_quota_commands_work() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let host = api(dir.path()).await?;
    let created = call(
        &host,
        ADMIN_KEY,
        "project.create",
        json!({ "name": "summed", "instances": [{ "provider": "do", "region": "nyc3",
                 "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64", "number_of_instances": 3,
                 "name": "s" }] }),
    )
    .await?;
    let task = created["task_id"].as_i64().context("task_id")?.to_string();
    let summary = run(talis(
        &host.base_url,
        ADMIN_KEY,
        dir.path(),
        &["-o", "table", "task", "get", &task],
    ))?;
    for want in [
        &format!("task {task} create_instances · pending · project summed"),
        "instances  0/3 settled · pending 3",
        "duration",
        "workflow   not started yet",
        "last 1 of 1 events",
    ] {
        assert!(summary.contains(want), "{want:?} missing from:\n{summary}");
    }
    let logs = run(talis(
        &host.base_url,
        ADMIN_KEY,
        dir.path(),
        &["-o", "table", "task", "get", &task, "--logs"],
    ))?;
    assert!(logs.contains("task: pending"), "{logs}");
    let json: Value = serde_json::from_str(&run(talis(
        &host.base_url,
        ADMIN_KEY,
        dir.path(),
        &["task", "get", &task],
    ))?)?;
    assert_eq!(json["ID"].as_i64().map(|i| i.to_string()), Some(task));

    let user = call(&host, ADMIN_KEY, "user.create", json!({ "username": "q" })).await?;
    let owner = user["id"].to_string();
    let set: Value = serde_json::from_str(&run(talis(
        &host.base_url,
        ADMIN_KEY,
        dir.path(),
        &["quota", "set", &owner, "--max-projects", "7"],
    ))?)?;
    assert_eq!(set["limits"]["max_projects"], 7, "{set}");
    let got: Value = serde_json::from_str(&run(talis(
        &host.base_url,
        user["api_key"].as_str().context("api_key")?,
        dir.path(),
        &["quota", "get"],
    ))?)?;
    assert_eq!(got["limits"]["max_projects"], 7, "{got}");
    assert_eq!(got["used"]["max_projects"], 0, "{got}");
    Ok(())
}
