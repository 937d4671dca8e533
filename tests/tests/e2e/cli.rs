//! The `talis` binary against the real stack: talis-host running the real API component on a
//! real SQLite file (tasks stay queued: no Restate), and the full stack (Restate, workflows, fake
//! cloud) where `--wait` needs tasks to run. Covers file inputs, JSON and table output, `--wait`
//! exit statuses and error messages.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use assert_cmd::Command;
use serde_json::{Value, json};
use talis_e2e::api::ADMIN_KEY;
use talis_stack::workflows::{FullStack, StackOptions};

/// Upper bound of one CLI run against a local API (a `--wait` run sets its own).
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The API alone: host + component + SQLite in a temp dir (tasks stay queued: no Restate).
struct Api(talis_e2e::api::Api);

async fn api() -> Result<Api> {
    Ok(Api(talis_e2e::api::Api::start().await?))
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

/// `talis` with the API URL and key in the environment and no config file of the user's.
fn talis(url: &str, key: Option<&str>, home: &Path) -> Command {
    let mut c = Command::new(talis_bin());
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("TALIS_API_URL", url)
        .timeout(RUN_LIMIT);
    if let Some(k) = key {
        c.env("TALIS_API_KEY", k);
    }
    c
}

impl Api {
    /// The test's directory: the CLI's HOME and where its files are written.
    fn dir(&self) -> &Path {
        self.0.dir.path()
    }

    fn base_url(&self) -> &str {
        &self.0.host.base_url
    }

    fn talis(&self, key: Option<&str>) -> Command {
        talis(self.base_url(), key, self.dir())
    }

    fn admin(&self) -> Command {
        self.talis(Some(ADMIN_KEY))
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn json_out(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn instance(n: u32, extra: Value) -> Value {
    let mut r = json!({
        "provider": "do",
        "region": "nyc3",
        "size": "s-1vcpu-1gb",
        "image": "ubuntu-24-04-x64",
        "number_of_instances": n,
        "name": "node",
    });
    if let (Value::Object(r), Value::Object(e)) = (&mut r, extra) {
        r.extend(e);
    }
    r
}

#[tokio::test]
async fn project_create_from_file_then_json_and_table_output() -> Result<()> {
    let api = api().await?;
    let file = api.write(
        "create.json",
        &json!({"name": "alpha", "description": "three nodes", "instances": [instance(3, json!({}))]})
            .to_string(),
    );
    // Piped stdout: JSON by default.
    let out = api
        .admin()
        .args(["project", "create", "-f"])
        .arg(&file)
        .output()?;
    assert!(out.status.success(), "{}", stderr(&out));
    let created = json_out(&out);
    assert_eq!(created["name"], "alpha");
    assert_eq!(created["instance_ids"].as_array().map(Vec::len), Some(3));
    let task_id = created["task_id"].as_i64().expect("a create task");

    let out = api.admin().args(["project", "list"]).output()?;
    let list = json_out(&out);
    assert_eq!(list["rows"][0]["name"], "alpha");

    let out = api
        .admin()
        .args(["-o", "table", "project", "instances", "alpha"])
        .output()?;
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATUS"),
        "{table}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("pending")).count(),
        3,
        "{table}"
    );
    assert!(
        table.contains("node-1") && table.contains("3 of 3 shown"),
        "{table}"
    );

    let out = api
        .admin()
        .args(["-o", "table", "task", "get", &task_id.to_string()])
        .output()?;
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        table.contains("create_instances") && table.contains("pending"),
        "{table}"
    );

    // The typed route answers the same as the envelope route.
    let envelope = json_out(&api.admin().args(["project", "get", "alpha"]).output()?);
    let typed = json_out(
        &api.admin()
            .args(["--route", "typed", "project", "get", "alpha"])
            .output()?,
    );
    assert_eq!(envelope, typed);
    Ok(())
}

#[tokio::test]
async fn original_create_json_and_delete_json_round_trip() -> Result<()> {
    let api = api().await?;
    api.admin()
        .args(["project", "create", "--name", "legacy"])
        .assert()
        .success();
    api.write("start.sh", "#!/bin/sh\necho up\n");
    // The original CLI's create.json: an array, a server-side payload_path (read locally now).
    let file = api.write(
        "create.json",
        &json!([instance(
            2,
            json!({
                "project_name": "legacy", "provision": true,
                "payload_path": "start.sh", "execute_payload": true, "ssh_key_name": ""
            })
        )])
        .to_string(),
    );
    let out = api
        .admin()
        .args(["infra", "create", "-f"])
        .arg(&file)
        .output()?;
    assert!(out.status.success(), "{}", stderr(&out));
    let created = json_out(&out);
    let ids: Vec<i64> = created["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["ID"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);

    // It wrote delete-legacy-<ts>.json next to create.json, in the original's shape.
    let delete_file = std::fs::read_dir(api.dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("delete-legacy-")
        })
        .expect("a delete file");
    let delete: Value = serde_json::from_str(&std::fs::read_to_string(&delete_file)?)?;
    assert_eq!(delete["project_name"], "legacy");
    assert_eq!(delete["instance_ids"], json!(ids));
    assert!(stderr(&out).contains("talis infra delete -f"));

    let out = api
        .admin()
        .args(["infra", "delete", "-f"])
        .arg(&delete_file)
        .output()?;
    assert!(out.status.success(), "{}", stderr(&out));
    let queued = json_out(&out);
    assert_eq!(queued["instance_ids"], json!(ids));
    Ok(())
}

#[tokio::test]
async fn bad_input_is_one_line_naming_the_field_and_writes_nothing() -> Result<()> {
    let api = api().await?;
    let file = api.write(
        "bad.json",
        &json!({"name": "broken", "instances": [instance(2, json!({})), instance(1, json!({"provider": "aws"}))]})
            .to_string(),
    );
    let out = api
        .admin()
        .args(["project", "create", "-f"])
        .arg(&file)
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("error: ")
            && err.contains("instances[1].provider")
            && err.contains("HTTP 400"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // All-or-nothing: the project does not exist.
    let out = api.admin().args(["project", "get", "broken"]).output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("HTTP 404"), "{}", stderr(&out));

    // Not JSON at all: named by the CLI, with the file name.
    let file = api.write("nojson.json", "{\"name\": ");
    let out = api
        .admin()
        .args(["project", "create", "-f"])
        .arg(&file)
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("nojson.json is not valid JSON"),
        "{}",
        stderr(&out)
    );

    // A usage mistake is clap's exit status 2.
    api.admin()
        .args(["task", "get", "not-a-number"])
        .assert()
        .code(2);
    Ok(())
}

#[tokio::test]
async fn auth_and_connection_errors_say_what_to_do() -> Result<()> {
    let api = api().await?;
    let out = api.talis(None).args(["project", "list"]).output()?;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("HTTP 401") && err.contains("TALIS_API_KEY"),
        "{err}"
    );

    let out = api
        .talis(Some("wrong-key"))
        .args(["project", "list"])
        .output()?;
    assert!(stderr(&out).contains("HTTP 401"));

    let dead = format!("http://127.0.0.1:{}", talis_stack::free_port());
    let out = talis(&dead, Some(ADMIN_KEY), api.dir())
        .args(["project", "list"])
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cannot connect") && err.contains("is the API running?"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    Ok(())
}

