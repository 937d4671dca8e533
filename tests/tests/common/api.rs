//! Helpers of the API end-to-end tests: the real API component on a real talis-host with its own
//! SQLite file, and small clients for the envelope, typed and REST routes.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use talis_stack::host::{self, Host, HostOptions};

pub const ADMIN_KEY: &str = "admin-key-for-tests";
pub const INTERNAL_SECRET: &str = "internal-secret-for-tests";

pub struct Api {
    pub host: Host,
    pub http: reqwest::Client,
    /// The component's SQLite file (the `default` database).
    pub db_path: PathBuf,
    _dir: tempfile::TempDir,
}

/// Which public route a call goes through.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Route {
    /// `POST /api/v1/` with `{method, params, id}`.
    Envelope,
    /// `POST /v1/<method>` with the params as body.
    Typed,
}

impl Api {
    /// Starts the host on `spin.toml` with a fresh database; `restate_ingress_url` empty.
    pub async fn start() -> Result<Self> {
        Self::start_with(&[]).await
    }

    pub async fn start_with(variables: &[(&str, &str)]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let db_path = dir.path().join("talis.db");
        // The database is per test; the compiled-component cache is shared across tests.
        let rc = dir.path().join("runtime-config.toml");
        std::fs::write(
            &rc,
            format!(
                "[sqlite_database.default]\ntype = \"spin\"\npath = {:?}\n",
                db_path.display().to_string()
            ),
        )?;
        let state = talis_stack::target_dir().join("e2e-state/api");
        std::fs::create_dir_all(&state)?;
        let mut opts = HostOptions::new(talis_stack::workspace_root().join("spin.toml"), "/health");
        opts.runtime_config = Some(rc);
        opts.state_dir = Some(state);
        opts = opts
            .variable("admin_api_key", ADMIN_KEY)
            .variable("internal_secret", INTERNAL_SECRET)
            .variable("public_url", "http://127.0.0.1:1")
            // No workflow engine unless a test brings one (the manifest's default is a local port).
            .variable("restate_ingress_url", "");
        for (k, v) in variables {
            opts = opts.variable(*k, *v);
        }
        let host = host::start(&opts, dir.path())
            .await
            .context("starting talis-host with the API component")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            host,
            http,
            db_path,
            _dir: dir,
        })
    }

    pub fn url(&self, path: &str) -> String {
        self.host.url(path)
    }

    /// Any request; returns (status, JSON body or the raw text as a JSON string).
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Value)> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// A public method through `route`; returns (HTTP status, envelope).
    pub async fn call(
        &self,
        route: Route,
        key: &str,
        method: &str,
        params: Value,
    ) -> Result<(u16, Value)> {
        let (path, body) = match route {
            Route::Envelope => (
                "/api/v1/".to_owned(),
                json!({ "method": method, "params": params, "id": "t" }),
            ),
            Route::Typed => (format!("/v1/{method}"), params),
        };
        let (status, env) = self
            .raw(
                reqwest::Method::POST,
                &path,
                Some(key),
                Some(body.to_string().into_bytes()),
            )
            .await?;
        // The envelope's invariants hold on every answer.
        assert_eq!(env["success"], json!(status == 200), "{method}: {env}");
        if status != 200 {
            assert_eq!(env["error"]["code"], json!(status), "{method}: {env}");
        }
        if route == Route::Envelope {
            assert_eq!(env["id"], "t", "{method}: {env}");
        }
        Ok((status, env))
    }

    /// A call that must succeed; returns its `data`.
    pub async fn ok(&self, route: Route, key: &str, method: &str, params: Value) -> Result<Value> {
        let (status, env) = self.call(route, key, method, params).await?;
        anyhow::ensure!(status == 200, "{method} answered {status}: {env}");
        Ok(env.get("data").cloned().unwrap_or(Value::Null))
    }

    /// A call that must fail with `status`; returns the envelope's `error`.
    pub async fn fails(
        &self,
        route: Route,
        key: &str,
        method: &str,
        params: Value,
        status: u16,
    ) -> Result<Value> {
        let (got, env) = self.call(route, key, method, params).await?;
        anyhow::ensure!(
            got == status,
            "{method}: expected {status}, got {got}: {env}"
        );
        Ok(env["error"].clone())
    }

    /// A new user; returns (id, API key).
    pub async fn user(&self, name: &str) -> Result<(i64, String)> {
        let d = self
            .ok(
                Route::Envelope,
                ADMIN_KEY,
                "user.create",
                json!({ "username": name }),
            )
            .await?;
        Ok((
            d["id"].as_i64().context("id")?,
            d["api_key"].as_str().context("api_key")?.to_owned(),
        ))
    }

    /// An internal method with the internal secret.
    pub async fn internal(&self, method: &str, params: Value) -> Result<(u16, Value)> {
        self.raw(
            reqwest::Method::POST,
            &format!("/internal/v1/{method}"),
            Some(INTERNAL_SECRET),
            Some(params.to_string().into_bytes()),
        )
        .await
    }

    /// Reads the component's database file directly (what was really committed).
    pub fn count(&self, table: &str) -> Result<i64> {
        let db = rusqlite::Connection::open(&self.db_path)?;
        Ok(db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?)
    }
}

/// A valid instance request of `n` machines.
pub fn instances(n: u64) -> Value {
    json!({ "provider": "do", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-22-04-x64",
            "number_of_instances": n, "name": "node", "tags": ["e2e"],
            "volumes": [{ "name": "data", "size_gb": 10, "mount_point": "/mnt/data", "filesystem": "ext4" }] })
}
