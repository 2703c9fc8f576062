//! `weighted-score`: places a task on the best-scoring eligible worker.
//!
//! `select-worker`:
//!
//! * candidates are the workers that [`can_take`](WorkerView::can_take) the task:
//!   status `active` (or `busy` with free slots), `available-slots > 0`, health not
//!   `unhealthy`, and `task-types` containing the task's type or empty;
//! * each candidate scores `0.5 × capacity + 0.3 × success rate + 0.2 × speed`, where
//!   `capacity = available-slots / max-slots` (0 when `max-slots` is 0, at most 1),
//!   the success rate is clamped to 0..=1, and
//!   `speed = 1 − avg-duration-ms / max avg-duration-ms over the candidates`
//!   (1.0 for everyone when that maximum is 0);
//! * the highest score wins; ties go to the lowest index. No candidate: none.
//!
//! `next-task`: the highest priority task whose type the worker supports, the earliest
//! in the list on a tie ([`pick_next_task`](sentinel_sdk::worker::pick_next_task)).

use sentinel_sdk::{Strategy, Task, WorkerView};

/// A finite, non-negative number, or 0.
fn sane(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 { x } else { 0.0 }
}

/// The score of `worker` given the largest average duration among the candidates.
pub fn score(worker: &WorkerView, max_avg_duration_ms: f64) -> f64 {
    let capacity = if worker.max_slots == 0 {
        0.0
    } else {
        (f64::from(worker.available_slots) / f64::from(worker.max_slots)).min(1.0)
    };
    let success = sane(worker.success_rate).min(1.0);
    let speed = if max_avg_duration_ms > 0.0 {
        1.0 - sane(worker.avg_duration_ms) / max_avg_duration_ms
    } else {
        1.0
    };
    0.5 * capacity + 0.3 * success + 0.2 * speed
}

/// The `weighted-score` strategy.
pub struct WeightedScore;

impl Strategy for WeightedScore {
    fn select_worker(task: &Task, workers: &[WorkerView]) -> Option<usize> {
        let candidates: Vec<usize> = (0..workers.len())
            .filter(|&i| workers[i].can_take(task))
            .collect();
        let max_avg = candidates
            .iter()
            .map(|&i| sane(workers[i].avg_duration_ms))
            .fold(0.0, f64::max);
        let mut best: Option<(usize, f64)> = None;
        for i in candidates {
            let s = score(&workers[i], max_avg);
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((i, s));
            }
        }
        best.map(|(i, _)| i)
    }
}

sentinel_sdk::export_strategy!(WeightedScore);

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_sdk::{Health, WorkerStatus};

    fn w(available: u32, max: u32, success: f64, avg: f64) -> WorkerView {
        WorkerView {
            max_slots: max,
            available_slots: available,
            active_slots: max - available,
            success_rate: success,
            avg_duration_ms: avg,
            ..Default::default()
        }
    }

    #[test]
    fn formula() {
        // capacity 0.5, success 1, speed 1 - 50/100 = 0.5
        let s = score(&w(2, 4, 1.0, 50.0), 100.0);
        assert!((s - (0.25 + 0.3 + 0.1)).abs() < 1e-12);
        // all durations 0: speed 1
        let s = score(&w(4, 4, 0.0, 0.0), 0.0);
        assert!((s - 0.7).abs() < 1e-12);
    }

    #[test]
    fn picks_highest_score_ties_lowest_index() {
        let t = Task::new("x", vec![]);
        let workers = [w(1, 4, 1.0, 10.0), w(4, 4, 1.0, 10.0), w(4, 4, 1.0, 10.0)];
        assert_eq!(WeightedScore::select_worker(&t, &workers), Some(1));
        // the fast worker beats the slow one at equal capacity and success
        let workers = [w(2, 4, 0.9, 100.0), w(2, 4, 0.9, 20.0)];
        assert_eq!(WeightedScore::select_worker(&t, &workers), Some(1));
    }

    #[test]
    fn only_candidates() {
        let t = Task::new("x", vec![]);
        let mut sick = w(4, 4, 1.0, 0.0);
        sick.health = Health::Unhealthy;
        let mut draining = w(4, 4, 1.0, 0.0);
        draining.status = WorkerStatus::Draining;
        let mut other = w(4, 4, 1.0, 0.0);
        other.task_types = vec!["y".into()];
        let full = w(0, 4, 1.0, 0.0);
        assert_eq!(
            WeightedScore::select_worker(
                &t,
                &[sick.clone(), draining.clone(), other.clone(), full.clone()]
            ),
            None
        );
        let mut busy = w(1, 4, 0.1, 500.0);
        busy.status = WorkerStatus::Busy;
        assert_eq!(
            WeightedScore::select_worker(&t, &[sick, draining, other, full, busy]),
            Some(4)
        );
        assert_eq!(WeightedScore::select_worker(&t, &[]), None);
    }

    #[test]
    fn next_task_priority_fifo_supported() {
        let mut worker = w(1, 1, 1.0, 0.0);
        worker.task_types = vec!["a".into()];
        let tasks = [
            Task::new("b", vec![]).priority(10),
            Task::new("a", vec![]).priority(2),
            Task::new("a", vec![]).priority(2),
        ];
        assert_eq!(WeightedScore::next_task(&worker, &tasks), Some(1));
        assert_eq!(WeightedScore::next_task(&worker, &tasks[..1]), None);
    }
}
