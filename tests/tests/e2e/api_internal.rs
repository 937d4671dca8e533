//! The workflows' internal RPC (`/internal/v1/`, typed through `talis_api::methods::internal`)
//! and the phone-home route: claims in chunks, transitions, events, progress, and reports of
//! machines checked against their signed URL and their task, applied in the database.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use reqwest::Method;
use serde_json::{Value, json};
use talis_api::internal::{
    ChunkRange, InstanceTransition, TaskChunk, TaskClaim, TaskEventRecord, TaskFinish,
    TaskInstanceTransition, TaskProgress,
};
use talis_api::methods::internal as rpc;
use talis_api::{
    ErrorKind, InstanceGet, InstanceId, InstanceStatus, TaskId, TaskList, TaskRef, TaskStatus,
};
use talis_e2e::api::{
    Api, INTERNAL_SECRET, PUBLIC_URL, Refused, instances, phone_home_url, project,
};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

fn claim(task_id: TaskId, invocation: &str) -> TaskClaim {
    TaskClaim {
        task_id,
        invocation_id: invocation.into(),
        chunk_size: talis_api::internal::MAX_CHUNK,
    }
}

fn transition(
    task_id: TaskId,
    instance: InstanceId,
    status: InstanceStatus,
    provider_ref: Option<&str>,
) -> TaskInstanceTransition {
    TaskInstanceTransition {
        task_id,
        transition: InstanceTransition {
            provider_ref: provider_ref.map(str::to_owned),
            ..InstanceTransition::to(instance, status)
        },
    }
}

