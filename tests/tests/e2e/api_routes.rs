//! Routes and envelopes of the API component (real talis-host, real SQLite file): every method
//! through both RPC routes with the typed client, the original REST routes' shapes, and the wire
//! itself (malformed bodies, 404/405 routing, a missing body).

use anyhow::Result;
use reqwest::Method;
use serde_json::json;
use talis_api::methods::public as m;
use talis_api::{
    ApiKeyCreate, ErrorKind, IdRef, InstanceCreate, InstanceGet, InstanceId, InstanceList,
    InstanceStatus, InstanceTerminate, OwnerList, ProjectConfig, ProjectCreate,
    ProjectListInstances, ProjectRef, RowId, SshKeyCreate, SshKeyDelete, TaskAction, TaskId,
    TaskList, TaskListByInstance, TaskRef, TaskStatus, TaskUpdateStatus, UserCreate, UserGet,
};
use talis_client::Route;
use talis_e2e::api::{ADMIN_KEY, Api, Refused, in_project, instances, instances_json};
use talis_e2e::keys;

fn project_ref(name: &str) -> ProjectRef {
    ProjectRef {
        name: name.into(),
        owner_id: None,
    }
}

fn by_instance(id: InstanceId) -> TaskListByInstance {
    TaskListByInstance {
        instance_id: id,
        action: None,
        owner_id: None,
        limit: None,
        cursor: None,
        page: None,
        offset: None,
    }
}

