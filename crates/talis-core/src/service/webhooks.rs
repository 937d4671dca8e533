//! Webhooks: an owner registers a URL for some event kinds; every event written
//! ([`Service::record_event`]) becomes one delivery per matching webhook **in the event's
//! transaction**, so none is lost, and each committed batch is handed to the workflow engine
//! after commit as one kick per webhook ([`Service::take_kicks`]; swept again when not
//! accepted). The delivery workflow reads pending deliveries and the endpoint and records
//! outcomes with the internal methods here. See `docs/webhooks.md`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use serde_json::{Value as Json, json};
use talis_api::decode::Valid;
use talis_api::egress;
use talis_api::events::EventKind;
use talis_api::signing::{SECRET_BYTES, Secret};
use talis_api::webhooks::{
    DeliveryStatus, PING, PendingDeliveries, PendingDelivery, Webhook, WebhookCreate,
    WebhookCreated, WebhookDeliveries, WebhookDelivery, WebhookEndpoint, WebhookEndpointGet,
    WebhookKick, WebhookPending, WebhookRecord, WebhookRef,
};
use talis_api::{OwnerId, OwnerList, Page, Paged, ProjectId, RowId};

use super::events::On;
use super::quotas::Quota;
use super::{PageQuery, Service, owner_filter};
use crate::auth::Caller;
use crate::db::{Row, RowExt, Value};
use crate::{Error, Result, now, settings};

/// A webhook as the fan-out needs it.
#[derive(Debug)]
pub(crate) struct Subscription {
    id: i64,
    project: Option<ProjectId>,
    kinds: Vec<EventKind>,
}

/// Each owner's webhooks, read once per transaction (a batch of 500 transitions writes 500
/// events of one owner: one read, not 500). Valid under the transaction's write lock only, so
/// [`Service::tx`] clears it when a transaction starts and ends.
#[derive(Debug, Default)]
pub(crate) struct Cache(RefCell<HashMap<OwnerId, Rc<[Subscription]>>>);

impl Cache {
    pub(crate) fn clear(&self) {
        self.0.borrow_mut().clear();
    }
}

const WEBHOOK: &str =
    "id, owner_id, (SELECT name FROM projects p WHERE p.id = project_id), url, events, created_at";

fn webhook(r: &Row) -> Webhook {
    Webhook {
        id: RowId::from_db(r.int(0)),
        owner_id: OwnerId::from_db(r.int(1)),
        project: r.opt_text(2),
        url: r.text(3),
        events: serde_json::from_str(&r.text(4)).unwrap_or_default(),
        created_at: r.text(5),
    }
}

const DELIVERY: &str = "id, webhook_id, event_id, kind, message_id, status, attempts, last_status, last_error, \
     next_attempt_at, created_at, updated_at";

fn delivery(r: &Row) -> WebhookDelivery {
    WebhookDelivery {
        id: RowId::from_db(r.int(0)),
        webhook_id: RowId::from_db(r.int(1)),
        event_id: r.opt_int(2),
        kind: r.text(3),
        message_id: r.text(4),
        status: r.text(5).parse().unwrap_or(DeliveryStatus::Pending),
        attempts: r.int(6) as u32,
        last_status: r.opt_int(7).map(|s| s as u16),
        last_error: r.opt_text(8),
        next_attempt_at: r.opt_text(9),
        created_at: r.text(10),
        updated_at: r.text(11),
    }
}

/// Unix ms of a stored timestamp.
fn millis(ts: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts).map_or(0, |t| t.timestamp_millis())
}

fn timestamp_ms(ms: i64) -> String {
    crate::timestamp(chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default())
}

/// The `webhook-id` of a new message: random, so it stays unique across databases.
fn message_id() -> String {
    format!("msg_{:032x}", rand::random::<u128>())
}

