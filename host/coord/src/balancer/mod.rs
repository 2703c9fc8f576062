//! LoadBalancer (seeds 000/002/003): chooses a worker for a task (push) or a task for a worker
//! (pull) through a swappable [`Strategy`], reports load distribution and rebalances stranded
//! work. It filters candidates (health, capacity, task type, affinity) before any strategy sees
//! them, and it never trusts a strategy's answer: an out-of-range index or a panic falls back to a
//! built-in strategy.

mod strategy;

pub use strategy::*;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::error::WorkerError;
use crate::model::*;
use crate::registry::WorkerRegistry;
use crate::store::Store;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkerLoad {
    pub worker_id: String,
    pub active_tasks: u32,
    pub capacity: u32,
    pub utilization_percent: f64,
}

/// Seed 000 `LoadDistribution`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadDistribution {
    pub total_capacity: u64,
    pub utilized_capacity: u64,
    pub utilization_percent: f64,
    pub worker_loads: Vec<WorkerLoad>,
}

/// Seed 000 `RebalanceResult`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RebalanceResult {
    pub tasks_moved: u64,
    pub improved_utilization: bool,
    pub before_utilization: f64,
    pub after_utilization: f64,
}

pub struct LoadBalancer {
    store: Arc<dyn Store>,
    registry: WorkerRegistry,
    strategy: RwLock<Arc<dyn Strategy>>,
    fallback: Arc<dyn Strategy>,
}

impl LoadBalancer {
    pub fn new(store: Arc<dyn Store>, registry: WorkerRegistry, kind: StrategyKind) -> Self {
        Self {
            store,
            registry,
            strategy: RwLock::new(Arc::from(kind.build())),
            fallback: Arc::new(LeastLoaded),
        }
    }

    /// Seed `setStrategy`, at run time; any [`Strategy`] (built-in or plugin).
    pub fn set_strategy(&self, strategy: Arc<dyn Strategy>) {
        *self.strategy.write().unwrap_or_else(|p| p.into_inner()) = strategy;
    }

    pub fn set_builtin(&self, kind: StrategyKind) {
        self.set_strategy(Arc::from(kind.build()));
    }

    pub fn strategy_name(&self) -> String {
        self.current().name().to_string()
    }

    fn current(&self) -> Arc<dyn Strategy> {
        self.strategy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Asks the current strategy, rejecting out-of-range answers and panics in favour of the
    /// built-in fallback.
    pub fn choose(&self, task: &TaskInfo, candidates: &[WorkerView]) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        let strategy = self.current();
        let answer = catch_unwind(AssertUnwindSafe(|| strategy.select(task, candidates)));
        match answer {
            Ok(Some(i)) if i < candidates.len() => Some(i),
            Ok(None) => None,
            Ok(Some(i)) => {
                tracing::warn!(
                    strategy = strategy.name(),
                    index = i,
                    candidates = candidates.len(),
                    "strategy answered out of range; using the built-in fallback"
                );
                self.fallback
                    .select(task, candidates)
                    .filter(|&i| i < candidates.len())
            }
            Err(_) => {
                tracing::warn!(
                    strategy = strategy.name(),
                    "strategy panicked; using the built-in fallback"
                );
                self.fallback
                    .select(task, candidates)
                    .filter(|&i| i < candidates.len())
            }
        }
    }

    /// Workers that may take the task: active or busy, not unhealthy, with a free slot,
    /// supporting its type, allowed by its affinity. `same_worker_as` is resolved through the
    /// store (the worker that ran that task).
    pub async fn eligible(
        &self,
        task: &TaskInfo,
        workers: &[WorkerRecord],
    ) -> Result<Vec<WorkerView>, WorkerError> {
        let now = self
            .store
            .now()
            .await
            .map_err(|source| WorkerError::Store {
                worker_id: "*".into(),
                source,
            })?;
        let same_as = match &task.affinity.same_worker_as {
            Some(id) => Some(
                self.store
                    .get_task(&task.tenant, id)
                    .await
                    .map_err(|source| WorkerError::Store {
                        worker_id: "*".into(),
                        source,
                    })?
                    .and_then(|t| t.worker_id),
            ),
            None => None,
        };
        let th = *self.registry.thresholds();
        Ok(workers
            .iter()
            .filter(|w| matches!(w.status, WorkerStatus::Active | WorkerStatus::Busy))
            .filter(|w| w.capacity.available_slots > 0 && w.capabilities.supports(&task.task_type))
            .filter(|w| w.health_at(now, &th) != HealthState::Unhealthy)
            .filter(|w| {
                task.affinity
                    .required_worker
                    .as_ref()
                    .is_none_or(|r| r == &w.worker_id)
            })
            .filter(|w| !task.affinity.excluded_workers.contains(&w.worker_id))
            .filter(|w| {
                same_as
                    .as_ref()
                    .is_none_or(|s| s.as_deref() == Some(w.worker_id.as_str()))
            })
            .map(|w| WorkerView::from_record(w, now, &th))
            .collect())
    }

