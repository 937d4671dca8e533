//! Turning a manifest (plus runtime config, variables and `--sqlite` statements) into a
//! ready-to-serve app: compiled, pre-instantiated components and the shared resources.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpCtx;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::guest_output::GuestOutput;
use crate::kv::{KvFile, KvStore};
use crate::limits::Limits;
use crate::manifest::{self, FileMount, Manifest};
use crate::metrics::Metrics;
use crate::outbound::{AllowedHost, AllowedHosts};
use crate::routes::Router;
use crate::sqlite::{Database, Location, Synchronous};
use crate::state::{AppResources, ComponentConfig, HostState, OutboundHooks};
use crate::variables::AppVariables;

pub struct Options {
    pub manifest: PathBuf,
    pub runtime_config: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    /// `--sqlite` statements: SQL for the default database, or `@file[:label]`.
    pub sqlite: Vec<String>,
    /// Variable values given on the command line (override the environment).
    pub variables: Vec<(String, String)>,
    /// Extra environment for every component (`--env`).
    pub env: Vec<(String, String)>,
    /// Size of the instance pool: the most requests served at the same time.
    pub max_instances: u32,
    /// Components' stdout/stderr as log events (JSON logs) instead of the host's own streams.
    pub guest_output_as_logs: bool,
    /// `PRAGMA synchronous` of every SQLite connection.
    pub sqlite_synchronous: Synchronous,
}

pub struct LoadedComponent {
    pub config: Arc<ComponentConfig>,
    pub pre: ProxyPre<HostState>,
    env: Vec<(String, String)>,
    /// (host directory, guest path)
    mounts: Vec<(PathBuf, String)>,
    guest_output_as_logs: bool,
}

pub struct App {
    pub name: String,
    /// `[application] version`, for `/.well-known/spin/info`.
    pub version: Option<String>,
    pub engine: Engine,
    pub router: Router,
    pub components: HashMap<String, LoadedComponent>,
    pub resources: Arc<AppResources>,
}

impl LoadedComponent {
    /// Fresh per-request state; cheap (no file I/O beyond opening the mounted directories).
    pub fn new_state(
        &self,
        app: &Arc<AppResources>,
        limits: &Arc<Limits>,
        metrics: &Arc<Metrics>,
    ) -> Result<HostState> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&self.env);
        if self.guest_output_as_logs {
            wasi.stdout(GuestOutput::stdout(&self.config.id))
                .stderr(GuestOutput::stderr(&self.config.id));
        } else {
            wasi.inherit_stdout().inherit_stderr();
        }
        for (host, guest) in &self.mounts {
            wasi.preopened_dir(host, guest, FsPerms::ReadOnly)
                .map_err(|e| anyhow::anyhow!("mounting {}: {e}", host.display()))?;
        }
        Ok(HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundHooks {
                component: self.config.clone(),
                limits: limits.clone(),
                metrics: metrics.clone(),
            },
            component: self.config.clone(),
            app: app.clone(),
        })
    }
}

/// Spin's `runtime-config.toml`, the parts this host supports.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RuntimeConfig {
    state_dir: Option<PathBuf>,
    #[serde(default)]
    sqlite_database: BTreeMap<String, StoreConfig>,
    #[serde(default)]
    key_value_store: BTreeMap<String, StoreConfig>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreConfig {
    #[serde(rename = "type")]
    kind: String,
    path: Option<PathBuf>,
}

fn load_runtime_config(path: &Path) -> Result<RuntimeConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading runtime config {}", path.display()))?;
    let rc: RuntimeConfig = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("invalid runtime config {}: {e}", path.display()))?;
    for (section, map) in [
        ("sqlite_database", &rc.sqlite_database),
        ("key_value_store", &rc.key_value_store),
    ] {
        for (label, c) in map {
            if c.kind != "spin" {
                bail!(
                    "runtime config {}: [{section}.{label}] type = {:?} is not supported by this host (only \"spin\")",
                    path.display(),
                    c.kind
                );
            }
        }
    }
    Ok(rc)
}

/// How often the epoch ticker advances the engine's epoch: the granularity of the execution
/// deadline, and how often a computing guest yields its worker thread to other tasks (as Spin).
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

