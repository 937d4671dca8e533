//! The snapshot: the cloud's state as a JSON file (`--snapshot`), loaded at start, written
//! atomically (temp file + rename) at most every half second while the state changes, and on
//! shutdown. Under the lock the state is only shared (a pointer per resource, see
//! `Cloud::snapshot`); it is serialized and written outside it, on a blocking thread, so a
//! large cloud does not stall requests while it is saved.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::cloud::Cloud;
use crate::fake::Fake;

/// How often a changed state is written.
const SAVE_EVERY: Duration = Duration::from_millis(500);

/// The state in `path`, or an empty cloud if there is no such file yet.
pub fn load(path: &Path) -> anyhow::Result<Cloud> {
    if !path.exists() {
        return Ok(Cloud::default());
    }
    let text = std::fs::read_to_string(path)?;
    Cloud::from_snapshot(&text).map_err(|e| anyhow::anyhow!("snapshot {}: {e}", path.display()))
}

impl Fake {
    /// Writes the snapshot file if the state changed since the last write.
    pub fn save_snapshot(&self) -> anyhow::Result<()> {
        let Some(path) = &self.snapshot else {
            return Ok(());
        };
        let _one_writer = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let state = self.lock().cloud.snapshot();
        let text = serde_json::to_string(&state)?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// Writes the snapshot every [`SAVE_EVERY`] while the state changes, until aborted.
pub fn spawn_writer(fake: Arc<Fake>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SAVE_EVERY).await;
            let f = fake.clone();
            // Serializing and writing a large state blocks: off the async workers.
            let r = tokio::task::spawn_blocking(move || f.save_snapshot()).await;
            match r {
                Ok(Err(e)) => tracing::error!(error = %e, "writing the snapshot"),
                Err(e) => tracing::error!(error = %e, "snapshot writer"),
                Ok(Ok(())) => {}
            }
        }
    })
}
