//! Offline checks of the deploy manifests (deploy/): every file parses, every object has its
//! required fields, and the manifests agree with the sources of truth they copy from — the Spin
//! variables in spin.toml, the port constants in `talis_stack::ports`, the environment the
//! workflows service reads, and the pinned Restate version in package.json. The security
//! properties of the deployment (docs/security.md) are checked here too: who the NetworkPolicies
//! let in, Restate's request identity, versioned registration without `force`, and what the
//! image build context leaves out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use talis_stack::ports;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    talis_stack::workspace_root()
}

fn read(rel: &str) -> String {
    let p = root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn yaml_docs(path: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).unwrap();
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const K8S: &str = "deploy/kubernetes";
/// Helm values and kustomize's own file: YAML, but not Kubernetes objects.
const NOT_OBJECTS: &[&str] = &["kustomization.yaml", "restate-values.yaml"];

/// Every Kubernetes object of deploy/kubernetes with the file it came from.
fn objects() -> Vec<(String, Yaml)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join(K8S)).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        if !file.ends_with(".yaml") || NOT_OBJECTS.contains(&file.as_str()) {
            continue;
        }
        for doc in yaml_docs(&path) {
            out.push((file.clone(), doc));
        }
    }
    out
}

fn object(kind: &str, name: &str) -> Yaml {
    objects()
        .into_iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in {K8S}"))
}

/// The one object of `kind` labelled `app.kubernetes.io/name: <name>` (the versioned objects:
/// their names carry the version, their labels do not).
fn labelled(kind: &str, name: &str) -> Yaml {
    let found: Vec<Yaml> = objects()
        .into_iter()
        .map(|(_, d)| d)
        .filter(|d| {
            d["kind"].as_str() == Some(kind)
                && d["metadata"]["labels"]["app.kubernetes.io/name"].as_str() == Some(name)
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind} labelled app.kubernetes.io/name={name} in {K8S}"
    );
    found.into_iter().next().unwrap()
}

fn workflows_deployment() -> Yaml {
    labelled("Deployment", "talis-workflows")
}

fn registration_job() -> Yaml {
    labelled("Job", "talis-register-workflows")
}

/// The namespace Restate runs in, from the API's `restate_ingress_url`
/// (`http://<service>.<namespace>.svc...`).
fn restate_namespace() -> String {
    let app = object("SpinApp", "talis-api");
    let url = list(&app["spec"]["variables"], "variables")
        .iter()
        .find(|v| v["name"].as_str() == Some("restate_ingress_url"))
        .map(|v| s(&v["value"], "restate_ingress_url").to_string())
        .expect("restate_ingress_url");
    let host = url
        .split("://")
        .nth(1)
        .unwrap()
        .split([':', '/'])
        .next()
        .unwrap();
    let parts: Vec<&str> = host.split('.').collect();
    assert!(parts.len() >= 3 && parts[2] == "svc", "{url}");
    parts[1].to_string()
}

fn s<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {y:?}"))
}

fn list<'a>(y: &'a Yaml, what: &str) -> &'a Vec<Yaml> {
    y.as_vec()
        .unwrap_or_else(|| panic!("{what} is not a list: {y:?}"))
}

/// The variables spin.toml declares, with whether each is secret.
fn spin_variables() -> Vec<(String, bool)> {
    let manifest: toml::Table = read("spin.toml").parse().expect("spin.toml parses");
    let vars = manifest["variables"]
        .as_table()
        .expect("spin.toml has [variables]");
    vars.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.get("secret").and_then(|s| s.as_bool()).unwrap_or(false),
            )
        })
        .collect()
}

/// The port of a URL like `http://host:8080/path`.
fn port_of(url: &str) -> u16 {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let authority = rest.split('/').next().unwrap();
    authority
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no port in {url}"))
}

/// Keys of the one Secret the manifests use.
fn secret_keys() -> BTreeSet<String> {
    let secret = object("Secret", "talis-secrets");
    secret["stringData"]
        .as_hash()
        .expect("talis-secrets has stringData")
        .keys()
        .map(|k| s(k, "secret key").to_string())
        .collect()
}

