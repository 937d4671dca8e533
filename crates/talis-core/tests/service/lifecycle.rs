//! Projects, tasks, instances and accounts through the service: one transaction per call,
//! isolation between owners, pagination, idempotency, the workflows' internal RPC.

use serde_json::{Value, json};
use talis_api::TaskId;
use talis_core::auth::Caller;
use talis_core::db::{self, RowExt};
use talis_core::{Config, Error, Service};

use crate::support::*;

#[test]
fn migrations_are_idempotent() {
    let env = Env::new();
    env.svc();
    env.svc();
    assert_eq!(
        db::scalar(&env.db, "SELECT COUNT(*) FROM schema_version", &[]).unwrap(),
        db::MIGRATIONS.len() as i64
    );
}

/// Counts the statements a service issues.
struct Counting<'a>(&'a rusqlite::Connection, std::cell::Cell<usize>);

impl db::Sql for Counting<'_> {
    fn query(&self, sql: &str, params: &[db::Value]) -> Result<Vec<db::Row>, String> {
        self.1.set(self.1.get() + 1);
        self.0.query(sql, params)
    }
}

#[test]
fn schema_check_is_one_header_read_and_older_databases_catch_up() {
    let env = Env::new();
    let cfg = cfg();
    env.svc();
    assert_eq!(db::user_version(&env.db), db::LATEST_VERSION);
    let counted = Counting(&env.db, Default::default());
    Service::open(&counted, &cfg).unwrap();
    assert_eq!(counted.1.get(), 1);
    // A database migrated before user_version mirrored the schema version is brought up to
    // date once, without re-running a migration.
    let alice = env.user("alice");
    db::query(&env.db, "PRAGMA user_version = 0", &[]).unwrap();
    assert_eq!(
        env.call(&alice, "project.list", json!({})).unwrap()["pagination"]["total"],
        0
    );
    assert_eq!(db::user_version(&env.db), db::LATEST_VERSION);
    assert_eq!(env.count("schema_version"), db::MIGRATIONS.len() as i64);
}

