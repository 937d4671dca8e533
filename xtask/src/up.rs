//! `cargo xtask up`: the whole stack locally, from a fresh clone, in one command. Installs what is
//! missing (the wasm32-wasip2 target, the npm-pinned Restate), builds, starts restate-server,
//! the fake cloud, the Spin host with the API component and the workflows on the default ports
//! (`talis_stack::ports`), registers the workflows with Restate, creates a demo owner with an
//! API key, prints where everything is, and stops it all on Ctrl-C. State lives under `.talis/`
//! so the next `up` resumes the same database, journals, fake machines and keys. A process that
//! dies is restarted (`talis_stack::supervisor`). `--cluster` runs the highly available stack
//! instead (`talis_stack::cluster`: 3 Restate nodes with replication 2, 2 workflows and 2 API
//! replicas behind local balancers), with its own state under `.talis/cluster/`.

mod state;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use talis_client::Client;
use talis_client::wire::{ApiKeyCreate, OwnerList, UserCreate, UserGet};
use talis_stack::cluster::{self, Cluster};
use talis_stack::ports;
use talis_stack::restate::{self, Restate};
use talis_stack::supervisor::{Event, Policy, Supervised};
use talis_stack::{Service, fakecloud, host, workflows};
use tokio::sync::mpsc;

use crate::build;
use state::{Demo, State};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    /// The built-in fake cloud (DigitalOcean API, fast boot, no account needed)
    Fake,
    /// The real DigitalOcean API (needs DIGITALOCEAN_TOKEN)
    Digitalocean,
}

#[derive(clap::Args)]
pub struct Args {
    /// Where machines are created
    #[arg(long, value_enum, default_value_t = Provider::Fake)]
    provider: Provider,
    /// URL machines phone home to; real machines must be able to reach it
    /// [default: the local API URL]
    #[arg(long)]
    public_url: Option<String>,
    /// Start from empty state (new secrets, empty database and journals)
    #[arg(long)]
    reset: bool,
    /// Use the binaries already built instead of building
    #[arg(long)]
    no_build: bool,
    /// Start everything, check it answers, then stop (a smoke test of `up` itself)
    #[arg(long)]
    check: bool,
    /// The highly available stack: a 3-node Restate cluster (replication 2), 2 workflows and 2
    /// API replicas (one SQLite file) behind local balancers; state in .talis/cluster/
    #[arg(long)]
    cluster: bool,
}

const DEMO_USER: &str = "demo";
const EXAMPLE: &str = "examples/create-100.json";

pub fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let provider = provider_settings(&args)?;
    if !args.no_build {
        eprintln!(
            "building the API component and the binaries (the first build takes several minutes; later ones seconds)…"
        );
        prepare_toolchain()?;
        build::npm()?;
        build::components()?;
        build::binaries(false)?;
    }
    let dir = if args.cluster {
        state::dir().join("cluster")
    } else {
        state::dir()
    };
    if args.reset && dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(up(&args, provider, &dir, started))
}

/// Where workflows send provider calls, and with which token.
struct ProviderSettings {
    fake: bool,
    url: String,
    token: String,
}