/// Every `secretKeyRef` anywhere under `y`, as (secret name, key).
fn secret_refs(y: &Yaml, out: &mut Vec<(String, String)>) {
    match y {
        Yaml::Hash(h) => {
            for (k, v) in h {
                if k.as_str() == Some("secretKeyRef") {
                    out.push((
                        s(&v["name"], "secretKeyRef.name").into(),
                        s(&v["key"], "secretKeyRef.key").into(),
                    ));
                } else {
                    secret_refs(v, out);
                }
            }
        }
        Yaml::Array(a) => a.iter().for_each(|v| secret_refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_manifest_parses_and_names_itself() {
    let objs = objects();
    assert!(
        objs.len() >= 6,
        "expected the namespace, secret, SpinApp, workflows and job objects"
    );
    for (file, doc) in &objs {
        for field in ["apiVersion", "kind"] {
            assert!(
                doc[field].as_str().is_some_and(|v| !v.is_empty()),
                "{file}: missing {field}"
            );
        }
        let kind = s(&doc["kind"], "kind");
        assert!(
            doc["metadata"]["name"].as_str().is_some(),
            "{file}: {kind} has no metadata.name"
        );
        // The kustomization sets no namespace, so each object must name its own: talis, except
        // the NetworkPolicy guarding Restate, which lives beside Restate.
        let ns = doc["metadata"]["namespace"].as_str();
        if kind == "NetworkPolicy" && ns != Some("talis") {
            assert_eq!(ns, Some(restate_namespace().as_str()), "{file}: {kind}");
        } else if kind != "Namespace" {
            assert_eq!(ns, Some("talis"), "{file}: {kind} namespace");
        }
    }
    // Workloads: a selector that matches the pod template, and containers with an image.
    let wf = workflows_deployment();
    let spec = &wf["spec"];
    let selector = spec["selector"]["matchLabels"].as_hash().expect("selector");
    for (k, v) in selector {
        assert_eq!(
            &spec["template"]["metadata"]["labels"][s(k, "label")],
            v,
            "selector label {k:?}"
        );
    }
    let job = registration_job();
    for pod in [&spec["template"]["spec"], &job["spec"]["template"]["spec"]] {
        for c in list(&pod["containers"], "containers") {
            assert!(
                c["name"].as_str().is_some() && c["image"].as_str().is_some(),
                "container without name/image: {c:?}"
            );
        }
    }
    assert!(
        object("SpinApp", "talis-api")["spec"]["image"]
            .as_str()
            .is_some()
    );
}

#[test]
fn kustomization_lists_exactly_the_object_files() {
    let k = &yaml_docs(&root().join(K8S).join("kustomization.yaml"))[0];
    let listed: BTreeSet<String> = list(&k["resources"], "resources")
        .iter()
        .map(|r| s(r, "resource").to_string())
        .collect();
    let present: BTreeSet<String> = objects().into_iter().map(|(f, _)| f).collect();
    assert_eq!(listed, present);
    // kustomize's `namespace` would move the NetworkPolicy guarding Restate into talis, where it
    // selects nothing; every object names its namespace instead (checked above).
    assert!(
        k["namespace"].is_badvalue(),
        "kustomization.yaml must not set a namespace (it would move Restate's NetworkPolicy)"
    );
}

#[test]
fn spinapp_sets_every_spin_variable_and_secrets_come_from_the_secret() {
    let app = object("SpinApp", "talis-api");
    let vars = list(&app["spec"]["variables"], "spec.variables");
    let set: BTreeSet<&str> = vars
        .iter()
        .map(|v| s(&v["name"], "variable name"))
        .collect();
    let declared = spin_variables();
    let declared_names: BTreeSet<&str> = declared.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        set, declared_names,
        "SpinApp variables vs spin.toml [variables]"
    );
    for (name, secret) in &declared {
        let v = vars
            .iter()
            .find(|v| v["name"].as_str() == Some(name.as_str()))
            .unwrap();
        if *secret {
            assert!(
                v["value"].is_badvalue(),
                "{name} is secret: no inline value"
            );
            assert_eq!(
                v["valueFrom"]["secretKeyRef"]["name"].as_str(),
                Some("talis-secrets"),
                "{name}"
            );
        }
    }
    let ingress = vars
        .iter()
        .find(|v| v["name"].as_str() == Some("restate_ingress_url"))
        .expect("restate_ingress_url");
    assert_eq!(
        port_of(s(&ingress["value"], "restate_ingress_url")),
        ports::RESTATE_INGRESS
    );

    let dbs = list(
        &app["spec"]["runtimeConfig"]["sqliteDatabases"],
        "runtimeConfig.sqliteDatabases",
    );
    let default = dbs
        .iter()
        .find(|d| d["name"].as_str() == Some("default"))
        .expect("the default database");
    assert_eq!(default["type"].as_str(), Some("libsql"));
    let opts: BTreeSet<&str> = list(&default["options"], "options")
        .iter()
        .map(|o| s(&o["name"], "option"))
        .collect();
    assert_eq!(opts, BTreeSet::from(["url", "token"]));
}

#[test]
fn every_secret_reference_resolves() {
    let keys = secret_keys();
    let mut refs = Vec::new();
    for (_, doc) in objects() {
        secret_refs(&doc, &mut refs);
    }
    assert!(refs.len() >= 5, "{refs:?}");
    for (name, key) in refs {
        assert_eq!(name, "talis-secrets");
        assert!(
            keys.contains(&key),
            "secret key {key} is referenced but not defined"
        );
    }
    // Only placeholders are committed, never a real token.
    let secret = object("Secret", "talis-secrets");
    for (k, v) in secret["stringData"].as_hash().unwrap() {
        assert!(
            s(v, "value").contains("CHANGE_ME"),
            "{k:?} must be a CHANGE_ME placeholder"
        );
    }
}

/// Environment variables the workflows binary reads (`env = "NAME"` in its clap config).
fn workflows_env() -> BTreeSet<String> {
    let src = read("workflows/src/config.rs");
    src.split("env = \"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}

#[test]
fn workflows_deployment_matches_ports_and_configuration() {
    let wf = workflows_deployment();
    let c = &list(&wf["spec"]["template"]["spec"]["containers"], "containers")[0];
    let port = c["ports"][0]["containerPort"]
        .as_i64()
        .expect("containerPort");
    assert_eq!(port, i64::from(ports::WORKFLOWS));

    let known = workflows_env();
    assert!(
        !known.is_empty(),
        "no env names found in workflows/src/config.rs"
    );
    let env = list(&c["env"], "env");
    for e in env {
        let name = s(&e["name"], "env name");
        assert!(
            known.contains(name),
            "workflows do not read {name} (they read {known:?})"
        );
    }
    let value = |n: &str| {
        env.iter()
            .find(|e| e["name"].as_str() == Some(n))
            .unwrap_or_else(|| panic!("env {n}"))
    };
    assert_eq!(
        port_of(s(&value("WORKFLOWS_LISTEN")["value"], "listen")),
        ports::WORKFLOWS
    );
    assert!(s(&value("TALIS_API_URL")["value"], "api url").contains("talis-api.talis.svc"));

    // The API and the workflows must share the same internal secret.
    let app = object("SpinApp", "talis-api");
    let app_secret = list(&app["spec"]["variables"], "variables")
        .iter()
        .find(|v| v["name"].as_str() == Some("internal_secret"))
        .unwrap()["valueFrom"]["secretKeyRef"]["key"]
        .clone();
    assert_eq!(
        value("TALIS_INTERNAL_SECRET")["valueFrom"]["secretKeyRef"]["key"],
        app_secret
    );

    let svc = labelled("Service", "talis-workflows");
    let p = &svc["spec"]["ports"][0];
    assert_eq!(p["port"].as_i64(), Some(i64::from(ports::WORKFLOWS)));
    assert_eq!(p["targetPort"].as_i64(), Some(i64::from(ports::WORKFLOWS)));
    assert_eq!(
        p["appProtocol"].as_str(),
        Some("kubernetes.io/h2c"),
        "Restate endpoints are HTTP/2 only"
    );

    // The metrics listener: the same port in the manifest, the image and the binary's default.
    assert_eq!(
        port_of(s(&value("TALIS_METRICS_LISTEN")["value"], "metrics listen")),
        ports::WORKFLOWS_METRICS
    );
    let metrics_default = format!(
        "env = \"TALIS_METRICS_LISTEN\", default_value = \"127.0.0.1:{}\"",
        ports::WORKFLOWS_METRICS
    );
    assert!(
        read("workflows/src/config.rs").contains(&metrics_default),
        "talis-workflows' default metrics listener is not port {}",
        ports::WORKFLOWS_METRICS
    );

    let dockerfile = read("deploy/workflows.Dockerfile");
    assert!(dockerfile.contains(&format!(
        "EXPOSE {} {}",
        ports::WORKFLOWS,
        ports::WORKFLOWS_METRICS
    )));
    assert!(dockerfile.contains(&format!(
        "TALIS_METRICS_LISTEN=0.0.0.0:{}",
        ports::WORKFLOWS_METRICS
    )));
}

/// The workflows version: the tag of the Deployment's image.
fn workflows_version() -> String {
    let wf = workflows_deployment();
    let image = s(
        &wf["spec"]["template"]["spec"]["containers"][0]["image"],
        "workflows image",
    );
    let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
    assert!(
        !tag.is_empty() && !tag.contains('/') && tag != "latest",
        "the workflows image needs a version tag: {image}"
    );
    tag.to_string()
}

/// `0.1.0` → `v0-1-0`: the version as it appears in object names (DNS labels).
fn version_suffix(version: &str) -> String {
    format!("v{}", version.to_lowercase().replace(['.', '_', '+'], "-"))
}

/// Each workflows version runs beside the previous one until that one is drained, so every
/// object of it is named after the version (image tag) and labelled with it, and selects only
/// its own version's pods.
#[test]
fn every_workflows_object_is_named_and_labelled_with_its_version() {
    let version = workflows_version();
    let suffix = version_suffix(&version);
    let wf = workflows_deployment();
    let svc = labelled("Service", "talis-workflows");
    let pdb = labelled("PodDisruptionBudget", "talis-workflows");
    let job = registration_job();
    for (obj, base) in [
        (&wf, "talis-workflows"),
        (&svc, "talis-workflows"),
        (&pdb, "talis-workflows"),
        (&job, "talis-register-workflows"),
    ] {
        let kind = s(&obj["kind"], "kind");
        assert_eq!(
            s(&obj["metadata"]["name"], "name"),
            format!("{base}-{suffix}"),
            "{kind} name for version {version}"
        );
        assert_eq!(
            obj["metadata"]["labels"]["app.kubernetes.io/version"].as_str(),
            Some(version.as_str()),
            "{kind} label app.kubernetes.io/version"
        );
    }
    let pods = &wf["spec"]["selector"]["matchLabels"];
    assert_eq!(
        pods["app.kubernetes.io/version"].as_str(),
        Some(version.as_str()),
        "the Deployment selects its own version's pods only"
    );
    assert_eq!(&svc["spec"]["selector"], pods, "Service selector");
    assert_eq!(
        &pdb["spec"]["selector"]["matchLabels"], pods,
        "PDB selector"
    );
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"].as_str(),
        Some(version.as_str())
    );
}

/// The registration posts this version's Service URL to Restate's admin API, with `force`
/// false: a new URL per version is a new deployment, so invocations in flight stay on the old
/// one; `force` would overwrite a deployment under its running invocations.
#[test]
fn registration_job_registers_this_version_without_force() {
    let job = registration_job();
    let args: Vec<&str> = list(
        &job["spec"]["template"]["spec"]["containers"][0]["args"],
        "args",
    )
    .iter()
    .map(|a| s(a, "arg"))
    .collect();
    let admin = args.last().expect("the admin URL is the last argument");
    assert!(admin.ends_with("/deployments"), "{admin}");
    assert_eq!(port_of(admin), ports::RESTATE_ADMIN);
    let data = args[args.iter().position(|a| *a == "--data").expect("--data") + 1];
    let body: serde_json::Value = serde_json::from_str(data).expect("--data is JSON");
    assert_eq!(
        body["force"],
        serde_json::Value::Bool(false),
        "the registration must say \"force\": false (older admin APIs default to true): {data}"
    );
    assert_ne!(
        body["breaking"],
        serde_json::Value::Bool(true),
        "no breaking registrations: {data}"
    );
    assert!(
        !args.iter().any(|a| a.contains("force=true")),
        "no force in the URL either: {args:?}"
    );
    let uri = body["uri"].as_str().expect("uri");
    let svc = labelled("Service", "talis-workflows");
    let name = s(&svc["metadata"]["name"], "Service name");
    assert!(
        name.ends_with(&version_suffix(&workflows_version())),
        "{name}"
    );
    assert_eq!(
        uri,
        format!("http://{name}.talis.svc.cluster.local:{}", ports::WORKFLOWS),
        "the registered URL must be this version's Service"
    );
}

#[test]
fn restate_values_pin_the_version_the_local_stack_runs() {
    let values = &yaml_docs(&root().join(K8S).join("restate-values.yaml"))[0];
    let pkg: serde_json::Value = serde_json::from_str(&read("package.json")).unwrap();
    let pinned = pkg["dependencies"]["@restatedev/restate-server"]
        .as_str()
        .unwrap();
    assert_eq!(s(&values["image"]["tag"], "image.tag"), pinned);
}

/// The value of `name` in a Helm values file's `env` list.
fn values_env(values: &Yaml, name: &str) -> String {
    list(&values["env"], "env")
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
        .map(|e| s(&e["value"], name).to_string())
        .unwrap_or_else(|| panic!("restate-values.yaml does not set {name}"))
}

/// Scale-out (docs/scale-out.md): Restate is a cluster that keeps 2 copies of every log record
/// and partition on at least 3 nodes (so one may die), every node can find the others, and the
/// stateless parts run at least 2 replicas, the workflows' behind the one Service Restate knows.
#[test]
fn restate_is_a_replicated_cluster_and_the_stateless_parts_have_replicas() {
    let values = &yaml_docs(&root().join(K8S).join("restate-values.yaml"))[0];
    let nodes = values["replicaCount"].as_i64().expect("replicaCount");
    let replication: i64 = values_env(values, "RESTATE_DEFAULT_REPLICATION")
        .parse()
        .expect("RESTATE_DEFAULT_REPLICATION is a number");
    assert_eq!(replication, 2);
    assert!(
        nodes > replication,
        "{nodes} nodes keeping {replication} copies cannot lose one"
    );
    // The local cluster (`cargo xtask up --cluster`, the cluster test) runs the same shape.
    let local = talis_stack::cluster::Options::new("", "", "");
    assert_eq!(i64::from(local.replication), replication);
    assert_eq!(i64::from(local.restate_nodes), nodes);
    assert_eq!(
        values_env(values, "RESTATE_BIFROST__DEFAULT_PROVIDER"),
        "replicated"
    );
    let addresses: Vec<String> =
        serde_json::from_str(&values_env(values, "RESTATE_METADATA_CLIENT__ADDRESSES"))
            .expect("RESTATE_METADATA_CLIENT__ADDRESSES is a JSON list");
    assert_eq!(addresses.len() as i64, nodes, "{addresses:?}");
    for (i, a) in addresses.iter().enumerate() {
        assert!(a.contains(&format!("restate-{i}.restate-cluster")), "{a}");
        assert_eq!(port_of(a), ports::RESTATE_NODE, "{a}");
    }
    // Every pod gets the same environment and at most one node may auto-provision: none does,
    // and the file says how to provision once.
    assert_eq!(values_env(values, "RESTATE_AUTO_PROVISION"), "false");
    assert!(
        read("deploy/kubernetes/restate-values.yaml")
            .contains("restatectl provision --replication 2"),
        "restate-values.yaml does not say how to provision the cluster"
    );

    let wf = workflows_deployment();
    assert!(wf["spec"]["replicas"].as_i64().expect("replicas") >= 2);
    let pdb = labelled("PodDisruptionBudget", "talis-workflows");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        wf["spec"]["selector"]["matchLabels"]
    );
    assert!(pdb["spec"]["minAvailable"].as_i64().expect("minAvailable") >= 1);
    let app = object("SpinApp", "talis-api");
    assert!(app["spec"]["replicas"].as_i64().expect("replicas") >= 2);
}

/// `spin up --runtime-config-file deploy/runtime-config.libsql.toml` must accept the file: Spin
/// reads `[sqlite_database.<label>]` with `type = "libsql"` and exactly `url` (http:// or
/// https://: Spin speaks to libSQL over HTTP only) and `token`, and refuses unknown keys.
#[test]
fn libsql_runtime_config_is_what_spin_accepts() {
    let rc: toml::Table = read("deploy/runtime-config.libsql.toml").parse().unwrap();
    assert_eq!(rc.keys().collect::<Vec<_>>(), ["sqlite_database"]);
    let db = rc["sqlite_database"]["default"]
        .as_table()
        .expect("[sqlite_database.default]");
    let keys: BTreeSet<&str> = db.keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["type", "url", "token"]));
    assert_eq!(db["type"].as_str(), Some("libsql"));
    let url = db["url"].as_str().expect("url is a string");
    assert!(
        url.starts_with("https://") || url.starts_with("http://"),
        "{url}"
    );
    assert!(db["token"].is_str());
}

