//! Validation at the boundary: every refused param is 400 naming its field path (or 404 naming it
//! for an unknown stored name), nothing is written by a refused call, and the limits hold.

use anyhow::Result;
use reqwest::Method;
use serde_json::{Value, json};
use talis_api::methods::public as m;
use talis_api::{
    ErrorKind, InstanceCreate, InstanceRequest, OwnerList, ProjectCreate, SshKeyCreate, Tag,
    UserCreate,
};
use talis_e2e::api::{Api, Refused, in_project, instances, instances_json, project};
use talis_e2e::keys;

/// Every table a create writes to.
const CREATE_TABLES: &[&str] = &[
    "projects",
    "instances",
    "tasks",
    "task_instances",
    "instance_requests",
    "idempotency_keys",
];

#[tokio::test(flavor = "multi_thread")]
async fn bad_fields_are_400_and_named() -> Result<()> {
    let api = Api::start().await?;
    let user = api.user("u").await?;
    let shape = json!({ "provider": "do", "region": "r", "size": "s", "image": "i", "number_of_instances": 1 });
    let with = |extra: Value| {
        let mut r = shape.clone();
        if let (Value::Object(r), Value::Object(e)) = (&mut r, extra) {
            r.extend(e);
        }
        json!({ "name": "p", "instances": [r] })
    };
    let cases = [
        (
            json!({ "name": "p", "instances": [{ "number_of_instances": "ten" }] }),
            "instances[0].number_of_instances",
        ),
        (
            json!({ "name": "p", "instances": [instances_json(1), { "provider": "aws" }] }),
            "instances[1].provider",
        ),
        (
            with(json!({ "payload_path": "/opt/x.sh" })),
            "instances[0].payload_path",
        ),
        (
            with(json!({ "provision": true, "payload": "x".repeat(65 * 1024) })),
            "instances[0].payload",
        ),
        (
            with(json!({ "number_of_instances": 10_001 })),
            "instances[0].number_of_instances",
        ),
        (with(json!({ "region": "nyc 3" })), "instances[0].region"),
        (
            with(
                json!({ "volumes": [{ "name": "d", "size_gb": 1, "mount_point": "/mnt/../etc" }] }),
            ),
            "instances[0].volumes[0].mount_point",
        ),
        (
            json!({ "name": "p", "config": "{\"resources\": 3}" }),
            "config",
        ),
        (json!({ "name": ["p"] }), "name"),
        // Names: a letter or digit, then letters, digits, '.', '_', '-'.
        (json!({ "name": "my project" }), "name"),
        (json!({ "name": "-p" }), "name"),
        (json!({ "name": "p/q" }), "name"),
    ];
    for (params, field) in cases {
        let e = user
            .client
            .call_raw::<m::ProjectCreate>(&params)
            .await
            .refused(400, ErrorKind::Invalid);
        assert_eq!(e.field(), Some(field), "{params}: {e}");
    }
    // A body over the limit is refused without being parsed.
    let huge = format!(
        "{{\"name\":\"p\",\"description\":\"{}\"}}",
        "x".repeat(9 * 1024 * 1024)
    );
    let a = api
        .send(
            Method::POST,
            "/v1/project.create",
            Some(&user.key),
            Some(huge.into_bytes()),
        )
        .await?;
    assert_eq!(
        (a.status, a.body["error"]["kind"].as_str()),
        (413, Some("too_large"))
    );
    for t in CREATE_TABLES {
        assert_eq!(api.count(t)?, 0, "{t}");
    }
    Ok(())
}

/// Tags Talis puts on machines to find them again (`talis`, `talis-…`, in any case) are refused
/// in an owner's request, in both forms of instance request; near misses are fine.
#[tokio::test(flavor = "multi_thread")]
async fn reserved_tags_are_refused() -> Result<()> {
    let api = Api::start().await?;
    let user = api.user("u").await?;
    user.client.project_create(&project("p", vec![])).await?;
    for tag in ["talis", "TALIS-project-1", "Talis-x"] {
        let mut req = instances_json(1);
        req["tags"] = json!([tag, "ok"]);
        let e = user
            .client
            .call_raw::<m::ProjectCreate>(&json!({ "name": "q", "instances": [req] }))
            .await
            .refused(400, ErrorKind::Invalid);
        assert_eq!(e.field(), Some("instances[0].tags[0]"), "{tag}: {e}");
        req["project_name"] = json!("p");
        let e = user
            .client
            .call_raw::<m::InstanceCreate>(&json!({ "instances": [req] }))
            .await
            .refused(400, ErrorKind::Invalid);
        assert_eq!(e.field(), Some("instances[0].tags[0]"), "{tag}: {e}");
    }
    assert_eq!(api.count("instances")?, 0);
    // Not reserved: a tag merely starting with the letters.
    let mut req: InstanceRequest = instances(1);
    req.tags = vec![
        Tag::parse("talisman").unwrap(),
        Tag::parse("my-talis").unwrap(),
    ];
    let made = user
        .client
        .instance_create(&InstanceCreate {
            instances: vec![in_project(&req, "p")],
            idempotency_key: None,
        })
        .await?;
    assert_eq!(made.instances[0].tags, ["talisman", "my-talis"]);
    Ok(())
}

