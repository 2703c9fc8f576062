//! The fair claim. One transaction per batch: a first statement (sent in the same round trip)
//! pins the planner's choices and locks the rows of the tenants with a `max_running` quota that
//! this claim may serve (`SKIP LOCKED`: a tenant another claimer is serving right now is left to
//! it); then [`CLAIM`] does the rest in one statement:
//!
//! 1. the backlogged tenants (those in the request's list, if any), found by skipping through
//!    `tasks_ready_tenant` (one index probe per tenant, never a scan of the backlog);
//! 2. each one's virtual time, step (`VTIME_UNIT / weight`) and room (`max_running` minus its
//!    running tasks, counted with a `LIMIT` of the quota, on a snapshot taken after the lock);
//! 3. how many tasks each tenant gets: the first `limit` tags of the merged sequences
//!    `vtime + j * step` (ties by tenant name), which is exactly what taking "the tenant with the
//!    lowest virtual time" task by task gives (one tenant: all its room; several: the merge is
//!    `sentinel_fair_shares`, a function, so the single-tenant plan does not carry it);
//! 4. per tenant, the head of its part of `tasks_ready_tenant` (priority, then FIFO), locked
//!    `FOR UPDATE SKIP LOCKED`, so concurrent claimers never wait on or share a task; a claim
//!    naming its task types (every worker's) reads the head of each type from
//!    `tasks_ready_type` instead and keeps the first of the merge, so tasks of other types
//!    queued in front cost nothing (through `tasks_ready_tenant` a claim behind 400,000 tasks
//!    of another type took 13–18 ms). The type is matched as a one-value range and named in
//!    the `ORDER BY` so that no other index can serve the order: with `task_type = ...` the
//!    planner drops the type from the order (it is constant), `tasks_ready_tenant` serves
//!    it just as well on paper, and a claim for a type with nothing queued then walked the
//!    whole backlog through it (67 ms at 150,000 queued). The rows of each type's head beyond
//!    the merge's cut are locked too, until the claim commits: other claimers skip them for
//!    that long;
//! 5. the lease; the statement also says whether more than one tenant is backlogged.
//!
//! Then, only when more than one tenant is backlogged, a second statement ([`BUMP`]) advances
//! each served tenant's virtual time by `taken * step` on its row.
//!
//! A tenant alone in the backlog is not charged: with no competitor its virtual time decides
//! nothing, and writing its row on every claim would serialise concurrent claimers on that row
//! and make the single-tenant claim (the common case, benchmarked) measurably slower. Fairness
//! is unaffected: a tenant becoming backlogged is raised to the lowest backlogged virtual time
//! (see [`crate::tenants::RAISE`]), so the lone tenant's stale time only shifts both by the same
//! amount; the one difference from charging every claim is that a tenant returning with a
//! virtual time up to one step above the lone tenant's keeps that step.
//!
//! A tenant that delivers fewer tasks than it was given (dependencies, affinity, back-off, rows
//! locked by another claimer) has nothing more for this claim: the statement runs again in the
//! same transaction for the rest of the batch without it (rarely needed: one statement in the
//! common case, two with several tenants). Cost: O(active tenants × log n + batch), plus, with
//! several tenants, an in-memory merge of at most `limit` tags per tenant for at most `limit`
//! tenants.

use std::collections::HashMap;
use std::sync::LazyLock;

use sentinel_coord::StoreResult;
use sentinel_coord::model::*;

use crate::queue::decode;
use crate::store::{PgStore, with_conn};
use crate::tenants::SKIP;

/// Pins the plan (see [`claim`]) and locks the rows of the capped tenants this claim may serve,
/// leaving their names (a JSON array) in the transaction-local setting `sentinel.capped`.
const PREPARE: &str = "
SELECT set_config('enable_bitmapscan', 'off', true), set_config('enable_seqscan', 'off', true),
    set_config('plan_cache_mode', 'force_generic_plan', true),
    set_config('sentinel.capped', COALESCE((SELECT json_agg(x.tenant)::text FROM (
        SELECT s.tenant FROM tenants s
        WHERE s.max_running IS NOT NULL AND ($1::text[] IS NULL OR s.tenant = ANY ($1::text[]))
          AND EXISTS (SELECT 1 FROM tasks t
                      WHERE t.tenant = s.tenant AND t.state IN ('pending', 'failed'))
        ORDER BY s.tenant
        FOR UPDATE OF s SKIP LOCKED) x), '[]'), true)";

