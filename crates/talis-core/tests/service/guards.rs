//! What keeps owners and machines in their place: phone-home checks, quotas, the user-data
//! limit, reserved tags, and the audit trail of who did what.

use serde_json::{Value, json};
use talis_api::phone_home;
use talis_api::{InstanceId, TaskId};
use talis_core::auth::Caller;
use talis_core::service::PhoneHomeToken;
use talis_core::{Config, Error, Service};

use crate::support::*;

/// A project of `n` instances without volumes, its task claimed; (task, instance ids).
fn claimed(env: &Env, owner: &Caller, n: i64) -> (i64, Vec<i64>) {
    let mut r = req(n);
    r["volumes"] = json!([]);
    let data = env
        .call(
            owner,
            "project.create",
            json!({ "name": "p", "instances": [r] }),
        )
        .unwrap();
    let task = data["task_id"].as_i64().unwrap();
    env.claim(&json!(task), "inv");
    let ids = data["instance_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_i64().unwrap())
        .collect();
    (task, ids)
}

fn created(env: &Env, task: i64, instance: i64, droplet: &str) {
    env.internal(
        "instance.transitionBatch",
        json!({ "task_id": task, "step": "ensure", "transitions": [{ "instance_id": instance, "status": "created", "provider_ref": droplet }] }),
    )
    .unwrap();
}

fn report(
    env: &Env,
    instance: i64,
    task: i64,
    expires: i64,
    token: &str,
    body: Value,
) -> Result<Value, Error> {
    let t = PhoneHomeToken {
        task: TaskId::new(task).unwrap(),
        expires,
        token,
    };
    env.svc()
        .phone_home(InstanceId::new(instance).unwrap(), t, || Ok(body))
        .map(|a| serde_json::to_value(a).unwrap())
}

fn future() -> i64 {
    chrono::Utc::now().timestamp() + 600
}

#[test]
fn phone_home_is_checked_and_applied_in_the_database() {
    let env = Env::new();
    let alice = env.user("alice");
    let (task, ids) = claimed(&env, &alice, 2);
    let secret = &env.cfg.internal_secret;
    let exp = future();
    let token = phone_home::token(secret, task, ids[0], exp);
    let ok = json!({ "droplet_id": 101, "public_ip": "203.0.113.7", "status": "ok" });
    // Forged, for another task or instance, or expired: refused, nothing changes; a forged
    // token is refused before its body is even looked at.
    let garbage = json!({ "droplet_id": "x" });
    assert_eq!(
        report(&env, ids[0], task, exp, "00", garbage).unwrap_err(),
        Error::Unauthorized
    );
    assert_eq!(
        report(&env, ids[0], task, exp, "00", ok.clone()).unwrap_err(),
        Error::Unauthorized
    );
    assert_eq!(
        report(&env, ids[1], task, exp, &token, ok.clone()).unwrap_err(),
        Error::Unauthorized
    );
    assert_eq!(
        report(&env, ids[0], task + 1, exp, &token, ok.clone()).unwrap_err(),
        Error::Unauthorized
    );
    let past = chrono::Utc::now().timestamp() - 1;
    let old = phone_home::token(secret, task, ids[0], past);
    assert!(matches!(
        report(&env, ids[0], task, past, &old, ok.clone()),
        Err(Error::Forbidden(_))
    ));
    // Before its machine is recorded, a report is asked to come back, and kept: recording the
    // machine applies it in the same transaction (ready at once, not after the retry).
    assert!(matches!(
        report(&env, ids[0], task, exp, &token, ok.clone()),
        Err(Error::RetryLater { .. })
    ));
    assert_eq!(env.count("early_phone_homes"), 1);
    created(&env, task, ids[0], "101");
    assert_eq!(env.count("early_phone_homes"), 0);
    let i = env
        .call(&alice, "instance.get", json!({ "id": ids[0] }))
        .unwrap();
    assert_eq!(
        (&i["status"], &i["public_ip"]),
        (&json!("ready"), &json!("203.0.113.7"))
    );
    // The machine's retry (a batch's machines report through its first member's URL) finds
    // its report applied.
    let applied = report(&env, ids[0], task, exp, &token, ok.clone()).unwrap();
    assert_eq!(
        (
            applied["instance_id"].as_i64(),
            &applied["status"],
            &applied["duplicate"]
        ),
        (Some(ids[0]), &json!("ready"), &json!(true))
    );
    // A repeat changes nothing and writes no second event.
    let events = |env: &Env| env.count("events");
    let before = events(&env);
    assert_eq!(
        report(&env, ids[0], task, exp, &token, ok.clone()).unwrap()["duplicate"],
        true
    );
    assert_eq!(events(&env), before);
    // A machine that is none of the task's, once every machine is recorded: not found.
    created(&env, task, ids[1], "102");
    let stranger = json!({ "droplet_id": 999, "public_ip": "203.0.113.9" });
    assert!(matches!(
        report(&env, ids[0], task, exp, &token, stranger),
        Err(Error::NotFound(_))
    ));
    // A failed script fails its instance, with the reason.
    let failed = json!({ "droplet_id": "102", "public_ip": "203.0.113.8", "status": "failed" });
    assert_eq!(
        report(&env, ids[0], task, exp, &token, failed).unwrap()["status"],
        "failed"
    );
    let i = env
        .call(&alice, "instance.get", json!({ "id": ids[1] }))
        .unwrap();
    assert!(
        i["error"].as_str().unwrap().contains("provisioning script"),
        "{i}"
    );
    // The body is untrusted input, checked field by field.
    for (body, field) in [
        (
            json!({ "droplet_id": 101, "public_ip": "not-an-ip" }),
            "public_ip",
        ),
        (
            json!({ "droplet_id": "abc", "public_ip": "203.0.113.7" }),
            "droplet_id",
        ),
        (
            json!({ "droplet_id": 101, "public_ip": "203.0.113.7", "status": "done" }),
            "status",
        ),
    ] {
        match report(&env, ids[0], task, exp, &token, body) {
            Err(Error::Invalid(e)) => assert_eq!(e.first.field, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}

/// Reports kept before their machines are recorded are bounded (one per droplet, no more than
/// the task has instances), apply only to the droplet the workflow records, and go
/// when the task finishes.
#[test]
fn early_phone_homes_are_bounded_and_dropped_with_their_task() {
    let env = Env::new();
    let alice = env.user("alice");
    let (task, ids) = claimed(&env, &alice, 2);
    let exp = future();
    let token = phone_home::token(&env.cfg.internal_secret, task, ids[0], exp);
    let early = |droplet: u64| {
        let body = json!({ "droplet_id": droplet, "public_ip": "203.0.113.7" });
        assert!(matches!(
            report(&env, ids[0], task, exp, &token, body),
            Err(Error::RetryLater { .. })
        ));
    };
    for droplet in [201, 202, 203, 201, 201] {
        early(droplet);
    }
    assert_eq!(
        env.count("early_phone_homes"),
        2,
        "the task has two instances"
    );
    // Recorded with another droplet: the kept report is not this machine's.
    created(&env, task, ids[0], "999");
    let i = env
        .call(&alice, "instance.get", json!({ "id": ids[0] }))
        .unwrap();
    assert_eq!(i["status"], "created");
    created(&env, task, ids[1], "202");
    let i = env
        .call(&alice, "instance.get", json!({ "id": ids[1] }))
        .unwrap();
    assert_eq!(i["status"], "ready");
    assert_eq!(env.count("early_phone_homes"), 1);
    env.internal(
        "task.finish",
        json!({ "task_id": task, "status": "failed", "error": "given up" }),
    )
    .unwrap();
    assert_eq!(env.count("early_phone_homes"), 0);
}

fn with_quotas(q: talis_api::Quotas) -> Env {
    let mut env = Env::new();
    env.cfg = Config { quotas: q, ..cfg() };
    env
}

#[test]
fn quotas_refuse_with_nothing_written_and_admins_override_them() {
    let env = with_quotas(talis_api::Quotas {
        max_instances: 5,
        max_projects: 2,
        ..Default::default()
    });
    let alice = env.user("alice");
    let mut r = req(4);
    r["volumes"] = json!([]);
    env.call(
        &alice,
        "project.create",
        json!({ "name": "a", "instances": [r.clone()] }),
    )
    .unwrap();
    let (projects, instances) = (env.count("projects"), env.count("instances"));
    r["number_of_instances"] = json!(2);
    let err = env
        .call(
            &alice,
            "project.create",
            json!({ "name": "b", "instances": [r.clone()] }),
        )
        .unwrap_err();
    assert_eq!(
        err,
        Error::QuotaExceeded {
            quota: "max_instances_per_owner",
            limit: 5,
            used: 4,
            requested: 2
        }
    );
    assert_eq!(err.status(), 403);
    assert_eq!(
        (env.count("projects"), env.count("instances")),
        (projects, instances),
        "nothing written"
    );
    // Another owner is not affected by alice's use.
    let bob = env.user("bob");
    env.call(
        &bob,
        "project.create",
        json!({ "name": "b", "instances": [r.clone()] }),
    )
    .unwrap();
    // Only an admin overrides, and the override counts at once.
    let set = json!({ "owner_id": alice.owner_id, "max_instances": 10 });
    assert!(matches!(
        env.call(&alice, "quota.set", set.clone()),
        Err(Error::Forbidden(_))
    ));
    let usage = env.call(&Caller::ADMIN, "quota.set", set).unwrap();
    assert_eq!(
        (
            usage["limits"]["max_instances"].as_u64(),
            usage["used"]["max_instances"].as_u64()
        ),
        (Some(10), Some(4))
    );
    env.call(
        &alice,
        "project.create",
        json!({ "name": "b", "instances": [r] }),
    )
    .unwrap();
    let err = env
        .call(&alice, "project.create", json!({ "name": "c" }))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::QuotaExceeded {
                quota: "max_projects_per_owner",
                limit: 2,
                used: 2,
                requested: 1
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        env.call(&alice, "quota.get", json!({})).unwrap()["used"]["max_projects"],
        2
    );
}

#[test]
fn one_call_makes_at_most_ten_thousand_machines() {
    let env = with_quotas(talis_api::Quotas {
        max_instances: 50_000,
        ..Default::default()
    });
    let alice = env.user("alice");
    let mut r = req(6_000);
    r["volumes"] = json!([]);
    let err = env
        .call(
            &alice,
            "project.create",
            json!({ "name": "a", "instances": [r.clone(), r] }),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::QuotaExceeded {
                quota: "max_instances_per_call",
                requested: 12_000,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(env.count("projects"), 0);
}

/// An OpenSSH RSA public key with a `bits`-bit modulus (valid to parse; not a real key).
fn big_rsa_key(bits: usize) -> String {
    use ssh_key::public::{KeyData, RsaPublicKey};
    let mut n = vec![0xAB; bits / 8];
    n[0] = 0x7F;
    let key = RsaPublicKey {
        e: ssh_key::Mpint::from_positive_bytes(&[1, 0, 1]).unwrap(),
        n: ssh_key::Mpint::from_positive_bytes(&n).unwrap(),
    };
    ssh_key::PublicKey::new(KeyData::Rsa(key), "big")
        .to_openssh()
        .unwrap()
}

#[test]
fn user_data_that_would_not_fit_64_kib_is_refused_at_create() {
    let env = Env::new();
    let alice = env.user("alice");
    for k in 0..4 {
        env.call(
            &alice,
            "sshkey.create",
            json!({ "name": format!("k{k}"), "public_key": big_rsa_key(16_384) }),
        )
        .unwrap();
    }
    let mut r = req(1);
    r["execute_payload"] = json!(true);
    r["payload"] = json!("x".repeat(talis_api::rules::MAX_PAYLOAD_BYTES));
    r["ssh_keys"] = json!(["k0", "k1", "k2", "k3"]);
    match env.call(
        &alice,
        "project.create",
        json!({ "name": "p", "instances": [r.clone()] }),
    ) {
        Err(Error::Invalid(e)) => {
            assert_eq!(e.first.field, "instances[0].payload");
            assert!(e.first.reason.contains("65536"), "{}", e.first.reason);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(env.count("projects"), 0);
    // The same script with one key fits.
    r["ssh_keys"] = json!(["k0"]);
    env.call(
        &alice,
        "project.create",
        json!({ "name": "p", "instances": [r] }),
    )
    .unwrap();
}

#[test]
fn reserved_tags_and_forged_keys_are_refused() {
    let env = Env::new();
    let alice = env.user("alice");
    for tags in [
        json!(["talis"]),
        json!(["talis-instance-100", "ok"]),
        json!(["Talis-Project-1"]),
    ] {
        let mut r = req(1);
        r["tags"] = tags.clone();
        match env.call(
            &alice,
            "project.create",
            json!({ "name": "p", "instances": [r] }),
        ) {
            Err(Error::Invalid(e)) => assert!(
                e.first.field.starts_with("instances[0].tags["),
                "{tags}: {e}"
            ),
            other => panic!("{tags}: {other:?}"),
        }
    }
    for key in [
        format!("ssh-ed25519 AAAA{}", "A".repeat(1 << 20)),
        "ssh-ed25519 AAAA\nrm -rf / c".into(),
        "ssh-ed25519 AAAA c".into(),
    ] {
        match env.call(
            &alice,
            "sshkey.create",
            json!({ "name": "k", "public_key": key }),
        ) {
            Err(Error::Invalid(e)) => assert_eq!(e.first.field, "public_key"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(env.count("ssh_keys"), 0);
}

#[test]
fn every_change_is_an_event_and_calls_name_their_key() {
    let env = Env::new();
    let alice = env.user("alice");
    let second = env
        .call(&alice, "apikey.create", json!({ "name": "ci" }))
        .unwrap();
    let ci = env.svc().authenticate(second["api_key"].as_str()).unwrap();
    let svc = env.svc();
    svc.set_request_id("req-42");
    let mut r = req(2);
    r["volumes"] = json!([]);
    let created = svc
        .call(
            &ci,
            "project.create",
            json!({ "name": "p", "instances": [r] }),
        )
        .unwrap()
        .data
        .unwrap();
    let task = created["task_id"].as_i64().unwrap();
    let calls = env
        .call(&alice, "event.list", json!({ "kinds": ["api.call"] }))
        .unwrap();
    let last = calls["rows"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["data"]["method"], "project.create");
    assert_eq!(
        (&last["data"]["key_id"], &last["data"]["key_prefix"]),
        (&second["ID"], &second["prefix"])
    );
    assert_eq!(last["data"]["request_id"], "req-42");
    assert_eq!(last["data"]["target"]["name"], "p");
    // Task creation and instance transitions are events of the task, readable by its owner only.
    env.claim(&json!(task), "inv");
    let ids = created["instance_ids"].clone();
    created_all(&env, task, &ids);
    let of_task = env
        .call(&alice, "event.list", json!({ "task_id": task }))
        .unwrap();
    let kinds: Vec<&str> = of_task["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "task.status",
            "task.status",
            "instance.status",
            "instance.status"
        ],
        "{of_task}"
    );
    assert_eq!(of_task["rows"][2]["project"], "p");
    let bob = env.user("bob");
    assert_eq!(
        env.call(&bob, "event.list", json!({ "task_id": task }))
            .unwrap()["rows"],
        json!([])
    );
    // The cursor resumes after the last event seen.
    let after = of_task["rows"][1]["id"].to_string();
    let rest = env
        .call(
            &alice,
            "event.list",
            json!({ "task_id": task, "after": after }),
        )
        .unwrap();
    assert_eq!(rest["rows"].as_array().unwrap().len(), 2);
    // The task's logs are rendered from its events.
    let logs = env
        .call(&alice, "task.get", json!({ "task_id": task }))
        .unwrap()["logs"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        logs.contains("ensure instance") && logs.contains(": created machine 7"),
        "{logs}"
    );
}

fn created_all(env: &Env, task: i64, ids: &Value) {
    let transitions: Vec<Value> = ids
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(n, id)| json!({ "instance_id": id, "status": "created", "provider_ref": format!("7{n}") }))
        .collect();
    env.internal(
        "instance.transitionBatch",
        json!({ "task_id": task, "step": "ensure", "transitions": transitions }),
    )
    .unwrap();
}

#[test]
fn a_long_poll_answers_as_soon_as_an_event_exists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let cfg = cfg();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let svc = Service::open(&conn, &cfg).unwrap();
    let key = svc
        .call(
            &Caller::ADMIN,
            "user.create",
            json!({ "username": "alice" }),
        )
        .unwrap()
        .data
        .unwrap()["api_key"]
        .clone();
    let alice = svc.authenticate(key.as_str()).unwrap();
    let last = svc
        .call(&alice, "event.list", json!({}))
        .unwrap()
        .data
        .unwrap()["rows"]
        .as_array()
        .map(|r| r.len())
        .unwrap_or(0);
    let after = last.to_string();
    let writer = {
        let (path, cfg, alice) = (path.clone(), cfg.clone(), alice.clone());
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let conn = rusqlite::Connection::open(&path).unwrap();
            let svc = Service::open(&conn, &cfg).unwrap();
            svc.call(&alice, "project.create", json!({ "name": "p" }))
                .unwrap();
            std::time::Instant::now()
        })
    };
    let started = std::time::Instant::now();
    let page = svc
        .call(
            &alice,
            "event.list",
            json!({ "after": after, "wait_ms": 10_000 }),
        )
        .unwrap()
        .data
        .unwrap();
    let answered = std::time::Instant::now();
    let written = writer.join().unwrap();
    assert_eq!(
        page["rows"][0]["data"]["method"], "project.create",
        "{page}"
    );
    assert!(answered >= written, "answered before the write");
    // Woken by the write, not by the deadline (10 s); polling every 50 ms.
    assert!(answered.duration_since(started) < std::time::Duration::from_secs(5));
    // Nothing newer: empty at the deadline.
    let next = page["rows"][0]["id"].to_string();
    let empty = svc
        .call(
            &alice,
            "event.list",
            json!({ "after": next, "wait_ms": 200 }),
        )
        .unwrap()
        .data
        .unwrap();
    assert_eq!(empty["rows"], json!([]));
}

/// A write that cannot get the database because another connection holds its write lock past
/// the wait is a 503 "retry later" (nothing written), not a 500: the workflows and clients
/// retry it, and it is not reported as an internal error.
#[test]
fn a_write_blocked_by_another_writer_is_retry_later() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("talis.db");
    let cfg = cfg();
    let db = rusqlite::Connection::open(&path).unwrap();
    Service::open(&db, &cfg).unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = Service::open(&db, &cfg)
        .unwrap()
        .call(&Caller::ADMIN, "user.create", json!({ "username": "u" }))
        .unwrap_err();
    assert!(matches!(err, Error::RetryLater { .. }), "{err:?}");
    assert_eq!(err.status(), 503);
    other.execute_batch("ROLLBACK").unwrap();
    let named_u: i64 = db
        .query_row("SELECT COUNT(*) FROM users WHERE username = 'u'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(named_u, 0, "nothing was written");
}
