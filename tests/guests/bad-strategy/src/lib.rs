//! `bad-strategy`: a strategy that answers index 4 000 000 000 (out of range for any
//! real list) from both `select-worker` and `next-task`. The host must reject the
//! answer instead of indexing with it.

use sentinel_sdk::{Strategy, Task, WorkerView};

/// The index every answer uses.
pub const BAD_INDEX: usize = 4_000_000_000;

/// The `bad-strategy` strategy.
pub struct BadStrategy;

impl Strategy for BadStrategy {
    fn select_worker(_task: &Task, _workers: &[WorkerView]) -> Option<usize> {
        Some(BAD_INDEX)
    }

    fn next_task(_worker: &WorkerView, _tasks: &[Task]) -> Option<usize> {
        Some(BAD_INDEX)
    }
}

sentinel_sdk::export_strategy!(BadStrategy);
