//! [`GithubStore`]: configuration, connection and the [`Store`] impl, which only delegates to the
//! area modules (locks, registry, memory, queue). It owns the wiring and the background poller;
//! it must never contain coordination logic of its own.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use octocrab::Octocrab;
use sentinel_coord::model::*;
use sentinel_coord::{
    Clock, LockError, LockStore, MemoryStore, QueueStore, RegistryStore, Store, StoreError,
    StoreResult, TenantStore, Topic,
};
use tokio::sync::watch;

use crate::api::{Api, RetryConfig};
use crate::budget::{FleetPlan, Intervals, Limits, RateSnapshot, plan_and_warn};
use crate::doc::Doc;
use crate::git::Git;
use crate::issues::Issues;
use crate::locks::{GithubLocks, RecordTree};
use crate::memory::{GithubMemory, MEMORY_REF};
use crate::notify::{Notifier, poll_heads};
use crate::queue::{GithubQueue, QUEUE_REF};
use crate::registry::{GithubRegistry, REGISTRY_REF};
use crate::submitters::SubmitterPolicy;

/// Where and how to reach the repository.
#[derive(Debug, Clone)]
pub struct GithubConfig {
    pub owner: String,
    pub repo: String,
    /// A token with Issues RW, Contents RW, Metadata R (see README). `None`: anonymous, which
    /// GitHub refuses for every write.
    pub token: Option<String>,
    /// `https://api.github.com`, a GitHub Enterprise `https://HOST/api/v3`, or an emulator.
    pub api_base: String,
    /// Mirror tasks to issues and import issue submissions (costs about 4 writes per task).
    pub issues: bool,
    /// Whose issue submissions are imported, and in which tenant (see README, "Who may submit
    /// tasks"). Checked by [`GithubStore::open`].
    pub submitters: SubmitterPolicy,
    /// How often other processes' changes are looked for; `None` derives it from [`Self::fleet`].
    pub poll_interval: Option<Duration>,
    /// The fleet sharing this token, for interval planning and the over-budget warning.
    pub fleet: FleetPlan,
    pub limits: Limits,
    pub retry: RetryConfig,
}

impl GithubConfig {
    pub fn new(owner: impl Into<String>, repo: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            repo: repo.into(),
            token: None,
            api_base: "https://api.github.com".into(),
            issues: true,
            submitters: SubmitterPolicy::default(),
            poll_interval: None,
            fleet: FleetPlan {
                workers: 1,
                tasks_per_hour: 30,
                issues: true,
                claim_batch: 1,
            },
            limits: Limits::default(),
            retry: RetryConfig::default(),
        }
    }

    /// `github://OWNER/REPO`, with the token from `GITHUB_TOKEN` and the API base from
    /// `GITHUB_API_URL` (set by GitHub Actions, also on Enterprise) or api.github.com.
    pub fn from_url(url: &str) -> StoreResult<Self> {
        let rest = url
            .strip_prefix("github://")
            .ok_or_else(|| StoreError::Invalid(format!("{url}: expected github://OWNER/REPO")))?;
        let (owner, repo) = rest
            .trim_end_matches('/')
            .split_once('/')
            .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
            .ok_or_else(|| StoreError::Invalid(format!("{url}: expected github://OWNER/REPO")))?;
        let mut c = Self::new(owner, repo);
        c.token = std::env::var("GITHUB_TOKEN").ok().filter(|t| !t.is_empty());
        if let Ok(base) = std::env::var("GITHUB_API_URL")
            && !base.is_empty()
        {
            c.api_base = base;
        }
        Ok(c)
    }
}

pub struct Inner {
    pub(crate) api: Arc<Api>,
    pub(crate) locks: GithubLocks,
    pub(crate) registry: Arc<GithubRegistry>,
    pub(crate) memory: GithubMemory,
    pub(crate) queue: GithubQueue,
    pub(crate) notify: Arc<Notifier>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) tree: Arc<RecordTree>,
    pub(crate) import_issues: bool,
    intervals: Intervals,
}

/// The GitHub backend. Cheap to share behind `Arc<dyn Store>`.
pub struct GithubStore {
    inner: Arc<Inner>,
}

