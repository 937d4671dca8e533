//! Safe to share, end to end on the real stack: one owner cannot put Talis's own tags on its
//! machines, quotas refuse with nothing made, and terminating or deleting during a slow create
//! leaves no machine of the unwanted instances running.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use talis_client::wire::*;
use talis_client::{Client, Error};
use talis_stack::workflows::{FullStack, StackOptions};

const LIMIT: Duration = Duration::from_secs(120);

/// Machines boot in 2–3 s, so a test can act while a create is under way.
const SLOW: &str = "boot_delay_ms = 2000\nboot_jitter_ms = 1000\nip_delay_ms = 0\n\
    rate_limit_per_minute = 4294967295\nrate_limit_per_hour = 4294967295\n\
    [phone_home]\nattempts = 60\nretry_delay_ms = 500\ntimeout_ms = 5000";

async fn slow_stack(dir: &std::path::Path) -> Result<FullStack> {
    FullStack::start(
        dir,
        StackOptions {
            fake_config: Some(SLOW.into()),
            ..StackOptions::default()
        },
    )
    .await
}

fn admin(stack: &FullStack) -> Result<Client> {
    Ok(Client::new(&stack.api_url, Some(stack.admin_key.clone()))?)
}

/// A new owner and a client with its key.
async fn owner(stack: &FullStack, name: &str) -> Result<(OwnerId, Client)> {
    let created = admin(stack)?
        .user_create(&UserCreate {
            username: name.into(),
            ..Default::default()
        })
        .await?;
    Ok((
        created.id,
        Client::new(&stack.api_url, Some(created.api_key))?,
    ))
}

fn request(n: u32, tags: &[&str]) -> Result<InstanceRequest> {
    Ok(serde_json::from_value(serde_json::json!({
        "provider": "do", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64",
        "number_of_instances": n, "tags": tags,
    }))?)
}

async fn create(client: &Client, project: &str, n: u32) -> Result<ProjectCreated> {
    let p = ProjectCreate {
        name: project.into(),
        instances: vec![request(n, &["env:test"])?],
        ..Default::default()
    };
    Ok(client.project_create(&p).await?)
}

