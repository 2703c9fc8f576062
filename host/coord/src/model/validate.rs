//! Range checks of every client-controlled number, against the figures declared in
//! [`super::limits`]. Each backend calls these at the top of the operation, before storing
//! anything, so every backend refuses the same values with the same message
//! (`StoreError::Invalid` naming the field and its range); the managers and the API call them too.

use super::limits::{self, RangeError};
use super::{ClaimRequest, LockRequest, MemoryWrite, NewTask};
use crate::error::StoreError;

impl From<RangeError> for StoreError {
    fn from(e: RangeError) -> Self {
        StoreError::Invalid(e.to_string())
    }
}

impl From<super::TenantSettingsError> for StoreError {
    fn from(e: super::TenantSettingsError) -> Self {
        StoreError::Invalid(e.to_string())
    }
}

impl NewTask {
    /// `priority`, `max_retries` and `timeout_ms` inside their documented ranges.
    pub fn validate(&self) -> Result<(), RangeError> {
        limits::PRIORITY.check(self.priority as i128)?;
        if let Some(n) = self.max_retries {
            limits::MAX_RETRIES.check(n as i128)?;
        }
        if let Some(ms) = self.timeout_ms {
            limits::TASK_TIMEOUT_MS.check_u64(ms)?;
        }
        Ok(())
    }
}

impl MemoryWrite {
    /// `ttl_ms`, `expected_version` and `timestamp` inside their documented ranges.
    pub fn validate(&self) -> Result<(), RangeError> {
        if let Some(ms) = self.ttl_ms {
            limits::MEMORY_TTL_MS.check_u64(ms)?;
        }
        if let Some(v) = self.expected_version {
            limits::MEMORY_VERSION.check_u64(v)?;
        }
        if let Some(ts) = self.timestamp {
            limits::TIMESTAMP_MS.check(ts as i128)?;
        }
        Ok(())
    }
}

impl LockRequest {
    /// `ttl_ms` inside [`limits::LOCK_TTL_MS`].
    pub fn validate(&self) -> Result<(), RangeError> {
        validate_lock_ttl(self.ttl_ms)
    }
}

impl ClaimRequest {
    /// `lease_ms` inside [`limits::LEASE_MS`], at most [`limits::CLAIM_TASK_TYPES`] task types.
    pub fn validate(&self) -> Result<(), RangeError> {
        validate_lease(self.lease_ms)?;
        let types = self.task_types.as_ref().map_or(0, Vec::len);
        limits::CLAIM_TASK_TYPES.check(types as i128)
    }
}

/// A lock TTL (acquire and renew).
pub fn validate_lock_ttl(ttl_ms: u64) -> Result<(), RangeError> {
    limits::LOCK_TTL_MS.check_u64(ttl_ms)
}

/// A task lease length (claim, renewal, heartbeat extension).
pub fn validate_lease(lease_ms: u64) -> Result<(), RangeError> {
    limits::LEASE_MS.check_u64(lease_ms)
}

/// Every task of a batch; the error names the first bad field.
pub fn validate_tasks(tasks: &[NewTask]) -> Result<(), RangeError> {
    tasks.iter().try_for_each(NewTask::validate)
}

/// `now + ms` on the store's clock, saturating: the one way backends compute an expiry, so no
/// stored or requested duration can overflow it.
pub fn expiry(now: i64, ms: u64) -> i64 {
    now.saturating_add(ms.min(i64::MAX as u64) as i64)
}
