//! Settlement SQL: complete, fail, cancel, retry from the dead-letter queue, and the
//! transitions [`crate::recover`] shares. A task is named by (tenant, id) everywhere;
//! dependencies never cross tenants. Every change of a running task is
//! conditioned on `state = 'running' AND fence = <presented>` evaluated on the row's latest
//! version (PostgreSQL re-checks the condition after waiting for a concurrent writer), which is
//! what makes completion exactly-once when leases are lost. Decisions that need Rust (retry
//! backoff with jitter) lock the rows first (`FOR UPDATE`), decide, then write in one batch.
//! This module must never settle a task whose fence it has not checked under a row lock.
//!
//! Hot statements find tasks by (tenant, id) with a `LATERAL` subquery with `LIMIT 1` (it
//! cannot be pulled up into a join the planner may reorder) whose only conditions are the key,
//! so the primary key is the only index that fits; state and fence are checked outside, on the
//! version the subquery locked, and the row is then updated by key alone. Never by the locked
//! version's `ctid`: when the lock waited for a concurrent writer (a heartbeat extending the
//! leases), the locked version is newer than the statement's snapshot, a `ctid` scan does not
//! see it, and the update silently did nothing (completions refused as "task is running");
//! updated by key, PostgreSQL follows the row to its latest version, which this statement
//! holds locked. With `state = 'running'` inside the probe the planner, once
//! statistics say few tasks are running, probed an index on (tenant, state) instead (the one
//! schema step 5 dropped; a partial index on running tasks invites the same) and read every
//! running task of the tenant for every key: measured at 47 ms per batch of 150 completions
//! with ~500 tasks running (quadratic in the batch), against ~2 ms probed by key.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use sentinel_coord::model::*;
use sentinel_coord::{StoreError, StoreResult, Topic};
use tokio_postgres::Statement;

use crate::codec::{ms_param, u32_col, u64_col};
use crate::error::OpError;
use crate::notify::TASKS_PAYLOAD;
use crate::plan::Generic;
use crate::queue::parse_state;
use crate::store::{PgStore, with_conn};
use crate::tenants::{self, RAISE, SKIP};

pub(crate) type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// Completes one batch of distinct tasks in one statement: settle the rows, add the workers'
/// stats, and notify claimers if a completed task has dependents (they may now be claimable).
/// Returns the ordinals (1-based) of the completions that applied.
///
/// Each key is probed on its own, by key alone (see the module documentation), locked, then checked
/// (running, presented fence) on the locked, latest version, and updated by key.
const COMPLETE: &str = "
WITH clk AS MATERIALIZED (SELECT sentinel_now_ms($1::int8) AS now),
target AS MATERIALIZED (
    SELECT i.ord, i.tenant, i.id, i.output
    FROM unnest($7::text[], $2::text[], $3::int8[], $4::bytea[])
        WITH ORDINALITY AS i(tenant, id, fence, output, ord)
    CROSS JOIN LATERAL (
        SELECT t.state, t.fence FROM tasks t
        WHERE t.tenant = i.tenant AND t.id = i.id
        LIMIT 1 FOR UPDATE OF t) x
    WHERE x.state = 'running' AND x.fence = i.fence
),
done AS (
    UPDATE tasks t SET state = 'completed', output = g.output, finished_at = clk.now,
        updated_at = clk.now, lease_expires_at = NULL, deadline_at = NULL
    FROM target g, clk
    WHERE t.tenant = g.tenant AND t.id = g.id
    RETURNING g.ord, t.tenant, t.id, t.worker_id,
        GREATEST(clk.now - COALESCE(t.started_at, clk.now), 0) AS dur
),
stats AS (
    UPDATE workers w SET completed = w.completed + s.n,
        total_duration_ms = w.total_duration_ms + s.dur
    FROM (SELECT worker_id, count(*) AS n, sum(dur)::int8 AS dur FROM done
          WHERE worker_id IS NOT NULL GROUP BY worker_id) s
    WHERE w.worker_id = s.worker_id
),
n AS (
    SELECT pg_notify($5, $6)
    WHERE EXISTS (SELECT 1 FROM done d CROSS JOIN LATERAL (
        SELECT 1 FROM task_deps td WHERE td.tenant = d.tenant AND td.dep_id = d.id LIMIT 1) x)
)
SELECT d.ord, (SELECT count(*) FROM n) FROM done d";

