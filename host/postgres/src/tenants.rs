//! Tenant settings, usage and quota checks. A tenant's row in `tenants` carries its settings
//! (`configured` once `put_tenant` ran), its submit-rate bucket and its fair-share virtual time
//! (see [`crate::claim`]).
//!
//! Quotas are exact across processes: a write that a quota limits first locks the tenant's row
//! (`FOR UPDATE`, in tenant name order when a batch spans several), and only then counts, in a
//! later statement, whose snapshot therefore includes everything committed by the writer that
//! held the lock before. Counts stop at the quota (`LIMIT`), so a check costs O(quota), never
//! O(the tenant's history). A tenant without a quota is never locked nor counted: enqueue tests
//! for quotas inside its one insert statement and only takes this path when one applies.
//! Lock order everywhere: dependency rows (shared), then tenant rows, then task or memory rows.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sentinel_coord::model::*;
use sentinel_coord::{StoreError, StoreResult, TenantStore};

use crate::codec::u64_col;
use crate::error::OpError;
use crate::store::{PgStore, with_conn};

type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// The backlogged tenants (those with a queued task), one probe of `tasks_ready_tenant` each
/// (the ORDER BY is that index's, so no other index can serve it): the CTE `skip(tenant)`,
/// whose last row is NULL. Needs `WITH RECURSIVE`.
pub(crate) const SKIP: &str = "skip(tenant) AS (
    (SELECT t.tenant FROM tasks t WHERE t.state IN ('pending', 'failed')
     ORDER BY t.tenant, t.priority DESC, t.seq LIMIT 1)
    UNION ALL
    SELECT (SELECT t.tenant FROM tasks t WHERE t.state IN ('pending', 'failed') AND t.tenant > s.tenant
            ORDER BY t.tenant, t.priority DESC, t.seq LIMIT 1)
    FROM skip s WHERE s.tenant IS NOT NULL
)";

/// Fairness bookkeeping for the tenants of the CTE `idle(tenant)`, which had no queued task
/// before this statement and get one: each one's virtual time is raised to at least just below
/// the lowest of the backlogged tenants (so it wins that tie once, whatever the names) (as of the statement's snapshot, so not counting `idle`), or to the
/// store's virtual clock (the largest virtual time a task was ever taken at) when no tenant is
/// backlogged; a tenant seen for the first time gets its row there. Needs [`SKIP`].
pub(crate) const RAISE: &str = "raise AS (
    INSERT INTO tenants AS s (tenant, vtime)
    SELECT i.tenant, COALESCE(
        (SELECT min(b.vtime) - 1 FROM skip k JOIN tenants b ON b.tenant = k.tenant),
        (SELECT max(v.last_tag) FROM tenants v), 0)
    FROM idle i ORDER BY i.tenant
    ON CONFLICT (tenant) DO UPDATE SET vtime = GREATEST(s.vtime, EXCLUDED.vtime)
)";

fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.map(|n| n.min(i64::MAX as u64) as i64)
}

fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.map(u64_col)
}

/// Tasks per tenant in a batch, in tenant name order.
pub(crate) fn per_tenant<'a>(tenants: impl Iterator<Item = &'a str>) -> BTreeMap<&'a str, u64> {
    let mut m = BTreeMap::new();
    for t in tenants {
        *m.entry(t).or_insert(0) += 1;
    }
    m
}

fn refused(tenant: &str, quota: Quota, limit: u64, retry_after_ms: Option<u64>) -> OpError {
    StoreError::Quota(QuotaExceeded {
        tenant: tenant.to_string(),
        quota,
        limit,
        retry_after_ms,
    })
    .into()
}

