//! The fake against DigitalOcean's OpenAPI spec: every endpoint it implements is called over
//! HTTP (success and error cases), and each answer's status must be documented for that
//! operation, its body must validate against the documented schema, and the rate-limit headers
//! the spec lists must be present.

use std::collections::BTreeSet;

use fakecloud::contract::Spec;
use fakecloud::{Config, Fault, FaultKind};
use reqwest::Method;
use serde_json::{Value, json};

struct Checker {
    spec: Spec,
    http: reqwest::Client,
    base: String,
    covered: BTreeSet<(String, u16)>,
}

impl Checker {
    /// Calls the fake and checks the answer against operation `op` (`resources/<op>`).
    async fn call(
        &mut self,
        op: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let what = format!("{method} {path} → {status} ({op})");

        let operation = self.spec.operation(op).unwrap();
        assert!(
            self.spec
                .statuses(&operation)
                .iter()
                .any(|s| *s == status || *s == 0),
            "{what}: status not documented"
        );
        let response = self.spec.response(&operation, status).unwrap();
        for h in self.spec.headers(&response) {
            if h.starts_with("ratelimit-") {
                assert!(
                    headers.contains_key(h.as_str()),
                    "{what}: missing header {h}"
                );
            }
        }
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        match self.spec.body_schema(&response) {
            Some(schema) => {
                let errors = self.spec.validate(&schema, &value);
                assert!(
                    errors.is_empty(),
                    "{what}: body violates the spec:\n{}\n{text}",
                    errors.join("\n")
                );
                assert!(
                    headers
                        .get("content-type")
                        .is_some_and(|c| c.to_str().unwrap().starts_with("application/json")),
                    "{what}: content-type"
                );
            }
            None => assert!(text.is_empty(), "{what}: undocumented body {text}"),
        }
        self.covered.insert((op.to_string(), status));
        (status, value)
    }
}

const T: Option<&str> = Some("contract-token");

