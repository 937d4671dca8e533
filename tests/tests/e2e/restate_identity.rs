//! Restate request identity, end to end: a real restate-server signing its requests with an
//! Ed25519 private key, set through the same environment variable `deploy/kubernetes/
//! restate-values.yaml` sets, and real workflows processes verifying them against
//! `TALIS_RESTATE_IDENTITY_KEYS` (what `workflows.yaml` gives them from the Secret). The
//! endpoint that trusts the key is registered and runs handlers; one that trusts another key
//! refuses Restate; an unsigned request straight to the endpoint is refused.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use talis_stack::restate::{self, Ports};
use talis_stack::workflows::{Options, Workflows};
use talis_stack::{Ready, Service};
use yaml_rust2::YamlLoader;

/// A fresh key pair: the private key as PKCS#8 PEM (what `openssl genpkey -algorithm ed25519`
/// writes) and the public key as Restate and its SDKs spell it.
struct KeyPair {
    pem: String,
    public: String,
}

fn key_pair() -> KeyPair {
    let key = SigningKey::from_bytes(&rand::random());
    KeyPair {
        pem: key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("PKCS#8 PEM")
            .to_string(),
        public: format!(
            "publickeyv1_{}",
            bs58::encode(key.verifying_key().as_bytes()).into_string()
        ),
    }
}

/// The environment variable naming the private key file in the Helm values.
fn private_key_env() -> String {
    let path = talis_stack::workspace_root().join("deploy/kubernetes/restate-values.yaml");
    let values = &YamlLoader::load_from_str(&std::fs::read_to_string(path).unwrap()).unwrap()[0];
    values["env"]
        .as_vec()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .find(|n| n.ends_with("REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE"))
        .expect("restate-values.yaml sets the request-identity private key")
        .to_string()
}

async fn start_restate(dir: &Path, logs: &Path, pem: &Path) -> Result<(Service, Ports)> {
    let ports = Ports::free();
    let spec = restate::node_spec("restate", &dir.join("restate"), logs, ports)?
        .env("RESTATE_NODE_NAME", "talis-local")
        .env("RESTATE_ROCKSDB_TOTAL_MEMORY_SIZE", "512 MiB")
        .env(private_key_env(), pem.display().to_string())
        .ready(Ready::Http(format!(
            "http://127.0.0.1:{}/health",
            ports.admin
        )));
    Ok((Service::start(spec).await?, ports))
}

/// A workflows endpoint trusting `public` (its own log directory: the log is named after the
/// service). It never reaches the API: discovery and `TaskWorkflow/status` need none.
async fn start_workflows(dir: &Path, name: &str, public: &str) -> Result<Workflows> {
    let logs = dir.join(name);
    std::fs::create_dir_all(&logs)?;
    let mut o = Options::new(
        "http://127.0.0.1:9",
        "identity-test-internal-secret-0123456789",
        "http://127.0.0.1:9",
        "token",
    );
    o.env = vec![("TALIS_RESTATE_IDENTITY_KEYS".into(), public.into())];
    Workflows::start(&o, &logs).await
}

/// `POST /deployments` without force, as the registration Job does. Retried while Restate
/// cannot reach the endpoint yet; a refusal by the endpoint is final.
async fn register(http: &reqwest::Client, ports: Ports, uri: &str) -> Result<(u16, String)> {
    let url = format!("http://127.0.0.1:{}/deployments", ports.admin);
    let body = serde_json::json!({ "uri": uri, "force": false });
    let mut last = (0, String::new());
    for _ in 0..50 {
        let r = http.post(&url).json(&body).send().await?;
        last = (r.status().as_u16(), r.text().await?);
        if last.0 < 500 || last.1.contains("401") {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(last)
}

#[tokio::test]
async fn workflows_answer_only_requests_restate_signed_with_a_trusted_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let (restate_key, other_key) = (key_pair(), key_pair());
    let pem = dir.path().join("restate-identity.pem");
    std::fs::write(&pem, &restate_key.pem)?;
    let (restate, ports) = start_restate(dir.path(), &logs, &pem).await?;
    let trusting = start_workflows(dir.path(), "trusting", &restate_key.public).await?;
    let distrusting = start_workflows(dir.path(), "distrusting", &other_key.public).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;

    // Discovery is a signed request: the endpoint trusting Restate's key is registered.
    let (status, body) = register(&http, ports, &trusting.url()).await?;
    if status != 201 {
        bail!(
            "registration of the trusting endpoint: {status} {body}\nworkflows log:\n{}\nrestate log:\n{}",
            trusting.service.log_tail(20),
            restate.log_tail(20)
        );
    }
    assert!(body.contains("TaskWorkflow"), "{body}");

    // An invocation through the ingress runs a handler on it (again signed).
    let ingress = format!("http://127.0.0.1:{}/TaskWorkflow/1/status", ports.ingress);
    let mut answer = None;
    let mut last = String::new();
    for _ in 0..100 {
        match http.post(&ingress).send().await {
            Ok(r) if r.status().is_success() => {
                answer = Some(r.text().await?);
                break;
            }
            Ok(r) => last = format!("{} {}", r.status(), r.text().await?),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = answer.with_context(|| {
        format!("TaskWorkflow/1/status never answered through the ingress; last: {last}")
    })?;
    assert_eq!(answer, "\"\"", "a workflow that never ran has no phase");

    // An endpoint trusting another key refuses Restate: nothing is registered.
    let (status, body) = register(&http, ports, &distrusting.url()).await?;
    assert!(
        status >= 400 && body.contains("401"),
        "registration of an endpoint that does not trust Restate's key: {status} {body}"
    );

    // A request that is not Restate's (no signature) is refused by the endpoint itself.
    let direct = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(10))
        .build()?;
    let r = direct
        .get(format!("{}/discover", trusting.url()))
        .header("accept", "application/vnd.restate.endpointmanifest.v3+json")
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 401, "an unsigned request");

    for w in [&trusting, &distrusting] {
        let log = std::fs::read_to_string(&w.service.spec.log)?;
        assert!(
            !log.contains("panicked"),
            "a workflows process panicked:\n{log}"
        );
    }
    Ok(())
}
