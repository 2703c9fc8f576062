//! Error types with the seeds' semantics: lock errors carry a code (`LOCK_EXPIRED`,
//! `INVALID_OWNER`, `NOT_FOUND`, ...), worker errors the worker id, sync errors the namespace, and
//! [`StoreError`] separates "the backend is unavailable, try again" from everything else so callers
//! can branch. This module defines errors only; it never decides policy.

use thiserror::Error;

pub use crate::model::{Quota, QuotaExceeded};

/// A failure of the persistence backend itself.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Transient: busy, locked, connection lost, timed out. Retrying later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The caller asked for something the contract forbids (unknown dependency, bad argument).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Stored data could not be decoded.
    #[error("corrupt data in store: {0}")]
    Corrupt(String),
    /// Any other backend failure; retrying is unlikely to help.
    #[error("store backend error: {0}")]
    Backend(String),
    /// A tenant's quota refused the write; nothing of it was stored (see [`QuotaExceeded`]).
    #[error("{0}")]
    Quota(QuotaExceeded),
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// The quota refusal, if this is one.
    pub fn quota(&self) -> Option<&QuotaExceeded> {
        match self {
            StoreError::Quota(q) => Some(q),
            _ => None,
        }
    }
}

/// Lock failures, each with the seed's error code (see [`LockError::code`]).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LockError {
    #[error("lock {key} has expired")]
    Expired { key: String },
    #[error("lock {key} is not held by {owner} with that token")]
    InvalidOwner { key: String, owner: String },
    #[error("lock {key} does not exist")]
    NotFound { key: String },
    #[error("lock {key} could not be acquired after {attempts} attempts")]
    AcquireFailed { key: String, attempts: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LockError {
    pub fn code(&self) -> &'static str {
        match self {
            LockError::Expired { .. } => "LOCK_EXPIRED",
            LockError::InvalidOwner { .. } => "INVALID_OWNER",
            LockError::NotFound { .. } => "NOT_FOUND",
            LockError::AcquireFailed { .. } => "ACQUIRE_FAILED",
            LockError::Store(_) => "STORE_ERROR",
        }
    }
}

/// Worker registry failures, always naming the worker.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WorkerError {
    #[error("worker {worker_id} not found")]
    NotFound { worker_id: String },
    #[error("worker {worker_id}: {message}")]
    Invalid { worker_id: String, message: String },
    #[error("worker {worker_id}: {source}")]
    Store {
        worker_id: String,
        #[source]
        source: StoreError,
    },
}

impl WorkerError {
    pub fn worker_id(&self) -> &str {
        match self {
            WorkerError::NotFound { worker_id }
            | WorkerError::Invalid { worker_id, .. }
            | WorkerError::Store { worker_id, .. } => worker_id,
        }
    }
}

/// Memory sync failures, always naming the namespace.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SyncError {
    #[error("namespace {namespace}: version conflict on {key} (current {current:?})")]
    VersionConflict {
        namespace: String,
        key: String,
        current: Option<u64>,
    },
    #[error("namespace {namespace}: write to {key} superseded by a newer write")]
    Superseded { namespace: String, key: String },
    #[error("namespace {namespace}: {message}")]
    Invalid { namespace: String, message: String },
    #[error("namespace {namespace}: value is not valid JSON for this type: {message}")]
    Decode { namespace: String, message: String },
    #[error("namespace {namespace}: {source}")]
    Store {
        namespace: String,
        #[source]
        source: StoreError,
    },
}

impl SyncError {
    pub fn namespace(&self) -> &str {
        match self {
            SyncError::VersionConflict { namespace, .. }
            | SyncError::Superseded { namespace, .. }
            | SyncError::Invalid { namespace, .. }
            | SyncError::Decode { namespace, .. }
            | SyncError::Store { namespace, .. } => namespace,
        }
    }
}

/// Queue failures seen by callers of [`crate::queue::Queue`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum QueueError {
    #[error("task {task_id} not found")]
    NotFound { task_id: String },
    /// The caller's fencing token is not the task's current one, or the task is no longer
    /// running: its lease was lost and its result must not be recorded.
    #[error("task {task_id}: lease lost ({reason})")]
    LeaseLost { task_id: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}