fn provider_settings(args: &Args) -> Result<ProviderSettings> {
    Ok(match args.provider {
        Provider::Fake => ProviderSettings {
            fake: true,
            url: format!("http://127.0.0.1:{}", ports::FAKECLOUD),
            token: "local-fake-token".into(),
        },
        Provider::Digitalocean => {
            let token = std::env::var("DIGITALOCEAN_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
                .context("--provider digitalocean needs DIGITALOCEAN_TOKEN in the environment")?;
            if args.public_url.is_none() {
                eprintln!(
                    "warning: real machines phone home to --public-url; without one they cannot reach \
                     127.0.0.1 and will time out in provisioning"
                );
            }
            ProviderSettings {
                fake: false,
                url: std::env::var("DIGITALOCEAN_API_URL")
                    .unwrap_or_else(|_| "https://api.digitalocean.com".into()),
                token,
            }
        }
    })
}

/// `rustup target add wasm32-wasip2` when missing; npm must exist for Restate.
fn prepare_toolchain() -> Result<()> {
    match Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    {
        Ok(out) if out.status.success() => {
            if !String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-wasip2")
            {
                eprintln!("installing the wasm32-wasip2 target");
                let mut c = Command::new("rustup");
                c.args(["target", "add", "wasm32-wasip2"]);
                build::run(c)?;
            }
        }
        _ => eprintln!("warning: rustup not found; assuming the wasm32-wasip2 target is installed"),
    }
    if Command::new("npm").arg("--version").output().is_err() {
        bail!(
            "npm is needed to install the pinned restate-server: install Node.js (with npm) and retry"
        );
    }
    Ok(())
}

/// Fails early, naming the port, when something already listens on one of ours.
fn check_ports_free(fake: bool) -> Result<()> {
    let mut wanted: Vec<(&str, u16)> = vec![
        ("API", ports::API),
        ("workflows", ports::WORKFLOWS),
        ("workflows metrics", ports::WORKFLOWS_METRICS),
        ("Restate ingress", ports::RESTATE_INGRESS),
        ("Restate admin", ports::RESTATE_ADMIN),
        ("Restate node", ports::RESTATE_NODE),
    ];
    if fake {
        wanted.push(("fake cloud", ports::FAKECLOUD));
    }
    first_taken(&wanted)
}

fn first_taken<S: AsRef<str>>(wanted: &[(S, u16)]) -> Result<()> {
    for (what, port) in wanted {
        let what = what.as_ref();
        if std::net::TcpListener::bind(("127.0.0.1", *port)).is_err() {
            bail!("port {port} ({what}) is already in use — is another `cargo xtask up` running?");
        }
    }
    Ok(())
}

/// The running processes, each restarted when it dies, stopped in reverse start order.
struct Stack {
    services: Vec<Supervised>,
    events: mpsc::UnboundedSender<Event>,
}

impl Stack {
    fn push(&mut self, s: Service) {
        self.services.push(Supervised::watch(
            s,
            Policy {
                max_restarts: Some(MAX_RESTARTS),
            },
            Some(self.events.clone()),
        ));
    }

    async fn stop(&mut self) {
        while let Some(s) = self.services.pop() {
            let _ = s.stop(Duration::from_secs(10)).await;
        }
    }
}

async fn up(args: &Args, provider: ProviderSettings, dir: &Path, started: Instant) -> Result<()> {
    if args.cluster {
        return up_cluster(args, provider, dir, started).await;
    }
    check_ports_free(provider.fake)?;
    let (mut st, resumed) = State::load_or_create(dir)?;
    let logs = dir.join("logs");
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut stack = Stack {
        services: Vec::new(),
        events: tx,
    };
    let result = start_all(args, &provider, dir, &logs, &mut st, &mut stack).await;
    let api_url = match result {
        Ok(url) => url,
        Err(e) => {
            stack.stop().await;
            return Err(e);
        }
    };
    banner(
        &api_url,
        &provider,
        &st,
        dir,
        &logs,
        resumed,
        started.elapsed(),
        None,
    );
    if args.check {
        stack.stop().await;
        eprintln!("check passed: every service answered; stopped");
        return Ok(());
    }
    let outcome = supervise(&mut events).await;
    eprintln!("stopping…");
    stack.stop().await;
    eprintln!(
        "stopped. State is kept in {}; `cargo xtask up` resumes it.",
        rel(dir).display()
    );
    outcome
}

/// `--cluster`: the same steps over `talis_stack::cluster`.
async fn up_cluster(
    args: &Args,
    provider: ProviderSettings,
    dir: &Path,
    started: Instant,
) -> Result<()> {
    let (mut st, resumed) = State::load_or_create(dir)?;
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut opts = cluster::Options::new(&st.admin_api_key, &st.internal_secret, &st.deployment_id);
    opts.fixed_ports = true;
    opts.provider = if provider.fake {
        cluster::Provider::Fake { config: None }
    } else {
        cluster::Provider::External {
            url: provider.url.clone(),
            token: provider.token.clone(),
        }
    };
    opts.public_url = args.public_url.clone();
    opts.bin_dir = Some(talis_stack::bin_dir());
    opts.max_restarts = Some(MAX_RESTARTS);
    opts.events = Some(tx);
    first_taken(&Cluster::fixed_ports(&opts))?;
    let c = Cluster::start(dir, opts).await?;
    let api_url = c.api_url();
    if let Err(e) = ensure_demo_owner(&api_url, dir, &mut st).await {
        c.stop().await;
        return Err(e);
    }
    let nodes: Vec<String> = c
        .restate_ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("n{} admin :{} ingress :{}", i + 1, p.admin, p.ingress))
        .collect();
    let layout = [
        format!(
            "  Cluster      Restate {} nodes, replication 2 ({}); admin/UI balanced on {}, ingress on {}",
            c.restate.len(),
            nodes.join(", "),
            c.admin_url(),
            c.ingress_url()
        ),
        format!(
            "               workflows: {} replicas behind {} (the one deployment registered with Restate)",
            c.workflows.len(),
            c.workflows_url()
        ),
        format!(
            "               API: {} replicas on one SQLite file behind {api_url}",
            c.hosts.len()
        ),
    ]
    .join("\n");
    let logs = dir.join("logs");
    banner(
        &api_url,
        &provider,
        &st,
        dir,
        &logs,
        resumed,
        started.elapsed(),
        Some(&layout),
    );
    if args.check {
        c.stop().await;
        eprintln!("check passed: every service answered; stopped");
        return Ok(());
    }
    let outcome = supervise(&mut events).await;
    eprintln!("stopping…");
    c.stop().await;
    eprintln!(
        "stopped. State is kept in {}; `cargo xtask up --cluster` resumes it.",
        rel(dir).display()
    );
    outcome
}

