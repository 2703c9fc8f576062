//! Queue SQL: submission, claims and reads; settlements (complete, fail, cancel, requeue, reap)
//! live in [`crate::settle`]. The `tasks_ready` partial index holds exactly the claimable-state
//! rows in claim order; a claim takes the head of it with `FOR UPDATE SKIP LOCKED`, so concurrent
//! claimers skip each other's rows instead of waiting, and leases up to N tasks in one statement.
//! A task's `fence` goes up on every claim; settlements must present the current one. This module
//! must never hand out a task without incrementing its fence in the same statement.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use sentinel_coord::model::*;
use sentinel_coord::{QueueStore, StoreError, StoreResult, Topic};
use tokio_postgres::Row;

use crate::codec::{from_json, ms_param, to_json, u32_col, u64_col};
use crate::error::{OpError, is_unique_violation};
use crate::notify::TASKS_PAYLOAD;
use crate::settle;
use crate::store::{PgStore, with_conn};

/// Task columns in the order [`decode`] reads them.
pub(crate) const COLS: &str = "id, tenant, task_type, priority, payload, metadata, max_retries, \
     timeout_ms, attempt, state, worker_id, lease_expires_at, fence, output, error, created_at, \
     updated_at, started_at, finished_at, run_at, depends_on, required_worker, same_worker_as, \
     excluded_workers";

pub(crate) fn parse_state(s: &str) -> Result<TaskState, StoreError> {
    TaskState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown task state {s}")))
}

pub(crate) fn decode(r: &Row) -> Result<Task, StoreError> {
    let depends_on: Option<&str> = r.get(20);
    Ok(Task {
        id: r.get(0),
        tenant: r.get(1),
        task_type: r.get(2),
        priority: r.get(3),
        payload: r.get(4),
        metadata: from_json(r.get::<_, &str>(5))?,
        max_retries: u32_col(r.get(6)),
        timeout_ms: u64_col(r.get(7)),
        attempt: u32_col(r.get(8)),
        state: parse_state(r.get(9))?,
        worker_id: r.get(10),
        lease_expires_at: r.get(11),
        fence: u64_col(r.get(12)),
        output: r.get(13),
        error: r.get(14),
        created_at: r.get(15),
        updated_at: r.get(16),
        started_at: r.get(17),
        finished_at: r.get(18),
        run_at: r.get(19),
        depends_on: depends_on.map(from_json).transpose()?.unwrap_or_default(),
        affinity: Affinity {
            required_worker: r.get(21),
            same_worker_as: r.get(22),
            excluded_workers: r.get::<_, Option<Vec<String>>>(23).unwrap_or_default(),
        },
        dependency_outputs: BTreeMap::new(),
    })
}

/// Inserts a batch in submission order (the identity `seq` is FIFO order) and notifies
/// claimers, in one statement: a duplicate id fails the whole statement, so a refused batch
/// stores nothing. `count(*) FROM n` forces the notification CTE to run.
const INSERT: &str = "
WITH clk AS MATERIALIZED (SELECT sentinel_now_ms($15::int8) AS now),
ins AS (
    INSERT INTO tasks (id, tenant, task_type, priority, payload, metadata, max_retries,
        timeout_ms, state, error, created_at, updated_at, run_at, finished_at, depends_on,
        required_worker, same_worker_as, excluded_workers)
    SELECT x.id, x.tenant, x.task_type, x.priority, x.payload, x.metadata, x.max_retries,
        x.timeout_ms, x.state, x.error, clk.now, clk.now, clk.now,
        CASE WHEN x.state = 'dead' THEN clk.now END, x.depends_on, x.required_worker,
        x.same_worker_as,
        CASE WHEN x.excluded IS NOT NULL
             THEN ARRAY(SELECT jsonb_array_elements_text(x.excluded::jsonb)) END
    FROM clk, unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::bytea[], $6::text[],
                     $7::int8[], $8::int8[], $9::text[], $10::text[], $11::text[], $12::text[],
                     $13::text[], $14::text[])
         WITH ORDINALITY AS x(id, tenant, task_type, priority, payload, metadata, max_retries,
                              timeout_ms, state, error, depends_on, required_worker,
                              same_worker_as, excluded, ord)
    ORDER BY x.ord
    RETURNING 1
),
n AS (SELECT pg_notify($16, $17) WHERE EXISTS (SELECT 1 FROM ins))
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM n)";

