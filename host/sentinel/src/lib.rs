//! The Sentinel host: a worker process that runs tasks in WebAssembly sandboxes, coordinated
//! through a shared store, with an HTTP API and an operator CLI.
//!
//! Thin by design: the sandbox is `sentinel-runtime`, coordination is `sentinel-coord`; this
//! crate wires them into a process (`node`), runs the execution loop (`worker`), and speaks
//! HTTP (`api` server side, `client` for the CLI).

pub mod api;
pub mod bridges;
pub mod cancels;
pub mod cli;
pub mod client;
pub mod config;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod tenancy;
pub mod trust;
pub mod worker;
