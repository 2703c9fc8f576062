//! Tenant settings, quotas and fair-claim bookkeeping on SQLite. One row per tenant in
//! `tenants` (created by `put_tenant` or by the tenant's first submission). Write transactions
//! are serial (`BEGIN IMMEDIATE` across processes), so a check and the write it guards can never
//! interleave with another writer. A tenant without a quota costs one primary-key read per
//! submission or memory write, never a count.
//!
//! Memory usage counters (`mem_used_*`) cover every row with a value, expired or not, and are
//! kept only while the tenant has a memory quota (`put_tenant` recounts them when one is set).
//! Because they never under-count, a check that passes on them is exact; a check that fails
//! subtracts the tenant's expired-but-unpurged entries (an index range) before refusing.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Transaction, params};

use super::codec::{i64_param, u64_col};
use super::{SqliteStore, map_err};
use crate::error::StoreError;
use crate::model::*;
use crate::store::{StoreResult, TenantStore};

/// A tenant's stored row.
#[derive(Debug, Clone)]
pub(super) struct TenantRow {
    pub configured: bool,
    pub weight: u32,
    pub vtime: i64,
    pub max_queued: Option<u64>,
    pub max_running: Option<u64>,
    pub rate: Option<RateLimit>,
    pub bucket_milli: u64,
    pub bucket_at: i64,
    pub memory_keys: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub used_keys: u64,
    pub used_bytes: u64,
}

impl TenantRow {
    fn tracks_memory(&self) -> bool {
        self.memory_keys.is_some() || self.memory_bytes.is_some()
    }

    fn settings(&self, tenant: &str) -> TenantSettings {
        TenantSettings {
            tenant: tenant.to_string(),
            weight: self.weight,
            quota: TenantQuota {
                max_queued: self.max_queued,
                max_running: self.max_running,
                submit_rate: self.rate,
                memory_keys: self.memory_keys,
                memory_bytes: self.memory_bytes,
            },
        }
    }
}

fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.map(u64_col)
}

pub(super) fn load(tx: &Transaction<'_>, tenant: &str) -> Result<Option<TenantRow>, StoreError> {
    tx.prepare_cached(
        "SELECT configured, weight, vtime, max_queued, max_running, rate_per_second, rate_burst,
                bucket_milli, bucket_at, memory_keys, memory_bytes, mem_used_keys, mem_used_bytes
         FROM tenants WHERE tenant = ?1",
    )
    .and_then(|mut s| {
        s.query_row([tenant], |r| {
            let rate = match (r.get::<_, Option<i64>>(5)?, r.get::<_, Option<i64>>(6)?) {
                (Some(p), Some(b)) => Some(RateLimit {
                    per_second: p.clamp(1, u32::MAX as i64) as u32,
                    burst: b.clamp(1, u32::MAX as i64) as u32,
                }),
                _ => None,
            };
            Ok(TenantRow {
                configured: r.get::<_, i64>(0)? != 0,
                weight: r.get::<_, i64>(1)?.clamp(1, u32::MAX as i64) as u32,
                vtime: r.get(2)?,
                max_queued: opt_u64(r.get(3)?),
                max_running: opt_u64(r.get(4)?),
                rate,
                bucket_milli: u64_col(r.get::<_, Option<i64>>(7)?.unwrap_or(0)),
                bucket_at: r.get::<_, Option<i64>>(8)?.unwrap_or(0),
                memory_keys: opt_u64(r.get(9)?),
                memory_bytes: opt_u64(r.get(10)?),
                used_keys: u64_col(r.get(11)?),
                used_bytes: u64_col(r.get(12)?),
            })
        })
        .optional()
    })
    .map_err(map_err)
}

/// Counts rows of `sql` (a `SELECT 1 ... LIMIT ?2` with the tenant as `?1`), stopping at `cap`.
fn count_capped(
    tx: &Transaction<'_>,
    sql: &str,
    tenant: &str,
    cap: u64,
) -> Result<u64, StoreError> {
    let n: i64 = tx
        .prepare_cached(sql)
        .and_then(|mut s| s.query_row(params![tenant, i64_param(cap)], |r| r.get(0)))
        .map_err(map_err)?;
    Ok(u64_col(n))
}

/// Queued (pending + failed) tasks of the tenant, counted up to `cap`: O(cap) on `tasks_ready`.
pub(super) fn queued(tx: &Transaction<'_>, tenant: &str, cap: u64) -> Result<u64, StoreError> {
    count_capped(
        tx,
        "SELECT COUNT(*) FROM (SELECT 1 FROM tasks INDEXED BY tasks_ready
           WHERE tenant = ?1 AND state IN ('pending', 'failed') LIMIT ?2)",
        tenant,
        cap,
    )
}

