//! Shared set-up for the runtime's integration tests: built guests, runtimes, tasks.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sentinel_runtime::{
    ExecutorPlugin, HostPolicy, LoadedPlugin, Manifest, Runtime, RuntimeConfig, StrategyPlugin,
    Task,
};

/// The folder with the example plugins (`<name>.wasm` + `<name>.toml`).
pub fn examples_dir() -> &'static Path {
    &sentinel_guest_build::build_once().plugins_dir
}

/// The folder with the hostile test guests.
pub fn hostile_dir() -> &'static Path {
    &sentinel_guest_build::build_once().hostile_dir
}

pub fn runtime(policy: HostPolicy) -> Arc<Runtime> {
    Runtime::new(RuntimeConfig {
        policy,
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

pub fn wasm(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(format!("{name}.wasm"))).expect("built guest")
}

pub fn manifest(dir: &Path, name: &str) -> Manifest {
    let text = std::fs::read_to_string(dir.join(format!("{name}.toml"))).expect("manifest");
    Manifest::parse(&text, name).expect("valid manifest")
}

pub fn executor(rt: &Runtime, dir: &Path, name: &str) -> Arc<ExecutorPlugin> {
    executor_with(rt, manifest(dir, name), &wasm(dir, name))
}

pub fn executor_with(rt: &Runtime, manifest: Manifest, wasm: &[u8]) -> Arc<ExecutorPlugin> {
    match rt.load(manifest, wasm).expect("plugin loads") {
        LoadedPlugin::Executor(e) => e,
        LoadedPlugin::Strategy(_) => panic!("expected an executor"),
    }
}

pub fn strategy(rt: &Runtime, dir: &Path, name: &str) -> Arc<StrategyPlugin> {
    match rt
        .load(manifest(dir, name), &wasm(dir, name))
        .expect("plugin loads")
    {
        LoadedPlugin::Strategy(s) => s,
        LoadedPlugin::Executor(_) => panic!("expected a strategy"),
    }
}

pub fn task(task_type: &str, payload: serde_json::Value) -> Task {
    task_for("default", task_type, payload)
}

pub fn task_for(tenant: &str, task_type: &str, payload: serde_json::Value) -> Task {
    Task {
        id: uuid_like(),
        task_type: task_type.into(),
        tenant: tenant.into(),
        priority: 0,
        attempt: 1,
        payload: serde_json::to_vec(&payload).unwrap(),
        metadata: vec![],
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "task-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "output is not JSON ({e}): {}",
            String::from_utf8_lossy(bytes)
        )
    })
}

/// A directory that is removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn copy_plugin(from: &Path, name: &str, to: &Path) -> PathBuf {
    std::fs::copy(
        from.join(format!("{name}.wasm")),
        to.join(format!("{name}.wasm")),
    )
    .unwrap();
    std::fs::copy(
        from.join(format!("{name}.toml")),
        to.join(format!("{name}.toml")),
    )
    .unwrap();
    to.join(format!("{name}.toml"))
}