/// SSH keys are parsed, not pattern-matched: a key with a line break (it would end the heredoc
/// of the cloud-init script), one over the size limit, and a blob that is not a key are refused.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_ssh_keys_are_refused() -> Result<()> {
    let api = Api::start().await?;
    let user = api.user("u").await?;
    let good = keys::ed25519(3, "me@host");
    let bad = [
        format!("{good}\nrm -rf /"),
        format!("{good}\r"),
        format!("ssh-ed25519 {} me@host", "A".repeat(1 << 20)),
        "ssh-ed25519 AAAA c".to_owned(),
        // A valid blob under another key type's name.
        good.replacen("ssh-ed25519", "ssh-rsa", 1),
    ];
    for public_key in &bad {
        let e = user
            .client
            .sshkey_create(&SshKeyCreate {
                name: "k".into(),
                public_key: public_key.clone(),
                owner_id: None,
            })
            .await
            .refused(400, ErrorKind::Invalid);
        assert_eq!(e.field(), Some("public_key"), "{e}");
        // The same rules for a user's key.
        let e = api
            .admin()
            .user_create(&UserCreate {
                username: "v".into(),
                public_ssh_key: public_key.clone(),
                ..Default::default()
            })
            .await
            .refused(400, ErrorKind::Invalid);
        assert_eq!(e.field(), Some("public_ssh_key"), "{e}");
    }
    assert_eq!(api.count("ssh_keys")?, 0);
    // The fixed key of the docs and a generated one are fine.
    for (name, key) in [
        (
            "fixed",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q me@host",
        ),
        ("made", good.as_str()),
    ] {
        user.client
            .sshkey_create(&SshKeyCreate {
                name: name.into(),
                public_key: key.into(),
                owner_id: None,
            })
            .await?;
    }
    assert_eq!(
        user.client.sshkey_list(&OwnerList::default()).await?.len(),
        2
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_in_the_middle_of_a_write_leaves_nothing() -> Result<()> {
    let api = Api::start().await?;
    let user = api.user("u").await?;
    assert!(
        api.db_path.exists(),
        "the component writes a real SQLite file"
    );
    // instances[0] (500 rows) is written before instances[1]'s SSH key lookup fails: an unknown
    // stored name is not found (404), and named.
    let mut bad = instances(2);
    bad.ssh_keys = vec!["missing".into()];
    let e = user
        .client
        .project_create(&project("p", vec![instances(500), bad]))
        .await
        .refused(404, ErrorKind::NotFound);
    assert_eq!(e.field(), Some("instances[1].ssh_keys[0]"), "{e}");
    for t in CREATE_TABLES {
        assert_eq!(api.count(t)?, 0, "{t}");
    }
    // The same through instance.create into an existing project.
    user.client
        .project_create(&ProjectCreate {
            name: "p".into(),
            ..Default::default()
        })
        .await?;
    let ok = in_project(&instances(300), "p");
    let mut bad = ok.clone();
    bad.ssh_keys = vec!["missing".into()];
    let e = user
        .client
        .instance_create(&InstanceCreate {
            instances: vec![ok, bad],
            idempotency_key: None,
        })
        .await
        .refused(404, ErrorKind::NotFound);
    assert_eq!(e.field(), Some("instances[1].ssh_keys[0]"), "{e}");
    assert_eq!((api.count("instances")?, api.count("tasks")?), (0, 0));
    Ok(())
}

/// An unknown key given in the original's `ssh_key_name` is named by that field: the one the
/// caller sent (there is no `ssh_keys` in such a request).
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_ssh_key_name_is_named_as_sent() -> Result<()> {
    let api = Api::start().await?;
    let user = api.user("u").await?;
    user.client.project_create(&project("p", vec![])).await?;
    let mut bad = in_project(&instances(1), "p");
    bad.ssh_key_name = "missing".into();
    let e = user
        .client
        .instance_create(&InstanceCreate {
            instances: vec![bad],
            idempotency_key: None,
        })
        .await
        .refused(404, ErrorKind::NotFound);
    assert_eq!(e.field(), Some("instances[0].ssh_key_name"), "{e}");
    Ok(())
}
