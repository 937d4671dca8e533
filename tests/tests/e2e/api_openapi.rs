//! The OpenAPI document the API serves (`GET /api/v1/openapi.json`) against what it answers:
//! every method documented, answers carrying what their schemas require and nothing else, and
//! every error body, of every status and route, valid against the schema documented for it.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use reqwest::Method;
use serde_json::json;
use talis_api::internal::{InstanceTransition, TaskClaim, TaskInstanceTransition};
use talis_api::methods::internal as rpc;
use talis_api::{InstanceGet, InstanceStatus, ProjectRef, TaskRef};
use talis_e2e::api::{Api, INTERNAL_SECRET, PUBLIC_URL, instances, phone_home_url, project};
use talis_e2e::openapi::Document;

/// The public methods the component must serve (the original's and the added ones), written
/// out rather than read from the method table, so a method dropped from the table is noticed.
const TALIS_METHODS: &[&str] = &[
    "project.create",
    "project.get",
    "project.list",
    "project.delete",
    "project.listInstances",
    "task.get",
    "task.list",
    "task.terminate",
    "task.updateStatus",
    "task.listByInstance",
    "user.create",
    "user.get",
    "user.get.id",
    "user.delete",
    "sshkey.create",
    "sshkey.list",
    "sshkey.delete",
    "apikey.create",
    "apikey.list",
    "apikey.revoke",
    "instance.create",
    "instance.list",
    "instance.get",
    "instance.terminate",
    "instance.publicIps",
    "instance.metadata",
];

async fn document(api: &Api) -> Result<Document> {
    let (status, doc) = api
        .raw(Method::GET, "/api/v1/openapi.json", None, None)
        .await?;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    Ok(Document::new(doc))
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_matches_the_answers() -> Result<()> {
    let api = Api::start().await?;
    let doc = document(&api).await?;
    let paths = doc.raw()["paths"].as_object().unwrap();
    for m in TALIS_METHODS
        .iter()
        .copied()
        .chain(talis_api::methods::public::METHODS.iter().map(|m| m.name))
    {
        assert!(
            paths.contains_key(&format!("/v1/{m}")),
            "{m} is not documented"
        );
    }
    for m in talis_api::methods::internal::METHODS {
        assert!(
            paths.contains_key(&format!("/internal/v1/{}", m.name)),
            "{}",
            m.name
        );
    }
    for p in [
        "/api/v1/",
        "/api/v1/instances",
        "/api/v1/instances/{id}",
        "/health",
        "/v1/phone-home/{id}",
    ] {
        assert!(paths.contains_key(p), "{p}");
    }
    // The answers carry every property the schemas mark required, and nothing undocumented.
    let c = api.user("u").await?.client;
    let created = c.project_create(&project("p", vec![instances(1)])).await?;
    let instance = c
        .instance_get(&InstanceGet {
            id: created.instance_ids[0],
        })
        .await?;
    let task = c.task_get(&TaskRef::new(created.task_id.unwrap())).await?;
    let project = c
        .project_get(&ProjectRef {
            name: "p".into(),
            owner_id: None,
        })
        .await?;
    let schemas = &doc.raw()["components"]["schemas"];
    for (name, value) in [
        ("Instance", serde_json::to_value(&instance)?),
        ("Task", serde_json::to_value(&task)?),
        ("Project", serde_json::to_value(&project)?),
    ] {
        let required = schemas[name]["required"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} schema"));
        for field in required {
            let f = field.as_str().unwrap();
            assert!(
                value.get(f).is_some(),
                "{name}.{f} is documented but missing in {value}"
            );
        }
        for key in value.as_object().unwrap().keys() {
            assert!(
                schemas[name]["properties"].get(key).is_some(),
                "{name}.{key} is answered but not documented"
            );
        }
    }
    // Whole success answers, as sent, against their documented 200 schemas.
    let key = api.user("v").await?.key;
    for (path, body) in [
        (
            "/v1/project.create",
            json!({ "name": "q", "instances": [talis_e2e::api::instances_json(2)] }),
        ),
        ("/v1/project.list", json!({})),
        ("/v1/instance.list", json!({ "limit": 1 })),
        ("/v1/task.list", json!({ "projectName": "q" })),
        ("/v1/project.get", json!({ "name": "q" })),
        ("/v1/apikey.list", json!({})),
        (
            "/api/v1/",
            json!({ "method": "project.get", "params": { "name": "q" }, "id": "x" }),
        ),
    ] {
        let a = api
            .send(
                Method::POST,
                path,
                Some(&key),
                Some(body.to_string().into_bytes()),
            )
            .await?;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        doc.check("POST", path, &a)?;
    }
    for path in [
        "/api/v1/instances?limit=1",
        "/api/v1/instances/public-ips",
        "/health",
    ] {
        let a = api.send(Method::GET, path, Some(&key), None).await?;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        doc.check("GET", path, &a)?;
    }
    Ok(())
}

/// (method, path, key, body, expected status)
type Case<'a> = (Method, String, Option<&'a str>, Option<String>, u16);