#[test]
fn stored_names_follow_the_hostname_rule() {
    let env = Env::new();
    let alice = env.user("alice");
    let mut one = req(1);
    one["name"] = json!("solo");
    let mut unnamed = req(2);
    unnamed["name"] = json!("");
    env.call(
        &alice,
        "project.create",
        json!({ "name": "My_Project", "instances": [req(3), one, unnamed] }),
    )
    .unwrap();
    let names: Vec<String> = db::query(&env.db, "SELECT name FROM instances ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.text(0))
        .collect();
    assert_eq!(
        names,
        [
            "node-1",
            "node-2",
            "node-3",
            "solo",
            "my-project-1",
            "my-project-2"
        ]
    );
}

#[test]
fn project_with_instances_is_one_task() {
    let env = Env::new();
    let alice = env.user("alice");
    let out = env
        .svc()
        .call(
            &alice,
            "project.create",
            json!({ "name": "p", "instances": [req(100), req(3)] }),
        )
        .unwrap();
    let data = out.data.unwrap();
    assert_eq!(data["instance_ids"].as_array().unwrap().len(), 103);
    assert_eq!(
        out.dispatch,
        vec![TaskId::from_db(data["task_id"].as_i64().unwrap())]
    );
    assert_eq!(env.count("tasks"), 1);
    let task = env
        .call(&alice, "task.get", json!({ "task_id": data["task_id"] }))
        .unwrap();
    assert_eq!(task["instance_count"], 103);
    assert_eq!(task["action"], "create_instances");
    let page = env
        .call(
            &alice,
            "project.listInstances",
            json!({ "name": "p", "limit": 2 }),
        )
        .unwrap();
    assert_eq!(page["pagination"]["total"], 103);
    assert_eq!(page["rows"][0]["name"], "node-1");
    assert_eq!(page["rows"][0]["status"], "pending");
}

#[test]
fn failure_mid_write_leaves_nothing() {
    let env = Env::new();
    let alice = env.user("alice");
    // instances[0] is inserted before instances[1]'s SSH key lookup fails.
    let mut bad = req(2);
    bad["ssh_key_name"] = json!("missing");
    let err = env
        .call(
            &alice,
            "project.create",
            json!({ "name": "p", "instances": [req(50), bad] }),
        )
        .unwrap_err();
    assert_eq!(
        err,
        Error::NotFoundField {
            field: "instances[1].ssh_key_name".into(),
            what: "SSH key 'missing'".into()
        }
    );
    for t in [
        "projects",
        "tasks",
        "instances",
        "instance_requests",
        "task_instances",
    ] {
        assert_eq!(env.count(t), 0, "{t}");
    }
}

#[test]
fn idempotent_create() {
    let env = Env::new();
    let alice = env.user("alice");
    let p = json!({ "name": "p", "idempotency_key": "k1", "instances": [req(2)] });
    let first = env.svc().call(&alice, "project.create", p.clone()).unwrap();
    let again = env.svc().call(&alice, "project.create", p).unwrap();
    assert_eq!(first.data, again.data);
    assert!(again.dispatch.is_empty());
    assert_eq!(env.count("projects"), 1);
    let other = env.call(
        &alice,
        "project.create",
        json!({ "name": "q", "idempotency_key": "k1" }),
    );
    assert!(matches!(other, Err(Error::Conflict(_))));
    // Without a key a duplicate name is a conflict.
    assert!(matches!(
        env.call(&alice, "project.create", json!({ "name": "p" })),
        Err(Error::Conflict(_))
    ));
}

#[test]
fn owners_are_isolated() {
    let env = Env::new();
    let (alice, bob) = (env.user("alice"), env.user("bob"));
    let data = env
        .call(
            &alice,
            "project.create",
            json!({ "name": "p", "instances": [req(1)] }),
        )
        .unwrap();
    let task_id = data["task_id"].clone();
    let instance_id = data["instance_ids"][0].clone();
    // Same project name is fine for another owner.
    env.call(&bob, "project.create", json!({ "name": "p" }))
        .unwrap();
    assert_eq!(
        env.call(&bob, "task.get", json!({ "task_id": task_id })),
        Err(Error::NotFound("task"))
    );
    assert_eq!(
        env.call(&bob, "task.terminate", json!({ "task_id": task_id })),
        Err(Error::NotFound("task"))
    );
    assert_eq!(
        env.call(&bob, "instance.get", json!({ "id": instance_id })),
        Err(Error::NotFound("instance"))
    );
    assert!(matches!(
        env.call(
            &bob,
            "project.get",
            json!({ "name": "p", "owner_id": alice.owner_id })
        ),
        Err(Error::Forbidden(_))
    ));
    let bobs = env.call(&bob, "instance.list", json!({})).unwrap();
    assert_eq!(bobs["pagination"]["total"], 0);
    // The admin sees everything and may act for alice.
    env.call(&Caller::ADMIN, "task.get", json!({ "task_id": task_id }))
        .unwrap();
    let p = env
        .call(
            &Caller::ADMIN,
            "project.get",
            json!({ "name": "p", "owner_id": alice.owner_id }),
        )
        .unwrap();
    assert_eq!(p["owner_id"], alice.owner_id.get());
}

#[test]
fn pagination_walks_every_row_once() {
    let env = Env::new();
    let alice = env.user("alice");
    for i in 0..7 {
        env.call(&alice, "project.create", json!({ "name": format!("p{i}") }))
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let page = env
            .call(
                &alice,
                "project.list",
                json!({ "limit": 3, "cursor": cursor }),
            )
            .unwrap();
        assert_eq!(page["pagination"]["total"], 7);
        seen.extend(
            page["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["name"].as_str().unwrap().to_owned()),
        );
        cursor = page["pagination"]["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("p{i}")).collect::<Vec<_>>());
    let p3 = env
        .call(&alice, "project.list", json!({ "limit": 3, "page": 3 }))
        .unwrap();
    assert_eq!(p3["rows"].as_array().unwrap().len(), 1);
    assert!(matches!(
        env.call(&alice, "project.list", json!({ "limit": 0 })),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        env.call(&alice, "project.list", json!({ "cursor": "zz" })),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn workflow_lifecycle_through_internal_rpc() {
    let env = Env::new();
    let alice = env.user("alice");
    env.call(
        &alice,
        "sshkey.create",
        json!({ "name": "me", "public_key": ED25519 }),
    )
    .unwrap();
    let mut r = req(2);
    r["ssh_key_name"] = json!("me");
    r["execute_payload"] = json!(true);
    r["payload"] = json!("#!/bin/sh\necho hi\n");
    let data = env
        .call(
            &alice,
            "project.create",
            json!({ "name": "p", "instances": [r] }),
        )
        .unwrap();
    let task_id = data["task_id"].as_i64().unwrap();
    let claim = env.claim(&json!(task_id), "inv1");
    assert_eq!(claim["claimed"], true);
    assert_eq!(claim["task"]["status"], "running");
    // Both instances refer to the one request, which carries the spec once.
    assert_eq!(claim["requests"].as_array().unwrap().len(), 1);
    assert_eq!(claim["instances"].as_array().unwrap().len(), 2);
    let spec = &claim["requests"][0];
    assert_eq!(spec["payload"], "#!/bin/sh\necho hi\n");
    assert_eq!(spec["ssh_keys"][0]["name"], "me");
    assert_eq!(spec["volumes"][0]["size_gb"], 20);
    let inst = &claim["instances"][0];
    assert_eq!(
        (&inst["request"], &claim["instances"][1]["request"]),
        (&json!(0), &json!(0))
    );
    assert!(inst.get("payload").is_none(), "{inst}");
    let id = inst["ID"].as_i64().unwrap();
    assert_eq!(claim["deployment"], "test-deployment");
    assert_eq!(claim["public_url"], "http://api.test");
    // The task links its invocation in the Restate UI.
    let t = env
        .call(&alice, "task.get", json!({ "task_id": task_id }))
        .unwrap();
    assert_eq!(
        (&t["invocation_id"], &t["invocation_url"]),
        (
            &json!("inv1"),
            &json!("http://restate.test:9070/ui/invocations/inv1")
        )
    );
    // Replays are no-ops.
    let again = env.claim(&json!(task_id), "inv1");
    assert_eq!(again["task"]["attempts"], 1);
    let t = json!({ "instance_id": id, "task_id": task_id, "status": "created", "provider_ref": "123", "public_ip": "10.0.0.1" });
    env.internal("instance.transition", t.clone()).unwrap();
    let i = env.internal("instance.transition", t).unwrap();
    assert_eq!(i["provider_instance_id"], 123);
    // A late record of an earlier step changes nothing; a step the lifecycle forbids is refused.
    let late = env
        .internal(
            "instance.transition",
            json!({ "instance_id": id, "task_id": task_id, "status": "pending" }),
        )
        .unwrap();
    assert_eq!(late["status"], "created");
    env.internal(
        "instance.transition",
        json!({ "instance_id": id, "task_id": task_id, "status": "terminated" }),
    )
    .unwrap_err();
    let illegal = env.internal(
        "instance.transition",
        json!({ "instance_id": id, "task_id": task_id, "status": "terminated" }),
    );
    assert!(matches!(illegal, Err(Error::IllegalTransition(_))));
    let ev = json!({ "task_id": task_id, "instance_id": id, "step": "create droplet", "status": "ok", "event_key": "e1" });
    assert_eq!(
        env.internal("task.event", ev.clone()).unwrap()["duplicate"],
        false
    );
    assert_eq!(env.internal("task.event", ev).unwrap()["duplicate"], true);
    let fin = json!({ "task_id": task_id, "status": "completed", "result": { "ready": 2 } });
    env.internal("task.finish", fin.clone()).unwrap();
    let t = env.internal("task.finish", fin).unwrap();
    assert_eq!(t["status"], "completed");
    assert_eq!(t["result"]["ready"], 2);
    let logs = env
        .call(&alice, "task.get", json!({ "task_id": task_id }))
        .unwrap()["logs"]
        .clone();
    assert!(logs.as_str().unwrap().contains("create droplet"), "{logs}");
    let late = env.internal(
        "task.finish",
        json!({ "task_id": task_id, "status": "failed" }),
    );
    assert!(matches!(late, Err(Error::IllegalTransition(_))));
}

#[test]
fn project_delete_with_live_instances_queues_a_task() {
    let env = Env::new();
    let alice = env.user("alice");
    env.call(&alice, "project.create", json!({ "name": "empty" }))
        .unwrap();
    let d = env
        .call(&alice, "project.delete", json!({ "name": "empty" }))
        .unwrap();
    assert!(d["task_id"].is_null());
    assert_eq!(
        env.call(&alice, "project.get", json!({ "name": "empty" })),
        Err(Error::NotFound("project"))
    );
    assert_eq!(
        env.call(&alice, "project.delete", json!({ "name": "empty" })),
        Err(Error::NotFound("project"))
    );

    env.call(
        &alice,
        "project.create",
        json!({ "name": "p", "instances": [req(2)] }),
    )
    .unwrap();
    let out = env
        .svc()
        .call(&alice, "project.delete", json!({ "name": "p" }))
        .unwrap();
    let task_id = out.data.as_ref().unwrap()["task_id"].as_i64().unwrap();
    assert_eq!(out.dispatch, vec![TaskId::from_db(task_id)]);
    // Repeat: the same task, nothing new.
    let again = env
        .call(&alice, "project.delete", json!({ "name": "p" }))
        .unwrap();
    assert_eq!(again["task_id"], task_id);
    assert!(matches!(
        env.call(&alice, "instance.create", json!({ "instances": [{ "project_name": "p", "provider": "do", "region": "r", "size": "s", "image": "i", "number_of_instances": 1 }] })),
        Err(Error::Conflict(_))
    ));
    env.claim(&json!(task_id), "x");
    env.internal(
        "task.finish",
        json!({ "task_id": task_id, "status": "completed" }),
    )
    .unwrap();
    assert_eq!(
        env.call(&alice, "project.get", json!({ "name": "p" })),
        Err(Error::NotFound("project"))
    );
    // The name can be reused.
    env.call(&alice, "project.create", json!({ "name": "p" }))
        .unwrap();
}

#[test]
fn claim_lists_each_distinct_request_once() {
    let env = Env::new();
    let alice = env.user("alice");
    let mut a = req(3);
    a["execute_payload"] = json!(true);
    a["payload"] = json!("#!/bin/sh\necho a\n");
    let mut b = a.clone();
    b["region"] = json!("ams3");
    // The same spec twice, a different region once: two distinct requests.
    let data = env
        .call(
            &alice,
            "project.create",
            json!({ "name": "p", "instances": [a.clone(), b, a] }),
        )
        .unwrap();
    let task_id = data["task_id"].as_i64().unwrap();
    let claim = env.claim(&json!(task_id), "i");
    let requests = claim["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let regions: Vec<&str> = claim["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            requests[i["request"].as_u64().unwrap() as usize]["region"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        regions,
        [
            "nyc3", "nyc3", "nyc3", "ams3", "ams3", "ams3", "nyc3", "nyc3", "nyc3"
        ]
    );
    assert!(
        requests
            .iter()
            .all(|r| r["payload"] == "#!/bin/sh\necho a\n")
    );
    assert_eq!(
        (claim["task"]["logs"].as_str(), &claim["task"]["result"]),
        (Some(""), &Value::Null)
    );

    // A terminate task never runs the script, so its claim does not carry it.
    let ids = &data["instance_ids"];
    let t = env
        .call(
            &alice,
            "instance.terminate",
            json!({ "project_name": "p", "instance_ids": [ids[0], ids[4]] }),
        )
        .unwrap();
    let claim = env.claim(&json!(t["task_id"]), "j");
    assert_eq!(claim["instances"].as_array().unwrap().len(), 2);
    let requests = claim["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 2);
    assert!(
        requests
            .iter()
            .all(|r| r["payload"] == "" && r["region"] != "")
    );
}

#[test]
fn terminate_instances_and_dispatch_bookkeeping() {
    let env = Env::new();
    let alice = env.user("alice");
    let data = env
        .call(
            &alice,
            "project.create",
            json!({ "name": "p", "instances": [req(3)] }),
        )
        .unwrap();
    let ids = data["instance_ids"].clone();
    let missing = env.call(
        &alice,
        "instance.terminate",
        json!({ "project_name": "p", "instance_ids": [999] }),
    );
    assert_eq!(missing, Err(Error::NotFound("instance")));
    let q = env
        .call(
            &alice,
            "instance.terminate",
            json!({ "project_name": "p", "instance_ids": ids }),
        )
        .unwrap();
    let term = q["task_id"].as_i64().unwrap();
    let by_instance = env
        .call(
            &alice,
            "task.listByInstance",
            json!({ "instance_id": ids[0] }),
        )
        .unwrap();
    assert_eq!(by_instance["pagination"]["total"], 2);
    let only = env
        .call(
            &alice,
            "task.listByInstance",
            json!({ "instance_id": ids[0], "action": "terminate_instances" }),
        )
        .unwrap();
    assert_eq!(only["rows"][0]["ID"], term);
    let svc = env.svc();
    assert_eq!(svc.undispatched(0, 10).unwrap().len(), 2);
    svc.mark_dispatched(TaskId::from_db(term)).unwrap();
    assert_eq!(svc.undispatched(0, 10).unwrap().len(), 1);
    assert!(svc.undispatched(60, 10).unwrap().is_empty());
}

#[test]
fn users_keys_and_admin_only_methods() {
    let env = Env::new();
    let alice = env.user("alice");
    assert!(matches!(
        env.call(&alice, "user.create", json!({ "username": "x" })),
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        env.call(
            &alice,
            "task.updateStatus",
            json!({ "task_id": 1, "status": "failed" })
        ),
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        env.call(
            &Caller::ADMIN,
            "user.create",
            json!({ "username": "alice" })
        ),
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        env.call(
            &Caller::ADMIN,
            "user.create",
            json!({ "username": "y", "role": "admin" })
        ),
        Err(Error::Invalid(_))
    ));
    let me = env
        .call(&alice, "user.get", json!({ "username": "alice" }))
        .unwrap();
    assert_eq!(me["user"]["ID"], alice.owner_id.get());
    assert_eq!(
        env.call(&alice, "user.get", json!({ "username": "admin" })),
        Err(Error::NotFound("user"))
    );
    let key = env
        .call(&alice, "apikey.create", json!({ "name": "ci" }))
        .unwrap();
    let k = key["api_key"].as_str().unwrap().to_owned();
    let by_new_key = env.svc().authenticate(Some(&k)).unwrap();
    assert_eq!(by_new_key.owner_id, alice.owner_id);
    assert_eq!(
        by_new_key.key.unwrap().prefix,
        key["prefix"].as_str().unwrap()
    );
    env.call(&alice, "apikey.revoke", json!({ "id": key["ID"] }))
        .unwrap();
    assert_eq!(env.svc().authenticate(Some(&k)), Err(Error::Unauthorized));
    assert_eq!(
        env.svc().authenticate(Some(ADMIN_KEY)).unwrap(),
        Caller::ADMIN
    );
    // A configured admin key shorter than 32 characters authenticates nothing.
    let weak = Config {
        admin_api_key: "CHANGE_ME".into(),
        ..cfg()
    };
    let svc = Service::open(&env.db, &weak).unwrap();
    assert_eq!(
        svc.authenticate(Some("CHANGE_ME")),
        Err(Error::Unauthorized)
    );
    assert_eq!(env.svc().authenticate(None), Err(Error::Unauthorized));
    env.call(
        &Caller::ADMIN,
        "user.delete",
        json!({ "id": alice.owner_id }),
    )
    .unwrap();
    let stored = db::query_opt(
        &env.db,
        "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL AND owner_id = ?",
        &[alice.owner_id.into()],
    )
    .unwrap()
    .unwrap();
    assert_eq!(stored.int(0), 0);
}

#[test]
fn decode_errors_name_the_field() {
    let env = Env::new();
    let alice = env.user("alice");
    let err = env
        .call(
            &alice,
            "project.create",
            json!({ "name": "p", "instances": [{ "number_of_instances": "ten" }] }),
        )
        .unwrap_err();
    match err {
        Error::Invalid(e) => assert_eq!(e.first.field, "instances[0].number_of_instances"),
        e => panic!("{e:?}"),
    }
    assert_eq!(
        env.call(&alice, "nope", json!({})),
        Err(Error::UnknownMethod("nope".into()))
    );
    assert!(matches!(
        env.call(&alice, "task.get", json!({ "task_id": -1 })),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        env.call(&alice, "project.create", json!([1])),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn foreign_keys_are_enforced_in_writes() {
    let env = Env::new();
    env.svc();
    let err = db::transaction(&env.db, || {
        db::query(
            &env.db,
            "INSERT INTO projects (owner_id, name, created_at, updated_at) VALUES (999, 'x', '', '')",
            &[],
        )
    });
    assert!(matches!(err, Err(Error::Db(m)) if m.contains("FOREIGN KEY")));
}
