//! The `executor` world: the [`Executor`] trait, [`export_executor!`](crate::export_executor)
//! and [`progress`].
//!
//! This module owns the executor world's generated bindings (`wit_bindgen::generate!`
//! of `sentinel:plugin/executor`, behind the cargo feature `executor`) and the glue from
//! the generated `Guest` trait to [`Executor`]: conversion of the WIT `task` into
//! [`Task`], and of [`Output`]/[`TaskError`] back.
//!
//! It must never generate or reference the `strategy` world: every generated world is
//! embedded in the binary and merged by `wit-component`, so an executor carrying the
//! strategy world would have to export `select-worker`/`next-task` too.

use std::marker::PhantomData;

use crate::task::{Output, Task, TaskError};

/// Generated bindings of the `executor` world. Not a stable API: use the SDK's types.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "executor",
        path: "../wit",
        generate_all,
        pub_export_macro: true,
        default_bindings_module: "sentinel_sdk::executor::bindings",
        export_macro_name: "__export_executor_world",
    });
}

use bindings::sentinel::plugin::types as wit;

/// A task handler.
///
/// Implement it on a unit struct and export it with
/// [`export_executor!`](crate::export_executor):
///
/// ```
/// use sentinel_sdk::{Executor, Output, Task, TaskError};
///
/// struct Echo;
///
/// impl Executor for Echo {
///     fn run(task: Task) -> Result<Output, TaskError> {
///         Ok(Output::bytes(task.payload))
///     }
/// }
///
/// sentinel_sdk::export_executor!(Echo);
/// # fn main() {
/// # assert_eq!(Echo::run(Task::new("echo", b"hi".to_vec())).unwrap().as_bytes(), b"hi");
/// # }
/// ```
///
/// A panic, a trap, running out of memory or time all end the task with a failure
/// recorded by the host; return a [`TaskError`] for failures the plugin understands.
pub trait Executor {
    /// Runs one task. Each call gets a fresh instance: nothing survives between tasks
    /// except what the plugin stores in [`memory`](crate::memory).
    fn run(task: Task) -> Result<Output, TaskError>;
}

/// Reports progress of the running task: `percent` (clamped to 0..=100 by the host) and
/// a short message (truncated to 1 KiB by the host). Every report also counts as the
/// task's heartbeat, so long tasks should report at least every few seconds.
pub fn progress(percent: u8, message: &str) {
    bindings::sentinel::plugin::progress::report(percent.min(100), message);
}

/// The `Guest` implementation behind [`export_executor!`](crate::export_executor).
#[doc(hidden)]
pub struct __Adapter<T>(PhantomData<T>);

impl<T: Executor> bindings::Guest for __Adapter<T> {
    fn run(task: wit::Task) -> Result<Vec<u8>, wit::TaskError> {
        match T::run(task.into()) {
            Ok(output) => Ok(output.into_bytes()),
            Err(e) => Err(wit::TaskError {
                message: e.message,
                retryable: e.retryable,
            }),
        }
    }
}

impl From<wit::Task> for Task {
    fn from(t: wit::Task) -> Self {
        Task {
            id: t.id,
            task_type: t.task_type,
            tenant: t.tenant,
            priority: t.priority,
            attempt: t.attempt,
            payload: t.payload,
            metadata: t.metadata,
        }
    }
}

/// Exports a type implementing [`Executor`] as the component's `run` function.
///
/// Call it exactly once, at the top level of a `cdylib` crate built for
/// `wasm32-wasip2` with the SDK's `executor` feature:
///
/// ```
/// # use sentinel_sdk::{Executor, Output, Task, TaskError};
/// struct Noop;
/// impl Executor for Noop {
///     fn run(_task: Task) -> Result<Output, TaskError> {
///         Output::json(&())
///     }
/// }
/// sentinel_sdk::export_executor!(Noop);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_executor {
    ($ty:ty) => {
        const _: () = {
            type __SentinelExecutor = $crate::executor::__Adapter<$ty>;
            $crate::executor::bindings::__export_executor_world!(
                __SentinelExecutor with_types_in $crate::executor::bindings
            );
        };
    };
}
