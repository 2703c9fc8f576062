//! The plugin folder: `<dir>/<name>.wasm` + `<name>.toml`, loaded at start and watched.
//!
//! A `<name>.sig` beside a pair is its signature (see [`crate::signature`]); the folder's
//! [`SignaturePolicy`] decides whether unsigned plugins load.
//!
//! Plugins are data. Adding, replacing or removing a file pair takes effect without a
//! restart; a pair that fails to load is reported and the version already in service
//! stays. The catalog is swapped whole, so a lookup sees either the old or the new set,
//! and a running task keeps the `Arc` of the version it started with.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::executor::ExecutorPlugin;
use crate::manifest::{Manifest, PluginKind};
use crate::runtime::{LoadedPlugin, Runtime};
use crate::signature::{
    MAX_SIGNATURE_BYTES, PublicKey, SIGNATURE_EXTENSION, SignatureCheck, SignaturePolicy,
};
use crate::strategy::StrategyPlugin;

/// What `plugins list` shows for one name in the folder.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    /// Plugin name.
    pub name: String,
    /// `executor` or `strategy`, when a version is loaded.
    pub kind: Option<PluginKind>,
    /// The loaded version's manifest version.
    pub version: Option<String>,
    /// Task types it serves (executors).
    pub task_types: Vec<String>,
    /// SHA-256 of the loaded `.wasm`.
    pub sha256: Option<String>,
    /// The key that signed the loaded version (`ed25519:<base64>`), if it is signed.
    pub signed_by: Option<String>,
    /// Why the newest files were rejected, if they were; the loaded version (if any) still serves.
    pub error: Option<String>,
}

#[derive(Clone)]
struct Entry {
    plugin: LoadedPlugin,
    manifest_text: String,
    /// The signature file as read, so a changed or removed signature is a change.
    sig_text: Option<Vec<u8>>,
    signer: Option<PublicKey>,
}

#[derive(Clone, Default)]
struct Catalog {
    entries: BTreeMap<String, Entry>,
    by_task_type: HashMap<String, Arc<ExecutorPlugin>>,
    signer_by_task_type: HashMap<String, PublicKey>,
    errors: BTreeMap<String, String>,
}

/// A watched folder of plugins.
pub struct PluginFolder {
    runtime: Arc<Runtime>,
    dir: PathBuf,
    signatures: SignaturePolicy,
    catalog: RwLock<Arc<Catalog>>,
    generation: watch::Sender<u64>,
    scan_lock: tokio::sync::Mutex<()>,
}

impl PluginFolder {
    /// Loads every plugin in `dir` (created if missing), signed or not. Broken plugins are
    /// reported, not fatal.
    pub async fn open(
        runtime: Arc<Runtime>,
        dir: impl Into<PathBuf>,
    ) -> anyhow::Result<Arc<PluginFolder>> {
        Self::open_with(runtime, dir, SignaturePolicy::default()).await
    }

