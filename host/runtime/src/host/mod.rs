//! Host implementations of the plugin worlds' imports, one file per WIT interface.
//!
//! Each file implements exactly one generated `Host` trait over `SandboxState` and must
//! never reach outside what the sandbox's grant allows.

pub mod config;
pub mod http;
pub mod keyvalue;
pub mod logging;
pub mod progress;
