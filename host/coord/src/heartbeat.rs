//! HeartbeatMonitor (seeds 000/001): periodic heartbeats that also extend the leases of the tasks
//! this process (its incarnation) claimed; stale-worker detection, each worker judged by its own
//! announced threshold; recovery (release the dead worker's locks, requeue its running tasks,
//! leave it offline). [`Maintenance`] runs the fleet-wide chores on exactly one elected worker at
//! a time, holding a lease lock; it must never run them without holding that lock. Each chore is
//! independent: one that fails is logged and reported, and the others still run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::config::{HeartbeatConfig, MemoryConfig, QueueConfig};
use crate::error::{StoreError, WorkerError};
use crate::model::*;
use crate::registry::WorkerRegistry;
use crate::store::Store;

/// Supplies fresh health data for each automatic heartbeat.
pub type HeartbeatSource = Arc<dyn Fn() -> HeartbeatInfo + Send + Sync>;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryReport {
    pub locks_released: u64,
    pub tasks_requeued: u64,
}

pub struct HeartbeatMonitor {
    store: Arc<dyn Store>,
    registry: WorkerRegistry,
    config: HeartbeatConfig,
    lease_ms: u64,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl HeartbeatMonitor {
    /// `lease_ms` is what each heartbeat extends the worker's task leases to (the queue's lease).
    pub fn new(
        store: Arc<dyn Store>,
        registry: WorkerRegistry,
        config: HeartbeatConfig,
        lease_ms: u64,
    ) -> Self {
        Self {
            store,
            registry,
            config,
            lease_ms,
            task: Mutex::new(None),
        }
    }

    pub fn config(&self) -> &HeartbeatConfig {
        &self.config
    }

    /// Seed `sendHeartbeat`: refreshes the worker's heartbeat and the leases of the tasks this
    /// incarnation claimed. `NotFound` (and no lease extended) if the worker is unknown or a newer
    /// incarnation replaced this one.
    pub async fn send_heartbeat(
        &self,
        worker_id: &str,
        incarnation: u64,
        info: &HeartbeatInfo,
    ) -> Result<(), WorkerError> {
        self.registry
            .heartbeat(worker_id, incarnation, info)
            .await?;
        self.store
            .extend_worker_leases(worker_id, incarnation, self.lease_ms)
            .await
            .map_err(|source| WorkerError::Store {
                worker_id: worker_id.to_string(),
                source,
            })?;
        Ok(())
    }

    /// Seed `start`: heartbeats every `interval_ms` until [`stop`](Self::stop). A failed
    /// heartbeat is logged and retried on the next tick rather than ending the loop.
    pub fn start(self: &Arc<Self>, worker_id: &str, incarnation: u64, source: HeartbeatSource) {
        let me = Arc::clone(self);
        let id = worker_id.to_string();
        let every = Duration::from_millis(self.config.interval_ms.max(1));
        let handle = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = me.send_heartbeat(&id, incarnation, &source()).await {
                    tracing::warn!(worker_id = %id, error = %e, "heartbeat failed");
                }
            }
        });
        if let Some(old) = self
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(handle)
        {
            old.abort();
        }
    }

    pub fn stop(&self) {
        if let Some(h) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            h.abort();
        }
    }

    /// Seed `checkStaleWorkers`: marks offline every worker whose heartbeat is older than its
    /// own announced threshold (never less than two of its intervals nor
    /// [`MIN_STALE_THRESHOLD_MS`]; this node's own threshold plays no part) and, if recovery is
    /// enabled, recovers each. Returns their ids. A recovery that fails is logged and left to the
    /// reaper (the worker's leases still expire); it does not stop the others.
    pub async fn check_stale_workers(&self) -> Result<Vec<String>, WorkerError> {
        let stale = self.registry.mark_stale(MIN_STALE_THRESHOLD_MS).await?;
        if self.config.recovery_enabled {
            for id in &stale {
                match self.recover_worker(id).await {
                    Ok(r) => {
                        tracing::warn!(worker_id = %id, locks = r.locks_released, tasks = r.tasks_requeued, "recovered stale worker")
                    }
                    Err(e) => {
                        tracing::error!(worker_id = %id, error = %e, "recovering a stale worker failed")
                    }
                }
            }
        }
        Ok(stale)
    }

    /// Releases every lock of the worker and requeues its running tasks (their next claim is
    /// attempt + 1, and the old fencing token can no longer complete them).
    pub async fn recover_worker(&self, worker_id: &str) -> Result<RecoveryReport, WorkerError> {
        let err = |source| WorkerError::Store {
            worker_id: worker_id.to_string(),
            source,
        };
        let locks_released = self.recover_stale_locks(worker_id).await?;
        let tasks_requeued = self
            .store
            .requeue_worker_tasks(worker_id)
            .await
            .map_err(err)?;
        Ok(RecoveryReport {
            locks_released,
            tasks_requeued,
        })
    }

    /// Seed `recoverStaleLocks`.
    pub async fn recover_stale_locks(&self, worker_id: &str) -> Result<u64, WorkerError> {
        self.store
            .release_owner_locks(worker_id)
            .await
            .map_err(|source| WorkerError::Store {
                worker_id: worker_id.to_string(),
                source,
            })
    }
}