/// Inside the enqueue transaction: locks the batch's tenants that have a submission quota, in
/// name order, and checks each (rate, then queued) with `n` = its task count; takes the tokens.
/// The first refusal is the error (the caller's rollback then undoes every token taken).
pub(crate) async fn check_submission(
    tx: &Tx<'_>,
    counts: &BTreeMap<&str, u64>,
    now_p: Option<i64>,
) -> Result<(), OpError> {
    let names: Vec<&str> = counts.keys().copied().collect();
    let stmt = tx
        .prepare_cached(
            "SELECT tenant, max_queued, rate_per_second, rate_burst, tokens_milli, tokens_at,
                    sentinel_now_ms($2::int8)
             FROM tenants
             WHERE tenant = ANY ($1::text[])
               AND (max_queued IS NOT NULL OR rate_per_second IS NOT NULL)
             ORDER BY tenant
             FOR UPDATE",
        )
        .await?;
    let rows = tx.query(&stmt, &[&names, &now_p]).await?;
    if rows.is_empty() {
        return Ok(());
    }
    // Queued counts, on a snapshot taken after the locks, each stopping at the quota.
    let (mut q_names, mut q_limits) = (Vec::new(), Vec::new());
    for r in &rows {
        if let Some(max) = r.get::<_, Option<i64>>(1) {
            q_names.push(r.get::<_, String>(0));
            q_limits.push(max.saturating_add(1));
        }
    }
    let mut queued: BTreeMap<String, u64> = BTreeMap::new();
    if !q_names.is_empty() {
        let stmt = tx
            .prepare_cached(
                "SELECT q.tenant, (SELECT count(*) FROM (
                     SELECT 1 FROM tasks t WHERE t.tenant = q.tenant
                       AND t.state IN ('pending', 'failed') LIMIT q.lim) x)
                 FROM unnest($1::text[], $2::int8[]) AS q(tenant, lim)",
            )
            .await?;
        for r in tx.query(&stmt, &[&q_names, &q_limits]).await? {
            queued.insert(r.get(0), u64_col(r.get(1)));
        }
    }
    let (mut b_names, mut b_tokens) = (Vec::new(), Vec::new());
    let mut now: i64 = 0;
    for r in &rows {
        let tenant: &str = r.get(0);
        let n = counts.get(tenant).copied().unwrap_or(0);
        now = r.get(6);
        if let (Some(per_second), Some(burst)) =
            (r.get::<_, Option<i64>>(2), r.get::<_, Option<i64>>(3))
        {
            let rate = RateLimit {
                per_second: per_second.clamp(1, u32::MAX as i64) as u32,
                burst: burst.clamp(1, u32::MAX as i64) as u32,
            };
            let tokens = match (r.get::<_, Option<i64>>(4), r.get::<_, Option<i64>>(5)) {
                (Some(t), Some(at)) => rate.refill(u64_col(t), now.saturating_sub(at)),
                _ => rate.capacity_milli(),
            };
            match rate.take(tokens, n) {
                Ok(left) => {
                    b_names.push(tenant.to_string());
                    b_tokens.push(left.min(i64::MAX as u64) as i64);
                }
                Err(retry) => {
                    return Err(refused(tenant, Quota::SubmitRate, rate.burst as u64, retry));
                }
            }
        }
        if let Some(max) = r.get::<_, Option<i64>>(1) {
            let max = u64_col(max);
            if queued.get(tenant).copied().unwrap_or(0).saturating_add(n) > max {
                return Err(refused(tenant, Quota::QueuedTasks, max, None));
            }
        }
    }
    if !b_names.is_empty() {
        let stmt = tx
            .prepare_cached(
                "UPDATE tenants s SET tokens_milli = x.tokens, tokens_at = $3::int8
                 FROM unnest($1::text[], $2::int8[]) AS x(tenant, tokens)
                 WHERE s.tenant = x.tenant",
            )
            .await?;
        tx.execute(&stmt, &[&b_names, &b_tokens, &now]).await?;
    }
    Ok(())
}

