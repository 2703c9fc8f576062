//! The runtime: engine, linkers and plugin loading.
//!
//! A `Runtime` turns plugin files into ready-to-instantiate plugins (`InstancePre`), once
//! per version; running them is `executor.rs` and `strategy.rs`. It never decides which
//! plugins are installed: that is the plugin folder's job.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::{HasSelf, Linker};

use crate::bindings::{executor, strategy};
use crate::cache::ComponentCache;
use crate::engine::{EngineConfig, SandboxEngine};
use crate::error::PluginError;
use crate::executor::ExecutorPlugin;
use crate::manifest::{Manifest, PluginKind};
use crate::policy::{Grant, HostPolicy};
use crate::state::SandboxState;
use crate::strategy::StrategyPlugin;

/// How a runtime is set up.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// Engine sizing.
    pub engine: EngineConfig,
    /// Where precompiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// What plugins may be granted.
    pub policy: HostPolicy,
}

/// A loaded plugin of either kind.
#[derive(Clone)]
pub enum LoadedPlugin {
    /// A task handler.
    Executor(Arc<ExecutorPlugin>),
    /// A load-balancing strategy.
    Strategy(Arc<StrategyPlugin>),
}

impl LoadedPlugin {
    /// The plugin's manifest.
    pub fn manifest(&self) -> &Manifest {
        match self {
            LoadedPlugin::Executor(p) => p.manifest(),
            LoadedPlugin::Strategy(p) => p.manifest(),
        }
    }

    /// SHA-256 of the `.wasm` file, lowercase hex.
    pub fn sha256(&self) -> &str {
        match self {
            LoadedPlugin::Executor(p) => p.sha256(),
            LoadedPlugin::Strategy(p) => p.sha256(),
        }
    }
}

/// The sandbox runtime of one host.
pub struct Runtime {
    pub(crate) engine: SandboxEngine,
    cache: ComponentCache,
    pub(crate) policy: HostPolicy,
    executor_linker: Linker<SandboxState>,
    strategy_linker: Linker<SandboxState>,
}

impl Runtime {
    /// Builds the engine and the linkers.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Arc<Runtime>> {
        let engine = SandboxEngine::new(&config.engine)?;
        let cache = ComponentCache::new(engine.engine(), config.cache_dir);

        let mut executor_linker = Linker::new(engine.engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut executor_linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut executor_linker)?;
        executor::Executor::add_to_linker::<_, HasSelf<SandboxState>>(&mut executor_linker, |s| s)?;

        // Strategies get WASI only so that a guest's standard library links; their context
        // grants nothing. No wasi:http, no shared memory: a strategy importing them is refused.
        let mut strategy_linker = Linker::new(engine.engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut strategy_linker)?;
        strategy::Strategy::add_to_linker::<_, HasSelf<SandboxState>>(&mut strategy_linker, |s| s)?;

        // Scratch trees of hosts that died mid-task (SIGKILL, power loss) are removed now.
        crate::scratch::sweep_dead_hosts(&config.policy.scratch_root);
        Ok(Arc::new(Runtime {
            engine,
            cache,
            policy: config.policy,
            executor_linker,
            strategy_linker,
        }))
    }

    /// The host policy.
    pub fn policy(&self) -> &HostPolicy {
        &self.policy
    }

    /// The wasmtime engine (for benchmarks and diagnostics).
    pub fn engine(&self) -> &wasmtime::Engine {
        self.engine.engine()
    }

    /// Loads `<dir>/<name>.toml` and `<dir>/<name>.wasm`.
    pub fn load_files(&self, manifest_path: &Path) -> Result<LoadedPlugin, PluginError> {
        let name = manifest_path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let io = |source| PluginError::Io {
            name: name.clone(),
            source,
        };
        let text = crate::manifest::read_manifest_text(manifest_path).map_err(io)?;
        let manifest = Manifest::parse(&text, &name).map_err(|reason| PluginError::Manifest {
            name: name.clone(),
            reason,
        })?;
        let bytes = crate::manifest::read_bounded(
            &manifest_path.with_extension("wasm"),
            crate::manifest::MAX_WASM_BYTES,
        )
        .map_err(io)?;
        self.load(manifest, &bytes)
    }

    /// Validates, compiles (or maps from the cache) and pre-links one plugin.
    pub fn load(&self, manifest: Manifest, wasm: &[u8]) -> Result<LoadedPlugin, PluginError> {
        let name = manifest.name.clone();
        let sha256 = hex::encode(Sha256::digest(wasm));
        match &manifest.sha256 {
            Some(pin) if !pin.eq_ignore_ascii_case(&sha256) => {
                return Err(PluginError::HashMismatch {
                    name,
                    expected: pin.clone(),
                    actual: sha256,
                });
            }
            None if self.policy.require_sha256_pin => {
                return Err(PluginError::Policy {
                    name,
                    reason: "this host requires a `sha256` pin in every manifest".into(),
                });
            }
            _ => {}
        }
        if !wasm.starts_with(b"\0asm") {
            return Err(PluginError::InvalidComponent {
                name,
                reason: "not a WebAssembly file".into(),
            });
        }
        if wasmparser_is_core_module(wasm) {
            return Err(PluginError::InvalidComponent {
                name,
                reason: "a core module, not a component: build for wasm32-wasip2 (or run `wasm-tools component new`)"
                    .into(),
            });
        }
        let component = self
            .cache
            .load(self.engine.engine(), &sha256, wasm)
            .map_err(|e| PluginError::InvalidComponent {
                name: name.clone(),
                reason: format!("{e:#}"),
            })?;
        let world = manifest.kind.world();
        let wrong_world = |e: wasmtime::Error| PluginError::WrongWorld {
            name: name.clone(),
            world,
            reason: format!("{e:#}"),
        };
        Ok(match manifest.kind {
            PluginKind::Executor => {
                let pre = self
                    .executor_linker
                    .instantiate_pre(&component)
                    .map_err(wrong_world)?;
                let pre = executor::ExecutorPre::new(pre).map_err(wrong_world)?;
                let grant = Grant::new(&manifest, &self.policy);
                LoadedPlugin::Executor(Arc::new(ExecutorPlugin::new(manifest, grant, sha256, pre)))
            }
            PluginKind::Strategy => {
                let pre = self
                    .strategy_linker
                    .instantiate_pre(&component)
                    .map_err(wrong_world)?;
                let pre = strategy::StrategyPre::new(pre).map_err(wrong_world)?;
                LoadedPlugin::Strategy(Arc::new(StrategyPlugin::new(manifest, sha256, pre)))
            }
        })
    }
}

/// Core modules have version 1 in the preamble; components have the component layer.
fn wasmparser_is_core_module(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm[4..8] == [1, 0, 0, 0]
}