/// See the module documentation. `$8`: tenants already found exhausted by this claim.
static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "
WITH RECURSIVE
clk AS MATERIALIZED (SELECT sentinel_now_ms($1::int8) AS now),
{SKIP},
cand AS MATERIALIZED (
    SELECT s.tenant FROM skip s
    WHERE s.tenant IS NOT NULL AND ($3::text[] IS NULL OR s.tenant = ANY ($3::text[]))
),
ten AS MATERIALIZED (
    SELECT c.tenant, COALESCE(s.vtime, 0) AS vtime,
        {unit}::int8 / GREATEST(COALESCE(s.weight, 1), 1) AS step,
        CASE WHEN s.max_running IS NULL THEN $5::int8
             ELSE LEAST($5::int8, s.max_running - (SELECT count(*) FROM (
                 SELECT 1 FROM tasks r WHERE r.tenant = c.tenant AND r.state = 'running'
                 LIMIT s.max_running) x)) END AS cap
    FROM cand c LEFT JOIN tenants s ON s.tenant = c.tenant
    WHERE ($8::text[] IS NULL OR c.tenant <> ALL ($8::text[]))
      AND (s.max_running IS NULL OR c.tenant IN (SELECT json_array_elements_text(
          COALESCE(NULLIF(current_setting('sentinel.capped', true), ''), '[]')::json)))
),
slots AS MATERIALIZED (
    SELECT t.tenant, LEAST(t.cap, $5::int8) AS n, t.vtime, t.step FROM ten t
    WHERE t.cap > 0 AND (SELECT count(*) FROM ten WHERE cap > 0) = 1
    UNION ALL
    SELECT t.tenant, f.share_n, t.vtime, t.step
    FROM sentinel_fair_shares((SELECT array_agg(tenant) FROM ten), (SELECT array_agg(vtime) FROM ten),
             (SELECT array_agg(step) FROM ten), (SELECT array_agg(cap) FROM ten), $5::int8) f
    JOIN ten t ON t.tenant = f.share_tenant
    WHERE (SELECT count(*) FROM ten WHERE cap > 0) > 1
),
picked AS MATERIALIZED (
    SELECT p.ctid, s.tenant
    FROM slots s CROSS JOIN LATERAL (
        SELECT t.ctid FROM tasks t
        WHERE t.tenant = s.tenant AND t.state IN ('pending', 'failed') AND {claimable}
        ORDER BY t.priority DESC, t.seq
        LIMIT s.n
        FOR UPDATE OF t SKIP LOCKED) p
    WHERE $2::text[] IS NULL
    UNION ALL
    SELECT p.ctid, s.tenant
    FROM slots s CROSS JOIN LATERAL (
        SELECT y.ctid FROM (SELECT DISTINCT unnest($2::text[]) AS task_type) ty
        CROSS JOIN LATERAL (
            SELECT t.ctid, t.priority, t.seq FROM tasks t
            WHERE t.tenant = s.tenant
              AND t.task_type >= ty.task_type AND t.task_type <= ty.task_type
              AND t.state IN ('pending', 'failed') AND {claimable}
            ORDER BY t.task_type, t.priority DESC, t.seq
            LIMIT s.n
            FOR UPDATE OF t SKIP LOCKED) y
        ORDER BY y.priority DESC, y.seq
        LIMIT s.n) p
    WHERE $2::text[] IS NOT NULL
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
        (SELECT array_agg(d.dep_id ORDER BY d.dep_id) FROM task_deps d
         WHERE d.tenant = c.tenant AND d.task_id = c.id) END,
    CASE WHEN c.depends_on IS NOT NULL THEN
        (SELECT array_agg(COALESCE(t2.output, ''::bytea) ORDER BY d.dep_id)
         FROM task_deps d JOIN tasks t2 ON t2.tenant = d.tenant AND t2.id = d.dep_id
         WHERE d.tenant = c.tenant AND d.task_id = c.id) END,
    c.seq, sl.tenants, sl.n, sl.vtime, sl.step,
    (SELECT count(*) FROM (SELECT 1 FROM skip k WHERE k.tenant IS NOT NULL LIMIT 2) x)
FROM (SELECT array_agg(tenant) AS tenants, array_agg(n) AS n, array_agg(vtime) AS vtime,
             array_agg(step) AS step FROM slots) sl
LEFT JOIN claimed c ON true",
        unit = VTIME_UNIT,
        claimable = CLAIMABLE,
    )
});

