//! Outbound calls to the Restate ingress: the workflow trigger (after commit) with its sweep,
//! and the hand-over of webhook deliveries with theirs. A failed trigger never fails the call:
//! the task (or delivery) is committed and the sweep re-triggers what has no `dispatched_at`.
//!
//! Each failure is one line on stderr (the host's log) naming the task and the status or
//! error, never the URL (an ingress URL may carry credentials).

use spin_sdk::http::{Method, Request, Response};
use talis_api::TaskId;
use talis_api::webhooks::WebhookKick;

use crate::{Db, Settings, with_service};

/// Undispatched tasks younger than this are left to the call that created them.
const SWEEP_MIN_AGE_SECS: i64 = 5;
/// Most tasks one request re-triggers.
const SWEEP_BATCH: i64 = 5;
/// Most webhooks whose deliveries one request hands over again.
const SWEEP_WEBHOOKS: i64 = 100;

/// What an outbound call gave: the status, or why no answer came.
type Answer = Result<u16, String>;

async fn post(url: String, body: Vec<u8>) -> Answer {
    post_with(url, body, None).await
}

/// `HTTP 503`, or the transport error on one short line.
fn describe(answer: &Answer) -> String {
    match answer {
        Ok(status) => format!("HTTP {status}"),
        Err(e) => {
            let one_line: String = e.split_whitespace().collect::<Vec<_>>().join(" ");
            one_line.chars().take(200).collect()
        }
    }
}

async fn post_with(url: String, body: Vec<u8>, idempotency_key: Option<String>) -> Answer {
    let mut b = Request::builder();
    b.method(Method::Post)
        .uri(url)
        .header("content-type", "application/json");
    if let Some(k) = idempotency_key {
        b.header("idempotency-key", k);
    }
    let req = b.body(body).build();
    spin_sdk::http::send::<_, Response>(req)
        .await
        .map(|r| *r.status())
        .map_err(|e| e.to_string())
}

/// `POST {ingress}/TaskWorkflow/{task_id}/run/send`. The task id is the workflow key, so a
/// repeat is answered "already started" (409), which counts as dispatched.
async fn trigger(ingress: &str, task_id: TaskId) -> bool {
    let answer = post(
        format!("{ingress}/TaskWorkflow/{task_id}/run/send"),
        b"{}".to_vec(),
    )
    .await;
    let ok = matches!(answer, Ok(200..=299 | 409));
    if !ok {
        eprintln!(
            "talis: trigger of task {task_id} failed ({}); the sweep retries it",
            describe(&answer)
        );
    }
    ok
}

/// `POST {ingress}/TaskWorkflow/{task_id}/cancel` for tasks terminated by their owner (or by a
/// project delete): the running workflow wakes, destroys what it made and records it. Delivered
/// durably: the task keeps `cancel_requested_at` until the engine has taken the cancel, and the
/// sweep sends it again until then. (A workflow that never hears it still stops at its next
/// look, when it sees its task terminated.)
pub(crate) async fn cancel(settings: &Settings, db: &Db, mut tasks: Vec<TaskId>) {
    let ingress = settings.restate_ingress_url.as_str();
    if ingress.is_empty() {
        return;
    }
    if let Ok(stale) = with_service(settings, db, |svc| {
        svc.cancels_pending(SWEEP_MIN_AGE_SECS, SWEEP_BATCH)
    }) {
        tasks.extend(
            stale
                .into_iter()
                .filter(|t| !tasks.contains(t))
                .collect::<Vec<_>>(),
        );
    }
    for task_id in tasks {
        let answer = post(
            format!("{ingress}/TaskWorkflow/{task_id}/cancel"),
            b"{}".to_vec(),
        )
        .await;
        if matches!(answer, Ok(200..=299)) {
            let _ = with_service(settings, db, |svc| svc.cancel_delivered(task_id));
        } else {
            eprintln!(
                "talis: cancel of task {task_id} failed ({}); the sweep sends it again",
                describe(&answer)
            );
        }
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
    let first = tasks.first().copied();
    let dispatched = first.is_some();
    for task_id in tasks {
        if trigger(ingress, task_id).await {
            let _ = with_service(settings, db, |svc| svc.mark_dispatched(task_id));
        }
    }
    if dispatched {
        kick_housekeeping(settings, first).await;
    }
}

/// Makes sure the deployment's housekeeping tick chain (reconcile sweep, event retention) is
/// alive: a kick at most once per hour (the idempotency key), which returns at once when the
/// chain is running.
async fn kick_housekeeping(settings: &Settings, after: Option<TaskId>) {
    let hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 3600);
    let url = format!(
        "{}/Housekeeping/{}/tick/send",
        settings.restate_ingress_url, settings.core.deployment
    );
    let answer = post_with(url, b"false".to_vec(), Some(format!("housekeeping-{hour}"))).await;
    if !matches!(answer, Ok(200..=299)) {
        let task = after
            .map(|t| format!(" (after dispatching task {t})"))
            .unwrap_or_default();
        eprintln!(
            "talis: housekeeping kick failed{task} ({}); the next dispatch kicks again",
            describe(&answer)
        );
    }
}

/// Hands the committed webhook deliveries to Restate in one call, whatever their number: the
/// `WebhookDispatch` service fans out one kick per webhook inside Restate (so a batch of 500
/// events costs this request one HTTP call, not 500). Adds the sweep: deliveries whose hand-over
/// failed earlier (no `dispatched_at` after 5 s), grouped by webhook.
pub(crate) async fn deliver_and_sweep(settings: &Settings, db: &Db, mut kicks: Vec<WebhookKick>) {
    let ingress = settings.restate_ingress_url.as_str();
    if ingress.is_empty() {
        return;
    }
    if let Ok(stale) = with_service(settings, db, |svc| {
        svc.webhooks_undispatched(SWEEP_MIN_AGE_SECS, SWEEP_WEBHOOKS)
    }) {
        for k in stale {
            if !kicks
                .iter()
                .any(|x| x.webhook_id == k.webhook_id && x.through >= k.through)
            {
                kicks.push(k);
            }
        }
    }
    if kicks.is_empty() {
        return;
    }
    let body = serde_json::to_vec(&kicks).unwrap_or_default();
    let answer = post(format!("{ingress}/WebhookDispatch/dispatch/send"), body).await;
    if matches!(answer, Ok(200..=299)) {
        let _ = with_service(settings, db, |svc| svc.webhooks_dispatched(&kicks));
    } else {
        eprintln!(
            "talis: hand-over of {} webhook kick(s) failed ({}); the sweep retries them",
            kicks.len(),
            describe(&answer)
        );
    }
}
