//! Lease and recovery SQL: lease renewal, requeue of a lost or replaced worker's tasks and the
//! expiry sweep, on top of the transitions of [`crate::settle`]. Rows are locked (`FOR UPDATE`,
//! in (tenant, id) order) before they are decided; the sweep skips rows locked by their settling
//! worker.

use std::collections::HashMap;

use sentinel_coord::model::*;
use sentinel_coord::{StoreResult, Topic};

use crate::codec::{ms_param, u32_col};
use crate::error::OpError;
use crate::settle::{
    Transition, Tx, add_outcomes, apply, failure_transition, key, lost_transition, notify_tasks,
    rejection, rejections,
};
use crate::store::{PgStore, with_conn};

/// Inside the caller's transaction: requeues (dead if out of attempts) every task of
/// `worker_id` still running under an incarnation other than `incarnation` (that process was
/// replaced by a new start under the same name, so its runs are lost) and notifies claimers.
/// Returns how many.
pub(crate) async fn requeue_replaced(
    tx: &Tx<'_>,
    now: i64,
    channel: &str,
    worker_id: &str,
    incarnation: u64,
) -> Result<u64, OpError> {
    let stmt = tx
        .prepare_cached(
            "SELECT tenant, id, attempt, max_retries, COALESCE(worker_incarnation, 0) FROM tasks
             WHERE worker_id = $1 AND state = 'running' AND COALESCE(worker_incarnation, 0) <> $2
             ORDER BY tenant, id FOR UPDATE",
        )
        .await?;
    let rows = tx
        .query(&stmt, &[&worker_id, &(incarnation as i64)])
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let transitions: Vec<Transition> = rows
        .iter()
        .map(|r| {
            let old = r.get::<_, i64>(4) as u64;
            let reason = format!(
                "worker {worker_id} restarted (incarnation {old} replaced by {incarnation}); the task's run was lost"
            );
            let k = (r.get(0), r.get(1));
            lost_transition(now, k, u32_col(r.get(2)), u32_col(r.get(3)), &reason)
        })
        .collect();
    apply(tx, now, &transitions).await?;
    notify_tasks(tx, channel).await?;
    Ok(rows.len() as u64)
}

pub(crate) async fn requeue_worker_tasks(store: &PgStore, worker_id: &str) -> StoreResult<u64> {
    let now_p = store.now_param();
    let channel = store.inner.channel.as_str();
    let n = with_conn!(store, |c| {
        let tx = c.transaction().await?;
        let stmt = tx
            .prepare_cached(
                "SELECT tenant, id, attempt, max_retries, sentinel_now_ms($2::int8) FROM tasks
                 WHERE worker_id = $1 AND state = 'running' ORDER BY tenant, id FOR UPDATE",
            )
            .await?;
        let rows = tx.query(&stmt, &[&worker_id, &now_p]).await?;
        if rows.is_empty() {
            return Ok(0u64);
        }
        let now: i64 = rows[0].get(4);
        let reason = format!("worker {worker_id} lost");
        let transitions: Vec<Transition> = rows
            .iter()
            .map(|r| {
                let k = (r.get(0), r.get(1));
                lost_transition(now, k, u32_col(r.get(2)), u32_col(r.get(3)), &reason)
            })
            .collect();
        apply(&tx, now, &transitions).await?;
        notify_tasks(&tx, channel).await?;
        tx.commit().await?;
        Ok(rows.len() as u64)
    })?;
    if n > 0 {
        store.wake_local(Topic::Tasks);
    }
    Ok(n)
}

pub(crate) async fn reap_expired(store: &PgStore, policy: &RetryPolicy) -> StoreResult<ReapReport> {
    let now_p = store.now_param();
    let channel = store.inner.channel.as_str();
    let report = with_conn!(store, |c| {
        let tx = c.transaction().await?;
        // SKIP LOCKED: a row locked now is being settled by its worker; if its lease is still
        // expired afterwards, the next sweep takes it.
        let stmt = tx
            .prepare_cached(
                "SELECT t.id, t.attempt, t.max_retries, t.deadline_at, t.worker_id, t.started_at,
                        t.timeout_ms, clk.now, t.tenant
                 FROM tasks t, (SELECT sentinel_now_ms($1::int8) AS now) clk
                 WHERE t.state = 'running'
                   AND (t.lease_expires_at <= clk.now OR t.deadline_at <= clk.now)
                 ORDER BY t.tenant, t.id
                 FOR UPDATE OF t SKIP LOCKED",
            )
            .await?;
        let rows = tx.query(&stmt, &[&now_p]).await?;
        let mut report = ReapReport::default();
        if rows.is_empty() {
            return Ok(report);
        }
        let now: i64 = rows[0].get(7);
        let mut transitions = Vec::with_capacity(rows.len());
        let mut per_worker: HashMap<String, (i64, i64, i64)> = HashMap::new();
        for r in &rows {
            let id: (&str, &str) = (r.get(8), r.get(0));
            let (attempt, max_retries) = (u32_col(r.get(1)), u32_col(r.get(2)));
            let deadline: Option<i64> = r.get(3);
            let worker: Option<String> = r.get(4);
            let started: Option<i64> = r.get(5);
            let timeout: i64 = r.get(6);
            // A passed deadline is the task's fault (it ran too long); an expired lease alone
            // means its worker stopped renewing, i.e. is presumed dead.
            let t = if deadline.is_some_and(|d| d <= now) {
                if let Some(w) = &worker {
                    let e = per_worker.entry(w.clone()).or_default();
                    e.1 += 1;
                    e.2 =
                        e.2.saturating_add(now.saturating_sub(started.unwrap_or(now)).max(0));
                }
                failure_transition(
                    now,
                    id,
                    attempt,
                    max_retries,
                    &format!("timed out after {timeout} ms"),
                    true,
                    policy,
                )
            } else {
                let who = worker.as_deref().unwrap_or("?");
                lost_transition(
                    now,
                    id,
                    attempt,
                    max_retries,
                    &format!("lease of worker {who} expired"),
                )
            };
            match t.state {
                TaskState::Pending => report.requeued += 1,
                TaskState::Failed => report.retrying += 1,
                _ => report.dead += 1,
            }
            transitions.push(t);
        }
        apply(&tx, now, &transitions).await?;
        add_outcomes(&tx, per_worker).await?;
        if report.requeued > 0 {
            notify_tasks(&tx, channel).await?;
        }
        tx.commit().await?;
        Ok(report)
    })?;
    if report.requeued > 0 {
        store.wake_local(Topic::Tasks);
    }
    Ok(report)
}

