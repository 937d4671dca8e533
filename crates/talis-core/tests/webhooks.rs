//! Webhooks in the service, natively on rusqlite: deliveries are written with their events,
//! handed over as one kick per webhook, read back in order with their bodies, recorded
//! idempotently; URLs, quotas and ownership are checked; the secret is answered once.

use serde_json::{Value, json};
use talis_api::signing::Secret;
use talis_core::auth::Caller;
use talis_core::db;
use talis_core::{Config, Error, Service};

fn cfg() -> Config {
    Config {
        admin_api_key: "admin-key-of-at-least-32-characters".into(),
        internal_secret: "internal-secret-of-at-least-32-chars".into(),
        public_url: "http://api.test".into(),
        deployment: "test".into(),
        event_retention_days: 30,
        event_wait_max_ms: 30_000,
        quotas: talis_api::Quotas {
            max_webhooks: 2,
            ..Default::default()
        },
        webhook_allow_hosts: "127.0.0.1".parse().unwrap(),
        ..Default::default()
    }
}

struct Env {
    db: rusqlite::Connection,
    cfg: Config,
}

impl Env {
    fn new() -> Self {
        Self {
            db: rusqlite::Connection::open_in_memory().unwrap(),
            cfg: cfg(),
        }
    }
    fn svc(&self) -> Service<'_> {
        Service::open(&self.db, &self.cfg).unwrap()
    }
    fn call(&self, c: &Caller, method: &str, params: Value) -> Result<Value, Error> {
        self.svc()
            .call(c, method, params)
            .map(|o| o.data.unwrap_or(Value::Null))
    }
    fn internal(&self, method: &str, params: Value) -> Value {
        self.svc()
            .call_internal(method, params)
            .map(|o| o.data.unwrap_or(Value::Null))
            .unwrap()
    }
    fn user(&self, name: &str) -> Caller {
        let created = self
            .call(&Caller::ADMIN, "user.create", json!({ "username": name }))
            .unwrap();
        self.svc()
            .authenticate(created["api_key"].as_str())
            .unwrap()
    }
    fn count(&self, sql: &str) -> i64 {
        db::scalar(&self.db, sql, &[]).unwrap()
    }
    fn pending(&self, webhook: &Value) -> Vec<Value> {
        self.internal(
            "webhook.pending",
            json!({ "webhook_id": webhook, "after": 0, "through": i64::MAX, "limit": 500 }),
        )["deliveries"]
            .as_array()
            .unwrap()
            .clone()
    }
}

fn hook(url: &str, events: &[&str]) -> Value {
    json!({ "url": url, "events": events })
}

