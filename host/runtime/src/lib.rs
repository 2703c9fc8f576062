//! Sentinel's WebAssembly sandbox runtime.
//!
//! Owns everything between a plugin file and a finished task: the engine (pooling,
//! epochs), the precompiled-component cache, manifests and the capability grant, one
//! fresh sandbox per task with memory/CPU/time/output/log limits, strategy plugins and
//! the hot-reloading plugin folder. It knows nothing about stores, queues or networks:
//! the coordination layer reaches in only through `services` (shared memory, progress).
#![deny(missing_docs)]

pub mod bindings;
mod cache;
pub mod engine;
pub mod error;
pub mod executor;
pub mod folder;
mod host;
pub mod interrupt;
pub mod log;
pub mod manifest;
pub mod policy;
pub mod runtime;
mod sandbox;
pub mod scratch;
pub mod services;
pub mod signature;
mod state;
pub mod strategy;

pub use bindings::{Health, Task, TaskError, WorkerStatus, WorkerView};
pub use error::{PluginError, SandboxError};
pub use executor::{ExecutorPlugin, TaskOutcome};
pub use folder::{PluginFolder, PluginStatus};
pub use interrupt::{Bound, Interrupt, Reason};
pub use manifest::{Manifest, PluginKind};
pub use policy::{Ceiling, Grant, HostPolicy, Limits};
pub use runtime::{LoadedPlugin, Runtime, RuntimeConfig};
pub use services::{InMemoryKv, KvBackend, KvError, ProgressSink, TaskServices};
pub use signature::{PrivateKey, PublicKey, SignaturePolicy};
pub use strategy::StrategyPlugin;
