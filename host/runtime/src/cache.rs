//! On-disk cache of precompiled components.
//!
//! Compiling an 18 MB component takes seconds; mapping its precompiled form takes
//! milliseconds. Entries are keyed by the component's SHA-256 *and* the engine's
//! compatibility hash, because an engine with other codegen flags rejects artifacts.
//! The cache is an optimisation only: any failure falls back to compiling.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Directory of `<sha256>-<engine>.cwasm` files.
pub struct ComponentCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

impl ComponentCache {
    /// A cache in `dir`, or no cache at all when `dir` is `None`.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> ComponentCache {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ComponentCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    /// The component for `bytes` (whose SHA-256 is `sha256`), from the cache or freshly compiled.
    pub fn load(&self, engine: &Engine, sha256: &str, bytes: &[u8]) -> anyhow::Result<Component> {
        let Some(dir) = &self.dir else {
            return Ok(Component::new(engine, bytes)?);
        };
        let path = dir.join(format!("{sha256}-{}.cwasm", self.engine_key));
        if path.exists() {
            // SAFETY: the file was written by `Component::serialize` of an engine with the
            // same compatibility hash, into a directory only this host writes, and is
            // replaced atomically (rename), so it is never observed half-written.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding unusable cache entry");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = store(dir, &path, &component) {
            tracing::warn!(path = %path.display(), error = %e, "could not write the component cache");
        }
        Ok(component)
    }
}

fn store(dir: &Path, path: &Path, component: &Component) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize()?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::fs::write(tmp.path(), &bytes)?;
    tmp.persist(path)?;
    Ok(())
}
