//! Memory SQL. A deleted key keeps its row with a NULL value so its version keeps increasing.
//! Every write appends to `memory_changes` in the same transaction, numbered by the
//! `memory_seq` counter row. Taking that row's lock (last, just before commit) serialises the
//! numbering, so seq order is commit order: a reader that resumes "after N" can never miss a
//! change that committed late with a smaller number, which a plain sequence would allow. Lock
//! order is always memory row(s) first, counter last, so writers cannot deadlock. This module
//! must never log a change outside the writing transaction. A tenant with a memory quota has its
//! `tenants` row locked before the key's, and the quota checked before anything is written.

use async_trait::async_trait;
use sentinel_coord::model::*;
use sentinel_coord::{MemoryStore, StoreError, StoreResult, Topic};
use tokio_postgres::Row;

use crate::codec::{from_json, ms_param, to_json, u64_col};
use crate::notify::MEMORY_PAYLOAD;
use crate::store::{PgStore, with_conn};
use crate::tenants;

const ENTRY_COLS: &str = "tenant, namespace, key, value, version, ts, writer, expires_at";

fn decode_entry(r: &Row) -> Result<MemoryEntry, StoreError> {
    Ok(MemoryEntry {
        tenant: r.get(0),
        namespace: r.get(1),
        key: r.get(2),
        value: from_json(r.get::<_, &str>(3))?,
        version: u64_col(r.get(4)),
        timestamp: r.get(5),
        writer: r.get(6),
        expires_at: r.get(7),
    })
}

/// Appends one change and takes the counter row's lock until commit; returns its seq.
const LOG_CHANGE: &str = "
WITH s AS (UPDATE counters SET value = value + 1 WHERE name = 'memory_seq' RETURNING value)
INSERT INTO memory_changes (seq, tenant, namespace, key, kind, value, version, ts, writer, logged_at)
SELECT s.value, $1, $2, $3, $4, $5, $6, $7, $8, $9 FROM s
RETURNING seq";

/// Makes sure the key has a row (a placeholder that never wins last-write-wins: version 0, the
/// smallest timestamp) and locks it, returning its state and the statement's "now". A write that
/// is then refused rolls back, placeholder included.
const LOCK_KEY: &str = "
INSERT INTO memory AS m (tenant, namespace, key, value, version, ts, writer, expires_at)
VALUES ($1, $2, $3, NULL, 0, -9223372036854775808, '', NULL)
ON CONFLICT (tenant, namespace, key) DO UPDATE SET version = m.version
RETURNING value IS NOT NULL, version, ts, writer, expires_at, sentinel_now_ms($4::int8)";

