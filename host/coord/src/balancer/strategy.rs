//! The strategy seam: a [`Strategy`] sees plain snapshots (a [`TaskInfo`] and a slice of
//! [`WorkerView`]s) and answers an index into that slice. Built-ins and WASM plugins (another
//! crate) implement the same trait; a strategy must never reach the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::model::*;

/// What a strategy knows about the task to place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub id: String,
    pub tenant: String,
    pub task_type: String,
    pub priority: i32,
    pub affinity: Affinity,
    pub estimated_duration_ms: Option<u64>,
    pub metadata: BTreeMap<String, String>,
}

impl From<&Task> for TaskInfo {
    fn from(t: &Task) -> Self {
        Self {
            id: t.id.clone(),
            tenant: t.tenant.clone(),
            task_type: t.task_type.clone(),
            priority: t.priority,
            affinity: t.affinity.clone(),
            estimated_duration_ms: t
                .metadata
                .get("estimated_duration_ms")
                .and_then(|v| v.parse().ok()),
            metadata: t.metadata.clone(),
        }
    }
}

/// What a strategy knows about a candidate worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerView {
    pub worker_id: String,
    pub status: WorkerStatus,
    pub health: HealthState,
    pub max_tasks: u32,
    pub active_tasks: u32,
    pub available_slots: u32,
    pub supported_task_types: Vec<String>,
    pub cpu_cores: u32,
    pub memory_mb: u64,
    pub completed: u64,
    pub failed: u64,
    pub success_rate: f64,
    pub avg_duration_ms: f64,
    pub load: Option<f64>,
}

impl WorkerView {
    pub fn from_record(w: &WorkerRecord, now_ms: i64, thresholds: &HealthThresholds) -> Self {
        Self {
            worker_id: w.worker_id.clone(),
            status: w.status,
            health: w.health_at(now_ms, thresholds),
            max_tasks: w.capacity.max_tasks,
            active_tasks: w.capacity.active_tasks,
            available_slots: w.capacity.available_slots,
            supported_task_types: w.capabilities.supported_task_types.clone(),
            cpu_cores: w.capabilities.cpu_cores,
            memory_mb: w.capabilities.memory_mb,
            completed: w.stats.completed,
            failed: w.stats.failed,
            success_rate: w.stats.success_rate(),
            avg_duration_ms: w.stats.average_duration_ms(),
            load: w.heartbeat.load,
        }
    }

    /// active / max, 1.0 for a worker with no slots.
    pub fn utilisation(&self) -> f64 {
        if self.max_tasks == 0 {
            1.0
        } else {
            self.active_tasks as f64 / self.max_tasks as f64
        }
    }

    /// Seed 003: `0.5 × available/max + 0.3 × success rate + 0.2 × speed`, where speed is
    /// `1 / average seconds` capped at 1 (1 with no history).
    pub fn weighted_score(&self) -> f64 {
        let capacity = if self.max_tasks == 0 {
            0.0
        } else {
            self.available_slots as f64 / self.max_tasks as f64
        };
        let speed = if self.avg_duration_ms <= 0.0 {
            1.0
        } else {
            (1000.0 / self.avg_duration_ms).min(1.0)
        };
        0.5 * capacity + 0.3 * self.success_rate + 0.2 * speed
    }
}

/// A load-balancing strategy. Object safe; called with the eligible workers only (healthy enough,
/// with capacity, supporting the task type, allowed by affinity). `None` means "none of these".
pub trait Strategy: Send + Sync {
    fn name(&self) -> &str;
    fn select(&self, task: &TaskInfo, workers: &[WorkerView]) -> Option<usize>;
}

/// Built-in strategies by their seed names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    RoundRobin,
    LeastLoaded,
    CapacityBased,
    Affinity,
    CapabilityMatch,
    Random,
    Weighted,
    Adaptive,
}

impl StrategyKind {
    pub const ALL: [StrategyKind; 8] = [
        StrategyKind::RoundRobin,
        StrategyKind::LeastLoaded,
        StrategyKind::CapacityBased,
        StrategyKind::Affinity,
        StrategyKind::CapabilityMatch,
        StrategyKind::Random,
        StrategyKind::Weighted,
        StrategyKind::Adaptive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::RoundRobin => "round_robin",
            StrategyKind::LeastLoaded => "least_loaded",
            StrategyKind::CapacityBased => "capacity_based",
            StrategyKind::Affinity => "affinity",
            StrategyKind::CapabilityMatch => "capability_match",
            StrategyKind::Random => "random",
            StrategyKind::Weighted => "weighted",
            StrategyKind::Adaptive => "adaptive",
        }
    }

    /// Accepts seed 000's `least_loaded` and seed 002's `least-loaded` spellings.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.replace('-', "_");
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn build(self) -> Box<dyn Strategy> {
        match self {
            StrategyKind::RoundRobin => Box::new(RoundRobin::default()),
            StrategyKind::LeastLoaded => Box::new(LeastLoaded),
            StrategyKind::CapacityBased => Box::new(CapacityBased),
            StrategyKind::Affinity => Box::new(AffinityStrategy::default()),
            StrategyKind::CapabilityMatch => Box::new(CapabilityMatch),
            StrategyKind::Random => Box::new(RandomChoice),
            StrategyKind::Weighted => Box::new(Weighted),
            StrategyKind::Adaptive => Box::new(Adaptive::default()),
        }
    }
}

