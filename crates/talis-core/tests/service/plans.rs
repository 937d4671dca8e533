//! The hot path stays O(log N) per call: every statement a deploy runs per machine or per look
//! (create, claim, plan, record, phone-home, progress) is checked with `EXPLAIN QUERY PLAN`,
//! and none may scan a table that grows with the fleet. A scan there makes a 10 000-machine
//! deploy quadratic (a phone-home once scanned every instance: its partial index on
//! `provider_ref` was unusable for `provider_ref = ?`).

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde_json::{Value, json};
use talis_api::phone_home;
use talis_api::{InstanceId, TaskId};
use talis_core::Service;
use talis_core::auth::Caller;
use talis_core::db::{Row, Sql, Value as SqlValue};
use talis_core::service::PhoneHomeToken;

use crate::support::*;

/// Tables whose rows grow with the number of machines, tasks or events.
const GROWING: &[&str] = &[
    "instances",
    "task_instances",
    "events",
    "tasks",
    "webhook_deliveries",
    "early_phone_homes",
];

/// A connection that explains every statement before running it and keeps the full scans of
/// growing tables it finds.
struct Explained {
    conn: rusqlite::Connection,
    scans: RefCell<BTreeSet<String>>,
}

impl Sql for Explained {
    fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, String> {
        let plan = self
            .conn
            .query(&format!("EXPLAIN QUERY PLAN {sql}"), params);
        for row in plan.unwrap_or_default() {
            let Some(SqlValue::Text(detail)) = row.get(3) else {
                continue;
            };
            // `SCAN t` or `SCAN t USING [COVERING] INDEX i`: every row (or index entry) of t.
            let scanned = detail
                .strip_prefix("SCAN ")
                .and_then(|rest| rest.split_whitespace().next());
            // Only tables the statement names: SQLite also plans foreign-key look-ups of child
            // tables on an insert into their parent, run only while deferred violations are
            // pending (never here).
            if let Some(t) = scanned
                && GROWING.iter().any(|g| table_of(sql, t) == *g)
                && sql
                    .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                    .any(|w| w == table_of(sql, t))
            {
                self.scans.borrow_mut().insert(format!("{detail}: {sql}"));
            }
        }
        self.conn.query(sql, params)
    }
}

/// The table an alias names in `sql` (`instances i` → `instances`), or the name itself.
fn table_of<'a>(sql: &'a str, alias: &'a str) -> &'a str {
    let words: Vec<&str> = sql.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[1] == alias && GROWING.contains(&w[0]))
        .map_or(alias, |w| w[0])
}

#[test]
fn a_deploy_scans_no_growing_table() {
    let env = Explained {
        conn: rusqlite::Connection::open_in_memory().unwrap(),
        scans: RefCell::default(),
    };
    let cfg = talis_core::Config {
        webhook_allow_hosts: "127.0.0.1".parse().unwrap(),
        ..cfg()
    };
    let svc = || Service::open(&env, &cfg).unwrap();
    let call = |c: &Caller, m: &str, p: Value| {
        svc()
            .call(c, m, p)
            .map(|o| o.data.unwrap_or(Value::Null))
            .unwrap()
    };
    let internal = |m: &str, p: Value| {
        svc()
            .call_internal(m, p)
            .map(|o| o.data.unwrap_or(Value::Null))
            .unwrap()
    };
    let owner = {
        let u = call(&Caller::ADMIN, "user.create", json!({ "username": "o" }));
        svc().authenticate(u["api_key"].as_str()).unwrap()
    };
    // Some rows first, so that the planner has something to choose between.
    for p in 0..3 {
        call(
            &owner,
            "project.create",
            json!({ "name": format!("other-{p}"), "instances": [req(20)] }),
        );
    }
    // Every instance change of the deploy below is also a webhook delivery.
    call(
        &owner,
        "webhook.create",
        json!({ "url": "http://127.0.0.1:9/h", "events": ["instance.status", "task.status"] }),
    );
    env.scans.borrow_mut().clear();

    let mut r = req(10);
    r["volumes"] = json!([]);
    let data = call(
        &owner,
        "project.create",
        json!({ "name": "p", "instances": [r] }),
    );
    let task = data["task_id"].clone();
    let claim = internal(
        "task.claim",
        json!({ "task_id": task, "invocation_id": "inv", "chunk_size": 1000 }),
    );
    let mut chunk = claim["chunks"][0].clone();
    chunk["task_id"] = task.clone();
    internal("task.chunk", chunk.clone());
    let ids: Vec<i64> = data["instance_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_i64().unwrap())
        .collect();
    let task_id = task.as_i64().unwrap();
    let secret = cfg.internal_secret.as_str();
    let expires = chrono::Utc::now().timestamp() + 600;
    for (n, &id) in ids.iter().enumerate() {
        let droplet = 1000 + n as i64;
        // Every other machine phones home before its record (kept, then applied by it).
        let early = n % 2 == 0;
        let record = || {
            internal(
                "instance.transitionBatch",
                json!({ "task_id": task, "step": "ensure", "transitions": [
                    { "instance_id": id, "status": "created", "provider_ref": droplet.to_string() }
                ] }),
            )
        };
        if !early {
            record();
        }
        let token = phone_home::token(secret, task_id, id, expires);
        let t = PhoneHomeToken {
            task: TaskId::new(task_id).unwrap(),
            expires,
            token: &token,
        };
        let _ = svc().phone_home(InstanceId::new(id).unwrap(), t, || {
            Ok(json!({ "droplet_id": droplet, "public_ip": "10.0.0.1", "status": "ok" }))
        });
        if early {
            record();
        }
        internal("task.progress", chunk.clone());
    }
    let done = internal("task.progress", chunk);
    assert_eq!(done["waiting"], json!([]), "every machine reported: {done}");
    // What every request does after its answer, and what owners poll while they wait.
    svc().undispatched(5, 100).unwrap();
    svc().webhooks_undispatched(5, 100).unwrap();
    svc()
        .mark_dispatched(TaskId::new(task_id).unwrap())
        .unwrap();
    call(&owner, "task.get", json!({ "task_id": task }));
    call(
        &owner,
        "instance.list",
        json!({ "project_name": "p", "status": "ready" }),
    );
    call(
        &owner,
        "event.list",
        json!({ "task_id": task, "after": "1" }),
    );
    let deliveries: i64 = env
        .conn
        .query_row("SELECT COUNT(*) FROM webhook_deliveries", [], |r| r.get(0))
        .unwrap();
    assert!(deliveries >= ids.len() as i64, "{deliveries} deliveries");
    let scans = env.scans.borrow();
    assert!(
        scans.is_empty(),
        "full scans of growing tables on the deploy path:\n{}",
        scans.iter().cloned().collect::<Vec<_>>().join("\n")
    );
}