pub(crate) async fn renew_lease(
    store: &PgStore,
    tenant: &str,
    task_id: &str,
    fence: u64,
    lease_ms: u64,
) -> StoreResult<Result<i64, Rejection>> {
    let now = store.now_param();
    let f = fence as i64;
    let lease = ms_param(lease_ms);
    with_conn!(store, |c| {
        let stmt = c
            .prepare_cached(
                // Probed by key alone (see `crate::settle`), checked on the locked version.
                "WITH k AS MATERIALIZED (
                     SELECT k.state, k.fence FROM tasks k WHERE k.tenant = $5 AND k.id = $1
                     LIMIT 1 FOR UPDATE OF k)
                 UPDATE tasks t SET lease_expires_at = clk.now + $3::int8, updated_at = clk.now
                 FROM (SELECT sentinel_now_ms($4::int8) AS now) clk, k
                 WHERE t.tenant = $5 AND t.id = $1 AND k.state = 'running' AND k.fence = $2
                 RETURNING t.lease_expires_at",
            )
            .await?;
        if let Some(r) = c
            .query_opt(&stmt, &[&task_id, &f, &lease, &now, &tenant])
            .await?
        {
            return Ok(Ok(r.get(0)));
        }
        let current = rejections(&**c, &[(tenant, task_id)]).await?;
        Ok(Err(rejection(current.get(&key(tenant, task_id)), fence)))
    })
}

/// Gives back unstarted claims (see [`sentinel_coord::QueueStore::release_claims`]): the rows
/// still running under the presented fence are locked in (tenant, id) order (probed by key
/// alone, see [`crate::settle`]), then returned to
/// pending with their attempt taken back, and claimers are notified, in one statement.
const RELEASE: &str = "
WITH locked AS MATERIALIZED (
    SELECT x.tenant, x.id FROM (
        SELECT * FROM unnest($1::text[], $2::text[], $3::int8[]) AS x(tenant, id, fence)
        ORDER BY x.tenant, x.id) x
    CROSS JOIN LATERAL (
        SELECT t.state, t.fence FROM tasks t WHERE t.tenant = x.tenant AND t.id = x.id
        LIMIT 1 FOR UPDATE OF t) k
    WHERE k.state = 'running' AND k.fence = x.fence
),
up AS (
    UPDATE tasks t SET state = 'pending', attempt = GREATEST(t.attempt - 1, 0),
           worker_id = NULL, worker_incarnation = NULL, lease_expires_at = NULL,
           deadline_at = NULL, started_at = NULL, updated_at = sentinel_now_ms($4::int8)
    FROM locked WHERE t.tenant = locked.tenant AND t.id = locked.id
    RETURNING 1
),
n AS (SELECT pg_notify($5, $6) WHERE EXISTS (SELECT 1 FROM up))
SELECT (SELECT count(*) FROM up), (SELECT count(*) FROM n)";

pub(crate) async fn release_claims(store: &PgStore, claims: &[TaskClaim]) -> StoreResult<u64> {
    if claims.is_empty() {
        return Ok(0);
    }
    let tenants: Vec<&str> = claims.iter().map(|c| c.tenant.as_str()).collect();
    let ids: Vec<&str> = claims.iter().map(|c| c.task_id.as_str()).collect();
    let fences: Vec<i64> = claims.iter().map(|c| c.fence as i64).collect();
    let now = store.now_param();
    let channel = store.inner.channel.as_str();
    let n = with_conn!(store, |c| {
        let stmt = c.prepare_cached(RELEASE).await?;
        let row = c
            .query_one(
                &stmt,
                &[
                    &tenants,
                    &ids,
                    &fences,
                    &now,
                    &channel,
                    &crate::notify::TASKS_PAYLOAD,
                ],
            )
            .await?;
        Ok(row.get::<_, i64>(0) as u64)
    })?;
    if n > 0 {
        store.wake_local(Topic::Tasks);
    }
    Ok(n)
}