pub fn engine(max_instances: u32) -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Compiled code checks the epoch at function entries and loop headers, so a guest that
    // never calls the host can still be stopped (see `Server::run`).
    config.epoch_interruption(true);
    let mut pool = PoolingAllocationConfig::default();
    // A component instance holds a few core instances (the module plus adapter shims).
    pool.total_component_instances(max_instances)
        .total_core_instances(max_instances * 16)
        .total_memories(max_instances * 2)
        .total_tables(max_instances * 16)
        .total_stacks(max_instances)
        .max_memory_size(256 << 20)
        // Reset a freed slot by memset instead of madvise + page faults on the next request:
        // a small Rust component's whole memory (1 MiB stack + data + heap) fits in 4 MiB.
        // Measured on /hello: p50 ≈ 115 µs with 0, ≈ 78 µs with 1 MiB, ≈ 61 µs with 4 MiB.
        .linear_memory_keep_resident(4 << 20)
        .table_keep_resident(1 << 16)
        // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), reset only the pages the instance
        // actually touched instead of memset-ing the whole resident 4 MiB on every request.
        .pagemap_scan(Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine =
        Engine::new(&config).map_err(|e| anyhow::anyhow!("creating the wasmtime engine: {e}"))?;
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            // Ends with the engine.
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .context("starting the epoch ticker thread")?;
    Ok(engine)
}

/// Compiles a component, or loads it from the cache of compiled components under the state
/// directory (keyed by the Wasm bytes and the host build) to skip compiling on restart.
fn compile(engine: &Engine, wasm: &Path, cache_dir: &Path) -> Result<Component> {
    let bytes =
        std::fs::read(wasm).with_context(|| format!("reading component {}", wasm.display()))?;
    let mut h = Sha256::new();
    for part in [
        "wasmtime-48.0.8",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
    ] {
        h.update(part);
        h.update("/");
    }
    h.update(&bytes);
    let cached = cache_dir.join(format!("{}.cwasm", hex::encode(h.finalize())));
    if cached.exists() {
        // SAFETY: the file was written by `Component::serialize` of this same host build
        // (the key includes the wasmtime and host versions) into the app's own state
        // directory; wasmtime still checks that the engine configuration matches.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(c) => return Ok(c),
            Err(e) => tracing::warn!("ignoring cached {}: {e}", cached.display()),
        }
    }
    let c = Component::new(engine, &bytes)
        .map_err(|e| anyhow::anyhow!("compiling {}: {e:?}", wasm.display()))?;
    if let Ok(serialized) = c.serialize() {
        let _ = std::fs::create_dir_all(cache_dir);
        let tmp = cached.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, serialized).is_ok() {
            let _ = std::fs::rename(&tmp, &cached);
        }
    }
    Ok(c)
}

impl App {
    pub fn load(opts: &Options) -> Result<Self> {
        let manifest_path = if opts.manifest.is_dir() {
            opts.manifest.join("spin.toml")
        } else {
            opts.manifest.clone()
        };
        let m = manifest::load(&manifest_path)?;

        let rc = match &opts.runtime_config {
            Some(p) => load_runtime_config(p)?,
            None => RuntimeConfig::default(),
        };
        let rc_dir = opts
            .runtime_config
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| m.dir.clone());
        let state_dir = opts
            .state_dir
            .clone()
            .or_else(|| rc.state_dir.as_ref().map(|d| rc_dir.join(d)))
            .unwrap_or_else(|| m.dir.join(".spin"));
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("creating state directory {}", state_dir.display()))?;

        let overrides: HashMap<String, String> = opts
            .variables
            .iter()
            .map(|(k, v)| {
                (
                    format!("SPIN_VARIABLE_{}", k.to_ascii_uppercase()),
                    v.clone(),
                )
            })
            .collect();
        let vars = AppVariables::resolve(&m.variables, |k| {
            overrides.get(k).cloned().or_else(|| std::env::var(k).ok())
        })
        .map_err(|e| anyhow::anyhow!("{}: {e}", manifest_path.display()))?;

        let resources = Arc::new(resources(
            &m,
            &rc,
            &rc_dir,
            &state_dir,
            opts.sqlite_synchronous,
        )?);
        run_sqlite_statements(&opts.sqlite, &resources)?;

        let engine = engine(opts.max_instances)?;
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow::anyhow!("{e}"))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        crate::bindings::SpinImports::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("{e}"))?;

        let cache_dir = state_dir.join("cache");
        let mut components = HashMap::new();
        for (id, c) in &m.components {
            let started = Instant::now();
            let component = compile(&engine, &c.source, &cache_dir)
                .with_context(|| format!("component {id:?}"))?;
            let pre = linker
                .instantiate_pre(&component)
                .map_err(|e| anyhow::anyhow!("component {id:?} cannot be linked: {e}"))?;
            let pre = ProxyPre::new(pre).map_err(|e| {
                anyhow::anyhow!(
                    "component {id:?} does not export wasi:http/incoming-handler@0.2: {e}"
                )
            })?;
            tracing::info!("component {id} ready in {:?}", started.elapsed());
            components.insert(
                id.clone(),
                LoadedComponent {
                    config: Arc::new(component_config(c, &vars)?),
                    pre,
                    env: c
                        .environment
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .chain(opts.env.iter().cloned())
                        .collect(),
                    mounts: mounts(c, &m.dir, &state_dir)?,
                    guest_output_as_logs: opts.guest_output_as_logs,
                },
            );
        }

        let router = Router::build(
            m.routes
                .iter()
                .filter_map(|r| r.route.as_deref().map(|p| (p, r.component.as_str()))),
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", manifest_path.display()))?;

        Ok(Self {
            name: m.name,
            version: m.version,
            engine,
            router,
            components,
            resources,
        })
    }
}