#[tokio::test]
async fn every_endpoint_answers_as_the_spec_says() {
    let fake = fakecloud::spawn(Config::instant()).await.unwrap();
    let mut c = Checker {
        spec: Spec::vendored(),
        http: reqwest::Client::new(),
        base: fake.base_url(),
        covered: BTreeSet::new(),
    };
    use Method as M;

    // Catalogue and account.
    for (op, path) in [
        ("account/account_get.yml", "/v2/account"),
        ("regions/regions_list.yml", "/v2/regions"),
        ("sizes/sizes_list.yml", "/v2/sizes"),
        ("images/images_list.yml", "/v2/images?type=distribution"),
    ] {
        assert_eq!(c.call(op, M::GET, path, None, T).await.0, 200);
    }
    assert_eq!(
        c.call("account/account_get.yml", M::GET, "/v2/account", None, None)
            .await
            .0,
        401
    );

    // SSH keys.
    let key = json!({"name": "k", "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q a@b"});
    let (s, k) = c
        .call(
            "ssh_keys/sshKeys_create.yml",
            M::POST,
            "/v2/account/keys",
            Some(key),
            T,
        )
        .await;
    assert_eq!(s, 201);
    let key_id = k["ssh_key"]["id"].as_u64().unwrap();
    let fp = k["ssh_key"]["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(
        c.call(
            "ssh_keys/sshKeys_list.yml",
            M::GET,
            "/v2/account/keys",
            None,
            T
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.call(
            "ssh_keys/sshKeys_get.yml",
            M::GET,
            &format!("/v2/account/keys/{fp}"),
            None,
            T
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.call(
            "ssh_keys/sshKeys_get.yml",
            M::GET,
            "/v2/account/keys/1",
            None,
            T
        )
        .await
        .0,
        404
    );

    // Droplets: single and multi create, get, list by tag with pages, actions.
    let single = json!({"name": "web-1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64",
        "ssh_keys": [key_id], "tags": ["talis", "talis-project-p"], "user_data": "#cloud-config\n"});
    let (s, d) = c
        .call(
            "droplets/droplets_create.yml",
            M::POST,
            "/v2/droplets",
            Some(single),
            T,
        )
        .await;
    assert_eq!(s, 202);
    let id = d["droplet"]["id"].as_u64().unwrap();
    let multi = json!({"names": ["web-2", "web-3", "web-4"], "region": "nyc3", "size": "s-1vcpu-1gb",
        "image": "ubuntu-24-04-x64", "tags": ["talis", "talis-project-p"]});
    let (s, d) = c
        .call(
            "droplets/droplets_create.yml",
            M::POST,
            "/v2/droplets",
            Some(multi),
            T,
        )
        .await;
    assert_eq!(s, 202);
    assert_eq!(d["droplets"].as_array().unwrap().len(), 3);
    let eleven: Vec<String> = (0..11).map(|i| format!("n{i}")).collect();
    let too_many = json!({"names": eleven, "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"});
    assert_eq!(
        c.call(
            "droplets/droplets_create.yml",
            M::POST,
            "/v2/droplets",
            Some(too_many),
            T
        )
        .await
        .0,
        422
    );
    let (s, page) = c
        .call(
            "droplets/droplets_list.yml",
            M::GET,
            "/v2/droplets?tag_name=talis-project-p&per_page=2",
            None,
            T,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(page["meta"]["total"], 4);
    assert!(
        page["links"]["pages"]["next"]
            .as_str()
            .unwrap()
            .contains("tag_name=talis-project-p")
    );
    assert_eq!(
        c.call(
            "droplets/droplets_get.yml",
            M::GET,
            &format!("/v2/droplets/{id}"),
            None,
            T
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.call(
            "droplets/droplets_get.yml",
            M::GET,
            "/v2/droplets/1",
            None,
            T
        )
        .await
        .0,
        404
    );
    let (s, a) = c
        .call(
            "droplets/dropletActions_post.yml",
            M::POST,
            &format!("/v2/droplets/{id}/actions"),
            Some(json!({"type": "reboot"})),
            T,
        )
        .await;
    assert_eq!(s, 201);
    let action = a["action"]["id"].as_u64().unwrap();
    assert_eq!(
        c.call(
            "actions/actions_get.yml",
            M::GET,
            &format!("/v2/actions/{action}"),
            None,
            T
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.call("actions/actions_get.yml", M::GET, "/v2/actions/1", None, T)
            .await
            .0,
        404
    );

    // Tags.
    assert_eq!(
        c.call(
            "tags/tags_create.yml",
            M::POST,
            "/v2/tags",
            Some(json!({"name": "talis-instance-x"})),
            T
        )
        .await
        .0,
        201
    );
    assert_eq!(
        c.call(
            "tags/tags_create.yml",
            M::POST,
            "/v2/tags",
            Some(json!({"name": "bad tag"})),
            T
        )
        .await
        .0,
        400
    );
    let res = json!({"resources": [{"resource_id": id.to_string(), "resource_type": "droplet"}]});
    assert_eq!(
        c.call(
            "tags/tags_assign_resources.yml",
            M::POST,
            "/v2/tags/talis-instance-x/resources",
            Some(res.clone()),
            T
        )
        .await
        .0,
        204
    );
    assert_eq!(
        c.call(
            "tags/tags_assign_resources.yml",
            M::POST,
            "/v2/tags/missing/resources",
            Some(res.clone()),
            T
        )
        .await
        .0,
        404
    );
    assert_eq!(
        c.call(
            "tags/tags_get.yml",
            M::GET,
            "/v2/tags/talis-instance-x",
            None,
            T
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.call("tags/tags_list.yml", M::GET, "/v2/tags", None, T)
            .await
            .0,
        200
    );
    assert_eq!(
        c.call(
            "tags/tags_unassign_resources.yml",
            M::DELETE,
            "/v2/tags/talis-instance-x/resources",
            Some(res),
            T
        )
        .await
        .0,
        204
    );
    assert_eq!(
        c.call(
            "tags/tags_delete.yml",
            M::DELETE,
            "/v2/tags/talis-instance-x",
            None,
            T
        )
        .await
        .0,
        204
    );
    assert_eq!(
        c.call(
            "tags/tags_get.yml",
            M::GET,
            "/v2/tags/talis-instance-x",
            None,
            T
        )
        .await
        .0,
        404
    );

    // Volumes: create, get, list, attach (same region) / refuse (other region), detach, delete.
    let (s, v) = c.call("volumes/volumes_create.yml", M::POST, "/v2/volumes",
        Some(json!({"name": "data-1", "size_gigabytes": 10, "region": "nyc3", "filesystem_type": "ext4", "tags": ["talis"]})), T).await;
    assert_eq!(s, 201);
    let vol = v["volume"]["id"].as_str().unwrap().to_string();
    let (_, far) = c
        .call(
            "volumes/volumes_create.yml",
            M::POST,
            "/v2/volumes",
            Some(json!({"name": "data-2", "size_gigabytes": 10, "region": "fra1"})),
            T,
        )
        .await;
    let far = far["volume"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        c.call(
            "volumes/volumes_create.yml",
            M::POST,
            "/v2/volumes",
            Some(json!({"name": "Bad_Name", "size_gigabytes": 1, "region": "nyc3"})),
            T
        )
        .await
        .0,
        422
    );
    assert_eq!(
        c.call(
            "volumes/volumes_get.yml",
            M::GET,
            &format!("/v2/volumes/{vol}"),
            None,
            T
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.call(
            "volumes/volumes_get.yml",
            M::GET,
            "/v2/volumes/nope",
            None,
            T
        )
        .await
        .0,
        404
    );
    assert_eq!(
        c.call(
            "volumes/volumes_list.yml",
            M::GET,
            "/v2/volumes?name=data-1&region=nyc3",
            None,
            T
        )
        .await
        .0,
        200
    );
    let attach = |v: &str| json!({"type": "attach", "droplet_id": id, "region": v});
    assert_eq!(
        c.call(
            "volumes/volumeActions_post_byId.yml",
            M::POST,
            &format!("/v2/volumes/{vol}/actions"),
            Some(attach("nyc3")),
            T
        )
        .await
        .0,
        202
    );
    assert_eq!(
        c.call(
            "volumes/volumeActions_post_byId.yml",
            M::POST,
            &format!("/v2/volumes/{far}/actions"),
            Some(attach("fra1")),
            T
        )
        .await
        .0,
        422
    );
    let detach = json!({"type": "detach", "droplet_id": id, "region": "nyc3"});
    assert_eq!(
        c.call(
            "volumes/volumeActions_post_byId.yml",
            M::POST,
            &format!("/v2/volumes/{vol}/actions"),
            Some(detach),
            T
        )
        .await
        .0,
        202
    );
    assert_eq!(
        c.call(
            "volumes/volumes_delete.yml",
            M::DELETE,
            &format!("/v2/volumes/{vol}"),
            None,
            T
        )
        .await
        .0,
        204
    );
    assert_eq!(
        c.call(
            "volumes/volumes_delete.yml",
            M::DELETE,
            &format!("/v2/volumes/{vol}"),
            None,
            T
        )
        .await
        .0,
        404
    );

    // Deletes.
    assert_eq!(
        c.call(
            "droplets/droplets_destroy.yml",
            M::DELETE,
            &format!("/v2/droplets/{id}"),
            None,
            T
        )
        .await
        .0,
        204
    );
    assert_eq!(
        c.call(
            "droplets/droplets_destroy.yml",
            M::DELETE,
            &format!("/v2/droplets/{id}"),
            None,
            T
        )
        .await
        .0,
        404
    );
    assert_eq!(
        c.call(
            "droplets/droplets_destroy_byTag.yml",
            M::DELETE,
            "/v2/droplets?tag_name=talis-project-p",
            None,
            T
        )
        .await
        .0,
        204
    );
    assert_eq!(
        c.call(
            "ssh_keys/sshKeys_delete.yml",
            M::DELETE,
            &format!("/v2/account/keys/{key_id}"),
            None,
            T
        )
        .await
        .0,
        204
    );

    // Injected 5xx and 429 answers are documented shapes too; so is the quota's 422.
    fake.fake.set_config(Config {
        faults: vec![
            Fault {
                endpoint: "droplets_list".into(),
                kind: FaultKind::Error5xx,
                probability: 1.0,
                count: Some(1),
                status: None,
                stall_ms: None,
                burst: None,
            },
            Fault {
                endpoint: "droplets_list".into(),
                kind: FaultKind::RateLimit429,
                probability: 1.0,
                count: Some(1),
                status: None,
                stall_ms: None,
                burst: None,
            },
        ],
        droplet_limit: 0,
        ..Config::instant()
    });
    assert_eq!(
        c.call(
            "droplets/droplets_list.yml",
            M::GET,
            "/v2/droplets",
            None,
            T
        )
        .await
        .0,
        500
    );
    assert_eq!(
        c.call(
            "droplets/droplets_list.yml",
            M::GET,
            "/v2/droplets",
            None,
            T
        )
        .await
        .0,
        429
    );
    let one =
        json!({"name": "q", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"});
    let (s, e) = c
        .call(
            "droplets/droplets_create.yml",
            M::POST,
            "/v2/droplets",
            Some(one),
            T,
        )
        .await;
    assert_eq!(s, 422);
    assert!(e["message"].as_str().unwrap().contains("droplet limit"));

    // Every vendored operation was exercised.
    let ops: BTreeSet<&str> = c.covered.iter().map(|(op, _)| op.as_str()).collect();
    assert_eq!(ops.len(), 26, "covered: {ops:?}");
}

/// The client side of the contract lives in talis-provider; here: the spec's own request
/// examples are accepted by the fake (the fake is not stricter than DigitalOcean).
#[tokio::test]
async fn spec_request_schemas_accept_what_the_fake_accepts() {
    let mut spec = Spec::vendored();
    let op = spec.operation("droplets/droplets_create.yml").unwrap();
    let req = spec.request_schema(&op).unwrap();
    for body in [
        json!({"name": "a", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64", "tags": ["talis"], "user_data": "x"}),
        json!({"names": ["a", "b"], "region": "nyc3", "size": "s-1vcpu-1gb", "image": 160000001}),
    ] {
        assert_eq!(spec.validate(&req, &body), Vec::<String>::new(), "{body}");
    }
}
