//! Authentication and isolation: who may call what, owners never seeing each other's rows, keys
//! stored hashed, and the key checked before the body is read.

use anyhow::Result;
use reqwest::Method;
use talis_api::{
    ApiKeyCreate, ErrorKind, IdRef, InstanceGet, InstanceList, InstanceTerminate, OwnerList,
    ProjectCreate, ProjectListInstances, ProjectRef, RowId, SshKeyCreate, SshKeyDelete, TaskList,
    TaskListByInstance, TaskRef, TaskStatus, UserCreate, UserGet,
};
use talis_e2e::api::{ADMIN_KEY, Api, INTERNAL_SECRET, Refused, instances, project};
use talis_e2e::keys;

fn named(name: &str) -> ProjectRef {
    ProjectRef {
        name: name.into(),
        owner_id: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn owners_cannot_see_or_touch_each_other() -> Result<()> {
    use ErrorKind::*;
    let api = Api::start().await?;
    let a_user = api.user("a").await?;
    let (a_id, a) = (a_user.id, &a_user.client);
    let b_user = api.user("b").await?;
    let b = &b_user.client;
    a.sshkey_create(&SshKeyCreate {
        name: "k".into(),
        public_key: keys::ed25519(7, "a@host"),
        owner_id: None,
    })
    .await?;
    let p = a
        .project_create(&project("secret", vec![instances(2)]))
        .await?;
    let (task, inst) = (p.task_id.unwrap(), p.instance_ids[0]);
    let a_key = a.apikey_create(&ApiKeyCreate::default()).await?;

    // Reads: not found (never "forbidden", which would reveal existence).
    b.project_get(&named("secret")).await.refused(404, NotFound);
    b.project_list_instances(&ProjectListInstances {
        name: "secret".into(),
        ..Default::default()
    })
    .await
    .refused(404, NotFound);
    b.task_get(&TaskRef::new(task)).await.refused(404, NotFound);
    b.task_list(&TaskList {
        project_name: "secret".into(),
        ..Default::default()
    })
    .await
    .refused(404, NotFound);
    b.task_list_by_instance(&TaskListByInstance {
        instance_id: inst,
        action: None,
        owner_id: None,
        limit: None,
        cursor: None,
        page: None,
        offset: None,
    })
    .await
    .refused(404, NotFound);
    b.instance_get(&InstanceGet { id: inst })
        .await
        .refused(404, NotFound);
    b.user_get_id(&IdRef {
        id: RowId::new(a_id.get()).unwrap(),
    })
    .await
    .refused(404, NotFound);
    b.user_get(&UserGet {
        username: Some("a".into()),
        ..Default::default()
    })
    .await
    .refused(404, NotFound);
    let (status, _) = api
        .raw(
            Method::GET,
            &format!("/api/v1/instances/{inst}"),
            Some(&b_user.key),
            None,
        )
        .await?;
    assert_eq!(status, 404);
    assert_eq!(
        b.project_list(&OwnerList::default())
            .await?
            .pagination
            .total,
        0
    );
    assert_eq!(
        b.instance_list(&InstanceList::default())
            .await?
            .pagination
            .total,
        0
    );
    assert_eq!(b.sshkey_list(&OwnerList::default()).await?.len(), 0);
    // B's own first key only.
    assert_eq!(
        b.apikey_list(&OwnerList::default()).await?.pagination.total,
        1
    );
    // Modifications and deletions.
    b.task_terminate(&TaskRef::new(task))
        .await
        .refused(404, NotFound);
    b.project_delete(&named("secret"))
        .await
        .refused(404, NotFound);
    let terminate = |project: &str| InstanceTerminate {
        owner_id: None,
        project_name: project.into(),
        instance_ids: vec![inst],
    };
    b.instance_terminate(&terminate("secret"))
        .await
        .refused(404, NotFound);
    b.project_create(&project("mine", vec![])).await?;
    b.instance_terminate(&terminate("mine"))
        .await
        .refused(404, NotFound);
    b.sshkey_delete(&SshKeyDelete {
        name: "k".into(),
        owner_id: None,
    })
    .await
    .refused(404, NotFound);
    b.apikey_revoke(&IdRef { id: a_key.key.id })
        .await
        .refused(404, NotFound);
    // Naming the other owner explicitly is refused.
    b.project_get(&ProjectRef {
        name: "secret".into(),
        owner_id: Some(a_id),
    })
    .await
    .refused(403, Forbidden);
    b.project_create(&ProjectCreate {
        name: "x".into(),
        owner_id: Some(a_id),
        ..Default::default()
    })
    .await
    .refused(403, Forbidden);
    // Same names are per owner.
    b.project_create(&project("secret", vec![])).await?;
    // A's things are intact; the admin may act for A.
    assert_eq!(
        a.task_get(&TaskRef::new(task)).await?.status,
        TaskStatus::Pending
    );
    assert_eq!(
        api.admin()
            .project_get(&ProjectRef {
                name: "secret".into(),
                owner_id: Some(a_id),
            })
            .await?
            .owner_id,
        a_id
    );
    api.admin().task_get(&TaskRef::new(task)).await?;
    assert_eq!(
        a.instance_get(&InstanceGet { id: inst }).await?.owner_id,
        a_id
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn authentication_errors() -> Result<()> {
    use ErrorKind::*;
    let api = Api::start().await?;
    let user = api.user("u").await?;
    let (status, e) = api
        .raw(Method::POST, "/v1/project.list", None, Some(b"{}".to_vec()))
        .await?;
    assert_eq!(
        (
            status,
            e["error"]["code"].as_i64(),
            e["error"]["kind"].as_str()
        ),
        (401, Some(401), Some("unauthorized"))
    );
    api.client("talis_wrong")
        .project_list(&OwnerList::default())
        .await
        .refused(401, Unauthorized);
    user.client
        .user_create(&UserCreate {
            username: "v".into(),
            ..Default::default()
        })
        .await
        .refused(403, Forbidden);
    // The original Go client's `apikey` header works too, and so does `X-API-Key`.
    for header in ["apikey", "x-api-key"] {
        let resp = api
            .http
            .post(api.url("/v1/project.list"))
            .header(header, &user.key)
            .body("{}")
            .send()
            .await?;
        assert_eq!(resp.status().as_u16(), 200, "{header}");
    }
    // Internal routes take only the internal secret.
    for k in [None, Some(user.key.as_str()), Some(ADMIN_KEY)] {
        let (status, _) = api
            .raw(
                Method::POST,
                "/internal/v1/task.claim",
                k,
                Some(b"{}".to_vec()),
            )
            .await?;
        assert_eq!(status, 401, "{k:?}");
    }
    // Keys are stored hashed: the database never holds a key.
    let db = rusqlite::Connection::open(&api.db_path)?;
    let hashes: Vec<String> = db
        .prepare("SELECT key_hash FROM api_keys")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    assert!(!hashes.is_empty());
    assert!(hashes.iter().all(|h| h.len() == 64 && *h != user.key));
    Ok(())
}

/// Without a valid key the answer is 401 whatever the body: the body is not read (or judged)
/// before the caller is known, so an anonymous caller learns nothing from body errors.
#[tokio::test(flavor = "multi_thread")]
async fn the_key_is_checked_before_the_body_is_read() -> Result<()> {
    let api = Api::start().await?;
    for (path, key, body) in [
        ("/v1/project.create", None, &b"{not json"[..]),
        ("/v1/project.create", Some("talis_wrong"), &b"{not json"[..]),
        ("/v1/project.create", None, &br#"{"name": 5}"#[..]),
        ("/v1/apikey.create", None, &b""[..]),
        ("/api/v1/", None, &b"{not json"[..]),
        // The empty envelope: no method.
        ("/api/v1/", None, &b"{}"[..]),
        ("/api/v1/", Some("talis_wrong"), &b"{}"[..]),
        ("/api/v1/instances", None, &b"[{\"provider\": 1}]"[..]),
        ("/internal/v1/task.claim", None, &b"{not json"[..]),
        ("/internal/v1/task.claim", Some(ADMIN_KEY), &b"{}"[..]),
    ] {
        let a = api
            .send(Method::POST, path, key, Some(body.to_vec()))
            .await?;
        assert_eq!(
            a.status,
            401,
            "{path} key {key:?} body {}: {}",
            String::from_utf8_lossy(body),
            a.body
        );
    }
    // With the key, the same bodies are judged.
    let a = api
        .send(
            Method::POST,
            "/internal/v1/task.claim",
            Some(INTERNAL_SECRET),
            Some(b"{not json".to_vec()),
        )
        .await?;
    assert_eq!(a.status, 400, "{}", a.body);
    let a = api
        .send(
            Method::POST,
            "/api/v1/",
            Some(ADMIN_KEY),
            Some(b"{}".to_vec()),
        )
        .await?;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(api.count("projects")?, 0);
    Ok(())
}
