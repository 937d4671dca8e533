//! What `cargo xtask up` keeps under `.talis/` so a second `up` resumes the same stack: the
//! secrets it generated and the demo owner's key. The file is readable by its owner only.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// The app's `admin_api_key` variable.
    pub admin_api_key: String,
    /// The app's `internal_secret` variable, shared with the workflows.
    pub internal_secret: String,
    /// The app's `deployment_id` variable: this stack's identity in provider tags.
    #[serde(default = "deployment_id")]
    pub deployment_id: String,
    /// The demo owner created on first start, and its API key.
    #[serde(default)]
    pub demo: Option<Demo>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Demo {
    pub username: String,
    pub user_id: i64,
    pub api_key: String,
}

/// The project-local state directory (git-ignored).
pub fn dir() -> PathBuf {
    talis_stack::workspace_root().join(".talis")
}

fn file(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// A new deployment id: `dev-` and 8 random hex digits.
pub fn deployment_id() -> String {
    format!("dev-{}", &secret()[..8])
}

/// 32 random bytes as hex, from the OS generator.
pub fn secret() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl State {
    /// The saved state, or fresh secrets when there is none.
    pub fn load_or_create(dir: &Path) -> Result<(Self, bool)> {
        let path = file(dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let s = serde_json::from_str(&text).with_context(|| {
                    format!(
                        "{} is damaged; remove it or run with --reset",
                        path.display()
                    )
                })?;
                Ok((s, true))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let s = State {
                    admin_api_key: secret(),
                    internal_secret: secret(),
                    deployment_id: deployment_id(),
                    demo: None,
                };
                s.save(dir)?;
                Ok((s, false))
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = file(dir);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        use std::io::Write;
        opts.open(&path)
            .and_then(|mut f| f.write_all(serde_json::to_string_pretty(self)?.as_bytes()))
            .with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_a_restart_and_secrets_differ() {
        let dir = tempfile::tempdir().unwrap();
        let (first, resumed) = State::load_or_create(dir.path()).unwrap();
        assert!(!resumed);
        assert_eq!(first.admin_api_key.len(), 64);
        assert_ne!(first.admin_api_key, first.internal_secret);
        let mut with_demo = first.clone();
        with_demo.demo = Some(Demo {
            username: "demo".into(),
            user_id: 2,
            api_key: "k".into(),
        });
        with_demo.save(dir.path()).unwrap();
        let (again, resumed) = State::load_or_create(dir.path()).unwrap();
        assert!(resumed);
        assert_eq!(again, with_demo);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