    /// Like [`open`](Self::open), loading only plugins that `signatures` accepts: a plugin it
    /// refuses is reported like any broken plugin, and the version already loaded keeps serving.
    pub async fn open_with(
        runtime: Arc<Runtime>,
        dir: impl Into<PathBuf>,
        signatures: SignaturePolicy,
    ) -> anyhow::Result<Arc<PluginFolder>> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let folder = Arc::new(PluginFolder {
            runtime,
            dir,
            signatures,
            catalog: RwLock::new(Arc::default()),
            generation: watch::channel(0).0,
            scan_lock: tokio::sync::Mutex::new(()),
        });
        folder.rescan().await;
        Ok(folder)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The runtime plugins are loaded into.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    fn snapshot(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The executor serving `task_type`, if any.
    pub fn executor_for(&self, task_type: &str) -> Option<Arc<ExecutorPlugin>> {
        self.snapshot().by_task_type.get(task_type).cloned()
    }

    /// The key that signed the executor serving `task_type`, if it is signed.
    pub fn signer_of(&self, task_type: &str) -> Option<PublicKey> {
        self.snapshot().signer_by_task_type.get(task_type).cloned()
    }

    /// Every task type some loaded executor serves.
    pub fn task_types(&self) -> Vec<String> {
        let mut types: Vec<String> = self.snapshot().by_task_type.keys().cloned().collect();
        types.sort();
        types
    }

    /// The strategy plugin called `name`, if loaded.
    pub fn strategy(&self, name: &str) -> Option<Arc<StrategyPlugin>> {
        match self.snapshot().entries.get(name).map(|e| &e.plugin) {
            Some(LoadedPlugin::Strategy(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// Every name in the folder, loaded or rejected.
    pub fn list(&self) -> Vec<PluginStatus> {
        let cat = self.snapshot();
        let mut names: Vec<&String> = cat.entries.keys().chain(cat.errors.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let entry = cat.entries.get(name);
                let manifest = entry.map(|e| e.plugin.manifest());
                PluginStatus {
                    name: name.clone(),
                    kind: manifest.map(|m| m.kind),
                    version: manifest.map(|m| m.version.clone()),
                    task_types: manifest
                        .filter(|m| m.kind == PluginKind::Executor)
                        .map(Manifest::handled_task_types)
                        .unwrap_or_default(),
                    sha256: entry.map(|e| e.plugin.sha256().to_string()),
                    signed_by: entry.and_then(|e| e.signer.as_ref()).map(|k| k.to_string()),
                    error: cat.errors.get(name).cloned(),
                }
            })
            .collect()
    }

    /// A receiver that changes after every completed scan (for tests and the API).
    pub fn generations(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Re-reads the folder and applies what changed. Compiling happens off the async threads.
    pub async fn rescan(self: &Arc<Self>) {
        let _one_at_a_time = self.scan_lock.lock().await;
        let current = self.snapshot();
        let this = self.clone();
        let next = tokio::task::spawn_blocking(move || this.scan(&current)).await;
        match next {
            Ok(next) => {
                *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
            }
            Err(e) => {
                tracing::error!(error = %e, "plugin scan panicked; keeping the current plugins")
            }
        }
        self.generation.send_modify(|g| *g += 1);
    }

    fn scan(&self, current: &Catalog) -> Catalog {
        let mut next = Catalog::default();
        for (name, manifest_path) in self.pairs() {
            let loaded = self.load_if_changed(&name, &manifest_path, current.entries.get(&name));
            match loaded {
                Ok(entry) => {
                    next.entries.insert(name, entry);
                }
                Err(error) => {
                    tracing::error!(plugin = %name, %error, "plugin rejected");
                    if let Some(old) = current.entries.get(&name) {
                        tracing::warn!(plugin = %name, "keeping the version already loaded");
                        next.entries.insert(name.clone(), old.clone());
                    }
                    next.errors.insert(name, error);
                }
            }
        }
        for name in current
            .entries
            .keys()
            .filter(|n| !next.entries.contains_key(*n))
        {
            tracing::info!(plugin = %name, "plugin removed");
        }
        // Task types are served by the first plugin in name order; a later claimant is an error.
        let mut conflicts = Vec::new();
        for (name, entry) in &next.entries {
            if let LoadedPlugin::Executor(exec) = &entry.plugin {
                for t in exec.manifest().handled_task_types() {
                    match next.by_task_type.get(&t) {
                        Some(owner) => {
                            conflicts.push((name.clone(), t, owner.manifest().name.clone()))
                        }
                        None => {
                            if let Some(key) = &entry.signer {
                                next.signer_by_task_type.insert(t.clone(), key.clone());
                            }
                            next.by_task_type.insert(t, exec.clone());
                        }
                    }
                }
            }
        }
        for (name, task_type, owner) in conflicts {
            let error = format!("task type {task_type:?} is already served by plugin {owner:?}");
            tracing::error!(plugin = %name, %error, "task type conflict");
            next.errors.insert(name, error);
        }
        next
    }

    fn load_if_changed(
        &self,
        name: &str,
        manifest_path: &Path,
        old: Option<&Entry>,
    ) -> Result<Entry, String> {
        let manifest_text = crate::manifest::read_manifest_text(manifest_path)
            .map_err(|e| format!("reading manifest: {e}"))?;
        let wasm = crate::manifest::read_bounded(
            &manifest_path.with_extension("wasm"),
            crate::manifest::MAX_WASM_BYTES,
        )
        .map_err(|e| format!("reading {name}.wasm: {e}"))?;
        let sig_path = manifest_path.with_extension(SIGNATURE_EXTENSION);
        let sig_text = match crate::manifest::read_bounded(&sig_path, MAX_SIGNATURE_BYTES) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("reading {name}.{SIGNATURE_EXTENSION}: {e}")),
        };
        if let Some(old) = old {
            if old.manifest_text == manifest_text
                && old.sig_text == sig_text
                && old.plugin.sha256() == hex::encode(Sha256::digest(&wasm))
            {
                return Ok(old.clone());
            }
        }
        // Before compiling: an untrusted component is never even handed to the compiler.
        let signer =
            match self
                .signatures
                .check(sig_text.as_deref(), manifest_text.as_bytes(), &wasm)?
            {
                SignatureCheck::Signed(key) => Some(key),
                SignatureCheck::Unsigned => None,
            };
        let manifest = Manifest::parse(&manifest_text, name)
            .map_err(|reason| format!("invalid manifest: {reason}"))?;
        let plugin = self
            .runtime
            .load(manifest, &wasm)
            .map_err(|e| e.to_string())?;
        tracing::info!(
            plugin = %name,
            version = %plugin.manifest().version,
            sha256 = %plugin.sha256(),
            signed_by = signer.as_ref().map(|k| k.as_str()).unwrap_or("-"),
            replaced = old.is_some(),
            "plugin loaded"
        );
        Ok(Entry {
            plugin,
            manifest_text,
            sig_text,
            signer,
        })
    }

    /// `(name, manifest path)` of every `<name>.toml` that has a `<name>.wasm` beside it.
    fn pairs(&self) -> Vec<(String, PathBuf)> {
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            tracing::error!(dir = %self.dir.display(), "cannot read the plugin folder");
            return Vec::new();
        };
        let mut pairs: Vec<(String, PathBuf)> = read
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|e| e == "toml") && p.with_extension("wasm").is_file()
            })
            .filter_map(|p| Some((p.file_stem()?.to_str()?.to_string(), p)))
            .collect();
        pairs.sort();
        pairs
    }

    /// Watches the folder and rescans (debounced) after changes, until the handle is dropped.
    pub fn watch(self: &Arc<Self>) -> anyhow::Result<FolderWatch> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    let _ = tx.send(());
                }
            })?;
        watcher.watch(&self.dir, RecursiveMode::NonRecursive)?;
        let folder = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Let a copy finish writing before reading: events come in bursts.
                tokio::time::sleep(Duration::from_millis(150)).await;
                while rx.try_recv().is_ok() {}
                let Some(folder) = folder.upgrade() else {
                    break;
                };
                folder.rescan().await;
            }
        });
        Ok(FolderWatch {
            _watcher: watcher,
            task,
        })
    }
}

/// Keeps a folder watched; dropping it stops watching.
pub struct FolderWatch {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FolderWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