#[test]
fn deliveries_are_written_with_their_events_and_handed_over_once_per_webhook() {
    let env = Env::new();
    let alice = env.user("alice");
    let created = env
        .call(
            &alice,
            "webhook.create",
            hook("http://127.0.0.1:9/h", &["api.call"]),
        )
        .unwrap();
    let id = created["id"].clone();
    let secret = created["secret"].as_str().unwrap();
    assert!(
        secret.starts_with("whsec_") && Secret::parse(secret).is_ok(),
        "{secret}"
    );

    // One call writing several audited events: each is one delivery, handed over as one kick.
    let svc = env.svc();
    for name in ["k1", "k2", "k3"] {
        svc.call(&alice, "apikey.create", json!({ "name": name }))
            .unwrap();
    }
    let kicks = svc.take_kicks();
    let through = env.count("SELECT MAX(id) FROM webhook_deliveries");
    assert_eq!(kicks.len(), 1, "{kicks:?}");
    assert_eq!(
        (kicks[0].webhook_id, kicks[0].through),
        (id.as_i64().unwrap(), through)
    );
    assert!(svc.take_kicks().is_empty());

    // The webhook's own creation is an api.call too (the audit event of its transaction).
    let pending = env.pending(&id);
    let methods: Vec<String> = pending
        .iter()
        .map(|d| {
            let body: Value = serde_json::from_str(d["body"].as_str().unwrap()).unwrap();
            assert_eq!(body["type"], "api.call");
            assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
            assert!(body["data"]["event_id"].as_i64().is_some());
            body["data"]["method"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        methods,
        [
            "webhook.create",
            "apikey.create",
            "apikey.create",
            "apikey.create"
        ]
    );
    let ids: Vec<i64> = pending.iter().map(|d| d["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");

    // The sweep finds them until they are marked handed over.
    assert_eq!(env.svc().webhooks_undispatched(-60, 10).unwrap().len(), 1);
    env.svc().webhooks_dispatched(&kicks).unwrap();
    assert!(env.svc().webhooks_undispatched(-60, 10).unwrap().is_empty());
}

#[test]
fn a_failed_call_leaves_no_delivery_and_no_kick() {
    let env = Env::new();
    let alice = env.user("alice");
    env.call(
        &alice,
        "webhook.create",
        hook("http://127.0.0.1:9/", &["api.call"]),
    )
    .unwrap();
    let before = env.count("SELECT COUNT(*) FROM webhook_deliveries");
    let svc = env.svc();
    // Over the webhook quota (2): the create fails after its checks, nothing is kept.
    svc.call(
        &alice,
        "webhook.create",
        hook("http://127.0.0.1:9/", &["api.call"]),
    )
    .unwrap();
    svc.take_kicks();
    let e = svc
        .call(
            &alice,
            "webhook.create",
            hook("http://127.0.0.1:9/", &["api.call"]),
        )
        .unwrap_err();
    assert!(e.to_string().contains("max_webhooks_per_owner"), "{e}");
    assert_eq!(e.status(), 403);
    assert!(svc.take_kicks().is_empty());
    // Only the successful create's audit event was delivered, to both webhooks.
    assert_eq!(
        env.count("SELECT COUNT(*) FROM webhook_deliveries") - before,
        2
    );
}

#[test]
fn project_and_kind_filters_pick_the_deliveries() {
    let env = Env::new();
    let alice = env.user("alice");
    for p in ["p1", "p2"] {
        env.call(&alice, "project.create", json!({ "name": p }))
            .unwrap();
    }
    let only_p1 = env
        .call(
            &alice,
            "webhook.create",
            json!({ "url": "http://127.0.0.1:9/", "events": ["task.status"], "project": "p1" }),
        )
        .unwrap();
    let request = json!({
        "provider": "do", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64",
        "number_of_instances": 2,
    });
    for p in ["p1", "p2"] {
        let mut r = request.clone();
        r["project_name"] = json!(p);
        env.call(&alice, "instance.create", json!({ "instances": [r] }))
            .unwrap();
    }
    let pending = env.pending(&only_p1["id"]);
    assert_eq!(pending.len(), 1, "one task.status event of p1: {pending:?}");
    let body: Value = serde_json::from_str(pending[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        (body["type"].as_str(), body["data"]["project"].as_str()),
        (Some("task.status"), Some("p1"))
    );
    assert_eq!(body["data"]["to"], "pending");
    // Unknown project: 404; another owner's webhook: not found.
    let e = env
        .call(
            &alice,
            "webhook.create",
            json!({ "url": "http://127.0.0.1:9/", "events": ["api.call"], "project": "nope" }),
        )
        .unwrap_err();
    assert_eq!(e.status(), 404);
    let bob = env.user("bob");
    let e = env
        .call(
            &bob,
            "webhook.deliveries",
            json!({ "webhook_id": only_p1["id"] }),
        )
        .unwrap_err();
    assert_eq!(e.status(), 404);
}

#[test]
fn refused_urls_answer_400_on_url() {
    let env = Env::new();
    let alice = env.user("alice");
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://10.0.0.1/",
        "http://100.64.0.1/",
        "http://127.0.0.2:9/",
        "http://localhost:9/",
        "ftp://example.com/",
        "https://user:pass@example.com/",
    ] {
        let e = env
            .call(&alice, "webhook.create", hook(url, &["api.call"]))
            .unwrap_err();
        let wire = e.to_wire();
        assert_eq!(
            (wire.code, wire.data.as_ref().unwrap()["field"].as_str()),
            (400, Some("url")),
            "{url}: {e}"
        );
    }
    let e = env
        .call(
            &alice,
            "webhook.create",
            hook("http://10.0.0.1/", &["api.call"]),
        )
        .unwrap_err();
    assert!(e.to_string().contains("webhook_allow_hosts"), "{e}");
    assert_eq!(env.count("SELECT COUNT(*) FROM webhooks"), 0);
}

#[test]
fn outcomes_are_recorded_once_and_deletion_fails_what_is_pending() {
    let env = Env::new();
    let alice = env.user("alice");
    let w = env
        .call(
            &alice,
            "webhook.create",
            hook("http://127.0.0.1:9/", &["reconcile"]),
        )
        .unwrap();
    let ping = env
        .call(&alice, "webhook.test", json!({ "id": w["id"] }))
        .unwrap();
    assert_eq!(
        (ping["type"].as_str(), ping["status"].as_str()),
        (Some("ping"), Some("pending"))
    );
    let ping2 = env
        .call(&alice, "webhook.test", json!({ "id": w["id"] }))
        .unwrap();
    let pending = env.pending(&w["id"]);
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0]["message_id"], ping["message_id"]);
    let body: Value = serde_json::from_str(pending[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["data"]["webhook_id"], w["id"]);

    // The endpoint (for the delivery step) carries the secret; no listing does.
    let e = env.internal("webhook.endpoint", json!({ "webhook_id": w["id"] }));
    assert_eq!(e["secret"], w["secret"]);
    let listed = env
        .call(&alice, "webhook.list", json!({}))
        .unwrap()
        .to_string();
    assert!(
        !listed.contains(w["secret"].as_str().unwrap()) && listed.contains("127.0.0.1"),
        "{listed}"
    );

    let record = |status: &str, attempts: u32, http: u16| {
        env.internal(
            "webhook.record",
            json!({ "results": [{ "delivery_id": ping["id"], "status": status, "attempts": attempts, "last_status": http, "error": "HTTP 503" }] }),
        )
    };
    let fleet = || {
        let f = env.svc().fleet(&Caller::ADMIN).unwrap();
        (f.webhooks, f.webhooks_failing)
    };
    assert_eq!(fleet(), (1, 0), "no attempt yet: not failing");
    record("pending", 1, 503);
    assert_eq!(fleet(), (1, 1), "retrying after a 503: failing");
    record("delivered", 2, 204);
    assert_eq!(fleet(), (1, 0), "delivered: no longer failing");
    // A replayed older record changes nothing.
    record("pending", 1, 503);
    let deliveries = env
        .call(
            &alice,
            "webhook.deliveries",
            json!({ "webhook_id": w["id"] }),
        )
        .unwrap();
    let first = &deliveries["rows"][0];
    assert_eq!(
        (
            first["status"].as_str(),
            first["attempts"].as_u64(),
            first["last_status"].as_u64()
        ),
        (Some("delivered"), Some(2), Some(204))
    );
    assert_eq!(env.pending(&w["id"]).len(), 1);

    env.call(&alice, "webhook.delete", json!({ "id": w["id"] }))
        .unwrap();
    assert_eq!(fleet(), (0, 0), "a deleted webhook is not counted");
    assert!(env.pending(&w["id"]).is_empty());
    let failed = env
        .call(
            &alice,
            "webhook.deliveries",
            json!({ "webhook_id": w["id"], "status": "failed" }),
        )
        .unwrap();
    assert_eq!(failed["rows"][0]["id"], ping2["id"]);
    assert_eq!(failed["rows"][0]["last_error"], "the webhook was deleted");
    let gone = env.internal("webhook.endpoint", json!({ "webhook_id": w["id"] }));
    assert_eq!(
        (gone["active"].as_bool(), gone["secret"].as_str()),
        (Some(false), Some(""))
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM webhooks WHERE secret != ''"),
        0
    );
    assert_eq!(
        env.call(&alice, "webhook.test", json!({ "id": w["id"] }))
            .unwrap_err()
            .status(),
        404
    );
}