#[tokio::test]
async fn config_file_supplies_url_and_key_and_flags_win() -> Result<()> {
    let api = api().await?;
    let config = api.dir().join("talis.toml");
    let bare = || {
        let mut c = Command::new(talis_bin());
        c.env_clear()
            .env("HOME", api.dir())
            .env("TALIS_CONFIG", &config)
            .timeout(RUN_LIMIT);
        c
    };
    bare()
        .args(["config", "set", "--url", api.base_url(), "--key", ADMIN_KEY])
        .assert()
        .success();
    let out = bare().args(["project", "list"]).output()?;
    assert!(out.status.success(), "{}", stderr(&out));
    // The key is never shown in full.
    let shown = String::from_utf8(
        bare()
            .args(["-o", "json", "config", "show"])
            .output()?
            .stdout,
    )?;
    assert!(
        !shown.contains(ADMIN_KEY) && shown.contains(api.base_url()),
        "{shown}"
    );
    // A flag beats the file.
    let out = bare()
        .args(["--api-key", "other", "project", "list"])
        .output()?;
    assert!(stderr(&out).contains("HTTP 401"));
    Ok(())
}

#[tokio::test]
async fn users_ssh_keys_and_api_keys() -> Result<()> {
    let api = api().await?;
    let user = json_out(
        &api.admin()
            .args(["user", "create", "-u", "ada", "-e", "ada@example.com"])
            .output()?,
    );
    let key = user["api_key"].as_str().expect("a key").to_string();
    // The new user works with its own key; another user does not see its projects.
    api.talis(Some(&key))
        .args(["project", "create", "--name", "mine"])
        .assert()
        .success();
    let bob = json_out(&api.admin().args(["user", "create", "-u", "bob"]).output()?);
    let bobs = json_out(
        &api.talis(bob["api_key"].as_str())
            .args(["project", "list"])
            .output()?,
    );
    assert_eq!(bobs["rows"], json!([]), "bob sees: {bobs}");
    let adas = json_out(&api.talis(Some(&key)).args(["project", "list"]).output()?);
    assert_eq!(adas["rows"][0]["name"], "mine");

    // The API parses keys: a real one, as `ssh-keygen` writes it (with the trailing newline).
    let pubkey = api.write(
        "id.pub",
        &format!("{}\n", talis_e2e::keys::ed25519(1, "ada@laptop")),
    );
    api.talis(Some(&key))
        .args(["sshkey", "add", "-n", "laptop", "-k"])
        .arg(&pubkey)
        .assert()
        .success();
    let out = api
        .talis(Some(&key))
        .args(["-o", "table", "sshkey", "list"])
        .output()?;
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .to_string()
            .contains("laptop")
    );
    let out = api
        .talis(Some(&key))
        .args(["sshkey", "add", "-n", "bad", "--public-key", "not a key"])
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("public_key"), "{}", stderr(&out));

    let created = json_out(
        &api.talis(Some(&key))
            .args(["apikey", "create", "-n", "ci"])
            .output()?,
    );
    let second = created["api_key"].as_str().unwrap();
    api.talis(Some(second))
        .args(["project", "get", "mine"])
        .assert()
        .success();
    api.talis(Some(&key))
        .args(["apikey", "revoke", &created["ID"].to_string()])
        .assert()
        .success();
    let out = api
        .talis(Some(second))
        .args(["project", "get", "mine"])
        .output()?;
    assert!(stderr(&out).contains("HTTP 401"), "revoked key still works");

    // Only an admin creates users.
    let out = api
        .talis(Some(&key))
        .args(["user", "create", "-u", "eve"])
        .output()?;
    assert!(stderr(&out).contains("HTTP 403"), "{}", stderr(&out));
    Ok(())
}

