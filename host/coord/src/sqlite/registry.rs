//! Worker registry SQL. Capabilities, metadata and heartbeat health data are JSON columns: they
//! are read whole and never queried inside.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::codec::{from_json, i64_param, to_json, u64_col};
use super::tasks::requeue_replaced_incarnation;
use super::{SqliteStore, map_err};
use crate::error::StoreError;
use crate::model::*;
use crate::store::{RegistryStore, StoreResult};

const COLS: &str = "worker_id, hostname, status, registered_at, last_heartbeat, max_tasks, \
     active_tasks, available_slots, capabilities, metadata, heartbeat, completed, failed, \
     total_duration_ms, incarnation, heartbeat_interval_ms, stale_threshold_ms";

struct RawWorker {
    rec: WorkerRecord,
    status: String,
    capabilities: String,
    metadata: String,
    heartbeat: String,
}

fn row_to_raw(r: &Row<'_>) -> rusqlite::Result<RawWorker> {
    Ok(RawWorker {
        rec: WorkerRecord {
            worker_id: r.get(0)?,
            hostname: r.get(1)?,
            status: WorkerStatus::Offline,
            registered_at: r.get(3)?,
            last_heartbeat: r.get(4)?,
            capacity: WorkerCapacity {
                max_tasks: r.get(5)?,
                active_tasks: r.get(6)?,
                available_slots: r.get(7)?,
            },
            capabilities: WorkerCapabilities::default(),
            metadata: serde_json::Value::Null,
            heartbeat: HeartbeatInfo::default(),
            stats: WorkerStats {
                completed: u64_col(r.get(11)?),
                failed: u64_col(r.get(12)?),
                total_duration_ms: u64_col(r.get(13)?),
            },
            incarnation: r.get::<_, i64>(14)? as u64,
            heartbeat_interval_ms: u64_col(r.get(15)?),
            stale_threshold_ms: u64_col(r.get(16)?),
        },
        status: r.get(2)?,
        capabilities: r.get(8)?,
        metadata: r.get(9)?,
        heartbeat: r.get(10)?,
    })
}

fn decode(raw: RawWorker) -> Result<WorkerRecord, StoreError> {
    let mut rec = raw.rec;
    rec.status = WorkerStatus::parse(&raw.status)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown worker status {}", raw.status)))?;
    rec.capabilities = from_json(&raw.capabilities)?;
    rec.metadata = from_json(&raw.metadata)?;
    rec.heartbeat = from_json(&raw.heartbeat)?;
    Ok(rec)
}

fn fetch(tx: &Transaction<'_>, id: &str) -> Result<Option<WorkerRecord>, StoreError> {
    tx.prepare_cached(&format!("SELECT {COLS} FROM workers WHERE worker_id = ?1"))
        .and_then(|mut s| s.query_row([id], row_to_raw).optional())
        .map_err(map_err)?
        .map(decode)
        .transpose()
}

fn exec(tx: &Transaction<'_>, sql: &str, p: impl rusqlite::Params) -> Result<usize, StoreError> {
    tx.prepare_cached(sql)
        .and_then(|mut s| s.execute(p))
        .map_err(map_err)
}

#[async_trait]
impl RegistryStore for SqliteStore {
    async fn register_worker(&self, reg: &WorkerRegistration) -> StoreResult<WorkerRecord> {
        let reg = reg.clone();
        let caps = to_json(&reg.capabilities)?;
        let meta = to_json(&reg.metadata)?;
        let hb = to_json(&HeartbeatInfo::default())?;
        let woke = self.write(move |tx, now| {
            // The previous process under this name is gone: its runs are lost, now.
            let requeued = requeue_replaced_incarnation(tx, now, &reg.worker_id, reg.incarnation)?;
            // Re-registration keeps the worker's history (its stats) but resets everything else.
            exec(
                tx,
                &format!(
                    "INSERT INTO workers ({COLS}) VALUES (?1, ?2, 'active', ?3, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, 0, 0, ?10, ?11, ?12)
                     ON CONFLICT (worker_id) DO UPDATE SET hostname = excluded.hostname,
                       status = 'active', registered_at = excluded.registered_at,
                       last_heartbeat = excluded.last_heartbeat, max_tasks = excluded.max_tasks,
                       active_tasks = excluded.active_tasks, available_slots = excluded.available_slots,
                       capabilities = excluded.capabilities, metadata = excluded.metadata,
                       heartbeat = excluded.heartbeat, incarnation = excluded.incarnation,
                       heartbeat_interval_ms = excluded.heartbeat_interval_ms,
                       stale_threshold_ms = excluded.stale_threshold_ms"
                ),
                params![
                    reg.worker_id,
                    reg.hostname,
                    now,
                    reg.capacity.max_tasks,
                    reg.capacity.active_tasks,
                    reg.capacity.available_slots,
                    caps,
                    meta,
                    hb,
                    reg.incarnation as i64,
                    i64_param(reg.heartbeat_interval_ms),
                    i64_param(reg.stale_threshold_ms)
                ],
            )?;
            let rec = fetch(tx, &reg.worker_id)?
                .ok_or_else(|| StoreError::Backend("registered worker vanished".into()))?;
            Ok((rec, requeued > 0))
        })
        .await?;
        if woke.1 {
            self.notify(crate::store::Topic::Tasks);
        }
        Ok(woke.0)
    }

