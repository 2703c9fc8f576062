//! The documented range of every number and size a client or plugin controls, declared once.
//!
//! The API refuses a value outside its range with a 400 naming the field and the range; every
//! backend refuses it too (`StoreError::Invalid`), so no backend ever stores a value another
//! could not represent or that maintenance could not process (a deadline past `i64`, a TTL that
//! overflows the clock). The conformance suite checks each range at its extremes on every
//! backend. The README's "Limits" table lists the same figures; change both together.

use std::fmt;

/// An inclusive range of a numeric field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// The field's name as clients spell it (`timeout_ms`, `ttl_ms`, ...).
    pub field: &'static str,
    pub min: i64,
    pub max: i64,
}

impl Range {
    const fn new(field: &'static str, min: i64, max: i64) -> Range {
        Range { field, min, max }
    }

    /// `Ok` when `value` is inside the range.
    pub fn check(&self, value: i128) -> Result<(), RangeError> {
        if value < self.min as i128 || value > self.max as i128 {
            return Err(RangeError {
                field: self.field,
                value,
                min: self.min,
                max: self.max,
            });
        }
        Ok(())
    }

    /// Checks an unsigned value.
    pub fn check_u64(&self, value: u64) -> Result<(), RangeError> {
        self.check(value as i128)
    }
}

/// A value outside its documented range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeError {
    pub field: &'static str,
    pub value: i128,
    pub min: i64,
    pub max: i64,
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = {} is out of range: allowed {}..={}",
            self.field, self.value, self.min, self.max
        )
    }
}

impl std::error::Error for RangeError {}

const DAY_MS: i64 = 86_400_000;

/// Task priority: higher runs first.
pub const PRIORITY: Range = Range::new("priority", -1_000_000, 1_000_000);
/// Retries after the first attempt.
pub const MAX_RETRIES: Range = Range::new("max_retries", 0, 100);
/// Per-task deadline (one week at most).
pub const TASK_TIMEOUT_MS: Range = Range::new("timeout_ms", 1, 7 * DAY_MS);
/// Shared-memory entry time to live (one year at most).
pub const MEMORY_TTL_MS: Range = Range::new("ttl_ms", 1, 365 * DAY_MS);
/// Compare-and-set version (fits every backend's signed 64-bit column).
pub const MEMORY_VERSION: Range = Range::new("expected_version", 0, i64::MAX);
/// A client-supplied last-write-wins timestamp: ms since the epoch, up to year 9999.
pub const TIMESTAMP_MS: Range = Range::new("timestamp", 0, 253_402_300_799_999);
/// Lock time to live (one day at most).
pub const LOCK_TTL_MS: Range = Range::new("ttl_ms", 1, DAY_MS);
/// Task lease length a worker asks for (one hour at most).
pub const LEASE_MS: Range = Range::new("lease_ms", 100, 3_600_000);
/// Items on one page of a list endpoint.
pub const LIST_LIMIT: Range = Range::new("limit", 1, 1_000);
/// Tasks in one submission.
pub const BATCH_TASKS: Range = Range::new("tasks", 1, 10_000);
/// Task types one claim names (a host's plugins): each is one index probe per tenant served.
pub const CLAIM_TASK_TYPES: Range = Range::new("task_types", 0, 1_000);

/// A tenant's fair-share weight.
pub const TENANT_WEIGHT: Range = Range::new("weight", 1, 1_000);
/// Quota on a tenant's queued (pending + failed-awaiting-retry) tasks; 0 refuses every submit.
pub const QUOTA_MAX_QUEUED: Range = Range::new("max_queued", 0, 100_000_000);
/// Quota on a tenant's running tasks, fleet-wide; 0 stops its claims.
pub const QUOTA_MAX_RUNNING: Range = Range::new("max_running", 0, 1_000_000);
/// Quota on a tenant's live shared-memory keys.
pub const QUOTA_MEMORY_KEYS: Range = Range::new("memory_keys", 0, 100_000_000);
/// Quota on a tenant's live shared-memory bytes (1 TiB at most).
pub const QUOTA_MEMORY_BYTES: Range = Range::new("memory_bytes", 0, 1 << 40);
/// Submit-rate token bucket: refill, tasks per second.
pub const RATE_PER_SECOND: Range = Range::new("per_second", 1, 100_000);
/// Submit-rate token bucket: capacity, tasks.
pub const RATE_BURST: Range = Range::new("burst", 1, 1_000_000);

/// Longest id, task type, tenant, worker id or lock key (bytes).
pub const MAX_NAME_BYTES: usize = 128;
/// Longest shared-memory key (bytes).
pub const MAX_MEMORY_KEY_BYTES: usize = 512;
/// Most metadata entries on one task.
pub const MAX_METADATA_ENTRIES: usize = 64;
/// Most entries in `depends_on` or `excluded_workers`.
pub const MAX_REFERENCES: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_accepts_its_extremes_and_refuses_one_past_them() {
        assert!(TASK_TIMEOUT_MS.check(1).is_ok());
        assert!(TASK_TIMEOUT_MS.check(7 * DAY_MS as i128).is_ok());
        let e = TASK_TIMEOUT_MS.check(0).unwrap_err();
        assert_eq!(e.field, "timeout_ms");
        assert!(TASK_TIMEOUT_MS.check_u64(u64::MAX).is_err());
        assert!(MEMORY_VERSION.check_u64(i64::MAX as u64).is_ok());
        assert!(MEMORY_VERSION.check_u64(i64::MAX as u64 + 1).is_err());
        assert_eq!(
            MEMORY_TTL_MS.check(0).unwrap_err().to_string(),
            "ttl_ms = 0 is out of range: allowed 1..=31536000000"
        );
    }
}
