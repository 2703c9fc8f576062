//! Tenant settings in the queue document and the quotas enforced on it. A tenant with settings
//! has a file `tenants/<enc tenant>.json` holding its weight, its quota, a revision (bumped by
//! every change, so that the copy of the memory quota in the memory document converges, see
//! `crate::tenants`) and its submit-rate bucket. A tenant without settings has no file: weight
//! 1, no quota, and none of these checks run for it.
//!
//! Every check runs inside the queue transaction whose write it limits, on the snapshot that
//! transaction commits on top of: if another process moved the queue first, the ref CAS fails
//! and the check is judged again on the new state. So two hosts sharing one repository can never
//! both pass a check that only one of them may pass. The checks count in memory over the
//! snapshot the transaction has read anyway: they cost no request.

use std::collections::BTreeMap;

use sentinel_coord::StoreError;
use sentinel_coord::model::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::logic::QueueState;
use crate::codec::enc;

pub const TENANTS_DIR: &str = "tenants/";

/// A token bucket's state: milli-tokens at a store-clock instant (see [`RateLimit::refill`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub tokens_milli: u64,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantFile {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(flatten)]
    pub settings: TenantSettings,
    /// Bumped by every settings change.
    pub revision: u64,
    /// `None`: a full bucket (no submission since the rate was set).
    #[serde(default)]
    pub bucket: Option<Bucket>,
}

impl TenantFile {
    pub fn path(tenant: &str) -> String {
        format!("{TENANTS_DIR}{}.json", enc(tenant))
    }

    pub fn decode(path: &str, v: &Value) -> Result<Self, StoreError> {
        serde_json::from_value(v.clone())
            .map_err(|e| StoreError::Corrupt(format!("queue: {path}: {e}")))
    }

    pub fn encode(&self) -> Result<Value, StoreError> {
        serde_json::to_value(self).map_err(|e| StoreError::Invalid(e.to_string()))
    }

    /// The bucket's milli-tokens at `now`.
    fn tokens(&self, rate: &RateLimit, now: i64) -> u64 {
        match self.bucket {
            None => rate.capacity_milli(),
            Some(b) => rate.refill(
                b.tokens_milli.min(rate.capacity_milli()),
                now.saturating_sub(b.at_ms),
            ),
        }
    }
}

fn refused(tenant: &str, quota: Quota, limit: u64, retry_after_ms: Option<u64>) -> StoreError {
    StoreError::Quota(QuotaExceeded {
        tenant: tenant.to_string(),
        quota,
        limit,
        retry_after_ms,
    })
}

/// A tenant's queued and running task counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub queued: u64,
    pub running: u64,
}

impl QueueState {
    /// The tenants with queued (pending or failed) tasks, with how many.
    pub fn backlogged(&self) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for r in self.tasks.values().filter(|r| r.queued()) {
            *out.entry(r.tenant.clone()).or_default() += 1;
        }
        out
    }

    /// Queued and running tasks of one tenant (what [`TenantUsage`] reports).
    pub fn tally(&self, tenant: &str) -> Tally {
        let mut t = Tally::default();
        for r in self.tasks.values().filter(|r| r.tenant == tenant) {
            t.queued += u64::from(r.queued());
            t.running += u64::from(r.state == TaskState::Running);
        }
        t
    }

    /// Running tasks of each tenant in `tenants` (fleet-wide: every worker's claims are in the
    /// document).
    pub(super) fn running(&self, tenants: &[&str]) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = tenants.iter().map(|t| (t.to_string(), 0)).collect();
        for r in self.tasks.values() {
            if r.state == TaskState::Running
                && let Some(n) = out.get_mut(&r.tenant)
            {
                *n += 1;
            }
        }
        out
    }

    /// `max_queued`: `queued + n` must not pass it.
    pub(super) fn check_queued(&self, tenant: &str, queued: u64, n: u64) -> Result<(), StoreError> {
        if let Some(max) = self.settings(tenant).and_then(|s| s.quota.max_queued)
            && queued.saturating_add(n) > max
        {
            return Err(refused(tenant, Quota::QueuedTasks, max, None));
        }
        Ok(())
    }

    /// The quotas of a submission of `per_tenant[t]` tasks for each tenant `t`, in ascending
    /// tenant order: the bucket first, then `max_queued`. Returns the buckets to store if the
    /// batch goes in; changes nothing (a refused batch takes no token).
    pub(super) fn check_submission(
        &self,
        now: i64,
        per_tenant: &BTreeMap<&str, u64>,
        queued: &BTreeMap<String, u64>,
    ) -> Result<Vec<(String, Bucket)>, StoreError> {
        let mut buckets = Vec::new();
        for (&tenant, &n) in per_tenant {
            let Some(file) = self.tenants.get(tenant) else {
                continue;
            };
            if let Some(rate) = file.settings.quota.submit_rate {
                match rate.take(file.tokens(&rate, now), n) {
                    Ok(left) => buckets.push((
                        tenant.to_string(),
                        Bucket {
                            tokens_milli: left,
                            at_ms: now,
                        },
                    )),
                    Err(retry) => {
                        return Err(refused(tenant, Quota::SubmitRate, rate.burst.into(), retry));
                    }
                }
            }
            self.check_queued(tenant, queued.get(tenant).copied().unwrap_or(0), n)?;
        }
        Ok(buckets)
    }

    pub(super) fn set_bucket(&mut self, tenant: &str, bucket: Bucket) {
        if let Some(f) = self.tenants.get_mut(tenant) {
            f.bucket = Some(bucket);
            self.tenants_dirty.insert(tenant.to_string());
        }
    }

    /// Inserts or replaces `s`; `false` if they were already stored (nothing to write). The
    /// bucket survives a change (its tokens clamped to the new burst); it starts full when the
    /// tenant had no rate before, and is dropped with the rate.
    pub fn put_tenant(&mut self, s: &TenantSettings) -> bool {
        let file = match self.tenants.get(&s.tenant) {
            Some(f) if f.settings == *s => return false,
            Some(f) => {
                let bucket = match (f.settings.quota.submit_rate, s.quota.submit_rate, f.bucket) {
                    (Some(_), Some(rate), Some(b)) => Some(Bucket {
                        tokens_milli: b.tokens_milli.min(rate.capacity_milli()),
                        at_ms: b.at_ms,
                    }),
                    _ => None,
                };
                TenantFile {
                    kind: "SENTINEL_TENANT".into(),
                    settings: s.clone(),
                    revision: f.revision + 1,
                    bucket,
                }
            }
            None => TenantFile {
                kind: "SENTINEL_TENANT".into(),
                settings: s.clone(),
                revision: 1,
                bucket: None,
            },
        };
        self.tenants.insert(s.tenant.clone(), file);
        self.tenants_dirty.insert(s.tenant.clone());
        true
    }
}
