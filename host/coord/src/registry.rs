//! WorkerRegistry (seeds 000 and 003): registration, status and capacity, discovery filters,
//! health from heartbeat age, per-worker performance. It reads and writes workers only through
//! [`RegistryStore`]; it never touches tasks or locks (recovery is the heartbeat monitor's job).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::RegistryConfig;
use crate::error::WorkerError;
use crate::model::*;
use crate::store::Store;

#[derive(Clone)]
pub struct WorkerRegistry {
    store: Arc<dyn Store>,
    config: RegistryConfig,
}

/// Seed 002 `getPerformanceSummary` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerPerformance {
    pub worker_id: String,
    pub status: WorkerStatus,
    pub health: HealthState,
    pub completed: u64,
    pub failed: u64,
    pub success_rate: f64,
    pub avg_duration_ms: f64,
}

fn store_err(worker_id: &str) -> impl FnOnce(crate::StoreError) -> WorkerError + '_ {
    move |source| WorkerError::Store {
        worker_id: worker_id.to_string(),
        source,
    }
}

impl WorkerRegistry {
    pub fn new(store: Arc<dyn Store>, config: RegistryConfig) -> Self {
        Self { store, config }
    }

    pub fn thresholds(&self) -> &HealthThresholds {
        &self.config.health
    }

    pub async fn register(&self, reg: &WorkerRegistration) -> Result<WorkerRecord, WorkerError> {
        if reg.worker_id.is_empty() {
            return Err(WorkerError::Invalid {
                worker_id: String::new(),
                message: "worker id must be non-empty".into(),
            });
        }
        self.store
            .register_worker(reg)
            .await
            .map_err(store_err(&reg.worker_id))
    }

    pub async fn deregister(&self, worker_id: &str) -> Result<(), WorkerError> {
        let found = self
            .store
            .deregister_worker(worker_id)
            .await
            .map_err(store_err(worker_id))?;
        found.then_some(()).ok_or_else(|| not_found(worker_id))
    }

    /// An operator's update: applies whichever incarnation is registered.
    pub async fn update_status(
        &self,
        worker_id: &str,
        status: WorkerStatus,
        capacity: Option<CapacityUpdate>,
    ) -> Result<(), WorkerError> {
        self.update_own_status(worker_id, None, status, capacity)
            .await
    }

    /// A worker's update of its own record: `NotFound` if `incarnation` was replaced (a newer
    /// process registered under the same id), so a stale process never overwrites its successor.
    pub async fn update_own_status(
        &self,
        worker_id: &str,
        incarnation: Option<u64>,
        status: WorkerStatus,
        capacity: Option<CapacityUpdate>,
    ) -> Result<(), WorkerError> {
        let found = self
            .store
            .update_worker_status(worker_id, incarnation, status, capacity.as_ref())
            .await
            .map_err(store_err(worker_id))?;
        found.then_some(()).ok_or_else(|| not_found(worker_id))
    }

    /// `NotFound` if the worker is unknown or `incarnation` is no longer the registered one.
    pub async fn heartbeat(
        &self,
        worker_id: &str,
        incarnation: u64,
        info: &HeartbeatInfo,
    ) -> Result<(), WorkerError> {
        let found = self
            .store
            .record_heartbeat(worker_id, incarnation, info)
            .await
            .map_err(store_err(worker_id))?;
        found.then_some(()).ok_or_else(|| not_found(worker_id))
    }

    /// Seed 003 `recordTaskCompletion`. The queue already records outcomes of tasks it settles;
    /// this is for work done outside the queue.
    pub async fn record_task_completion(
        &self,
        worker_id: &str,
        success: bool,
        duration_ms: u64,
    ) -> Result<(), WorkerError> {
        let found = self
            .store
            .record_task_outcome(worker_id, success, duration_ms)
            .await
            .map_err(store_err(worker_id))?;
        found.then_some(()).ok_or_else(|| not_found(worker_id))
    }

    pub async fn get(&self, worker_id: &str) -> Result<Option<WorkerRecord>, WorkerError> {
        self.store
            .get_worker(worker_id)
            .await
            .map_err(store_err(worker_id))
    }

    pub async fn health(&self, worker_id: &str) -> Result<HealthState, WorkerError> {
        let w = self
            .get(worker_id)
            .await?
            .ok_or_else(|| not_found(worker_id))?;
        let now = self.store.now().await.map_err(store_err(worker_id))?;
        Ok(w.health_at(now, &self.config.health))
    }

    /// Seed `listWorkers` / `discoverWorkers`.
    pub async fn list(&self, filter: &WorkerFilter) -> Result<Vec<WorkerRecord>, WorkerError> {
        let all = self.store.list_workers().await.map_err(store_err("*"))?;
        let now = self.store.now().await.map_err(store_err("*"))?;
        Ok(all
            .into_iter()
            .filter(|w| filter.matches(w, now, &self.config.health))
            .collect())
    }

    /// Seed `markStale`: workers whose heartbeat is older than their own stale threshold (at
    /// least `floor_ms`, see [`WorkerRecord::stale_after_ms`]) become offline.
    pub async fn mark_stale(&self, floor_ms: i64) -> Result<Vec<String>, WorkerError> {
        self.store
            .mark_stale_workers(floor_ms)
            .await
            .map_err(store_err("*"))
    }

    pub async fn performance_summary(&self) -> Result<Vec<WorkerPerformance>, WorkerError> {
        let all = self.store.list_workers().await.map_err(store_err("*"))?;
        let now = self.store.now().await.map_err(store_err("*"))?;
        Ok(all
            .into_iter()
            .map(|w| WorkerPerformance {
                health: w.health_at(now, &self.config.health),
                worker_id: w.worker_id,
                status: w.status,
                completed: w.stats.completed,
                failed: w.stats.failed,
                success_rate: w.stats.success_rate(),
                avg_duration_ms: w.stats.average_duration_ms(),
            })
            .collect())
    }
}

fn not_found(worker_id: &str) -> WorkerError {
    WorkerError::NotFound {
        worker_id: worker_id.to_string(),
    }
}