/// A task's identity: (tenant, id).
pub(crate) type Key = (String, String);

pub(crate) fn key(tenant: &str, id: &str) -> Key {
    (tenant.to_string(), id.to_string())
}

/// Why a settlement that needs "running with this fence" did not match, for each key.
pub(crate) async fn rejections(
    c: &impl tokio_postgres::GenericClient,
    keys: &[(&str, &str)],
) -> Result<HashMap<Key, (TaskState, u64)>, OpError> {
    let tenants: Vec<&str> = keys.iter().map(|k| k.0).collect();
    let ids: Vec<&str> = keys.iter().map(|k| k.1).collect();
    let rows = c
        .query(
            "SELECT t.tenant, t.id, t.state, t.fence FROM tasks t
             JOIN unnest($1::text[], $2::text[]) AS k(tenant, id)
               ON t.tenant = k.tenant AND t.id = k.id",
            &[&tenants, &ids],
        )
        .await?;
    let mut out = HashMap::new();
    for r in &rows {
        out.insert(
            (r.get(0), r.get(1)),
            (parse_state(r.get(2))?, u64_col(r.get(3))),
        );
    }
    Ok(out)
}

pub(crate) fn rejection(current: Option<&(TaskState, u64)>, fence: u64) -> Rejection {
    match current {
        None => Rejection::NotFound,
        Some(&(TaskState::Running, cur)) if cur != fence => Rejection::StaleFence { current: cur },
        Some(&(state, _)) => Rejection::NotRunning(state),
    }
}

/// Splits a batch into rounds in which every task (tenant, id) occurs once (normally one
/// round), so a task settled twice in one batch is judged the second time against the first's
/// result, as a sequential store would.
fn rounds<T>(items: &[T], id: impl Fn(&T) -> (&str, &str)) -> Vec<Vec<usize>> {
    type Round<'k> = (HashSet<(&'k str, &'k str)>, Vec<usize>);
    let mut rounds: Vec<Round> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let key = id(it);
        match rounds.iter_mut().find(|(seen, _)| !seen.contains(&key)) {
            Some((seen, idx)) => {
                seen.insert(key);
                idx.push(i);
            }
            None => rounds.push((HashSet::from([key]), vec![i])),
        }
    }
    rounds
        .into_iter()
        .map(|(_, mut idx)| {
            // Key order: concurrent batches then lock their rows in one global order and cannot
            // deadlock on each other (a deadlock would only cost a retry, after a second).
            idx.sort_by(|&a, &b| id(&items[a]).cmp(&id(&items[b])));
            idx
        })
        .collect()
}

/// Runs [`COMPLETE`] for one round; returns per-item "applied" and whether claimers were notified.
async fn complete_round<C: tokio_postgres::GenericClient + Sync>(
    c: &C,
    generic: &Generic,
    stmt: &Statement,
    items: &[&Completion],
    now: Option<i64>,
    channel: &str,
) -> Result<(Vec<bool>, bool), OpError> {
    let tenants: Vec<&str> = items.iter().map(|c| c.tenant.as_str()).collect();
    let ids: Vec<&str> = items.iter().map(|c| c.task_id.as_str()).collect();
    let fences: Vec<i64> = items.iter().map(|c| c.fence as i64).collect();
    let outputs: Vec<&[u8]> = items.iter().map(|c| c.output.as_slice()).collect();
    let rows = generic
        .query(
            c,
            stmt,
            &[
                &now,
                &ids,
                &fences,
                &outputs,
                &channel,
                &TASKS_PAYLOAD,
                &tenants,
            ],
        )
        .await?;
    let mut applied = vec![false; items.len()];
    for r in &rows {
        // 1-based, from `WITH ORDINALITY` over the arrays built from `items`.
        let ord = r.get::<_, i64>(0);
        if let Some(slot) = usize::try_from(ord - 1)
            .ok()
            .and_then(|k| applied.get_mut(k))
        {
            *slot = true;
        }
    }
    let notified = rows.first().is_some_and(|r| r.get::<_, i64>(1) > 0);
    Ok((applied, notified))
}

