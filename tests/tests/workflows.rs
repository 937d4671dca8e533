//! End-to-end tests of the durable task execution: real restate-server, real talis-workflows,
//! real talis-host running the API component, real fake cloud, all on loopback.

use std::time::Duration;

use anyhow::Result;
use talis_stack::restate::{Ports, Restate};
use talis_stack::workflows::{Options, Workflows};

/// restate-server starts under a project-local state dir on loopback ports, the workflows
/// endpoint starts, and its registration exposes the TaskWorkflow handlers.
#[tokio::test(flavor = "multi_thread")]
async fn restate_and_workflows_start_and_register() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let restate = Restate::start(&dir.path().join("restate"), dir.path(), Ports::free()).await?;
    let opts = Options::new("http://127.0.0.1:9", "s3cret", "http://127.0.0.1:9", "tok");
    let wf = Workflows::start(&opts, dir.path()).await?;
    restate.register(&wf.url()).await?;
    // Registering again (e.g. after a restart) is accepted.
    restate.register(&wf.url()).await?;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let services: serde_json::Value = http
        .get(format!("{}/services/TaskWorkflow", restate.admin_url()))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut handlers: Vec<String> = services["handlers"]
        .as_array()
        .expect("handlers")
        .iter()
        .map(|h| h["name"].as_str().unwrap_or_default().to_string())
        .collect();
    handlers.sort();
    assert_eq!(handlers, ["cancel", "phone_home", "run", "status"]);
    assert_eq!(services["ty"], "Workflow");

    // The UI is served by the admin port.
    let ui = http.get(restate.ui_url()).send().await?;
    assert!(ui.status().is_success(), "UI answered {}", ui.status());
    Ok(())
}
