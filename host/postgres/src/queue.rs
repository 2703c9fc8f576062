//! Queue SQL: submission and reads; claims live in [`crate::claim`], settlements in
//! [`crate::settle`] and [`crate::recover`]. A task is `(tenant, id)`: ids are unique per
//! tenant, and dependencies and affinity resolve inside the task's tenant. Submission is one
//! statement when no tenant of the batch has a submission quota (the statement itself checks,
//! and inserts nothing if one has); otherwise the quotas are checked under the tenants' row
//! locks first (see [`crate::tenants`]), in the same transaction as the insert.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use async_trait::async_trait;
use sentinel_coord::model::*;
use sentinel_coord::{QueueStore, StoreError, StoreResult, Topic};
use tokio_postgres::Row;

use crate::codec::{from_json, ms_param, to_json, u32_col, u64_col};
use crate::error::{OpError, is_unique_violation};
use crate::notify::TASKS_PAYLOAD;
use crate::plan::Generic;
use crate::store::{PgStore, with_conn};
use crate::tenants::{self, RAISE, SKIP};
use crate::{claim, recover, settle};

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
/// claimers, in one statement: a duplicate (tenant, id) fails the whole statement, so a refused
/// batch stores nothing. Unless `$18` says the quotas were checked, the statement first looks
/// for a tenant of the batch with a submission quota and, if there is one, inserts nothing and
/// answers `false` in its third column. Tenants that had no queued task get their virtual time
/// raised ([`RAISE`]). `count(*) FROM n` forces the notification CTE to run.
///
/// Whether a tenant has a queued task is one probe of the head of `tasks_ready_tenant` (a
/// `LATERAL ... LIMIT 1` in that index's order): written as `NOT EXISTS`, the planner turned it
/// into a hash anti-join over every queued task, so each batch cost O(backlog) and submitting
/// slowed from 63k to 11k tasks/s as the backlog grew from 50,000 to 400,000.
static INSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "
WITH RECURSIVE clk AS MATERIALIZED (SELECT sentinel_now_ms($15::int8) AS now),
guard AS MATERIALIZED (
    SELECT $18::bool OR NOT EXISTS (
        SELECT 1 FROM tenants s WHERE s.tenant = ANY ($2::text[])
          AND (s.max_queued IS NOT NULL OR s.rate_per_second IS NOT NULL)) AS go
),
idle AS MATERIALIZED (
    SELECT b.tenant FROM (SELECT DISTINCT u.tenant FROM unnest($2::text[]) AS u(tenant)) b
    LEFT JOIN LATERAL (
        SELECT true AS queued FROM tasks t
        WHERE t.tenant = b.tenant AND t.state IN ('pending', 'failed')
        ORDER BY t.tenant, t.priority DESC, t.seq LIMIT 1) q ON true
    WHERE (SELECT go FROM guard) AND q.queued IS NULL
),
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
    WHERE (SELECT go FROM guard)
    ORDER BY x.ord
    RETURNING 1
),
{SKIP},
{RAISE},
n AS (SELECT pg_notify($16, $17) WHERE EXISTS (SELECT 1 FROM ins))
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM n), (SELECT go FROM guard)"
    )
});

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

/// Runs [`INSERT`]; a duplicate id becomes `Invalid`, as in the SQLite store. `Ok(false)`:
/// nothing inserted, a tenant of the batch has a submission quota (only if `!checked`).
async fn insert<C: tokio_postgres::GenericClient + Sync>(
    c: &C,
    generic: &Generic,
    stmt: &tokio_postgres::Statement,
    cols: &Columns<'_>,
    now: Option<i64>,
    channel: &str,
    checked: bool,
) -> Result<bool, OpError> {
    let r = generic
        .query(
            c,
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
                &checked,
            ],
        )
        .await;
    match r {
        Err(e) if is_unique_violation(&e) => Err(StoreError::Invalid(format!(
            "a task id in this batch already exists in its tenant ({})",
            e.into_store()
        ))
        .into()),
        Err(e) => Err(e),
        Ok(rows) => {
            let row = rows
                .first()
                .ok_or_else(|| StoreError::Backend("the insert returned no row".into()))?;
            Ok(row.get(2))
        }
    }
}

/// Checks every dependency of the batch (same tenant, submitted before the dependent: earlier
/// in this batch or already stored) and marks dependents of dead or cancelled tasks dead. Stored
/// dependencies are share-locked until commit, so one cannot die unseen between this check and
/// the insert (its cascade then runs after our commit and sees the new dependents).
async fn resolve_dependencies<'t>(
    tx: &deadpool_postgres::Transaction<'_>,
    tasks: &'t [NewTask],
    cols: &mut Columns<'_>,
) -> Result<(Vec<&'t str>, Vec<String>, Vec<String>), OpError> {
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
    let mut dep_tenant = Vec::new();
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
            dep_tenant.push(t.tenant.as_str());
            dep_task.push(id.clone());
            dep_on.push(dep.clone());
        }
    }
    Ok((dep_tenant, dep_task, dep_on))
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
        let counts = tenants::per_tenant(tasks.iter().map(|t| t.tenant.as_str()));
        let now = self.now_param();
        let channel = self.inner.channel.as_str();
        let ids = with_conn!(self, |c| {
            let stmt = c.prepare_cached(&INSERT).await?;
            let generic = Generic::prepare(&c).await?;
            // The common case: one statement, one round trip, atomic by itself.
            if !with_deps && insert(&**c, &generic, &stmt, &cols, now, channel, false).await? {
                return Ok(cols.ids.clone());
            }
            let mut cols = Columns::new(tasks)?;
            let tx = c.transaction().await?;
            let mut deps = (Vec::new(), Vec::new(), Vec::new());
            if with_deps {
                // Dependencies first (shared row locks), tenant rows after: the lock order
                // every writer keeps (see `tenants`).
                deps = resolve_dependencies(&tx, tasks, &mut cols).await?;
            }
            if !insert(&*tx, &generic, &stmt, &cols, now, channel, false).await? {
                tenants::check_submission(&tx, &counts, now).await?;
                insert(&*tx, &generic, &stmt, &cols, now, channel, true).await?;
            }
            if with_deps {
                let stmt = tx
                    .prepare_cached(
                        "INSERT INTO task_deps (tenant, task_id, dep_id)
                         SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
                         ON CONFLICT DO NOTHING",
                    )
                    .await?;
                tx.execute(&stmt, &[&deps.0, &deps.1, &deps.2]).await?;
            }
            tx.commit().await?;
            Ok(cols.ids)
        })?;
        self.wake_local(Topic::Tasks);
        Ok(ids)
    }

    async fn claim(&self, req: &ClaimRequest) -> StoreResult<Vec<Task>> {
        claim::claim(self, req).await
    }

    async fn renew_lease(
        &self,
        tenant: &str,
        task_id: &str,
        fence: u64,
        lease_ms: u64,
    ) -> StoreResult<Result<i64, Rejection>> {
        validate_lease(lease_ms)?;
        recover::renew_lease(self, tenant, task_id, fence, lease_ms).await
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

    async fn release_claims(&self, claims: &[TaskClaim]) -> StoreResult<u64> {
        recover::release_claims(self, claims).await
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
        recover::requeue_worker_tasks(self, worker_id).await
    }

    async fn reap_expired(&self, policy: &RetryPolicy) -> StoreResult<ReapReport> {
        recover::reap_expired(self, policy).await
    }
}