/// Index of the best worker by `key`, the first one winning ties (so results are deterministic).
fn best_by(workers: &[WorkerView], key: impl Fn(&WorkerView) -> f64) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, w) in workers.iter().enumerate() {
        let k = key(w);
        if best.is_none_or(|(_, b)| k > b) {
            best = Some((i, k));
        }
    }
    best.map(|(i, _)| i)
}

#[derive(Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Strategy for RoundRobin {
    fn name(&self) -> &str {
        "round_robin"
    }
    fn select(&self, _: &TaskInfo, workers: &[WorkerView]) -> Option<usize> {
        (!workers.is_empty()).then(|| self.next.fetch_add(1, Ordering::Relaxed) % workers.len())
    }
}

/// Fewest active tasks; ties go to the lower utilisation.
pub struct LeastLoaded;

impl Strategy for LeastLoaded {
    fn name(&self) -> &str {
        "least_loaded"
    }
    fn select(&self, _: &TaskInfo, workers: &[WorkerView]) -> Option<usize> {
        best_by(workers, |w| {
            -(w.active_tasks as f64) - w.utilisation() / 2.0
        })
    }
}

/// Most free slots.
pub struct CapacityBased;

impl Strategy for CapacityBased {
    fn name(&self) -> &str {
        "capacity_based"
    }
    fn select(&self, _: &TaskInfo, workers: &[WorkerView]) -> Option<usize> {
        best_by(workers, |w| w.available_slots as f64)
    }
}

/// Prefers the worker that last ran a task of the same type (warm caches), else least loaded.
#[derive(Default)]
pub struct AffinityStrategy {
    last: Mutex<HashMap<String, String>>,
}

impl Strategy for AffinityStrategy {
    fn name(&self) -> &str {
        "affinity"
    }
    fn select(&self, task: &TaskInfo, workers: &[WorkerView]) -> Option<usize> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let warm = last
            .get(&task.task_type)
            .and_then(|id| workers.iter().position(|w| &w.worker_id == id));
        let pick = warm.or_else(|| LeastLoaded.select(task, workers))?;
        last.insert(task.task_type.clone(), workers[pick].worker_id.clone());
        Some(pick)
    }
}

/// The most specialised worker for the task type (fewest other types; "any type" workers last),
/// then least loaded.
pub struct CapabilityMatch;

impl Strategy for CapabilityMatch {
    fn name(&self) -> &str {
        "capability_match"
    }
    fn select(&self, task: &TaskInfo, workers: &[WorkerView]) -> Option<usize> {
        best_by(workers, |w| {
            let specificity = if w.supported_task_types.is_empty() {
                0.0
            } else if w.supported_task_types.contains(&task.task_type) {
                1000.0 - w.supported_task_types.len() as f64
            } else {
                -1.0
            };
            specificity * 1000.0 - w.active_tasks as f64
        })
    }
}

pub struct RandomChoice;

impl Strategy for RandomChoice {
    fn name(&self) -> &str {
        "random"
    }
    fn select(&self, _: &TaskInfo, workers: &[WorkerView]) -> Option<usize> {
        (!workers.is_empty()).then(|| rand::rng().random_range(0..workers.len()))
    }
}

/// Seed 003's weighted priority score.
pub struct Weighted;

impl Strategy for Weighted {
    fn name(&self) -> &str {
        "weighted"
    }
    fn select(&self, _: &TaskInfo, workers: &[WorkerView]) -> Option<usize> {
        best_by(workers, WorkerView::weighted_score)
    }
}

/// Least loaded when the candidates are busy (over 75 % used), weighted once workers have a
/// history to judge by, round robin otherwise.
#[derive(Default)]
pub struct Adaptive {
    rr: RoundRobin,
}

impl Strategy for Adaptive {
    fn name(&self) -> &str {
        "adaptive"
    }
    fn select(&self, task: &TaskInfo, workers: &[WorkerView]) -> Option<usize> {
        let (active, max) = workers.iter().fold((0u64, 0u64), |(a, m), w| {
            (a + w.active_tasks as u64, m + w.max_tasks as u64)
        });
        if max > 0 && active as f64 / max as f64 > 0.75 {
            LeastLoaded.select(task, workers)
        } else if workers.iter().any(|w| w.completed + w.failed > 0) {
            Weighted.select(task, workers)
        } else {
            self.rr.select(task, workers)
        }
    }
}
