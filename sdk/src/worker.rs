//! Worker snapshots for strategies, and the eligibility rules strategies share.
//!
//! This module owns [`WorkerView`] (with [`WorkerStatus`] and [`Health`]), the
//! plain-Rust side of `sentinel:plugin/types.worker-view`, plus the common rules:
//! [`WorkerView::supports`], [`WorkerView::can_take`] and [`pick_next_task`].
//!
//! It is pure: it must never call a host import or keep state between calls, so a
//! strategy built on it stays deterministic (same snapshot, same answer) and testable on
//! the host.

use crate::task::Task;

/// Lifecycle state of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkerStatus {
    /// Taking work.
    #[default]
    Active,
    /// Running work; may still have free slots.
    Busy,
    /// Finishing its work, taking nothing new.
    Draining,
    /// Gone.
    Offline,
}

/// Health of a worker as the coordinator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Health {
    /// All good.
    #[default]
    Healthy,
    /// Working, but worse than usual.
    Degraded,
    /// Must not receive work.
    Unhealthy,
}

/// A read-only snapshot of a worker.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkerView {
    /// Worker id.
    pub id: String,
    /// Lifecycle state.
    pub status: WorkerStatus,
    /// Health.
    pub health: Health,
    /// Slots in total.
    pub max_slots: u32,
    /// Slots running a task.
    pub active_slots: u32,
    /// Slots free.
    pub available_slots: u32,
    /// CPU cores of the worker.
    pub cpu_cores: u32,
    /// Memory of the worker, in MiB.
    pub memory_mb: u64,
    /// Task types the worker runs; empty means every type.
    pub task_types: Vec<String>,
    /// Free-form labels.
    pub labels: Vec<(String, String)>,
    /// 0.0 ..= 1.0
    pub success_rate: f64,
    /// Mean task duration, in milliseconds.
    pub avg_duration_ms: f64,
    /// Time since the last heartbeat, in milliseconds.
    pub heartbeat_age_ms: u64,
}

impl WorkerView {
    /// Whether the worker runs tasks of `task_type` (an empty `task_types` runs all).
    pub fn supports(&self, task_type: &str) -> bool {
        self.task_types.is_empty() || self.task_types.iter().any(|t| t == task_type)
    }

    /// Whether the worker is a candidate for `task`:
    ///
    /// * status `Active`, or `Busy` with free slots (`Draining` and `Offline` never are);
    /// * `available_slots > 0`;
    /// * health is not `Unhealthy`;
    /// * it [`supports`](Self::supports) the task's type.
    ///
    /// ```
    /// use sentinel_sdk::{Task, WorkerView, WorkerStatus};
    /// let w = WorkerView { available_slots: 1, max_slots: 2, ..Default::default() };
    /// assert!(w.can_take(&Task::new("echo", vec![])));
    /// let draining = WorkerView { status: WorkerStatus::Draining, ..w.clone() };
    /// assert!(!draining.can_take(&Task::new("echo", vec![])));
    /// ```
    pub fn can_take(&self, task: &Task) -> bool {
        matches!(self.status, WorkerStatus::Active | WorkerStatus::Busy)
            && self.available_slots > 0
            && self.health != Health::Unhealthy
            && self.supports(&task.task_type)
    }

    /// The first label value for `key`, if any.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The task `worker` should take next: the highest priority among the tasks whose
/// type the worker [`supports`](WorkerView::supports), the earliest in the list on a
/// tie (FIFO). `None` when it supports none of them.
///
/// ```
/// use sentinel_sdk::{Task, WorkerView, worker::pick_next_task};
/// let w = WorkerView { task_types: vec!["a".into()], ..Default::default() };
/// let tasks = [
///     Task::new("a", vec![]).priority(1),
///     Task::new("b", vec![]).priority(9),
///     Task::new("a", vec![]).priority(5),
///     Task::new("a", vec![]).priority(5),
/// ];
/// assert_eq!(pick_next_task(&w, &tasks), Some(2));
/// ```
pub fn pick_next_task(worker: &WorkerView, tasks: &[Task]) -> Option<usize> {
    let mut best: Option<(usize, i32)> = None;
    for (i, task) in tasks.iter().enumerate() {
        if !worker.supports(&task.task_type) {
            continue;
        }
        if best.is_none_or(|(_, p)| task.priority > p) {
            best = Some((i, task.priority));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker() -> WorkerView {
        WorkerView {
            max_slots: 4,
            available_slots: 2,
            active_slots: 2,
            ..Default::default()
        }
    }

    #[test]
    fn eligibility() {
        let t = Task::new("x", vec![]);
        assert!(worker().can_take(&t));
        let busy = WorkerView {
            status: WorkerStatus::Busy,
            ..worker()
        };
        assert!(busy.can_take(&t));
        let full = WorkerView {
            status: WorkerStatus::Busy,
            available_slots: 0,
            ..worker()
        };
        assert!(!full.can_take(&t));
        let sick = WorkerView {
            health: Health::Unhealthy,
            ..worker()
        };
        assert!(!sick.can_take(&t));
        let degraded = WorkerView {
            health: Health::Degraded,
            ..worker()
        };
        assert!(degraded.can_take(&t));
        let other = WorkerView {
            task_types: vec!["y".into()],
            ..worker()
        };
        assert!(!other.can_take(&t));
        let offline = WorkerView {
            status: WorkerStatus::Offline,
            ..worker()
        };
        assert!(!offline.can_take(&t));
    }

    #[test]
    fn next_task_priority_then_fifo() {
        let w = worker();
        assert_eq!(pick_next_task(&w, &[]), None);
        let tasks = [
            Task::new("a", vec![]).priority(-1),
            Task::new("a", vec![]).priority(3),
            Task::new("a", vec![]).priority(3),
        ];
        assert_eq!(pick_next_task(&w, &tasks), Some(1));
        let only_b = WorkerView {
            task_types: vec!["b".into()],
            ..w
        };
        assert_eq!(pick_next_task(&only_b, &tasks), None);
    }
}
