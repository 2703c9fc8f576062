//! `bad-strategy`: a strategy that answers index 4 000 000 000 (out of range for any
//! real list) from both `select-worker` and `next-task`. The host must reject the
//! answer instead of indexing with it.
//!
//! For a task of type `clock`, `select-worker` instead answers from the wall clock, the
//! monotonic clock and WASI randomness (an index among the workers): the host promises
//! strategies are deterministic, so the same snapshot must give the same index every call.

use sentinel_sdk::{Strategy, Task, WorkerView};

/// The index every answer uses.
pub const BAD_INDEX: usize = 4_000_000_000;

/// The `bad-strategy` strategy.
pub struct BadStrategy;

impl Strategy for BadStrategy {
    fn select_worker(task: &Task, workers: &[WorkerView]) -> Option<usize> {
        if task.task_type == "clock" && !workers.is_empty() {
            return Some((noise() % workers.len() as u64) as usize);
        }
        Some(BAD_INDEX)
    }

    fn next_task(_worker: &WorkerView, _tasks: &[Task]) -> Option<usize> {
        Some(BAD_INDEX)
    }
}

/// Everything a guest could use to vary its answer between calls.
fn noise() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mono = std::time::Instant::now();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(wall);
    h.write_u64(mono.elapsed().as_nanos() as u64);
    std::hint::black_box(h.finish()) ^ wall
}

sentinel_sdk::export_strategy!(BadStrategy);