#[test]
fn fermyon_and_runtime_config_cover_every_spin_variable() {
    let doc = read("deploy/fermyon/README.md");
    for (name, _) in spin_variables() {
        assert!(
            doc.contains(&format!("--variable {name}=")),
            "deploy/fermyon/README.md does not set {name}"
        );
    }
    let rc: toml::Table = read("deploy/runtime-config.libsql.toml").parse().unwrap();
    let default = &rc["sqlite_database"]["default"];
    assert_eq!(default["type"].as_str(), Some("libsql"));
    assert!(default.get("url").is_some() && default.get("token").is_some());
}

/// The value a manifest gives `deployment_id`: a plain value (it is not a secret).
fn spinapp_deployment_id() -> String {
    let app = object("SpinApp", "talis-api");
    let v = list(&app["spec"]["variables"], "spec.variables")
        .iter()
        .find(|v| v["name"].as_str() == Some("deployment_id"))
        .expect("the SpinApp sets deployment_id")
        .clone();
    assert!(
        v["valueFrom"].is_badvalue(),
        "deployment_id is a plain value, not a secret reference"
    );
    s(&v["value"], "deployment_id value").to_string()
}

/// `--variable deployment_id=<value>` of the Fermyon guide.
fn fermyon_deployment_id() -> String {
    let doc = read("deploy/fermyon/README.md");
    let rest = doc
        .split("--variable deployment_id=")
        .nth(1)
        .expect("the Fermyon guide sets deployment_id");
    rest.split(|c: char| c.is_whitespace() || c == '\\')
        .next()
        .unwrap()
        .trim_matches('"')
        .to_string()
}