/// Builds the octocrab client. Synchronous on purpose: octocrab's builder is not `Send`, so it
/// must not live across an await.
fn client(config: &GithubConfig) -> StoreResult<Octocrab> {
    let mut b = Octocrab::builder()
        .base_uri(config.api_base.as_str())
        .map_err(|e| StoreError::Invalid(format!("API base {}: {e}", config.api_base)))?;
    if let Some(t) = &config.token {
        b = b.personal_token(t.clone());
    }
    b.build()
        .map_err(|e| StoreError::Backend(format!("GitHub client: {e}")))
}

impl GithubStore {
    /// Opens a store on `config`'s repository without any request (the first operation makes
    /// the first one), reading time only from `clock`. Must be called inside a tokio runtime:
    /// it starts the change poller. Refuses an invalid [`GithubConfig::submitters`]
    /// (`StoreError::Invalid`).
    pub fn open(config: GithubConfig, clock: Arc<dyn Clock>) -> StoreResult<Self> {
        config.submitters.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError::Backend("the GitHub store must be opened inside a tokio runtime".into())
        })?;
        let octo = client(&config)?;
        let api = Arc::new(Api::new(
            octo,
            &config.owner,
            &config.repo,
            clock.clone(),
            config.retry.clone(),
        ));
        let git = Arc::new(Git::new(api.clone()));
        let tree = Arc::new(RecordTree::new(git.clone()));
        let notify = Arc::new(Notifier::default());
        let registry = Arc::new(GithubRegistry::new(
            Doc::new(git.clone(), REGISTRY_REF),
            clock.clone(),
        ));
        let mut fleet = config.fleet;
        fleet.issues = config.issues;
        let intervals = plan_and_warn(&fleet, &config.limits);
        let inner = Arc::new(Inner {
            locks: GithubLocks::new(git.clone(), clock.clone(), tree.clone()),
            memory: GithubMemory::new(
                Doc::new(git.clone(), MEMORY_REF),
                clock.clone(),
                notify.clone(),
            ),
            queue: GithubQueue::new(
                Doc::new(git.clone(), QUEUE_REF),
                clock.clone(),
                config
                    .issues
                    .then(|| Issues::new(api.clone(), config.submitters.clone())),
                registry.clone(),
                notify.clone(),
            ),
            registry,
            notify,
            clock,
            api,
            tree,
            import_issues: config.issues,
            intervals,
        });
        let every = config.poll_interval.unwrap_or(intervals.poll);
        runtime.spawn(poll_heads(Arc::downgrade(&inner), every));
        Ok(Self { inner })
    }

    /// [`Self::open`], then one write (the record tree) so that a wrong URL, token or
    /// permission fails here rather than at the first lock.
    pub async fn connect(config: GithubConfig, clock: Arc<dyn Clock>) -> StoreResult<Self> {
        let store = Self::open(config, clock)?;
        store.inner.tree.get().await?;
        Ok(store)
    }

    /// What `--store github://OWNER/REPO` means: [`GithubConfig::from_url`] (token from
    /// `GITHUB_TOKEN`, API base from `GITHUB_API_URL`) and [`Self::open`] on the system clock.
    pub fn open_url(url: &str) -> StoreResult<Self> {
        Self::open(
            GithubConfig::from_url(url)?,
            sentinel_coord::clock::system(),
        )
    }

    /// The token's budget as GitHub last reported it.
    pub fn rate_limit(&self) -> RateSnapshot {
        self.inner.api.rate.snapshot()
    }

    /// Poll and heartbeat intervals planned for the configured fleet.
    pub fn intervals(&self) -> Intervals {
        self.inner.intervals
    }

    /// Imports people's issue submissions now (the poller also does it every poll interval).
    pub async fn import_submissions(&self) -> StoreResult<Vec<String>> {
        self.inner.queue.import_submissions().await
    }
}

