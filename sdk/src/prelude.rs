//! The names most plugins need: `use sentinel_sdk::prelude::*;`.
//!
//! This module owns nothing: it only re-exports, and must never grow items of its own
//! or re-export something from a world whose feature is off.

pub use crate::task::{Output, Task, TaskError};
pub use crate::worker::{Health, WorkerStatus, WorkerView};

#[cfg(feature = "executor")]
pub use crate::executor::{Executor, progress};

#[cfg(feature = "strategy")]
pub use crate::strategy::Strategy;