/// `deployment_id` goes into the tags of every provider resource: each manifest's value is one
/// the workflows accept, and differs from spin.toml's default (what every local stack uses), so
/// a deployment never shares its identity with a developer's stack on the same cloud account.
/// Both guides say the value must be distinct per deployment sharing a cloud account.
#[test]
fn deployment_id_is_valid_distinct_and_documented() {
    let manifest: toml::Table = read("spin.toml").parse().unwrap();
    let default = manifest["variables"]["deployment_id"]["default"]
        .as_str()
        .expect("spin.toml gives deployment_id a default")
        .to_string();
    talis_api::rules::deployment_id(&default).expect("spin.toml's default");
    for (what, value) in [
        ("SpinApp", spinapp_deployment_id()),
        ("Fermyon guide", fermyon_deployment_id()),
    ] {
        if let Err(e) = talis_api::rules::deployment_id(&value) {
            panic!("{what}: {e}");
        }
        assert_ne!(value, default, "{what} uses the local default");
    }
    for file in ["deploy/kubernetes/spinapp.yaml", "deploy/fermyon/README.md"] {
        let text = read(file).to_lowercase().replace(['\n', '#'], " ");
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            text.contains("distinct per deployment sharing a cloud account"),
            "{file} does not say deployment_id must be distinct per deployment sharing a cloud account"
        );
    }
}

