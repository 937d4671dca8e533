//! `cargo xtask up`: the whole stack locally, from a fresh clone, in one command. Installs what is
//! missing (the wasm32-wasip2 target, the npm-pinned Restate), builds, starts restate-server,
//! the fake cloud, the Spin host with the API component and the workflows on the default ports
//! (`talis_stack::ports`), registers the workflows with Restate, creates a demo owner with an
//! API key, prints where everything is, and stops it all on Ctrl-C. State lives under `.talis/`
//! so the next `up` resumes the same database, journals, fake machines and keys.

mod state;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use talis_client::Client;
use talis_client::wire::{ApiKeyCreate, OwnerList, UserCreate, UserGet};
use talis_stack::ports;
use talis_stack::restate::{self, Restate};
use talis_stack::{Service, fakecloud, host, workflows};

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
}

const DEMO_USER: &str = "demo";
const EXAMPLE: &str = "examples/create-100.json";

pub fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let provider = provider_settings(&args)?;
    if !args.no_build {
        prepare_toolchain()?;
        build::npm()?;
        build::components()?;
        build::binaries(false)?;
    }
    let dir = state::dir();
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

fn first_taken(wanted: &[(&str, u16)]) -> Result<()> {
    for (what, port) in wanted {
        if std::net::TcpListener::bind(("127.0.0.1", *port)).is_err() {
            bail!("port {port} ({what}) is already in use — is another `cargo xtask up` running?");
        }
    }
    Ok(())
}

/// The running processes, stopped in reverse start order.
#[derive(Default)]
struct Stack {
    services: Vec<Service>,
}

impl Stack {
    fn push(&mut self, s: Service) {
        self.services.push(s);
    }

    /// The index of the first service that is no longer running.
    fn exited(&mut self) -> Option<usize> {
        self.services.iter_mut().position(|s| !s.is_running())
    }

    async fn stop(&mut self) {
        while let Some(mut s) = self.services.pop() {
            let _ = s.stop(Duration::from_secs(10)).await;
        }
    }
}

async fn up(args: &Args, provider: ProviderSettings, dir: &Path, started: Instant) -> Result<()> {
    check_ports_free(provider.fake)?;
    let (mut st, resumed) = State::load_or_create(dir)?;
    let logs = dir.join("logs");
    let mut stack = Stack::default();
    let result = start_all(args, &provider, dir, &logs, &mut st, &mut stack).await;
    let api_url = match result {
        Ok(url) => url,
        Err(e) => {
            stack.stop().await;
            return Err(e);
        }
    };
    banner(&api_url, &provider, &st, &logs, resumed, started.elapsed());
    if args.check {
        stack.stop().await;
        eprintln!("check passed: every service answered; stopped");
        return Ok(());
    }
    let outcome = supervise(&mut stack).await;
    eprintln!("stopping…");
    stack.stop().await;
    eprintln!(
        "stopped. State is kept in {}; `cargo xtask up` resumes it.",
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
            .variable("deployment_id", &st.deployment_id);
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
    wopts.public_url = Some(public_url);
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

fn banner(
    api_url: &str,
    provider: &ProviderSettings,
    st: &State,
    logs: &Path,
    resumed: bool,
    took: Duration,
) {
    let root = talis_stack::workspace_root();
    let talis = rel(&talis_stack::bin("talis"));
    let example = rel(&root.join(EXAMPLE));
    let key = st
        .demo
        .as_ref()
        .map(|d| d.api_key.as_str())
        .unwrap_or_default();
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
    println!("  Logs         {}/", rel(logs).display());
    println!(
        "  Demo owner   {DEMO_USER}; admin key in {}",
        rel(&state::dir().join("state.json")).display()
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
    println!("Ctrl-C stops everything; `cargo xtask up` again resumes.");
}

/// How often one service may crash and be restarted before `up` gives up.
const MAX_RESTARTS: u32 = 3;

/// Waits for Ctrl-C (or SIGTERM). A service that dies on its own is restarted with the same
/// command line (its state is on disk; Restate resumes the workflows); after `MAX_RESTARTS`
/// the stack stops with an error that shows the end of its log.
async fn supervise(stack: &mut Stack) -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut restarts = vec![0u32; stack.services.len()];
    loop {
        tokio::select! {
            _ = &mut interrupted => return Ok(()),
            _ = term.recv() => return Ok(()),
            _ = tick.tick() => {
                let Some(i) = stack.exited() else { continue };
                // Ctrl-C reaches the children too; give our own handler the chance to win.
                tokio::select! {
                    _ = &mut interrupted => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                }
                let dead = &mut stack.services[i];
                let (name, tail) = (dead.spec.name.clone(), dead.log_tail(20));
                restarts[i] += 1;
                if restarts[i] > MAX_RESTARTS {
                    bail!("{name} exited {MAX_RESTARTS} times; last log lines:\n{tail}");
                }
                eprintln!("warning: {name} exited unexpectedly; restarting ({}/{MAX_RESTARTS}). Last log lines:\n{tail}", restarts[i]);
                dead.restart().await.with_context(|| format!("restarting {name}"))?;
                eprintln!("{name} is back");
            }
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
