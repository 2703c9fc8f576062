//! Task rows shared by the queue, the claim and the registry: column decoding, and the state
//! transitions more than one operation takes (fail with retry or dead-letter, requeue a lost
//! run, cascade a dead task to its dependents). Every task is addressed by `(tenant, id)`.

use std::collections::{BTreeMap, VecDeque};

use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::codec::{from_json, u64_col};
use super::map_err;
use crate::error::StoreError;
use crate::model::*;

pub(super) const COLS: &str = "id, tenant, task_type, priority, payload, metadata, max_retries, timeout_ms, \
     attempt, state, worker_id, lease_expires_at, fence, output, error, created_at, updated_at, \
     started_at, finished_at, run_at, depends_on, required_worker, same_worker_as, excluded_workers";

pub(super) struct Raw {
    task: Task,
    metadata: String,
    state: String,
    depends_on: Option<String>,
    excluded: Option<String>,
}

pub(super) fn row_to_raw(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok(Raw {
        task: Task {
            id: r.get(0)?,
            tenant: r.get(1)?,
            task_type: r.get(2)?,
            priority: r.get(3)?,
            payload: r.get(4)?,
            metadata: BTreeMap::new(),
            max_retries: r.get(6)?,
            timeout_ms: u64_col(r.get(7)?),
            attempt: r.get(8)?,
            state: TaskState::Pending,
            worker_id: r.get(10)?,
            lease_expires_at: r.get(11)?,
            fence: u64_col(r.get(12)?),
            output: r.get(13)?,
            error: r.get(14)?,
            created_at: r.get(15)?,
            updated_at: r.get(16)?,
            started_at: r.get(17)?,
            finished_at: r.get(18)?,
            run_at: r.get(19)?,
            depends_on: Vec::new(),
            affinity: Affinity {
                required_worker: r.get(21)?,
                same_worker_as: r.get(22)?,
                excluded_workers: Vec::new(),
            },
            dependency_outputs: BTreeMap::new(),
        },
        metadata: r.get(5)?,
        state: r.get(9)?,
        depends_on: r.get(20)?,
        excluded: r.get(23)?,
    })
}

pub(super) fn decode(raw: Raw) -> Result<Task, StoreError> {
    let mut t = raw.task;
    t.state = parse_state(&raw.state)?;
    t.metadata = from_json(&raw.metadata)?;
    if let Some(d) = raw.depends_on {
        t.depends_on = from_json(&d)?;
    }
    if let Some(x) = raw.excluded {
        t.affinity.excluded_workers = from_json(&x)?;
    }
    Ok(t)
}

pub(super) fn parse_state(s: &str) -> Result<TaskState, StoreError> {
    TaskState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown task state {s}")))
}

pub(super) fn exec(
    tx: &Transaction<'_>,
    sql: &str,
    p: impl rusqlite::Params,
) -> Result<usize, StoreError> {
    tx.prepare_cached(sql)
        .and_then(|mut s| s.execute(p))
        .map_err(map_err)
}