/// The workflows accept only requests signed by Restate: the Deployment gives them the public
/// key from the Secret (a placeholder of the right shape until the operator sets it), and the
/// binary reads that variable.
#[test]
fn workflows_verify_restate_request_identity_from_the_secret() {
    const VAR: &str = "TALIS_RESTATE_IDENTITY_KEYS";
    assert!(
        workflows_env().contains(VAR),
        "workflows/src/config.rs no longer reads {VAR}"
    );
    let wf = workflows_deployment();
    let c = &list(&wf["spec"]["template"]["spec"]["containers"], "containers")[0];
    let e = list(&c["env"], "env")
        .iter()
        .find(|e| e["name"].as_str() == Some(VAR))
        .unwrap_or_else(|| panic!("the workflows Deployment does not set {VAR}"));
    assert!(e["value"].is_badvalue(), "{VAR} must come from the Secret");
    let r = &e["valueFrom"]["secretKeyRef"];
    assert_eq!(r["name"].as_str(), Some("talis-secrets"), "{VAR}");
    let key = s(&r["key"], "secretKeyRef.key");
    let secret = object("Secret", "talis-secrets");
    let placeholder = s(&secret["stringData"][key], key);
    assert!(
        placeholder.starts_with("publickeyv1_"),
        "{key} placeholder should show the key's form: {placeholder}"
    );
}

