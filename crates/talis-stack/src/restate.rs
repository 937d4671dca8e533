//! Starting `restate-server` (pinned in the root `package.json`, installed by `npm ci`) as a
//! supervised process with its data under a project-local state dir and every port on loopback,
//! and registering the workflows deployment with its admin API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::process::{Ready, Service, Spec};
use crate::{free_port, ports, workspace_root};

/// The ports a Restate node listens on (all bound to 127.0.0.1).
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub ingress: u16,
    pub admin: u16,
    pub node: u16,
}

impl Ports {
    /// Free ephemeral ports, so parallel test runs never collide with each other or a local stack.
    pub fn free() -> Self {
        Self {
            ingress: free_port(),
            admin: free_port(),
            node: free_port(),
        }
    }

    /// The defaults of the local stack (`cargo xtask up`).
    pub fn local_defaults() -> Self {
        Self {
            ingress: ports::RESTATE_INGRESS,
            admin: ports::RESTATE_ADMIN,
            node: ports::RESTATE_NODE,
        }
    }

    /// Node `i` (0-based) of `cargo xtask up --cluster`: the balanced ports' replicas
    /// ([`ports::replica`]); the node port has no balancer.
    pub fn cluster_node(i: u16) -> Self {
        Self {
            ingress: ports::replica(ports::RESTATE_INGRESS, i),
            admin: ports::replica(ports::RESTATE_ADMIN, i),
            node: ports::replica(ports::RESTATE_NODE, i),
        }
    }

    /// The node-to-node address other nodes reach this one at.
    pub fn node_address(&self) -> String {
        format!("http://127.0.0.1:{}/", self.node)
    }
}

/// Partitions of the stack's Restate (`RESTATE_DEFAULT_NUM_PARTITIONS`): few, for 2 cores.
pub const PARTITIONS: u16 = 4;

/// A running restate-server.
#[derive(Debug)]
pub struct Restate {
    pub service: Service,
    pub ports: Ports,
}

/// The npm-installed `restate-server` binary (`RESTATE_SERVER_BIN` overrides it).
pub fn server_bin() -> PathBuf {
    npm_bin("RESTATE_SERVER_BIN", "restate-server")
}

/// The npm-installed `restate` CLI (`RESTATE_CLI_BIN` overrides it).
pub fn cli_bin() -> PathBuf {
    npm_bin("RESTATE_CLI_BIN", "restate")
}

fn npm_bin(env: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "x64",
    };
    workspace_root().join(format!(
        "node_modules/@restatedev/{name}-{}-{arch}/bin/{name}",
        std::env::consts::OS
    ))
}

impl Restate {
    /// Starts restate-server with its data in `state_dir` (kept across restarts, so a restarted
    /// server resumes its journals) and its log in `log_dir/restate.log`.
    pub async fn start(state_dir: &Path, log_dir: &Path, ports: Ports) -> Result<Self> {
        let spec = node_spec("restate", state_dir, log_dir, ports)?
            .env("RESTATE_NODE_NAME", "talis-local")
            .env("RESTATE_ROCKSDB_TOTAL_MEMORY_SIZE", "512 MiB")
            .ready(Ready::Http(format!(
                "http://127.0.0.1:{}/health",
                ports.admin
            )));
        let service = Service::start(spec).await?;
        let r = Self { service, ports };
        r.wait_ingress().await?;
        Ok(r)
    }

    pub fn ingress_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.ingress)
    }

    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.admin)
    }

    /// The Restate web UI (served by the admin port).
    pub fn ui_url(&self) -> String {
        format!("{}/ui/", self.admin_url())
    }

    /// Restarts after a stop or kill -9, with the same state dir and ports.
    pub async fn restart(&mut self) -> Result<()> {
        self.service.restart().await?;
        self.wait_ingress().await
    }

    /// The admin health check passes before the ingress accepts requests; wait for both.
    async fn wait_ingress(&self) -> Result<()> {
        let http = reqwest::Client::new();
        let url = format!("{}/restate/health", self.ingress_url());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "restate ingress not ready at {url}; last log lines:\n{}",
                    self.service.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Registers (or force-updates) a service deployment, e.g. the workflows endpoint.
    pub async fn register(&self, deployment_url: &str) -> Result<()> {
        register(&self.admin_url(), deployment_url).await
    }
}

