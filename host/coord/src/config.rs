//! Configuration of the managers, with the seeds' defaults (seed 001 `distributed.*` keys and
//! seed 002 `defaultRetryPolicy`). Plain data, deserialisable from the host's config file; it
//! never reads the environment itself.

use serde::{Deserialize, Serialize};

use crate::model::{DEFAULT_TASK_TIMEOUT_MS, DEFAULT_TENANT, HealthThresholds, RetryPolicy};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LockConfig {
    pub ttl_seconds: u64,
    pub retry_attempts: u32,
    pub retry_delay_ms: u64,
    pub cleanup_interval_ms: u64,
}

impl Default for LockConfig {
    fn default() -> Self {
        Self {
            ttl_seconds: 300,
            retry_attempts: 3,
            retry_delay_ms: 1000,
            cleanup_interval_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryConfig {
    pub health: HealthThresholds,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HeartbeatConfig {
    pub interval_ms: u64,
    /// Seed default 120 s. A worker whose heartbeat is this old is declared dead.
    pub stale_threshold_ms: u64,
    /// How often the elected maintenance worker looks for stale workers and expired leases.
    pub check_interval_ms: u64,
    pub recovery_enabled: bool,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            interval_ms: 30_000,
            stale_threshold_ms: 120_000,
            check_interval_ms: 60_000,
            recovery_enabled: true,
        }
    }
}

impl HeartbeatConfig {
    /// Intervals suited to fast failover: a killed worker's tasks run again within
    /// `2 * interval + check` = 3 s.
    pub fn fast(interval_ms: u64) -> Self {
        Self {
            interval_ms,
            stale_threshold_ms: 2 * interval_ms,
            check_interval_ms: interval_ms,
            recovery_enabled: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    pub retry: RetryPolicy,
    pub default_timeout_ms: u64,
    /// Lease granted on claim; heartbeats extend it, so it only runs out when a worker dies.
    pub lease_ms: u64,
    /// Upper bound on how long an idle worker sleeps without a notification (retry backoffs end
    /// without one).
    pub idle_poll_ms: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            default_timeout_ms: DEFAULT_TASK_TIMEOUT_MS,
            lease_ms: 120_000,
            idle_poll_ms: 250,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryConfig {
    pub cache_size: usize,
    /// Fallback poll of the change log when no notification arrives.
    pub poll_interval_ms: u64,
    /// How long change-log entries are kept for watchers that resume.
    pub change_retention_ms: i64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            cache_size: 1000,
            poll_interval_ms: 1000,
            change_retention_ms: 3_600_000,
        }
    }
}

/// Everything, as one section of the host's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CoordConfig {
    pub tenant: String,
    pub locking: LockConfig,
    pub registry: RegistryConfig,
    pub heartbeat: HeartbeatConfig,
    pub queue: QueueConfig,
    pub memory_sync: MemoryConfig,
}

impl Default for CoordConfig {
    fn default() -> Self {
        Self {
            tenant: DEFAULT_TENANT.to_string(),
            locking: LockConfig::default(),
            registry: RegistryConfig::default(),
            heartbeat: HeartbeatConfig::default(),
            queue: QueueConfig::default(),
            memory_sync: MemoryConfig::default(),
        }
    }
}
