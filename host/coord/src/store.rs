//! The store contract: the only way coordination touches persistence. Every backend (embedded
//! SQLite here; PostgreSQL and GitHub later) implements [`Store`] and must pass
//! [`crate::conformance`]. Nothing above this trait may know which backend it runs on, and a
//! backend must never read time except through its injected [`crate::clock::Clock`].
//!
//! Tenancy: every lock, memory key and task carries a tenant. Workers are fleet-wide.
//! Maintenance operations (stale cleanup, worker recovery, reaping) span all tenants.

use async_trait::async_trait;
use tokio::sync::watch;

use crate::error::{LockError, StoreError};
use crate::model::*;

pub type StoreResult<T> = Result<T, StoreError>;

/// What a change notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Tasks became (possibly) claimable: submitted, retried, requeued.
    Tasks,
    /// The memory change log grew.
    Memory,
}

#[async_trait]
pub trait LockStore: Send + Sync {
    /// Grants the lock if it is free or expired, with a fresh fencing token; `None` if another
    /// unexpired grant holds it (including one held by the same owner: locks are not reentrant).
    /// A `ttl_ms` outside [`crate::model::limits::LOCK_TTL_MS`] is `StoreError::Invalid` (also on
    /// renew).
    async fn acquire_lock(&self, req: &LockRequest) -> StoreResult<Option<Lock>>;
    /// Ends the grant `(owner, token)`. `NotFound` if no lock, `InvalidOwner` if held by another
    /// owner or grant, `Expired` if this grant's TTL has passed.
    async fn release_lock(
        &self,
        tenant: &str,
        key: &str,
        owner: &str,
        token: u64,
    ) -> Result<(), LockError>;
    /// Extends the grant to `now + ttl_ms`, keeping its token. Same errors as release.
    async fn renew_lock(
        &self,
        tenant: &str,
        key: &str,
        owner: &str,
        token: u64,
        ttl_ms: u64,
    ) -> Result<Lock, LockError>;
    /// The unexpired grant, if any.
    async fn get_lock(&self, tenant: &str, key: &str) -> StoreResult<Option<Lock>>;
    /// Ordered by (tenant, key).
    async fn list_locks(&self, filter: &LockFilter) -> StoreResult<Vec<Lock>>;
    /// Deletes expired grants; returns how many.
    async fn cleanup_stale_locks(&self) -> StoreResult<u64>;
    /// Deletes every grant held by `owner` in every tenant; returns how many.
    async fn release_owner_locks(&self, owner: &str) -> StoreResult<u64>;
}

#[async_trait]
pub trait RegistryStore: Send + Sync {
    /// Inserts or replaces the worker: status active, registered and heartbeat now, stats kept
    /// if it was already known, incarnation and thresholds as announced. In the same
    /// transaction, every task of this worker id still running under another incarnation is
    /// requeued at once (dead if out of attempts), its error naming the restart: that process is
    /// gone, and its leases with it.
    async fn register_worker(&self, reg: &WorkerRegistration) -> StoreResult<WorkerRecord>;
    /// `false` if unknown.
    async fn deregister_worker(&self, worker_id: &str) -> StoreResult<bool>;
    /// `false` if unknown, or if `incarnation` is given and is not the registered one (a
    /// replaced process must not overwrite its successor). `None` is an operator's update.
    async fn update_worker_status(
        &self,
        worker_id: &str,
        incarnation: Option<u64>,
        status: WorkerStatus,
        capacity: Option<&CapacityUpdate>,
    ) -> StoreResult<bool>;
    /// Sets the heartbeat to now and stores the health data; an offline worker that heartbeats
    /// is evidently alive and becomes active again. `false` (and nothing changes) if unknown or
    /// if `incarnation` is not the registered one: a replaced process cannot revive the record.
    async fn record_heartbeat(
        &self,
        worker_id: &str,
        incarnation: u64,
        info: &HeartbeatInfo,
    ) -> StoreResult<bool>;
    /// `false` if unknown.
    async fn record_task_outcome(
        &self,
        worker_id: &str,
        success: bool,
        duration_ms: u64,
    ) -> StoreResult<bool>;
    async fn get_worker(&self, worker_id: &str) -> StoreResult<Option<WorkerRecord>>;
    /// Every worker, ordered by id. Filtering happens above (see [`WorkerFilter::matches`]).
    async fn list_workers(&self) -> StoreResult<Vec<WorkerRecord>>;
    /// Marks offline every non-offline worker whose heartbeat is at least its own
    /// [`WorkerRecord::stale_after_ms`]`(floor_ms)` old (its announced threshold, at least two of
    /// its heartbeat intervals and at least `floor_ms`); returns their ids (sorted). A record
    /// that cannot be decoded is skipped (and logged), never fails the sweep.
    async fn mark_stale_workers(&self, floor_ms: i64) -> StoreResult<Vec<String>>;
}