/// One claim: pick up to `$5` claimable rows in priority/FIFO order, skipping rows other
/// claimers hold, lease them, and return them with their dependencies' outputs, in claim order.
/// The picked rows are locked by this statement, so their `ctid` (the row version's address)
/// cannot move before the update in the same statement finds them by it.
const CLAIM: &str = "
WITH clk AS MATERIALIZED (SELECT sentinel_now_ms($1::int8) AS now),
picked AS (
    SELECT t.ctid FROM tasks t
    WHERE t.state IN ('pending', 'failed') AND t.run_at <= (SELECT now FROM clk)
      AND ($2::text[] IS NULL OR t.task_type = ANY ($2::text[]))
      AND ($3::text[] IS NULL OR t.tenant = ANY ($3::text[]))
      AND (t.required_worker IS NULL OR t.required_worker = $4::text)
      AND (t.excluded_workers IS NULL OR NOT ($4::text = ANY (t.excluded_workers)))
      AND (t.same_worker_as IS NULL
           OR EXISTS (SELECT 1 FROM tasks x WHERE x.id = t.same_worker_as AND x.worker_id = $4::text))
      AND (t.depends_on IS NULL
           OR NOT EXISTS (SELECT 1 FROM task_deps d JOIN tasks t2 ON t2.id = d.dep_id
                          WHERE d.task_id = t.id AND t2.state <> 'completed'))
    ORDER BY t.priority DESC, t.seq
    LIMIT $5::int8
    FOR UPDATE OF t SKIP LOCKED
),
claimed AS (
    UPDATE tasks u SET state = 'running', worker_id = $4::text, attempt = u.attempt + 1,
        fence = u.fence + 1, lease_expires_at = clk.now + $6::int8, worker_incarnation = $7::int8,
        deadline_at = CASE WHEN u.timeout_ms > 0
                           THEN LEAST(clk.now::numeric + u.timeout_ms, 9223372036854775807)::int8 END,
        started_at = clk.now, updated_at = clk.now, finished_at = NULL
    FROM picked, clk
    WHERE u.ctid = picked.ctid
    RETURNING u.*
)
SELECT c.id, c.tenant, c.task_type, c.priority, c.payload, c.metadata, c.max_retries,
    c.timeout_ms, c.attempt, c.state, c.worker_id, c.lease_expires_at, c.fence, c.output,
    c.error, c.created_at, c.updated_at, c.started_at, c.finished_at, c.run_at, c.depends_on,
    c.required_worker, c.same_worker_as, c.excluded_workers,
    CASE WHEN c.depends_on IS NOT NULL THEN
        (SELECT array_agg(d.dep_id ORDER BY d.dep_id) FROM task_deps d WHERE d.task_id = c.id) END,
    CASE WHEN c.depends_on IS NOT NULL THEN
        (SELECT array_agg(COALESCE(t2.output, ''::bytea) ORDER BY d.dep_id)
         FROM task_deps d JOIN tasks t2 ON t2.id = d.dep_id WHERE d.task_id = c.id) END
FROM claimed c
ORDER BY c.priority DESC, c.seq";

/// The batch as column arrays for [`INSERT`].
#[derive(Default)]
struct Columns<'a> {
    ids: Vec<String>,
    tenants: Vec<&'a str>,
    types: Vec<&'a str>,
    priorities: Vec<i32>,
    payloads: Vec<&'a [u8]>,
    metadata: Vec<String>,
    max_retries: Vec<i64>,
    timeouts: Vec<i64>,
    states: Vec<&'static str>,
    errors: Vec<Option<String>>,
    depends_on: Vec<Option<String>>,
    required: Vec<Option<&'a str>>,
    same_as: Vec<Option<&'a str>>,
    excluded: Vec<Option<String>>,
}