fn component_config(c: &manifest::Component, vars: &AppVariables) -> Result<ComponentConfig> {
    let mut variables = BTreeMap::new();
    for (name, template) in &c.variables {
        variables.insert(
            name.clone(),
            vars.render(template)
                .map_err(|e| anyhow::anyhow!("component {}: variable {name}: {e}", c.id))?,
        );
    }
    let mut hosts = Vec::new();
    for (entry, line) in &c.allowed_outbound_hosts {
        let rendered = vars
            .render(entry)
            .map_err(|e| anyhow::anyhow!("component {}: allowed_outbound_hosts: {e}", c.id))?;
        match AllowedHost::parse(&rendered) {
            Ok(h) => hosts.push(h),
            // A template may legitimately render to nothing (feature switched off): the
            // entry then allows nothing, and requests to it are denied.
            // Neither the rendered value nor the parse error (which quotes it) is logged: the
            // template may use a secret variable.
            Err(_) if entry.contains("{{") => tracing::warn!(
                "component {}: allowed_outbound_hosts entry {entry:?} (line {line}) renders to an invalid host, which allows nothing",
                c.id
            ),
            Err(e) => bail!(
                "component {}: allowed_outbound_hosts (line {line}): {e}",
                c.id
            ),
        }
    }
    Ok(ComponentConfig {
        id: c.id.clone(),
        variables,
        sqlite_databases: c.sqlite_databases.iter().cloned().collect(),
        key_value_stores: c.key_value_stores.iter().cloned().collect(),
        allowed_hosts: Arc::new(AllowedHosts::new(hosts)),
    })
}

