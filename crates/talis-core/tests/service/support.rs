//! What every service test needs: a service over an in-memory database, callers, requests.

use serde_json::{Value, json};
use talis_core::auth::Caller;
use talis_core::db;
use talis_core::{Config, Error, Service};

pub const ADMIN_KEY: &str = "admin-key-of-at-least-32-characters";

/// A real OpenSSH public key (keys are parsed, not pattern-matched).
pub const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q me@host";

pub fn cfg() -> Config {
    Config {
        admin_api_key: ADMIN_KEY.into(),
        internal_secret: "internal-secret-of-at-least-32-chars".into(),
        public_url: "http://api.test".into(),
        restate_ui_url: "http://restate.test:9070".into(),
        deployment: "test-deployment".into(),
        quotas: Default::default(),
        event_retention_days: 30,
        event_wait_max_ms: 30_000,
        webhook_allow_hosts: Default::default(),
    }
}

pub struct Env {
    pub db: rusqlite::Connection,
    pub cfg: Config,
}

impl Env {
    pub fn new() -> Self {
        Self {
            db: rusqlite::Connection::open_in_memory().unwrap(),
            cfg: cfg(),
        }
    }
    pub fn svc(&self) -> Service<'_> {
        Service::open(&self.db, &self.cfg).unwrap()
    }
    pub fn call(&self, c: &Caller, method: &str, params: Value) -> Result<Value, Error> {
        self.svc()
            .call(c, method, params)
            .map(|o| o.data.unwrap_or(Value::Null))
    }
    pub fn internal(&self, method: &str, params: Value) -> Result<Value, Error> {
        self.svc()
            .call_internal(method, params)
            .map(|o| o.data.unwrap_or(Value::Null))
    }
    /// `task.claim` in one chunk, and that chunk planned: the claim with the chunk's `requests`
    /// and `instances` added.
    pub fn claim(&self, task_id: &Value, invocation: &str) -> Value {
        let mut claim = self
            .internal(
                "task.claim",
                json!({ "task_id": task_id, "invocation_id": invocation, "chunk_size": 1000 }),
            )
            .unwrap();
        let mut chunk = claim["chunks"][0].clone();
        chunk["task_id"] = task_id.clone();
        let plan = self.internal("task.chunk", chunk).unwrap();
        claim["requests"] = plan["requests"].clone();
        claim["instances"] = plan["instances"].clone();
        claim
    }
    /// A new user and a caller for their API key.
    pub fn user(&self, name: &str) -> Caller {
        let created = self
            .call(&Caller::ADMIN, "user.create", json!({ "username": name }))
            .unwrap();
        self.svc()
            .authenticate(created["api_key"].as_str())
            .unwrap()
    }
    pub fn count(&self, table: &str) -> i64 {
        db::scalar(&self.db, &format!("SELECT COUNT(*) FROM {table}"), &[]).unwrap()
    }
}

pub fn req(n: i64) -> Value {
    json!({ "provider": "do", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-22-04-x64",
            "number_of_instances": n, "name": "node", "tags": ["t1"],
            "volumes": [{ "name": "data", "size_gb": 20, "mount_point": "/mnt/data" }] })
}