/// Running tasks of the tenant, counted up to `cap`: O(cap) on `tasks_tenant_state`.
pub(super) fn running(tx: &Transaction<'_>, tenant: &str, cap: u64) -> Result<u64, StoreError> {
    count_capped(
        tx,
        "SELECT COUNT(*) FROM (SELECT 1 FROM tasks INDEXED BY tasks_tenant_state
           WHERE tenant = ?1 AND state = 'running' LIMIT ?2)",
        tenant,
        cap,
    )
}

fn refused(tenant: &str, quota: Quota, limit: u64, retry_after_ms: Option<u64>) -> StoreError {
    StoreError::Quota(QuotaExceeded {
        tenant: tenant.to_string(),
        quota,
        limit,
        retry_after_ms,
    })
}

/// The submission checks for `n` new tasks of `tenant`: the token bucket (tokens taken), then
/// `max_queued`. The caller's transaction rolls everything back on a refusal.
pub(super) fn admit_submission(
    tx: &Transaction<'_>,
    now: i64,
    tenant: &str,
    row: Option<&TenantRow>,
    n: u64,
) -> Result<(), StoreError> {
    let Some(row) = row else { return Ok(()) };
    if let Some(rate) = row.rate {
        let tokens = rate.refill(row.bucket_milli, now.saturating_sub(row.bucket_at));
        let left = rate
            .take(tokens, n)
            .map_err(|retry| refused(tenant, Quota::SubmitRate, rate.burst as u64, retry))?;
        tx.prepare_cached("UPDATE tenants SET bucket_milli = ?2, bucket_at = ?3 WHERE tenant = ?1")
            .and_then(|mut s| s.execute(params![tenant, i64_param(left), now]))
            .map_err(map_err)?;
    }
    if let Some(max) = row.max_queued {
        let q = queued(tx, tenant, max.saturating_add(1))?;
        if q.saturating_add(n) > max {
            return Err(refused(tenant, Quota::QueuedTasks, max, None));
        }
    }
    Ok(())
}

/// Call before tasks of `tenant` become queued: if it has none queued now, it becomes
/// backlogged and its virtual time is raised to at least just below the minimum of the other
/// backlogged tenants (or the store's virtual clock if there are none), creating its row if
/// needed.
pub(super) fn note_backlogged(tx: &Transaction<'_>, tenant: &str) -> Result<(), StoreError> {
    if queued(tx, tenant, 1)? > 0 {
        return Ok(());
    }
    let mut floor: Option<i64> = None;
    for other in backlogged_tenants(tx)? {
        let v: i64 = tx
            .prepare_cached("SELECT vtime FROM tenants WHERE tenant = ?1")
            .and_then(|mut s| s.query_row([&other], |r| r.get(0)).optional())
            .map_err(map_err)?
            .unwrap_or(0);
        floor = Some(floor.map_or(v, |f: i64| f.min(v)));
    }
    // Just below the lowest backlogged tenant: the newcomer wins the tie once (rather than
    // whoever's name sorts first) and banks no more credit than that.
    let floor = match floor {
        Some(f) => f.saturating_sub(1),
        None => vclock(tx)?,
    };
    tx.prepare_cached(
        "INSERT INTO tenants (tenant, vtime) VALUES (?1, ?2)
         ON CONFLICT (tenant) DO UPDATE SET vtime = MAX(vtime, excluded.vtime)",
    )
    .and_then(|mut s| s.execute(params![tenant, floor]))
    .map_err(map_err)?;
    Ok(())
}

/// Every tenant with a queued task, by a skip scan of `tasks_ready` (one index probe per
/// tenant, whatever the backlog).
pub(super) fn backlogged_tenants(tx: &Transaction<'_>) -> Result<Vec<String>, StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT tenant FROM tasks INDEXED BY tasks_ready
             WHERE state IN ('pending', 'failed') AND tenant > ?1 ORDER BY tenant LIMIT 1",
        )
        .map_err(map_err)?;
    let mut out: Vec<String> = Vec::new();
    loop {
        let after = out.last().map_or("", String::as_str);
        let next: Option<String> = stmt
            .query_row([after], |r| r.get(0))
            .optional()
            .map_err(map_err)?;
        match next {
            Some(t) => out.push(t),
            None => return Ok(out),
        }
    }
}

