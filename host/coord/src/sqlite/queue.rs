//! Queue SQL. The `tasks_ready` partial index holds exactly the claimable-state rows in claim
//! order, so a claim reads the head of the index. A task's `fence` goes up on every claim and a
//! completion or failure must present the current one while the task is still running: that is
//! what makes completion exactly-once when leases are lost.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};

use super::codec::{i64_param, to_json, u64_col};
use super::registry::add_outcomes;
use super::tasks::*;
use super::tenants;
use super::{SqliteStore, map_err};
use crate::error::StoreError;
use crate::model::*;
use crate::store::{QueueStore, StoreResult, Topic};

#[async_trait]
impl QueueStore for SqliteStore {
    async fn enqueue(&self, tasks: &[NewTask]) -> StoreResult<Vec<String>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        validate_tasks(tasks)?;
        let tasks = tasks.to_vec();
        let ids = self
            .write(move |tx, now| {
                if tasks
                    .iter()
                    .any(|t| t.task_type.is_empty() || t.tenant.is_empty())
                {
                    return Err(StoreError::Invalid(
                        "task_type and tenant must be non-empty".into(),
                    ));
                }
                // Quotas and fairness per tenant, in name order, before anything is inserted.
                let mut per_tenant: BTreeMap<&str, u64> = BTreeMap::new();
                for t in &tasks {
                    *per_tenant.entry(t.tenant.as_str()).or_default() += 1;
                }
                for (tenant, n) in &per_tenant {
                    let row = tenants::load(tx, tenant)?;
                    tenants::admit_submission(tx, now, tenant, row.as_ref(), *n)?;
                    tenants::note_backlogged(tx, tenant)?;
                }
                let mut ids = Vec::with_capacity(tasks.len());
                for t in tasks {
                    let id = t.id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
                    let mut state = TaskState::Pending;
                    let mut error = None;
                    for dep in &t.depends_on {
                        let dep_state: Option<String> = tx
                            .prepare_cached("SELECT state FROM tasks WHERE tenant = ?2 AND id = ?1")
                            .and_then(|mut s| {
                                s.query_row(params![dep, t.tenant], |r| r.get(0)).optional()
                            })
                            .map_err(map_err)?;
                        let Some(dep_state) = dep_state else {
                            return Err(StoreError::Invalid(format!(
                                "task {id} depends on unknown task {dep}"
                            )));
                        };
                        let dep_state = parse_state(&dep_state)?;
                        if matches!(dep_state, TaskState::Dead | TaskState::Cancelled) {
                            state = TaskState::Dead;
                            error = Some(format!("dependency {dep} will never complete"));
                        }
                    }
                    let deps = (!t.depends_on.is_empty())
                        .then(|| to_json(&t.depends_on))
                        .transpose()?;
                    let excluded = (!t.affinity.excluded_workers.is_empty())
                        .then(|| to_json(&t.affinity.excluded_workers))
                        .transpose()?;
                    let inserted = exec(
                        tx,
                        "INSERT INTO tasks (id, tenant, task_type, priority, payload, metadata,
                           max_retries, timeout_ms, state, error, created_at, updated_at, run_at,
                           finished_at, depends_on, required_worker, same_worker_as, excluded_workers)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?11,
                           CASE WHEN ?9 = 'dead' THEN ?11 END, ?12, ?13, ?14, ?15)
                         ON CONFLICT (tenant, id) DO NOTHING",
                        params![
                            id,
                            t.tenant,
                            t.task_type,
                            t.priority,
                            t.payload,
                            to_json(&t.metadata)?,
                            t.max_retries
                                .unwrap_or(RetryPolicy::default().max_retries),
                            i64_param(t.timeout_ms.unwrap_or(DEFAULT_TASK_TIMEOUT_MS)),
                            state.as_str(),
                            error,
                            now,
                            deps,
                            t.affinity.required_worker,
                            t.affinity.same_worker_as,
                            excluded
                        ],
                    )?;
                    if inserted == 0 {
                        return Err(StoreError::Invalid(format!("task id {id} already exists")));
                    }
                    for dep in &t.depends_on {
                        exec(
                            tx,
                            "INSERT OR IGNORE INTO task_deps (tenant, task_id, dep_id) VALUES (?3, ?1, ?2)",
                            params![id, dep, t.tenant],
                        )?;
                    }
                    ids.push(id);
                }
                bump_task_wake(tx)?;
                Ok(ids)
            })
            .await?;
        self.notify(Topic::Tasks);
        Ok(ids)
    }

    async fn claim(&self, req: &ClaimRequest) -> StoreResult<Vec<Task>> {
        req.validate()?;
        if req.limit == 0 {
            return Ok(Vec::new());
        }
        let req = req.clone();
        self.write(move |tx, now| super::claim::claim(tx, now, &req))
            .await
    }

    async fn renew_lease(
        &self,
        tenant: &str,
        task_id: &str,
        fence: u64,
        lease_ms: u64,
    ) -> StoreResult<Result<i64, Rejection>> {
        validate_lease(lease_ms)?;
        let (t, id) = (tenant.to_string(), task_id.to_string());
        self.write(move |tx, now| {
            let until = expiry(now, lease_ms);
            let n = exec(
                tx,
                "UPDATE tasks SET lease_expires_at = ?3, updated_at = ?4
                 WHERE id = ?1 AND tenant = ?5 AND state = 'running' AND fence = ?2",
                params![id, fence as i64, until, now, t],
            )?;
            if n == 1 {
                Ok(Ok(until))
            } else {
                Ok(Err(rejection(tx, &t, &id, fence)?))
            }
        })
        .await
    }

    async fn extend_worker_leases(
        &self,
        worker_id: &str,
        incarnation: u64,
        lease_ms: u64,
    ) -> StoreResult<u64> {
        validate_lease(lease_ms)?;
        let w = worker_id.to_string();
        self.write(move |tx, now| {
            let until = expiry(now, lease_ms);
            Ok(exec(
                tx,
                "UPDATE tasks SET lease_expires_at = MAX(COALESCE(lease_expires_at, 0), ?2)
                 WHERE worker_id = ?1 AND state = 'running'
                   AND COALESCE(worker_incarnation, 0) = ?3",
                params![w, until, incarnation as i64],
            )? as u64)
        })
        .await
    }

    async fn complete(&self, completions: &[Completion]) -> StoreResult<Vec<Settlement>> {
        let completions = completions.to_vec();
        let (out, wake) = self
            .write(move |tx, now| {
                let mut out = Vec::with_capacity(completions.len());
                let mut per_worker: HashMap<String, (u64, u64)> = HashMap::new();
                let mut wake = false;
                let mut stmt = tx
                    .prepare_cached(
                        "UPDATE tasks SET state = 'completed', output = ?3, finished_at = ?4,
                           updated_at = ?4, lease_expires_at = NULL, deadline_at = NULL
                         WHERE id = ?1 AND tenant = ?5 AND state = 'running' AND fence = ?2
                         RETURNING worker_id, started_at",
                    )
                    .map_err(map_err)?;
                for c in &completions {
                    let done: Option<(Option<String>, Option<i64>)> = stmt
                        .query_row(
                            params![c.task_id, c.fence as i64, c.output, now, c.tenant],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()
                        .map_err(map_err)?;
                    match done {
                        Some((worker, started)) => {
                            if let Some(w) = worker {
                                let e = per_worker.entry(w).or_default();
                                e.0 += 1;
                                e.1 += u64_col(now.saturating_sub(started.unwrap_or(now)));
                            }
                            wake |= has_dependents(tx, &c.tenant, &c.task_id)?;
                            out.push(Settlement::Applied(TaskState::Completed));
                        }
                        None => out.push(Settlement::Rejected(rejection(
                            tx, &c.tenant, &c.task_id, c.fence,
                        )?)),
                    }
                }
                for (w, (n, dur)) in per_worker {
                    add_outcomes(tx, &w, n, 0, dur)?;
                }
                if wake {
                    bump_task_wake(tx)?;
                }
                Ok((out, wake))
            })
            .await?;
        if wake {
            self.notify(Topic::Tasks);
        }
        Ok(out)
    }

    async fn release_claims(&self, claims: &[TaskClaim]) -> StoreResult<u64> {
        if claims.is_empty() {
            return Ok(0);
        }
        let claims = claims.to_vec();
        let n = self
            .write(move |tx, now| {
                let mut stmt = tx
                    .prepare_cached(
                        "UPDATE tasks SET state = 'pending', attempt = MAX(attempt - 1, 0),
                           worker_id = NULL, worker_incarnation = NULL, lease_expires_at = NULL,
                           deadline_at = NULL, started_at = NULL, updated_at = ?4
                         WHERE tenant = ?1 AND id = ?2 AND state = 'running' AND fence = ?3",
                    )
                    .map_err(map_err)?;
                let mut n = 0u64;
                for c in &claims {
                    n += stmt
                        .execute(params![c.tenant, c.task_id, c.fence as i64, now])
                        .map_err(map_err)? as u64;
                }
                if n > 0 {
                    bump_task_wake(tx)?;
                }
                Ok(n)
            })
            .await?;
        if n > 0 {
            self.notify(Topic::Tasks);
        }
        Ok(n)
    }

    async fn fail(
        &self,
        failures: &[Failure],
        policy: &RetryPolicy,
    ) -> StoreResult<Vec<Settlement>> {
        let failures = failures.to_vec();
        let policy = *policy;
        self.write(move |tx, now| {
            let mut out = Vec::with_capacity(failures.len());
            for f in &failures {
                let row: Option<(String, i64, u32, u32, Option<String>, Option<i64>)> = tx
                    .prepare_cached(
                        "SELECT state, fence, attempt, max_retries, worker_id, started_at
                         FROM tasks WHERE tenant = ?1 AND id = ?2",
                    )
                    .and_then(|mut s| {
                        s.query_row([&f.tenant, &f.task_id], |r| {
                            Ok((
                                r.get(0)?,
                                r.get(1)?,
                                r.get(2)?,
                                r.get(3)?,
                                r.get(4)?,
                                r.get(5)?,
                            ))
                        })
                        .optional()
                    })
                    .map_err(map_err)?;
                let Some((state, fence, attempt, max_retries, worker, started)) = row else {
                    out.push(Settlement::Rejected(Rejection::NotFound));
                    continue;
                };
                let state = parse_state(&state)?;
                if state != TaskState::Running {
                    out.push(Settlement::Rejected(Rejection::NotRunning(state)));
                    continue;
                }
                if u64_col(fence) != f.fence {
                    out.push(Settlement::Rejected(Rejection::StaleFence {
                        current: u64_col(fence),
                    }));
                    continue;
                }
                let new_state = apply_failure(
                    tx,
                    now,
                    &f.tenant,
                    &f.task_id,
                    attempt,
                    max_retries,
                    &f.error,
                    f.retryable,
                    &policy,
                )?;
                if let Some(w) = worker {
                    add_outcomes(
                        tx,
                        &w,
                        0,
                        1,
                        u64_col(now.saturating_sub(started.unwrap_or(now))),
                    )?;
                }
                out.push(Settlement::Applied(new_state));
            }
            Ok(out)
        })
        .await
    }

    async fn cancel(&self, tenant: &str, task_id: &str) -> StoreResult<bool> {
        let (t, id) = (tenant.to_string(), task_id.to_string());
        self.write(move |tx, now| {
            let n = exec(
                tx,
                "UPDATE tasks SET state = 'cancelled', finished_at = ?3, updated_at = ?3,
                   lease_expires_at = NULL, deadline_at = NULL
                 WHERE id = ?1 AND tenant = ?2 AND state IN ('pending', 'failed', 'running')",
                params![id, t, now],
            )?;
            if n > 0 {
                cascade_dead(tx, now, &t, &id)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn retry_dead(&self, tenant: &str, task_id: &str) -> StoreResult<bool> {
        let (t, id) = (tenant.to_string(), task_id.to_string());
        let revived = self
            .write(move |tx, now| {
                // A task whose dependency is itself dead would sit pending forever: retry the
                // dependency first.
                let revivable: bool = tx
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM tasks WHERE tenant = ?2 AND id = ?1 AND state = 'dead'
                           AND NOT EXISTS (SELECT 1 FROM task_deps d
                                           JOIN tasks t2 ON t2.tenant = d.tenant AND t2.id = d.dep_id
                                           WHERE d.tenant = ?2 AND d.task_id = ?1
                                             AND t2.state IN ('dead', 'cancelled')))",
                    )
                    .and_then(|mut s| s.query_row(params![id, t], |r| r.get(0)))
                    .map_err(map_err)?;
                if !revivable {
                    return Ok(false);
                }
                let row = tenants::load(tx, &t)?;
                if let Some(max) = row.as_ref().and_then(|r| r.max_queued)
                    && tenants::queued(tx, &t, max.saturating_add(1))? >= max
                {
                    return Err(StoreError::Quota(QuotaExceeded {
                        tenant: t.clone(),
                        quota: Quota::QueuedTasks,
                        limit: max,
                        retry_after_ms: None,
                    }));
                }
                tenants::note_backlogged(tx, &t)?;
                let n = exec(
                    tx,
                    "UPDATE tasks SET state = 'pending', attempt = 0, error = NULL, run_at = ?3,
                       updated_at = ?3, finished_at = NULL
                     WHERE tenant = ?2 AND id = ?1 AND state = 'dead'",
                    params![id, t, now],
                )?;
                if n > 0 {
                    bump_task_wake(tx)?;
                }
                Ok(n > 0)
            })
            .await?;
        if revived {
            self.notify(Topic::Tasks);
        }
        Ok(revived)
    }

    async fn get_task(&self, tenant: &str, task_id: &str) -> StoreResult<Option<Task>> {
        let (t, id) = (tenant.to_string(), task_id.to_string());
        self.read(move |tx, _| {
            tx.prepare_cached(&format!(
                "SELECT {COLS} FROM tasks WHERE id = ?1 AND tenant = ?2"
            ))
            .and_then(|mut s| s.query_row(params![id, t], row_to_raw).optional())
            .map_err(map_err)?
            .map(decode)
            .transpose()
        })
        .await
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<Vec<Task>> {
        let f = filter.clone();
        let (keyset, order) = match f.order {
            TaskOrder::Priority => ("", "priority DESC, seq"),
            TaskOrder::Oldest => ("AND (?6 IS NULL OR seq > ?6)", "seq"),
            TaskOrder::Newest => ("AND (?6 IS NULL OR seq < ?6)", "seq DESC"),
        };
        if f.order == TaskOrder::Priority && f.after.is_some() {
            return Err(StoreError::Invalid(
                "`after` pages only the oldest/newest orders".into(),
            ));
        }
        self.read(move |tx, _| {
            let mut anchor: Option<i64> = None;
            if let Some(after) = &f.after {
                anchor = tx
                    .prepare_cached(
                        "SELECT seq FROM tasks WHERE tenant = ?1 AND id = ?2 AND (?3 IS NULL OR tenant = ?3)",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![after.tenant, after.id, f.tenant], |r| r.get(0))
                            .optional()
                    })
                    .map_err(map_err)?;
                if anchor.is_none() {
                    return Err(StoreError::Invalid(format!(
                        "no task {}/{} to list after",
                        after.tenant, after.id
                    )));
                }
            }
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {COLS} FROM tasks
                     WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR state = ?2)
                       AND (?3 IS NULL OR task_type = ?3) AND (?4 IS NULL OR worker_id = ?4)
                       {keyset}
                     ORDER BY {order} LIMIT ?5"
                ))
                .map_err(map_err)?;
            let limit: i64 = if f.limit == 0 { -1 } else { f.limit as i64 };
            let state = f.state.map(TaskState::as_str);
            let mut args: Vec<&dyn rusqlite::ToSql> = vec![
                &f.tenant,
                &state,
                &f.task_type,
                &f.worker_id,
                &limit,
            ];
            if !keyset.is_empty() {
                args.push(&anchor);
            }
            let rows = stmt
                .query_map(args.as_slice(), row_to_raw)
                .map_err(map_err)?;
            rows.map(|r| decode(r.map_err(map_err)?)).collect()
        })
        .await
    }

    async fn queue_stats(&self, tenant: Option<&str>) -> StoreResult<QueueStats> {
        let t = tenant.map(str::to_string);
        self.read(move |tx, _| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT state, COUNT(*) FROM tasks WHERE (?1 IS NULL OR tenant = ?1) GROUP BY state",
                )
                .map_err(map_err)?;
            let rows = stmt
                .query_map([t], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(map_err)?;
            let mut stats = QueueStats::default();
            for row in rows {
                let (s, n) = row.map_err(map_err)?;
                stats.add(parse_state(&s)?, u64_col(n));
            }
            Ok(stats)
        })
        .await
    }

    async fn requeue_worker_tasks(&self, worker_id: &str) -> StoreResult<u64> {
        let w = worker_id.to_string();
        let n = self
            .write(move |tx, now| {
                let running: Vec<(String, String, i64, i64)> = tx
                    .prepare_cached(
                        "SELECT tenant, id, attempt, max_retries FROM tasks WHERE worker_id = ?1 AND state = 'running'",
                    )
                    .and_then(|mut s| {
                        s.query_map([&w], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                            .collect()
                    })
                    .map_err(map_err)?;
                for (tenant, id, attempt, max_retries) in &running {
                    requeue_lost(tx, now, tenant, id, u32_col(*attempt), u32_col(*max_retries), &format!("worker {w} lost"))?;
                }
                if !running.is_empty() {
                    bump_task_wake(tx)?;
                }
                Ok(running.len() as u64)
            })
            .await?;
        if n > 0 {
            self.notify(Topic::Tasks);
        }
        Ok(n)
    }

    async fn reap_expired(&self, policy: &RetryPolicy) -> StoreResult<ReapReport> {
        let policy = *policy;
        let report = self
            .write(move |tx, now| {
                // Numbers are read through CASTs (a REAL written by an older build's overflow
                // reads as the nearest integer) and each row is decoded on its own: a row that
                // still cannot be decoded is skipped and logged, never fails the sweep.
                let expired: Vec<rusqlite::Result<Expired>> = {
                    let mut stmt = tx
                        .prepare_cached(
                            "SELECT tenant, id, CAST(attempt AS INTEGER), CAST(max_retries AS INTEGER),
                           CAST(deadline_at AS INTEGER), worker_id, CAST(started_at AS INTEGER),
                           CAST(timeout_ms AS INTEGER)
                         FROM tasks WHERE state = 'running'
                           AND (lease_expires_at <= ?1 OR deadline_at <= ?1)",
                        )
                        .map_err(map_err)?;
                    stmt.query_map([now], Expired::from_row)
                        .map_err(map_err)?
                        .collect()
                };
                let mut report = ReapReport::default();
                for row in expired {
                    let e = match row {
                        Ok(e) => e,
                        Err(err) => {
                            tracing::warn!(error = %err, "reaper skipped an undecodable task row");
                            report.skipped += 1;
                            continue;
                        }
                    };
                    let Expired {
                        tenant,
                        id,
                        attempt,
                        max_retries,
                        deadline,
                        worker,
                        started,
                        timeout,
                    } = e;
                    let (attempt, max_retries) = (u32_col(attempt), u32_col(max_retries));
                    // A passed deadline is the task's fault (it ran too long); an expired lease
                    // alone means its worker stopped renewing, i.e. is presumed dead.
                    let state = if deadline.is_some_and(|d| d <= now) {
                        if let Some(w) = &worker {
                            add_outcomes(
                                tx,
                                w,
                                0,
                                1,
                                u64_col(now.saturating_sub(started.unwrap_or(now))),
                            )?;
                        }
                        apply_failure(
                            tx,
                            now,
                            &tenant,
                            &id,
                            attempt,
                            max_retries,
                            &format!("timed out after {timeout} ms"),
                            true,
                            &policy,
                        )?
                    } else {
                        let who = worker.as_deref().unwrap_or("?");
                        requeue_lost(
                            tx,
                            now,
                            &tenant,
                            &id,
                            attempt,
                            max_retries,
                            &format!("lease of worker {who} expired"),
                        )?
                    };
                    match state {
                        TaskState::Pending => report.requeued += 1,
                        TaskState::Failed => report.retrying += 1,
                        _ => report.dead += 1,
                    }
                }
                if report.requeued > 0 {
                    bump_task_wake(tx)?;
                }
                Ok(report)
            })
            .await?;
        if report.requeued > 0 {
            self.notify(Topic::Tasks);
        }
        Ok(report)
    }
}

/// A running task past its lease or deadline, as the reaper reads it.
struct Expired {
    tenant: String,
    id: String,
    attempt: i64,
    max_retries: i64,
    deadline: Option<i64>,
    worker: Option<String>,
    started: Option<i64>,
    timeout: i64,
}

impl Expired {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            tenant: r.get(0)?,
            id: r.get(1)?,
            attempt: r.get(2)?,
            max_retries: r.get(3)?,
            deadline: r.get(4)?,
            worker: r.get(5)?,
            started: r.get(6)?,
            timeout: r.get(7)?,
        })
    }
}
