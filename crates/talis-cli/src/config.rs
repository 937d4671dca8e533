//! Where the CLI finds the API and its key: flag, then environment (both via clap), then the
//! config file, then the local default. The key never comes from a default.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The API URL of a local stack (`cargo xtask up`).
pub fn default_api_url() -> String {
    format!("http://127.0.0.1:{}", talis_stack::ports::API)
}

/// The config file: `{"api_url": ..., "api_key": ...}` as TOML.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub api_url: Option<String>,
    pub api_key: Option<String>,
}

/// `$TALIS_CONFIG`, else `$XDG_CONFIG_HOME/talis/config.toml`, else `~/.config/talis/config.toml`.
pub fn default_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TALIS_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("talis/config.toml"))
}

impl FileConfig {
    /// Reads the file; a missing file is an empty config, a malformed one an error naming it.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading config file {}", path.display())),
        }
    }

    /// Writes the file readable by its owner only (it holds an API key).
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = toml::to_string(self)?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        use std::io::Write;
        let mut f = opts
            .open(path)
            .with_context(|| format!("writing {}", path.display()))?;
        f.write_all(text.as_bytes())?;
        Ok(())
    }
}

/// The settings a command runs with, after every source was consulted.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub api_url: String,
    pub api_key: Option<String>,
}

/// `flag_or_env` values come from clap (a flag wins over its env var).
pub fn resolve(
    url_flag_or_env: Option<String>,
    key_flag_or_env: Option<String>,
    file: &FileConfig,
) -> Resolved {
    let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    Resolved {
        api_url: nonempty(url_flag_or_env)
            .or_else(|| nonempty(file.api_url.clone()))
            .unwrap_or_else(default_api_url),
        api_key: nonempty(key_flag_or_env).or_else(|| nonempty(file.api_key.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_is_flag_env_then_file_then_default() {
        let file = FileConfig {
            api_url: Some("http://file:1".into()),
            api_key: Some("file-key".into()),
        };
        let cases = [
            (Some("http://flag:1"), Some("k"), "http://flag:1", Some("k")),
            (None, None, "http://file:1", Some("file-key")),
            (Some(""), Some(" "), "http://file:1", Some("file-key")),
        ];
        for (url, key, want_url, want_key) in cases {
            let r = resolve(url.map(Into::into), key.map(Into::into), &file);
            assert_eq!(r.api_url, want_url);
            assert_eq!(r.api_key.as_deref(), want_key);
        }
        let r = resolve(None, None, &FileConfig::default());
        assert_eq!(r.api_url, default_api_url());
        assert_eq!(r.api_key, None);
    }

    #[test]
    fn file_round_trips_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/config.toml");
        assert_eq!(FileConfig::load(&p).unwrap(), FileConfig::default());
        let c = FileConfig {
            api_url: Some("http://x:1".into()),
            api_key: Some("secret".into()),
        };
        c.save(&p).unwrap();
        assert_eq!(FileConfig::load(&p).unwrap(), c);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        std::fs::write(&p, "api_ur = \"typo\"\n").unwrap();
        let err = format!("{:#}", FileConfig::load(&p).unwrap_err());
        assert!(err.contains("api_ur"), "{err}");
    }
}
