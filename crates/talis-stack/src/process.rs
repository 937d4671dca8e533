//! One supervised child process: started with its output in a log file, ready when an HTTP
//! probe answers 2xx, stoppable gracefully (SIGTERM) or brutally (SIGKILL, for crash tests),
//! and restartable with the same command line. Dropping it kills the process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// How to tell that a started process is ready to serve.
#[derive(Clone, Debug)]
pub enum Ready {
    /// `GET url` answers with a 2xx status.
    Http(String),
    /// A TCP connect to this address succeeds (for servers without a health route, e.g. h2c-only).
    Tcp(std::net::SocketAddr),
    /// Nothing to wait for.
    Started,
}

/// Command line of a service, kept so the service can be restarted identically.
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    pub log: PathBuf,
    pub ready: Ready,
    pub ready_timeout: Duration,
}

impl Spec {
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>, log_dir: &Path) -> Self {
        let name = name.into();
        Self {
            log: log_dir.join(format!("{name}.log")),
            name,
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            ready: Ready::Started,
            ready_timeout: Duration::from_secs(60),
        }
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    pub fn ready(mut self, ready: Ready) -> Self {
        self.ready = ready;
        self
    }

    pub fn ready_timeout(mut self, t: Duration) -> Self {
        self.ready_timeout = t;
        self
    }
}

/// A running (or stopped) supervised process.
#[derive(Debug)]
pub struct Service {
    pub spec: Spec,
    child: Option<Child>,
}

impl Service {
    /// Spawns the process and waits until it is ready.
    pub async fn start(spec: Spec) -> Result<Self> {
        let mut s = Self { spec, child: None };
        s.restart().await?;
        Ok(s)
    }

    /// (Re)starts the process with the same command line; appends to the same log file.
    pub async fn restart(&mut self) -> Result<()> {
        if self.is_running() {
            bail!("{} is already running", self.spec.name);
        }
        let spec = &self.spec;
        if let Some(dir) = spec.log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .with_context(|| format!("opening log {}", spec.log.display()))?;
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        if let Some(cwd) = &spec.cwd {
            cmd.current_dir(cwd);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} ({})", spec.name, spec.program.display()))?;
        self.child = Some(child);
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.spec.ready_timeout;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "{} exited during start-up ({status}); last log lines:\n{}",
                    self.spec.name,
                    self.log_tail(30)
                );
            }
            let ok = match &self.spec.ready {
                Ready::Started => true,
                Ready::Http(url) => http
                    .get(url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success()),
                Ready::Tcp(addr) => tokio::net::TcpStream::connect(addr).await.is_ok(),
            };
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after {:?}; last log lines:\n{}",
                    self.spec.name,
                    self.spec.ready_timeout,
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// SIGKILL, as in a crash: no clean-up runs in the process.
    pub async fn kill9(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill().await?;
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if the process has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) -> Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = c.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        if tokio::time::timeout(grace, c.wait()).await.is_err() {
            c.kill().await?;
        }
        Ok(())
    }

    /// The last `n` lines of the service's log, for error messages.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.spec.log, n)
    }
}

/// The last `n` lines of a log file (empty when it cannot be read).
pub fn tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests on loopback), never
/// one this process handed out before: a stack asks for several before any of its processes
/// binds them, and the kernel may offer a just-released port again (a replica's metrics
/// listener once got another replica's endpoint port).
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("binding an ephemeral port on 127.0.0.1");
        if HANDED_OUT.lock().expect("port list lock").insert(port) {
            return port;
        }
    }
}

#[cfg(test)]
mod tests {
    /// The kernel offers released ports again at random: 1 000 plain `bind(0)`s repeat dozens
    /// of them, so this fails without the list of ports handed out.
    #[test]
    fn free_ports_are_never_handed_out_twice() {
        let ports: Vec<u16> = (0..1_000).map(|_| super::free_port()).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }
}
