//! The worker registry: the registry document (`refs/sentinel/registry`) holds one file per
//! worker, `workers/<enc id>.json`, in seed 001's `WORKER_REGISTRATION` shape (ISO timestamps,
//! `status`, `capacity`, `capabilities`) plus exact milliseconds, metadata, the last heartbeat's
//! health data and outcome stats. Every change is one document transaction, so concurrent
//! heartbeats and status updates never lose each other's writes. Heartbeat times are the store's
//! clock. This module owns the registry document only.

use std::sync::Arc;

use async_trait::async_trait;
use sentinel_coord::model::*;
use sentinel_coord::{Clock, RegistryStore, StoreError, StoreResult};
use serde::{Deserialize, Serialize};

use crate::codec::{enc, iso};
use crate::doc::{Doc, Snapshot, Write};
use crate::queue::logic::Outcome;

pub const REGISTRY_REF: &str = "sentinel/registry";
const DIR: &str = "workers/";

fn path(id: &str) -> String {
    format!("{DIR}{}.json", enc(id))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct WorkerFile {
    #[serde(rename = "type")]
    kind: String,
    worker_id: String,
    hostname: String,
    registered_at: String,
    last_heartbeat: String,
    status: WorkerStatus,
    capacity: WorkerCapacity,
    capabilities: WorkerCapabilities,
    registered_at_ms: i64,
    last_heartbeat_ms: i64,
    metadata: serde_json::Value,
    heartbeat: HeartbeatInfo,
    stats: WorkerStats,
    #[serde(default)]
    incarnation: u64,
    /// Files written before workers announced these get the seeds' defaults.
    #[serde(default = "legacy_interval")]
    heartbeat_interval_ms: u64,
    #[serde(default = "legacy_threshold")]
    stale_threshold_ms: u64,
}

fn legacy_interval() -> u64 {
    30_000
}

fn legacy_threshold() -> u64 {
    120_000
}

impl WorkerFile {
    fn record(&self) -> WorkerRecord {
        WorkerRecord {
            worker_id: self.worker_id.clone(),
            hostname: self.hostname.clone(),
            status: self.status,
            registered_at: self.registered_at_ms,
            last_heartbeat: self.last_heartbeat_ms,
            capacity: self.capacity,
            capabilities: self.capabilities.clone(),
            metadata: self.metadata.clone(),
            heartbeat: self.heartbeat.clone(),
            stats: self.stats,
            incarnation: self.incarnation,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            stale_threshold_ms: self.stale_threshold_ms,
        }
    }

    fn beat(&mut self, now: i64) {
        self.last_heartbeat_ms = now;
        self.last_heartbeat = iso(now);
    }

    fn put(&self) -> Result<Write, StoreError> {
        Ok(Write::Put(
            path(&self.worker_id),
            serde_json::to_value(self).map_err(|e| StoreError::Invalid(e.to_string()))?,
        ))
    }
}

fn load(snap: &Snapshot, id: &str) -> Result<Option<WorkerFile>, StoreError> {
    snap.get(&path(id))
        .map(|v| {
            serde_json::from_value(v.clone())
                .map_err(|e| StoreError::Corrupt(format!("registry: worker {id}: {e}")))
        })
        .transpose()
}

fn all(snap: &Snapshot) -> Result<Vec<WorkerFile>, StoreError> {
    snap.under(DIR)
        .map(|(p, v)| {
            serde_json::from_value(v.clone())
                .map_err(|e| StoreError::Corrupt(format!("registry: {p}: {e}")))
        })
        .collect()
}

pub struct GithubRegistry {
    doc: Doc,
    clock: Arc<dyn Clock>,
}

impl GithubRegistry {
    pub fn new(doc: Doc, clock: Arc<dyn Clock>) -> Self {
        Self { doc, clock }
    }

    /// Changes one worker in a transaction; `false` if it is unknown or, when `incarnation` is
    /// given, registered under another incarnation.
    async fn update(
        &self,
        what: &str,
        id: &str,
        incarnation: Option<u64>,
        f: impl Fn(&mut WorkerFile, i64),
    ) -> StoreResult<bool> {
        let clock = self.clock.clone();
        self.doc
            .transact(what, |snap| {
                let Some(mut w) = load(snap, id)? else {
                    return Ok((vec![], false));
                };
                if incarnation.is_some_and(|i| i != w.incarnation) {
                    return Ok((vec![], false));
                }
                f(&mut w, clock.now_ms());
                Ok((vec![w.put()?], true))
            })
            .await
    }

    /// Adds settled tasks' outcomes to their workers' stats, in one transaction.
    pub(crate) async fn add_outcomes(&self, outcomes: &[Outcome]) -> StoreResult<()> {
        self.doc
            .transact("task outcomes", |snap| {
                let mut touched: Vec<WorkerFile> = Vec::new();
                for o in outcomes {
                    let pos = match touched.iter().position(|w| w.worker_id == o.worker) {
                        Some(p) => p,
                        None => match load(snap, &o.worker)? {
                            Some(w) => {
                                touched.push(w);
                                touched.len() - 1
                            }
                            None => continue,
                        },
                    };
                    let s = &mut touched[pos].stats;
                    if o.success {
                        s.completed += 1;
                    } else {
                        s.failed += 1;
                    }
                    s.total_duration_ms = s.total_duration_ms.saturating_add(o.duration_ms);
                }
                let writes = touched
                    .iter()
                    .map(WorkerFile::put)
                    .collect::<Result<_, _>>()?;
                Ok((writes, ()))
            })
            .await
    }
}

#[async_trait]
impl RegistryStore for GithubRegistry {
    async fn register_worker(&self, reg: &WorkerRegistration) -> StoreResult<WorkerRecord> {
        let clock = self.clock.clone();
        self.doc
            .transact("register worker", |snap| {
                let now = clock.now_ms();
                // Re-registration keeps the worker's history (its stats), resets the rest.
                let stats = load(snap, &reg.worker_id)?
                    .map(|w| w.stats)
                    .unwrap_or_default();
                let w = WorkerFile {
                    kind: "WORKER_REGISTRATION".into(),
                    worker_id: reg.worker_id.clone(),
                    hostname: reg.hostname.clone(),
                    registered_at: iso(now),
                    last_heartbeat: iso(now),
                    status: WorkerStatus::Active,
                    capacity: reg.capacity,
                    capabilities: reg.capabilities.clone(),
                    registered_at_ms: now,
                    last_heartbeat_ms: now,
                    metadata: reg.metadata.clone(),
                    heartbeat: HeartbeatInfo::default(),
                    stats,
                    incarnation: reg.incarnation,
                    heartbeat_interval_ms: reg.heartbeat_interval_ms,
                    stale_threshold_ms: reg.stale_threshold_ms,
                };
                Ok((vec![w.put()?], w.record()))
            })
            .await
    }

    async fn deregister_worker(&self, worker_id: &str) -> StoreResult<bool> {
        self.doc
            .transact("deregister worker", |snap| {
                if load(snap, worker_id)?.is_none() {
                    return Ok((vec![], false));
                }
                Ok((vec![Write::Delete(path(worker_id))], true))
            })
            .await
    }

    async fn update_worker_status(
        &self,
        worker_id: &str,
        incarnation: Option<u64>,
        status: WorkerStatus,
        capacity: Option<&CapacityUpdate>,
    ) -> StoreResult<bool> {
        let update = capacity.copied();
        self.update("worker status", worker_id, incarnation, |w, _| {
            w.status = status;
            if let Some(u) = &update {
                w.capacity.apply(u);
            }
        })
        .await
    }

    async fn record_heartbeat(
        &self,
        worker_id: &str,
        incarnation: u64,
        info: &HeartbeatInfo,
    ) -> StoreResult<bool> {
        self.update("heartbeat", worker_id, Some(incarnation), |w, now| {
            w.beat(now);
            w.heartbeat = info.clone();
            if w.status == WorkerStatus::Offline {
                w.status = WorkerStatus::Active;
            }
            if let Some(a) = info.active_tasks {
                w.capacity.active_tasks = a;
                w.capacity.available_slots = w.capacity.max_tasks.saturating_sub(a);
            }
        })
        .await
    }

    async fn record_task_outcome(
        &self,
        worker_id: &str,
        success: bool,
        duration_ms: u64,
    ) -> StoreResult<bool> {
        self.update("task outcome", worker_id, None, |w, _| {
            if success {
                w.stats.completed += 1;
            } else {
                w.stats.failed += 1;
            }
            w.stats.total_duration_ms = w.stats.total_duration_ms.saturating_add(duration_ms);
        })
        .await
    }

    async fn get_worker(&self, worker_id: &str) -> StoreResult<Option<WorkerRecord>> {
        Ok(load(&self.doc.read().await?, worker_id)?.map(|w| w.record()))
    }

    async fn list_workers(&self) -> StoreResult<Vec<WorkerRecord>> {
        let mut v: Vec<WorkerRecord> = all(&self.doc.read().await?)?
            .iter()
            .map(WorkerFile::record)
            .collect();
        v.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        Ok(v)
    }

    async fn mark_stale_workers(&self, floor_ms: i64) -> StoreResult<Vec<String>> {
        let clock = self.clock.clone();
        self.doc
            .transact("mark stale workers", |snap| {
                let now = clock.now_ms();
                let mut writes = Vec::new();
                let mut ids = Vec::new();
                // One undecodable worker file is skipped (and logged), never stops the sweep.
                let workers = snap.under(DIR).filter_map(|(p, v)| {
                    serde_json::from_value::<WorkerFile>(v.clone())
                        .inspect_err(|e| tracing::warn!(path = p, error = %e, "skipping an undecodable worker file"))
                        .ok()
                });
                for mut w in workers {
                    let stale_after =
                        stale_after_ms(w.stale_threshold_ms, w.heartbeat_interval_ms, floor_ms);
                    if w.status != WorkerStatus::Offline
                        && w.last_heartbeat_ms <= now.saturating_sub(stale_after)
                    {
                        w.status = WorkerStatus::Offline;
                        writes.push(w.put()?);
                        ids.push(w.worker_id.clone());
                    }
                }
                ids.sort();
                Ok((writes, ids))
            })
            .await
    }
}
