//! A DigitalOcean API v2 compatible fake cloud, for tests, benchmarks and the local stack.
//!
//! Speaks the subset Talis uses (droplets incl. multi-create and by-tag list/delete, droplet and
//! volume actions, volumes, SSH keys, tags, regions/sizes/images, account) with DigitalOcean's
//! JSON shapes, status codes, error bodies and `ratelimit-*` headers. Realism knobs live in
//! [`Config`]: boot delay and jitter, IP-assignment delay, per-token rate limits, quotas and
//! injected faults; [`Config::digitalocean`] is DigitalOcean's pace. `/_fake/` holds the
//! control routes (`health`, `stats`, `config`, `reset`).
//!
//! Phone-home: when a droplet is active with its IP and its `user_data` has a line
//! `# talis-phone-home: <URL>`, the fake POSTs `{"droplet_id","public_ip","status":"ok"}` to
//! `<URL>`, as the cloud-init script's `curl -fsS --retry` would (transient failures retried,
//! other refusals final).
//!
//! Layout: `cloud` is the state and DigitalOcean's rules without HTTP or clock (one module per
//! resource); `server` is the HTTP edge (routing, the request steps, DigitalOcean's wire
//! shapes, control routes); beside them the shared running state (`fake`), fault injection,
//! rate-limit windows, stats, phone-home and the snapshot file.

mod catalog;
mod cloud;
pub mod config;
pub mod contract;
mod error;
mod fake;
mod faults;
mod phone_home;
mod ratelimit;
mod server;
mod snapshot;
mod stats;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{Config, Fault, FaultKind, PhoneHome};
pub use fake::Fake;
pub use phone_home::{PHONE_HOME_MARKER, phone_home_url};
use tokio::net::TcpListener;

/// Serves the fake on `listener` until `shutdown` resolves, then writes the snapshot (if any).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    server::serve_until(Fake::new(config)?, listener, shutdown).await
}

/// A fake running in this process (for tests): stops when dropped.
pub struct Running {
    pub addr: SocketAddr,
    pub fake: Arc<Fake>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Running {
    /// `http://127.0.0.1:PORT`: the base URL to give a DigitalOcean client.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Starts the fake on an ephemeral loopback port in the current tokio runtime.
pub async fn spawn(config: Config) -> anyhow::Result<Running> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let fake = Fake::new(config)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let f = fake.clone();
    tokio::spawn(async move {
        if let Err(e) = server::serve_until(f, listener, async {
            let _ = rx.await;
        })
        .await
        {
            tracing::error!(error = %e, "fake cloud stopped");
        }
    });
    Ok(Running {
        addr,
        fake,
        stop: Some(tx),
    })
}