/// Events of a task recorded by phone-homes.
fn phone_home_events(api: &Api, task: TaskId) -> Result<i64> {
    api.count_where(
        "events",
        &format!(
            "task_id = {task} AND kind = 'instance.status' \
             AND json_extract(data, '$.step') = 'phone home'"
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_rpc_drives_a_task() -> Result<()> {
    let api = Api::start().await?;
    let user = api.user("u").await?;
    let script = "#!/bin/sh\necho ready\n";
    let mut req = instances(1);
    req.provision = true;
    req.execute_payload = true;
    req.payload = script.into();
    req.number_of_instances = 2;
    let p = user.client.project_create(&project("p", vec![req])).await?;
    let (task, inst, second) = (p.task_id.unwrap(), p.instance_ids[0], p.instance_ids[1]);

    let c = api
        .internal::<rpc::TaskClaim>(&claim(task, "inv-1"))
        .await?;
    assert!(c.claimed);
    assert_eq!(
        (c.task.status, c.project.name.as_str()),
        (TaskStatus::Running, "p")
    );
    // The deployment's identity (spin.toml's default) and where machines phone home.
    assert_eq!(
        (c.deployment.as_str(), c.public_url.as_str()),
        ("local", PUBLIC_URL)
    );
    let range = ChunkRange {
        after: None,
        through: second,
        count: 2,
    };
    assert_eq!(c.chunks, [range]);
    // Claiming again with the same invocation changes nothing.
    let again = api
        .internal::<rpc::TaskClaim>(&claim(task, "inv-1"))
        .await?;
    assert_eq!((again.task.attempts, again.chunks), (1, vec![range]));

    let plan = api
        .internal::<rpc::TaskChunk>(&TaskChunk {
            task_id: task,
            range,
        })
        .await?;
    assert_eq!(plan.task_status, TaskStatus::Running);
    assert_eq!(plan.requests.len(), 1);
    assert_eq!(plan.requests[0].payload, script);
    assert_eq!(plan.requests[0].tags, ["e2e"]);
    let planned: Vec<_> = plan.instances.iter().map(|i| (i.id, i.request)).collect();
    assert_eq!(planned, [(inst, 0), (second, 0)]);

    let step = TaskInstanceTransition {
        task_id: task,
        transition: InstanceTransition {
            provider_ref: Some("4242".into()),
            public_ip: Some("10.1.2.3".into()),
            ..InstanceTransition::to(inst, InstanceStatus::Created)
        },
    };
    api.internal::<rpc::InstanceTransition>(&step).await?;
    let same = api.internal::<rpc::InstanceTransition>(&step).await?;
    assert_eq!(
        (same.provider_instance_id, same.status),
        (4242, InstanceStatus::Created)
    );
    // A late record of an earlier step changes nothing (a replay after the instance moved on).
    let late = api
        .internal::<rpc::InstanceTransition>(&transition(task, inst, InstanceStatus::Pending, None))
        .await?;
    assert_eq!(
        (late.status, late.provider_ref.as_str()),
        (InstanceStatus::Created, "4242")
    );
    // An illegal one is refused: a machine that was dropped does not come back.
    api.internal::<rpc::InstanceTransition>(&transition(
        task,
        second,
        InstanceStatus::Terminated,
        None,
    ))
    .await?;
    api.internal::<rpc::InstanceTransition>(&transition(
        task,
        second,
        InstanceStatus::Created,
        Some("4343"),
    ))
    .await
    .refused(409, ErrorKind::IllegalTransition);
    let progress = api
        .internal::<rpc::TaskProgress>(&TaskProgress {
            task_id: task,
            range,
        })
        .await?;
    let waiting: Vec<_> = progress.waiting.iter().map(|w| (w.id, w.status)).collect();
    assert_eq!(waiting, [(inst, InstanceStatus::Created)]);
    assert_eq!(progress.counts.get(&InstanceStatus::Created), Some(&1));
    assert_eq!(progress.counts.get(&InstanceStatus::Terminated), Some(&1));

    let ev = TaskEventRecord {
        task_id: task,
        instance_id: Some(inst),
        step: "create droplet".into(),
        status: "ok".into(),
        detail: String::new(),
        event_key: "k1".into(),
    };
    assert!(!api.internal::<rpc::TaskEvent>(&ev).await?.duplicate);
    assert!(api.internal::<rpc::TaskEvent>(&ev).await?.duplicate);
    let fin = TaskFinish {
        task_id: task,
        status: talis_api::internal::FinalStatus::Completed,
        result: Some(json!({ "ready": 1 })),
        error: None,
    };
    api.internal::<rpc::TaskFinish>(&fin).await?;
    api.internal::<rpc::TaskFinish>(&fin).await?;
    let t = user.client.task_get(&TaskRef::new(task)).await?;
    assert_eq!(
        (
            t.status,
            t.result.as_ref().and_then(|r| r["ready"].as_i64())
        ),
        (TaskStatus::Completed, Some(1))
    );
    assert_eq!(
        user.client
            .instance_get(&InstanceGet { id: inst })
            .await?
            .public_ip,
        "10.1.2.3"
    );
    // An unknown internal method is an unknown path.
    let a = api
        .send(
            Method::POST,
            "/internal/v1/task.nope",
            Some(INTERNAL_SECRET),
            Some(b"{}".to_vec()),
        )
        .await?;
    assert_eq!(a.status, 404, "{}", a.body);
    Ok(())
}

/// With `restate_ui_url` set, a claimed task links its invocation in the Restate UI; without it
/// (the default) there is no link.
#[tokio::test(flavor = "multi_thread")]
async fn task_links_its_invocation_in_the_restate_ui() -> Result<()> {
    for (ui, expected) in [
        (
            Some("http://127.0.0.1:9070/"),
            Some("http://127.0.0.1:9070/ui/invocations/inv_1abc"),
        ),
        (None, None),
    ] {
        let vars: Vec<(&str, &str)> = ui.map(|u| ("restate_ui_url", u)).into_iter().collect();
        let api = Api::start_with(&vars).await?;
        let c = api.user("u").await?.client;
        let p = c.project_create(&project("p", vec![instances(1)])).await?;
        let task = p.task_id.unwrap();
        let t = c.task_get(&TaskRef::new(task)).await?;
        assert_eq!(t.invocation_url, None, "not claimed yet: {t:?}");
        api.internal::<rpc::TaskClaim>(&claim(task, "inv_1abc"))
            .await?;
        let t = c.task_get(&TaskRef::new(task)).await?;
        assert_eq!(
            (t.invocation_id.as_deref(), t.invocation_url.as_deref()),
            (Some("inv_1abc"), expected)
        );
        let list = c
            .task_list(&TaskList {
                project_name: "p".into(),
                ..Default::default()
            })
            .await?;
        assert_eq!(list.rows[0].invocation_url.as_deref(), expected);
    }
    Ok(())
}

/// A claimed task of two machines whose droplets are recorded (or not) as the test says.
struct Claimed {
    task: TaskId,
    ids: Vec<InstanceId>,
}

async fn claimed_task(api: &Api, key: &str, name: &str) -> Result<Claimed> {
    let p = api
        .client(key)
        .project_create(&project(name, vec![instances(2)]))
        .await?;
    let task = p.task_id.unwrap();
    api.internal::<rpc::TaskClaim>(&claim(task, &format!("inv-{name}")))
        .await?;
    Ok(Claimed {
        task,
        ids: p.instance_ids,
    })
}

async fn record_droplet(api: &Api, t: &Claimed, i: usize, droplet: &str) -> Result<()> {
    api.internal::<rpc::InstanceTransition>(&transition(
        t.task,
        t.ids[i],
        InstanceStatus::Created,
        Some(droplet),
    ))
    .await?;
    Ok(())
}

fn report(droplet: u64, ip: &str) -> Value {
    json!({ "droplet_id": droplet, "public_ip": ip, "status": "ok" })
}

/// A phone-home URL is signed for its task, instance and expiry: a forged or moved token is 401,
/// an expired one 403, a bad body 400 naming the field; a good report makes the instance ready
/// in the database (202), once: a repeated report is 202 again and records no second event.
#[tokio::test(flavor = "multi_thread")]
async fn phone_home_checks_its_token_and_applies_a_report_once() -> Result<()> {
    let api = Api::start().await?;
    let user = api.user("u").await?;
    let t = claimed_task(&api, &user.key, "p").await?;
    record_droplet(&api, &t, 0, "4242").await?;
    record_droplet(&api, &t, 1, "4343").await?;
    let (inst, other) = (t.ids[0], t.ids[1]);
    let url = phone_home_url(t.task, inst, now() + 600);
    let good = report(4242, "10.1.2.3");

    // Forged: signed with another secret.
    let forged = talis_api::phone_home::signed_url(
        PUBLIC_URL,
        "not-the-secret",
        t.task.get(),
        inst.get(),
        now() + 600,
    );
    // Moved: a real token presented for another instance, or another task, or a later expiry.
    let token = url.rsplit("token=").next().unwrap();
    let exp = now() + 600;
    let moved_instance = format!(
        "{PUBLIC_URL}/v1/phone-home/{other}?task={}&exp={exp}&token={token}",
        t.task
    );
    let moved_expiry = url.replace("&exp=", "&exp=1");
    let no_token = url.split("&token=").next().unwrap().to_owned();
    for bad in [&forged, &moved_instance, &moved_expiry, &no_token] {
        let a = api.phone_home(bad, &good).await?;
        assert_eq!(
            (a.status, a.body["error"]["kind"].as_str()),
            (401, Some("unauthorized")),
            "{bad}: {}",
            a.body
        );
    }
    // Expired: correctly signed, but its time has passed.
    let a = api
        .phone_home(&phone_home_url(t.task, inst, now() - 10), &good)
        .await?;
    assert_eq!(
        (a.status, a.body["error"]["kind"].as_str()),
        (403, Some("forbidden")),
        "{}",
        a.body
    );
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("expired"),
        "{}",
        a.body
    );
    // A bad body, with a good token.
    let a = api.phone_home(&url, &report(4242, "not-an-ip")).await?;
    assert_eq!(
        (
            a.status,
            a.body["error"]["kind"].as_str(),
            a.body["error"]["data"]["field"].as_str()
        ),
        (400, Some("invalid"), Some("public_ip")),
        "{}",
        a.body
    );
    assert_eq!(
        phone_home_events(&api, t.task)?,
        0,
        "refusals record nothing"
    );
    let still = user.client.instance_get(&InstanceGet { id: inst }).await?;
    assert_eq!(still.status, InstanceStatus::Created);

    // The good report.
    let a = api.phone_home(&url, &good).await?;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.body["data"]["duplicate"], false, "{}", a.body);
    let ready = user.client.instance_get(&InstanceGet { id: inst }).await?;
    assert_eq!(
        (ready.status, ready.public_ip.as_str()),
        (InstanceStatus::Ready, "10.1.2.3")
    );
    assert_eq!(phone_home_events(&api, t.task)?, 1);
    // Reported again (the script's `curl --retry` after a lost answer): same answer, no event.
    let a = api.phone_home(&url, &good).await?;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.body["data"]["duplicate"], true, "{}", a.body);
    assert_eq!(phone_home_events(&api, t.task)?, 1);
    // One script serves a multi-create batch: the other machine reports on the same URL.
    let a = api.phone_home(&url, &report(4343, "10.1.2.4")).await?;
    assert_eq!(a.status, 202, "{}", a.body);
    let ready = user.client.instance_get(&InstanceGet { id: other }).await?;
    assert_eq!(
        (ready.status, ready.public_ip.as_str()),
        (InstanceStatus::Ready, "10.1.2.4")
    );
    assert_eq!(phone_home_events(&api, t.task)?, 2);
    Ok(())
}

