//! A TCP load balancer on loopback, standing in for what a Kubernetes `Service` (or any L4
//! balancer) does in front of replicas: each accepted connection goes to the next backend in
//! turn, a backend that refuses the connection (dead, restarting) is skipped, and bytes are
//! copied both ways untouched — so HTTP/1.1 and h2c (Restate ↔ workflows) pass alike.
//!
//! Hand-rolled (tokio only) because it is a few dozen lines and every maintained proxy crate
//! brings an L7 stack or a config language we would not use. Connections are balanced, not
//! requests: an HTTP/2 or keep-alive client stays on one replica until that connection closes,
//! as behind a real L4 balancer; when a replica dies its connections close and the clients'
//! next connections go to the live ones.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Longest wait for one backend to accept before the next one is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A running balancer; dropping it closes the listener and every proxied connection.
#[derive(Debug)]
pub struct Balancer {
    name: String,
    addr: SocketAddr,
    backends: Vec<SocketAddr>,
    counts: Arc<Vec<AtomicU64>>,
    task: JoinHandle<()>,
}

impl Balancer {
    /// Listens on `listen` (port 0: a free one) and spreads connections over `backends`.
    pub async fn start(
        name: impl Into<String>,
        listen: SocketAddr,
        backends: Vec<SocketAddr>,
    ) -> Result<Self> {
        let name = name.into();
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("balancer {name}: binding {listen}"))?;
        Self::serve(name, listener, backends)
    }

    /// Spreads the connections of an already bound listener over `backends` (bind first, so
    /// ports picked for the backends afterwards cannot be the balancer's).
    pub fn serve(
        name: impl Into<String>,
        listener: TcpListener,
        backends: Vec<SocketAddr>,
    ) -> Result<Self> {
        let name = name.into();
        anyhow::ensure!(!backends.is_empty(), "balancer {name} has no backends");
        let addr = listener.local_addr()?;
        let counts: Arc<Vec<AtomicU64>> =
            Arc::new(backends.iter().map(|_| AtomicU64::new(0)).collect());
        let task = tokio::spawn(accept_loop(
            name.clone(),
            listener,
            backends.clone(),
            counts.clone(),
        ));
        Ok(Self {
            name,
            addr,
            backends,
            counts,
            task,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn backends(&self) -> &[SocketAddr] {
        &self.backends
    }

    /// Connections handed to each backend so far (in `backends` order).
    pub fn connections(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    name: String,
    listener: TcpListener,
    backends: Vec<SocketAddr>,
    counts: Arc<Vec<AtomicU64>>,
) {
    let next = Arc::new(AtomicUsize::new(0));
    // Owned here, so aborting this task also closes every proxied connection.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (client, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("balancer {name}: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (name, backends, counts, next) =
                    (name.clone(), backends.clone(), counts.clone(), next.clone());
                conns.spawn(async move {
                    let first = next.fetch_add(1, Ordering::Relaxed);
                    let Some((i, server)) = connect_any(&backends, first).await else {
                        tracing::warn!("balancer {name}: no backend accepts; closing {peer}");
                        return;
                    };
                    counts[i].fetch_add(1, Ordering::Relaxed);
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    proxy(client, server).await;
                });
            }
            // Reap finished connections so the set does not grow without bound.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// The first backend, from `first` on in turn, that accepts a connection.
async fn connect_any(backends: &[SocketAddr], first: usize) -> Option<(usize, TcpStream)> {
    for k in 0..backends.len() {
        let i = (first + k) % backends.len();
        if let Ok(Ok(s)) =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backends[i])).await
        {
            return Some((i, s));
        }
    }
    None
}

async fn proxy(mut client: TcpStream, mut server: TcpStream) {
    // Ends when either side closes or resets; dropping both then closes the other side.
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A backend that answers every connection with its own name, then closes.
    async fn named_backend(name: &'static str) -> (SocketAddr, JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                s.write_all(name.as_bytes()).await.unwrap();
            }
        });
        (addr, task)
    }

    async fn ask(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn spreads_connections_and_skips_a_dead_backend() {
        let (a, task_a) = named_backend("a").await;
        let (b, _task_b) = named_backend("b").await;
        let lb = Balancer::start("t", "127.0.0.1:0".parse().unwrap(), vec![a, b])
            .await
            .unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(ask(lb.addr()).await);
        }
        seen.sort();
        assert_eq!(seen, ["a", "a", "b", "b"]);
        assert_eq!(lb.connections(), [2, 2]);
        // Backend a dies (its port now refuses): every connection goes to b.
        task_a.abort();
        let _ = task_a.await;
        for _ in 0..4 {
            assert_eq!(ask(lb.addr()).await, "b");
        }
        assert_eq!(lb.connections(), [2, 6]);
    }
}