/// Restate signs every request to the workflows: its values set the 1.7 key
/// `worker.invoker.request-identity-private-key-pem-file` to a file of a mounted Secret (not
/// the chart's `identityPrivateKey`, which sets the root-level key deprecated in 1.7), and the
/// deploy guide says how to create that Secret.
#[test]
fn restate_values_configure_the_request_identity_private_key() {
    let values = &yaml_docs(&root().join(K8S).join("restate-values.yaml"))[0];
    let path = values_env(
        values,
        "RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE",
    );
    assert!(
        list(&values["env"], "env")
            .iter()
            .all(|e| e["name"].as_str() != Some("RESTATE_REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE")),
        "the root-level key is deprecated and would take precedence"
    );
    assert_ne!(
        values["identityPrivateKey"]["enabled"].as_bool(),
        Some(true),
        "the chart's identityPrivateKey sets the deprecated root-level key"
    );
    let (dir, file) = path.rsplit_once('/').expect("an absolute path");
    let mount = list(&values["extraVolumeMounts"], "extraVolumeMounts")
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(dir))
        .unwrap_or_else(|| panic!("nothing is mounted at {dir}"));
    let name = s(&mount["name"], "mount name");
    let volume = list(&values["extraVolumes"], "extraVolumes")
        .iter()
        .find(|v| v["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no volume {name}"));
    let secret = &volume["secret"];
    let secret_name = s(&secret["secretName"], "secretName");
    assert_ne!(
        secret["optional"].as_bool(),
        Some(true),
        "Restate must not start without its key"
    );
    if let Some(items) = secret["items"].as_vec() {
        assert!(
            items.iter().any(|i| i["path"].as_str() == Some(file)),
            "the Secret volume does not provide {file}"
        );
    }
    let guide = read("deploy/README.md");
    assert!(
        guide.contains(&format!("create secret generic {secret_name}")),
        "deploy/README.md does not say how to create the Secret {secret_name}"
    );
}