impl<'a> Columns<'a> {
    fn new(tasks: &'a [NewTask]) -> Result<Self, StoreError> {
        let mut c = Columns::default();
        for t in tasks {
            if t.task_type.is_empty() || t.tenant.is_empty() {
                return Err(StoreError::Invalid(
                    "task_type and tenant must be non-empty".into(),
                ));
            }
            c.ids.push(
                t.id.clone()
                    .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            );
            c.tenants.push(&t.tenant);
            c.types.push(&t.task_type);
            c.priorities.push(t.priority);
            c.payloads.push(&t.payload);
            c.metadata.push(to_json(&t.metadata)?);
            c.max_retries.push(i64::from(
                t.max_retries.unwrap_or(RetryPolicy::default().max_retries),
            ));
            c.timeouts
                .push(ms_param(t.timeout_ms.unwrap_or(DEFAULT_TASK_TIMEOUT_MS)));
            c.states.push(TaskState::Pending.as_str());
            c.errors.push(None);
            c.depends_on.push(
                (!t.depends_on.is_empty())
                    .then(|| to_json(&t.depends_on))
                    .transpose()?,
            );
            c.required.push(t.affinity.required_worker.as_deref());
            c.same_as.push(t.affinity.same_worker_as.as_deref());
            c.excluded.push(
                (!t.affinity.excluded_workers.is_empty())
                    .then(|| to_json(&t.affinity.excluded_workers))
                    .transpose()?,
            );
        }
        Ok(c)
    }
}

/// Runs [`INSERT`]; a duplicate id becomes `Invalid`, as in the SQLite store.
async fn insert<C: tokio_postgres::GenericClient + Sync>(
    c: &C,
    stmt: &tokio_postgres::Statement,
    cols: &Columns<'_>,
    now: Option<i64>,
    channel: &str,
) -> Result<(), OpError> {
    let r = c
        .query_one(
            stmt,
            &[
                &cols.ids,
                &cols.tenants,
                &cols.types,
                &cols.priorities,
                &cols.payloads,
                &cols.metadata,
                &cols.max_retries,
                &cols.timeouts,
                &cols.states,
                &cols.errors,
                &cols.depends_on,
                &cols.required,
                &cols.same_as,
                &cols.excluded,
                &now,
                &channel,
                &TASKS_PAYLOAD,
            ],
        )
        .await
        .map_err(OpError::from);
    match r {
        Err(e) if is_unique_violation(&e) => Err(StoreError::Invalid(format!(
            "a task id in this batch already exists ({})",
            e.into_store()
        ))
        .into()),
        Err(e) => Err(e),
        Ok(_) => Ok(()),
    }
}

/// Checks every dependency of the batch (same tenant, submitted before the dependent: earlier
/// in this batch or already stored) and marks dependents of dead or cancelled tasks dead. Stored
/// dependencies are share-locked until commit, so one cannot die unseen between this check and
/// the insert (its cascade then runs after our commit and sees the new dependents).
async fn resolve_dependencies(
    tx: &deadpool_postgres::Transaction<'_>,
    tasks: &[NewTask],
    cols: &mut Columns<'_>,
) -> Result<(Vec<String>, Vec<String>), OpError> {
    let mut lookup_tenants: Vec<&str> = Vec::new();
    let mut lookup_ids: Vec<&str> = Vec::new();
    for t in tasks {
        for d in &t.depends_on {
            lookup_tenants.push(&t.tenant);
            lookup_ids.push(d);
        }
    }
    let stmt = tx
        .prepare_cached(
            "SELECT t.tenant, t.id, t.state FROM tasks t
             JOIN unnest($1::text[], $2::text[]) AS q(tenant, id)
               ON t.tenant = q.tenant AND t.id = q.id
             ORDER BY t.id
             FOR SHARE OF t",
        )
        .await?;
    let rows = tx.query(&stmt, &[&lookup_tenants, &lookup_ids]).await?;
    let mut known: HashMap<(String, String), TaskState> = HashMap::new();
    for r in &rows {
        known.insert((r.get(0), r.get(1)), parse_state(r.get(2))?);
    }
    let mut dep_task = Vec::new();
    let mut dep_on = Vec::new();
    for (i, t) in tasks.iter().enumerate() {
        let id = cols.ids[i].clone();
        for dep in &t.depends_on {
            let earlier = (0..i)
                .find(|&j| cols.ids[j] == *dep && tasks[j].tenant == t.tenant)
                .map(|j| {
                    if cols.states[j] == TaskState::Dead.as_str() {
                        TaskState::Dead
                    } else {
                        TaskState::Pending
                    }
                });
            let state = earlier.or_else(|| known.get(&(t.tenant.clone(), dep.clone())).copied());
            let Some(state) = state else {
                return Err(StoreError::Invalid(format!(
                    "task {id} depends on unknown task {dep}"
                ))
                .into());
            };
            if matches!(state, TaskState::Dead | TaskState::Cancelled) {
                cols.states[i] = TaskState::Dead.as_str();
                cols.errors[i] = Some(format!("dependency {dep} will never complete"));
            }
            dep_task.push(id.clone());
            dep_on.push(dep.clone());
        }
    }
    Ok((dep_task, dep_on))
}