#[async_trait]
impl LockStore for GithubStore {
    async fn acquire_lock(&self, req: &LockRequest) -> StoreResult<Option<Lock>> {
        self.inner.locks.acquire_lock(req).await
    }
    async fn release_lock(
        &self,
        t: &str,
        k: &str,
        o: &str,
        token: u64,
        proof: Option<&HolderSecret>,
    ) -> Result<(), LockError> {
        self.inner.locks.release_lock(t, k, o, token, proof).await
    }
    async fn renew_lock(
        &self,
        t: &str,
        k: &str,
        o: &str,
        token: u64,
        ttl_ms: u64,
        proof: Option<&HolderSecret>,
    ) -> Result<Lock, LockError> {
        self.inner
            .locks
            .renew_lock(t, k, o, token, ttl_ms, proof)
            .await
    }
    async fn get_lock(&self, t: &str, k: &str) -> StoreResult<Option<Lock>> {
        self.inner.locks.get_lock(t, k).await
    }
    async fn list_locks(&self, f: &LockFilter) -> StoreResult<Vec<Lock>> {
        self.inner.locks.list_locks(f).await
    }
    async fn cleanup_stale_locks(&self) -> StoreResult<u64> {
        self.inner.locks.cleanup_stale_locks().await
    }
    async fn release_owner_locks(&self, owner: &str) -> StoreResult<u64> {
        self.inner.locks.release_owner_locks(owner).await
    }
}

#[async_trait]
impl RegistryStore for GithubStore {
    /// GitHub has no transaction spanning two refs: the replaced incarnation's tasks are
    /// requeued first (queue document), then the worker is registered (registry document). A
    /// crash in between leaves the tasks requeued and the worker unregistered, which is safe:
    /// it registers again on restart.
    async fn register_worker(&self, reg: &WorkerRegistration) -> StoreResult<WorkerRecord> {
        self.inner
            .queue
            .requeue_replaced(&reg.worker_id, reg.incarnation)
            .await?;
        self.inner.registry.register_worker(reg).await
    }
    async fn deregister_worker(&self, id: &str) -> StoreResult<bool> {
        self.inner.registry.deregister_worker(id).await
    }
    async fn update_worker_status(
        &self,
        id: &str,
        incarnation: Option<u64>,
        status: WorkerStatus,
        capacity: Option<&CapacityUpdate>,
    ) -> StoreResult<bool> {
        self.inner
            .registry
            .update_worker_status(id, incarnation, status, capacity)
            .await
    }
    async fn record_heartbeat(
        &self,
        id: &str,
        inc: u64,
        info: &HeartbeatInfo,
    ) -> StoreResult<bool> {
        self.inner.registry.record_heartbeat(id, inc, info).await
    }
    async fn record_task_outcome(&self, id: &str, ok: bool, ms: u64) -> StoreResult<bool> {
        self.inner.registry.record_task_outcome(id, ok, ms).await
    }
    async fn get_worker(&self, id: &str) -> StoreResult<Option<WorkerRecord>> {
        self.inner.registry.get_worker(id).await
    }
    async fn list_workers(&self) -> StoreResult<Vec<WorkerRecord>> {
        self.inner.registry.list_workers().await
    }
    async fn mark_stale_workers(&self, floor_ms: i64) -> StoreResult<Vec<String>> {
        self.inner.registry.mark_stale_workers(floor_ms).await
    }
}

