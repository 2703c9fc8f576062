//! The fair claim on SQLite: one write transaction per batch. The backlogged tenants are found
//! by a skip scan of `tasks_ready` (one probe per tenant); each tenant's claimable head is read
//! from the same index, in its own priority/FIFO order, a few rows at a time (a claim naming its
//! task types reads the head of each type from `tasks_ready_type` and merges them); the batch then
//! repeatedly serves the tenant with the lowest virtual time (see `QueueStore::claim`). A task
//! taken is updated to running at once, which removes it from the partial index, so the next
//! read of that tenant's head starts after it. Cost: O(tenants × log n + batch), plus whatever
//! unclaimable rows (blocked by dependencies, affinity or backoff) sit at a tenant's head, as
//! before tenancy.

use std::collections::{HashSet, VecDeque};
use std::sync::LazyLock;

use rusqlite::{CachedStatement, Transaction, params};

use super::map_err;
use super::tasks::{COLS, decode, row_to_raw};
use super::tenants;
use crate::error::StoreError;
use crate::model::*;

/// What makes a queued task claimable by worker `?4` at `?2`, besides its tenant and type.
const CLAIMABLE: &str = "state IN ('pending', 'failed') AND run_at <= ?2
      AND (required_worker IS NULL OR required_worker = ?4)
      AND (excluded_workers IS NULL
           OR NOT EXISTS (SELECT 1 FROM json_each(tasks.excluded_workers) WHERE value = ?4))
      AND (same_worker_as IS NULL
           OR EXISTS (SELECT 1 FROM tasks x
                      WHERE x.tenant = tasks.tenant AND x.id = tasks.same_worker_as
                        AND x.worker_id = ?4))
      AND (depends_on IS NULL
           OR NOT EXISTS (SELECT 1 FROM task_deps d
                          JOIN tasks t2 ON t2.tenant = d.tenant AND t2.id = d.dep_id
                          WHERE d.tenant = tasks.tenant AND d.task_id = tasks.id
                            AND t2.state <> 'completed'))";

/// The claimable head of one tenant's queue (all task types), in its order, at most `?5` rows
/// (it leaves `?3` unbound, so both heads bind the same parameters).
static TENANT_HEAD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT priority, seq FROM tasks INDEXED BY tasks_ready
         WHERE tenant = ?1 AND {CLAIMABLE}
         ORDER BY priority DESC, seq LIMIT ?5"
    )
});

/// The claimable head of one tenant's queue of one task type `?3`, in its order, at most `?5`
/// rows: a claim naming its task types reads each type's head from `tasks_ready_type` and
/// merges them, so tasks of other types queued in front cost nothing (through `tasks_ready` a
/// claim for a type behind 300,000 tasks of another walked all of them, holding the write lock).
static TYPE_HEAD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT priority, seq FROM tasks INDEXED BY tasks_ready_type
         WHERE tenant = ?1 AND task_type = ?3 AND {CLAIMABLE}
         ORDER BY priority DESC, seq LIMIT ?5"
    )
});