/// The store's virtual clock: the largest virtual time a task was claimed at.
pub(super) fn vclock(tx: &Transaction<'_>) -> Result<i64, StoreError> {
    tx.prepare_cached("SELECT value FROM counters WHERE name = 'fair_vclock'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
        .map_err(map_err)
        .map(|v| v.unwrap_or(0))
}

/// Persists a claim batch's fair-share bookkeeping.
pub(super) fn save_vtimes(
    tx: &Transaction<'_>,
    vtimes: &[(String, i64)],
    clock: i64,
) -> Result<(), StoreError> {
    for (tenant, v) in vtimes {
        tx.prepare_cached(
            "INSERT INTO tenants (tenant, vtime) VALUES (?1, ?2)
             ON CONFLICT (tenant) DO UPDATE SET vtime = excluded.vtime",
        )
        .and_then(|mut s| s.execute(params![tenant, v]))
        .map_err(map_err)?;
    }
    tx.prepare_cached(
        "INSERT INTO counters (name, value) VALUES ('fair_vclock', ?1)
         ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)",
    )
    .and_then(|mut s| s.execute([clock]))
    .map_err(map_err)?;
    Ok(())
}

/// A memory row's size as counted against `memory_bytes` (its value is the stored JSON text).
pub(super) fn entry_bytes(namespace: &str, key: &str, value_json: &str) -> u64 {
    (namespace.len() + key.len() + value_json.len()) as u64
}

