//! Shared memory: the memory document (`refs/sentinel/memory`) holds one file per key,
//! `entries/<tenant>/<namespace>/<key>.json` (each component encoded), a change log
//! `changes/<seq, 20 digits>.json` and `meta.json` with the last sequence number. A write, its
//! change-log entry and the sequence bump are one commit, so the log order is the commit order
//! and a reader resuming "after seq N" sees every later change exactly once. A deleted key keeps
//! its file (marked deleted) so its version keeps increasing. Last-write-wins and
//! compare-and-set follow the SQLite backend exactly; times are the store's clock. A tenant with
//! a memory quota also has `tenants/<tenant>.json` here (a copy of that quota, see
//! [`crate::tenants`]), so `memory_set` checks it in its own transaction. This module owns the
//! memory document only.

use std::sync::Arc;

use async_trait::async_trait;
use sentinel_coord::model::*;
use sentinel_coord::{Clock, MemoryStore, StoreError, StoreResult, Topic};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codec::{dec, enc};
use crate::doc::{Doc, Snapshot, Write};
use crate::notify::Notifier;
use crate::tenants::MemoryQuota;

pub const MEMORY_REF: &str = "sentinel/memory";
const ENTRIES: &str = "entries/";
const CHANGES: &str = "changes/";
const META: &str = "meta.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct EntryFile {
    #[serde(rename = "type")]
    kind: String,
    tenant: String,
    namespace: String,
    key: String,
    deleted: bool,
    value: Value,
    version: u64,
    timestamp: i64,
    writer: String,
    expires_at: Option<i64>,
}

impl EntryFile {
    fn live(&self, now: i64) -> bool {
        !self.deleted && self.expires_at.is_none_or(|e| now < e)
    }

