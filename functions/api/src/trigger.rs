//! Outbound calls to the Restate ingress: the workflow trigger (after commit) with its sweep, and
//! phone-home forwarding. A failed trigger never fails the call: the task is committed and the
//! sweep re-triggers tasks whose `dispatched_at` is still empty.

use serde_json::json;
use spin_sdk::http::{Method, Request, Response};
use talis_api::internal::{PhoneHome, PhoneHomeBody};
use talis_api::{InstanceId, RouteError, RpcResponse, Slug, TaskId};
use talis_core::Error;

use crate::routes::parse_body;
use crate::{After, Db, Reply, Req, Settings, with_service};

/// Undispatched tasks younger than this are left to the call that created them.
const SWEEP_MIN_AGE_SECS: i64 = 5;
/// Most tasks one request re-triggers.
const SWEEP_BATCH: i64 = 5;

async fn post(url: String, body: Vec<u8>) -> Option<u16> {
    let req = Request::builder()
        .method(Method::Post)
        .uri(url)
        .header("content-type", "application/json")
        .body(body)
        .build();
    spin_sdk::http::send::<_, Response>(req)
        .await
        .ok()
        .map(|r| *r.status())
}

/// `POST {ingress}/TaskWorkflow/{task_id}/run/send`. The task id is the workflow key, so a
/// repeat is answered "already started" (409), which counts as dispatched.
async fn trigger(ingress: &str, task_id: TaskId) -> bool {
    let status = post(
        format!("{ingress}/TaskWorkflow/{task_id}/run/send"),
        b"{}".to_vec(),
    )
    .await;
    matches!(status, Some(200..=299 | 409))
}

/// `POST {ingress}/TaskWorkflow/{task_id}/cancel` for tasks terminated by their owner: the
/// running workflow stops at once, destroys what it made and records it. Best effort: a
/// workflow that misses it still stops at its next step, when the component refuses to move
/// the instances of a terminated task.
pub(crate) async fn cancel(settings: &Settings, tasks: Vec<TaskId>) {
    let ingress = settings.restate_ingress_url.as_str();
    if ingress.is_empty() {
        return;
    }
    for task_id in tasks {
        let _ = post(
            format!("{ingress}/TaskWorkflow/{task_id}/cancel"),
            b"{}".to_vec(),
        )
        .await;
    }
}

/// Triggers the committed tasks, and re-triggers a few whose trigger failed earlier: one query
/// on a partial index that holds only undispatched tasks (empty in steady state), over the
/// request's own connection, after the answer has gone out.
pub(crate) async fn dispatch_and_sweep(settings: &Settings, db: &Db, mut tasks: Vec<TaskId>) {
    let ingress = settings.restate_ingress_url.as_str();
    if ingress.is_empty() {
        return;
    }
    if let Ok(stale) = with_service(settings, db, |svc| {
        svc.undispatched(SWEEP_MIN_AGE_SECS, SWEEP_BATCH)
    }) {
        tasks.extend(
            stale
                .into_iter()
                .filter(|t| !tasks.contains(t))
                .collect::<Vec<_>>(),
        );
    }
    for task_id in tasks {
        if trigger(ingress, task_id).await {
            let _ = with_service(settings, db, |svc| svc.mark_dispatched(task_id));
        }
    }
}

/// Verifies the token and the body, and forwards the report to the instance's create workflow.
pub(crate) async fn phone_home(settings: &Settings, db: &Db, req: &Req, (instance, token): (&str, String)) -> Reply {
    let reply = |status: u16, body: serde_json::Value| Reply {
        status,
        headers: Vec::new(),
        body: serde_json::to_vec(&body).unwrap_or_default(),
        after: After::default(),
    };
    let err = |e: Error| {
        let r = RpcResponse::err(e.to_wire(), None);
        reply(r.status(), serde_json::to_value(r).unwrap_or_default())
    };
    let Some(instance_id) = instance.parse::<i64>().ok().and_then(InstanceId::new) else {
        return err(Error::invalid("id", "must be a positive integer"));
    };
    let task_id = match with_service(settings, db, |svc| svc.phone_home_task(instance_id, &token)) {
        Ok(t) => t,
        Err(e) => return err(e),
    };
    let body = match parse_body(req).and_then(|b| talis_api::decode::decode::<PhoneHomeBody>(b).map_err(Error::from)) {
        Ok(b) => b.into_inner(),
        Err(e) => return err(e),
    };
    let forward = PhoneHome { instance_id, droplet_id: body.droplet_id, public_ip: body.public_ip.to_string(), status: body.status };
    if settings.restate_ingress_url.is_empty() {
        return err(Error::Conflict("no workflow engine is configured".into()));
    }
    let url = format!("{}/TaskWorkflow/{task_id}/phone_home", settings.restate_ingress_url);
    let route_error = |error: String| serde_json::to_value(RouteError { error }).unwrap_or_default();
    match post(url, serde_json::to_vec(&forward).unwrap_or_default()).await {
        Some(200..=299) => reply(202, serde_json::to_value(Slug::ok(json!({ "task_id": task_id }))).unwrap_or_default()),
        // The caller (cloud-init's curl) retries on a 5xx.
        Some(s) => reply(502, route_error(format!("workflow engine answered {s}"))),
        None => reply(502, route_error("workflow engine unreachable".into())),
    }
}
