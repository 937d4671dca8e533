//! Per-request store state: WASI, wasi:http (with the outbound allow list), and the Spin
//! interfaces' view of the component's configuration and the app's shared resources.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::bindings::{fermyon::spin::variables, wasi::config::store as wasi_config};
use crate::kv::KvStore;
use crate::limits::{Limit, Limits};
use crate::metrics::Metrics;
use crate::outbound::AllowedHosts;
use crate::sqlite::Database;

/// What a component may use, fixed at start-up.
#[derive(Debug, Default)]
pub struct ComponentConfig {
    pub id: String,
    /// Component variables, already rendered from the application variables.
    pub variables: BTreeMap<String, String>,
    pub sqlite_databases: HashSet<String>,
    pub key_value_stores: HashSet<String>,
    pub allowed_hosts: Arc<AllowedHosts>,
}

/// Resources shared by every component of the app.
#[derive(Default)]
pub struct AppResources {
    pub sqlite: HashMap<String, Arc<Database>>,
    pub kv: HashMap<String, KvStore>,
}

pub struct HostState {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    pub hooks: OutboundHooks,
    pub component: Arc<ComponentConfig>,
    pub app: Arc<AppResources>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Sends a component's outbound request only if `allowed_outbound_hosts` permits it
/// (otherwise the guest gets `HTTP-request-denied`, as on Spin), with the guest's timeouts
/// capped by the host's outbound limits.
pub struct OutboundHooks {
    pub component: Arc<ComponentConfig>,
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
}

type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<wasmtime_wasi_http::WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

/// `scheme://host:port` of a URI: what logs show of an outbound request (its path and query
/// may carry tokens).
fn origin(uri: &http::Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("?"),
        uri.authority().map_or("?", |a| a.as_str())
    )
}

/// Counts and logs an outbound limit that ran out; the guest gets wasi-http's error code.
fn outbound_timeout(metrics: &Metrics, limits: &Limits, component: &str, to: &str, limit: Limit) {
    metrics.timeout(limit);
    tracing::warn!(
        component = %component,
        "outbound request to {to}: {}",
        limit.describe(limits, "timed out")
    );
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        let to = origin(request.uri());
        if !self.component.allowed_hosts.allows_uri(request.uri()) {
            tracing::warn!(
                component = %self.component.id,
                "outbound request to {to} denied: not in allowed_outbound_hosts"
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let options = self.limits.cap_outbound(options);
        let (limits, metrics) = (self.limits.clone(), self.metrics.clone());
        let component = self.component.id.clone();
        Box::new(async move {
            use http_body_util::BodyExt;
            use wasmtime_wasi_http::Error;
            let (res, io) =
                match wasmtime_wasi_http::default_send_request(request, Some(options)).await {
                    Ok(sent) => sent,
                    Err(e) => {
                        let limit = match e {
                            Error::ConnectionTimeout => Some(Limit::OutboundConnect),
                            // Before the response: waiting for its headers.
                            Error::ConnectionReadTimeout => Some(Limit::OutboundFirstByte),
                            _ => None,
                        };
                        if let Some(limit) = limit {
                            outbound_timeout(&metrics, &limits, &component, &to, limit);
                        }
                        return Err(e);
                    }
                };
            let res = res.map(|body| {
                body.map_err(move |e| {
                    // While streaming the body: a pause between two frames.
                    if matches!(e, Error::ConnectionReadTimeout) {
                        let limit = Limit::OutboundBetweenBytes;
                        outbound_timeout(&metrics, &limits, &component, &to, limit);
                    }
                    e
                })
                .boxed_unsync()
            });
            Ok((res, Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

impl HostState {
    /// `fermyon:spin/variables.get`: Spin's answers for bad names and undeclared variables.
    fn variable(&self, name: &str) -> Result<String, variables::Error> {
        crate::variables::validate_name(name).map_err(variables::Error::InvalidName)?;
        self.component.variables.get(name).cloned().ok_or_else(|| {
            variables::Error::Undefined(format!("no variable for {:?}.{name:?}", self.component.id))
        })
    }
}

impl variables::Host for HostState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        Ok(self.variable(&name))
    }
}

impl wasi_config::Host for HostState {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, wasi_config::Error>> {
        // Undefined and invalid names are `none`, following the wasi-config guidance Spin uses.
        Ok(Ok(self.variable(&key).ok()))
    }

    async fn get_all(
        &mut self,
    ) -> wasmtime::Result<Result<Vec<(String, String)>, wasi_config::Error>> {
        Ok(Ok(self
            .component
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()))
    }
}