pub(super) fn state_and_fence(
    tx: &Transaction<'_>,
    tenant: &str,
    id: &str,
) -> Result<Option<(TaskState, u64)>, StoreError> {
    let row: Option<(String, i64)> = tx
        .prepare_cached("SELECT state, fence FROM tasks WHERE tenant = ?1 AND id = ?2")
        .and_then(|mut s| {
            s.query_row([tenant, id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(map_err)?;
    row.map(|(s, f)| Ok((parse_state(&s)?, u64_col(f))))
        .transpose()
}

/// Why an operation that needs "running with this fence" did not match.
pub(super) fn rejection(
    tx: &Transaction<'_>,
    tenant: &str,
    id: &str,
    fence: u64,
) -> Result<Rejection, StoreError> {
    Ok(match state_and_fence(tx, tenant, id)? {
        None => Rejection::NotFound,
        Some((TaskState::Running, current)) if current != fence => {
            Rejection::StaleFence { current }
        }
        Some((state, _)) => Rejection::NotRunning(state),
    })
}

/// Moves every pending/failed task that (transitively) depends on `root` to dead: it can never
/// run, and waiting for it would hide the failure.
pub(super) fn cascade_dead(
    tx: &Transaction<'_>,
    now: i64,
    tenant: &str,
    root: &str,
) -> Result<u64, StoreError> {
    let mut queue = VecDeque::from([root.to_string()]);
    let mut n = 0;
    while let Some(dep) = queue.pop_front() {
        let dependents: Vec<String> = tx
            .prepare_cached("SELECT task_id FROM task_deps WHERE tenant = ?1 AND dep_id = ?2")
            .and_then(|mut s| {
                s.query_map([tenant, &dep], |r| r.get(0))?
                    .collect::<Result<Vec<String>, _>>()
            })
            .map_err(map_err)?;
        for d in dependents {
            let changed = exec(
                tx,
                "UPDATE tasks SET state = 'dead', error = ?2, finished_at = ?3, updated_at = ?3
                 WHERE tenant = ?4 AND id = ?1 AND state IN ('pending', 'failed')",
                params![
                    d,
                    format!("dependency {dep} will never complete"),
                    now,
                    tenant
                ],
            )?;
            if changed > 0 {
                n += 1;
                queue.push_back(d);
            }
        }
    }
    Ok(n)
}

/// The failure path shared by explicit failures and deadlines: retry with backoff while
/// attempts remain, else dead-letter (and fail dependents fast).
#[allow(clippy::too_many_arguments)]
pub(super) fn apply_failure(
    tx: &Transaction<'_>,
    now: i64,
    tenant: &str,
    id: &str,
    attempt: u32,
    max_retries: u32,
    error: &str,
    retryable: bool,
    policy: &RetryPolicy,
) -> Result<TaskState, StoreError> {
    if retryable && attempt <= max_retries {
        let run_at = expiry(now, policy.delay_for(attempt));
        exec(
            tx,
            "UPDATE tasks SET state = 'failed', error = ?2, run_at = ?3, updated_at = ?4,
               lease_expires_at = NULL, deadline_at = NULL WHERE tenant = ?5 AND id = ?1",
            params![id, error, run_at, now, tenant],
        )?;
        Ok(TaskState::Failed)
    } else {
        let reason = if retryable {
            format!("{error} (gave up after {attempt} attempts)")
        } else {
            error.to_string()
        };
        exec(
            tx,
            "UPDATE tasks SET state = 'dead', error = ?2, finished_at = ?3, updated_at = ?3,
               lease_expires_at = NULL, deadline_at = NULL WHERE tenant = ?4 AND id = ?1",
            params![id, reason, now, tenant],
        )?;
        cascade_dead(tx, now, tenant, id)?;
        Ok(TaskState::Dead)
    }
}

/// The lost-worker path: the run did not fail, its worker vanished, so the task is runnable
/// again at once, unless it has used up all its attempts (a task that kills its workers must
/// not loop forever).
pub(super) fn requeue_lost(
    tx: &Transaction<'_>,
    now: i64,
    tenant: &str,
    id: &str,
    attempt: u32,
    max_retries: u32,
    reason: &str,
) -> Result<TaskState, StoreError> {
    if attempt > max_retries {
        exec(
            tx,
            "UPDATE tasks SET state = 'dead', error = ?2, finished_at = ?3, updated_at = ?3,
               lease_expires_at = NULL, deadline_at = NULL WHERE tenant = ?4 AND id = ?1",
            params![
                id,
                format!("{reason} (gave up after {attempt} attempts)"),
                now,
                tenant
            ],
        )?;
        cascade_dead(tx, now, tenant, id)?;
        Ok(TaskState::Dead)
    } else {
        exec(
            tx,
            "UPDATE tasks SET state = 'pending', error = ?2, run_at = ?3, updated_at = ?3,
               lease_expires_at = NULL, deadline_at = NULL WHERE tenant = ?4 AND id = ?1",
            params![id, reason, now, tenant],
        )?;
        Ok(TaskState::Pending)
    }
}

/// Requeues (dead if out of attempts) every task of `worker_id` still running under an
/// incarnation other than `incarnation`: that process was replaced by a new start under the same
/// name, so its runs are lost. Returns how many; bumps the wake counter if any.
pub(super) fn requeue_replaced_incarnation(
    tx: &Transaction<'_>,
    now: i64,
    worker_id: &str,
    incarnation: u64,
) -> Result<u64, StoreError> {
    let running: Vec<(String, String, i64, i64, i64)> = tx
        .prepare_cached(
            "SELECT tenant, id, attempt, max_retries, COALESCE(worker_incarnation, 0) FROM tasks
             WHERE worker_id = ?1 AND state = 'running' AND COALESCE(worker_incarnation, 0) <> ?2",
        )
        .and_then(|mut s| {
            s.query_map(params![worker_id, incarnation as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect()
        })
        .map_err(map_err)?;
    for (tenant, id, attempt, max_retries, old) in &running {
        let reason = format!(
            "worker {worker_id} restarted (incarnation {} replaced by {incarnation}); the task's run was lost",
            *old as u64
        );
        requeue_lost(
            tx,
            now,
            tenant,
            id,
            u32_col(*attempt),
            u32_col(*max_retries),
            &reason,
        )?;
    }
    if !running.is_empty() {
        bump_task_wake(tx)?;
    }
    Ok(running.len() as u64)
}

pub(super) fn u32_col(v: i64) -> u32 {
    v.clamp(0, u32::MAX as i64) as u32
}

/// Tells other processes' change detectors that tasks may have become claimable.
pub(super) fn bump_task_wake(tx: &Transaction<'_>) -> Result<(), StoreError> {
    exec(
        tx,
        "UPDATE counters SET value = value + 1 WHERE name = 'task_wake'",
        [],
    )?;
    Ok(())
}

pub(super) fn has_dependents(
    tx: &Transaction<'_>,
    tenant: &str,
    id: &str,
) -> Result<bool, StoreError> {
    tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM task_deps WHERE tenant = ?1 AND dep_id = ?2)")
        .and_then(|mut s| s.query_row([tenant, id], |r| r.get(0)))
        .map_err(map_err)
}
