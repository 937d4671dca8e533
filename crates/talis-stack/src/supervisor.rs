//! Restart on exit: a [`Supervised`] service is watched by a background task that restarts it
//! with the same command line (same state dir, ports and log) when it dies — crashed, or
//! killed with `kill -9` — the way systemd or a Kubernetes pod would. Used by
//! `cargo xtask up` and by the cluster stack and its crash test.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use crate::process::Service;

/// How often a supervised process is checked.
pub const POLL: Duration = Duration::from_millis(200);
/// Pause between noticing an exit and restarting: Ctrl-C reaches the children too, and the
/// interactive stack must get the chance to stop instead.
pub const RESTART_DELAY: Duration = Duration::from_millis(300);

/// What a supervisor reports.
#[derive(Clone, Debug)]
pub enum Event {
    /// The process exited on its own; a restart follows. `attempt` counts restarts of this service.
    Exited {
        name: String,
        attempt: u32,
        log_tail: String,
    },
    /// The restarted process is ready again.
    Restarted { name: String, attempt: u32 },
    /// It died more often than the limit allows (or would not start again): no more restarts.
    GaveUp {
        name: String,
        error: String,
        log_tail: String,
    },
}

/// A service under supervision. Dropping it stops the watching (the process goes with the
/// last reference to it).
#[derive(Debug)]
pub struct Supervised {
    name: String,
    log: PathBuf,
    service: Arc<Mutex<Service>>,
    restarts: Arc<AtomicU32>,
    watcher: JoinHandle<()>,
}

/// Restart limit: `None` restarts forever.
#[derive(Clone, Copy, Debug, Default)]
pub struct Policy {
    pub max_restarts: Option<u32>,
}

impl Supervised {
    /// Watches an already started service; `events` (if any) hears about exits and restarts.
    pub fn watch(
        service: Service,
        policy: Policy,
        events: Option<mpsc::UnboundedSender<Event>>,
    ) -> Self {
        let name = service.spec.name.clone();
        let log = service.spec.log.clone();
        let service = Arc::new(Mutex::new(service));
        let restarts = Arc::new(AtomicU32::new(0));
        let watcher = tokio::spawn(watch(service.clone(), restarts.clone(), policy, events));
        Self {
            name,
            log,
            service,
            restarts,
            watcher,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// How often the supervisor restarted the process.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::SeqCst)
    }

    /// The pid of the running process (waits while a restart is under way).
    pub async fn pid(&self) -> Option<u32> {
        self.service.lock().await.pid()
    }

    /// `kill -9` of the running process, as in a crash: nothing tells the supervisor, which
    /// notices the exit and restarts it. Returns the pid killed.
    pub async fn kill9(&self) -> Result<u32> {
        let Some(pid) = self.pid().await else {
            bail!("{} is not running", self.name);
        };
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL)?;
        Ok(pid)
    }

    /// Waits until the supervisor has restarted the process at least `n` times in all and it
    /// is ready; fails after `limit`.
    pub async fn wait_restarts(&self, n: u32, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while self.restarts() < n {
            if Instant::now() > deadline {
                bail!(
                    "{} restarted {} times, not {n}, within {limit:?}; last log lines:\n{}",
                    self.name,
                    self.restarts(),
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// The process's log file.
    pub fn log_path(&self) -> &std::path::Path {
        &self.log
    }

    /// The last `n` lines of the process's log.
    pub fn log_tail(&self, n: usize) -> String {
        crate::process::tail(&self.log, n)
    }

    /// Stops watching, then stops the process (SIGTERM, SIGKILL after `grace`).
    pub async fn stop(&self, grace: Duration) -> Result<()> {
        self.watcher.abort();
        self.service.lock().await.stop(grace).await
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

async fn watch(
    service: Arc<Mutex<Service>>,
    restarts: Arc<AtomicU32>,
    policy: Policy,
    events: Option<mpsc::UnboundedSender<Event>>,
) {
    let send = |e: Event| {
        if let Some(tx) = &events {
            let _ = tx.send(e);
        }
    };
    let mut attempt = 0u32;
    let mut last_error = String::new();
    loop {
        tokio::time::sleep(POLL).await;
        let mut s = service.lock().await;
        if s.is_running() {
            continue;
        }
        let name = s.spec.name.clone();
        attempt += 1;
        if policy.max_restarts.is_some_and(|max| attempt > max) {
            send(Event::GaveUp {
                error: format!("exited {attempt} times{last_error}"),
                log_tail: s.log_tail(20),
                name,
            });
            return;
        }
        send(Event::Exited {
            name: name.clone(),
            attempt,
            log_tail: s.log_tail(20),
        });
        tokio::time::sleep(RESTART_DELAY).await;
        match s.restart().await {
            Ok(()) => {
                restarts.fetch_add(1, Ordering::SeqCst);
                tracing::info!("{name} restarted ({attempt})");
                send(Event::Restarted { name, attempt });
            }
            Err(e) => {
                // Not ready in time: kill what was started; the next round tries again.
                let _ = s.kill9().await;
                tracing::warn!("restarting {name}: {e:#}");
                last_error = format!(", last restart: {e:#}");
            }
        }
    }
}
