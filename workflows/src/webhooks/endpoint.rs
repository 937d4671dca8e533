//! The Restate side of webhook delivery.
//!
//! - `WebhookDispatch/dispatch`: the API's one call per committed batch; sends one kick per
//!   webhook (idempotency key: the kick's last delivery, unique per (event, webhook)).
//! - `WebhookEndpoint/{webhook id}/drain`: a virtual object per webhook, so its deliveries go
//!   one at a time; delivers every pending delivery up to the kick's, oldest first, each as a
//!   sequence of journaled attempts with durable sleeps between them.

use std::sync::Arc;
use std::time::Duration;

use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use talis_api::RowId;
use talis_api::methods::internal as m;
use talis_api::webhooks::{
    DeliveryResult, DeliveryStatus, PendingDeliveries, PendingDelivery, WebhookKick,
    WebhookPending, WebhookRecord,
};

use super::Outcome;
use super::sender::Sent;
use crate::App;
use crate::policy::rpc_policy;
use crate::steps::{now_ms, rpc_err};

/// Deliveries read (and journaled, with their bodies) per `webhook.pending` call.
const PAGE: u32 = 50;
/// Longest error text kept per delivery.
const MAX_ERROR: usize = 500;

/// Fans a committed batch out inside Restate: the API makes one call however many webhooks
/// and deliveries the batch holds.
pub struct WebhookDispatch;

#[restate_sdk::service(name = "WebhookDispatch")]
impl WebhookDispatch {
    /// One kick per webhook: deliver what is pending up to `through`.
    #[handler]
    async fn dispatch(&self, ctx: Context<'_>, kicks: Json<Vec<WebhookKick>>) -> HandlerResult<()> {
        for k in kicks.into_inner() {
            ctx.object_client::<WebhookEndpointClient>(k.webhook_id.to_string())
                .drain(Json(k.through))
                .idempotency_key(k.idempotency_key())
                .send();
        }
        Ok(())
    }
}

/// What a drain did (its answer, for the Restate UI).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Drained {
    pub delivered: u32,
    pub failed: u32,
}

/// One attempt, as journaled: the outcome and what comes next, never the secret or the URL.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attempt {
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    /// When [`Outcome::Retrying`]: the pause before the next attempt.
    pub retry_in_ms: Option<u64>,
    pub at_ms: i64,
}

pub struct WebhookEndpoint(pub Arc<App>);

#[restate_sdk::object(
    name = "WebhookEndpoint",
    invocation_retry_policy(
        initial_interval = "100ms",
        factor = 2.0,
        max_interval = "5s",
        on_max_attempts = "pause"
    )
)]
impl WebhookEndpoint {
    /// Delivers this webhook's pending deliveries up to `through`, oldest first: the next
    /// starts when the previous is delivered or given up (kicks queue on the object).
    #[handler]
    async fn drain(
        &self,
        ctx: ObjectContext<'_>,
        through: Json<i64>,
    ) -> HandlerResult<Json<Drained>> {
        let webhook: RowId = ctx
            .key()
            .parse()
            .map_err(|e: String| TerminalError::new_with_code(400, format!("object key: {e}")))?;
        let through = through.into_inner();
        let app = self.0.clone();
        let mut drained = Drained::default();
        let mut after = 0;
        loop {
            let a = app.clone();
            let page = ctx
                .run(|| pending(a, webhook, after, through))
                .name(format!("pending after {after}"))
                .retry_policy(rpc_policy())
                .await?
                .into_inner();
            let Some(last) = page.deliveries.last() else {
                break;
            };
            after = last.id;
            let mut finished = Vec::with_capacity(page.deliveries.len());
            for d in page.deliveries {
                let result = deliver(&ctx, &app, webhook, d, &mut finished).await?;
                match result.status {
                    DeliveryStatus::Delivered => drained.delivered += 1,
                    _ => drained.failed += 1,
                }
                finished.push(result);
            }
            record(&ctx, &app, &mut finished).await?;
        }
        Ok(Json(drained))
    }
}