async fn wait_task(client: &Client, task: TaskId) -> Result<Task> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let t = client.task_get(&TaskRef::new(task)).await?;
        if t.status.is_terminal() {
            return Ok(t);
        }
        if Instant::now() > deadline {
            bail!("task {task} still {} after {LIMIT:?}", t.status);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn instances(client: &Client, project: &str) -> Result<Vec<Instance>> {
    let filter = InstanceList {
        project_name: Some(project.into()),
        include_deleted: true,
        ..Default::default()
    };
    Ok(client.instance_list_all(&filter).await?)
}

#[tokio::test(flavor = "multi_thread")]
async fn reserved_tags_are_refused_and_owners_never_share_machines() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let stack = FullStack::start(dir.path(), StackOptions::default()).await?;
    let (_, alice) = owner(&stack, "alice").await?;
    let (_, bob) = owner(&stack, "bob").await?;
    let b = create(&bob, "b", 2).await?;
    // Alice tries to make machines Bob's create would adopt (his project's and instance's tags).
    let instance_tag = format!("talis-instance-{}", b.instance_ids[0]);
    for tags in [
        vec!["talis-project-1"],
        vec![instance_tag.as_str()],
        vec!["TALIS"],
    ] {
        // The typed client cannot even build such a request (`Tag` refuses them): send it raw.
        assert!(request(1, &tags).is_err());
        let raw = serde_json::json!({ "name": "a", "instances": [{ "provider": "do", "region": "nyc3",
            "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64", "number_of_instances": 1, "tags": tags }] });
        match alice
            .call_raw::<talis_api::methods::public::ProjectCreate>(&raw)
            .await
        {
            Err(Error::Api(e)) => {
                assert_eq!(e.status, 400);
                assert_eq!(e.field(), Some("instances[0].tags[0]"), "{e}");
            }
            other => bail!("{tags:?} accepted: {other:?}"),
        }
    }
    let a = create(&alice, "a", 2).await?;
    wait_task(&bob, b.task_id.unwrap()).await?;
    wait_task(&alice, a.task_id.unwrap()).await?;
    // Each owner's machines carry only its own project's tag.
    let stats = stack.fake_stats().await?;
    let by_tag = &stats["droplets"]["by_tag"];
    let project_tags: Vec<(&String, &serde_json::Value)> = by_tag
        .as_object()
        .unwrap()
        .iter()
        .filter(|(t, _)| t.starts_with("talis-project-"))
        .collect();
    assert_eq!(project_tags.len(), 2, "{by_tag}");
    assert!(project_tags.iter().all(|(_, n)| *n == 2), "{by_tag}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn over_quota_is_refused_naming_the_quota_and_nothing_is_made() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let stack = FullStack::start(dir.path(), StackOptions::default()).await?;
    let (alice_id, alice) = owner(&stack, "alice").await?;
    admin(&stack)?
        .quota_set(&QuotaSet {
            owner_id: alice_id,
            max_instances: Some(3),
            max_projects: None,
            max_api_keys: None,
            max_ssh_keys: None,
            max_webhooks: None,
        })
        .await?;
    let before = stack.fake_stats().await?["droplets"]["created"]
        .as_u64()
        .unwrap_or(0);
    match create(&alice, "big", 4).await {
        Err(e) => {
            let e = e.downcast::<Error>()?;
            let api = e.api().expect("an API error");
            assert_eq!((api.status, api.kind), (403, ErrorKind::QuotaExceeded));
            assert!(
                api.message.contains("max_instances_per_owner"),
                "{}",
                api.message
            );
            let data = api.data.clone().unwrap_or_default();
            assert_eq!(
                (
                    data["limit"].as_u64(),
                    data["used"].as_u64(),
                    data["requested"].as_u64()
                ),
                (Some(3), Some(0), Some(4))
            );
        }
        Ok(c) => bail!("over quota accepted: {c:?}"),
    }
    assert!(
        alice.project_list_all().await?.is_empty(),
        "nothing written"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stack.fake_stats().await?["droplets"]["created"]
            .as_u64()
            .unwrap_or(0),
        before,
        "nothing made"
    );
    // Within the quota it goes through.
    let ok = create(&alice, "small", 3).await?;
    assert_eq!(
        wait_task(&alice, ok.task_id.unwrap()).await?.status,
        TaskStatus::Completed
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_during_a_slow_create_stops_it_at_once_and_leaves_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let stack = slow_stack(dir.path()).await?;
    let (_, alice) = owner(&stack, "alice").await?;
    let c = create(&alice, "gone", 30).await?;
    let task = c.task_id.unwrap();
    // Wait until the create is making machines.
    let deadline = Instant::now() + LIMIT;
    while alice.task_get(&TaskRef::new(task)).await?.status != TaskStatus::Running {
        if Instant::now() > deadline {
            bail!("the create never started");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deleted = alice
        .project_delete(&ProjectRef {
            name: "gone".into(),
            owner_id: None,
        })
        .await?;
    // The create task is stopped in the delete's own transaction, not at some later step.
    let t = alice.task_get(&TaskRef::new(task)).await?;
    assert_eq!(t.status, TaskStatus::Terminated, "{t:?}");
    if let Some(d) = deleted.task_id {
        wait_task(&alice, d).await?;
    }
    wait_task(&alice, task).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stats = stack.fake_stats().await?;
    assert_eq!(stats["droplets"]["live"], 0, "{}", stats["droplets"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn terminating_instances_during_a_slow_create_leaves_none_of_their_machines() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let stack = slow_stack(dir.path()).await?;
    let (_, alice) = owner(&stack, "alice").await?;
    let c = create(&alice, "part", 30).await?;
    let task = c.task_id.unwrap();
    // Terminate a third of the instances while the create is still making machines (the
    // provider is slow to boot them, so most are not ready yet).
    let doomed: Vec<InstanceId> = c.instance_ids.iter().copied().step_by(3).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let term = alice
        .instance_terminate(&InstanceTerminate {
            owner_id: None,
            project_name: "part".into(),
            instance_ids: doomed.clone(),
        })
        .await?;
    wait_task(&alice, term.task_id.expect("a terminate task")).await?;
    let created = wait_task(&alice, task).await?;
    assert!(created.status.is_terminal());
    let all = instances(&alice, "part").await?;
    for i in &all {
        if doomed.contains(&i.id) {
            assert_eq!(i.status, InstanceStatus::Terminated, "{i:?}");
        } else {
            assert_eq!(i.status, InstanceStatus::Ready, "{i:?}");
        }
    }
    // No machine of a terminated instance keeps running (the create destroyed what it made
    // for an instance that was no longer wanted).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stats = stack.fake_stats().await?;
    assert_eq!(
        stats["droplets"]["live"].as_u64(),
        Some((30 - doomed.len()) as u64),
        "{}",
        stats["droplets"]
    );
    assert_eq!(stats["duplicates"]["count"], 0);
    Ok(())
}

/// The reconcile sweep: a machine carrying this deployment's tags that no live instance owns
/// (here one made by hand, naming an instance that does not exist) is destroyed by the
/// housekeeping chain, while the project's machines and another deployment's machine stay.
/// The chain starts with the first dispatched task, and its first sweep comes one interval
/// later, so a sweep never takes the provider's rate budget from the task that woke it.
#[tokio::test(flavor = "multi_thread")]
async fn the_reconcile_sweep_destroys_what_no_live_instance_owns_and_nothing_else() -> Result<()> {
    const EVERY: Duration = Duration::from_secs(4);
    let dir = tempfile::tempdir()?;
    let stack = FullStack::start(
        dir.path(),
        StackOptions {
            workflows_env: vec![(
                "TALIS_HOUSEKEEPING_SECS".into(),
                EVERY.as_secs().to_string(),
            )],
            ..StackOptions::default()
        },
    )
    .await?;
    let internal = Client::builder(format!("{}/internal", stack.api_url))
        .api_key(talis_stack::workflows::STACK_INTERNAL_SECRET)
        .route(talis_client::Route::Typed)
        .build()?;
    let deployment = internal
        .call::<talis_api::methods::internal::DeploymentGet>(&Default::default())
        .await?
        .deployment;
    let ours = format!("talis-deployment-{deployment}");
    let http = reqwest::Client::new();
    let droplet = |name: &str, tags: &[&str]| {
        let body = serde_json::json!({
            "name": name, "region": "nyc3", "size": "s-1vcpu-1gb",
            "image": "ubuntu-24-04-x64", "tags": tags,
        });
        http.post(format!("{}/v2/droplets", stack.fake.base_url))
            .bearer_auth("e2e-do-token")
            .json(&body)
            .send()
    };
    let stray = format!("stray.i{deployment}-999999");
    droplet(&stray, &["talis", &ours])
        .await?
        .error_for_status()?;
    droplet("theirs.iother-1", &["talis", "talis-deployment-other"])
        .await?
        .error_for_status()?;
    let names = || async {
        let v: serde_json::Value = http
            .get(format!("{}/v2/droplets?per_page=200", stack.fake.base_url))
            .bearer_auth("e2e-do-token")
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        anyhow::Ok(
            v["droplets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d["name"].as_str().map(str::to_owned))
                .collect::<Vec<_>>(),
        )
    };

    // The first dispatch starts the chain; its sweep is an interval away.
    let (_, client) = owner(&stack, "sweep").await?;
    let made = create(&client, "kept", 2).await?;
    let kicked = Instant::now();
    let task = wait_task(&client, made.task_id.expect("a task")).await?;
    assert_eq!(task.status, TaskStatus::Completed, "{task:?}");
    if kicked.elapsed() < EVERY / 2 {
        assert!(
            names().await?.contains(&stray),
            "swept at the kick, before the first interval"
        );
    }
    let deadline = Instant::now() + EVERY * 5;
    while names().await?.contains(&stray) {
        if Instant::now() > deadline {
            bail!("{stray} still there {:?} after the kick", kicked.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left = names().await?;
    assert!(left.contains(&"theirs.iother-1".to_string()), "{left:?}");
    let live = instances(&client, "kept").await?;
    assert_eq!(live.len(), 2);
    for i in &live {
        assert_eq!(i.status, InstanceStatus::Ready, "{i:?}");
        assert!(left.iter().any(|n| n.starts_with(&i.name)), "{left:?}");
    }
    Ok(())
}
