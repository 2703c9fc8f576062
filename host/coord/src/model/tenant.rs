//! Tenants: their settings (fair-share weight and quotas), their usage, the typed refusal a
//! quota produces, and the key that names a task across tenants. Plain data: the store enforces
//! quotas and fairness (see [`crate::store::TenantStore`] and [`crate::store::QueueStore`]).
//!
//! A tenant that has no settings row behaves as [`TenantSettings::new`]: weight 1, no quota.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::limits::{self, RangeError};

/// The identity of a task: task ids are unique per tenant, not globally.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskKey {
    pub tenant: String,
    pub id: String,
}

impl TaskKey {
    pub fn new(tenant: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            tenant: tenant.into(),
            id: id.into(),
        }
    }
}

/// A token bucket: capacity `burst` tasks, refilled at `per_second` tasks per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// [`limits::RATE_PER_SECOND`].
    pub per_second: u32,
    /// [`limits::RATE_BURST`].
    pub burst: u32,
}

impl RateLimit {
    /// One task's cost in milli-tokens (bucket state is kept in milli-tokens, an integer, so
    /// every backend computes the same numbers).
    pub const MILLI: u64 = 1_000;

    /// The bucket after `elapsed_ms` of refill from `tokens_milli`: `min(burst * 1000, tokens +
    /// elapsed_ms * per_second)` milli-tokens. A negative `elapsed_ms` (clock went back) refills
    /// nothing.
    pub fn refill(&self, tokens_milli: u64, elapsed_ms: i64) -> u64 {
        let gained = (elapsed_ms.max(0) as u64).saturating_mul(self.per_second as u64);
        tokens_milli
            .saturating_add(gained)
            .min(self.capacity_milli())
    }

    /// `burst * 1000`: a full bucket.
    pub fn capacity_milli(&self) -> u64 {
        self.burst as u64 * Self::MILLI
    }

    /// Takes `n` tasks' tokens from a bucket holding `tokens_milli` (already refilled to now):
    /// `Ok(remaining milli-tokens)`, or `Err(retry_after_ms)` where `retry_after_ms` is the
    /// time until `n` tokens are there, `ceil((n * 1000 - tokens) / per_second)`, and `None`
    /// when `n > burst` (the batch can never pass).
    pub fn take(&self, tokens_milli: u64, n: u64) -> Result<u64, Option<u64>> {
        if n > self.burst as u64 {
            return Err(None);
        }
        let need = n * Self::MILLI;
        if tokens_milli >= need {
            return Ok(tokens_milli - need);
        }
        Err(Some(
            (need - tokens_milli).div_ceil(u64::from(self.per_second).max(1)),
        ))
    }
}

/// Per-tenant limits; `None` = unlimited. Each value has its range in [`limits`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantQuota {
    /// Tasks pending or failed-awaiting-retry ("queued").
    pub max_queued: Option<u64>,
    /// Tasks running, fleet-wide.
    pub max_running: Option<u64>,
    /// Token bucket on submissions (each task of a batch takes one token).
    pub submit_rate: Option<RateLimit>,
    /// Live (not deleted, not expired) shared-memory keys, all namespaces.
    pub memory_keys: Option<u64>,
    /// Sum over live keys of [`memory_entry_bytes`].
    pub memory_bytes: Option<u64>,
}

impl TenantQuota {
    /// No quota at all: the tenant pays nothing extra on any hot path.
    pub fn is_unlimited(&self) -> bool {
        *self == TenantQuota::default()
    }

    /// A memory quota (keys or bytes) is set.
    pub fn limits_memory(&self) -> bool {
        self.memory_keys.is_some() || self.memory_bytes.is_some()
    }
}

/// What the store knows about one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSettings {
    pub tenant: String,
    /// Fair-share weight ([`limits::TENANT_WEIGHT`]): a backlogged tenant of weight 3 gets three
    /// claims for every one of a backlogged tenant of weight 1.
    pub weight: u32,
    pub quota: TenantQuota,
}