/// What makes a queued task `t` claimable by worker `$4` now, besides its tenant and type.
const CLAIMABLE: &str = "t.run_at <= (SELECT now FROM clk)
          AND (t.required_worker IS NULL OR t.required_worker = $4::text)
          AND (t.excluded_workers IS NULL OR NOT ($4::text = ANY (t.excluded_workers)))
          AND (t.same_worker_as IS NULL
               OR EXISTS (SELECT 1 FROM tasks x WHERE x.tenant = t.tenant AND x.id = t.same_worker_as
                          AND x.worker_id = $4::text))
          AND (t.depends_on IS NULL
               OR NOT EXISTS (SELECT 1 FROM task_deps d
                              JOIN tasks t2 ON t2.tenant = d.tenant AND t2.id = d.dep_id
                              WHERE d.tenant = t.tenant AND d.task_id = t.id
                                AND t2.state <> 'completed'))";

/// Advances served tenants' virtual times: `$2` = taken × step, `$3` = (taken − 1) × step, both
/// added to the row's latest version (so concurrent claims never lose an advance), rows
/// written in name order (so concurrent claims cannot deadlock on them).
const BUMP: &str = "
INSERT INTO tenants AS s (tenant, vtime, last_tag)
SELECT x.tenant, x.inc, x.last FROM unnest($1::text[], $2::int8[], $3::int8[]) AS x(tenant, inc, last)
ORDER BY x.tenant
ON CONFLICT (tenant) DO UPDATE SET vtime = s.vtime + EXCLUDED.vtime,
    last_tag = s.vtime + EXCLUDED.last_tag";

/// The shares one claim statement gave out: per tenant, how many tasks, and its virtual time
/// and step before the statement.
struct Slots {
    tenants: Vec<String>,
    n: Vec<i64>,
    vtime: Vec<i64>,
    step: Vec<i64>,
    /// Tasks each tenant delivered (filled by [`Slots::tag`]).
    delivered: Vec<i64>,
    /// More than one tenant is backlogged (whatever this claim's filters).
    contended: bool,
}

impl Slots {
    fn read(r: &tokio_postgres::Row) -> Self {
        let col = |i| r.get::<_, Option<Vec<i64>>>(i).unwrap_or_default();
        Slots {
            tenants: r.get::<_, Option<Vec<String>>>(27).unwrap_or_default(),
            n: col(28),
            vtime: col(29),
            step: col(30),
            delivered: Vec::new(),
            contended: r.get::<_, i64>(31) > 1,
        }
    }

    /// Replaces each task's `seq` by the virtual time it was taken at (`vtime + rank * step`,
    /// rank in its tenant's priority/FIFO order) and returns the tenants that delivered fewer
    /// tasks than their share: they have nothing more for this claim.
    fn tag(&mut self, round: &mut [(i64, Task)]) -> Vec<String> {
        round.sort_by(|(sa, a), (sb, b)| {
            (&a.tenant, std::cmp::Reverse(a.priority), sa).cmp(&(
                &b.tenant,
                std::cmp::Reverse(b.priority),
                sb,
            ))
        });
        let index: HashMap<&str, usize> = (self.tenants.iter().enumerate())
            .map(|(k, t)| (t.as_str(), k))
            .collect();
        let mut delivered = vec![0i64; self.tenants.len()];
        for (tag, task) in round.iter_mut() {
            // Every claimed task's tenant had a share.
            let Some(&k) = index.get(task.tenant.as_str()) else {
                continue;
            };
            *tag = (self.vtime[k]).saturating_add(delivered[k].saturating_mul(self.step[k]));
            delivered[k] += 1;
        }
        let exhausted = (self.tenants.iter().enumerate())
            .filter(|&(k, _)| delivered[k] < self.n[k])
            .map(|(_, t)| t.clone())
            .collect();
        self.delivered = delivered;
        exhausted
    }
}