    /// Seed `selectWorker` (push). `workers = None` fetches the registry.
    pub async fn select_worker(
        &self,
        task: &TaskInfo,
        workers: Option<Vec<WorkerRecord>>,
    ) -> Result<Option<WorkerRecord>, WorkerError> {
        let workers = match workers {
            Some(w) => w,
            None => self.registry.list(&WorkerFilter::default()).await?,
        };
        let candidates = self.eligible(task, &workers).await?;
        Ok(self.choose(task, &candidates).and_then(|i| {
            workers
                .iter()
                .find(|w| w.worker_id == candidates[i].worker_id)
                .cloned()
        }))
    }

    /// Seed `getNextTask` (pull): the highest-priority task (FIFO within a priority) this worker
    /// may run. A worker busier than the cluster average defers to the strategy: if the strategy
    /// would place that task elsewhere, it gets nothing and a less loaded worker takes it. The
    /// least loaded worker never defers, so no task waits for lack of a taker.
    pub async fn get_next_task(
        &self,
        worker_id: &str,
        available: &[Task],
    ) -> Result<Option<Task>, WorkerError> {
        let workers = self.registry.list(&WorkerFilter::default()).await?;
        if !workers.iter().any(|w| w.worker_id == worker_id) {
            return Err(WorkerError::NotFound {
                worker_id: worker_id.to_string(),
            });
        }
        let mut tasks: Vec<&Task> = available
            .iter()
            .filter(|t| matches!(t.state, TaskState::Pending | TaskState::Failed))
            .collect();
        tasks.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.created_at.cmp(&b.created_at))
        });
        for task in tasks {
            let info = TaskInfo::from(task);
            let candidates = self.eligible(&info, &workers).await?;
            let Some(my_index) = candidates.iter().position(|w| w.worker_id == worker_id) else {
                continue;
            };
            let mean = candidates.iter().map(WorkerView::utilisation).sum::<f64>()
                / candidates.len() as f64;
            if candidates[my_index].utilisation() <= mean
                || self.choose(&info, &candidates) == Some(my_index)
            {
                return Ok(Some(task.clone()));
            }
            return Ok(None);
        }
        Ok(None)
    }

    /// Seed `getLoadDistribution`, over workers that are not offline.
    pub async fn load_distribution(&self) -> Result<LoadDistribution, WorkerError> {
        let workers = self.registry.list(&WorkerFilter::default()).await?;
        Ok(distribution(
            workers.iter().filter(|w| w.status != WorkerStatus::Offline),
        ))
    }

    /// Seed `rebalance`. Tasks are pulled, so only running work can be stranded: the running
    /// tasks of workers that are offline or unhealthy (heartbeat too old) are requeued for
    /// healthy workers, and those workers' locks are released.
    pub async fn rebalance(&self) -> Result<RebalanceResult, WorkerError> {
        let workers = self.registry.list(&WorkerFilter::default()).await?;
        let before = distribution(workers.iter()).utilization_percent;
        let now = self
            .store
            .now()
            .await
            .map_err(|source| WorkerError::Store {
                worker_id: "*".into(),
                source,
            })?;
        let th = *self.registry.thresholds();
        let mut moved = 0;
        for w in workers
            .iter()
            .filter(|w| w.health_at(now, &th) == HealthState::Unhealthy)
        {
            let err = |source| WorkerError::Store {
                worker_id: w.worker_id.clone(),
                source,
            };
            let n = self
                .store
                .requeue_worker_tasks(&w.worker_id)
                .await
                .map_err(err)?;
            if n > 0 {
                self.store
                    .release_owner_locks(&w.worker_id)
                    .await
                    .map_err(err)?;
                self.registry
                    .update_status(
                        &w.worker_id,
                        WorkerStatus::Offline,
                        Some(CapacityUpdate {
                            active_tasks: Some(0),
                            ..Default::default()
                        }),
                    )
                    .await?;
                moved += n;
            }
        }
        let after = distribution(self.registry.list(&WorkerFilter::default()).await?.iter())
            .utilization_percent;
        Ok(RebalanceResult {
            tasks_moved: moved,
            improved_utilization: moved > 0,
            before_utilization: before,
            after_utilization: after,
        })
    }
}

fn distribution<'a>(workers: impl Iterator<Item = &'a WorkerRecord>) -> LoadDistribution {
    let pct = |a: u64, m: u64| {
        if m == 0 {
            0.0
        } else {
            a as f64 * 100.0 / m as f64
        }
    };
    let worker_loads: Vec<WorkerLoad> = workers
        .map(|w| WorkerLoad {
            worker_id: w.worker_id.clone(),
            active_tasks: w.capacity.active_tasks,
            capacity: w.capacity.max_tasks,
            utilization_percent: pct(w.capacity.active_tasks as u64, w.capacity.max_tasks as u64),
        })
        .collect();
    let total: u64 = worker_loads.iter().map(|w| w.capacity as u64).sum();
    let used: u64 = worker_loads.iter().map(|w| w.active_tasks as u64).sum();
    LoadDistribution {
        total_capacity: total,
        utilized_capacity: used,
        utilization_percent: pct(used, total),
        worker_loads,
    }
}