async fn start_all(
    args: &Args,
    provider: &ProviderSettings,
    dir: &Path,
    logs: &Path,
    st: &mut State,
    stack: &mut Stack,
) -> Result<String> {
    let t = Instant::now();
    let rs = Restate::start(&dir.join("restate"), logs, restate::Ports::local_defaults()).await?;
    let ingress = rs.ingress_url();
    let admin = rs.admin_url();
    stack.push(rs.service);
    eprintln!(
        "  restate-server   {admin}  ({} ms)",
        t.elapsed().as_millis()
    );

    if provider.fake {
        let t = Instant::now();
        let opts = fakecloud::Options {
            port: Some(ports::FAKECLOUD),
            config: None,
            snapshot: Some(dir.join("fakecloud.json")),
        };
        let fc = fakecloud::start(&opts, logs).await?;
        stack.push(fc.service);
        eprintln!(
            "  fakecloud        {}  ({} ms)",
            fc.base_url,
            t.elapsed().as_millis()
        );
    }

    let t = Instant::now();
    let api_url = format!("http://127.0.0.1:{}", ports::API);
    let public_url = args.public_url.clone().unwrap_or_else(|| api_url.clone());
    let mut opts =
        host::HostOptions::new(talis_stack::workspace_root().join("spin.toml"), "/health")
            .variable("admin_api_key", &st.admin_api_key)
            .variable("internal_secret", &st.internal_secret)
            .variable("restate_ingress_url", &ingress)
            .variable("public_url", &public_url)
            .variable("restate_ui_url", &admin)
            .variable("deployment_id", &st.deployment_id)
            .variable(
                "webhook_allow_hosts",
                talis_stack::workflows::LOCAL_WEBHOOK_ALLOW_HOSTS,
            );
    opts.state_dir = Some(dir.join("spin"));
    let h = Service::start(host::spec(&opts, ports::API, logs)).await?;
    stack.push(h);
    eprintln!(
        "  talis-host       {api_url}  ({} ms)",
        t.elapsed().as_millis()
    );

    let t = Instant::now();
    let mut wopts = workflows::Options::new(
        &api_url,
        &st.internal_secret,
        &provider.url,
        &provider.token,
    );
    wopts.port = ports::WORKFLOWS;
    wopts.metrics_port = ports::WORKFLOWS_METRICS;
    let wf = workflows::Workflows::start(&wopts, logs).await?;
    let wf_url = wf.url();
    stack.push(wf.service);
    restate::register(&admin, &wf_url).await?;
    eprintln!(
        "  workflows        {wf_url}  registered ({} ms)",
        t.elapsed().as_millis()
    );

    ensure_demo_owner(&api_url, dir, st).await?;
    Ok(api_url)
}

/// The demo owner and its key: reused when the saved key still works, otherwise created (or a
/// new key issued for an existing demo user, e.g. after the state file was lost).
async fn ensure_demo_owner(api_url: &str, dir: &Path, st: &mut State) -> Result<()> {
    if let Some(demo) = &st.demo {
        let client = Client::new(api_url, Some(demo.api_key.clone()))?;
        if client.project_list(&OwnerList::default()).await.is_ok() {
            return Ok(());
        }
    }
    let admin = Client::new(api_url, Some(st.admin_api_key.clone()))?;
    let existing = admin
        .user_get(&UserGet {
            username: Some(DEMO_USER.into()),
            ..UserGet::default()
        })
        .await;
    let demo = match existing {
        Ok(found) if found.user.is_some() => {
            let user = found.user.expect("checked");
            let key = admin
                .apikey_create(&ApiKeyCreate {
                    owner_id: Some(user.id),
                    name: "cargo xtask up".into(),
                })
                .await?;
            Demo {
                username: user.username,
                user_id: user.id.get(),
                api_key: key.api_key,
            }
        }
        _ => {
            let created = admin
                .user_create(&UserCreate {
                    username: DEMO_USER.into(),
                    email: "demo@example.com".into(),
                    role: 0,
                    public_ssh_key: String::new(),
                })
                .await
                .context("creating the demo owner")?;
            Demo {
                username: DEMO_USER.into(),
                user_id: created.id.get(),
                api_key: created.api_key,
            }
        }
    };
    st.demo = Some(demo);
    st.save(dir)
}