/// Inside a transaction, before reviving a dead task of `tenant`: locks the tenant's row if it
/// has `max_queued` and returns the quota.
pub(crate) async fn lock_queued_quota(tx: &Tx<'_>, tenant: &str) -> Result<Option<u64>, OpError> {
    let stmt = tx
        .prepare_cached(
            "SELECT max_queued FROM tenants WHERE tenant = $1 AND max_queued IS NOT NULL FOR UPDATE",
        )
        .await?;
    Ok(tx
        .query_opt(&stmt, &[&tenant])
        .await?
        .map(|r| u64_col(r.get(0))))
}

/// The tenant's queued tasks, counting at most `max + 1`.
pub(crate) async fn queued_over(tx: &Tx<'_>, tenant: &str, max: u64) -> Result<bool, OpError> {
    let stmt = tx
        .prepare_cached(
            "SELECT count(*) FROM (SELECT 1 FROM tasks WHERE tenant = $1
               AND state IN ('pending', 'failed') LIMIT $2) x",
        )
        .await?;
    let lim = max.min(i64::MAX as u64 - 1) as i64 + 1;
    let n: i64 = tx.query_one(&stmt, &[&tenant, &lim]).await?.get(0);
    Ok(u64_col(n) > max)
}

/// The memory quotas of a tenant, locked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemoryQuota {
    pub keys: Option<u64>,
    pub bytes: Option<u64>,
}

/// Locks the tenant's row if it has a memory quota and returns it (statement text; the caller
/// pipelines it ahead of its own first statement).
pub(crate) const LOCK_MEMORY_QUOTA: &str = "
SELECT memory_keys, memory_bytes FROM tenants
WHERE tenant = $1 AND (memory_keys IS NOT NULL OR memory_bytes IS NOT NULL)
FOR UPDATE";

pub(crate) fn memory_quota(row: Option<&tokio_postgres::Row>) -> Option<MemoryQuota> {
    row.map(|r| MemoryQuota {
        keys: opt_u64(r.get(0)),
        bytes: opt_u64(r.get(1)),
    })
}

/// Checks a memory write against the tenant's (locked) quota: `others` = live keys and bytes of
/// the tenant other than the key written; `creating` = the key is not live now.
pub(crate) async fn check_memory(
    tx: &Tx<'_>,
    quota: MemoryQuota,
    w: &MemoryWrite,
    creating: bool,
    now: i64,
) -> Result<(), OpError> {
    let stmt = tx
        .prepare_cached(
            "SELECT count(*), COALESCE(sum(octet_length(namespace) + octet_length(key)
                                            + octet_length(value)), 0)::int8
             FROM memory
             WHERE tenant = $1 AND value IS NOT NULL
               AND (expires_at IS NULL OR expires_at > $4::int8)
               AND NOT (namespace = $2 AND key = $3)",
        )
        .await?;
    let r = tx
        .query_one(&stmt, &[&w.tenant, &w.namespace, &w.key, &now])
        .await?;
    let (keys, bytes) = (u64_col(r.get(0)), u64_col(r.get(1)));
    if let Some(max) = quota.keys.filter(|&max| creating && keys >= max) {
        return Err(refused(&w.tenant, Quota::MemoryKeys, max, None));
    }
    if let Some(max) = quota.bytes {
        let size = memory_entry_bytes(&w.namespace, &w.key, &w.value);
        if bytes.saturating_add(size) > max {
            return Err(refused(&w.tenant, Quota::MemoryBytes, max, None));
        }
    }
    Ok(())
}

const SETTINGS_COLS: &str = "tenant, weight, max_queued, max_running, rate_per_second, rate_burst, memory_keys, memory_bytes";