pub(crate) async fn complete(
    store: &PgStore,
    completions: &[Completion],
) -> StoreResult<Vec<Settlement>> {
    if completions.is_empty() {
        return Ok(Vec::new());
    }
    let now = store.now_param();
    let channel = store.inner.channel.as_str();
    let rounds = rounds(completions, |c| (c.tenant.as_str(), c.task_id.as_str()));
    let (applied, notified, current) = with_conn!(store, |c| {
        let stmt = c.prepare_cached(COMPLETE).await?;
        let generic = Generic::prepare(&c).await?;
        let mut applied = vec![false; completions.len()];
        let mut notified = false;
        let pick = |idx: &[usize]| idx.iter().map(|&i| &completions[i]).collect::<Vec<_>>();
        if rounds.len() == 1 {
            // The common case: one autocommit statement.
            let (a, n) =
                complete_round(&**c, &generic, &stmt, &pick(&rounds[0]), now, channel).await?;
            for (k, &i) in rounds[0].iter().enumerate() {
                applied[i] = a[k];
            }
            notified |= n;
            let refused: Vec<(&str, &str)> = (0..completions.len())
                .filter(|&i| !applied[i])
                .map(|i| {
                    (
                        completions[i].tenant.as_str(),
                        completions[i].task_id.as_str(),
                    )
                })
                .collect();
            let current = if refused.is_empty() {
                HashMap::new()
            } else {
                rejections(&**c, &refused).await?
            };
            return Ok((applied, notified, current));
        }
        let tx = c.transaction().await?;
        for round in &rounds {
            let (a, n) = complete_round(&*tx, &generic, &stmt, &pick(round), now, channel).await?;
            for (k, &i) in round.iter().enumerate() {
                applied[i] = a[k];
            }
            notified |= n;
        }
        let refused: Vec<(&str, &str)> = (0..completions.len())
            .filter(|&i| !applied[i])
            .map(|i| {
                (
                    completions[i].tenant.as_str(),
                    completions[i].task_id.as_str(),
                )
            })
            .collect();
        let current = rejections(&*tx, &refused).await?;
        tx.commit().await?;
        Ok((applied, notified, current))
    })?;
    if notified {
        store.wake_local(Topic::Tasks);
    }
    Ok(completions
        .iter()
        .zip(applied)
        .map(|(c, ok)| {
            if ok {
                Settlement::Applied(TaskState::Completed)
            } else {
                Settlement::Rejected(rejection(current.get(&key(&c.tenant, &c.task_id)), c.fence))
            }
        })
        .collect())
}

/// A decided change of a task's state, written by [`apply`].
pub(crate) struct Transition {
    tenant: String,
    id: String,
    pub(crate) state: TaskState,
    error: String,
    /// Set for pending/failed (when it may run again); dead keeps its run_at.
    run_at: Option<i64>,
}

/// Writes transitions in one statement, then fails every waiting dependent of a task that went
/// dead. Leases and deadlines end; a dead task is finished.
pub(crate) async fn apply(
    tx: &Tx<'_>,
    now: i64,
    transitions: &[Transition],
) -> Result<(), OpError> {
    if transitions.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = transitions.iter().map(|t| t.tenant.as_str()).collect();
    let ids: Vec<&str> = transitions.iter().map(|t| t.id.as_str()).collect();
    let states: Vec<&str> = transitions.iter().map(|t| t.state.as_str()).collect();
    let errors: Vec<&str> = transitions.iter().map(|t| t.error.as_str()).collect();
    let run_at: Vec<Option<i64>> = transitions.iter().map(|t| t.run_at).collect();
    let stmt = tx
        .prepare_cached(
            "UPDATE tasks t SET state = x.state, error = x.error,
               run_at = COALESCE(x.run_at, t.run_at),
               finished_at = CASE WHEN x.state = 'dead' THEN $5::int8 ELSE t.finished_at END,
               updated_at = $5::int8, lease_expires_at = NULL, deadline_at = NULL
             FROM unnest($6::text[], $1::text[], $2::text[], $3::text[], $4::int8[])
                  AS x(tenant, id, state, error, run_at)
             WHERE t.tenant = x.tenant AND t.id = x.id",
        )
        .await?;
    tx.execute(&stmt, &[&ids, &states, &errors, &run_at, &now, &tenants])
        .await?;
    let dead: Vec<(&str, &str)> = transitions
        .iter()
        .filter(|t| t.state == TaskState::Dead)
        .map(|t| (t.tenant.as_str(), t.id.as_str()))
        .collect();
    cascade_dead(tx, now, &dead).await
}