#[async_trait]
pub trait MemoryStore: Send + Sync {
    /// Applies the write under compare-and-set or last-write-wins (see [`MemoryWrite`]) and, if
    /// written, appends a `Set` change in the same transaction.
    async fn memory_set(&self, write: &MemoryWrite) -> StoreResult<WriteOutcome>;
    /// The live entry (not deleted, not expired).
    async fn memory_get(
        &self,
        tenant: &str,
        namespace: &str,
        key: &str,
    ) -> StoreResult<Option<MemoryEntry>>;
    /// Deletes a live entry, appending a `Delete` change; `false` if there was none.
    async fn memory_delete(
        &self,
        tenant: &str,
        namespace: &str,
        key: &str,
        writer: &str,
    ) -> StoreResult<bool>;
    /// Live entries whose key starts with `prefix` and is greater than `after` (a page cursor:
    /// the last key of the previous page), ordered by key, at most `limit`.
    async fn memory_list(
        &self,
        tenant: &str,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<MemoryEntry>>;
    /// Keys of live entries starting with `prefix` and greater than `after` (a page cursor: the
    /// last key of the previous page), ordered, at most `limit`. Values are not loaded.
    async fn memory_list_keys(
        &self,
        tenant: &str,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<String>>;
    /// The sequence number of the latest change (0 if none). Changes after it are "new".
    async fn memory_seq(&self) -> StoreResult<u64>;
    /// Changes with `seq > after`, in order, at most `limit`; `tenant = None` means all tenants.
    async fn memory_changes(
        &self,
        tenant: Option<&str>,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<ChangeEvent>>;
    /// Turns expired entries into deletions, appending `Expire` changes; returns how many. An
    /// entry that cannot be decoded is skipped (and logged), never fails the sweep.
    async fn memory_purge_expired(&self) -> StoreResult<u64>;
    /// Drops change-log entries older than `before_ms`; returns how many.
    async fn memory_prune_changes(&self, before_ms: i64) -> StoreResult<u64>;
}

#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Inserts all tasks in one transaction or none; returns their ids in order. Unknown
    /// dependencies and numbers outside [`crate::model::limits`] are `StoreError::Invalid`; a task whose dependency is already dead or
    /// cancelled is inserted dead.
    async fn enqueue(&self, tasks: &[NewTask]) -> StoreResult<Vec<String>>;
    /// Atomically leases up to `limit` claimable tasks to the worker: pending, or failed with
    /// `run_at` reached; every dependency completed; affinity satisfied; highest priority first,
    /// FIFO within a priority. Each claim increments `attempt` and `fence`; the lease belongs
    /// to `req.incarnation`. A `lease_ms` outside its range is `StoreError::Invalid`.
    async fn claim(&self, req: &ClaimRequest) -> StoreResult<Vec<Task>>;
    /// Extends a running task's lease if `fence` is current; returns the new expiry.
    async fn renew_lease(
        &self,
        task_id: &str,
        fence: u64,
        lease_ms: u64,
    ) -> StoreResult<Result<i64, Rejection>>;
    /// Extends the lease of every task the worker's `incarnation` is running (heartbeat
    /// piggyback); tasks claimed by another incarnation of the same id are left alone.
    async fn extend_worker_leases(
        &self,
        worker_id: &str,
        incarnation: u64,
        lease_ms: u64,
    ) -> StoreResult<u64>;
    /// Records outputs, one settlement per completion, all in one transaction. Only a running
    /// task with the presented fence completes. Updates the worker's stats.
    async fn complete(&self, completions: &[Completion]) -> StoreResult<Vec<Settlement>>;
    /// Records failures: retry with backoff from `policy` while `attempt <= max_retries` and the
    /// failure is retryable, else dead (dependents fail fast to dead). Updates worker stats.
    async fn fail(
        &self,
        failures: &[Failure],
        policy: &RetryPolicy,
    ) -> StoreResult<Vec<Settlement>>;
    /// Pending, failed or running → cancelled (a running worker's completion is then refused);
    /// dependents become dead. `false` if not found in the tenant or already terminal.
    async fn cancel(&self, tenant: &str, task_id: &str) -> StoreResult<bool>;
    /// Dead → pending with attempts reset. `false` if not found in the tenant or not dead.
    async fn retry_dead(&self, tenant: &str, task_id: &str) -> StoreResult<bool>;
    async fn get_task(&self, tenant: &str, task_id: &str) -> StoreResult<Option<Task>>;
    /// Ordered by priority (desc) then submission order.
    async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<Vec<Task>>;
    async fn queue_stats(&self, tenant: Option<&str>) -> StoreResult<QueueStats>;
    /// Puts every task the worker is running back to pending (dead if out of attempts); returns
    /// how many were touched.
    async fn requeue_worker_tasks(&self, worker_id: &str) -> StoreResult<u64>;
    /// Running tasks whose lease expired are requeued; those past their deadline fail (retry or
    /// dead per `policy`). A task that cannot be decoded is skipped (and logged), never fails the
    /// sweep for the others.
    async fn reap_expired(&self, policy: &RetryPolicy) -> StoreResult<ReapReport>;
}

/// The whole contract, usable as `Arc<dyn Store>`.
#[async_trait]
pub trait Store:
    LockStore + RegistryStore + MemoryStore + QueueStore + Send + Sync + 'static
{
    /// Milliseconds since the Unix epoch on the store's clock.
    async fn now(&self) -> StoreResult<i64>;
    /// A counter bumped whenever `topic` may have changed, by this process or (within a few ms)
    /// by any other process sharing the backend. Await `changed()` instead of polling.
    fn subscribe(&self, topic: Topic) -> watch::Receiver<u64>;
    /// A short name for logs ("sqlite", "postgres", ...).
    fn backend_name(&self) -> &'static str;
}