impl TenantSettings {
    /// The settings of a tenant that has none stored: weight 1, no quota.
    pub fn new(tenant: impl Into<String>) -> Self {
        Self {
            tenant: tenant.into(),
            weight: 1,
            quota: TenantQuota::default(),
        }
    }

    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    pub fn with_quota(mut self, quota: TenantQuota) -> Self {
        self.quota = quota;
        self
    }

    /// The tenant name (non-empty, at most [`limits::MAX_NAME_BYTES`]), the weight and every
    /// quota inside their documented ranges. Backends call it in `put_tenant` and refuse with
    /// `StoreError::Invalid`.
    pub fn validate(&self) -> Result<(), TenantSettingsError> {
        if self.tenant.is_empty() || self.tenant.len() > limits::MAX_NAME_BYTES {
            return Err(TenantSettingsError::Name(format!(
                "tenant must be 1..={} bytes",
                limits::MAX_NAME_BYTES
            )));
        }
        limits::TENANT_WEIGHT.check(self.weight as i128)?;
        let q = &self.quota;
        if let Some(n) = q.max_queued {
            limits::QUOTA_MAX_QUEUED.check_u64(n)?;
        }
        if let Some(n) = q.max_running {
            limits::QUOTA_MAX_RUNNING.check_u64(n)?;
        }
        if let Some(r) = q.submit_rate {
            limits::RATE_PER_SECOND.check(r.per_second as i128)?;
            limits::RATE_BURST.check(r.burst as i128)?;
        }
        if let Some(n) = q.memory_keys {
            limits::QUOTA_MEMORY_KEYS.check_u64(n)?;
        }
        if let Some(n) = q.memory_bytes {
            limits::QUOTA_MEMORY_BYTES.check_u64(n)?;
        }
        Ok(())
    }
}

/// Why tenant settings were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantSettingsError {
    Name(String),
    Range(RangeError),
}

impl From<RangeError> for TenantSettingsError {
    fn from(e: RangeError) -> Self {
        TenantSettingsError::Range(e)
    }
}

impl fmt::Display for TenantSettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TenantSettingsError::Name(m) => f.write_str(m),
            TenantSettingsError::Range(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for TenantSettingsError {}

/// A tenant's current consumption of what its quota limits (expired memory entries excluded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantUsage {
    /// Tasks pending or failed (awaiting a retry).
    pub queued: u64,
    /// Tasks running, fleet-wide.
    pub running: u64,
    /// Live shared-memory keys.
    pub memory_keys: u64,
    /// Sum over live keys of [`memory_entry_bytes`].
    pub memory_bytes: u64,
}

/// The size a live memory entry counts against `memory_bytes`: the UTF-8 bytes of its
/// namespace and key plus the bytes of its value's compact JSON encoding (`serde_json::to_vec`).
pub fn memory_entry_bytes(namespace: &str, key: &str, value: &serde_json::Value) -> u64 {
    let v = serde_json::to_vec(value).map_or(0, |b| b.len());
    (namespace.len() + key.len() + v) as u64
}

/// Which quota refused a write. The stable names ([`Quota::as_str`]) are what the API reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quota {
    /// `max_queued`: pending + failed-awaiting-retry tasks.
    QueuedTasks,
    /// `submit_rate`: the token bucket on submissions.
    SubmitRate,
    /// `memory_keys`: live shared-memory keys.
    MemoryKeys,
    /// `memory_bytes`: bytes of live shared-memory entries.
    MemoryBytes,
}

impl Quota {
    pub const ALL: [Quota; 4] = [
        Quota::QueuedTasks,
        Quota::SubmitRate,
        Quota::MemoryKeys,
        Quota::MemoryBytes,
    ];

