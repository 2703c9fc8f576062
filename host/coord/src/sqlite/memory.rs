//! Memory SQL. A deleted key keeps its row with a NULL value so its version keeps increasing;
//! every write appends to `memory_changes` in the same transaction, numbered by a counter that
//! only grows, so the log order is the commit order.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::codec::{from_json, next_counter, to_json, u64_col};
use super::tenants::{self, Previous, entry_bytes};
use super::{SqliteStore, map_err};
use crate::error::StoreError;
use crate::model::*;
use crate::store::{MemoryStore, StoreResult, Topic};

struct Current {
    value: Option<String>,
    version: u64,
    ts: i64,
    writer: String,
    expires_at: Option<i64>,
}

impl Current {
    fn is_live(&self, now: i64) -> bool {
        self.value.is_some() && self.expires_at.is_none_or(|e| now < e)
    }
}

fn fetch(
    tx: &Transaction<'_>,
    tenant: &str,
    ns: &str,
    key: &str,
) -> Result<Option<Current>, StoreError> {
    tx.prepare_cached(
        "SELECT value, version, ts, writer, expires_at FROM memory
         WHERE tenant = ?1 AND namespace = ?2 AND key = ?3",
    )
    .and_then(|mut s| {
        s.query_row(params![tenant, ns, key], |r| {
            Ok(Current {
                value: r.get(0)?,
                version: u64_col(r.get(1)?),
                ts: r.get(2)?,
                writer: r.get(3)?,
                expires_at: r.get(4)?,
            })
        })
        .optional()
    })
    .map_err(map_err)
}

#[allow(clippy::too_many_arguments)]
fn log_change(
    tx: &Transaction<'_>,
    now: i64,
    tenant: &str,
    ns: &str,
    key: &str,
    kind: ChangeKind,
    value: Option<&str>,
    version: u64,
    ts: i64,
    writer: &str,
) -> Result<u64, StoreError> {
    let seq = next_counter(tx, "memory_seq")?;
    tx.prepare_cached(
        "INSERT INTO memory_changes (seq, tenant, namespace, key, kind, value, version, ts, writer, logged_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .and_then(|mut s| {
        s.execute(params![
            seq as i64,
            tenant,
            ns,
            key,
            kind.as_str(),
            value,
            version as i64,
            ts,
            writer,
            now
        ])
    })
    .map_err(map_err)?;
    Ok(seq)
}

fn row_to_entry(r: &Row<'_>) -> rusqlite::Result<(MemoryEntry, String)> {
    Ok((
        MemoryEntry {
            tenant: r.get(0)?,
            namespace: r.get(1)?,
            key: r.get(2)?,
            value: serde_json::Value::Null,
            version: u64_col(r.get(4)?),
            timestamp: r.get(5)?,
            writer: r.get(6)?,
            expires_at: r.get(7)?,
        },
        r.get(3)?,
    ))
}

fn decode_entry((mut e, v): (MemoryEntry, String)) -> Result<MemoryEntry, StoreError> {
    e.value = from_json(&v)?;
    Ok(e)
}

/// A key's next version, saturating at the largest a signed 64-bit column holds.
fn next_version(v: u64) -> u64 {
    v.saturating_add(1).min(i64::MAX as u64)
}

const ENTRY_COLS: &str = "tenant, namespace, key, value, version, ts, writer, expires_at";