#[async_trait]
impl QueueStore for PgStore {
    async fn enqueue(&self, tasks: &[NewTask]) -> StoreResult<Vec<String>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        validate_tasks(tasks)?;
        let cols = Columns::new(tasks)?;
        let with_deps = tasks.iter().any(|t| !t.depends_on.is_empty());
        let now = self.now_param();
        let channel = self.inner.channel.as_str();
        let ids = with_conn!(self, |c| {
            let stmt = c.prepare_cached(INSERT).await?;
            if !with_deps {
                // The common case: one statement, one round trip, atomic by itself.
                insert(&**c, &stmt, &cols, now, channel).await?;
                return Ok(cols.ids.clone());
            }
            let mut cols = Columns::new(tasks)?;
            let tx = c.transaction().await?;
            let (dep_task, dep_on) = resolve_dependencies(&tx, tasks, &mut cols).await?;
            insert(&*tx, &stmt, &cols, now, channel).await?;
            let deps = tx
                .prepare_cached(
                    "INSERT INTO task_deps (task_id, dep_id)
                     SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
                )
                .await?;
            tx.execute(&deps, &[&dep_task, &dep_on]).await?;
            tx.commit().await?;
            Ok(cols.ids)
        })?;
        self.wake_local(Topic::Tasks);
        Ok(ids)
    }

    async fn claim(&self, req: &ClaimRequest) -> StoreResult<Vec<Task>> {
        req.validate()?;
        if req.limit == 0 {
            return Ok(Vec::new());
        }
        let now = self.now_param();
        let inc = req.incarnation as i64;
        let limit = i64::from(req.limit);
        let lease = ms_param(req.lease_ms);
        let claimed = with_conn!(self, |c| {
            let stmt = c.prepare_cached(CLAIM).await?;
            let tx = c.transaction().await?;
            // The claim must walk `tasks_ready` in order and stop after `limit` rows. Without
            // fresh statistics (or with a small backlog) the planner prefers a bitmap scan of
            // every claimable row plus a sort, which also revisits every dead index entry a
            // bitmap scan cannot mark dead: cost growing with history, not with the batch.
            // These settings (sent in the same round trip as the claim) rule that plan out for
            // this transaction only. (Disabling a plan shape inflates its cost estimate, which
            // must never push the statement over the JIT threshold: the connections run with
            // `jit = off`, see `PgStore::open_with`.)
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
                &now,
                &req.task_types,
                &req.tenants,
                &req.worker_id,
                &limit,
                &lease,
                &inc,
            ];
            let (_, rows) = tokio::try_join!(
                tx.batch_execute(
                    "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off"
                ),
                tx.query(&stmt, &params),
            )?;
            tx.commit().await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let mut task = decode(r)?;
                let dep_ids: Option<Vec<String>> = r.get(24);
                let dep_outputs: Option<Vec<Vec<u8>>> = r.get(25);
                if let (Some(ids), Some(outputs)) = (dep_ids, dep_outputs) {
                    task.dependency_outputs = ids.into_iter().zip(outputs).collect();
                }
                out.push(task);
            }
            Ok(out)
        })?;
        self.note_claimed(claimed.len());
        Ok(claimed)
    }

    async fn renew_lease(
        &self,
        _tenant: &str,
        task_id: &str,
        fence: u64,
        lease_ms: u64,
    ) -> StoreResult<Result<i64, Rejection>> {
        validate_lease(lease_ms)?;
        settle::renew_lease(self, task_id, fence, lease_ms).await
    }

    /// The heartbeat's piggyback, committed like the heartbeat without waiting for the WAL
    /// flush: an extension lost in a server crash only lets a lease expire early, and an
    /// expired lease means the task runs again (at-least-once), never that it completes twice.
    async fn extend_worker_leases(
        &self,
        worker_id: &str,
        incarnation: u64,
        lease_ms: u64,
    ) -> StoreResult<u64> {
        validate_lease(lease_ms)?;
        let inc = incarnation as i64;
        let now = self.now_param();
        let lease = ms_param(lease_ms);
        with_conn!(self, |c| {
            let stmt = c
                .prepare_cached(
                    "WITH relaxed AS MATERIALIZED (
                         SELECT set_config('synchronous_commit', 'off', true))
                     UPDATE tasks SET lease_expires_at =
                       GREATEST(COALESCE(lease_expires_at, 0), sentinel_now_ms($3::int8) + $2::int8)
                     FROM relaxed WHERE worker_id = $1 AND state = 'running'
                       AND COALESCE(worker_incarnation, 0) = $4",
                )
                .await?;
            Ok(c.execute(&stmt, &[&worker_id, &lease, &now, &inc]).await?)
        })
    }

    async fn complete(&self, completions: &[Completion]) -> StoreResult<Vec<Settlement>> {
        settle::complete(self, completions).await
    }

    async fn fail(
        &self,
        failures: &[Failure],
        policy: &RetryPolicy,
    ) -> StoreResult<Vec<Settlement>> {
        settle::fail(self, failures, policy).await
    }

    async fn cancel(&self, tenant: &str, task_id: &str) -> StoreResult<bool> {
        settle::cancel(self, tenant, task_id).await
    }

    async fn retry_dead(&self, tenant: &str, task_id: &str) -> StoreResult<bool> {
        settle::retry_dead(self, tenant, task_id).await
    }

    async fn get_task(&self, tenant: &str, task_id: &str) -> StoreResult<Option<Task>> {
        with_conn!(self, |c| {
            let stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLS} FROM tasks WHERE id = $1 AND tenant = $2"
                ))
                .await?;
            match c.query_opt(&stmt, &[&task_id, &tenant]).await? {
                Some(r) => Ok(Some(decode(&r)?)),
                None => Ok(None),
            }
        })
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<Vec<Task>> {
        let state = filter.state.map(TaskState::as_str);
        // LIMIT NULL is no limit.
        let limit = (filter.limit > 0).then_some(i64::from(filter.limit));
        let (keyset, order) = match filter.order {
            TaskOrder::Priority => ("", "priority DESC, seq"),
            TaskOrder::Oldest => ("AND seq > $6", "seq"),
            TaskOrder::Newest => ("AND seq < $6", "seq DESC"),
        };
        if filter.order == TaskOrder::Priority && filter.after.is_some() {
            return Err(StoreError::Invalid(
                "`after` pages only the oldest/newest orders".into(),
            ));
        }
        with_conn!(self, |c| {
            let after_seq: Option<i64> = match &filter.after {
                None => None,
                Some(after) => {
                    let row = c
                        .query_opt(
                            "SELECT seq FROM tasks
                             WHERE id = $1 AND tenant = $3 AND ($2::text IS NULL OR tenant = $2)",
                            &[&after.id, &filter.tenant, &after.tenant],
                        )
                        .await?;
                    match row {
                        Some(r) => Some(r.get(0)),
                        None => {
                            return Err(StoreError::Invalid(format!(
                                "no task {after:?} to list after"
                            ))
                            .into());
                        }
                    }
                }
            };
            let keyset = if after_seq.is_some() { keyset } else { "" };
            let stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLS} FROM tasks
                     WHERE ($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR state = $2)
                       AND ($3::text IS NULL OR task_type = $3)
                       AND ($4::text IS NULL OR worker_id = $4)
                       {keyset}
                     ORDER BY {order} LIMIT $5::int8"
                ))
                .await?;
            let mut args: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
                &filter.tenant,
                &state,
                &filter.task_type,
                &filter.worker_id,
                &limit,
            ];
            if let Some(seq) = &after_seq {
                args.push(seq);
            }
            let rows = c.query(&stmt, &args).await?;
            Ok(rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?)
        })
    }

    async fn queue_stats(&self, tenant: Option<&str>) -> StoreResult<QueueStats> {
        with_conn!(self, |c| {
            let stmt = c
                .prepare_cached(
                    "SELECT state, count(*) FROM tasks WHERE ($1::text IS NULL OR tenant = $1)
                     GROUP BY state",
                )
                .await?;
            let mut stats = QueueStats::default();
            for r in c.query(&stmt, &[&tenant]).await? {
                stats.add(parse_state(r.get(0))?, u64_col(r.get(1)));
            }
            Ok(stats)
        })
    }

    async fn requeue_worker_tasks(&self, worker_id: &str) -> StoreResult<u64> {
        settle::requeue_worker_tasks(self, worker_id).await
    }

    async fn reap_expired(&self, policy: &RetryPolicy) -> StoreResult<ReapReport> {
        settle::reap_expired(self, policy).await
    }
}
