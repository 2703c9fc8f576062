//! The store contract: the only way coordination touches persistence. Every backend (embedded
//! SQLite here; PostgreSQL and GitHub later) implements [`Store`] and must pass
//! [`crate::conformance`]. Nothing above this trait may know which backend it runs on, and a
//! backend must never read time except through its injected [`crate::clock::Clock`].
//!
//! Tenancy: every lock, memory key and task carries a tenant, and a task's identity is
//! `(tenant, id)`: the same id may live in two tenants, and everything addressed by id (settling,
//! renewing, dependencies, affinity, listing cursors) names the tenant too. Workers are
//! fleet-wide. Maintenance operations (stale cleanup, worker recovery, reaping) span all tenants.
//! Tenant settings ([`TenantStore`]) give each tenant a fair-share weight and quotas; the store
//! enforces them in the same transaction as the write they limit (exactly, even with several
//! processes sharing the backend), and refuses with [`StoreError::Quota`].

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
    /// owner or grant, or if the grant was made with a holder secret and `proof` is not that
    /// secret ([`holder_proven`]: the lock stays held), `Expired` if this grant's TTL has passed.
    /// The store keeps only the secret's digest (and a grant's digest is never returned).
    async fn release_lock(
        &self,
        tenant: &str,
        key: &str,
        owner: &str,
        token: u64,
        proof: Option<&HolderSecret>,
    ) -> Result<(), LockError>;
    /// Extends the grant to `now + ttl_ms`, keeping its token. Same errors as release; the
    /// returned lock carries `proof` as its `holder_secret`.
    async fn renew_lock(
        &self,
        tenant: &str,
        key: &str,
        owner: &str,
        token: u64,
        ttl_ms: u64,
        proof: Option<&HolderSecret>,
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
    ///
    /// Quotas (only for a write that would be applied, i.e. not superseded nor mismatched, and
    /// only when the tenant has the quota): a write that creates a key (absent, deleted or
    /// expired) when the tenant already has `memory_keys` live keys fails with
    /// `StoreError::Quota` [`Quota::MemoryKeys`]; a write after which the tenant's live bytes
    /// ([`memory_entry_bytes`]; replacing a value counts the difference) would exceed
    /// `memory_bytes` fails with [`Quota::MemoryBytes`] (keys are checked first). `limit` is the
    /// quota, `retry_after_ms` is `None`. Expired entries never count. Nothing is written.
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
    /// Inserts all tasks in one transaction or none; returns their ids in order. Ids are unique
    /// per tenant: an id already used in the task's tenant (or twice in the batch for one
    /// tenant) is `StoreError::Invalid`; the same id in another tenant is a different task.
    /// `depends_on` and `same_worker_as` name tasks of the task's own tenant (an id that exists
    /// only in another tenant is an unknown dependency, `StoreError::Invalid`). Numbers outside
    /// [`crate::model::limits`] are `StoreError::Invalid` (checked before anything else); a
    /// task whose dependency is already dead or cancelled is inserted dead.
    ///
    /// Quotas, checked for each tenant present in the batch, in ascending tenant name order,
    /// before anything is inserted; the first refusal fails the whole batch
    /// (`StoreError::Quota`, nothing stored, no token taken). With `n` = the batch's task count
    /// for that tenant:
    /// 1. `submit_rate`: the tenant's token bucket (persisted in the store, on the store's
    ///    clock, see [`RateLimit::refill`]/[`RateLimit::take`]; a bucket starts full) must hold
    ///    `n` tokens, which are taken; else [`Quota::SubmitRate`] with `limit` = `burst` and
    ///    `retry_after_ms` = the time until `n` tokens are there, or `None` if `n > burst`.
    /// 2. `max_queued`: `queued + n > max_queued` (queued = pending + failed tasks) is
    ///    [`Quota::QueuedTasks`] with `limit` = `max_queued`, `retry_after_ms: None`.
    ///
    /// Fairness bookkeeping: a tenant that had no queued task before this batch becomes
    /// backlogged, and its virtual time (see [`QueueStore::claim`]) is raised to at least one
    /// below the minimum virtual time of the other backlogged tenants (so it wins that tie
    /// once, whatever the names: a light tenant is served next, not after the flooder), or, if
    /// no other tenant is backlogged, to the store's virtual clock; a tenant seen for the first
    /// time starts there.
    /// Idleness banks no credit.
    async fn enqueue(&self, tasks: &[NewTask]) -> StoreResult<Vec<String>>;
    /// Atomically leases up to `limit` claimable tasks to the worker: pending, or failed with
    /// `run_at` reached; every dependency completed; affinity satisfied; tenant and task type
    /// allowed by the request's filters. Each claim increments `attempt` and `fence`; the lease
    /// belongs to `req.incarnation`. A `lease_ms` outside its range is `StoreError::Invalid`.
    /// One transaction per batch; concurrent claims never hand out a task twice.
    ///
    /// Fair between tenants by weight (start-time fair queuing): each tenant has a persisted
    /// virtual time (integer, starting as described in [`QueueStore::enqueue`]); the batch is
    /// built by repeatedly taking, among the tenants that still have a claimable task for this
    /// request, the one with the lowest virtual time (ties: tenant name ascending), and from it
    /// its best claimable task: highest priority first, then submission order (priority never
    /// crosses tenants). Each task taken advances that tenant's virtual time by
    /// [`vtime_step`]`(weight)` (weight 1 without settings) and sets the store's virtual clock
    /// to the largest virtual time a task was taken at (before the advance). A tenant whose
    /// running tasks (fleet-wide, including those taken in this batch) reach `max_running` is
    /// skipped, without error. Cost: O(active tenants × log n + batch), never a scan of the
    /// backlog.
    async fn claim(&self, req: &ClaimRequest) -> StoreResult<Vec<Task>>;
    /// Extends the lease of the running task `(tenant, task_id)` if `fence` is current; returns
    /// the new expiry, or why not (`NotFound` if the tenant has no such task).
    async fn renew_lease(
        &self,
        tenant: &str,
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
    /// task `(c.tenant, c.task_id)` with the presented fence completes (`NotFound` if the tenant
    /// has no such task). Updates the worker's stats.
    async fn complete(&self, completions: &[Completion]) -> StoreResult<Vec<Settlement>>;
    /// Records failures of the tasks `(f.tenant, f.task_id)`: retry with backoff from `policy`
    /// while `attempt <= max_retries` and the failure is retryable, else dead (dependents, in
    /// the same tenant, fail fast to dead). Updates worker stats.
    async fn fail(
        &self,
        failures: &[Failure],
        policy: &RetryPolicy,
    ) -> StoreResult<Vec<Settlement>>;
    /// Gives back claims their worker never started (its local buffer, emptied at shutdown or
    /// when a task waited too long for a slot): each task `(c.tenant, c.task_id)` still running
    /// under `c.fence` becomes pending at once, with the attempt the claim counted taken back,
    /// no worker and no lease, in its old place in the queue. Its fence stays advanced, so the
    /// released claim can settle nothing. Anything else (settled, cancelled, reclaimed) is left
    /// alone. One transaction; returns how many were given back, and wakes task subscribers.
    async fn release_claims(&self, claims: &[TaskClaim]) -> StoreResult<u64>;
    /// Pending, failed or running → cancelled (a running worker's completion is then refused);
    /// dependents become dead. `false` if not found in the tenant or already terminal.
    async fn cancel(&self, tenant: &str, task_id: &str) -> StoreResult<bool>;
    /// Dead → pending with attempts reset. `false` if not found in the tenant or not dead (or a
    /// dependency is dead or cancelled). If the tenant has `max_queued` and is at it,
    /// `StoreError::Quota` [`Quota::QueuedTasks`] and nothing changes. A revival that makes the
    /// tenant backlogged raises its virtual time as [`QueueStore::enqueue`] does.
    async fn retry_dead(&self, tenant: &str, task_id: &str) -> StoreResult<bool>;
    async fn get_task(&self, tenant: &str, task_id: &str) -> StoreResult<Option<Task>>;
    /// Ordered by `filter.order` (see [`TaskFilter`]); `filter.after` is a [`TaskKey`] cursor.
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

/// Tenant settings: fair-share weight and quotas. A tenant without settings has weight 1 and no
/// quota, and pays nothing extra on any hot path (no row lock, no count).
#[async_trait]
pub trait TenantStore: Send + Sync {
    /// Inserts or replaces the tenant's settings (hosts call it at start with their
    /// configuration). Settings outside their ranges ([`TenantSettings::validate`]) are
    /// `StoreError::Invalid` and nothing changes. Takes effect for the next write or claim:
    /// data already above a lowered quota stays, only new writes are refused. The tenant's
    /// virtual time and submit-rate bucket survive: the bucket's tokens are clamped to the new
    /// `burst`; a bucket that did not exist (no rate before) starts full.
    async fn put_tenant(&self, settings: &TenantSettings) -> StoreResult<()>;
    /// The stored settings; `None` if `put_tenant` was never called for the tenant (it then
    /// behaves as [`TenantSettings::new`]).
    async fn get_tenant(&self, tenant: &str) -> StoreResult<Option<TenantSettings>>;
    /// What the tenant currently uses of what quotas limit, exactly (expired memory entries
    /// excluded), whether or not it has settings. A reporting read: it may cost O(the tenant's
    /// queued and running tasks and live memory keys), unlike the quota checks.
    async fn tenant_usage(&self, tenant: &str) -> StoreResult<TenantUsage>;
}

/// The whole contract, usable as `Arc<dyn Store>`.
#[async_trait]
pub trait Store:
    LockStore + RegistryStore + MemoryStore + QueueStore + TenantStore + Send + Sync + 'static
{
    /// Milliseconds since the Unix epoch on the store's clock.
    async fn now(&self) -> StoreResult<i64>;
    /// A counter bumped whenever `topic` may have changed, by this process or (within a few ms)
    /// by any other process sharing the backend. Await `changed()` instead of polling.
    fn subscribe(&self, topic: Topic) -> watch::Receiver<u64>;
    /// A short name for logs ("sqlite", "postgres", ...).
    fn backend_name(&self) -> &'static str;
}