/// A path relative to the current directory when it is inside it (for copy-paste commands).
fn rel(p: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| p.strip_prefix(&cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| p.to_path_buf())
}

#[allow(clippy::too_many_arguments)]
fn banner(
    api_url: &str,
    provider: &ProviderSettings,
    st: &State,
    dir: &Path,
    logs: &Path,
    resumed: bool,
    took: Duration,
    cluster: Option<&str>,
) {
    let root = talis_stack::workspace_root();
    let talis = rel(&talis_stack::bin("talis"));
    let example = rel(&root.join(EXAMPLE));
    let key = st
        .demo
        .as_ref()
        .map(|d| d.api_key.as_str())
        .unwrap_or_default();
    // In cluster mode the admin balancer keeps the single node's port.
    let ui = format!("http://127.0.0.1:{}/ui/", ports::RESTATE_ADMIN);
    println!();
    println!(
        "Talis is up ({}, {:.1} s).",
        if resumed { "resumed" } else { "fresh state" },
        took.as_secs_f64()
    );
    println!("  API          {api_url}   (OpenAPI: {api_url}/api/v1/openapi.json)");
    println!("  Restate UI   {ui}   (task workflows: {ui}workflows)");
    if provider.fake {
        println!(
            "  Fake cloud   http://127.0.0.1:{}   (stats: /_fake/stats)",
            ports::FAKECLOUD
        );
    } else {
        println!("  Cloud        {}", provider.url);
    }
    println!(
        "  Metrics      {api_url}/metrics (host) · http://127.0.0.1:{}/metrics (workflows) · {api_url}/api/v1/metrics (fleet, admin key)",
        ports::WORKFLOWS_METRICS
    );
    if let Some(layout) = cluster {
        println!("{layout}");
    }
    println!("  Logs         {}/", rel(logs).display());
    println!(
        "  Demo owner   {DEMO_USER}; admin key in {}",
        rel(&dir.join("state.json")).display()
    );
    println!();
    println!("Deploy the 100-instance example project (paste into another terminal):");
    println!();
    println!(
        "  TALIS_API_URL={api_url} TALIS_API_KEY={key} {} project create -f {} --wait",
        talis.display(),
        example.display()
    );
    println!();
    println!(
        "or set them once for the session: export TALIS_API_URL={api_url} TALIS_API_KEY={key}"
    );
    println!(
        "Ctrl-C stops everything; `cargo xtask up{}` again resumes.",
        if cluster.is_some() { " --cluster" } else { "" }
    );
}

/// How often one service may crash and be restarted before `up` gives up.
const MAX_RESTARTS: u32 = 3;

/// Waits for Ctrl-C (or SIGTERM). A service that dies on its own is restarted with the same
/// command line by its supervisor (its state is on disk; Restate resumes the workflows); after
/// `MAX_RESTARTS` the stack stops with an error that shows the end of its log.
async fn supervise(events: &mut mpsc::UnboundedReceiver<Event>) -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            // Ctrl-C reaches the children too: stopping wins over the restart that follows.
            biased;
            _ = &mut interrupted => return Ok(()),
            _ = term.recv() => return Ok(()),
            event = events.recv() => match event {
                Some(Event::Exited { name, attempt, log_tail }) => eprintln!(
                    "warning: {name} exited unexpectedly; restarting ({attempt}/{MAX_RESTARTS}). Last log lines:\n{log_tail}"
                ),
                Some(Event::Restarted { name, .. }) => eprintln!("{name} is back"),
                Some(Event::GaveUp { name, error, log_tail }) => {
                    bail!("{name}: {error}; last log lines:\n{log_tail}")
                }
                None => return Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_named() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let free = talis_stack::free_port();
        assert!(first_taken(&[("free one", free)]).is_ok());
        let err = first_taken(&[("free one", free), ("API", port)])
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("port {port} (API)")), "{err}");
    }
}