/// A label selector's `matchLabels` (`matchExpressions` are not used here, and refused so this
/// check cannot misread one).
fn match_labels(selector: &Yaml, what: &str) -> BTreeMap<String, String> {
    assert!(
        selector["matchExpressions"].is_badvalue(),
        "{what}: matchExpressions are not checked here; use matchLabels"
    );
    match &selector["matchLabels"] {
        Yaml::BadValue => BTreeMap::new(),
        m => m
            .as_hash()
            .unwrap_or_else(|| panic!("{what}: matchLabels is not a map"))
            .iter()
            .map(|(k, v)| (s(k, what).to_string(), s(v, what).to_string()))
            .collect(),
    }
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// One `from` peer of a NetworkPolicy rule, in words: `namespace N, pods k=v,...`.
fn describe_peer(peer: &Yaml, policy_ns: &str) -> String {
    if !peer["ipBlock"].is_badvalue() {
        return format!("ipBlock {}", s(&peer["ipBlock"]["cidr"], "cidr"));
    }
    let ns = match &peer["namespaceSelector"] {
        Yaml::BadValue => format!("namespace {policy_ns}"),
        sel => {
            let l = match_labels(sel, "namespaceSelector");
            match l.get("kubernetes.io/metadata.name") {
                _ if l.is_empty() => "any namespace".to_string(),
                Some(n) if l.len() == 1 => format!("namespace {n}"),
                _ => panic!("namespaceSelector {l:?}: select namespaces by name"),
            }
        }
    };
    pods_peer(&ns, &match_labels(&peer["podSelector"], "podSelector"))
}

fn pods_peer(ns: &str, labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return format!("{ns}, any pod");
    }
    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{ns}, pods {}", l.join(","))
}

