//! Per-request store state: WASI, wasi:http (with the outbound allow list), and the Spin
//! interfaces' view of the component's configuration and the app's shared resources.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::bindings::{fermyon::spin::variables, wasi::config::store as wasi_config};
use crate::kv::KvStore;
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

/// Sends a component's outbound request only if `allowed_outbound_hosts` permits it;
/// otherwise the guest gets `HTTP-request-denied`, as on Spin.
pub struct OutboundHooks {
    pub component: Arc<ComponentConfig>,
}

type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<wasmtime_wasi_http::WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        if !self.component.allowed_hosts.allows_uri(request.uri()) {
            tracing::warn!(
                component = %self.component.id,
                "outbound request to {} denied: not in allowed_outbound_hosts",
                request.uri()
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
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
