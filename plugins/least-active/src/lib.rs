//! `least-active`: places a task on the least loaded eligible worker.
//!
//! `select-worker`: among the workers that [`can_take`](WorkerView::can_take) the task
//! (status `active` or `busy` with free slots, `available-slots > 0`, health not
//! `unhealthy`, `task-types` containing the task's type or empty), the one with the
//! fewest `active-slots`; ties go to the most `available-slots`, then the lowest index.
//!
//! `next-task`: the highest priority task whose type the worker supports, first come
//! first served on a tie ([`pick_next_task`](sentinel_sdk::worker::pick_next_task)).

use sentinel_sdk::{Strategy, Task, WorkerView};

/// The `least-active` strategy.
pub struct LeastActive;

impl Strategy for LeastActive {
    fn select_worker(task: &Task, workers: &[WorkerView]) -> Option<usize> {
        let mut best: Option<(usize, &WorkerView)> = None;
        for (i, w) in workers.iter().enumerate() {
            if !w.can_take(task) {
                continue;
            }
            let better = match best {
                None => true,
                Some((_, b)) => {
                    w.active_slots < b.active_slots
                        || (w.active_slots == b.active_slots
                            && w.available_slots > b.available_slots)
                }
            };
            if better {
                best = Some((i, w));
            }
        }
        best.map(|(i, _)| i)
    }
}

sentinel_sdk::export_strategy!(LeastActive);

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_sdk::Health;

    fn w(active: u32, available: u32) -> WorkerView {
        WorkerView {
            max_slots: active + available,
            active_slots: active,
            available_slots: available,
            ..Default::default()
        }
    }

    #[test]
    fn fewest_active_then_most_available_then_lowest_index() {
        let t = Task::new("x", vec![]);
        assert_eq!(
            LeastActive::select_worker(&t, &[w(3, 1), w(1, 1), w(2, 5)]),
            Some(1)
        );
        assert_eq!(
            LeastActive::select_worker(&t, &[w(1, 1), w(1, 3), w(1, 3)]),
            Some(1)
        );
        assert_eq!(LeastActive::select_worker(&t, &[w(0, 0), w(5, 1)]), Some(1));
        let mut sick = w(0, 9);
        sick.health = Health::Unhealthy;
        assert_eq!(LeastActive::select_worker(&t, &[sick, w(4, 1)]), Some(1));
        assert_eq!(LeastActive::select_worker(&t, &[w(1, 0)]), None);
    }

    #[test]
    fn next_task_highest_priority_fifo() {
        let tasks = [
            Task::new("x", vec![]).priority(1),
            Task::new("x", vec![]).priority(7),
            Task::new("x", vec![]).priority(7),
        ];
        assert_eq!(LeastActive::next_task(&w(0, 1), &tasks), Some(1));
        assert_eq!(LeastActive::next_task(&w(0, 1), &[]), None);
    }
}