/// Moves every pending/failed task that (transitively) depends on one of `roots` (tenant, id)
/// to dead: it can never run, and waiting for it would hide the failure. The reason names the
/// dependency through which the failure reached it. Dependencies never cross tenants.
async fn cascade_dead(tx: &Tx<'_>, now: i64, roots: &[(&str, &str)]) -> Result<(), OpError> {
    if roots.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = roots.iter().map(|r| r.0).collect();
    let ids: Vec<&str> = roots.iter().map(|r| r.1).collect();
    let stmt = tx
        .prepare_cached(
            "WITH RECURSIVE doomed(tenant, id, dep) AS (
                 SELECT d.tenant, d.task_id, d.dep_id
                 FROM unnest($3::text[], $1::text[]) AS r(tenant, id)
                 JOIN task_deps d ON d.tenant = r.tenant AND d.dep_id = r.id
                 JOIN tasks t ON t.tenant = d.tenant AND t.id = d.task_id
                 WHERE t.state IN ('pending', 'failed')
               UNION
                 SELECT d.tenant, d.task_id, d.dep_id FROM doomed x
                 JOIN task_deps d ON d.tenant = x.tenant AND d.dep_id = x.id
                 JOIN tasks t ON t.tenant = d.tenant AND t.id = d.task_id
                 WHERE t.state IN ('pending', 'failed')
             )
             UPDATE tasks t SET state = 'dead',
               error = 'dependency ' || x.dep || ' will never complete',
               finished_at = $2::int8, updated_at = $2::int8
             FROM (SELECT DISTINCT ON (tenant, id) tenant, id, dep FROM doomed
                   ORDER BY tenant, id, dep) x
             WHERE t.tenant = x.tenant AND t.id = x.id AND t.state IN ('pending', 'failed')",
        )
        .await?;
    tx.execute(&stmt, &[&ids, &now, &tenants]).await?;
    Ok(())
}

/// Adds outcomes to worker stats, one row per worker.
pub(crate) async fn add_outcomes(
    tx: &Tx<'_>,
    per_worker: HashMap<String, (i64, i64, i64)>,
) -> Result<(), OpError> {
    if per_worker.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::new();
    let (mut ok, mut bad, mut dur) = (Vec::new(), Vec::new(), Vec::new());
    for (w, (c, f, d)) in per_worker {
        ids.push(w);
        ok.push(c);
        bad.push(f);
        dur.push(d);
    }
    let stmt = tx
        .prepare_cached(
            "UPDATE workers w SET completed = w.completed + x.c, failed = w.failed + x.f,
               total_duration_ms = w.total_duration_ms + x.d
             FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[]) AS x(id, c, f, d)
             WHERE w.worker_id = x.id",
        )
        .await?;
    tx.execute(&stmt, &[&ids, &ok, &bad, &dur]).await?;
    Ok(())
}

pub(crate) async fn notify_tasks(tx: &Tx<'_>, channel: &str) -> Result<(), OpError> {
    let stmt = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
    tx.execute(&stmt, &[&channel, &TASKS_PAYLOAD]).await?;
    Ok(())
}

/// The failure path shared by explicit failures and deadlines: retry with backoff while
/// attempts remain, else dead-letter.
pub(crate) fn failure_transition(
    now: i64,
    (tenant, id): (&str, &str),
    attempt: u32,
    max_retries: u32,
    error: &str,
    retryable: bool,
    policy: &RetryPolicy,
) -> Transition {
    if retryable && attempt <= max_retries {
        Transition {
            tenant: tenant.to_string(),
            id: id.to_string(),
            state: TaskState::Failed,
            error: error.to_string(),
            run_at: Some(now.saturating_add(ms_param(policy.delay_for(attempt)))),
        }
    } else {
        Transition {
            tenant: tenant.to_string(),
            id: id.to_string(),
            state: TaskState::Dead,
            error: if retryable {
                format!("{error} (gave up after {attempt} attempts)")
            } else {
                error.to_string()
            },
            run_at: None,
        }
    }
}