pub(crate) async fn claim(store: &PgStore, req: &ClaimRequest) -> StoreResult<Vec<Task>> {
    req.validate()?;
    if req.limit == 0 || req.tenants.as_ref().is_some_and(|t| t.is_empty()) {
        return Ok(Vec::new());
    }
    let now = store.now_param();
    let inc = req.incarnation as i64;
    let lease = crate::codec::ms_param(req.lease_ms);
    let claimed = with_conn!(store, |c| {
        let prepare = c.prepare_cached(PREPARE).await?;
        let stmt = c.prepare_cached(&CLAIM).await?;
        let tx = c.transaction().await?;
        // The claim must read each tenant's head of `tasks_ready_tenant` in order and stop after
        // its share. Without fresh statistics (or with a small backlog) the planner prefers a
        // bitmap scan of every claimable row plus a sort, which also revisits every dead index
        // entry a bitmap scan cannot mark dead: cost growing with history, not with the batch.
        // `PREPARE` rules that plan out for this transaction only, and asks for the generic
        // plan, planned once per connection rather than on every claim. (Disabling a plan shape
        // inflates its cost estimate, which must never push the statement over the JIT
        // threshold: the connections run with `jit = off`, see `PgStore::open_with`.)
        let mut excluded: Option<Vec<String>> = None;
        let mut left = i64::from(req.limit);
        let mut out: Vec<(i64, Task)> = Vec::new();
        loop {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
                &now,
                &req.task_types,
                &req.tenants,
                &req.worker_id,
                &left,
                &lease,
                &inc,
                &excluded,
            ];
            let rows = if excluded.is_none() {
                let pin: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&req.tenants];
                let (_, rows) =
                    tokio::try_join!(tx.query(&prepare, &pin), tx.query(&stmt, &params))?;
                rows
            } else {
                tx.query(&stmt, &params).await?
            };
            let Some(first) = rows.first() else { break };
            let mut slots = Slots::read(first);
            let mut round: Vec<(i64, Task)> = Vec::with_capacity(rows.len());
            for r in rows
                .iter()
                .filter(|r| r.get::<_, Option<String>>(0).is_some())
            {
                let mut task = decode(r)?;
                let dep_ids: Option<Vec<String>> = r.get(24);
                let dep_outputs: Option<Vec<Vec<u8>>> = r.get(25);
                if let (Some(ids), Some(outputs)) = (dep_ids, dep_outputs) {
                    task.dependency_outputs = ids.into_iter().zip(outputs).collect();
                }
                round.push((r.get(26), task));
            }
            left -= round.len() as i64;
            let exhausted = slots.tag(&mut round);
            if slots.contended && !round.is_empty() {
                let (mut names, mut inc, mut last) = (Vec::new(), Vec::new(), Vec::new());
                for (k, t) in slots.tenants.iter().enumerate() {
                    let d = slots.delivered[k];
                    if d > 0 {
                        names.push(t.as_str());
                        inc.push(d.saturating_mul(slots.step[k]));
                        last.push((d - 1).saturating_mul(slots.step[k]));
                    }
                }
                let bump = tx.prepare_cached(BUMP).await?;
                tx.execute(&bump, &[&names, &inc, &last]).await?;
            }
            out.extend(round);
            if left <= 0 || exhausted.is_empty() {
                break;
            }
            excluded.get_or_insert_with(Vec::new).extend(exhausted);
        }
        tx.commit().await?;
        // The order the tasks were taken in: by virtual time, ties by tenant name.
        out.sort_by(|(a, x), (b, y)| a.cmp(b).then_with(|| x.tenant.cmp(&y.tenant)));
        Ok(out.into_iter().map(|(_, t)| t).collect::<Vec<_>>())
    })?;
    store.note_claimed(claimed.len());
    Ok(claimed)
}