#[async_trait]
impl TenantStore for PgStore {
    async fn put_tenant(&self, s: &TenantSettings) -> StoreResult<()> {
        s.validate()?;
        let q = &s.quota;
        let weight = s.weight as i32;
        let (per_second, burst) = match q.submit_rate {
            Some(r) => (Some(r.per_second as i64), Some(r.burst as i64)),
            None => (None, None),
        };
        let (max_queued, max_running) = (opt_i64(q.max_queued), opt_i64(q.max_running));
        let (mem_keys, mem_bytes) = (opt_i64(q.memory_keys), opt_i64(q.memory_bytes));
        with_conn!(self, |c| {
            // The bucket survives a change, its tokens clamped to the new burst; a bucket that
            // did not exist (no rate before) or no longer does starts full (NULL).
            let stmt = c
                .prepare_cached(&format!(
                    "INSERT INTO tenants AS s (configured, {SETTINGS_COLS})
                     VALUES (true, $1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (tenant) DO UPDATE SET configured = true,
                       weight = EXCLUDED.weight, max_queued = EXCLUDED.max_queued,
                       max_running = EXCLUDED.max_running,
                       rate_per_second = EXCLUDED.rate_per_second,
                       rate_burst = EXCLUDED.rate_burst, memory_keys = EXCLUDED.memory_keys,
                       memory_bytes = EXCLUDED.memory_bytes,
                       tokens_milli = CASE WHEN s.rate_per_second IS NULL
                                            OR EXCLUDED.rate_per_second IS NULL THEN NULL
                                           ELSE LEAST(s.tokens_milli, EXCLUDED.rate_burst * 1000) END,
                       tokens_at = CASE WHEN s.rate_per_second IS NULL
                                         OR EXCLUDED.rate_per_second IS NULL THEN NULL
                                        ELSE s.tokens_at END"
                ))
                .await?;
            c.execute(
                &stmt,
                &[
                    &s.tenant,
                    &weight,
                    &max_queued,
                    &max_running,
                    &per_second,
                    &burst,
                    &mem_keys,
                    &mem_bytes,
                ],
            )
            .await?;
            Ok(())
        })
    }

    async fn get_tenant(&self, tenant: &str) -> StoreResult<Option<TenantSettings>> {
        with_conn!(self, |c| {
            let stmt = c
                .prepare_cached(&format!(
                    "SELECT {SETTINGS_COLS} FROM tenants WHERE tenant = $1 AND configured"
                ))
                .await?;
            let Some(r) = c.query_opt(&stmt, &[&tenant]).await? else {
                return Ok(None);
            };
            let rate = match (r.get::<_, Option<i64>>(4), r.get::<_, Option<i64>>(5)) {
                (Some(p), Some(b)) => Some(RateLimit {
                    per_second: p.clamp(0, u32::MAX as i64) as u32,
                    burst: b.clamp(0, u32::MAX as i64) as u32,
                }),
                _ => None,
            };
            Ok(Some(TenantSettings {
                tenant: r.get(0),
                weight: r.get::<_, i32>(1).max(0) as u32,
                quota: TenantQuota {
                    max_queued: opt_u64(r.get(2)),
                    max_running: opt_u64(r.get(3)),
                    submit_rate: rate,
                    memory_keys: opt_u64(r.get(6)),
                    memory_bytes: opt_u64(r.get(7)),
                },
            }))
        })
    }

    async fn tenant_usage(&self, tenant: &str) -> StoreResult<TenantUsage> {
        let now = self.now_param();
        with_conn!(self, |c| {
            let stmt = c
                .prepare_cached(
                    "SELECT
                       (SELECT count(*) FROM tasks WHERE tenant = $1
                          AND state IN ('pending', 'failed')),
                       (SELECT count(*) FROM tasks WHERE tenant = $1 AND state = 'running'),
                       m.keys, m.bytes
                     FROM (SELECT count(*) AS keys,
                             COALESCE(sum(octet_length(namespace) + octet_length(key)
                                          + octet_length(value)), 0)::int8 AS bytes
                           FROM memory WHERE tenant = $1 AND value IS NOT NULL
                             AND (expires_at IS NULL OR expires_at > sentinel_now_ms($2::int8))) m",
                )
                .await?;
            let r = c.query_one(&stmt, &[&tenant, &now]).await?;
            Ok(TenantUsage {
                queued: u64_col(r.get(0)),
                running: u64_col(r.get(1)),
                memory_keys: u64_col(r.get(2)),
                memory_bytes: u64_col(r.get(3)),
            })
        })
    }
}