/// Who the NetworkPolicies let reach `port` of pods labelled `labels` in `namespace`: `None`
/// when no policy selects those pods for ingress (then everyone may), else every peer of every
/// rule that covers the port ("anyone" for a rule without `from`).
fn allowed_peers(
    namespace: &str,
    labels: &BTreeMap<String, String>,
    port: u16,
) -> Option<BTreeSet<String>> {
    let mut isolated = false;
    let mut peers = BTreeSet::new();
    for (_, p) in objects() {
        if p["kind"].as_str() != Some("NetworkPolicy")
            || p["metadata"]["namespace"].as_str() != Some(namespace)
        {
            continue;
        }
        let name = s(&p["metadata"]["name"], "policy name");
        let spec = &p["spec"];
        if !selects(&match_labels(&spec["podSelector"], name), labels) {
            continue;
        }
        let ingress_type = match &spec["policyTypes"] {
            Yaml::BadValue => true,
            t => list(t, "policyTypes")
                .iter()
                .any(|t| t.as_str() == Some("Ingress")),
        };
        if !ingress_type {
            continue;
        }
        isolated = true;
        let rules = match &spec["ingress"] {
            Yaml::BadValue => continue,
            r => list(r, "ingress"),
        };
        for rule in rules {
            let covers = match &rule["ports"] {
                Yaml::BadValue => true,
                ps => {
                    list(ps, "ports").is_empty()
                        || list(ps, "ports").iter().any(|p| {
                            let from = p["port"].as_i64().unwrap_or_else(|| {
                                panic!("{name}: port {:?}: use numbers", p["port"])
                            });
                            let to = p["endPort"].as_i64().unwrap_or(from);
                            (from..=to).contains(&i64::from(port))
                        })
                }
            };
            if !covers {
                continue;
            }
            match &rule["from"] {
                Yaml::BadValue => {
                    peers.insert("anyone".to_string());
                }
                f if list(f, "from").is_empty() => {
                    peers.insert("anyone".to_string());
                }
                f => {
                    for peer in list(f, "from") {
                        peers.insert(describe_peer(peer, namespace));
                    }
                }
            }
        }
    }
    isolated.then_some(peers)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// networkpolicy.yaml: Restate's ingress only from the API pods, its admin API only from the
/// operator's (registration) pods, its node port only from the other nodes and Prometheus; the
/// workflows endpoint only from Restate, their metrics only from Prometheus; no other port of
/// either open to anyone. The peers' labels are the ones the workloads actually carry.
#[test]
fn network_policies_let_in_only_the_stated_peers() {
    const OPERATOR: (&str, &str) = ("talis.dev/operator", "true");
    const MONITORING: &str = "namespace monitoring, any pod";
    let restate_ns = restate_namespace();
    // The chart labels its pods `app: <nameOverride>`, "restate" unless the values change it.
    let values = &yaml_docs(&root().join(K8S).join("restate-values.yaml"))[0];
    assert!(values["nameOverride"].is_badvalue() && values["podLabels"].is_badvalue());
    let restate_pods = labels(&[("app", "restate")]);
    // The spin-operator labels a SpinApp's pods `core.spinkube.dev/app-name: <SpinApp name>`.
    let app = object("SpinApp", "talis-api");
    let api_pods = labels(&[(
        "core.spinkube.dev/app-name",
        s(&app["metadata"]["name"], "SpinApp name"),
    )]);
    assert!(app["spec"]["podLabels"][OPERATOR.0].is_badvalue());
    let wf = workflows_deployment();
    let wf_pods: BTreeMap<String, String> = wf["spec"]["template"]["metadata"]["labels"]
        .as_hash()
        .expect("template labels")
        .iter()
        .map(|(k, v)| (s(k, "label").into(), s(v, "label").into()))
        .collect();
    assert!(
        !wf_pods.contains_key(OPERATOR.0),
        "workflows pods are no operator"
    );
    // The operator label is the registration Job's.
    let job = registration_job();
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"][OPERATOR.0].as_str(),
        Some(OPERATOR.1),
        "the registration Job's pod must carry {}={}",
        OPERATOR.0,
        OPERATOR.1
    );

    let api = pods_peer("namespace talis", &api_pods);
    let operator = pods_peer("namespace talis", &labels(&[OPERATOR]));
    let restate = pods_peer(&format!("namespace {restate_ns}"), &restate_pods);
    // (what, namespace, pods, port, the only peers allowed)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a BTreeMap<String, String>,
        u16,
        Vec<&'a str>,
    );
    let cases: [Case; 7] = [
        (
            "Restate ingress",
            &restate_ns,
            &restate_pods,
            ports::RESTATE_INGRESS,
            vec![&api],
        ),
        (
            "Restate admin",
            &restate_ns,
            &restate_pods,
            ports::RESTATE_ADMIN,
            vec![&operator],
        ),
        (
            "Restate node",
            &restate_ns,
            &restate_pods,
            ports::RESTATE_NODE,
            vec![&restate, MONITORING],
        ),
        (
            "Restate, another port",
            &restate_ns,
            &restate_pods,
            1,
            vec![],
        ),
        (
            "workflows endpoint",
            "talis",
            &wf_pods,
            ports::WORKFLOWS,
            vec![&restate],
        ),
        (
            "workflows metrics",
            "talis",
            &wf_pods,
            ports::WORKFLOWS_METRICS,
            vec![MONITORING],
        ),
        ("workflows, another port", "talis", &wf_pods, 1, vec![]),
    ];
    for (what, ns, pods, port, expected) in cases {
        let allowed = allowed_peers(ns, pods, port).unwrap_or_else(|| {
            panic!(
                "{what}: no NetworkPolicy selects {pods:?} in namespace {ns}: anyone may connect"
            )
        });
        let expected: BTreeSet<String> = expected.into_iter().map(String::from).collect();
        assert_eq!(allowed, expected, "{what} (port {port}): who may connect");
    }
}

/// The image build context is the repository: `.dockerignore` must keep out the local stack's
/// state (`.talis/`: the admin key and internal secret), build output and node modules, and
/// never let part of them back in with a `!` pattern.
#[test]
fn dockerignore_keeps_state_and_build_output_out_of_images() {
    let text = read(".dockerignore");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let norm = |l: &str| l.trim_start_matches('/').trim_end_matches('/').to_string();
    for dir in [".talis", "target", "node_modules"] {
        assert!(
            lines.iter().any(|l| norm(l) == dir),
            ".dockerignore does not exclude {dir}/"
        );
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with('!') && norm(&l[1..]).starts_with(dir)),
            ".dockerignore lets part of {dir}/ back in"
        );
    }
}
