//! The highly available stack (`cargo xtask up --cluster` and the cluster crash test): a
//! 3-node Restate cluster (replicated log and partitions, replication 2), two `talis-workflows`
//! replicas behind the one URL registered with Restate, two `talis-host` replicas serving the
//! API over one SQLite file (WAL), and the fake cloud. Every process is [`Supervised`]
//! (restarted when it dies) and every replicated service sits behind a [`Balancer`], as a
//! Kubernetes `Service` would put it:
//!
//! ```text
//!  clients, phone-homes ──► api LB ──► talis-host 1 │ talis-host 2 ──► one SQLite file (WAL)
//!                                          │ trigger
//!                                          ▼
//!                          ingress LB ──► restate n1 │ n2 │ n3   (admin LB for the UI/API)
//!                                          │ invoke (h2c)
//!                                          ▼
//!                          workflows LB ──► talis-workflows 1 │ 2 ──► api LB (internal RPC)
//! ```
//!
//! Restate keeps one deployment per registered URL and has no list of endpoints for one
//! deployment: its documentation asks for a load balancer in front of the replicas, which is
//! what the workflows balancer is (Restate's HTTP/2 connections are spread per connection).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::balancer::Balancer;
use crate::process::{Ready, Service};
use crate::restate::{self, PARTITIONS, Ports};
use crate::supervisor::{Event, Policy, Supervised};
use crate::{free_port, ports};

/// Where the workflows create machines.
#[derive(Clone, Debug)]
pub enum Provider {
    /// Starts the fake cloud (supervised too) with this config (TOML text; `None`: its
    /// defaults) and its state snapshot under the stack's directory.
    Fake { config: Option<String> },
    /// An existing DigitalOcean API (the real one).
    External { url: String, token: String },
}

/// What to start and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// Restate nodes (3): every node runs every role (metadata, log server, worker, admin,
    /// ingress).
    pub restate_nodes: u16,
    /// Copies of each log record and partition (`RESTATE_DEFAULT_REPLICATION`, 2): with 3
    /// nodes the cluster keeps working when one dies.
    pub replication: u16,
    /// talis-workflows replicas (2).
    pub workflows: u16,
    /// talis-host replicas (2), all on the same database file.
    pub hosts: u16,
    /// The fixed ports of `cargo xtask up --cluster` ([`ports`], replicas on
    /// [`ports::replica`]); free ports otherwise (tests).
    pub fixed_ports: bool,
    pub provider: Provider,
    pub admin_api_key: String,
    pub internal_secret: String,
    /// The Spin variable `deployment_id`, shared by the replicas of this one deployment.
    pub deployment_id: String,
    /// URL machines phone home to; the API balancer's URL when `None`.
    pub public_url: Option<String>,
    /// Extra environment of every workflows replica (e.g. `TALIS_CHUNK_SIZE`).
    pub workflows_env: Vec<(String, String)>,
    /// Where the binaries are; next to the running executable when `None`.
    pub bin_dir: Option<PathBuf>,
    /// Restarts allowed per process (`None`: unlimited).
    pub max_restarts: Option<u32>,
    /// Hears about exits and restarts.
    pub events: Option<mpsc::UnboundedSender<Event>>,
}

impl Options {
    /// 3 Restate nodes (replication 2), 2 workflows and 2 API replicas on free ports and the
    /// fake cloud.
    pub fn new(admin_api_key: &str, internal_secret: &str, deployment_id: &str) -> Self {
        Self {
            restate_nodes: 3,
            replication: 2,
            workflows: 2,
            hosts: 2,
            fixed_ports: false,
            provider: Provider::Fake { config: None },
            admin_api_key: admin_api_key.into(),
            internal_secret: internal_secret.into(),
            deployment_id: deployment_id.into(),
            public_url: None,
            workflows_env: Vec::new(),
            bin_dir: None,
            max_restarts: None,
            events: None,
        }
    }
}

