//! The `strategy` world: the [`Strategy`] trait and
//! [`export_strategy!`](crate::export_strategy).
//!
//! This module owns the strategy world's generated bindings (`wit_bindgen::generate!`
//! of `sentinel:plugin/strategy`, behind the cargo feature `strategy`) and the glue from
//! the generated `Guest` trait to [`Strategy`]: conversion of WIT tasks and worker views
//! into [`Task`] and [`WorkerView`], and of the chosen `usize` index into the WIT `u32`.
//!
//! It must never generate or reference the `executor` world (a strategy must export
//! exactly `select-worker` and `next-task`), and it offers no storage, network or
//! clock: strategies are pure functions of the snapshot they are given.

use std::marker::PhantomData;

use crate::task::Task;
use crate::worker::{Health, WorkerStatus, WorkerView, pick_next_task};

/// Generated bindings of the `strategy` world. Not a stable API: use the SDK's types.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "strategy",
        path: "../wit",
        generate_all,
        pub_export_macro: true,
        default_bindings_module: "sentinel_sdk::strategy::bindings",
        export_macro_name: "__export_strategy_world",
    });
}

use bindings::sentinel::plugin::types as wit;

/// A load-balancing strategy.
///
/// Both functions answer with an index into the list they are given, or `None`. The
/// host validates the index: an out-of-range answer is treated as a strategy failure.
///
/// ```
/// use sentinel_sdk::{Strategy, Task, WorkerView};
///
/// /// The eligible worker with the most free slots; ties go to the lowest index.
/// struct MostFree;
///
/// impl Strategy for MostFree {
///     fn select_worker(task: &Task, workers: &[WorkerView]) -> Option<usize> {
///         let mut best: Option<(usize, u32)> = None;
///         for (i, w) in workers.iter().enumerate() {
///             if w.can_take(task) && best.is_none_or(|(_, free)| w.available_slots > free) {
///                 best = Some((i, w.available_slots));
///             }
///         }
///         best.map(|(i, _)| i)
///     }
/// }
///
/// sentinel_sdk::export_strategy!(MostFree);
/// # fn main() {
/// # let w = |free| WorkerView { max_slots: 4, available_slots: free, ..Default::default() };
/// # assert_eq!(MostFree::select_worker(&Task::new("x", vec![]), &[w(1), w(3), w(3)]), Some(1));
/// # }
/// ```
pub trait Strategy {
    /// Push: which of `workers` should run `task`; `None` if no worker fits.
    fn select_worker(task: &Task, workers: &[WorkerView]) -> Option<usize>;

    /// Pull: which of `tasks` `worker` should take next; `None` to take nothing.
    ///
    /// Defaults to [`pick_next_task`]: the highest priority task whose type the worker
    /// supports, the earliest in the list on a tie.
    fn next_task(worker: &WorkerView, tasks: &[Task]) -> Option<usize> {
        pick_next_task(worker, tasks)
    }
}

/// The `Guest` implementation behind [`export_strategy!`](crate::export_strategy).
#[doc(hidden)]
pub struct __Adapter<T>(PhantomData<T>);

impl<T: Strategy> bindings::Guest for __Adapter<T> {
    fn select_worker(task: wit::Task, workers: Vec<wit::WorkerView>) -> Option<u32> {
        let task = Task::from(task);
        let workers: Vec<WorkerView> = workers.into_iter().map(WorkerView::from).collect();
        T::select_worker(&task, &workers).and_then(|i| u32::try_from(i).ok())
    }

    fn next_task(worker: wit::WorkerView, tasks: Vec<wit::Task>) -> Option<u32> {
        let worker = WorkerView::from(worker);
        let tasks: Vec<Task> = tasks.into_iter().map(Task::from).collect();
        T::next_task(&worker, &tasks).and_then(|i| u32::try_from(i).ok())
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

impl From<wit::WorkerView> for WorkerView {
    fn from(w: wit::WorkerView) -> Self {
        WorkerView {
            id: w.id,
            status: match w.status {
                wit::WorkerStatus::Active => WorkerStatus::Active,
                wit::WorkerStatus::Busy => WorkerStatus::Busy,
                wit::WorkerStatus::Draining => WorkerStatus::Draining,
                wit::WorkerStatus::Offline => WorkerStatus::Offline,
            },
            health: match w.health {
                wit::Health::Healthy => Health::Healthy,
                wit::Health::Degraded => Health::Degraded,
                wit::Health::Unhealthy => Health::Unhealthy,
            },
            max_slots: w.max_slots,
            active_slots: w.active_slots,
            available_slots: w.available_slots,
            cpu_cores: w.cpu_cores,
            memory_mb: w.memory_mb,
            task_types: w.task_types,
            labels: w.labels,
            success_rate: w.success_rate,
            avg_duration_ms: w.avg_duration_ms,
            heartbeat_age_ms: w.heartbeat_age_ms,
        }
    }
}

/// Exports a type implementing [`Strategy`] as the component's `select-worker` and
/// `next-task` functions.
///
/// Call it exactly once, at the top level of a `cdylib` crate built for
/// `wasm32-wasip2` with the SDK's `strategy` feature:
///
/// ```
/// # use sentinel_sdk::{Strategy, Task, WorkerView};
/// struct First;
/// impl Strategy for First {
///     fn select_worker(task: &Task, workers: &[WorkerView]) -> Option<usize> {
///         workers.iter().position(|w| w.can_take(task))
///     }
/// }
/// sentinel_sdk::export_strategy!(First);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_strategy {
    ($ty:ty) => {
        const _: () = {
            type __SentinelStrategy = $crate::strategy::__Adapter<$ty>;
            $crate::strategy::bindings::__export_strategy_world!(
                __SentinelStrategy with_types_in $crate::strategy::bindings
            );
        };
    };
}