    fn entry(&self) -> MemoryEntry {
        MemoryEntry {
            tenant: self.tenant.clone(),
            namespace: self.namespace.clone(),
            key: self.key.clone(),
            value: self.value.clone(),
            version: self.version,
            timestamp: self.timestamp,
            writer: self.writer.clone(),
            expires_at: self.expires_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct ChangeFile {
    #[serde(flatten)]
    event: ChangeEvent,
    logged_at: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Meta {
    seq: u64,
}

fn dir(tenant: &str, ns: &str) -> String {
    format!("{ENTRIES}{}/{}/", enc(tenant), enc(ns))
}

fn entry_path(tenant: &str, ns: &str, key: &str) -> String {
    format!("{}{}.json", dir(tenant, ns), enc(key))
}

fn change_path(seq: u64) -> String {
    format!("{CHANGES}{seq:020}.json")
}

fn decode<T: serde::de::DeserializeOwned>(path: &str, v: &Value) -> Result<T, StoreError> {
    serde_json::from_value(v.clone())
        .map_err(|e| StoreError::Corrupt(format!("memory: {path}: {e}")))
}

fn put<T: Serialize>(path: String, v: &T) -> Result<Write, StoreError> {
    Ok(Write::Put(
        path,
        serde_json::to_value(v).map_err(|e| StoreError::Invalid(e.to_string()))?,
    ))
}

fn meta(snap: &Snapshot) -> Result<Meta, StoreError> {
    snap.get(META)
        .map(|v| decode(META, v))
        .transpose()
        .map(Option::unwrap_or_default)
}

fn load_entry(snap: &Snapshot, path: &str) -> Result<Option<EntryFile>, StoreError> {
    snap.get(path).map(|v| decode(path, v)).transpose()
}

/// Writes of one change: the entry, the log record, the sequence bump.
fn change_writes(
    snap: &Snapshot,
    now: i64,
    e: &EntryFile,
    kind: ChangeKind,
) -> Result<Vec<Write>, StoreError> {
    let mut m = meta(snap)?;
    m.seq += 1;
    let change = ChangeFile {
        event: ChangeEvent {
            seq: m.seq,
            tenant: e.tenant.clone(),
            namespace: e.namespace.clone(),
            key: e.key.clone(),
            kind,
            value: (!e.deleted).then(|| e.value.clone()),
            version: e.version,
            timestamp: e.timestamp,
            writer: e.writer.clone(),
        },
        logged_at: now,
    };
    Ok(vec![
        put(entry_path(&e.tenant, &e.namespace, &e.key), e)?,
        put(change_path(m.seq), &change)?,
        put(META.to_string(), &m)?,
    ])
}

/// A live entry's size against `memory_bytes`.
fn entry_bytes(e: &EntryFile) -> u64 {
    memory_entry_bytes(&e.namespace, &e.key, &e.value)
}

/// The tenant's live keys and bytes at `now`, counted over its entries in the snapshot (which
/// is in memory: no request). Read straight from the parsed JSON, without copying values.
pub(crate) fn live_usage(snap: &Snapshot, tenant: &str, now: i64) -> (u64, u64) {
    let (mut keys, mut bytes) = (0u64, 0u64);
    for (_, v) in snap.under(&format!("{ENTRIES}{}/", enc(tenant))) {
        let deleted = v.get("deleted").and_then(Value::as_bool).unwrap_or(true);
        let expired = v
            .get("expires_at")
            .and_then(Value::as_i64)
            .is_some_and(|e| now >= e);
        if deleted || expired {
            continue;
        }
        let s = |f: &str| v.get(f).and_then(Value::as_str).unwrap_or("");
        let value = v.get("value").unwrap_or(&Value::Null);
        keys += 1;
        bytes = bytes.saturating_add(memory_entry_bytes(s("namespace"), s("key"), value));
    }
    (keys, bytes)
}

/// The tenant's memory quota (its copy in this document, see [`MemoryQuota`]) for a write that
/// is about to be applied over `live` (the key's live entry, if any). Judged on the snapshot the
/// write commits on, so racing writers are judged again after a lost CAS. Tenants without a
/// memory quota pay nothing: one lookup in the snapshot.
fn check_quota(
    snap: &Snapshot,
    now: i64,
    w: &MemoryWrite,
    live: Option<&EntryFile>,
) -> Result<(), StoreError> {
    let Some(q) = MemoryQuota::load(snap, &w.tenant)? else {
        return Ok(());
    };
    if q.memory_keys.is_none() && q.memory_bytes.is_none() {
        return Ok(());
    }
    let refuse = |quota, limit| {
        StoreError::Quota(QuotaExceeded {
            tenant: w.tenant.clone(),
            quota,
            limit,
            retry_after_ms: None,
        })
    };
    let (keys, bytes) = live_usage(snap, &w.tenant, now);
    if let Some(max) = q.memory_keys
        && live.is_none()
        && keys >= max
    {
        return Err(refuse(Quota::MemoryKeys, max));
    }
    if let Some(max) = q.memory_bytes {
        let after = bytes
            .saturating_sub(live.map_or(0, entry_bytes))
            .saturating_add(memory_entry_bytes(&w.namespace, &w.key, &w.value));
        if after > max {
            return Err(refuse(Quota::MemoryBytes, max));
        }
    }
    Ok(())
}

pub struct GithubMemory {
    doc: Doc,
    clock: Arc<dyn Clock>,
    notify: Arc<Notifier>,
}

impl GithubMemory {
    pub fn new(doc: Doc, clock: Arc<dyn Clock>, notify: Arc<Notifier>) -> Self {
        Self { doc, clock, notify }
    }

    pub fn doc(&self) -> &Doc {
        &self.doc
    }

    /// The tenant's live keys and bytes now.
    pub async fn usage(&self, tenant: &str) -> StoreResult<(u64, u64)> {
        let snap = self.doc.read().await?;
        Ok(live_usage(&snap, tenant, self.clock.now_ms()))
    }
}

/// A key's next version, saturating at the largest every backend's column holds.
fn next_version(v: u64) -> u64 {
    v.saturating_add(1).min(i64::MAX as u64)
}

#[async_trait]
impl MemoryStore for GithubMemory {
    async fn memory_set(&self, write: &MemoryWrite) -> StoreResult<WriteOutcome> {
        if write.namespace.is_empty() || write.key.is_empty() {
            return Err(StoreError::Invalid(
                "namespace and key must be non-empty".into(),
            ));
        }
        write.validate()?;
        let w = write;
        let clock = self.clock.clone();
        let out = self
            .doc
            .transact("memory set", |snap| {
                let now = clock.now_ms();
                let path = entry_path(&w.tenant, &w.namespace, &w.key);
                let cur = load_entry(snap, &path)?;
                let live_version = cur
                    .as_ref()
                    .filter(|c| c.live(now))
                    .map_or(0, |c| c.version);
                let ts = w.timestamp.unwrap_or(now);
                if let Some(expected) = w.expected_version {
                    if expected != live_version {
                        return Ok((
                            vec![],
                            WriteOutcome::VersionMismatch {
                                current: live_version,
                            },
                        ));
                    }
                } else if let Some(c) = cur
                    .as_ref()
                    .filter(|c| c.expires_at.is_none_or(|e| now < e))
                    && (c.timestamp, c.writer.as_str()) > (ts, w.writer.as_str())
                {
                    // Deletions count too: a delete newer than this write wins.
                    return Ok((
                        vec![],
                        WriteOutcome::Superseded {
                            current_version: live_version,
                            timestamp: c.timestamp,
                            writer: c.writer.clone(),
                        },
                    ));
                }
                check_quota(snap, now, w, cur.as_ref().filter(|c| c.live(now)))?;
                let e = EntryFile {
                    kind: "MEMORY_ENTRY".into(),
                    tenant: w.tenant.clone(),
                    namespace: w.namespace.clone(),
                    key: w.key.clone(),
                    deleted: false,
                    value: w.value.clone(),
                    version: next_version(cur.as_ref().map_or(0, |c| c.version)),
                    timestamp: ts,
                    writer: w.writer.clone(),
                    expires_at: w
                        .ttl_ms
                        .map(|t| now.saturating_add(t.min(i64::MAX as u64) as i64)),
                };
                Ok((
                    change_writes(snap, now, &e, ChangeKind::Set)?,
                    WriteOutcome::Written(e.entry()),
                ))
            })
            .await?;
        if matches!(out, WriteOutcome::Written(_)) {
            self.notify.bump(Topic::Memory);
        }
        Ok(out)
    }

    async fn memory_get(
        &self,
        tenant: &str,
        namespace: &str,
        key: &str,
    ) -> StoreResult<Option<MemoryEntry>> {
        let snap = self.doc.read().await?;
        let now = self.clock.now_ms();
        Ok(load_entry(&snap, &entry_path(tenant, namespace, key))?
            .filter(|e| e.live(now))
            .map(|e| e.entry()))
    }

    async fn memory_delete(
        &self,
        tenant: &str,
        namespace: &str,
        key: &str,
        writer: &str,
    ) -> StoreResult<bool> {
        let clock = self.clock.clone();
        let deleted = self
            .doc
            .transact("memory delete", |snap| {
                let now = clock.now_ms();
                let path = entry_path(tenant, namespace, key);
                let Some(cur) = load_entry(snap, &path)?.filter(|c| c.live(now)) else {
                    return Ok((vec![], false));
                };
                let e = EntryFile {
                    deleted: true,
                    value: Value::Null,
                    version: next_version(cur.version),
                    timestamp: now,
                    writer: writer.to_string(),
                    expires_at: None,
                    ..cur
                };
                Ok((change_writes(snap, now, &e, ChangeKind::Delete)?, true))
            })
            .await?;
        if deleted {
            self.notify.bump(Topic::Memory);
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
        let snap = self.doc.read().await?;
        let now = self.clock.now_ms();
        let d = dir(tenant, namespace);
        let mut out = Vec::new();
        for (path, v) in snap.under(&d) {
            let name = path[d.len()..].trim_end_matches(".json");
            if name.contains('/') {
                continue;
            }
            let key = dec(name);
            if !key.starts_with(prefix) || after.is_some_and(|a| key.as_str() <= a) {
                continue;
            }
            let e: EntryFile = decode(path, v)?;
            if e.live(now) {
                out.push(e.entry());
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.truncate(limit as usize);
        Ok(out)
    }

    /// The document is read whole anyway (one tree); only the live keys are kept.
    async fn memory_list_keys(
        &self,
        tenant: &str,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        let snap = self.doc.read().await?;
        let now = self.clock.now_ms();
        let d = dir(tenant, namespace);
        let mut out = Vec::new();
        for (path, v) in snap.under(&d) {
            let name = path[d.len()..].trim_end_matches(".json");
            if name.contains('/') {
                continue;
            }
            let key = dec(name);
            if !key.starts_with(prefix) || after.is_some_and(|a| key.as_str() <= a) {
                continue;
            }
            let e: EntryFile = decode(path, v)?;
            if e.live(now) {
                out.push(key);
            }
        }
        out.sort();
        out.truncate(limit as usize);
        Ok(out)
    }

    async fn memory_seq(&self) -> StoreResult<u64> {
        Ok(meta(&self.doc.read().await?)?.seq)
    }

    async fn memory_changes(
        &self,
        tenant: Option<&str>,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<ChangeEvent>> {
        let snap = self.doc.read().await?;
        let start = change_path(after + 1);
        let mut out = Vec::new();
        for (path, v) in snap.files.range(start..) {
            if !path.starts_with(CHANGES) || out.len() >= limit as usize {
                break;
            }
            let c: ChangeFile = decode(path, v)?;
            if tenant.is_none_or(|t| t == c.event.tenant) {
                out.push(c.event);
            }
        }
        Ok(out)
    }

    async fn memory_purge_expired(&self) -> StoreResult<u64> {
        let clock = self.clock.clone();
        let n = self
            .doc
            .transact("memory purge", |snap| {
                let now = clock.now_ms();
                let mut m = meta(snap)?;
                let mut writes = Vec::new();
                let mut n = 0u64;
                for (path, v) in snap.under(ENTRIES) {
                    // One undecodable entry is skipped (and logged), never stops the sweep.
                    let cur: EntryFile = match decode(path, v) {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::warn!(path, error = %e, "memory purge skipped an undecodable entry");
                            continue;
                        }
                    };
                    if cur.deleted || cur.expires_at.is_none_or(|e| now < e) {
                        continue;
                    }
                    let e = EntryFile {
                        deleted: true,
                        value: Value::Null,
                        version: next_version(cur.version),
                        timestamp: now,
                        writer: String::new(),
                        expires_at: None,
                        ..cur
                    };
                    m.seq += 1;
                    let change = ChangeFile {
                        event: ChangeEvent {
                            seq: m.seq,
                            tenant: e.tenant.clone(),
                            namespace: e.namespace.clone(),
                            key: e.key.clone(),
                            kind: ChangeKind::Expire,
                            value: None,
                            version: e.version,
                            timestamp: now,
                            writer: String::new(),
                        },
                        logged_at: now,
                    };
                    writes.push(put(path.clone(), &e)?);
                    writes.push(put(change_path(m.seq), &change)?);
                    n += 1;
                }
                if n > 0 {
                    writes.push(put(META.to_string(), &m)?);
                }
                Ok((writes, n))
            })
            .await?;
        if n > 0 {
            self.notify.bump(Topic::Memory);
        }
        Ok(n)
    }

    async fn memory_prune_changes(&self, before_ms: i64) -> StoreResult<u64> {
        self.doc
            .transact("memory prune", |snap| {
                let mut writes = Vec::new();
                for (path, v) in snap.under(CHANGES) {
                    let c: ChangeFile = decode(path, v)?;
                    if c.logged_at < before_ms {
                        writes.push(Write::Delete(path.clone()));
                    }
                }
                let n = writes.len() as u64;
                Ok((writes, n))
            })
            .await
    }
}
