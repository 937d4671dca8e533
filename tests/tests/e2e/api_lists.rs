//! Lists and repeated calls: pagination edges (cursor walk, page beyond the end, bad limits and
//! cursors) and idempotent creates.

use anyhow::Result;
use serde_json::json;
use talis_api::methods::public as m;
use talis_api::{
    ErrorKind, InstanceList, OwnerList, Page, Pagination, ProjectCreate, ProjectListInstances,
};
use talis_client::Route;
use talis_e2e::api::{Api, Refused, instances, project};

#[tokio::test(flavor = "multi_thread")]
async fn pagination_edges() -> Result<()> {
    let api = Api::start().await?;
    let c = api.user("u").await?.client;
    let empty = c.project_list(&OwnerList::default()).await?;
    assert_eq!(
        empty,
        Page {
            rows: vec![],
            pagination: Pagination {
                total: 0,
                limit: 50,
                page: 1,
                offset: 0,
                next_cursor: None
            }
        }
    );
    c.project_create(&project("p", vec![instances(5)])).await?;
    // Walk with limit 2: 2 + 2 + 1, each row once, the last page without a cursor.
    let mut params = ProjectListInstances {
        name: "p".into(),
        limit: Some(2),
        ..Default::default()
    };
    let mut names = Vec::new();
    for expected in [2, 2, 1] {
        let page = c.project_list_instances(&params).await?;
        assert_eq!(page.pagination.total, 5);
        assert_eq!(page.rows.len(), expected);
        names.extend(page.rows.into_iter().map(|i| i.name));
        params.cursor = page.pagination.next_cursor;
    }
    assert_eq!(params.cursor, None);
    assert_eq!(names, ["node-1", "node-2", "node-3", "node-4", "node-5"]);
    // Exactly one full page has no next cursor.
    let exact = c
        .instance_list(&InstanceList {
            limit: Some(5),
            ..Default::default()
        })
        .await?;
    assert_eq!(exact.pagination.next_cursor, None);
    let beyond = c
        .instance_list(&InstanceList {
            limit: Some(2),
            page: Some(9),
            ..Default::default()
        })
        .await?;
    assert_eq!((beyond.rows.len(), beyond.pagination.total), (0, 5));
    for (bad, field) in [
        (json!({ "limit": 0 }), "limit"),
        (json!({ "limit": 1001 }), "limit"),
        (json!({ "limit": -1 }), "limit"),
        (json!({ "cursor": "garbage" }), "cursor"),
    ] {
        let e = c
            .call_raw::<m::InstanceList>(&bad)
            .await
            .refused(400, ErrorKind::Invalid);
        assert_eq!(e.field(), Some(field), "{bad}: {e}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotent_creates() -> Result<()> {
    let api = Api::start().await?;
    let key = api.user("u").await?.key;
    let params = ProjectCreate {
        idempotency_key: Some("req-1".into()),
        ..project("p", vec![instances(5)])
    };
    let first = api
        .client_via(Route::Typed, &key)
        .project_create(&params)
        .await?;
    let again = api
        .client_via(Route::Envelope, &key)
        .project_create(&params)
        .await?;
    assert_eq!(first, again);
    assert_eq!(
        (
            api.count("projects")?,
            api.count("instances")?,
            api.count("tasks")?
        ),
        (1, 5, 1)
    );
    let e = api
        .client(&key)
        .project_create(&ProjectCreate {
            idempotency_key: Some("req-1".into()),
            ..project("other", vec![])
        })
        .await
        .refused(409, ErrorKind::Conflict);
    assert!(e.message.contains("idempotency_key"), "{e}");
    // Keys are per owner.
    api.user("v")
        .await?
        .client
        .project_create(&ProjectCreate {
            idempotency_key: Some("req-1".into()),
            ..project("p", vec![])
        })
        .await?;
    assert_eq!(api.count("projects")?, 2);
    Ok(())
}

async fn events(api: &Api, q: &str, key: Option<&str>) -> Result<(u16, serde_json::Value)> {
    api.raw(
        reqwest::Method::GET,
        &format!("/api/v1/events{q}"),
        key,
        None,
    )
    .await
}

/// `GET /api/v1/events` is `event.list` with its params in the query: `kinds` repeated or
/// comma-separated, owner-scoped, paged; a bad kind is a 400 naming it; no key is a 401.
#[tokio::test(flavor = "multi_thread")]
async fn events_over_rest_filter_and_page_like_event_list() -> Result<()> {
    let api = Api::start().await?;
    let alice = api.user("alice").await?;
    let bob = api.user("bob").await?;
    alice
        .client
        .project_create(&project("p", vec![instances(2)]))
        .await?;
    let (status, all) = events(
        &api,
        "?kinds=api.call&kinds=instance.status",
        Some(&alice.key),
    )
    .await?;
    assert_eq!(status, 200, "{all}");
    let kinds: Vec<&str> = all["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"api.call"), "{all}");
    assert!(
        kinds
            .iter()
            .all(|k| ["api.call", "instance.status"].contains(k)),
        "{all}"
    );
    let (_, comma) = events(&api, "?kinds=api.call,instance.status", Some(&alice.key)).await?;
    assert_eq!(comma["pagination"]["total"], all["pagination"]["total"]);
    let (_, one) = events(&api, "?kinds=api.call&limit=1", Some(&alice.key)).await?;
    assert_eq!(one["rows"].as_array().map(Vec::len), Some(1), "{one}");
    // Bob sees none of Alice's events.
    let (_, theirs) = events(&api, "?kinds=api.call", Some(&bob.key)).await?;
    assert_eq!(theirs["pagination"]["total"], 0, "{theirs}");
    let (status, bad) = events(&api, "?kinds=nope", Some(&alice.key)).await?;
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["error"].as_str().unwrap_or("").contains("kinds"),
        "{bad}"
    );
    let (status, _) = events(&api, "", None).await?;
    assert_eq!(status, 401);
    let (status, _) = api
        .raw(
            reqwest::Method::POST,
            "/api/v1/events",
            Some(&alice.key),
            Some(b"{}".to_vec()),
        )
        .await?;
    assert_eq!(status, 405);
    Ok(())
}