/// A report from a droplet that is not one of the token's task's machines: while some of the
/// task's machines are still being made its record may just not be written yet (503 with
/// `Retry-After`); once every machine is recorded, or for a machine of another task, it is
/// none of this task's (404). Nothing changes either way.
#[tokio::test(flavor = "multi_thread")]
async fn phone_home_from_a_machine_not_of_the_task() -> Result<()> {
    let api = Api::start().await?;
    let user = api.user("u").await?;
    let t = claimed_task(&api, &user.key, "p").await?;
    let elsewhere = claimed_task(&api, &user.key, "q").await?;
    record_droplet(&api, &elsewhere, 0, "5555").await?;
    record_droplet(&api, &t, 0, "4242").await?;
    let url = phone_home_url(t.task, t.ids[0], now() + 600);

    let a = api.phone_home(&url, &report(9999, "10.0.0.9")).await?;
    assert_eq!(
        (a.status, a.body["error"]["kind"].as_str()),
        (503, Some("retry_later")),
        "{}",
        a.body
    );
    let retry: u32 = a
        .header("retry-after")
        .and_then(|s| s.parse().ok())
        .expect("a Retry-After in seconds");
    assert!(retry >= 1, "{retry}");

    record_droplet(&api, &t, 1, "4343").await?;
    for droplet in [9999, 5555] {
        let a = api.phone_home(&url, &report(droplet, "10.0.0.9")).await?;
        assert_eq!(
            (a.status, a.body["error"]["kind"].as_str()),
            (404, Some("not_found")),
            "{droplet}: {}",
            a.body
        );
    }
    // Nothing moved, in either task.
    for (task, ids) in [(&t, &t.ids), (&elsewhere, &elsewhere.ids)] {
        for id in ids {
            let i = user.client.instance_get(&InstanceGet { id: *id }).await?;
            assert_ne!(i.status, InstanceStatus::Ready, "{i:?}");
        }
        assert_eq!(phone_home_events(&api, task.task)?, 0);
    }
    Ok(())
}

/// The URL's token is the phone-home route's credential: like an API key elsewhere, it is checked
/// before the body is judged, so an anonymous poster learns nothing from body errors.
#[tokio::test(flavor = "multi_thread")]
async fn phone_home_checks_the_token_before_the_body() -> Result<()> {
    let api = Api::start().await?;
    let user = api.user("u").await?;
    let t = claimed_task(&api, &user.key, "p").await?;
    let forged = talis_api::phone_home::signed_url(
        PUBLIC_URL,
        "not-the-secret",
        t.task.get(),
        t.ids[0].get(),
        now() + 600,
    );
    let path = forged.strip_prefix(PUBLIC_URL).unwrap();
    for body in [
        &b"{not json"[..],
        &b""[..],
        &br#"{"droplet_id": 1, "public_ip": "x"}"#[..],
    ] {
        let a = api
            .send(Method::POST, path, None, Some(body.to_vec()))
            .await?;
        assert_eq!(
            a.status,
            401,
            "{}: {}",
            String::from_utf8_lossy(body),
            a.body
        );
    }
    Ok(())
}