impl Drop for HeartbeatMonitor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What one maintenance round did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceReport {
    pub stale_workers: Vec<String>,
    pub reaped: ReapReport,
    pub stale_locks: u64,
    pub expired_memory: u64,
    /// Chores that failed this round, as "chore: error" (each was logged; the others ran).
    pub failed: Vec<String>,
}

/// Key of the leader lock in [`SYSTEM_TENANT`].
pub const MAINTENANCE_LOCK: &str = "maintenance-leader";

/// Fleet-wide chores (stale workers and recovery, expired leases and deadlines, stale locks,
/// expired memory, old change-log entries) run by whichever node holds the leader lock.
pub struct Maintenance {
    store: Arc<dyn Store>,
    node_id: String,
    monitor: Arc<HeartbeatMonitor>,
    queue: QueueConfig,
    memory: MemoryConfig,
    leadership: tokio::sync::Mutex<Option<Lock>>,
}

impl Maintenance {
    pub fn new(
        store: Arc<dyn Store>,
        node_id: impl Into<String>,
        monitor: Arc<HeartbeatMonitor>,
        queue: QueueConfig,
        memory: MemoryConfig,
    ) -> Self {
        Self {
            store,
            node_id: node_id.into(),
            monitor,
            queue,
            memory,
            leadership: tokio::sync::Mutex::new(None),
        }
    }

    fn period_ms(&self) -> u64 {
        self.monitor.config().check_interval_ms.max(1)
    }

    /// The leader lock outlives a few missed rounds so a slow round does not flap leadership,
    /// yet a dead leader is replaced within three periods.
    fn lease_ms(&self) -> u64 {
        self.period_ms()
            .saturating_mul(3)
            .min(limits::LOCK_TTL_MS.max as u64)
    }

    /// Holds or takes the leader lock; `true` if this node leads for the next period.
    pub async fn ensure_leader(&self) -> Result<bool, StoreError> {
        let mut held = self.leadership.lock().await;
        if let Some(lock) = held.as_ref() {
            match self
                .store
                .renew_lock(
                    &lock.tenant,
                    &lock.key,
                    &lock.owner,
                    lock.token,
                    self.lease_ms(),
                    lock.holder_secret.as_ref(),
                )
                .await
            {
                Ok(l) => {
                    *held = Some(l);
                    return Ok(true);
                }
                Err(crate::LockError::Store(e)) => return Err(e),
                Err(_) => *held = None,
            }
        }
        let req = LockRequest {
            tenant: SYSTEM_TENANT.to_string(),
            key: MAINTENANCE_LOCK.to_string(),
            owner: self.node_id.clone(),
            ttl_ms: self.lease_ms(),
            metadata: serde_json::json!({"role": "maintenance"}),
            holder_secret: Some(crate::model::HolderSecret::generate()),
        };
        *held = self.store.acquire_lock(&req).await?;
        Ok(held.is_some())
    }

    /// One round; `None` if another node is the leader.
    pub async fn run_once(&self) -> Result<Option<MaintenanceReport>, StoreError> {
        if !self.ensure_leader().await? {
            return Ok(None);
        }
        let mut report = MaintenanceReport::default();
        let mut failed = |chore: &str, e: &dyn std::fmt::Display| {
            tracing::error!(chore, error = %e, "maintenance chore failed; the others still run");
            report.failed.push(format!("{chore}: {e}"));
        };
        let stale_workers = self.monitor.check_stale_workers().await;
        let reaped = self.store.reap_expired(&self.queue.retry).await;
        let stale_locks = self.store.cleanup_stale_locks().await;
        let expired_memory = self.store.memory_purge_expired().await;
        let pruned = match self.store.now().await {
            Ok(now) => {
                self.store
                    .memory_prune_changes(now.saturating_sub(self.memory.change_retention_ms))
                    .await
            }
            Err(e) => Err(e),
        };
        let stale_workers = stale_workers.unwrap_or_else(|e| {
            failed("stale workers", &e);
            Vec::new()
        });
        let reaped = reaped.unwrap_or_else(|e| {
            failed("reap expired tasks", &e);
            ReapReport::default()
        });
        let stale_locks = stale_locks.unwrap_or_else(|e| {
            failed("stale locks", &e);
            0
        });
        let expired_memory = expired_memory.unwrap_or_else(|e| {
            failed("expired memory", &e);
            0
        });
        if let Err(e) = pruned {
            failed("prune memory changes", &e);
        }
        if reaped.skipped > 0 {
            tracing::error!(
                skipped = reaped.skipped,
                "the reaper skipped undecodable task records"
            );
        }
        report.stale_workers = stale_workers;
        report.reaped = reaped;
        report.stale_locks = stale_locks;
        report.expired_memory = expired_memory;
        Ok(Some(report))
    }

    /// Runs a round every check interval until the handle is aborted.
    pub fn spawn(self: Arc<Self>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(self.period_ms()));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.run_once().await {
                    tracing::warn!(error = %e, "maintenance round failed");
                }
            }
        })
    }
}
