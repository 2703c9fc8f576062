//! Tenant settings ([`TenantStore`]) on GitHub. The authoritative settings live in the queue
//! document (`tenants/<enc tenant>.json`, see `queue/quota.rs`), where enqueue, claim and
//! `retry_dead` enforce them inside their own transactions. `memory_set` commits on the memory
//! document, and GitHub has no transaction spanning two refs, so the memory part of a quota is
//! copied to the memory document (`tenants/<enc tenant>.json` there), tagged with the settings'
//! revision: `put_tenant` commits the settings first, then brings the copy up to that revision
//! unless it already holds it or a later one. Racing `put_tenant`s therefore converge on the
//! queue document's last revision; a process that dies between the two commits leaves the old
//! memory quota in force until the next `put_tenant` (hosts call it at every start).
//!
//! Costs: a `put_tenant` that changes nothing reads both refs (conditional GETs) and writes
//! nothing. A tenant that never had a memory quota has no copy at all.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use sentinel_coord::model::*;
use sentinel_coord::{StoreError, StoreResult};

use crate::codec::enc;
use crate::doc::{Snapshot, Write};
use crate::store::Inner;

const DIR: &str = "tenants/";

/// The memory document's copy of a tenant's memory quota.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryQuota {
    #[serde(rename = "type")]
    pub kind: String,
    pub tenant: String,
    /// The queue document's settings revision this copy reflects.
    pub revision: u64,
    pub memory_keys: Option<u64>,
    pub memory_bytes: Option<u64>,
}

impl MemoryQuota {
    pub fn path(tenant: &str) -> String {
        format!("{DIR}{}.json", enc(tenant))
    }

    pub fn load(snap: &Snapshot, tenant: &str) -> Result<Option<Self>, StoreError> {
        let path = Self::path(tenant);
        snap.get(&path)
            .map(|v| {
                serde_json::from_value(v.clone())
                    .map_err(|e| StoreError::Corrupt(format!("memory: {path}: {e}")))
            })
            .transpose()
    }

    fn encode(&self) -> Result<Value, StoreError> {
        serde_json::to_value(self).map_err(|e| StoreError::Invalid(e.to_string()))
    }
}

pub(crate) async fn put_tenant(inner: &Inner, s: &TenantSettings) -> StoreResult<()> {
    s.validate()?;
    let revision = inner.queue.put_tenant(s).await?;
    let copy = MemoryQuota {
        kind: "SENTINEL_MEMORY_QUOTA".into(),
        tenant: s.tenant.clone(),
        revision,
        memory_keys: s.quota.memory_keys,
        memory_bytes: s.quota.memory_bytes,
    };
    inner
        .memory
        .doc()
        .transact("tenant memory quota", |snap| {
            let held = MemoryQuota::load(snap, &s.tenant)?;
            let stale = match &held {
                Some(h) => h.revision < revision,
                // Never had a memory quota and still has none: nothing to copy.
                None => s.quota.limits_memory(),
            };
            let writes = if stale {
                vec![Write::Put(MemoryQuota::path(&s.tenant), copy.encode()?)]
            } else {
                Vec::new()
            };
            Ok((writes, ()))
        })
        .await
}

pub(crate) async fn get_tenant(inner: &Inner, tenant: &str) -> StoreResult<Option<TenantSettings>> {
    inner.queue.get_tenant(tenant).await
}

pub(crate) async fn tenant_usage(inner: &Inner, tenant: &str) -> StoreResult<TenantUsage> {
    let tally = inner.queue.tally(tenant).await?;
    let (memory_keys, memory_bytes) = inner.memory.usage(tenant).await?;
    Ok(TenantUsage {
        queued: tally.queued,
        running: tally.running,
        memory_keys,
        memory_bytes,
    })
}
