//! Worker registry SQL. Capabilities, metadata and heartbeat health data are JSON text columns:
//! read whole, never queried inside. Every call is one statement, so registry traffic (1,000
//! workers heartbeating) costs one round trip per heartbeat and never holds a lock across
//! round trips. Stats added by task settlements are written by the queue module, in the
//! settlement's own statement.

use async_trait::async_trait;
use sentinel_coord::model::*;
use sentinel_coord::{RegistryStore, StoreError, StoreResult};
use tokio_postgres::Row;

use crate::codec::{from_json, ms_param, to_json, u32_col, u64_col};
use crate::recover::requeue_replaced;
use crate::store::{PgStore, with_conn};

const COLS: &str = "worker_id, hostname, status, registered_at, last_heartbeat, max_tasks, \
     active_tasks, available_slots, capabilities, metadata, heartbeat, completed, failed, \
     total_duration_ms, incarnation, heartbeat_interval_ms, stale_threshold_ms";

fn decode(r: &Row) -> Result<WorkerRecord, StoreError> {
    let status: &str = r.get(2);
    Ok(WorkerRecord {
        worker_id: r.get(0),
        hostname: r.get(1),
        status: WorkerStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown worker status {status}")))?,
        registered_at: r.get(3),
        last_heartbeat: r.get(4),
        capacity: WorkerCapacity {
            max_tasks: u32_col(r.get(5)),
            active_tasks: u32_col(r.get(6)),
            available_slots: u32_col(r.get(7)),
        },
        capabilities: from_json(r.get::<_, &str>(8))?,
        metadata: from_json(r.get::<_, &str>(9))?,
        heartbeat: from_json(r.get::<_, &str>(10))?,
        stats: WorkerStats {
            completed: u64_col(r.get(11)),
            failed: u64_col(r.get(12)),
            total_duration_ms: u64_col(r.get(13)),
        },
        incarnation: r.get::<_, i64>(14) as u64,
        heartbeat_interval_ms: u64_col(r.get(15)),
        stale_threshold_ms: u64_col(r.get(16)),
    })
}

#[async_trait]
impl RegistryStore for PgStore {
    async fn register_worker(&self, reg: &WorkerRegistration) -> StoreResult<WorkerRecord> {
        let caps = to_json(&reg.capabilities)?;
        let meta = to_json(&reg.metadata)?;
        let hb = to_json(&HeartbeatInfo::default())?;
        let (max, active, slots) = (
            reg.capacity.max_tasks as i64,
            reg.capacity.active_tasks as i64,
            reg.capacity.available_slots as i64,
        );
        let now_p = self.now_param();
        let (inc, interval, threshold) = (
            reg.incarnation as i64,
            ms_param(reg.heartbeat_interval_ms),
            ms_param(reg.stale_threshold_ms),
        );
        let channel = self.inner.channel.as_str();
        let (rec, requeued) = with_conn!(self, |c| {
            let tx = c.transaction().await?;
            let now: i64 = tx
                .query_one("SELECT sentinel_now_ms($1::int8)", &[&now_p])
                .await?
                .get(0);
            // The previous process under this name is gone: its runs are lost, now.
            let requeued =
                requeue_replaced(&tx, now, channel, &reg.worker_id, reg.incarnation).await?;
            // Re-registration keeps the worker's history (its stats) but resets everything else.
            let stmt = tx
                .prepare_cached(&format!(
                    "INSERT INTO workers ({COLS})
                     SELECT $1, $2, 'active', clk.now, clk.now, $3, $4, $5, $6, $7, $8, 0, 0, 0,
                       $10, $11, $12
                     FROM (SELECT $9::int8 AS now) clk
                     ON CONFLICT (worker_id) DO UPDATE SET hostname = EXCLUDED.hostname,
                       status = 'active', registered_at = EXCLUDED.registered_at,
                       last_heartbeat = EXCLUDED.last_heartbeat, max_tasks = EXCLUDED.max_tasks,
                       active_tasks = EXCLUDED.active_tasks,
                       available_slots = EXCLUDED.available_slots,
                       capabilities = EXCLUDED.capabilities, metadata = EXCLUDED.metadata,
                       heartbeat = EXCLUDED.heartbeat, incarnation = EXCLUDED.incarnation,
                       heartbeat_interval_ms = EXCLUDED.heartbeat_interval_ms,
                       stale_threshold_ms = EXCLUDED.stale_threshold_ms
                     RETURNING {COLS}"
                ))
                .await?;
            let row = tx
                .query_one(
                    &stmt,
                    &[
                        &reg.worker_id,
                        &reg.hostname,
                        &max,
                        &active,
                        &slots,
                        &caps,
                        &meta,
                        &hb,
                        &now,
                        &inc,
                        &interval,
                        &threshold,
                    ],
                )
                .await?;
            let rec = decode(&row)?;
            tx.commit().await?;
            Ok((rec, requeued))
        })?;
        if requeued > 0 {
            self.wake_local(sentinel_coord::Topic::Tasks);
        }
        Ok(rec)
    }

    async fn deregister_worker(&self, worker_id: &str) -> StoreResult<bool> {
        with_conn!(self, |c| {
            let stmt = c
                .prepare_cached("DELETE FROM workers WHERE worker_id = $1")
                .await?;
            Ok(c.execute(&stmt, &[&worker_id]).await? > 0)
        })
    }