/// Expired-but-unpurged entries of the tenant (still in the counters): (keys, bytes).
fn expired_usage(tx: &Transaction<'_>, now: i64, tenant: &str) -> Result<(u64, u64), StoreError> {
    let (k, b): (i64, i64) = tx
        .prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(length(CAST(namespace AS BLOB)) + length(CAST(key AS BLOB))
                                         + length(CAST(value AS BLOB))), 0)
             FROM memory INDEXED BY memory_tenant_expiry
             WHERE tenant = ?1 AND expires_at IS NOT NULL AND value IS NOT NULL AND expires_at <= ?2",
        )
        .and_then(|mut s| s.query_row(params![tenant, now], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(map_err)?;
    Ok((u64_col(k), u64_col(b)))
}

/// The previous state of a key about to be written, as the quota sees it.
pub(super) struct Previous {
    /// The row holds a value (live or expired): it is in the counters.
    pub counted_bytes: Option<u64>,
    /// The row is live: writing it creates no key.
    pub live: bool,
}

/// Checks a memory write against the tenant's quotas and updates the counters; a refusal
/// rolls back with the caller's transaction.
pub(super) fn account_memory_write(
    tx: &Transaction<'_>,
    now: i64,
    tenant: &str,
    prev: &Previous,
    new_bytes: u64,
) -> Result<(), StoreError> {
    let Some(row) = load(tx, tenant)?.filter(TenantRow::tracks_memory) else {
        return Ok(());
    };
    let old = prev.counted_bytes.unwrap_or(0);
    let keys = row.used_keys + u64::from(prev.counted_bytes.is_none());
    let bytes = (row.used_bytes + new_bytes).saturating_sub(old);
    let over_keys = |k: u64| !prev.live && row.memory_keys.is_some_and(|m| k > m);
    let over_bytes = |b: u64| row.memory_bytes.is_some_and(|m| b > m);
    if over_keys(keys) || over_bytes(bytes) {
        // The counters include expired entries: judge on live ones only. The written key's
        // own old row, if expired, is among them but is replaced, not kept.
        let (mut ek, mut eb) = expired_usage(tx, now, tenant)?;
        if prev.counted_bytes.is_some() && !prev.live {
            ek = ek.saturating_sub(1);
            eb = eb.saturating_sub(old);
        }
        let (live_keys, live_bytes) = (keys.saturating_sub(ek), bytes.saturating_sub(eb));
        if over_keys(live_keys) {
            return Err(refused(
                tenant,
                Quota::MemoryKeys,
                row.memory_keys.unwrap_or(0),
                None,
            ));
        }
        if over_bytes(live_bytes) {
            return Err(refused(
                tenant,
                Quota::MemoryBytes,
                row.memory_bytes.unwrap_or(0),
                None,
            ));
        }
    }
    adjust_memory(
        tx,
        tenant,
        keys as i64 - row.used_keys as i64,
        bytes as i64 - row.used_bytes as i64,
    )
}

/// Moves the tenant's memory counters (only while it tracks memory).
pub(super) fn adjust_memory(
    tx: &Transaction<'_>,
    tenant: &str,
    keys: i64,
    bytes: i64,
) -> Result<(), StoreError> {
    if keys == 0 && bytes == 0 {
        return Ok(());
    }
    tx.prepare_cached(
        "UPDATE tenants SET mem_used_keys = MAX(0, mem_used_keys + ?2),
                            mem_used_bytes = MAX(0, mem_used_bytes + ?3)
         WHERE tenant = ?1 AND (memory_keys IS NOT NULL OR memory_bytes IS NOT NULL)",
    )
    .and_then(|mut s| s.execute(params![tenant, keys, bytes]))
    .map_err(map_err)?;
    Ok(())
}

/// Every row with a value (live or expired) of the tenant: what the counters cover.
fn count_memory(
    tx: &Transaction<'_>,
    tenant: &str,
    live_at: Option<i64>,
) -> Result<(u64, u64), StoreError> {
    let (k, b): (i64, i64) = tx
        .prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(length(CAST(namespace AS BLOB)) + length(CAST(key AS BLOB))
                                         + length(CAST(value AS BLOB))), 0)
             FROM memory WHERE tenant = ?1 AND value IS NOT NULL
               AND (?2 IS NULL OR expires_at IS NULL OR expires_at > ?2)",
        )
        .and_then(|mut s| s.query_row(params![tenant, live_at], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(map_err)?;
    Ok((u64_col(k), u64_col(b)))
}

fn opt_param(v: Option<u64>) -> Option<i64> {
    v.map(i64_param)
}

#[async_trait]
impl TenantStore for SqliteStore {
    async fn put_tenant(&self, settings: &TenantSettings) -> StoreResult<()> {
        settings.validate()?;
        let s = settings.clone();
        self.write(move |tx, now| {
            let old = load(tx, &s.tenant)?;
            let q = &s.quota;
            let (bucket_milli, bucket_at) = match (q.submit_rate, old.as_ref()) {
                (None, _) => (None, None),
                (Some(new), Some(o)) if o.rate.is_some() => {
                    let had = o.rate.unwrap_or(new);
                    let tokens = had.refill(o.bucket_milli, now.saturating_sub(o.bucket_at));
                    (Some(tokens.min(new.capacity_milli())), Some(now))
                }
                (Some(new), _) => (Some(new.capacity_milli()), Some(now)),
            };
            let was_tracking = old.as_ref().is_some_and(TenantRow::tracks_memory);
            let (used_keys, used_bytes) = if !q.limits_memory() {
                (0, 0)
            } else if was_tracking {
                old.as_ref().map_or((0, 0), |o| (o.used_keys, o.used_bytes))
            } else {
                count_memory(tx, &s.tenant, None)?
            };
            tx.prepare_cached(
                "INSERT INTO tenants (tenant, configured, weight, max_queued, max_running,
                    rate_per_second, rate_burst, bucket_milli, bucket_at, memory_keys, memory_bytes,
                    mem_used_keys, mem_used_bytes)
                 VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (tenant) DO UPDATE SET configured = 1, weight = ?2, max_queued = ?3,
                    max_running = ?4, rate_per_second = ?5, rate_burst = ?6, bucket_milli = ?7,
                    bucket_at = ?8, memory_keys = ?9, memory_bytes = ?10, mem_used_keys = ?11,
                    mem_used_bytes = ?12",
            )
            .and_then(|mut st| {
                st.execute(params![
                    s.tenant,
                    s.weight,
                    opt_param(q.max_queued),
                    opt_param(q.max_running),
                    q.submit_rate.map(|r| r.per_second),
                    q.submit_rate.map(|r| r.burst),
                    bucket_milli.map(i64_param),
                    bucket_at,
                    opt_param(q.memory_keys),
                    opt_param(q.memory_bytes),
                    i64_param(used_keys),
                    i64_param(used_bytes),
                ])
            })
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn get_tenant(&self, tenant: &str) -> StoreResult<Option<TenantSettings>> {
        let t = tenant.to_string();
        self.read(move |tx, _| {
            Ok(load(tx, &t)?
                .filter(|r| r.configured)
                .map(|r| r.settings(&t)))
        })
        .await
    }

    async fn tenant_usage(&self, tenant: &str) -> StoreResult<TenantUsage> {
        let t = tenant.to_string();
        self.read(move |tx, now| {
            let (memory_keys, memory_bytes) = count_memory(tx, &t, Some(now))?;
            Ok(TenantUsage {
                queued: queued(tx, &t, u64::MAX)?,
                running: running(tx, &t, u64::MAX)?,
                memory_keys,
                memory_bytes,
            })
        })
        .await
    }
}