#[async_trait]
impl MemoryStore for GithubStore {
    async fn memory_set(&self, w: &MemoryWrite) -> StoreResult<WriteOutcome> {
        self.inner.memory.memory_set(w).await
    }
    async fn memory_get(&self, t: &str, ns: &str, k: &str) -> StoreResult<Option<MemoryEntry>> {
        self.inner.memory.memory_get(t, ns, k).await
    }
    async fn memory_delete(&self, t: &str, ns: &str, k: &str, w: &str) -> StoreResult<bool> {
        self.inner.memory.memory_delete(t, ns, k, w).await
    }
    async fn memory_list(
        &self,
        t: &str,
        ns: &str,
        p: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<MemoryEntry>> {
        self.inner.memory.memory_list(t, ns, p, after, limit).await
    }
    async fn memory_list_keys(
        &self,
        t: &str,
        ns: &str,
        p: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        self.inner
            .memory
            .memory_list_keys(t, ns, p, after, limit)
            .await
    }
    async fn memory_seq(&self) -> StoreResult<u64> {
        self.inner.memory.memory_seq().await
    }
    async fn memory_changes(
        &self,
        t: Option<&str>,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<ChangeEvent>> {
        self.inner.memory.memory_changes(t, after, limit).await
    }
    async fn memory_purge_expired(&self) -> StoreResult<u64> {
        self.inner.memory.memory_purge_expired().await
    }
    async fn memory_prune_changes(&self, before_ms: i64) -> StoreResult<u64> {
        self.inner.memory.memory_prune_changes(before_ms).await
    }
}

#[async_trait]
impl QueueStore for GithubStore {
    async fn enqueue(&self, tasks: &[NewTask]) -> StoreResult<Vec<String>> {
        self.inner.queue.enqueue(tasks).await
    }
    async fn claim(&self, req: &ClaimRequest) -> StoreResult<Vec<Task>> {
        self.inner.queue.claim(req).await
    }
    async fn renew_lease(
        &self,
        tenant: &str,
        id: &str,
        fence: u64,
        lease_ms: u64,
    ) -> StoreResult<Result<i64, Rejection>> {
        self.inner
            .queue
            .renew_lease(tenant, id, fence, lease_ms)
            .await
    }
    async fn extend_worker_leases(&self, w: &str, inc: u64, lease_ms: u64) -> StoreResult<u64> {
        self.inner
            .queue
            .extend_worker_leases(w, inc, lease_ms)
            .await
    }
    async fn complete(&self, c: &[Completion]) -> StoreResult<Vec<Settlement>> {
        self.inner.queue.complete(c).await
    }
    async fn fail(&self, f: &[Failure], p: &RetryPolicy) -> StoreResult<Vec<Settlement>> {
        self.inner.queue.fail(f, p).await
    }
    async fn release_claims(&self, claims: &[TaskClaim]) -> StoreResult<u64> {
        self.inner.queue.release_claims(claims).await
    }
    async fn cancel(&self, t: &str, id: &str) -> StoreResult<bool> {
        self.inner.queue.cancel(t, id).await
    }
    async fn retry_dead(&self, t: &str, id: &str) -> StoreResult<bool> {
        self.inner.queue.retry_dead(t, id).await
    }
    async fn get_task(&self, t: &str, id: &str) -> StoreResult<Option<Task>> {
        self.inner.queue.get_task(t, id).await
    }
    async fn list_tasks(&self, f: &TaskFilter) -> StoreResult<Vec<Task>> {
        self.inner.queue.list_tasks(f).await
    }
    async fn queue_stats(&self, t: Option<&str>) -> StoreResult<QueueStats> {
        self.inner.queue.queue_stats(t).await
    }
    async fn requeue_worker_tasks(&self, w: &str) -> StoreResult<u64> {
        self.inner.queue.requeue_worker_tasks(w).await
    }
    async fn reap_expired(&self, p: &RetryPolicy) -> StoreResult<ReapReport> {
        self.inner.queue.reap_expired(p).await
    }
}

#[async_trait]
impl TenantStore for GithubStore {
    async fn put_tenant(&self, s: &TenantSettings) -> StoreResult<()> {
        crate::tenants::put_tenant(&self.inner, s).await
    }
    async fn get_tenant(&self, t: &str) -> StoreResult<Option<TenantSettings>> {
        crate::tenants::get_tenant(&self.inner, t).await
    }
    async fn tenant_usage(&self, t: &str) -> StoreResult<TenantUsage> {
        crate::tenants::tenant_usage(&self.inner, t).await
    }
}

#[async_trait]
impl Store for GithubStore {
    async fn now(&self) -> StoreResult<i64> {
        Ok(self.inner.clock.now_ms())
    }

    fn subscribe(&self, topic: Topic) -> watch::Receiver<u64> {
        self.inner.notify.subscribe(topic)
    }

    fn backend_name(&self) -> &'static str {
        "github"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_urls_name_owner_and_repo() {
        let c = GithubConfig::from_url("github://octo/fleet").unwrap();
        assert_eq!((c.owner.as_str(), c.repo.as_str()), ("octo", "fleet"));
        assert!(c.issues);
        for bad in [
            "github://octo",
            "github:///fleet",
            "github://a/b/c",
            "sqlite://x",
        ] {
            assert!(GithubConfig::from_url(bad).is_err(), "{bad}");
        }
    }
}