/// Every original method, and the added ones, through one route: happy paths and their errors.
async fn every_method(api: &Api, route: Route, tag: &str) -> Result<()> {
    use ErrorKind::*;
    let admin = api.client_via(route, ADMIN_KEY);
    let username = format!("alice-{tag}");
    let created = admin
        .user_create(&UserCreate {
            username: username.clone(),
            email: "a@example.com".into(),
            ..Default::default()
        })
        .await?;
    let uid = created.id;
    let me = api.client_via(route, &created.api_key);
    admin
        .user_create(&UserCreate {
            username: username.clone(),
            ..Default::default()
        })
        .await
        .refused(409, Conflict);
    let e = admin
        .user_create(&UserCreate {
            username: "x".into(),
            email: "not an email".into(),
            ..Default::default()
        })
        .await
        .refused(400, Invalid);
    assert_eq!(e.field(), Some("email"), "{e}");
    let u = me
        .user_get(&UserGet {
            username: Some(username.clone()),
            ..Default::default()
        })
        .await?;
    assert_eq!(u.user.map(|u| u.id), Some(uid));
    let list = admin.user_get(&UserGet::default()).await?;
    assert!(list.users.unwrap_or_default().iter().any(|u| u.id == uid));
    let uid_row = RowId::new(uid.get()).unwrap();
    assert_eq!(
        me.user_get_id(&IdRef { id: uid_row }).await?.username,
        username
    );
    let e = me
        .call_raw::<m::UserGetId>(&json!({ "id": 0 }))
        .await
        .refused(400, Invalid);
    assert_eq!(e.field(), Some("id"), "{e}");

    let laptop = keys::ed25519(1, "me@laptop");
    let key = |name: &str, public_key: &str| SshKeyCreate {
        name: name.into(),
        public_key: public_key.into(),
        owner_id: None,
    };
    let k = me.sshkey_create(&key("laptop", &laptop)).await?;
    assert_eq!(
        (k.name.as_str(), k.public_key.as_str()),
        ("laptop", laptop.as_str())
    );
    me.sshkey_create(&key("laptop", &keys::ed25519(2, "other")))
        .await
        .refused(409, Conflict);
    let e = me
        .sshkey_create(&key("bad", "nope"))
        .await
        .refused(400, Invalid);
    assert_eq!(e.field(), Some("public_key"), "{e}");
    assert_eq!(me.sshkey_list(&OwnerList::default()).await?.len(), 1);

    let mut req = instances(3);
    req.ssh_key_name = "laptop".into();
    let p = me
        .project_create(&ProjectCreate {
            name: "web".into(),
            description: "d".into(),
            // The original clients send the config as JSON text.
            config: serde_json::from_value::<ProjectConfig>(json!("{\"settings\":{}}"))?,
            instances: vec![req],
            ..Default::default()
        })
        .await?;
    let task_id = p.task_id.expect("a create task");
    let ids = p.instance_ids.clone();
    assert_eq!(ids.len(), 3);
    me.project_create(&ProjectCreate {
        name: "web".into(),
        ..Default::default()
    })
    .await
    .refused(409, Conflict);
    let e = me
        .project_create(&ProjectCreate::default())
        .await
        .refused(400, Invalid);
    assert_eq!(e.field(), Some("name"), "{e}");
    let got = me
        .project_get(&ProjectRef {
            name: "web".into(),
            owner_id: Some(uid),
        })
        .await?;
    assert_eq!(
        (got.description.as_str(), got.config.as_str()),
        ("d", "{\"settings\":{}}")
    );
    me.project_get(&project_ref("nope"))
        .await
        .refused(404, NotFound);
    let mine = OwnerList {
        owner_id: Some(uid),
        ..Default::default()
    };
    assert_eq!(me.project_list(&mine).await?.pagination.total, 1);
    let li = me
        .project_list_instances(&ProjectListInstances {
            name: "web".into(),
            ..Default::default()
        })
        .await?;
    assert_eq!(li.rows.len(), 3);
    me.project_list_instances(&ProjectListInstances {
        name: "nope".into(),
        ..Default::default()
    })
    .await
    .refused(404, NotFound);

    let t = me
        .task_get(&TaskRef {
            task_id,
            owner_id: Some(uid),
        })
        .await?;
    assert_eq!(
        (t.action, t.status, t.instance_count),
        (TaskAction::CreateInstances, TaskStatus::Pending, 3)
    );
    me.task_get(&TaskRef::new(TaskId::new(999_999).unwrap()))
        .await
        .refused(404, NotFound);
    let e = me
        .call_raw::<m::TaskGet>(&json!({}))
        .await
        .refused(400, Invalid);
    assert_eq!(e.field(), Some("task_id"), "{e}");
    let tasks_of = |project: &str| TaskList {
        project_name: project.into(),
        ..Default::default()
    };
    assert_eq!(me.task_list(&tasks_of("web")).await?.pagination.total, 1);
    me.task_list(&tasks_of("nope")).await.refused(404, NotFound);
    assert_eq!(
        me.task_list_by_instance(&by_instance(ids[0])).await?.rows[0].id,
        task_id
    );

    let one = me.instance_get(&InstanceGet { id: ids[0] }).await?;
    assert_eq!(
        (one.name.as_str(), one.status),
        ("node-1", InstanceStatus::Pending)
    );
    me.instance_get(&InstanceGet {
        id: InstanceId::new(999_999).unwrap(),
    })
    .await
    .refused(404, NotFound);
    assert_eq!(
        me.instance_list(&InstanceList::default())
            .await?
            .pagination
            .total,
        3
    );
    let in_web = InstanceList {
        project_name: Some("web".into()),
        ..Default::default()
    };
    assert_eq!(me.instance_metadata(&in_web).await?.pagination.total, 3);
    assert_eq!(
        me.instance_public_ips(&InstanceList::default())
            .await?
            .public_ips
            .len(),
        3
    );
    let spec: talis_api::InstanceRequest = serde_json::from_value(
        json!({ "provider": "do", "region": "ams3", "size": "s", "image": "i", "number_of_instances": 2 }),
    )?;
    let more = me
        .instance_create(&InstanceCreate {
            instances: vec![in_project(&spec, "web")],
            idempotency_key: None,
        })
        .await?;
    assert_eq!(more.instances.len(), 2);
    assert_eq!(more.instances[0].name, "web-1");
    assert_eq!(more.task_ids.len(), 1);
    let e = me
        .instance_create(&InstanceCreate {
            instances: vec![],
            idempotency_key: None,
        })
        .await
        .refused(400, Invalid);
    assert_eq!(e.field(), Some("instances"), "{e}");
    me.instance_create(&InstanceCreate {
        instances: vec![in_project(&spec, "nope")],
        idempotency_key: None,
    })
    .await
    .refused(404, NotFound);

    let term = me
        .instance_terminate(&InstanceTerminate {
            owner_id: None,
            project_name: "web".into(),
            instance_ids: vec![ids[0]],
        })
        .await?;
    let term_task = term.task_id.expect("a terminate task");
    assert_eq!(term.instance_ids, vec![ids[0]]);
    let e = me
        .instance_terminate(&InstanceTerminate {
            owner_id: None,
            project_name: "web".into(),
            instance_ids: vec![],
        })
        .await
        .refused(400, Invalid);
    assert_eq!(e.field(), Some("instance_ids"), "{e}");
    assert_eq!(
        me.task_get(&TaskRef::new(term_task)).await?.action,
        TaskAction::TerminateInstances
    );
    let stopped = me.task_terminate(&TaskRef::new(term_task)).await?;
    assert_eq!(stopped.status, TaskStatus::Terminated);
    let to = |status| TaskUpdateStatus {
        task_id,
        status,
        owner_id: None,
    };
    me.task_update_status(&to(TaskStatus::Running))
        .await
        .refused(403, Forbidden);
    assert_eq!(
        admin
            .task_update_status(&to(TaskStatus::Running))
            .await?
            .status,
        TaskStatus::Running
    );
    admin
        .task_update_status(&to(TaskStatus::Pending))
        .await
        .refused(409, IllegalTransition);

    let ak = me
        .apikey_create(&ApiKeyCreate {
            owner_id: None,
            name: "ci".into(),
        })
        .await?;
    assert!(ak.api_key.starts_with("talis_"), "{}", ak.api_key);
    let keys = me.apikey_list(&OwnerList::default()).await?;
    assert_eq!(keys.pagination.total, 2);
    // Listing never shows a key.
    let listed = serde_json::to_string(&keys)?;
    assert!(!listed.contains(&ak.api_key), "{listed}");
    me.apikey_revoke(&IdRef { id: ak.key.id }).await?;
    api.client_via(route, &ak.api_key)
        .project_list(&OwnerList::default())
        .await
        .refused(401, Unauthorized);

    let del = me.project_delete(&project_ref("web")).await?;
    assert!(
        del.task_id.is_some(),
        "live instances are destroyed by a task first: {del:?}"
    );
    me.project_create(&ProjectCreate {
        name: "empty".into(),
        ..Default::default()
    })
    .await?;
    assert_eq!(
        me.project_delete(&project_ref("empty")).await?.task_id,
        None
    );
    me.project_delete(&project_ref("empty"))
        .await
        .refused(404, NotFound);
    let laptop_ref = SshKeyDelete {
        name: "laptop".into(),
        owner_id: None,
    };
    me.sshkey_delete(&laptop_ref).await?;
    me.sshkey_delete(&laptop_ref).await.refused(404, NotFound);
    me.user_delete(&IdRef { id: uid_row })
        .await
        .refused(403, Forbidden);
    admin.user_delete(&IdRef { id: uid_row }).await?;
    admin
        .user_delete(&IdRef { id: uid_row })
        .await
        .refused(404, NotFound);
    // A deleted user's keys stop working.
    me.project_list(&OwnerList::default())
        .await
        .refused(401, Unauthorized);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_method_through_both_routes() -> Result<()> {
    let api = Api::start().await?;
    every_method(&api, Route::Envelope, "env").await?;
    every_method(&api, Route::Typed, "typed").await?;
    // Nothing failed half-way: every 4xx above left no partial rows behind (deleted projects
    // keep their row, with their status).
    assert_eq!(api.count("projects")?, 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn original_rest_routes_keep_their_shapes() -> Result<()> {
    let api = Api::start().await?;
    let user = api.user("rest").await?;
    let key = user.key.as_str();
    user.client
        .project_create(&ProjectCreate {
            name: "light-nodes".into(),
            ..Default::default()
        })
        .await?;
    let mut req = instances_json(2);
    req["project_name"] = json!("light-nodes");
    let body = json!([req]).to_string().into_bytes();
    let (status, created) = api
        .raw(Method::POST, "/api/v1/instances", Some(key), Some(body))
        .await?;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (created["slug"].as_str(), created["error"].as_str()),
        (Some("success"), Some(""))
    );
    let ids: Vec<i64> = created["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["ID"].as_i64().unwrap())
        .collect();
    assert_eq!(created["data"][0]["status"], "pending");

    let (status, list) = api
        .raw(Method::GET, "/api/v1/instances?limit=1", Some(key), None)
        .await?;
    assert_eq!(
        (
            status,
            list["pagination"]["total"].as_i64(),
            list["rows"].as_array().map(Vec::len)
        ),
        (200, Some(2), Some(1))
    );
    for path in [
        "/api/v1/admin/instances",
        "/api/v1/instances/all-metadata",
        "/api/v1/admin/instances/all-metadata",
    ] {
        let (status, l) = api.raw(Method::GET, path, Some(key), None).await?;
        assert_eq!(
            (status, l["pagination"]["total"].as_i64()),
            (200, Some(2)),
            "{path}"
        );
    }
    let (_, ips) = api
        .raw(
            Method::GET,
            "/api/v1/instances/public-ips?offset=1",
            Some(key),
            None,
        )
        .await?;
    assert_eq!(ips["public_ips"].as_array().unwrap().len(), 1);
    let (status, one) = api
        .raw(
            Method::GET,
            &format!("/api/v1/instances/{}", ids[0]),
            Some(key),
            None,
        )
        .await?;
    assert_eq!((status, one["ID"].as_i64()), (200, Some(ids[0])));
    let (status, e) = api
        .raw(Method::GET, "/api/v1/instances/99999", Some(key), None)
        .await?;
    assert_eq!((status, e["slug"].as_str()), (404, Some("not-found")));
    let (status, e) = api
        .raw(Method::GET, "/api/v1/instances/abc", Some(key), None)
        .await?;
    assert_eq!((status, e["slug"].as_str()), (400, Some("invalid-input")));
    let (status, e) = api
        .raw(
            Method::GET,
            "/api/v1/instances?status=bogus",
            Some(key),
            None,
        )
        .await?;
    assert_eq!(
        (status, e["slug"].as_str()),
        (400, Some("invalid-input")),
        "{e}"
    );
    let (status, tasks) = api
        .raw(
            Method::GET,
            &format!("/api/v1/instances/{}/tasks?action=create_instances", ids[0]),
            Some(key),
            None,
        )
        .await?;
    assert_eq!(
        (status, tasks["data"]["pagination"]["total"].as_i64()),
        (200, Some(1))
    );

    let del = json!({ "project_name": "light-nodes", "instance_ids": ids })
        .to_string()
        .into_bytes();
    let (status, d) = api
        .raw(Method::DELETE, "/api/v1/instances", Some(key), Some(del))
        .await?;
    assert_eq!((status, d["slug"].as_str()), (200, Some("success")), "{d}");
    let (status, h) = api.raw(Method::GET, "/health", None, None).await?;
    assert_eq!((status, h["status"].as_str()), (200, Some("healthy")));
    let (status, _) = api.raw(Method::GET, "/nowhere", Some(key), None).await?;
    assert_eq!(status, 404);
    let (status, _) = api
        .raw(Method::GET, "/api/v1/instances", None, None)
        .await?;
    assert_eq!(status, 401);
    Ok(())
}

/// Bodies that are not a usable request are 400 with the envelope and a kind; an unknown path
/// is 404 with a `RouteError` body.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_are_4xx_and_named() -> Result<()> {
    let api = Api::start().await?;
    let user = api.user("u").await?;
    for (path, body, kind, field) in [
        ("/api/v1/", "{not json", "bad_request", None),
        ("/api/v1/", "[1,2]", "bad_request", None),
        ("/api/v1/", r#"{"method": 5}"#, "bad_request", None),
        ("/api/v1/", r#"{"params": {}}"#, "bad_request", None),
        (
            "/api/v1/",
            r#"{"method": "nope.nope"}"#,
            "unknown_method",
            None,
        ),
        (
            "/api/v1/",
            r#"{"method": "task.get", "id": {"x": 1}}"#,
            "invalid",
            Some("id"),
        ),
        ("/v1/project.create", "\"string\"", "invalid", None),
        (
            "/v1/project.create",
            "{\"name\": 5}",
            "invalid",
            Some("name"),
        ),
    ] {
        let a = api
            .send(
                Method::POST,
                path,
                Some(&user.key),
                Some(body.as_bytes().to_vec()),
            )
            .await?;
        let env = &a.body;
        assert_eq!(a.status, 400, "{path} {body}: {env}");
        assert_eq!(
            (env["success"].as_bool(), env["error"]["code"].as_i64()),
            (Some(false), Some(400)),
            "{path} {body}: {env}"
        );
        assert_eq!(env["error"]["kind"], kind, "{path} {body}: {env}");
        if let Some(f) = field {
            assert_eq!(env["error"]["data"]["field"], f, "{path} {body}: {env}");
        }
    }
    // An unknown method on the typed route is an unknown path.
    let a = api
        .send(
            Method::POST,
            "/v1/nope",
            Some(&user.key),
            Some(b"{}".to_vec()),
        )
        .await?;
    assert_eq!(a.status, 404, "{:?}", a.body);
    assert!(a.body["error"].is_string(), "a RouteError: {}", a.body);
    // The envelope echoes a numeric id, and `/api/v1` without the slash is the same route.
    let (status, env) = api
        .raw(
            Method::POST,
            "/api/v1",
            Some(&user.key),
            Some(br#"{"method": "project.list", "params": {}, "id": 7}"#.to_vec()),
        )
        .await?;
    assert_eq!((status, env["id"].as_i64()), (200, Some(7)), "{env}");
    Ok(())
}

/// The original Talis decodes absent (null) params as the method's zero params, so its clients
/// may leave `params` out of the envelope for a method whose params are all optional.
#[tokio::test(flavor = "multi_thread")]
async fn an_envelope_without_params_calls_with_no_params() -> Result<()> {
    let api = Api::start().await?;
    let user = api.user("u").await?;
    for body in [
        &br#"{"method": "project.list", "id": 7}"#[..],
        &br#"{"method": "project.list", "params": null, "id": 7}"#[..],
    ] {
        let (status, env) = api
            .raw(
                Method::POST,
                "/api/v1/",
                Some(&user.key),
                Some(body.to_vec()),
            )
            .await?;
        assert_eq!(
            (
                status,
                env["id"].as_i64(),
                env["data"]["pagination"]["total"].as_i64()
            ),
            (200, Some(7), Some(0)),
            "{}: {env}",
            String::from_utf8_lossy(body)
        );
    }
    Ok(())
}

/// A known path called with a method it does not serve is 405 with an `Allow` header listing
/// the methods it does serve (not 404, which would say the path does not exist).
#[tokio::test(flavor = "multi_thread")]
async fn known_paths_with_another_method_are_405_with_allow() -> Result<()> {
    let api = Api::start().await?;
    let key = api.user("u").await?.key;
    let instance = api
        .client(&key)
        .project_create(&talis_e2e::api::project("p", vec![instances(1)]))
        .await?
        .instance_ids[0];
    for (method, path, allow) in [
        (Method::GET, "/v1/project.list".to_owned(), "POST"),
        (Method::PUT, "/api/v1/".to_owned(), "POST"),
        (Method::GET, "/internal/v1/task.claim".to_owned(), "POST"),
        (Method::GET, format!("/v1/phone-home/{instance}"), "POST"),
        (Method::POST, "/health".to_owned(), "GET"),
        (Method::DELETE, "/api/v1/openapi.json".to_owned(), "GET"),
        (
            Method::PUT,
            "/api/v1/instances".to_owned(),
            "GET, POST, DELETE",
        ),
        (Method::POST, "/api/v1/admin/instances".to_owned(), "GET"),
        (
            Method::DELETE,
            format!("/api/v1/instances/{instance}"),
            "GET",
        ),
        (
            Method::POST,
            "/api/v1/instances/public-ips".to_owned(),
            "GET",
        ),
    ] {
        let a = api
            .send(method.clone(), &path, Some(&key), Some(b"{}".to_vec()))
            .await?;
        assert_eq!(a.status, 405, "{method} {path}: {:?}", a.body);
        assert_eq!(a.header("allow"), Some(allow), "{method} {path}");
        assert!(
            a.body["error"]
                .as_str()
                .is_some_and(|e| e.contains(path.as_str())),
            "{method} {path}: {}",
            a.body
        );
    }
    // Nothing was done: the instance is still there, pending.
    let i = api
        .client(&key)
        .instance_get(&InstanceGet { id: instance })
        .await?;
    assert_eq!(i.status, InstanceStatus::Pending);
    Ok(())
}

/// A POST without a body is refused with 400 naming `body`, even where every param is optional
/// (an empty body is not `{}`): nothing is created.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_body_is_400_naming_body() -> Result<()> {
    let api = Api::start().await?;
    let key = api.user("u").await?.key;
    let keys_before = api.count("api_keys")?;
    for (path, body) in [
        ("/v1/apikey.create", None),
        ("/v1/apikey.create", Some(Vec::new())),
        ("/v1/apikey.create", Some(b" \n".to_vec())),
        ("/api/v1/", None),
    ] {
        let a = api
            .send(Method::POST, path, Some(&key), body.clone())
            .await?;
        assert_eq!(a.status, 400, "{path} {body:?}: {}", a.body);
        assert_eq!(
            (
                a.body["error"]["kind"].as_str(),
                a.body["error"]["data"]["field"].as_str()
            ),
            (Some("invalid"), Some("body")),
            "{path} {body:?}: {}",
            a.body
        );
    }
    // The REST route answers in its slug envelope.
    let (status, e) = api
        .raw(Method::POST, "/api/v1/instances", Some(&key), None)
        .await?;
    assert_eq!(
        (status, e["slug"].as_str()),
        (400, Some("invalid-input")),
        "{e}"
    );
    assert!(e["error"].as_str().unwrap_or("").contains("body"), "{e}");
    assert_eq!(api.count("api_keys")?, keys_before, "a key was created");
    assert_eq!(api.count("instances")?, 0);
    // With `{}` the same call succeeds (every param of apikey.create is optional).
    let (status, _) = api
        .raw(
            Method::POST,
            "/v1/apikey.create",
            Some(&key),
            Some(b"{}".to_vec()),
        )
        .await?;
    assert_eq!(status, 200);
    assert_eq!(api.count("api_keys")?, keys_before + 1);
    Ok(())
}