/// Sends each case; returns what did not answer its status or does not match the document.
async fn check(api: &Api, doc: &Document, cases: Vec<Case<'_>>) -> Result<Vec<String>> {
    let mut failures = Vec::new();
    for (method, path, key, body, status) in cases {
        let a = api
            .send(method.clone(), &path, key, body.map(String::into_bytes))
            .await?;
        if a.status != status {
            failures.push(format!(
                "{method} {path}: expected {status}, got {}: {}",
                a.status, a.body
            ));
        } else if let Err(e) = doc.check(method.as_str(), &path, &a) {
            failures.push(format!("{e:#}"));
        }
    }
    Ok(failures)
}

/// Every error the API answers, on every kind of route (RPC envelope and typed, REST, internal,
/// phone-home, routing), is valid against the schema the document gives for its status on its
/// operation. All cases are checked; the failures are reported together.
#[tokio::test(flavor = "multi_thread")]
async fn every_error_body_matches_the_document() -> Result<()> {
    let api = Api::start().await?;
    let doc = document(&api).await?;
    let user = api.user("u").await?;
    let other = api.user("w").await?;
    let key = user.key.as_str();
    let p = user
        .client
        .project_create(&project("p", vec![instances(2)]))
        .await?;
    let (task, inst) = (p.task_id.unwrap(), p.instance_ids[0]);
    api.internal::<rpc::TaskClaim>(&TaskClaim {
        task_id: task,
        invocation_id: "inv".into(),
        chunk_size: 1000,
    })
    .await?;
    let record = |i: usize, droplet: &str| TaskInstanceTransition {
        task_id: task,
        transition: InstanceTransition {
            provider_ref: Some(droplet.into()),
            ..InstanceTransition::to(p.instance_ids[i], InstanceStatus::Created)
        },
    };
    api.internal::<rpc::InstanceTransition>(&record(0, "4242"))
        .await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let home = |exp: i64| {
        phone_home_url(task, inst, exp)
            .strip_prefix(PUBLIC_URL)
            .unwrap()
            .to_owned()
    };
    let good_home = home(now + 600);
    let forged_home = good_home.replace("token=", "token=00");
    let huge = format!(
        "{{\"name\":\"p\",\"description\":\"{}\"}}",
        "x".repeat(9 << 20)
    );
    let report =
        |droplet: u64, ip: &str| json!({ "droplet_id": droplet, "public_ip": ip }).to_string();
    // `other` naming `user` as the owner.
    let other_owner = format!("{{\"name\":\"p\",\"owner_id\":{}}}", user.id);

    let cases: Vec<Case> = vec![
        // RPC, typed route.
        (
            Method::POST,
            "/v1/project.create".into(),
            Some(key),
            Some("{not json".into()),
            400,
        ),
        (
            Method::POST,
            "/v1/project.create".into(),
            Some(key),
            Some("{\"name\": 5}".into()),
            400,
        ),
        (
            Method::POST,
            "/v1/apikey.create".into(),
            Some(key),
            None,
            400,
        ),
        (
            Method::POST,
            "/v1/project.list".into(),
            None,
            Some("{}".into()),
            401,
        ),
        (
            Method::POST,
            "/v1/user.create".into(),
            Some(key),
            Some("{\"username\":\"z\"}".into()),
            403,
        ),
        (
            Method::POST,
            "/v1/project.get".into(),
            Some(key),
            Some("{\"name\":\"nope\"}".into()),
            404,
        ),
        (
            Method::POST,
            "/v1/project.get".into(),
            Some(&other.key),
            Some(other_owner),
            403,
        ),
        (
            Method::POST,
            "/v1/project.create".into(),
            Some(key),
            Some("{\"name\":\"p\"}".into()),
            409,
        ),
        (
            Method::POST,
            "/v1/project.create".into(),
            Some(key),
            Some(huge.clone()),
            413,
        ),
        // RPC, envelope route.
        (
            Method::POST,
            "/api/v1/".into(),
            Some(key),
            Some("{\"params\":{}}".into()),
            400,
        ),
        (
            Method::POST,
            "/api/v1/".into(),
            Some(key),
            Some("{\"method\":\"nope.nope\",\"id\":1}".into()),
            400,
        ),
        (
            Method::POST,
            "/api/v1/".into(),
            None,
            Some("{}".into()),
            401,
        ),
        (
            Method::POST,
            "/api/v1/".into(),
            Some(key),
            Some("{\"method\":\"task.get\",\"params\":{\"task_id\":999999},\"id\":\"a\"}".into()),
            404,
        ),
        // REST routes (slug envelope).
        (
            Method::GET,
            "/api/v1/instances/abc".into(),
            Some(key),
            None,
            400,
        ),
        (
            Method::GET,
            "/api/v1/instances?limit=0".into(),
            Some(key),
            None,
            400,
        ),
        (
            Method::POST,
            "/api/v1/instances".into(),
            Some(key),
            Some("[{\"provider\":\"aws\"}]".into()),
            400,
        ),
        (
            Method::POST,
            "/api/v1/instances".into(),
            Some(key),
            Some(huge),
            413,
        ),
        (Method::GET, "/api/v1/instances".into(), None, None, 401),
        (
            Method::DELETE,
            "/api/v1/instances".into(),
            None,
            Some("{}".into()),
            401,
        ),
        (
            Method::GET,
            "/api/v1/instances/99999".into(),
            Some(key),
            None,
            404,
        ),
        (
            Method::GET,
            "/api/v1/instances/99999/tasks".into(),
            Some(key),
            None,
            404,
        ),
        // Internal routes.
        (
            Method::POST,
            "/internal/v1/task.claim".into(),
            None,
            Some("{}".into()),
            401,
        ),
        (
            Method::POST,
            "/internal/v1/task.claim".into(),
            Some(INTERNAL_SECRET),
            Some("{}".into()),
            400,
        ),
        (
            Method::POST,
            "/internal/v1/task.claim".into(),
            Some(INTERNAL_SECRET),
            Some("{\"task_id\":999999,\"invocation_id\":\"i\",\"chunk_size\":5}".into()),
            404,
        ),
        (
            Method::POST,
            "/internal/v1/instance.transition".into(),
            Some(INTERNAL_SECRET),
            Some(
                json!({ "task_id": task, "instance_id": p.instance_ids[1], "status": "ready" })
                    .to_string(),
            ),
            409,
        ),
        // Routing.
        (Method::GET, "/nowhere".into(), Some(key), None, 404),
        (
            Method::POST,
            "/v1/nope".into(),
            Some(key),
            Some("{}".into()),
            404,
        ),
        (Method::GET, "/v1/project.list".into(), Some(key), None, 405),
        (
            Method::PUT,
            "/api/v1/instances".into(),
            Some(key),
            Some("{}".into()),
            405,
        ),
        // Phone-home.
        (
            Method::POST,
            good_home.clone(),
            None,
            Some(report(4242, "not-an-ip")),
            400,
        ),
        (
            Method::POST,
            forged_home,
            None,
            Some(report(4242, "10.0.0.1")),
            401,
        ),
        (
            Method::POST,
            home(now - 10),
            None,
            Some(report(4242, "10.0.0.1")),
            403,
        ),
        (
            Method::POST,
            good_home.clone(),
            None,
            Some(report(9999, "10.0.0.1")),
            503,
        ),
    ];
    let mut failures = check(&api, &doc, cases).await?;
    // Once every machine of the task is recorded, a stranger's report is 404.
    api.internal::<rpc::InstanceTransition>(&record(1, "4343"))
        .await?;
    let later = vec![(
        Method::POST,
        good_home,
        None,
        Some(report(9999, "10.0.0.1")),
        404,
    )];
    failures.extend(check(&api, &doc, later).await?);
    // The check can fail: an envelope whose error has an unknown kind does not match.
    let mut a = api
        .send(Method::POST, "/v1/project.list", None, Some(b"{}".to_vec()))
        .await?;
    doc.check("POST", "/v1/project.list", &a)?;
    a.body["error"]["kind"] = json!("no_such_kind");
    assert!(doc.check("POST", "/v1/project.list", &a).is_err());
    assert!(
        failures.is_empty(),
        "{} answers do not match the document:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    Ok(())
}

/// The phone-home route's URL carries the task, the expiry and the token besides the instance
/// (`talis_api::phone_home`); the document lists each as a required query parameter, so a
/// machine's script can be written from the document.
#[tokio::test(flavor = "multi_thread")]
async fn the_phone_home_url_parameters_are_documented() -> Result<()> {
    let api = Api::start().await?;
    let doc = document(&api).await?;
    let op = &doc.raw()["paths"]["/v1/phone-home/{id}"]["post"];
    let url = phone_home_url(
        talis_api::TaskId::new(1).unwrap(),
        talis_api::InstanceId::new(2).unwrap(),
        3,
    );
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    for name in query.split('&').filter_map(|kv| kv.split('=').next()) {
        let documented = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"] == name && p["in"] == "query" && p["required"] == json!(true));
        assert!(
            documented,
            "query parameter {name} of {url} is not documented: {}",
            op["parameters"]
        );
    }
    Ok(())
}