/// Up to `want` seqs of the tenant's claimable head, in priority/FIFO order, and whether that
/// is all there is (every head read returned fewer than `want`).
fn read_head(
    tx: &Transaction<'_>,
    tenant: &str,
    now: i64,
    req: &ClaimRequest,
    want: u64,
) -> Result<(VecDeque<i64>, bool), StoreError> {
    // One head of all types, or one per named type (each named once).
    let mut seen = HashSet::new();
    let heads: Vec<Option<&str>> = match &req.task_types {
        None => vec![None],
        Some(list) => (list.iter())
            .map(String::as_str)
            .filter(|t| seen.insert(*t))
            .map(Some)
            .collect(),
    };
    let sql = if req.task_types.is_none() {
        &TENANT_HEAD
    } else {
        &TYPE_HEAD
    };
    let mut head = tx.prepare_cached(sql).map_err(map_err)?;
    let mut merged: Vec<(i64, i64)> = Vec::new();
    let mut drained = true;
    for task_type in heads {
        let rows = head
            .query_map(
                params![tenant, now, task_type, req.worker_id, want as i64],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(map_err)?;
        drained &= (rows.len() as u64) < want;
        merged.extend(rows);
    }
    merged.sort_by_key(|&(priority, seq)| (std::cmp::Reverse(priority), seq));
    merged.truncate(want as usize);
    Ok((merged.into_iter().map(|(_, seq)| seq).collect(), drained))
}

struct Candidate {
    tenant: String,
    vtime: i64,
    step: i64,
    /// Tasks it may still start in this batch (`max_running` headroom); `None` = unlimited.
    headroom: Option<u64>,
    buffered: VecDeque<i64>,
    /// The last read returned fewer rows than asked: the buffer is all there is.
    drained: bool,
    exhausted: bool,
    served: bool,
}

pub(super) fn claim(
    tx: &Transaction<'_>,
    now: i64,
    req: &ClaimRequest,
) -> Result<Vec<Task>, StoreError> {
    let names = match &req.tenants {
        Some(list) => {
            let mut l = list.clone();
            l.sort();
            l.dedup();
            l
        }
        None => tenants::backlogged_tenants(tx)?,
    };
    let mut cands = Vec::with_capacity(names.len());
    for tenant in names {
        let row = tenants::load(tx, &tenant)?;
        let (weight, vtime) = row.as_ref().map_or((1, 0), |r| (r.weight, r.vtime));
        let headroom = match row.as_ref().and_then(|r| r.max_running) {
            Some(max) => Some(max.saturating_sub(tenants::running(tx, &tenant, max)?)),
            None => None,
        };
        if headroom == Some(0) {
            continue;
        }
        cands.push(Candidate {
            tenant,
            vtime,
            step: vtime_step(weight),
            headroom,
            buffered: VecDeque::new(),
            drained: false,
            exhausted: false,
            served: false,
        });
    }
    let mut clock = tenants::vclock(tx)?;
    let limit = req.limit as usize;
    let mut out: Vec<Task> = Vec::with_capacity(limit.min(1024));
    let mut lease = tx.prepare_cached(&TAKE).map_err(map_err)?;
    while out.len() < limit {
        let active = cands.iter().filter(|c| !c.exhausted).count().max(1);
        let Some(c) = cands
            .iter_mut()
            .filter(|c| !c.exhausted)
            .min_by(|a, b| (a.vtime, &a.tenant).cmp(&(b.vtime, &b.tenant)))
        else {
            break;
        };
        if c.buffered.is_empty() && c.drained {
            c.exhausted = true;
            continue;
        }
        if c.buffered.is_empty() {
            // This tenant's even share of what is left (all of it when alone), at least one.
            let want = ((limit - out.len()).div_ceil(active)) as u64;
            let want = c.headroom.map_or(want, |h| h.min(want)).max(1);
            let (rows, drained) = read_head(tx, &c.tenant, now, req, want)?;
            if rows.is_empty() {
                c.exhausted = true;
                continue;
            }
            c.drained = drained;
            c.buffered = rows;
        }
        let Some(seq) = c.buffered.pop_front() else {
            continue;
        };
        out.push(take(tx, &mut lease, now, req, seq)?);
        clock = clock.max(c.vtime);
        c.vtime = c.vtime.saturating_add(c.step);
        c.served = true;
        if let Some(h) = c.headroom.as_mut() {
            *h -= 1;
            if *h == 0 {
                c.exhausted = true;
            }
        }
    }
    if !out.is_empty() {
        let served: Vec<(String, i64)> = cands
            .iter()
            .filter(|c| c.served)
            .map(|c| (c.tenant.clone(), c.vtime))
            .collect();
        tenants::save_vtimes(tx, &served, clock)?;
    }
    Ok(out)
}

static TAKE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE tasks SET state = 'running', worker_id = ?2, attempt = attempt + 1,
           fence = fence + 1, lease_expires_at = ?3, worker_incarnation = ?5,
           deadline_at = CASE WHEN timeout_ms <= 0 THEN NULL
                              WHEN timeout_ms <= ?6 THEN ?4 + timeout_ms
                              ELSE ?7 END,
           started_at = ?4, updated_at = ?4, finished_at = NULL
         WHERE seq = ?1 RETURNING {COLS}"
    )
});

/// Leases one task (by `seq`) to the worker and fills its dependency outputs.
fn take(
    tx: &Transaction<'_>,
    lease: &mut CachedStatement<'_>,
    now: i64,
    req: &ClaimRequest,
    seq: i64,
) -> Result<Task, StoreError> {
    let lease_until = expiry(now, req.lease_ms);
    let raw = lease
        .query_row(
            params![
                seq,
                req.worker_id,
                lease_until,
                now,
                req.incarnation as i64,
                i64::MAX - now.max(0),
                i64::MAX
            ],
            row_to_raw,
        )
        .map_err(map_err)?;
    let mut task = decode(raw)?;
    if !task.depends_on.is_empty() {
        let mut s = tx
            .prepare_cached(
                "SELECT d.dep_id, t.output FROM task_deps d
                 JOIN tasks t ON t.tenant = d.tenant AND t.id = d.dep_id
                 WHERE d.tenant = ?1 AND d.task_id = ?2",
            )
            .map_err(map_err)?;
        let rows = s
            .query_map([&task.tenant, &task.id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<Vec<u8>>>(1)?))
            })
            .map_err(map_err)?;
        for row in rows {
            let (dep, output) = row.map_err(map_err)?;
            task.dependency_outputs
                .insert(dep, output.unwrap_or_default());
        }
    }
    Ok(task)
}
