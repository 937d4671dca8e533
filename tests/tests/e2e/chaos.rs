//! Crash tests: kill -9 one process of the stack while 100 machines are being created, restart
//! it, and check that every machine still becomes ready exactly once and that deleting the
//! project leaves nothing behind (counted by the fake cloud's /_fake/stats).

use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use talis_api::TaskStatus;
use talis_e2e::flow::*;
use talis_stack::workflows::{FullStack, StackOptions, Victim};

const N: usize = 100;
const LIMIT: Duration = Duration::from_secs(120);

/// Machines boot in 1–2.5 s, so a kill right after the first machines exist lands mid-run;
/// phone-home is retried like the script's `curl --retry` (the API may be down for a while).
const SLOW_BOOT: &str = "boot_delay_ms = 1000
boot_jitter_ms = 1500
ip_delay_ms = 0
rate_limit_per_minute = 4294967295
rate_limit_per_hour = 4294967295
[phone_home]
attempts = 120
retry_delay_ms = 500
timeout_ms = 5000";

/// The fake holds every create call `ms` before making it (a client that gave up meanwhile
/// never learns that it did).
fn held_creates(ms: u64) -> String {
    format!("[[faults]]\nendpoint = \"droplets_create\"\nkind = \"stall\"\nstall_ms = {ms}\n")
}

async fn crash_and_recover(victim: Victim) -> Result<()> {
    crash_and_recover_with(victim, SLOW_BOOT.to_string(), 10).await
}

async fn crash_and_recover_with(victim: Victim, fake: String, after: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut stack = FullStack::start(
        dir.path(),
        StackOptions {
            fake_config: Some(fake),
            ..StackOptions::default()
        },
    )
    .await?;
    let project = format!("chaos-{victim:?}").to_lowercase();
    let (task_id, _) = create_project(&stack, &project, N, json!({})).await?;
    wait_created(&stack, &project, after, LIMIT).await?;
    // The crash must land mid-run, or the test proves nothing.
    assert_eq!(task(&stack, task_id).await?.status, TaskStatus::Running);
    stack.crash_and_restart(victim).await?;
    let t = wait_task(&stack, task_id, LIMIT).await?;
    assert_eq!(
        t.status,
        TaskStatus::Completed,
        "task after {victim:?} crash: {t:?}"
    );
    let stats = assert_all_ready(&stack, &project, N).await?;
    assert_eq!(stats["droplets"]["live"], N as u64, "{}", stats["droplets"]);
    delete_and_assert_clean(&stack, &project, LIMIT).await
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_workflows_mid_run_then_restart() -> Result<()> {
    crash_and_recover(Victim::Workflows).await
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_workflows_while_creates_are_in_flight_then_restart() -> Result<()> {
    // Creates are slow too, so a kill right after the first machine exists lands while
    // creates are in flight.
    crash_and_recover_with(
        Victim::Workflows,
        format!("{SLOW_BOOT}\n{}", held_creates(300)),
        1,
    )
    .await
}

/// A replica dies while its ensure round's creates are still held by the provider, and the
/// retried step starts at once: its look-up must not run before those creates land, or it
/// makes every machine of the round a second time (the cluster test's whole-chunk duplicates).
#[tokio::test(flavor = "multi_thread")]
async fn kill9_workflows_while_a_round_s_creates_are_held_then_the_retry_finds_them() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    let mut stack = FullStack::start(
        dir.path(),
        StackOptions {
            // Longer than the workflows' restart and Restate's first retries, shorter than the
            // provider's settle time (5 s) plus that restart.
            fake_config: Some(format!("{SLOW_BOOT}\n{}", held_creates(5_000))),
            ..StackOptions::default()
        },
    )
    .await?;
    // Two rounds of 100: the first is made, the second's creates are in flight at the kill.
    let (task_id, _) = create_project(&stack, "held", 2 * N, json!({})).await?;
    wait_created(&stack, "held", N, LIMIT).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = stack.fake_stats().await?;
    assert_eq!(
        stats["droplets"]["live"], N as u64,
        "the second round's creates must still be held: {}",
        stats["droplets"]
    );
    stack.crash_and_restart(Victim::Workflows).await?;
    let t = wait_task(&stack, task_id, LIMIT).await?;
    assert_eq!(t.status, TaskStatus::Completed, "task: {t:?}");
    let stats = assert_all_ready(&stack, "held", 2 * N).await?;
    assert_eq!(
        stats["droplets"]["live"],
        2 * N as u64,
        "{}",
        stats["droplets"]
    );
    delete_and_assert_clean(&stack, "held", LIMIT).await
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_restate_server_mid_run_then_restart() -> Result<()> {
    crash_and_recover(Victim::Restate).await
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_talis_host_mid_run_then_restart() -> Result<()> {
    crash_and_recover(Victim::Host).await
}

/// Restate is down when the project is created: the answer still succeeds (the task is
/// committed), and once Restate is back the component's sweep triggers the workflow.
#[tokio::test(flavor = "multi_thread")]
async fn restate_down_at_create_then_the_sweep_dispatches() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut stack = FullStack::start(dir.path(), StackOptions::default()).await?;
    stack.restate.service.kill9().await?;
    let (task_id, _) = create_project(&stack, "late", 20, json!({})).await?;
    assert_eq!(task(&stack, task_id).await?.status, TaskStatus::Pending);
    stack.restate.restart().await?;
    // task.get calls are requests too: they run the sweep once the task is old enough.
    let t = wait_task(&stack, task_id, LIMIT).await?;
    assert_eq!(t.status, TaskStatus::Completed, "task: {t:?}");
    assert_all_ready(&stack, "late", 20).await?;
    delete_and_assert_clean(&stack, "late", LIMIT).await
}
