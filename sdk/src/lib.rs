//! # sentinel-sdk: write Sentinel plugins in Rust
//!
//! A Sentinel plugin is a WebAssembly component built for `wasm32-wasip2` that
//! implements one of the two worlds of the `sentinel:plugin@0.1.0` WIT package
//! (`wit/sentinel.wit`):
//!
//! * an **executor** runs tasks: implement [`Executor`] and call
//!   [`export_executor!`] (cargo feature `executor`);
//! * a **strategy** places tasks on workers: implement [`Strategy`] and call
//!   [`export_strategy!`] (cargo feature `strategy`).
//!
//! Enable exactly one of the two features in a plugin crate. Each feature runs its own
//! `wit_bindgen::generate!`, and every generated world is embedded in the binary as a
//! component-type section that `wit-component` merges, so an executor must never
//! carry the strategy world (and vice versa). Build executors and strategies in
//! separate `cargo build` invocations, or Cargo's feature unification turns both on.
//!
//! ## An executor
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! sentinel-sdk = { workspace = true, features = ["executor"] }
//! serde = { workspace = true }
//! ```
//!
#![cfg_attr(feature = "executor", doc = "```rust")]
#![cfg_attr(not(feature = "executor"), doc = "```rust,ignore")]
//! use sentinel_sdk::{Executor, Output, Task, TaskError};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Greet {
//!     name: String,
//! }
//!
//! #[derive(Serialize)]
//! struct Greeting {
//!     greeting: String,
//! }
//!
//! struct Hello;
//!
//! impl Executor for Hello {
//!     fn run(task: Task) -> Result<Output, TaskError> {
//!         // A payload that does not parse is a non-retryable error with a clear message.
//!         let greet: Greet = task.json()?;
//!         if greet.name.is_empty() {
//!             return Err(TaskError::fatal("`name` must not be empty"));
//!         }
//!         Output::json(&Greeting { greeting: format!("hello, {}", greet.name) })
//!     }
//! }
//!
//! sentinel_sdk::export_executor!(Hello);
//!
//! # fn main() {
//! // Executors are plain Rust: their logic can be tested on the host, as long as the
//! // test does not call a host import (log, progress, memory, config).
//! let out = Hello::run(Task::new("hello", br#"{"name": "ada"}"#.to_vec())).unwrap();
//! assert_eq!(out.as_bytes(), br#"{"greeting":"hello, ada"}"#);
//! let err = Hello::run(Task::new("hello", b"not json".to_vec())).unwrap_err();
//! assert!(!err.retryable);
//! # }
//! ```
//!
//! Inside [`Executor::run`] a plugin can also call:
//!
//! * [`info!`], [`warn!`], [`error!`], … (or [`log::info()`] and friends): `wasi:logging`;
//! * [`progress(percent, message)`](progress): progress, which is also the task's heartbeat;
//! * [`memory::open`]: the tenant's shared memory (`wasi:keyvalue`), with JSON helpers;
//! * [`config::get`]: the plugin's `[config]` table from its manifest (`wasi:config`);
//! * the Rust standard library for files (`/scratch`, read-only dirs), env vars and
//!   clocks, as far as the manifest's `[capabilities]` and the host policy allow.
//!
//! ## A strategy
//!
#![cfg_attr(feature = "strategy", doc = "```rust")]
#![cfg_attr(not(feature = "strategy"), doc = "```rust,ignore")]
//! use sentinel_sdk::{Strategy, Task, WorkerView};
//!
//! /// Picks the first worker that can take the task.
//! struct FirstFit;
//!
//! impl Strategy for FirstFit {
//!     fn select_worker(task: &Task, workers: &[WorkerView]) -> Option<usize> {
//!         workers.iter().position(|w| w.can_take(task))
//!     }
//!     // `next_task` defaults to sentinel_sdk::worker::pick_next_task: the highest
//!     // priority task the worker supports, first come first served.
//! }
//!
//! sentinel_sdk::export_strategy!(FirstFit);
//! # fn main() {}
//! ```
//!
//! ## Building
//!
//! ```sh
//! cargo build --target wasm32-wasip2 --profile guest -p my-plugin
//! ```
//!
//! `wasm32-wasip2` emits a component directly. Next to the `.wasm`, a plugin ships a
//! `manifest.toml` (name, kind, task types, capabilities, limits, config) that the
//! host reads; in this repository `sentinel-guest-build` builds and lays them out.
//!
//! ## What the SDK must never do
//!
//! The SDK is a thin, allocation-light layer over the generated bindings: it never
//! spawns, caches across tasks, talks to the network, or reads anything the plugin
//! did not ask for. Everything a plugin can reach is granted by its manifest and
//! enforced by the host; the SDK only makes it convenient.

#![warn(missing_docs)]
// The crate docs link to items of both worlds; without both features some do not exist.
#![cfg_attr(
    not(all(feature = "executor", feature = "strategy")),
    allow(rustdoc::broken_intra_doc_links)
)]

pub mod task;
pub mod worker;

#[cfg(any(feature = "executor", feature = "strategy"))]
pub mod log;

#[cfg(feature = "executor")]
pub mod config;
#[cfg(feature = "executor")]
pub mod executor;
#[cfg(feature = "executor")]
pub mod memory;

#[cfg(feature = "strategy")]
pub mod strategy;

pub mod prelude;

pub use task::{Output, Task, TaskError};
pub use worker::{Health, WorkerStatus, WorkerView};

#[cfg(feature = "executor")]
pub use executor::{Executor, progress};

#[cfg(feature = "strategy")]
pub use strategy::Strategy;