/// The lost-worker path: runnable again at once, unless all attempts are used up (a task that
/// kills its workers must not loop forever).
pub(crate) fn lost_transition(
    now: i64,
    (tenant, id): (&str, &str),
    attempt: u32,
    max_retries: u32,
    reason: &str,
) -> Transition {
    if attempt > max_retries {
        Transition {
            tenant: tenant.to_string(),
            id: id.to_string(),
            state: TaskState::Dead,
            error: format!("{reason} (gave up after {attempt} attempts)"),
            run_at: None,
        }
    } else {
        Transition {
            tenant: tenant.to_string(),
            id: id.to_string(),
            state: TaskState::Pending,
            error: reason.to_string(),
            run_at: Some(now),
        }
    }
}

/// A task row as `fail` locked it.
struct Locked {
    state: TaskState,
    fence: u64,
    attempt: u32,
    max_retries: u32,
    worker: Option<String>,
    started_at: Option<i64>,
}

pub(crate) async fn fail(
    store: &PgStore,
    failures: &[Failure],
    policy: &RetryPolicy,
) -> StoreResult<Vec<Settlement>> {
    if failures.is_empty() {
        return Ok(Vec::new());
    }
    let now_p = store.now_param();
    let tenants: Vec<&str> = failures.iter().map(|f| f.tenant.as_str()).collect();
    let ids: Vec<&str> = failures.iter().map(|f| f.task_id.as_str()).collect();
    with_conn!(store, |c| {
        let tx = c.transaction().await?;
        let stmt = tx
            .prepare_cached(
                "SELECT t.tenant, t.id, t.state, t.fence, t.attempt, t.max_retries, t.worker_id,
                        t.started_at, sentinel_now_ms($2::int8)
                 FROM tasks t
                 WHERE (t.tenant, t.id) IN (SELECT * FROM unnest($3::text[], $1::text[]))
                 ORDER BY t.tenant, t.id FOR UPDATE OF t",
            )
            .await?;
        let rows = tx.query(&stmt, &[&ids, &now_p, &tenants]).await?;
        let now = match (now_p, rows.first()) {
            (Some(n), _) => n,
            (None, Some(r)) => r.get(8),
            // Nothing to settle: every failure is for an unknown task.
            (None, None) => 0,
        };
        // Updated as we go, so a task failed twice in one batch is judged against the first
        // failure's result.
        let mut rows_by_id: HashMap<Key, Locked> = HashMap::new();
        for r in &rows {
            rows_by_id.insert(
                (r.get(0), r.get(1)),
                Locked {
                    state: parse_state(r.get(2))?,
                    fence: u64_col(r.get(3)),
                    attempt: u32_col(r.get(4)),
                    max_retries: u32_col(r.get(5)),
                    worker: r.get(6),
                    started_at: r.get(7),
                },
            );
        }
        let mut out = Vec::with_capacity(failures.len());
        let mut transitions: Vec<Transition> = Vec::new();
        let mut per_worker: HashMap<String, (i64, i64, i64)> = HashMap::new();
        for f in failures {
            let Some(row) = rows_by_id.get_mut(&key(&f.tenant, &f.task_id)) else {
                out.push(Settlement::Rejected(Rejection::NotFound));
                continue;
            };
            if row.state != TaskState::Running {
                out.push(Settlement::Rejected(Rejection::NotRunning(row.state)));
                continue;
            }
            if row.fence != f.fence {
                out.push(Settlement::Rejected(Rejection::StaleFence {
                    current: row.fence,
                }));
                continue;
            }
            let t = failure_transition(
                now,
                (&f.tenant, &f.task_id),
                row.attempt,
                row.max_retries,
                &f.error,
                f.retryable,
                policy,
            );
            row.state = t.state;
            if let Some(w) = &row.worker {
                let e = per_worker.entry(w.clone()).or_default();
                e.1 += 1;
                e.2 += (now - row.started_at.unwrap_or(now)).max(0);
            }
            out.push(Settlement::Applied(t.state));
            transitions.push(t);
        }
        apply(&tx, now, &transitions).await?;
        add_outcomes(&tx, per_worker).await?;
        tx.commit().await?;
        Ok(out)
    })
}