/// What every Restate node of the stack shares: the binary, its data in `state_dir` (kept
/// across restarts, so a restarted node resumes its journals), every port on loopback, a small
/// footprint (few partitions) and no phoning home.
pub fn node_spec(name: &str, state_dir: &Path, log_dir: &Path, ports: Ports) -> Result<Spec> {
    let bin = server_bin();
    if !bin.exists() {
        bail!(
            "restate-server not found at {} — run `npm ci` in the workspace root",
            bin.display()
        );
    }
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    Ok(Spec::new(name, bin, log_dir)
        .arg("--no-logo")
        .env("RESTATE_BASE_DIR", state_dir.display().to_string())
        .env("RESTATE_LISTEN_MODE", "tcp")
        .env(
            "RESTATE_INGRESS__BIND_ADDRESS",
            format!("127.0.0.1:{}", ports.ingress),
        )
        .env(
            "RESTATE_ADMIN__BIND_ADDRESS",
            format!("127.0.0.1:{}", ports.admin),
        )
        .env("RESTATE_BIND_ADDRESS", format!("127.0.0.1:{}", ports.node))
        .env("RESTATE_ADVERTISED_ADDRESS", ports.node_address())
        .env("RESTATE_DEFAULT_NUM_PARTITIONS", PARTITIONS.to_string())
        .env("RESTATE_DISABLE_TELEMETRY", "true")
        .env("RESTATE_LOG_DISABLE_ANSI_CODES", "true")
        .cwd(state_dir)
        .ready_timeout(Duration::from_secs(60)))
}

/// `POST {admin}/deployments` with `force` so changed handler signatures replace the old ones.
/// Retries briefly: right after start the admin may not yet reach the new deployment.
pub async fn register(admin_url: &str, deployment_url: &str) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let body = format!(r#"{{"uri":"{deployment_url}","force":true}}"#);
    let mut last = String::new();
    for _ in 0..50 {
        match http
            .post(format!("{admin_url}/deployments"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("registering {deployment_url} with Restate at {admin_url} failed: {last}")
}

/// Runs SQL over Restate's introspection tables (`POST {admin}/query`, e.g.
/// `SELECT id, status FROM sys_invocation`); returns the rows. In a cluster a query reads the
/// partitions on other nodes, and fails while one of them fails over ("No such scanner"): a
/// failed query is retried, [`QUERY_ATTEMPTS`] times in all.
pub async fn query(admin_url: &str, sql: &str) -> Result<Vec<serde_json::Value>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut last = String::new();
    for attempt in 1..=QUERY_ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let r = match http
            .post(format!("{admin_url}/query"))
            .header("accept", "application/json")
            .json(&serde_json::json!({ "query": sql }))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        let status = r.status();
        let body: serde_json::Value = match r.json().await {
            Ok(b) => b,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        if status.is_success() {
            return Ok(body["rows"].as_array().cloned().unwrap_or_default());
        }
        last = format!("{status}: {body}");
        if status.is_client_error() {
            break;
        }
    }
    bail!("Restate query failed ({last}): {sql}")
}

/// Attempts of one [`query`].
pub const QUERY_ATTEMPTS: u32 = 10;

/// The partition a partition key falls into when the key space (`u64`) is cut into
/// `partitions` equal ranges, as Restate does for the partitions it provisions.
pub fn partition_of(partition_key: u64, partitions: u16) -> u16 {
    ((u128::from(partition_key) * u128::from(partitions)) >> 64) as u16
}
