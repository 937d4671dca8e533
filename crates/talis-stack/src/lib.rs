//! Starts and supervises Talis processes (Spin host, fake cloud, Restate, workflows) for the
//! end-to-end tests, the benchmarks and `cargo xtask up`. One place knows how each process is
//! started, where its binary lives and when it is ready; `supervisor` restarts a process that
//! dies, `balancer` puts replicas behind one address, and `cluster` assembles the highly
//! available stack (3 Restate nodes, replicated workflows and API) from them.

pub mod balancer;
pub mod cluster;
pub mod fakecloud;
pub mod host;
pub mod ports;
pub mod process;
pub mod restate;
pub mod storm;
pub mod supervisor;
pub mod workflows;

use std::path::PathBuf;

pub use process::{Ready, Service, Spec, free_port};

/// The workspace root (this crate lives at `crates/talis-stack`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/talis-stack has a workspace root")
        .to_path_buf()
}

/// The cargo target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Directory of the native binaries built alongside the running executable: a test binary in
/// `target/<profile>/deps/` or a tool in `target/<profile>/` both map to `target/<profile>/`.
/// `TALIS_BIN_DIR` overrides it.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TALIS_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current executable path");
    let mut dir = exe
        .parent()
        .expect("executable has a directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path of a workspace binary (e.g. `talis-host`, `fakecloud`, `talis-workflows`, `talis`).
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// Path of a Spin component built by `cargo xtask build` (release, wasm32-wasip2).
pub fn wasm(crate_name: &str) -> PathBuf {
    target_dir()
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", crate_name.replace('-', "_")))
}