impl Service<'_> {
    /// The owner's live webhooks (cached for the transaction).
    fn subscriptions(&self, owner: OwnerId) -> Result<Rc<[Subscription]>> {
        if let Some(s) = self.subscriptions.0.borrow().get(&owner) {
            return Ok(s.clone());
        }
        let subs: Rc<[Subscription]> = self
            .q(
                "SELECT id, project_id, events FROM webhooks WHERE owner_id = ? AND deleted_at IS NULL",
                &[owner.into()],
            )?
            .iter()
            .map(|r| Subscription {
                id: r.int(0),
                project: r.opt_int(1).map(ProjectId::from_db),
                kinds: serde_json::from_str(&r.text(2)).unwrap_or_default(),
            })
            .collect();
        if self.in_tx.get() {
            self.subscriptions
                .0
                .borrow_mut()
                .insert(owner, subs.clone());
        }
        Ok(subs)
    }

    /// One delivery per webhook of the event's owner that wants it (inside the event's
    /// transaction), handed to the workflow engine after commit.
    pub(crate) fn fan_out(&self, event_id: i64, on: &On, kind: EventKind) -> Result<()> {
        let owner = on.owner.unwrap_or(OwnerId::ADMIN);
        for s in self.subscriptions(owner)?.iter() {
            let project_matches = s.project.is_none_or(|p| on.project == Some(p));
            if project_matches && s.kinds.contains(&kind) {
                self.insert_delivery(s.id, owner, Some(event_id), kind.as_str())?;
            }
        }
        Ok(())
    }

    fn insert_delivery(
        &self,
        webhook: i64,
        owner: OwnerId,
        event: Option<i64>,
        kind: &str,
    ) -> Result<WebhookDelivery> {
        let ts = now();
        let row = self
            .q1(
                &format!(
                    "INSERT INTO webhook_deliveries (webhook_id, owner_id, event_id, kind, message_id, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {DELIVERY}"
                ),
                &[
                    webhook.into(),
                    owner.into(),
                    event.into(),
                    kind.into(),
                    message_id().into(),
                    (&ts).into(),
                    ts.into(),
                ],
            )?
            .ok_or_else(|| Error::Db("delivery insert returned no row".into()))?;
        let d = delivery(&row);
        self.kicks.borrow_mut().push(WebhookKick {
            webhook_id: webhook,
            through: d.id.get(),
        });
        Ok(d)
    }

    /// The deliveries committed by this service's calls, as one kick per webhook (its last
    /// delivery), to hand to the workflow engine; emptied.
    pub fn take_kicks(&self) -> Vec<WebhookKick> {
        merge_kicks(self.kicks.take())
    }

    /// Kicks covering deliveries committed at least `min_age_secs` ago that the workflow engine
    /// has not accepted yet (at most `limit` webhooks): the sweep.
    pub fn webhooks_undispatched(&self, min_age_secs: i64, limit: i64) -> Result<Vec<WebhookKick>> {
        let before = crate::timestamp(chrono::Utc::now() - chrono::Duration::seconds(min_age_secs));
        // Every request runs this after its answer: it must read only the undispatched rows
        // (their partial index), not walk every delivery in webhook order for the GROUP BY.
        let rows = self.q(
            "SELECT webhook_id, MAX(id) FROM webhook_deliveries INDEXED BY webhook_deliveries_undispatched \
             WHERE dispatched_at IS NULL AND created_at <= ? GROUP BY webhook_id ORDER BY MIN(id) LIMIT ?",
            &[before.into(), limit.into()],
        )?;
        Ok(rows
            .iter()
            .map(|r| WebhookKick {
                webhook_id: r.int(0),
                through: r.int(1),
            })
            .collect())
    }

    /// Records that the workflow engine accepted these kicks: each covers every delivery of
    /// its webhook up to its `through`.
    pub fn webhooks_dispatched(&self, kicks: &[WebhookKick]) -> Result<()> {
        let ts = now();
        self.tx(|| {
            for k in kicks {
                self.q(
                    "UPDATE webhook_deliveries SET dispatched_at = ? WHERE webhook_id = ? AND id <= ? AND dispatched_at IS NULL",
                    &[(&ts).into(), k.webhook_id.into(), k.through.into()],
                )?;
            }
            Ok(())
        })
    }

    fn webhook_scoped(&self, scope: Option<OwnerId>, id: RowId, live: bool) -> Result<Webhook> {
        let (filter, mut args) = owner_filter(
            scope,
            if live {
                "id = ? AND deleted_at IS NULL"
            } else {
                "id = ?"
            },
        );
        args.push(id.into());
        self.q1(
            &format!("SELECT {WEBHOOK} FROM webhooks WHERE {filter}"),
            &args,
        )?
        .map(|r| webhook(&r))
        .ok_or(Error::NotFound("webhook"))
    }

    pub(super) fn webhook_create(
        &self,
        c: &Caller,
        p: Valid<WebhookCreate>,
    ) -> Result<WebhookCreated> {
        let owner = c.acting_for(p.owner_id)?;
        egress::check_url(&p.url, &self.cfg.webhook_allow_hosts)
            .map_err(|e| Error::invalid("url", e.message(settings::WEBHOOK_ALLOW_HOSTS)))?;
        let mut kinds = p.events.clone();
        kinds.sort();
        kinds.dedup();
        let secret = Secret::from_bytes(rand::random::<[u8; SECRET_BYTES]>()).encode();
        self.tx(|| {
            self.require_owner(owner)?;
            self.check_quota(owner, Quota::Webhooks, 1)?;
            let project = match &p.project {
                Some(name) => Some(self.project_by_name(owner, name)?.id),
                None => None,
            };
            let row = self
                .q1(
                    &format!(
                        "INSERT INTO webhooks (owner_id, project_id, url, events, secret, created_at) \
                         VALUES (?, ?, ?, ?, ?, ?) RETURNING {WEBHOOK}"
                    ),
                    &[
                        owner.into(),
                        project.into(),
                        p.url.as_str().into(),
                        serde_json::to_string(&kinds).unwrap_or_default().into(),
                        secret.as_str().into(),
                        now().into(),
                    ],
                )?
                .ok_or_else(|| Error::Db("webhook insert returned no row".into()))?;
            self.subscriptions.clear();
            Ok(WebhookCreated {
                webhook: webhook(&row),
                secret: secret.clone(),
            })
        })
    }

    pub(super) fn webhook_list(&self, c: &Caller, p: Valid<OwnerList>) -> Result<Page<Webhook>> {
        let (filter, args) = owner_filter(c.scope(p.owner_id)?, "deleted_at IS NULL");
        let query = PageQuery {
            columns: WEBHOOK,
            from: "webhooks",
            filter: &filter,
            id_col: "id",
        };
        self.page(query, args, webhook, |w| w.id.get(), p.paging())
    }

    /// Deletes the webhook (its secret with it); its pending deliveries fail.
    pub(super) fn webhook_delete(&self, c: &Caller, p: Valid<WebhookRef>) -> Result<()> {
        let scope = c.scope(p.owner_id)?;
        self.tx(|| {
            let w = self.webhook_scoped(scope, p.id, true)?;
            let ts = now();
            self.q(
                "UPDATE webhooks SET deleted_at = ?, secret = '' WHERE id = ?",
                &[(&ts).into(), w.id.into()],
            )?;
            self.q(
                "UPDATE webhook_deliveries SET status = 'failed', last_error = 'the webhook was deleted', \
                 next_attempt_at = NULL, updated_at = ? WHERE webhook_id = ? AND status = 'pending'",
                &[ts.into(), w.id.into()],
            )?;
            self.subscriptions.clear();
            Ok(())
        })
    }

    /// Queues a `ping` behind the webhook's other deliveries.
    pub(super) fn webhook_test(&self, c: &Caller, p: Valid<WebhookRef>) -> Result<WebhookDelivery> {
        let scope = c.scope(p.owner_id)?;
        self.tx(|| {
            let w = self.webhook_scoped(scope, p.id, true)?;
            self.insert_delivery(w.id.get(), w.owner_id, None, PING)
        })
    }

    pub(super) fn webhook_deliveries(
        &self,
        c: &Caller,
        p: Valid<WebhookDeliveries>,
    ) -> Result<Page<WebhookDelivery>> {
        let w = self.webhook_scoped(c.scope(p.owner_id)?, p.webhook_id, false)?;
        let mut filter = String::from("webhook_id = ?");
        let mut args: Vec<Value> = vec![w.id.into()];
        if let Some(s) = p.status {
            filter.push_str(" AND status = ?");
            args.push(s.as_str().into());
        }
        let query = PageQuery {
            columns: DELIVERY,
            from: "webhook_deliveries",
            filter: &filter,
            id_col: "id",
        };
        self.page(query, args, delivery, |d| d.id.get(), p.paging())
    }

    /// The webhook's pending deliveries in `(after, through]`, oldest first, with the exact
    /// bodies to sign. A delivery whose event was deleted meanwhile (retention) fails here.
    pub(super) fn webhook_pending(&self, p: Valid<WebhookPending>) -> Result<PendingDeliveries> {
        let rows = self.q(
            "SELECT d.id, d.message_id, d.kind, d.created_at, d.event_id, e.id, e.at, e.kind, e.data, \
             e.task_id, e.instance_id, (SELECT name FROM projects p WHERE p.id = e.project_id), d.attempts \
             FROM webhook_deliveries d LEFT JOIN events e ON e.id = d.event_id \
             WHERE d.webhook_id = ? AND d.status = 'pending' AND d.id > ? AND d.id <= ? ORDER BY d.id LIMIT ?",
            &[p.webhook_id.into(), p.after.into(), p.through.into(), i64::from(p.limit).into()],
        )?;
        let mut deliveries = Vec::with_capacity(rows.len());
        let mut expired = Vec::new();
        for r in &rows {
            let (id, kind, created_at) = (r.int(0), r.text(2), r.text(3));
            let body = match (r.opt_int(4), r.opt_int(5)) {
                (None, _) => message(&kind, &created_at, json!({ "webhook_id": p.webhook_id })),
                (Some(_), Some(event_id)) => {
                    let mut data = match serde_json::from_str::<Json>(&r.text(8)) {
                        Ok(Json::Object(o)) => o,
                        _ => Default::default(),
                    };
                    data.insert("event_id".into(), event_id.into());
                    for (k, v) in [("task_id", r.opt_int(9)), ("instance_id", r.opt_int(10))] {
                        if let Some(v) = v {
                            data.insert(k.into(), v.into());
                        }
                    }
                    data.insert("project".into(), r.opt_text(11).into());
                    message(&r.text(7), &r.text(6), Json::Object(data))
                }
                (Some(_), None) => {
                    expired.push(id);
                    continue;
                }
            };
            deliveries.push(PendingDelivery {
                id,
                message_id: r.text(1),
                body,
                created_ms: millis(&created_at),
                attempts: r.int(12) as u32,
            });
        }
        if !expired.is_empty() {
            self.q(
                "UPDATE webhook_deliveries SET status = 'failed', updated_at = ?, \
                 last_error = 'the event was deleted (event_retention_days) before it was delivered' \
                 WHERE id IN (SELECT value FROM json_each(?)) AND status = 'pending'",
                &[now().into(), super::id_list(expired)],
            )?;
        }
        Ok(PendingDeliveries { deliveries })
    }

    /// Where the webhook sends and its key (the delivery step only).
    pub(super) fn webhook_endpoint(&self, p: Valid<WebhookEndpointGet>) -> Result<WebhookEndpoint> {
        let row = self.q1(
            "SELECT url, secret FROM webhooks WHERE id = ? AND deleted_at IS NULL",
            &[p.webhook_id.into()],
        )?;
        Ok(match row {
            Some(r) => WebhookEndpoint {
                active: true,
                url: r.text(0),
                secret: r.text(1),
            },
            None => WebhookEndpoint {
                active: false,
                url: String::new(),
                secret: String::new(),
            },
        })
    }

    /// How deliveries went. Only pending deliveries change, and attempts never go back, so a
    /// replayed record changes nothing.
    pub(super) fn webhook_record(&self, p: Valid<WebhookRecord>) -> Result<()> {
        self.tx(|| {
            let ts = now();
            for r in &p.results {
                self.q(
                    "UPDATE webhook_deliveries SET status = ?, attempts = ?, last_status = COALESCE(?, last_status), \
                     last_error = ?, next_attempt_at = ?, updated_at = ? \
                     WHERE id = ? AND status = 'pending' AND attempts <= ?",
                    &[
                        r.status.as_str().into(),
                        i64::from(r.attempts).into(),
                        r.last_status.map(i64::from).into(),
                        r.error.clone().into(),
                        r.next_attempt_ms.map(timestamp_ms).into(),
                        (&ts).into(),
                        r.delivery_id.into(),
                        i64::from(r.attempts).into(),
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// Deletes finished deliveries older than `days` days, at most `limit` at a time.
    pub(crate) fn purge_deliveries(&self, days: u32, limit: i64) -> Result<i64> {
        let before = crate::timestamp(chrono::Utc::now() - chrono::Duration::days(i64::from(days)));
        let rows = self.q(
            "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries \
             WHERE created_at < ? AND status != 'pending' ORDER BY id LIMIT ?) RETURNING id",
            &[before.into(), limit.into()],
        )?;
        Ok(rows.len() as i64)
    }
}

/// A message body as Standard Webhooks suggests: `{"type", "timestamp", "data"}`.
fn message(kind: &str, timestamp: &str, data: Json) -> String {
    json!({ "type": kind, "timestamp": timestamp, "data": data }).to_string()
}

/// One kick per webhook, through its last delivery.
fn merge_kicks(kicks: Vec<WebhookKick>) -> Vec<WebhookKick> {
    let mut by_webhook: BTreeMap<i64, i64> = BTreeMap::new();
    for k in kicks {
        let t = by_webhook.entry(k.webhook_id).or_default();
        *t = (*t).max(k.through);
    }
    by_webhook
        .into_iter()
        .map(|(webhook_id, through)| WebhookKick {
            webhook_id,
            through,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kicks_merge_to_the_last_delivery_of_each_webhook() {
        let k = |webhook_id, through| WebhookKick {
            webhook_id,
            through,
        };
        assert_eq!(
            merge_kicks(vec![k(2, 5), k(1, 3), k(2, 9), k(1, 4), k(2, 7)]),
            vec![k(1, 4), k(2, 9)]
        );
    }

    #[test]
    fn bodies_are_type_timestamp_data() {
        let b: Json = serde_json::from_str(&message(
            "ping",
            "2025-01-01T00:00:00.000Z",
            json!({"webhook_id": 3}),
        ))
        .unwrap();
        assert_eq!(
            b,
            json!({"type": "ping", "timestamp": "2025-01-01T00:00:00.000Z", "data": {"webhook_id": 3}})
        );
    }
}