pub(crate) async fn cancel(store: &PgStore, tenant: &str, task_id: &str) -> StoreResult<bool> {
    let now_p = store.now_param();
    with_conn!(store, |c| {
        let tx = c.transaction().await?;
        let stmt = tx
            .prepare_cached(
                "UPDATE tasks SET state = 'cancelled', finished_at = clk.now, updated_at = clk.now,
                   lease_expires_at = NULL, deadline_at = NULL
                 FROM (SELECT sentinel_now_ms($3::int8) AS now) clk
                 WHERE id = $1 AND tenant = $2 AND state IN ('pending', 'failed', 'running')
                 RETURNING clk.now",
            )
            .await?;
        let Some(row) = tx.query_opt(&stmt, &[&task_id, &tenant, &now_p]).await? else {
            return Ok(false);
        };
        cascade_dead(&tx, row.get(0), &[(tenant, task_id)]).await?;
        tx.commit().await?;
        Ok(true)
    })
}

/// Revives a dead task (see [`retry_dead`]); raises the tenant's virtual time if it had no
/// queued task.
static RETRY_DEAD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH RECURSIVE clk AS MATERIALIZED (SELECT sentinel_now_ms($3::int8) AS now),
         was AS MATERIALIZED (
             SELECT NOT EXISTS (SELECT 1 FROM tasks t
                                WHERE t.tenant = $2 AND t.state IN ('pending', 'failed')) AS idle
         ),
         revived AS (
             UPDATE tasks SET state = 'pending', attempt = 0, error = NULL,
               run_at = clk.now, updated_at = clk.now, finished_at = NULL
             FROM clk
             WHERE id = $1 AND tenant = $2 AND state = 'dead'
               AND NOT EXISTS (SELECT 1 FROM task_deps d
                               JOIN tasks t2 ON t2.tenant = d.tenant AND t2.id = d.dep_id
                               WHERE d.tenant = $2 AND d.task_id = $1
                                 AND t2.state IN ('dead', 'cancelled'))
             RETURNING tenant
         ),
         idle AS MATERIALIZED (SELECT r.tenant FROM revived r WHERE (SELECT idle FROM was)),
         {SKIP},
         {RAISE},
         n AS (SELECT pg_notify($4, $5) WHERE EXISTS (SELECT 1 FROM revived))
         SELECT (SELECT count(*) FROM revived), (SELECT count(*) FROM n)"
    )
});

pub(crate) async fn retry_dead(store: &PgStore, tenant: &str, task_id: &str) -> StoreResult<bool> {
    let now = store.now_param();
    let channel = store.inner.channel.as_str();
    let revived = with_conn!(store, |c| {
        // A task whose dependency is itself dead would sit pending forever: retry the
        // dependency first.
        let stmt = c.prepare_cached(&RETRY_DEAD).await?;
        let tx = c.transaction().await?;
        let quota = tenants::lock_queued_quota(&tx, tenant).await?;
        let row = tx
            .query_one(&stmt, &[&task_id, &tenant, &now, &channel, &TASKS_PAYLOAD])
            .await?;
        let revived = row.get::<_, i64>(0) > 0;
        if let Some(max) = quota.filter(|_| revived)
            && tenants::queued_over(&tx, tenant, max).await?
        {
            // Dropping the transaction rolls the revival back.
            return Err(StoreError::Quota(QuotaExceeded {
                tenant: tenant.to_string(),
                quota: Quota::QueuedTasks,
                limit: max,
                retry_after_ms: None,
            })
            .into());
        }
        tx.commit().await?;
        Ok(revived)
    })?;
    if revived {
        store.wake_local(Topic::Tasks);
    }
    Ok(revived)
}

#[cfg(test)]
mod tests {
    use super::rounds;

    #[test]
    fn repeated_ids_go_to_later_rounds_and_each_round_is_in_id_order() {
        let ids = ["b", "a", "b", "c", "b", "a"];
        let r = rounds(&ids, |s| ("t", s));
        assert_eq!(r, vec![vec![1, 0, 3], vec![5, 2], vec![4]]);
        assert_eq!(rounds(&["x"], |s| ("t", s)), vec![vec![0]]);
    }

    #[test]
    fn the_same_id_in_two_tenants_is_two_tasks() {
        let keys = [("b", "x"), ("a", "x"), ("a", "x")];
        let r = rounds(&keys, |k| *k);
        assert_eq!(r, vec![vec![1, 0], vec![2]]);
    }
}