    async fn deregister_worker(&self, worker_id: &str) -> StoreResult<bool> {
        let id = worker_id.to_string();
        self.write(move |tx, _| Ok(exec(tx, "DELETE FROM workers WHERE worker_id = ?1", [id])? > 0))
            .await
    }

    async fn update_worker_status(
        &self,
        worker_id: &str,
        incarnation: Option<u64>,
        status: WorkerStatus,
        capacity: Option<&CapacityUpdate>,
    ) -> StoreResult<bool> {
        let id = worker_id.to_string();
        let update = capacity.copied();
        self.write(move |tx, _| {
            let Some(rec) = fetch(tx, &id)? else {
                return Ok(false);
            };
            if incarnation.is_some_and(|i| i != rec.incarnation) {
                return Ok(false);
            }
            let mut cap = rec.capacity;
            if let Some(u) = &update {
                cap.apply(u);
            }
            exec(
                tx,
                "UPDATE workers SET status = ?2, max_tasks = ?3, active_tasks = ?4, available_slots = ?5
                 WHERE worker_id = ?1",
                params![id, status.as_str(), cap.max_tasks, cap.active_tasks, cap.available_slots],
            )?;
            Ok(true)
        })
        .await
    }

    async fn record_heartbeat(
        &self,
        worker_id: &str,
        incarnation: u64,
        info: &HeartbeatInfo,
    ) -> StoreResult<bool> {
        let id = worker_id.to_string();
        let hb = to_json(info)?;
        let active = info.active_tasks;
        self.write(move |tx, now| {
            let n = exec(
                tx,
                "UPDATE workers SET last_heartbeat = ?2, heartbeat = ?3,
                   status = CASE status WHEN 'offline' THEN 'active' ELSE status END,
                   active_tasks = COALESCE(?4, active_tasks),
                   available_slots = CASE WHEN ?4 IS NULL THEN available_slots
                                          ELSE MAX(max_tasks - ?4, 0) END
                 WHERE worker_id = ?1 AND incarnation = ?5",
                params![id, now, hb, active, incarnation as i64],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn record_task_outcome(
        &self,
        worker_id: &str,
        success: bool,
        duration_ms: u64,
    ) -> StoreResult<bool> {
        let id = worker_id.to_string();
        self.write(move |tx, _| {
            let n = exec(
                tx,
                "UPDATE workers SET completed = completed + ?2, failed = failed + ?3,
                   total_duration_ms = total_duration_ms + ?4 WHERE worker_id = ?1",
                params![
                    id,
                    success as i64,
                    (!success) as i64,
                    duration_ms.min(i64::MAX as u64) as i64
                ],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn get_worker(&self, worker_id: &str) -> StoreResult<Option<WorkerRecord>> {
        let id = worker_id.to_string();
        self.read(move |tx, _| fetch(tx, &id)).await
    }

    async fn list_workers(&self) -> StoreResult<Vec<WorkerRecord>> {
        self.read(|tx, _| {
            let mut stmt = tx
                .prepare_cached(&format!("SELECT {COLS} FROM workers ORDER BY worker_id"))
                .map_err(map_err)?;
            let rows = stmt.query_map([], row_to_raw).map_err(map_err)?;
            rows.map(|r| decode(r.map_err(map_err)?)).collect()
        })
        .await
    }

    async fn mark_stale_workers(&self, floor_ms: i64) -> StoreResult<Vec<String>> {
        self.write(move |tx, now| {
            // Each worker by its own threshold (WorkerRecord::stale_after_ms). The arithmetic is
            // on REALs, so no stored value can overflow it.
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE workers SET status = 'offline'
                     WHERE status <> 'offline'
                       AND last_heartbeat <= ?1 - MAX(CAST(stale_threshold_ms AS REAL),
                                                      2.0 * heartbeat_interval_ms, ?2)
                     RETURNING worker_id",
                )
                .map_err(map_err)?;
            let mut ids = stmt
                .query_map(params![now, floor_ms], |r| r.get::<_, String>(0))
                .map_err(map_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(map_err)?;
            ids.sort();
            Ok(ids)
        })
        .await
    }
}

/// Adds task outcomes to worker stats inside the queue's transactions.
pub(super) fn add_outcomes(
    tx: &Transaction<'_>,
    worker_id: &str,
    completed: u64,
    failed: u64,
    duration_ms: u64,
) -> Result<(), StoreError> {
    exec(
        tx,
        "UPDATE workers SET completed = completed + ?2, failed = failed + ?3,
           total_duration_ms = total_duration_ms + ?4 WHERE worker_id = ?1",
        params![
            worker_id,
            completed as i64,
            failed as i64,
            duration_ms.min(i64::MAX as u64) as i64
        ],
    )?;
    Ok(())
}