    /// `queued_tasks`, `submit_rate`, `memory_keys`, `memory_bytes`.
    pub fn as_str(self) -> &'static str {
        match self {
            Quota::QueuedTasks => "queued_tasks",
            Quota::SubmitRate => "submit_rate",
            Quota::MemoryKeys => "memory_keys",
            Quota::MemoryBytes => "memory_bytes",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Quota::ALL.into_iter().find(|q| q.as_str() == s)
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A write refused by a tenant's quota (`StoreError::Quota`); nothing of it was stored.
///
/// `limit` is the quota's configured value: `max_queued`, `memory_keys` or `memory_bytes`, and
/// for [`Quota::SubmitRate`] the bucket's `burst` (the most tasks that can ever be submitted at
/// once). `retry_after_ms` is set only for `SubmitRate` when waiting helps: the time until the
/// bucket holds enough tokens for the refused batch; `None` for a batch larger than `burst`
/// (it can never pass) and for every other quota (waiting alone does not free anything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaExceeded {
    pub tenant: String,
    pub quota: Quota,
    pub limit: u64,
    pub retry_after_ms: Option<u64>,
}

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let QuotaExceeded {
            tenant,
            quota,
            limit,
            retry_after_ms,
        } = self;
        match (quota, retry_after_ms) {
            (Quota::QueuedTasks, _) => write!(
                f,
                "tenant {tenant}: quota {quota} exceeded: at most {limit} tasks may be queued"
            ),
            (Quota::SubmitRate, Some(ms)) => write!(
                f,
                "tenant {tenant}: quota {quota} exceeded: submitting too fast (burst {limit}); retry in {ms} ms"
            ),
            (Quota::SubmitRate, None) => write!(
                f,
                "tenant {tenant}: quota {quota} exceeded: a batch larger than the burst of {limit} tasks can never pass; submit smaller batches"
            ),
            (Quota::MemoryKeys, _) => write!(
                f,
                "tenant {tenant}: quota {quota} exceeded: at most {limit} live memory keys"
            ),
            (Quota::MemoryBytes, _) => write!(
                f,
                "tenant {tenant}: quota {quota} exceeded: at most {limit} bytes of live memory"
            ),
        }
    }
}

impl std::error::Error for QuotaExceeded {}

/// Fair claims count virtual time in integer units: each task claimed for a tenant advances its
/// virtual time by [`vtime_step`]`(weight)` = `VTIME_UNIT / weight` (exact for every weight
/// dividing 720720, i.e. 1..=16 and many more). Every backend uses these so they agree exactly.
pub const VTIME_UNIT: i64 = 720_720_000;

/// Virtual time one claimed task costs a tenant of `weight` (a weight of 0 counts as 1).
pub fn vtime_step(weight: u32) -> i64 {
    VTIME_UNIT / i64::from(weight.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_refills_to_its_burst_and_says_when_to_retry() {
        let r = RateLimit {
            per_second: 4,
            burst: 10,
        };
        assert_eq!(r.refill(0, 250), 1_000);
        assert_eq!(r.refill(9_500, 10_000), 10_000);
        assert_eq!(r.refill(2_000, -5), 2_000);
        assert_eq!(r.take(3_000, 3), Ok(0));
        assert_eq!(r.take(2_000, 3), Err(Some(250)));
        assert_eq!(r.take(2_999, 3), Err(Some(1)));
        assert_eq!(r.take(10_000, 11), Err(None));
    }

    #[test]
    fn quota_names_are_stable_and_messages_name_them() {
        let names: Vec<&str> = Quota::ALL.iter().map(|q| q.as_str()).collect();
        assert_eq!(
            names,
            ["queued_tasks", "submit_rate", "memory_keys", "memory_bytes"]
        );
        assert!(
            Quota::ALL
                .iter()
                .all(|q| Quota::parse(q.as_str()) == Some(*q))
        );
        let e = QuotaExceeded {
            tenant: "acme".into(),
            quota: Quota::SubmitRate,
            limit: 5,
            retry_after_ms: None,
        };
        assert!(e.to_string().contains("never pass"), "{e}");
        assert!(e.to_string().contains("submit_rate"), "{e}");
    }

    #[test]
    fn vtime_steps_are_exact_for_small_weights() {
        assert_eq!(vtime_step(1), VTIME_UNIT);
        assert_eq!(vtime_step(3) * 3, VTIME_UNIT);
        assert_eq!(vtime_step(0), VTIME_UNIT);
        assert_eq!(vtime_step(1000), 720_720);
    }
}
