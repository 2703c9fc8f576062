//! Generated bindings for the `sentinel:plugin` worlds.
//!
//! One explicit `bindgen!` per world and nothing else: hand-written host code lives in
//! `host/`, so regenerating bindings never touches behaviour. The strategy world reuses
//! the executor world's shared types and logging so the host has one Rust type per WIT type.
#![allow(missing_docs)]

/// The `executor` world: task handlers.
pub mod executor {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "sentinel:plugin/executor",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "wasi:keyvalue/store.bucket": crate::host::keyvalue::BucketHandle,
        },
    });
}

/// The `strategy` world: load-balancing strategies.
pub mod strategy {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "sentinel:plugin/strategy",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "sentinel:plugin/types": super::executor::sentinel::plugin::types,
            "wasi:logging/logging": super::executor::wasi::logging::logging,
        },
    });
}

pub use executor::sentinel::plugin::types::{Health, Task, TaskError, WorkerStatus, WorkerView};