/// The running cluster stack. Dropping it kills every process.
#[derive(Debug)]
pub struct Cluster {
    pub dir: PathBuf,
    pub fake: Option<Supervised>,
    /// The provider the workflows use (the fake cloud's URL when it runs).
    pub provider_url: String,
    pub restate: Vec<Supervised>,
    pub restate_ports: Vec<Ports>,
    pub workflows: Vec<Supervised>,
    pub hosts: Vec<Supervised>,
    /// In front of the Restate nodes' ingress: the API's `restate_ingress_url`.
    pub ingress: Balancer,
    /// In front of the Restate nodes' admin API (and UI).
    pub admin: Balancer,
    /// In front of the workflows replicas: the one deployment URL registered with Restate.
    pub workflows_lb: Balancer,
    /// In front of the API replicas: clients, phone-homes and the workflows' internal RPC.
    pub api: Balancer,
    pub admin_api_key: String,
}

/// The listen address of a balancer: the fixed port, or a free one.
fn listen(fixed: bool, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], if fixed { port } else { 0 }))
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Cluster {
    /// Every port the stack with fixed ports listens on, named (to check they are free).
    pub fn fixed_ports(opts: &Options) -> Vec<(String, u16)> {
        let mut out = vec![
            ("API balancer".to_string(), ports::API),
            ("workflows balancer".into(), ports::WORKFLOWS),
            ("Restate ingress balancer".into(), ports::RESTATE_INGRESS),
            ("Restate admin balancer".into(), ports::RESTATE_ADMIN),
        ];
        if matches!(opts.provider, Provider::Fake { .. }) {
            out.push(("fake cloud".into(), ports::FAKECLOUD));
        }
        for i in 0..opts.restate_nodes {
            let p = Ports::cluster_node(i);
            let n = i + 1;
            out.push((format!("Restate n{n} ingress"), p.ingress));
            out.push((format!("Restate n{n} admin"), p.admin));
            out.push((format!("Restate n{n} node"), p.node));
        }
        for i in 0..opts.hosts {
            out.push((
                format!("talis-host {}", i + 1),
                ports::replica(ports::API, i),
            ));
        }
        for i in 0..opts.workflows {
            out.push((format!("workflows {}", i + 1), ports::workflows_replica(i)));
        }
        out
    }

    /// Starts everything under `dir` (state and `logs/`), registers the workflows and waits
    /// until every Restate node knows them.
    pub async fn start(dir: &Path, opts: Options) -> Result<Self> {
        anyhow::ensure!(
            opts.restate_nodes >= opts.replication && opts.replication >= 1,
            "{} Restate nodes cannot hold {} copies",
            opts.restate_nodes,
            opts.replication
        );
        anyhow::ensure!(opts.workflows >= 1 && opts.hosts >= 1, "no replicas");
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let fixed = opts.fixed_ports;
        let policy = Policy {
            max_restarts: opts.max_restarts,
        };
        let supervise = |s: Service| Supervised::watch(s, policy, opts.events.clone());
        let binary = |name: &str| match &opts.bin_dir {
            Some(d) => d.join(name),
            None => crate::bin(name),
        };

        // Balancers first: their addresses are what the processes are configured with, and a
        // balancer simply closes connections while its backends are not up yet. Their ports
        // are bound before any backend port is picked, so none can be picked twice.
        let bind = |port: u16| tokio::net::TcpListener::bind(listen(fixed, port));
        let (ingress_l, admin_l, workflows_l, api_l) = (
            bind(ports::RESTATE_INGRESS).await,
            bind(ports::RESTATE_ADMIN).await,
            bind(ports::WORKFLOWS).await,
            bind(ports::API).await,
        );
        // A replica's port: the fixed one, or a free one (`free_port` never hands one out twice).
        let pick = |fixed_port: u16| if fixed { fixed_port } else { free_port() };
        let restate_ports: Vec<Ports> = (0..opts.restate_nodes)
            .map(|i| {
                if fixed {
                    Ports::cluster_node(i)
                } else {
                    Ports {
                        ingress: pick(0),
                        admin: pick(0),
                        node: pick(0),
                    }
                }
            })
            .collect();
        let host_ports: Vec<u16> = (0..opts.hosts)
            .map(|i| pick(ports::replica(ports::API, i)))
            .collect();
        let workflow_ports: Vec<u16> = (0..opts.workflows)
            .map(|i| pick(ports::workflows_replica(i)))
            .collect();
        let ingress = Balancer::serve(
            "restate-ingress",
            ingress_l.context("binding the Restate ingress balancer")?,
            restate_ports.iter().map(|p| loopback(p.ingress)).collect(),
        )?;
        let admin = Balancer::serve(
            "restate-admin",
            admin_l.context("binding the Restate admin balancer")?,
            restate_ports.iter().map(|p| loopback(p.admin)).collect(),
        )?;
        let workflows_lb = Balancer::serve(
            "workflows",
            workflows_l.context("binding the workflows balancer")?,
            workflow_ports.iter().map(|p| loopback(*p)).collect(),
        )?;
        let api = Balancer::serve(
            "api",
            api_l.context("binding the API balancer")?,
            host_ports.iter().map(|p| loopback(*p)).collect(),
        )?;

        let (fake, provider_url, provider_token) = match &opts.provider {
            Provider::Fake { config } => {
                let config_file = match config {
                    Some(text) => {
                        let f = dir.join("fakecloud.toml");
                        std::fs::write(&f, text)?;
                        Some(f)
                    }
                    None => None,
                };
                let (mut spec, url) = crate::fakecloud::spec(
                    &crate::fakecloud::Options {
                        port: Some(pick(ports::FAKECLOUD)),
                        config: config_file,
                        snapshot: Some(dir.join("fakecloud.json")),
                    },
                    &logs,
                );
                spec.program = binary("fakecloud");
                let fake = supervise(Service::start(spec).await?);
                (Some(fake), url, "fake-cloud-token".to_string())
            }
            Provider::External { url, token } => (None, url.clone(), token.clone()),
        };

        let restate = start_restate(dir, &logs, &restate_ports, opts.replication).await?;
        let restate: Vec<Supervised> = restate.into_iter().map(supervise).collect();
        wait_members(&restate_ports[0], opts.restate_nodes).await?;

        let public_url = opts.public_url.clone().unwrap_or_else(|| api.url());
        let mut hosts = Vec::new();
        for (i, port) in host_ports.iter().enumerate() {
            let mut h =
                crate::host::HostOptions::new(crate::workspace_root().join("spin.toml"), "/health")
                    .variable("admin_api_key", &opts.admin_api_key)
                    .variable("internal_secret", &opts.internal_secret)
                    .variable("restate_ingress_url", ingress.url())
                    .variable("public_url", &public_url)
                    .variable("restate_ui_url", admin.url())
                    .variable("deployment_id", &opts.deployment_id);
            h.name = format!("talis-host-{}", i + 1);
            // One state dir, so one database file (`sqlite_db.db`, WAL) and one compile cache.
            h.state_dir = Some(dir.join("spin"));
            h.binary = Some(binary("talis-host"));
            h.env = vec![("RUST_LOG".into(), "warn".into())];
            // One after the other: the second finds the first one's compiled component.
            hosts.push(supervise(
                Service::start(crate::host::spec(&h, *port, &logs)).await?,
            ));
        }

        let mut workflows = Vec::new();
        for (i, port) in workflow_ports.iter().enumerate() {
            let mut w = crate::workflows::Options::new(
                &api.url(),
                &opts.internal_secret,
                &provider_url,
                &provider_token,
            );
            w.port = *port;
            w.env = opts.workflows_env.clone();
            w.binary = Some(binary("talis-workflows"));
            let mut spec = crate::workflows::spec(&w, &logs);
            spec.name = format!("workflows-{}", i + 1);
            spec.log = logs.join(format!("{}.log", spec.name));
            workflows.push(supervise(Service::start(spec).await?));
        }

        let cluster = Self {
            dir: dir.to_path_buf(),
            fake,
            provider_url,
            restate,
            restate_ports,
            workflows,
            hosts,
            ingress,
            admin,
            workflows_lb,
            api,
            admin_api_key: opts.admin_api_key.clone(),
        };
        restate::register(&cluster.admin_url(), &cluster.workflows_url()).await?;
        cluster.wait_services_known().await?;
        Ok(cluster)
    }

    /// The API (its balancer).
    pub fn api_url(&self) -> String {
        self.api.url()
    }

    /// Restate's admin API and UI (`/ui/`) through its balancer.
    pub fn admin_url(&self) -> String {
        self.admin.url()
    }

    pub fn ingress_url(&self) -> String {
        self.ingress.url()
    }

    /// The deployment URL registered with Restate.
    pub fn workflows_url(&self) -> String {
        self.workflows_lb.url()
    }

    /// Every supervised process, in start order.
    pub fn services(&self) -> impl Iterator<Item = &Supervised> {
        self.fake
            .iter()
            .chain(&self.restate)
            .chain(&self.hosts)
            .chain(&self.workflows)
    }

    /// Stops every process gracefully, the last started first.
    pub async fn stop(&self) {
        let all: Vec<&Supervised> = self.services().collect();
        for s in all.into_iter().rev() {
            let _ = s.stop(Duration::from_secs(10)).await;
        }
    }

    /// SQL over Restate's introspection tables (through the admin balancer).
    pub async fn query(&self, sql: &str) -> Result<Vec<Value>> {
        restate::query(&self.admin_url(), sql).await
    }

    /// `GET /_fake/stats` of the fake cloud.
    pub async fn fake_stats(&self) -> Result<Value> {
        anyhow::ensure!(self.fake.is_some(), "no fake cloud in this stack");
        Ok(reqwest::get(format!("{}/_fake/stats", self.provider_url))
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Which node (index into `restate`) leads each partition, with the leader's epoch, as the
    /// nodes' logs last said ("became Leader of epoch eN"): the highest epoch of a partition is
    /// its current leader. The npm package has no `restatectl`, and the admin API does not
    /// show partition leadership, so the logs (JSON lines) are where it can be read.
    pub fn partition_leaders(&self) -> BTreeMap<u16, (usize, u64)> {
        let mut out: BTreeMap<u16, (usize, u64)> = BTreeMap::new();
        for (node, s) in self.restate.iter().enumerate() {
            let text = std::fs::read_to_string(s.log_path()).unwrap_or_default();
            for (partition, epoch) in leaderships(&text) {
                if out.get(&partition).is_none_or(|(_, e)| epoch > *e) {
                    out.insert(partition, (node, epoch));
                }
            }
        }
        out
    }

    /// Waits until every Restate node's admin lists the workflows' services, so any node's
    /// ingress routes a trigger.
    async fn wait_services_known(&self) -> Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        for p in &self.restate_ports {
            for service in ["TaskWorkflow", "TaskChunk"] {
                let url = format!("http://127.0.0.1:{}/services/{service}", p.admin);
                loop {
                    if http
                        .get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                    {
                        break;
                    }
                    if Instant::now() > deadline {
                        bail!("{url} still unknown after registering the workflows");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Ok(())
    }
}

/// `(partition, epoch)` of every "became Leader" line of a node's JSON log.
fn leaderships(log: &str) -> Vec<(u16, u64)> {
    log.lines()
        .filter(|l| l.contains("became Leader"))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let message = v["fields"]["message"].as_str()?;
            let epoch = message
                .split("of epoch e")
                .nth(1)?
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()?;
            let partition = v["fields"]["partition_id"]
                .as_str()
                .and_then(|p| p.parse().ok())
                .or_else(|| v["fields"]["partition_id"].as_u64().map(|p| p as u16))?;
            Some((partition, epoch))
        })
        .collect()
}

/// Starts the nodes together (the provisioning node waits for the others' log servers and
/// they wait for it); ready when each node's ingress answers.
async fn start_restate(
    dir: &Path,
    logs: &Path,
    nodes: &[Ports],
    replication: u16,
) -> Result<Vec<Service>> {
    let addresses =
        serde_json::to_string(&nodes.iter().map(Ports::node_address).collect::<Vec<_>>())?;
    let mut starting = Vec::new();
    for (i, p) in nodes.iter().enumerate() {
        let n = i + 1;
        let spec = restate::node_spec(
            &format!("restate-n{n}"),
            &dir.join(format!("restate-n{n}")),
            logs,
            *p,
        )?
        .env("RESTATE_CLUSTER_NAME", "talis")
        .env("RESTATE_NODE_NAME", format!("n{n}"))
        .env("RESTATE_FORCE_NODE_ID", n.to_string())
        .env("RESTATE_METADATA_CLIENT__ADDRESSES", &addresses)
        // Exactly one node provisions the cluster; the others join it.
        .env("RESTATE_AUTO_PROVISION", (i == 0).to_string())
        .env("RESTATE_DEFAULT_REPLICATION", replication.to_string())
        .env("RESTATE_BIFROST__DEFAULT_PROVIDER", "replicated")
        .env("RESTATE_ROCKSDB_TOTAL_MEMORY_SIZE", "256 MiB")
        // One JSON object per line: partition leadership is read from it (`partition_leaders`).
        .env("RESTATE_LOG_FORMAT", "json")
        .ready(Ready::Http(format!(
            "http://127.0.0.1:{}/restate/health",
            p.ingress
        )));
        starting.push(tokio::spawn(Service::start(spec)));
    }
    let mut out = Vec::new();
    for s in starting {
        out.push(s.await.context("starting a Restate node")??);
    }
    Ok(out)
}

/// Waits until the metadata cluster has every node as a member.
async fn wait_members(first: &Ports, nodes: u16) -> Result<()> {
    let url = format!("http://127.0.0.1:{}/cluster-health", first.admin);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Value::Null;
    loop {
        if let Ok(r) = http.get(&url).send().await
            && let Ok(v) = r.json::<Value>().await
        {
            if v["metadata_cluster_health"]["members"]
                .as_array()
                .is_some_and(|m| m.len() == usize::from(nodes))
            {
                return Ok(());
            }
            last = v;
        }
        if Instant::now() > deadline {
            bail!("Restate cluster has not {nodes} members after 60 s: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The partition of a Restate partition key in this stack's clusters.
pub fn partition_of(partition_key: u64) -> u16 {
    restate::partition_of(partition_key, PARTITIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaderships_are_read_from_json_log_lines() {
        let log = r#"{"timestamp":"t","level":"INFO","fields":{"message":"Processor became Leader of epoch e2. Spent 43ms as BecomingLeader","partition_id":"0"},"target":"x"}
{"timestamp":"t","level":"INFO","fields":{"message":"Processor transitioned into BecomingLeader.","partition_id":"1"}}
not json
{"timestamp":"t","level":"INFO","fields":{"message":"Processor became Leader of epoch e13","partition_id":"3"}}"#;
        assert_eq!(leaderships(log), [(0, 2), (3, 13)]);
    }

    #[test]
    fn partition_keys_map_to_equal_ranges() {
        assert_eq!(restate::partition_of(0, 4), 0);
        assert_eq!(restate::partition_of((1 << 62) - 1, 4), 0);
        assert_eq!(restate::partition_of(1 << 62, 4), 1);
        assert_eq!(restate::partition_of(u64::MAX, 4), 3);
        assert_eq!(restate::partition_of(u64::MAX, 24), 23);
    }
}