/// One delivery to its end: attempts until delivered or given up, recording the retry state
/// (with what finished before it, `finished`) before each pause.
async fn deliver(
    ctx: &ObjectContext<'_>,
    app: &Arc<App>,
    webhook: RowId,
    d: PendingDelivery,
    finished: &mut Vec<DeliveryResult>,
) -> Result<DeliveryResult, HandlerError> {
    let d = Arc::new(d);
    for attempt in d.attempts + 1.. {
        let (a, dd) = (app.clone(), d.clone());
        let tried = ctx
            .run(|| try_once(a, webhook, dd, attempt))
            .name(format!("deliver {} #{attempt}", d.id))
            .retry_policy(rpc_policy())
            .await?
            .into_inner();
        let mut result = DeliveryResult {
            delivery_id: d.id,
            status: match tried.outcome {
                Outcome::Delivered => DeliveryStatus::Delivered,
                Outcome::Retrying => DeliveryStatus::Pending,
                Outcome::Failed | Outcome::Skipped => DeliveryStatus::Failed,
            },
            attempts: attempt,
            last_status: tried.http_status,
            error: tried.error,
            next_attempt_ms: None,
        };
        let Some(pause) = tried
            .retry_in_ms
            .filter(|_| tried.outcome == Outcome::Retrying)
        else {
            return Ok(result);
        };
        result.next_attempt_ms = Some(tried.at_ms + pause as i64);
        finished.push(result);
        record(ctx, app, finished).await?;
        ctx.sleep(Duration::from_millis(pause)).await?;
    }
    unreachable!("attempts are unbounded; the loop returns")
}

/// Records results (one transaction) and empties `results`.
async fn record(
    ctx: &ObjectContext<'_>,
    app: &Arc<App>,
    results: &mut Vec<DeliveryResult>,
) -> Result<(), HandlerError> {
    if results.is_empty() {
        return Ok(());
    }
    let (a, p) = (
        app.clone(),
        WebhookRecord {
            results: std::mem::take(results),
        },
    );
    let first = p.results[0].delivery_id;
    ctx.run(|| async move { a.rpc.call::<m::WebhookRecord>(&p).await.map_err(rpc_err) })
        .name(format!("record from {first}"))
        .retry_policy(rpc_policy())
        .await?;
    Ok(())
}

async fn pending(
    app: Arc<App>,
    webhook: RowId,
    after: i64,
    through: i64,
) -> HandlerResult<Json<PendingDeliveries>> {
    let p = WebhookPending {
        webhook_id: webhook,
        after,
        through,
        limit: PAGE,
    };
    app.rpc
        .call::<m::WebhookPending>(&p)
        .await
        .map(Json)
        .map_err(rpc_err)
}

/// One attempt: the endpoint and its secret (fetched here, so never journaled), the POST, and
/// what comes next. Counted once per attempt made.
async fn try_once(
    app: Arc<App>,
    webhook: RowId,
    d: Arc<PendingDelivery>,
    attempt: u32,
) -> HandlerResult<Json<Attempt>> {
    let sender = &app.webhooks;
    let endpoint = sender.endpoint(&app.rpc, webhook).await.map_err(rpc_err)?;
    let (mut tried, retry_after) = if !endpoint.active {
        (
            Attempt {
                outcome: Outcome::Skipped,
                http_status: None,
                error: Some("the webhook was deleted".into()),
                retry_in_ms: None,
                at_ms: now_ms(),
            },
            None,
        )
    } else {
        let sent = sender.send(&endpoint, &d.message_id, &d.body).await;
        let at_ms = now_ms();
        let (outcome, http_status, error, retry_after) = match sent {
            Sent::Answered { status, .. } if (200..300).contains(&status) => {
                (Outcome::Delivered, Some(status), None, None)
            }
            // The receiver asks to stop sending (Standard Webhooks).
            Sent::Answered { status: 410, .. } => (
                Outcome::Failed,
                Some(410),
                Some("HTTP 410 Gone: the receiver wants no more messages".to_owned()),
                None,
            ),
            Sent::Answered {
                status,
                retry_after,
            } => (
                Outcome::Retrying,
                Some(status),
                Some(format!("HTTP {status}")),
                retry_after,
            ),
            Sent::Refused(why) => (Outcome::Failed, None, Some(why), None),
            Sent::Failed(why) => (Outcome::Retrying, None, Some(why), None),
        };
        (
            Attempt {
                outcome,
                http_status,
                error: error.map(|e| e.chars().take(MAX_ERROR).collect()),
                retry_in_ms: None,
                at_ms,
            },
            retry_after,
        )
    };
    if tried.outcome == Outcome::Retrying {
        let jitter = rand::random_range(-1.0..1.0);
        match sender
            .retry
            .next(attempt, d.created_ms, tried.at_ms, retry_after, jitter)
        {
            Some(pause) => tried.retry_in_ms = Some(pause.as_millis() as u64),
            None => {
                tried.outcome = Outcome::Failed;
                tried.error = Some(format!(
                    "gave up after {attempt} attempts (retry period {} s over); last: {}",
                    sender.retry.retry_for.as_secs(),
                    tried.error.as_deref().unwrap_or("no answer")
                ));
            }
        }
    }
    sender.outcomes.observe(tried.outcome);
    tracing::info!(
        webhook = webhook.get(),
        delivery = d.id,
        attempt,
        outcome = tried.outcome.as_str(),
        status = tried.http_status,
        retry_in_ms = tried.retry_in_ms,
        "webhook attempt"
    );
    Ok(Json(tried))
}