fn resources(
    m: &Manifest,
    rc: &RuntimeConfig,
    rc_dir: &Path,
    state_dir: &Path,
    synchronous: Synchronous,
) -> Result<AppResources> {
    let mut res = AppResources::default();
    let mut sqlite_locations: BTreeMap<String, Location> = rc
        .sqlite_database
        .iter()
        .map(|(label, c)| {
            let loc = match &c.path {
                Some(p) => Location::File(rc_dir.join(p)),
                None => Location::Memory(format!("talis-host-{label}")),
            };
            (label.clone(), loc)
        })
        .collect();
    sqlite_locations
        .entry("default".into())
        .or_insert_with(|| Location::File(state_dir.join("sqlite_db.db")));

    let mut kv_files: BTreeMap<String, Option<PathBuf>> = rc
        .key_value_store
        .iter()
        .map(|(label, c)| (label.clone(), c.path.as_ref().map(|p| rc_dir.join(p))))
        .collect();
    kv_files
        .entry("default".into())
        .or_insert_with(|| Some(state_dir.join("sqlite_key_value.db")));

    // Like Spin, refuse to start when a component asks for a label nobody defined, and open
    // only what some component may use.
    for c in m.components.values() {
        for label in &c.sqlite_databases {
            let Some(loc) = sqlite_locations.get(label) else {
                bail!(
                    "component {:?} uses SQLite database {label:?}, which is not defined (add [sqlite_database.{label}] to the runtime config)",
                    c.id
                );
            };
            if !res.sqlite.contains_key(label) {
                let db = Database::new(loc.clone(), synchronous)
                    .with_context(|| format!("opening SQLite database {label:?}"))?;
                res.sqlite.insert(label.clone(), Arc::new(db));
            }
        }
        for label in &c.key_value_stores {
            let Some(path) = kv_files.get(label) else {
                bail!(
                    "component {:?} uses key-value store {label:?}, which is not defined (add [key_value_store.{label}] to the runtime config)",
                    c.id
                );
            };
            if !res.kv.contains_key(label) {
                let file = KvFile::open(path.as_deref())
                    .with_context(|| format!("opening key-value store {label:?}"))?;
                res.kv.insert(
                    label.clone(),
                    KvStore {
                        file,
                        name: label.clone(),
                    },
                );
            }
        }
    }
    // `--sqlite` may target the default database even if no component uses it yet.
    if !res.sqlite.contains_key("default")
        && let Some(loc) = sqlite_locations.get("default")
    {
        res.sqlite.insert(
            "default".into(),
            Arc::new(Database::new(loc.clone(), synchronous)?),
        );
    }
    for (label, db) in &res.sqlite {
        if let Location::File(p) = db.location() {
            tracing::info!("SQLite database {label:?}: {}", p.display());
        }
    }
    Ok(res)
}

/// `--sqlite` statements, executed in order before serving: plain SQL goes to the default
/// database; `@file` or `@file:label` runs a file against a database.
fn run_sqlite_statements(statements: &[String], res: &AppResources) -> Result<()> {
    for s in statements {
        if let Some(spec) = s.strip_prefix('@') {
            let (file, label) = match spec.rsplit_once(':') {
                Some((f, l)) if !l.contains('/') => (f, l),
                _ => (spec, "default"),
            };
            if file.is_empty() || label.is_empty() {
                bail!("--sqlite {s:?}: expected @<file> or @<file>:<label>");
            }
            let sql = std::fs::read_to_string(file)
                .with_context(|| format!("--sqlite {s:?}: reading {file}"))?;
            let db = res.sqlite.get(label).with_context(|| {
                format!("--sqlite {s:?}: no SQLite database labelled {label:?}")
            })?;
            db.execute_batch(&sql)
                .with_context(|| format!("--sqlite {s:?}: executing {file}"))?;
        } else {
            let db = res
                .sqlite
                .get("default")
                .context("--sqlite: no default database")?;
            db.execute_batch(s)
                .with_context(|| format!("--sqlite: executing {s:?}"))?;
        }
    }
    Ok(())
}

/// Directories to preopen for `files`. Directory mounts are mounted in place; glob
/// patterns and single files are copied to a staging directory under the state directory
/// (as Spin does) which is mounted at `/`.
fn mounts(
    c: &manifest::Component,
    app_dir: &Path,
    state_dir: &Path,
) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    if c.files.is_empty() {
        return Ok(out);
    }
    let staging = state_dir.join("files").join(&c.id);
    let _ = std::fs::remove_dir_all(&staging);
    let mut staged = false;
    for f in &c.files {
        match f {
            FileMount::Mount {
                source,
                destination,
            } => {
                if source.is_dir() {
                    out.push((source.clone(), destination.clone()));
                } else if source.is_file() {
                    let to = staging.join(destination.trim_start_matches('/'));
                    copy_file(source, &to)?;
                    staged = true;
                } else {
                    bail!(
                        "component {}: files: {} does not exist",
                        c.id,
                        source.display()
                    );
                }
            }
            FileMount::Pattern(p) => {
                for rel in crate::glob::matches(app_dir, p)? {
                    if c.exclude_files
                        .iter()
                        .any(|x| crate::glob::is_match(x, &rel))
                    {
                        continue;
                    }
                    copy_file(&app_dir.join(&rel), &staging.join(&rel))?;
                    staged = true;
                }
            }
        }
    }
    if staged {
        out.push((staging, "/".into()));
    }
    Ok(out)
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    Ok(())
}