    async fn update_worker_status(
        &self,
        worker_id: &str,
        incarnation: Option<u64>,
        status: WorkerStatus,
        capacity: Option<&CapacityUpdate>,
    ) -> StoreResult<bool> {
        let inc = incarnation.map(|i| i as i64);
        let u = capacity.copied().unwrap_or_default();
        let max = u.max_tasks.map(i64::from);
        let active = u.active_tasks.map(i64::from);
        let slots = u.available_slots.map(i64::from);
        with_conn!(self, |c| {
            // WorkerCapacity::apply in SQL: given slots win; otherwise a change of max or active
            // recomputes them, so the three numbers never contradict each other.
            let stmt = c
                .prepare_cached(
                    "UPDATE workers SET status = $2,
                       max_tasks = COALESCE($3::int8, max_tasks),
                       active_tasks = COALESCE($4::int8, active_tasks),
                       available_slots = COALESCE($5::int8,
                         CASE WHEN $3::int8 IS NULL AND $4::int8 IS NULL THEN available_slots
                              ELSE GREATEST(COALESCE($3::int8, max_tasks) - COALESCE($4::int8, active_tasks), 0)
                         END)
                     WHERE worker_id = $1 AND ($6::int8 IS NULL OR incarnation = $6::int8)",
                )
                .await?;
            Ok(c.execute(
                &stmt,
                &[&worker_id, &status.as_str(), &max, &active, &slots, &inc],
            )
            .await?
                > 0)
        })
    }

    /// Committed without waiting for the WAL flush (`synchronous_commit = off` for this
    /// transaction only): a heartbeat lost in a server crash is just a missed heartbeat, and the
    /// next one repairs it, while waiting for the disk would make 1,000 heartbeating workers
    /// cost 1,000 flushes.
    async fn record_heartbeat(
        &self,
        worker_id: &str,
        incarnation: u64,
        info: &HeartbeatInfo,
    ) -> StoreResult<bool> {
        let inc = incarnation as i64;
        let hb = to_json(info)?;
        let active = info.active_tasks.map(i64::from);
        let now = self.now_param();
        with_conn!(self, |c| {
            let stmt = c
                .prepare_cached(
                    "WITH relaxed AS MATERIALIZED (
                         SELECT set_config('synchronous_commit', 'off', true))
                     UPDATE workers SET last_heartbeat = sentinel_now_ms($2::int8), heartbeat = $3,
                       status = CASE status WHEN 'offline' THEN 'active' ELSE status END,
                       active_tasks = COALESCE($4::int8, active_tasks),
                       available_slots = CASE WHEN $4::int8 IS NULL THEN available_slots
                                              ELSE GREATEST(max_tasks - $4::int8, 0) END
                     FROM relaxed WHERE worker_id = $1 AND incarnation = $5",
                )
                .await?;
            Ok(c.execute(&stmt, &[&worker_id, &now, &hb, &active, &inc])
                .await?
                > 0)
        })
    }

    async fn record_task_outcome(
        &self,
        worker_id: &str,
        success: bool,
        duration_ms: u64,
    ) -> StoreResult<bool> {
        let (ok, bad) = (success as i64, (!success) as i64);
        let dur = ms_param(duration_ms);
        with_conn!(self, |c| {
            let stmt = c
                .prepare_cached(
                    "UPDATE workers SET completed = completed + $2, failed = failed + $3,
                       total_duration_ms = total_duration_ms + $4 WHERE worker_id = $1",
                )
                .await?;
            Ok(c.execute(&stmt, &[&worker_id, &ok, &bad, &dur]).await? > 0)
        })
    }

    async fn get_worker(&self, worker_id: &str) -> StoreResult<Option<WorkerRecord>> {
        with_conn!(self, |c| {
            let stmt = c
                .prepare_cached(&format!("SELECT {COLS} FROM workers WHERE worker_id = $1"))
                .await?;
            match c.query_opt(&stmt, &[&worker_id]).await? {
                Some(r) => Ok(Some(decode(&r)?)),
                None => Ok(None),
            }
        })
    }

    async fn list_workers(&self) -> StoreResult<Vec<WorkerRecord>> {
        with_conn!(self, |c| {
            let stmt = c
                .prepare_cached(&format!("SELECT {COLS} FROM workers ORDER BY worker_id"))
                .await?;
            let rows = c.query(&stmt, &[]).await?;
            Ok(rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?)
        })
    }

    async fn mark_stale_workers(&self, floor_ms: i64) -> StoreResult<Vec<String>> {
        let now = self.now_param();
        let mut ids: Vec<String> = with_conn!(self, |c| {
            // Each worker by its own threshold (WorkerRecord::stale_after_ms), in numeric so no
            // stored value can overflow the arithmetic.
            let stmt = c
                .prepare_cached(
                    "UPDATE workers SET status = 'offline'
                     WHERE status <> 'offline'
                       AND last_heartbeat::numeric <= sentinel_now_ms($2::int8)::numeric
                           - GREATEST(stale_threshold_ms::numeric, heartbeat_interval_ms::numeric * 2,
                                      $1::int8::numeric)
                     RETURNING worker_id",
                )
                .await?;
            let rows = c.query(&stmt, &[&floor_ms, &now]).await?;
            Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
        })?;
        ids.sort();
        Ok(ids)
    }
}
