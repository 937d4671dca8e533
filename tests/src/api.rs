//! The real API component on a real talis-host with its own SQLite file, and what the API tests
//! call it with: typed clients (`talis_client`) for behaviour, raw HTTP ([`Api::send`]) for tests
//! about the wire itself, and builders of valid requests.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::Serialize;
use serde_json::{Value, json};
use talis_api::methods::Method as RpcMethod;
use talis_api::{
    ErrorKind, InstanceCreateRequest, InstanceId, InstanceRequest, OwnerId, ProjectCreate, TaskId,
};
use talis_client::{ApiError, Client, Route};
use talis_stack::host::{self, Host, HostOptions};

pub const ADMIN_KEY: &str = "admin-key-for-tests-of-32-characters";
pub const INTERNAL_SECRET: &str = "internal-secret-for-tests-of-32-characters";
/// The `public_url` the component is given: machines would phone home there. Nothing listens on
/// it; tests post the phone-home URLs to the host themselves ([`Api::phone_home`]).
pub const PUBLIC_URL: &str = "http://127.0.0.1:1";
/// One call's bound: a 10 000-instance create on a debug host takes seconds, not a minute.
const CALL_LIMIT: Duration = Duration::from_secs(60);

pub struct Api {
    pub host: Host,
    pub http: reqwest::Client,
    /// The component's SQLite file (the `default` database).
    pub db_path: PathBuf,
    /// The test's own directory (database, logs; removed with the `Api`).
    pub dir: tempfile::TempDir,
}

/// One HTTP answer as it came: status, headers and the JSON body (or its text as a JSON string).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A user made by the admin, with a client that acts as them.
pub struct User {
    pub id: OwnerId,
    pub key: String,
    pub client: Client,
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
            .variable("public_url", PUBLIC_URL)
            // No workflow engine unless a test brings one (the manifest's default is a local port).
            .variable("restate_ingress_url", "");
        for (k, v) in variables {
            opts = opts.variable(*k, *v);
        }
        let host = host::start(&opts, dir.path())
            .await
            .context("starting talis-host with the API component")?;
        let http = reqwest::Client::builder().timeout(CALL_LIMIT).build()?;
        Ok(Self {
            host,
            http,
            db_path,
            dir,
        })
    }

    pub fn url(&self, path: &str) -> String {
        self.host.url(path)
    }

    /// Any request, as sent: `body` with `content-type: application/json` when given.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Answer> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await?;
        Ok(Answer {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        })
    }

    /// [`Api::send`] reduced to (status, body).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Value)> {
        let a = self.send(method, path, key, body).await?;
        Ok((a.status, a.body))
    }

    /// A client of the public API acting with `key`, on the envelope route.
    pub fn client(&self, key: &str) -> Client {
        self.client_via(Route::Envelope, key)
    }

    /// A client of the public API acting with `key`, on `route`.
    pub fn client_via(&self, route: Route, key: &str) -> Client {
        Client::builder(&self.host.base_url)
            .api_key(key)
            .route(route)
            .timeout(CALL_LIMIT)
            .build()
            .expect("a client of a loopback URL")
    }

    pub fn admin(&self) -> Client {
        self.client(ADMIN_KEY)
    }

    /// A client of the workflows' internal RPC (`POST /internal/v1/<method>` with the internal
    /// secret), for [`Client::call`] with `talis_api::methods::internal` methods.
    pub fn internal_client(&self) -> Client {
        Client::builder(self.url("/internal"))
            .api_key(INTERNAL_SECRET)
            .route(Route::Typed)
            .timeout(CALL_LIMIT)
            .build()
            .expect("a client of a loopback URL")
    }

    /// One internal method, as the workflows call it.
    pub async fn internal<M: RpcMethod>(
        &self,
        params: &M::Params,
    ) -> talis_client::Result<M::Result> {
        self.internal_client().call::<M>(params).await
    }

    /// A new user made by the admin.
    pub async fn user(&self, name: &str) -> Result<User> {
        let made = self
            .admin()
            .user_create(&talis_api::UserCreate {
                username: name.into(),
                ..Default::default()
            })
            .await?;
        Ok(User {
            id: made.id,
            client: self.client(&made.api_key),
            key: made.api_key,
        })
    }

    /// Posts a phone-home report to a URL made for [`PUBLIC_URL`] (as the machine would).
    pub async fn phone_home(&self, url: &str, body: &Value) -> Result<Answer> {
        let path = url
            .strip_prefix(PUBLIC_URL)
            .with_context(|| format!("{url} is not under {PUBLIC_URL}"))?;
        self.send(
            Method::POST,
            path,
            None,
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    /// Rows of a table in the component's database file (what was really committed).
    pub fn count(&self, table: &str) -> Result<i64> {
        self.count_where(table, "1")
    }

    /// Rows of a table matching an SQL condition.
    pub fn count_where(&self, table: &str, condition: &str) -> Result<i64> {
        let db = rusqlite::Connection::open(&self.db_path)?;
        Ok(db.query_row(
            &format!("SELECT COUNT(*) FROM {table} WHERE {condition}"),
            [],
            |r| r.get(0),
        )?)
    }
}

/// The phone-home URL the workflows would sign for `(task, instance)`, expiring at `expires`
/// (Unix seconds).
pub fn phone_home_url(task: TaskId, instance: InstanceId, expires: i64) -> String {
    talis_api::phone_home::signed_url(
        PUBLIC_URL,
        INTERNAL_SECRET,
        task.get(),
        instance.get(),
        expires,
    )
}

/// What an expected refusal must be.
pub trait Refused {
    /// The API's refusal, which must have this HTTP status and kind (and `error.code` equal to
    /// the status); panics naming what came instead.
    fn refused(self, status: u16, kind: ErrorKind) -> ApiError;
}

impl<T: std::fmt::Debug> Refused for talis_client::Result<T> {
    #[track_caller]
    fn refused(self, status: u16, kind: ErrorKind) -> ApiError {
        match self {
            Err(talis_client::Error::Api(e)) if e.status == status && e.kind == kind => {
                assert_eq!(
                    e.code,
                    i64::from(status),
                    "error.code vs HTTP status: {e:?}"
                );
                e
            }
            other => panic!("expected HTTP {status} {kind:?}, got {other:?}"),
        }
    }
}

/// A valid request for `n` machines of one shape, with a volume and an owner tag.
pub fn instances_json(n: u32) -> Value {
    json!({ "provider": "do", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-22-04-x64",
            "number_of_instances": n, "name": "node", "tags": ["e2e"],
            "volumes": [{ "name": "data", "size_gb": 10, "mount_point": "/mnt/data", "filesystem": "ext4" }] })
}

/// [`instances_json`], typed.
pub fn instances(n: u32) -> InstanceRequest {
    serde_json::from_value(instances_json(n)).expect("a valid instance request")
}

/// The same request for `instance.create`, in `project`.
pub fn in_project(req: &InstanceRequest, project: &str) -> InstanceCreateRequest {
    let mut v = serde_json::to_value(req).expect("a request serialises");
    v["project_name"] = json!(project);
    serde_json::from_value(v).expect("a valid instance.create request")
}

/// `project.create` params of a project with these instance requests.
pub fn project(name: &str, instances: Vec<InstanceRequest>) -> ProjectCreate {
    ProjectCreate {
        name: name.into(),
        instances,
        ..Default::default()
    }
}

/// Any serialisable value as JSON (params written as a test means them).
pub fn to_json(v: &impl Serialize) -> Value {
    serde_json::to_value(v).expect("serialises")
}