#[async_trait]
impl MemoryStore for PgStore {
    async fn memory_set(&self, write: &MemoryWrite) -> StoreResult<WriteOutcome> {
        if write.namespace.is_empty() || write.key.is_empty() {
            return Err(StoreError::Invalid(
                "namespace and key must be non-empty".into(),
            ));
        }
        write.validate()?;
        let w = write;
        let value = to_json(&w.value)?;
        let now_p = self.now_param();
        let channel = &self.inner.channel;
        let out = with_conn!(self, |c| {
            let tx = c.transaction().await?;
            let quota_stmt = tx.prepare_cached(tenants::LOCK_MEMORY_QUOTA).await?;
            let stmt = tx.prepare_cached(LOCK_KEY).await?;
            // The tenant's row first (only if it has a memory quota), then the key's, in one
            // round trip; the usage count below runs after both, so it sees every write that
            // committed before the lock was ours.
            let quota_args: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&w.tenant];
            let key_args: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                [&w.tenant, &w.namespace, &w.key, &now_p];
            let (quota, cur) = tokio::try_join!(
                tx.query_opt(&quota_stmt, &quota_args),
                tx.query_one(&stmt, &key_args),
            )?;
            let quota = tenants::memory_quota(quota.as_ref());
            let (has_value, cur_version, cur_ts, cur_writer, cur_expires, now): (
                bool,
                i64,
                i64,
                String,
                Option<i64>,
                i64,
            ) = (
                cur.get(0),
                cur.get(1),
                cur.get(2),
                cur.get(3),
                cur.get(4),
                cur.get(5),
            );
            let unexpired = cur_expires.is_none_or(|e| now < e);
            let live_version = if has_value && unexpired {
                u64_col(cur_version)
            } else {
                0
            };
            let ts = w.timestamp.unwrap_or(now);
            if let Some(expected) = w.expected_version {
                if expected != live_version {
                    return Ok(WriteOutcome::VersionMismatch {
                        current: live_version,
                    });
                }
            } else if unexpired && (cur_ts, cur_writer.as_str()) > (ts, w.writer.as_str()) {
                // Deletions count here too: a delete newer than this write wins.
                return Ok(WriteOutcome::Superseded {
                    current_version: live_version,
                    timestamp: cur_ts,
                    writer: cur_writer,
                });
            }
            if let Some(quota) = quota {
                let live = has_value && unexpired;
                tenants::check_memory(&tx, quota, w, !live, now).await?;
            }
            let version = u64_col(cur_version).saturating_add(1).min(i64::MAX as u64);
            let expires_at = w.ttl_ms.map(|t| now.saturating_add(ms_param(t)));
            let v = version as i64;
            let stmt = tx
                .prepare_cached(
                    "UPDATE memory SET value = $4, version = $5, ts = $6, writer = $7, expires_at = $8
                     WHERE tenant = $1 AND namespace = $2 AND key = $3",
                )
                .await?;
            tx.execute(
                &stmt,
                &[
                    &w.tenant,
                    &w.namespace,
                    &w.key,
                    &value,
                    &v,
                    &ts,
                    &w.writer,
                    &expires_at,
                ],
            )
            .await?;
            let stmt = tx.prepare_cached(LOG_CHANGE).await?;
            tx.query_one(
                &stmt,
                &[
                    &w.tenant,
                    &w.namespace,
                    &w.key,
                    &ChangeKind::Set.as_str(),
                    &Some(value.as_str()),
                    &v,
                    &ts,
                    &w.writer,
                    &now,
                ],
            )
            .await?;
            let stmt = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
            tx.execute(&stmt, &[channel, &MEMORY_PAYLOAD]).await?;
            tx.commit().await?;
            Ok(WriteOutcome::Written(MemoryEntry {
                tenant: w.tenant.clone(),
                namespace: w.namespace.clone(),
                key: w.key.clone(),
                value: w.value.clone(),
                version,
                timestamp: ts,
                writer: w.writer.clone(),
                expires_at,
            }))
        })?;
        if matches!(out, WriteOutcome::Written(_)) {
            self.wake_local(Topic::Memory);
        }
        Ok(out)
    }

    async fn memory_get(
        &self,
        tenant: &str,
        namespace: &str,
        key: &str,
    ) -> StoreResult<Option<MemoryEntry>> {
        let now = self.now_param();
        with_conn!(self, |c| {
            let stmt = c
                .prepare_cached(&format!(
                    "SELECT {ENTRY_COLS} FROM memory
                     WHERE tenant = $1 AND namespace = $2 AND key = $3 AND value IS NOT NULL
                       AND (expires_at IS NULL OR expires_at > sentinel_now_ms($4::int8))"
                ))
                .await?;
            match c
                .query_opt(&stmt, &[&tenant, &namespace, &key, &now])
                .await?
            {
                Some(r) => Ok(Some(decode_entry(&r)?)),
                None => Ok(None),
            }
        })
    }

    async fn memory_delete(
        &self,
        tenant: &str,
        namespace: &str,
        key: &str,
        writer: &str,
    ) -> StoreResult<bool> {
        let now_p = self.now_param();
        let channel = &self.inner.channel;
        let deleted = with_conn!(self, |c| {
            let tx = c.transaction().await?;
            let stmt = tx
                .prepare_cached(
                    "SELECT value IS NOT NULL, version, expires_at, sentinel_now_ms($4::int8)
                     FROM memory WHERE tenant = $1 AND namespace = $2 AND key = $3 FOR UPDATE",
                )
                .await?;
            let Some(cur) = tx
                .query_opt(&stmt, &[&tenant, &namespace, &key, &now_p])
                .await?
            else {
                return Ok(false);
            };
            let (has_value, version, expires_at, now): (bool, i64, Option<i64>, i64) =
                (cur.get(0), cur.get(1), cur.get(2), cur.get(3));
            if !has_value || expires_at.is_some_and(|e| now >= e) {
                return Ok(false);
            }
            let v = version.saturating_add(1);
            let stmt = tx
                .prepare_cached(
                    "UPDATE memory SET value = NULL, version = $4, ts = $5, writer = $6, expires_at = NULL
                     WHERE tenant = $1 AND namespace = $2 AND key = $3",
                )
                .await?;
            tx.execute(&stmt, &[&tenant, &namespace, &key, &v, &now, &writer])
                .await?;
            let stmt = tx.prepare_cached(LOG_CHANGE).await?;
            tx.query_one(
                &stmt,
                &[
                    &tenant,
                    &namespace,
                    &key,
                    &ChangeKind::Delete.as_str(),
                    &None::<&str>,
                    &v,
                    &now,
                    &writer,
                    &now,
                ],
            )
            .await?;
            let stmt = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
            tx.execute(&stmt, &[channel, &MEMORY_PAYLOAD]).await?;
            tx.commit().await?;
            Ok(true)
        })?;
        if deleted {
            self.wake_local(Topic::Memory);
        }
        Ok(deleted)
    }

    async fn memory_list(
        &self,
        tenant: &str,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<MemoryEntry>> {
        let now = self.now_param();
        let limit = i64::from(limit);
        with_conn!(self, |c| {
            // starts_with() rather than LIKE: keys may contain % and _.
            let stmt = c
                .prepare_cached(&format!(
                    "SELECT {ENTRY_COLS} FROM memory
                     WHERE tenant = $1 AND namespace = $2 AND starts_with(key, $3)
                       AND ($5::text IS NULL OR key > $5::text)
                       AND value IS NOT NULL
                       AND (expires_at IS NULL OR expires_at > sentinel_now_ms($4::int8))
                     ORDER BY key LIMIT $6"
                ))
                .await?;
            let rows = c
                .query(&stmt, &[&tenant, &namespace, &prefix, &now, &after, &limit])
                .await?;
            Ok(rows
                .iter()
                .map(decode_entry)
                .collect::<Result<Vec<_>, _>>()?)
        })
    }

    async fn memory_list_keys(
        &self,
        tenant: &str,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        let now = self.now_param();
        let limit = i64::from(limit);
        with_conn!(self, |c| {
            let stmt = c
                .prepare_cached(
                    "SELECT key FROM memory
                     WHERE tenant = $1 AND namespace = $2 AND starts_with(key, $3)
                       AND ($5::text IS NULL OR key > $5::text)
                       AND value IS NOT NULL
                       AND (expires_at IS NULL OR expires_at > sentinel_now_ms($4::int8))
                     ORDER BY key LIMIT $6",
                )
                .await?;
            let rows = c
                .query(&stmt, &[&tenant, &namespace, &prefix, &now, &after, &limit])
                .await?;
            Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
        })
    }

    async fn memory_seq(&self) -> StoreResult<u64> {
        with_conn!(self, |c| {
            let stmt = c
                .prepare_cached("SELECT value FROM counters WHERE name = 'memory_seq'")
                .await?;
            Ok(u64_col(c.query_one(&stmt, &[]).await?.get(0)))
        })
    }

    async fn memory_changes(
        &self,
        tenant: Option<&str>,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<ChangeEvent>> {
        let after = after.min(i64::MAX as u64) as i64;
        let limit = i64::from(limit);
        with_conn!(self, |c| {
            let stmt = c
                .prepare_cached(
                    "SELECT seq, tenant, namespace, key, kind, value, version, ts, writer
                     FROM memory_changes WHERE seq > $1 AND ($2::text IS NULL OR tenant = $2)
                     ORDER BY seq LIMIT $3",
                )
                .await?;
            let rows = c.query(&stmt, &[&after, &tenant, &limit]).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let kind: &str = r.get(4);
                out.push(ChangeEvent {
                    seq: u64_col(r.get(0)),
                    tenant: r.get(1),
                    namespace: r.get(2),
                    key: r.get(3),
                    kind: ChangeKind::parse(kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("change kind {kind}")))?,
                    value: r.get::<_, Option<&str>>(5).map(from_json).transpose()?,
                    version: u64_col(r.get(6)),
                    timestamp: r.get(7),
                    writer: r.get(8),
                });
            }
            Ok(out)
        })
    }

    async fn memory_purge_expired(&self) -> StoreResult<u64> {
        let now_p = self.now_param();
        let channel = &self.inner.channel;
        let n = with_conn!(self, |c| {
            let tx = c.transaction().await?;
            // SKIP LOCKED: a key locked right now is being rewritten; the next sweep sees it.
            let stmt = tx
                .prepare_cached(
                    "SELECT tenant, namespace, key, version, clk.now
                     FROM memory, (SELECT sentinel_now_ms($1::int8) AS now) clk
                     WHERE expires_at IS NOT NULL AND value IS NOT NULL AND expires_at <= clk.now
                     ORDER BY tenant, namespace, key
                     FOR UPDATE OF memory SKIP LOCKED",
                )
                .await?;
            let rows = tx.query(&stmt, &[&now_p]).await?;
            if rows.is_empty() {
                return Ok(0u64);
            }
            let now: i64 = rows[0].get(4);
            let tenants: Vec<&str> = rows.iter().map(|r| r.get(0)).collect();
            let namespaces: Vec<&str> = rows.iter().map(|r| r.get(1)).collect();
            let keys: Vec<&str> = rows.iter().map(|r| r.get(2)).collect();
            let versions: Vec<i64> = rows
                .iter()
                .map(|r| r.get::<_, i64>(3).saturating_add(1))
                .collect();
            let stmt = tx
                .prepare_cached(
                    "UPDATE memory m SET value = NULL, version = x.v, ts = $5, writer = '',
                       expires_at = NULL
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[]) AS x(t, n, k, v)
                     WHERE m.tenant = x.t AND m.namespace = x.n AND m.key = x.k",
                )
                .await?;
            tx.execute(&stmt, &[&tenants, &namespaces, &keys, &versions, &now])
                .await?;
            let count = rows.len() as i64;
            let stmt = tx
                .prepare_cached(
                    "WITH s AS (UPDATE counters SET value = value + $5 WHERE name = 'memory_seq'
                                RETURNING value)
                     INSERT INTO memory_changes
                       (seq, tenant, namespace, key, kind, value, version, ts, writer, logged_at)
                     SELECT s.value - $5 + x.ord, x.t, x.n, x.k, 'expire', NULL, x.v, $6, '', $6
                     FROM s, unnest($1::text[], $2::text[], $3::text[], $4::int8[])
                          WITH ORDINALITY AS x(t, n, k, v, ord)",
                )
                .await?;
            tx.execute(
                &stmt,
                &[&tenants, &namespaces, &keys, &versions, &count, &now],
            )
            .await?;
            let stmt = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
            tx.execute(&stmt, &[channel, &MEMORY_PAYLOAD]).await?;
            tx.commit().await?;
            Ok(rows.len() as u64)
        })?;
        if n > 0 {
            self.wake_local(Topic::Memory);
        }
        Ok(n)
    }

    async fn memory_prune_changes(&self, before_ms: i64) -> StoreResult<u64> {
        with_conn!(self, |c| {
            let stmt = c
                .prepare_cached("DELETE FROM memory_changes WHERE logged_at < $1")
                .await?;
            Ok(c.execute(&stmt, &[&before_ms]).await?)
        })
    }
}