#[async_trait]
impl MemoryStore for SqliteStore {
    async fn memory_set(&self, write: &MemoryWrite) -> StoreResult<WriteOutcome> {
        if write.namespace.is_empty() || write.key.is_empty() {
            return Err(StoreError::Invalid(
                "namespace and key must be non-empty".into(),
            ));
        }
        write.validate()?;
        let w = write.clone();
        let value = to_json(&w.value)?;
        let out = self
            .write(move |tx, now| {
                let cur = fetch(tx, &w.tenant, &w.namespace, &w.key)?;
                let live_version = cur
                    .as_ref()
                    .filter(|c| c.is_live(now))
                    .map_or(0, |c| c.version);
                let ts = w.timestamp.unwrap_or(now);
                if let Some(expected) = w.expected_version {
                    if expected != live_version {
                        return Ok(WriteOutcome::VersionMismatch {
                            current: live_version,
                        });
                    }
                } else if let Some(c) = cur.as_ref().filter(|c| c.expires_at.is_none_or(|e| now < e))
                    && (c.ts, c.writer.as_str()) > (ts, w.writer.as_str())
                {
                    // Deletions count here too: a delete newer than this write wins.
                    return Ok(WriteOutcome::Superseded {
                        current_version: live_version,
                        timestamp: c.ts,
                        writer: c.writer.clone(),
                    });
                }
                let prev = Previous {
                    counted_bytes: cur
                        .as_ref()
                        .and_then(|c| c.value.as_deref())
                        .map(|v| entry_bytes(&w.namespace, &w.key, v)),
                    live: cur.as_ref().is_some_and(|c| c.is_live(now)),
                };
                let new_bytes = entry_bytes(&w.namespace, &w.key, &value);
                tenants::account_memory_write(tx, now, &w.tenant, &prev, new_bytes)?;
                let version = next_version(cur.as_ref().map_or(0, |c| c.version));
                let expires_at = w.ttl_ms.map(|t| expiry(now, t));
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO memory (tenant, namespace, key, value, version, ts, writer, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        w.tenant,
                        w.namespace,
                        w.key,
                        value,
                        version as i64,
                        ts,
                        w.writer,
                        expires_at
                    ])
                })
                .map_err(map_err)?;
                log_change(
                    tx,
                    now,
                    &w.tenant,
                    &w.namespace,
                    &w.key,
                    ChangeKind::Set,
                    Some(&value),
                    version,
                    ts,
                    &w.writer,
                )?;
                Ok(WriteOutcome::Written(MemoryEntry {
                    tenant: w.tenant,
                    namespace: w.namespace,
                    key: w.key,
                    value: w.value,
                    version,
                    timestamp: ts,
                    writer: w.writer,
                    expires_at,
                }))
            })
            .await?;
        if matches!(out, WriteOutcome::Written(_)) {
            self.notify(Topic::Memory);
        }
        Ok(out)
    }

    async fn memory_get(
        &self,
        tenant: &str,
        namespace: &str,
        key: &str,
    ) -> StoreResult<Option<MemoryEntry>> {
        let (t, n, k) = (tenant.to_string(), namespace.to_string(), key.to_string());
        self.read(move |tx, now| {
            tx.prepare_cached(&format!(
                "SELECT {ENTRY_COLS} FROM memory
                 WHERE tenant = ?1 AND namespace = ?2 AND key = ?3 AND value IS NOT NULL
                   AND (expires_at IS NULL OR expires_at > ?4)"
            ))
            .and_then(|mut s| s.query_row(params![t, n, k, now], row_to_entry).optional())
            .map_err(map_err)?
            .map(decode_entry)
            .transpose()
        })
        .await
    }

    async fn memory_delete(
        &self,
        tenant: &str,
        namespace: &str,
        key: &str,
        writer: &str,
    ) -> StoreResult<bool> {
        let (t, n, k, w) = (
            tenant.to_string(),
            namespace.to_string(),
            key.to_string(),
            writer.to_string(),
        );
        let deleted = self
            .write(move |tx, now| {
                let Some(cur) = fetch(tx, &t, &n, &k)?.filter(|c| c.is_live(now)) else {
                    return Ok(false);
                };
                let bytes = cur.value.as_deref().map_or(0, |v| entry_bytes(&n, &k, v));
                tenants::adjust_memory(tx, &t, -1, -(bytes as i64))?;
                let version = next_version(cur.version);
                tx.prepare_cached(
                    "UPDATE memory SET value = NULL, version = ?4, ts = ?5, writer = ?6, expires_at = NULL
                     WHERE tenant = ?1 AND namespace = ?2 AND key = ?3",
                )
                .and_then(|mut s| s.execute(params![t, n, k, version as i64, now, w]))
                .map_err(map_err)?;
                log_change(tx, now, &t, &n, &k, ChangeKind::Delete, None, version, now, &w)?;
                Ok(true)
            })
            .await?;
        if deleted {
            self.notify(Topic::Memory);
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
        let (t, n, p, a) = (
            tenant.to_string(),
            namespace.to_string(),
            prefix.to_string(),
            after.map(str::to_string),
        );
        self.read(move |tx, now| {
            // substr() rather than LIKE: keys may contain % and _.
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {ENTRY_COLS} FROM memory
                     WHERE tenant = ?1 AND namespace = ?2 AND substr(key, 1, length(?3)) = ?3
                       AND (?5 IS NULL OR key > ?5)
                       AND value IS NOT NULL AND (expires_at IS NULL OR expires_at > ?4)
                     ORDER BY key LIMIT ?6"
                ))
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![t, n, p, now, a, limit], row_to_entry)
                .map_err(map_err)?;
            rows.map(|r| decode_entry(r.map_err(map_err)?)).collect()
        })
        .await
    }

    async fn memory_list_keys(
        &self,
        tenant: &str,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        let (t, n, p, a) = (
            tenant.to_string(),
            namespace.to_string(),
            prefix.to_string(),
            after.map(str::to_string),
        );
        self.read(move |tx, now| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT key FROM memory
                     WHERE tenant = ?1 AND namespace = ?2 AND substr(key, 1, length(?3)) = ?3
                       AND (?5 IS NULL OR key > ?5)
                       AND value IS NOT NULL AND (expires_at IS NULL OR expires_at > ?4)
                     ORDER BY key LIMIT ?6",
                )
                .map_err(map_err)?;
            stmt.query_map(params![t, n, p, now, a, limit], |r| r.get(0))
                .map_err(map_err)?
                .collect::<Result<_, _>>()
                .map_err(map_err)
        })
        .await
    }

    async fn memory_seq(&self) -> StoreResult<u64> {
        self.read(|tx, _| {
            tx.prepare_cached("SELECT value FROM counters WHERE name = 'memory_seq'")
                .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
                .map(u64_col)
                .map_err(map_err)
        })
        .await
    }

    async fn memory_changes(
        &self,
        tenant: Option<&str>,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<ChangeEvent>> {
        let t = tenant.map(str::to_string);
        self.read(move |tx, _| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT seq, tenant, namespace, key, kind, value, version, ts, writer
                     FROM memory_changes WHERE seq > ?1 AND (?2 IS NULL OR tenant = ?2)
                     ORDER BY seq LIMIT ?3",
                )
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![after as i64, t, limit], |r| {
                    Ok((
                        u64_col(r.get(0)?),
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        u64_col(r.get(6)?),
                        r.get::<_, i64>(7)?,
                        r.get::<_, String>(8)?,
                    ))
                })
                .map_err(map_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, tenant, namespace, key, kind, value, version, timestamp, writer) =
                    row.map_err(map_err)?;
                out.push(ChangeEvent {
                    seq,
                    tenant,
                    namespace,
                    key,
                    kind: ChangeKind::parse(&kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("change kind {kind}")))?,
                    value: value.as_deref().map(from_json).transpose()?,
                    version,
                    timestamp,
                    writer,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn memory_purge_expired(&self) -> StoreResult<u64> {
        let n = self
            .write(|tx, now| {
                // Each row decoded on its own: one that cannot be is skipped and logged, never
                // fails the sweep for every other tenant.
                let rows: Vec<rusqlite::Result<(String, String, String, u64, i64)>> = {
                    let mut stmt = tx
                        .prepare_cached(
                            "SELECT tenant, namespace, key, CAST(version AS INTEGER),
                                    length(CAST(value AS BLOB)) FROM memory
                             WHERE expires_at IS NOT NULL AND value IS NOT NULL AND expires_at <= ?1",
                        )
                        .map_err(map_err)?;
                    stmt.query_map([now], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, u64_col(r.get(3)?), r.get(4)?))
                    })
                    .map_err(map_err)?
                    .collect()
                };
                let mut expired = Vec::with_capacity(rows.len());
                for row in rows {
                    match row {
                        Ok(r) => expired.push(r),
                        Err(e) => tracing::warn!(error = %e, "memory purge skipped an undecodable entry"),
                    }
                }
                let mut freed: std::collections::BTreeMap<&str, (i64, i64)> = Default::default();
                for (t, n, k, v, len) in &expired {
                    let f = freed.entry(t.as_str()).or_default();
                    f.0 += 1;
                    f.1 += (n.len() + k.len()) as i64 + len;
                    tx.prepare_cached(
                        "UPDATE memory SET value = NULL, version = ?4, ts = ?5, writer = '', expires_at = NULL
                         WHERE tenant = ?1 AND namespace = ?2 AND key = ?3",
                    )
                    .and_then(|mut s| s.execute(params![t, n, k, next_version(*v) as i64, now]))
                    .map_err(map_err)?;
                    log_change(tx, now, t, n, k, ChangeKind::Expire, None, next_version(*v), now, "")?;
                }
                for (t, (keys, bytes)) in freed {
                    tenants::adjust_memory(tx, t, -keys, -bytes)?;
                }
                Ok(expired.len() as u64)
            })
            .await?;
        if n > 0 {
            self.notify(Topic::Memory);
        }
        Ok(n)
    }

    async fn memory_prune_changes(&self, before_ms: i64) -> StoreResult<u64> {
        self.write(move |tx, _| {
            tx.prepare_cached("DELETE FROM memory_changes WHERE logged_at < ?1")
                .and_then(|mut s| s.execute([before_ms]))
                .map(|n| n as u64)
                .map_err(map_err)
        })
        .await
    }
}
