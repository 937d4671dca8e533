//! The largest calls the contract allows: 10 000 instances in one `project.create`, and the claim
//! of such a task, which is cut into chunks whose plans hold each script once.

use anyhow::Result;
use reqwest::Method;
use talis_api::internal::{ChunkPlan, MAX_CHUNK, TaskChunk, TaskClaim};
use talis_api::methods::internal as rpc;
use talis_api::{InstanceId, TaskRef};
use talis_e2e::api::{Api, INTERNAL_SECRET, instances, project};

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_instances_in_one_call() -> Result<()> {
    let api = Api::start().await?;
    let c = api.user("u").await?.client;
    let started = std::time::Instant::now();
    let p = c
        .project_create(&project("big", vec![instances(10_000)]))
        .await?;
    println!(
        "10 000-instance project.create: {:?} (debug host)",
        started.elapsed()
    );
    assert_eq!(p.instance_ids.len(), 10_000);
    assert_eq!(
        (
            api.count("instances")?,
            api.count("tasks")?,
            api.count("task_instances")?
        ),
        (10_000, 1, 10_000)
    );
    let t = c.task_get(&TaskRef::new(p.task_id.unwrap())).await?;
    assert_eq!(t.instance_count, 10_000);
    Ok(())
}

/// The claim of a 10 000-instance task whose request carries a 60 KiB script answers chunk
/// ranges only; each chunk's plan holds the script once and a small row per instance (a script
/// per instance would be 60 MB per chunk).
#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_instance_claim_is_chunked_and_holds_the_script_once_per_chunk() -> Result<()>
{
    let api = Api::start().await?;
    let c = api.user("u").await?.client;
    let script = format!("#!/bin/sh\n# {}\n", "x".repeat(50 * 1024 - 13));
    assert_eq!(script.len(), 50 * 1024);
    let mut req = instances(10_000);
    req.provision = true;
    req.execute_payload = true;
    req.payload = script.clone();
    let p = c.project_create(&project("big", vec![req])).await?;
    let task_id = p.task_id.unwrap();
    let claimed = api
        .internal::<rpc::TaskClaim>(&TaskClaim {
            task_id,
            invocation_id: "inv-big".into(),
            chunk_size: MAX_CHUNK,
        })
        .await?;
    let claim_size = serde_json::to_vec(&claimed)?.len();
    println!("10 000-instance claim answer: {claim_size} bytes");
    assert!(
        claim_size < 8 * 1024,
        "the claim answers ranges: {claim_size} bytes"
    );
    assert_eq!(claimed.chunks.len(), 10);
    // The chunks cover the task's instances exactly, in order, without overlap.
    let mut after: Option<InstanceId> = None;
    let mut ids = Vec::new();
    for range in &claimed.chunks {
        assert_eq!((range.after, range.count), (after, MAX_CHUNK), "{range:?}");
        after = Some(range.through);
        // Measured on the wire, as the workflow receives it.
        let a = api
            .send(
                Method::POST,
                "/internal/v1/task.chunk",
                Some(INTERNAL_SECRET),
                Some(serde_json::to_vec(&TaskChunk {
                    task_id,
                    range: *range,
                })?),
            )
            .await?;
        assert_eq!(a.status, 200, "{}", a.body);
        let size = a.body.to_string().len();
        // A few hundred bytes per instance (id, name, status …) plus the script once.
        assert!(
            size < script.len() + MAX_CHUNK as usize * 300,
            "chunk answer is {size} bytes"
        );
        let plan: ChunkPlan = serde_json::from_value(a.body["data"].clone())?;
        assert_eq!(plan.requests.len(), 1);
        assert_eq!(plan.requests[0].payload, script);
        assert_eq!(plan.instances.len(), MAX_CHUNK as usize);
        assert!(plan.instances.iter().all(|i| i.request == 0));
        ids.extend(plan.instances.iter().map(|i| i.id));
    }
    assert_eq!(ids, p.instance_ids);
    Ok(())
}

/// A stand-in for Restate's ingress that accepts every call at once: each create's trigger
/// succeeds, so each is followed by its `dispatched_at` write.
async fn accepting_ingress() -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 64 * 1024];
                // One request per connection; its body is small and arrives with the headers.
                let _ = conn.read(&mut buf).await;
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                    )
                    .await;
            });
        }
    });
    Ok(url)
}

/// 100 creates of 100 instances at once, each followed by its trigger's bookkeeping write: every
/// one is answered, none waits out the lock. (The bookkeeping write once ran outside a
/// transaction and waited for the lock inside SQLite, holding one of the host's two workers;
/// two such waits starved the transaction holding the lock, and creates answered 503 after
/// 5 s.)
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_creates_with_their_triggers_is_all_answered() -> Result<()> {
    let ingress = accepting_ingress().await?;
    let api = Api::start_with(&[("restate_ingress_url", &ingress)]).await?;
    let c = api.user("burst").await?.client;
    let creates = (0..100).map(|i| {
        let c = c.clone();
        async move {
            c.project_create(&project(&format!("p{i}"), vec![instances(100)]))
                .await
        }
    });
    let answers = futures::future::join_all(creates).await;
    let refused: Vec<String> = answers
        .iter()
        .filter_map(|a| a.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert!(
        refused.is_empty(),
        "{} refused, first: {:?}",
        refused.len(),
        refused.first()
    );
    assert_eq!(api.count("tasks")?, 100);
    // The bookkeeping after each answer lands too.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while api.count_where("tasks", "dispatched_at IS NOT NULL")? < 100 {
        assert!(
            std::time::Instant::now() < deadline,
            "triggers not recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(())
}