#[test]
fn completions_need_no_server() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(talis_bin())
            .args(["completions", shell])
            .timeout(RUN_LIMIT)
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("talis") && text.contains("infra"), "{shell}");
    }
}

// ---- with the workflows: --wait ----

/// A CLI run that waits for a task; bounded well above what the fake cloud needs.
fn waiting(stack: &FullStack) -> Command {
    let mut c = talis(&stack.api_url, Some(&stack.admin_key), &stack.dir);
    c.timeout(Duration::from_secs(180));
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_exits_zero_when_every_instance_is_ready_then_delete_waits_too() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let stack = FullStack::start(dir.path(), StackOptions::default()).await?;
    let file = dir.path().join("create.json");
    std::fs::write(
        &file,
        json!({"name": "waited", "instances": [instance(5, json!({}))]}).to_string(),
    )?;
    let out = waiting(&stack)
        .args(["project", "create", "--wait", "-f"])
        .arg(&file)
        .output()?;
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        stderr(&out)
    );
    let task = json_out(&out);
    assert_eq!(task["status"], "completed");
    assert_eq!(task["failed_instances"], json!([]));
    // Piped: progress as plain lines on stderr, ending with every instance ready.
    assert!(
        stderr(&out).contains("5/5 settled · ready 5"),
        "{}",
        stderr(&out)
    );

    let list = json_out(
        &waiting(&stack)
            .args(["instance", "list", "-p", "waited"])
            .output()?,
    );
    assert!(
        list["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "ready" && i["public_ip"] != "")
    );

    // Watching a finished task reports it again with the same exit status.
    let id = task["ID"].to_string();
    waiting(&stack)
        .args(["task", "watch", &id])
        .assert()
        .success();

    let out = waiting(&stack)
        .args(["project", "delete", "waited", "--wait"])
        .output()?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stack.fake_stats().await?["droplets"]["live"], 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_exits_three_and_lists_failures_with_the_provider_message() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let stack = FullStack::start(dir.path(), StackOptions::default()).await?;
    let file = dir.path().join("create.json");
    // An unknown size passes the API's checks but the provider rejects it (422).
    std::fs::write(
        &file,
        json!({"name": "doomed", "instances": [instance(2, json!({"size": "no-such-size"}))]})
            .to_string(),
    )?;
    let out = waiting(&stack)
        .args(["-o", "table", "project", "create", "--wait", "-f"])
        .arg(&file)
        .output()?;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(table.contains("failed"), "{table}");
    assert!(table.contains("2 instance(s) failed"), "{table}");
    let failures: Vec<&str> = table.lines().filter(|l| l.contains("✗ node-")).collect();
    assert_eq!(failures.len(), 2, "{table}");
    assert!(
        failures.iter().all(|l| l.contains("422")),
        "provider message missing: {table}"
    );
    assert!(
        stderr(&out).contains("✗ node-"),
        "failures are reported live too"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn task_terminate_wait_exits_zero_once_the_task_is_stopped() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Machines take long to boot, so the task is still running when it is stopped.
    let slow = "boot_delay_ms = 30000\nboot_jitter_ms = 0\nip_delay_ms = 0\n\
                rate_limit_per_minute = 4294967295\nrate_limit_per_hour = 4294967295\n";
    let stack = FullStack::start(
        dir.path(),
        StackOptions {
            fake_config: Some(slow.into()),
            ..StackOptions::default()
        },
    )
    .await?;
    let file = dir.path().join("create.json");
    std::fs::write(
        &file,
        json!({"name": "stopped", "instances": [instance(3, json!({}))]}).to_string(),
    )?;
    let created = json_out(
        &waiting(&stack)
            .args(["project", "create", "-f"])
            .arg(&file)
            .output()?,
    );
    let id = created["task_id"].to_string();
    let out = waiting(&stack)
        .args(["task", "terminate", &id, "--wait"])
        .output()?;
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        stderr(&out)
    );
    assert_eq!(json_out(&out)["status"], "terminated");
    // Watching it afterwards (not as a stop) reports that it did not complete.
    waiting(&stack)
        .args(["task", "watch", &id])
        .assert()
        .code(3);
    Ok(())
}
