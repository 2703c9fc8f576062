//! [`SealedStore`]: any backend, with worker records sealed on the way in and verified on the way
//! out. Every host wraps its store in one, so every reader (API, balancer, registry, maintenance)
//! sees only what the fleet wrote:
//!
//! - **Registration and heartbeats** of workers this process registered are sealed
//!   ([`WorkerSeal`]); a record that does not verify is left out of `get_worker`/`list_workers`
//!   (counted and logged once per worker id), and a record's `last_heartbeat` is the sealed time,
//!   so a heartbeat written again later (replayed) does not make a dead worker look alive.
//! - **Maintenance** also declares stale the workers whose *sealed* heartbeat is too old, and
//!   those whose record has failed verification for longer than their stale threshold
//!   (including running tasks' holders that have no record at all), so their tasks are requeued.
//! - **Impersonation**: registering over a live record that this process cannot verify (no
//!   secret, or another one) is refused; a forged record replacing this process's own is
//!   overwritten by its next heartbeat (same incarnation: its tasks are not disturbed).
//! - **No secret in a fleet that has one**: claiming is refused, loudly, while any live worker's
//!   record carries a seal this process cannot verify; with a *different* secret, while such
//!   workers outnumber the ones it can verify (itself included).
//!
//! Everything else passes straight through. Without a secret it only guards against taking over
//! an authenticated worker's id and claiming in an authenticated fleet.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;

use super::{FleetKeys, WorkerSeal};
use crate::error::{LockError, StoreError};
use crate::model::*;
use crate::store::*;

/// Called with (record kind, worker id) for every record that fails verification.
pub type RejectHook = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// How long a "may this process claim here?" answer is reused.
const FLEET_CHECK: Duration = Duration::from_secs(5);
/// Worker ids remembered for log-once; beyond this, the set starts over (logs may repeat).
const MAX_WARNED: usize = 10_000;
/// Running tasks looked at per maintenance round for holders without a record.
const HOLDER_SCAN: u32 = 10_000;

pub struct SealedStore {
    inner: Arc<dyn Store>,
    keys: Option<FleetKeys>,
    store_id: String,
    /// Registrations made by this process, with the heartbeats sealed so far.
    own: Mutex<HashMap<String, (WorkerRegistration, u64)>>,
    warned: Mutex<HashSet<String>>,
    /// Worker id → when maintenance first found its record (or its tasks' holder) unverifiable.
    unverified_since: Mutex<HashMap<String, i64>>,
    /// (checked at, may claim).
    fleet_check: Mutex<Option<(Instant, Result<(), String>)>>,
    on_reject: Option<RejectHook>,
}

enum Verdict {
    /// The sealed heartbeat time.
    Sealed(i64),
    Unsealed,
}

impl SealedStore {
    /// `store_id` names the store for every process of the fleet alike (it is part of each seal).
    pub fn new(
        inner: Arc<dyn Store>,
        keys: Option<FleetKeys>,
        store_id: impl Into<String>,
    ) -> Self {
        SealedStore {
            inner,
            keys,
            store_id: store_id.into(),
            own: Mutex::default(),
            warned: Mutex::default(),
            unverified_since: Mutex::default(),
            fleet_check: Mutex::default(),
            on_reject: None,
        }
    }

    pub fn with_reject_hook(mut self, hook: RejectHook) -> Self {
        self.on_reject = Some(hook);
        self
    }

    /// Whether this process holds a fleet secret.
    pub fn authenticates(&self) -> bool {
        self.keys.is_some()
    }

    fn verdict(&self, keys: &FleetKeys, rec: &WorkerRecord) -> Verdict {
        match WorkerSeal::verify(keys, &self.store_id, rec) {
            Some(at) => Verdict::Sealed(at),
            None => Verdict::Unsealed,
        }
    }

    fn rejected(&self, kind: &str, worker_id: &str, why: &str) {
        if let Some(hook) = &self.on_reject {
            hook(kind, worker_id);
        }
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned.len() >= MAX_WARNED {
            warned.clear();
        }
        if warned.insert(format!("{kind}/{worker_id}")) {
            tracing::warn!(%worker_id, record = kind, reason = why, "ignoring a record the fleet did not write");
        }
    }

    /// The record as readers may see it: its heartbeat time the sealed one, the seal itself
    /// dropped; `None` if it does not verify.
    fn checked(&self, mut rec: WorkerRecord) -> Option<WorkerRecord> {
        let Some(keys) = &self.keys else {
            return Some(rec);
        };
        match self.verdict(keys, &rec) {
            Verdict::Sealed(at) => {
                rec.last_heartbeat = rec.last_heartbeat.min(at);
                rec.heartbeat.seal = None;
                Some(rec)
            }
            Verdict::Unsealed => {
                let why = if rec.heartbeat.seal.is_some() {
                    "its seal does not verify with this fleet's secret"
                } else {
                    "it carries no seal"
                };
                self.rejected("worker", &rec.worker_id, why);
                None
            }
        }
    }

    /// Whether `rec` is a live record this process cannot verify (someone else's, fresh by the
    /// store's own heartbeat time, carrying a seal).
    fn foreign_and_live(&self, rec: &WorkerRecord, now: i64) -> bool {
        let fresh =
            now.saturating_sub(rec.last_heartbeat) < rec.stale_after_ms(MIN_STALE_THRESHOLD_MS);
        rec.status != WorkerStatus::Offline
            && fresh
            && rec.heartbeat.seal.is_some()
            && self
                .keys
                .as_ref()
                .is_none_or(|k| WorkerSeal::verify(k, &self.store_id, rec).is_none())
    }

    /// Whether this process may claim, renew or settle tasks: not if the fleet authenticates its
    /// workers and this process cannot (no secret, or a secret the live fleet does not share).
    async fn may_act(&self) -> StoreResult<()> {
        // On the claim path: answered from memory almost always (no store round trip).
        if let Some((at, answer)) = &*self.fleet_check.lock().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < FLEET_CHECK {
                return answer.clone().map_err(StoreError::Invalid);
            }
        }
        let now = self.inner.now().await?;
        let own: HashSet<String> = self
            .own
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        let (mut foreign, mut ours) = (Vec::new(), own.len());
        for w in self.inner.list_workers().await? {
            if own.contains(&w.worker_id) {
                continue;
            }
            if self.foreign_and_live(&w, now) {
                foreign.push(w.worker_id);
            } else if self
                .keys
                .as_ref()
                .is_some_and(|k| WorkerSeal::verify(k, &self.store_id, &w).is_some())
            {
                ours += 1;
            }
        }
        // Without a secret, any authenticated worker means this process is not one of them.
        // With one, the side with more live workers is the fleet (a tie claims: stopping
        // everyone is worse, and maintenance takes back what unverifiable workers hold).
        let outvoted = if self.keys.is_some() {
            foreign.len() > ours
        } else {
            !foreign.is_empty()
        };
        let answer = if outvoted {
            let why = format!(
                "not claiming, renewing or settling tasks: this fleet authenticates its workers (e.g. worker {:?} carries a fleet seal) and this process {}; set SENTINEL_FLEET_SECRET (or trust.fleetSecretFile) to the fleet's secret",
                foreign[0],
                if self.keys.is_some() {
                    "holds a different secret"
                } else {
                    "has no fleet secret"
                }
            );
            tracing::error!(reason = %why, "refusing to claim, renew or settle tasks");
            Err(why)
        } else {
            Ok(())
        };
        *self.fleet_check.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), answer.clone()));
        answer.map_err(StoreError::Invalid)
    }

    /// Declares stale, beyond what the backend saw from its own heartbeat times, every worker
    /// whose sealed heartbeat is too old or whose record (or absence of one, for a running
    /// task's holder) has been unverifiable for longer than its threshold.
    async fn mark_unverified_stale(
        &self,
        keys: &FleetKeys,
        floor_ms: i64,
        ids: &mut Vec<String>,
    ) -> StoreResult<()> {
        let now = self.inner.now().await?;
        let records = self.inner.list_workers().await?;
        let mut seen = HashSet::new();
        let mut unverified = self
            .unverified_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut overdue = Vec::new();
        for rec in &records {
            seen.insert(rec.worker_id.clone());
            if rec.status == WorkerStatus::Offline || ids.contains(&rec.worker_id) {
                unverified.remove(&rec.worker_id);
                continue;
            }
            let stale_after = rec.stale_after_ms(floor_ms);
            match self.verdict(keys, rec) {
                Verdict::Sealed(at) => {
                    unverified.remove(&rec.worker_id);
                    if now.saturating_sub(at) >= stale_after {
                        overdue.push((rec.worker_id.clone(), true));
                    }
                }
                Verdict::Unsealed => {
                    self.rejected(
                        "worker",
                        &rec.worker_id,
                        "unverifiable record at maintenance",
                    );
                    let since = *unverified.entry(rec.worker_id.clone()).or_insert(now);
                    if now.saturating_sub(since) >= stale_after {
                        overdue.push((rec.worker_id.clone(), true));
                    }
                }
            }
        }
        // Holders of running tasks that have no record at all.
        let running = self
            .inner
            .list_tasks(&TaskFilter {
                state: Some(TaskState::Running),
                limit: HOLDER_SCAN,
                ..Default::default()
            })
            .await?;
        let holders: HashSet<String> = running.into_iter().filter_map(|t| t.worker_id).collect();
        let floor = floor_ms.max(MIN_STALE_THRESHOLD_MS);
        let orphans: Vec<String> = holders.into_iter().filter(|h| !seen.contains(h)).collect();
        for holder in orphans {
            self.rejected(
                "task-holder",
                &holder,
                "a task is leased to a worker with no record",
            );
            let since = *unverified.entry(holder.clone()).or_insert(now);
            seen.insert(holder.clone());
            if now.saturating_sub(since) >= floor {
                overdue.push((holder, false));
            }
        }
        unverified.retain(|id, _| seen.contains(id));
        for (id, has_record) in overdue {
            if has_record {
                self.inner
                    .update_worker_status(&id, None, WorkerStatus::Offline, None)
                    .await?;
            }
            unverified.remove(&id);
            tracing::warn!(worker_id = %id, "declaring a worker dead: no heartbeat the fleet sealed is recent enough");
            ids.push(id);
        }
        *self
            .unverified_since
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = unverified;
        ids.sort();
        ids.dedup();
        Ok(())
    }
}

#[async_trait]
impl RegistryStore for SealedStore {
    async fn register_worker(&self, reg: &WorkerRegistration) -> StoreResult<WorkerRecord> {
        if let Some(existing) = self.inner.get_worker(&reg.worker_id).await? {
            let now = self.inner.now().await?;
            if self.foreign_and_live(&existing, now) {
                return Err(StoreError::Invalid(format!(
                    "worker id {:?} belongs to a live worker that authenticates with the fleet secret, which this process {}",
                    reg.worker_id,
                    if self.keys.is_some() {
                        "does not share"
                    } else {
                        "does not have"
                    }
                )));
            }
        }
        let rec = self.inner.register_worker(reg).await?;
        self.own
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(reg.worker_id.clone(), (reg.clone(), 0));
        if self.keys.is_some() {
            // Sealed from the start, not from the first heartbeat tick.
            self.record_heartbeat(&reg.worker_id, reg.incarnation, &rec.heartbeat)
                .await?;
        }
        Ok(rec)
    }

    async fn deregister_worker(&self, worker_id: &str) -> StoreResult<bool> {
        self.own
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(worker_id);
        self.inner.deregister_worker(worker_id).await
    }

    async fn update_worker_status(
        &self,
        worker_id: &str,
        incarnation: Option<u64>,
        status: WorkerStatus,
        capacity: Option<&CapacityUpdate>,
    ) -> StoreResult<bool> {
        self.inner
            .update_worker_status(worker_id, incarnation, status, capacity)
            .await
    }

    async fn record_heartbeat(
        &self,
        worker_id: &str,
        incarnation: u64,
        info: &HeartbeatInfo,
    ) -> StoreResult<bool> {
        let Some(keys) = &self.keys else {
            return self
                .inner
                .record_heartbeat(worker_id, incarnation, info)
                .await;
        };
        let mine = {
            let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
            match own.get_mut(worker_id) {
                Some((reg, seq)) if reg.incarnation == incarnation => {
                    *seq += 1;
                    Some((reg.clone(), *seq))
                }
                _ => None,
            }
        };
        let Some((reg, seq)) = mine else {
            return self
                .inner
                .record_heartbeat(worker_id, incarnation, info)
                .await;
        };
        let at = self.inner.now().await?;
        let mut sealed = info.clone();
        sealed.seal = None;
        sealed.seal = Some(WorkerSeal::new(
            keys,
            &self.store_id,
            &reg,
            &sealed,
            at,
            seq,
        ));
        let written = self
            .inner
            .record_heartbeat(worker_id, incarnation, &sealed)
            .await?;
        // Read back (heartbeats are rare; this is one read each): the record must now verify.
        // If it was replaced by a newer start of this worker (it verifies, under another
        // incarnation), this process is the stale one. If it was replaced or altered by someone
        // without the secret, this process writes its own registration back (same incarnation,
        // so its running tasks are not disturbed).
        let current = self.inner.get_worker(worker_id).await?;
        match current {
            Some(rec) if matches!(self.verdict(keys, &rec), Verdict::Sealed(_)) => {
                Ok(written && rec.incarnation == incarnation)
            }
            Some(_) => {
                tracing::warn!(%worker_id, "this worker's record was altered by someone without the fleet secret; restoring it");
                self.rejected("worker", worker_id, "altered this process's own record");
                self.inner.register_worker(&reg).await?;
                self.inner
                    .record_heartbeat(worker_id, incarnation, &sealed)
                    .await
            }
            None => Ok(false),
        }
    }

    async fn record_task_outcome(
        &self,
        worker_id: &str,
        success: bool,
        duration_ms: u64,
    ) -> StoreResult<bool> {
        self.inner
            .record_task_outcome(worker_id, success, duration_ms)
            .await
    }

    async fn get_worker(&self, worker_id: &str) -> StoreResult<Option<WorkerRecord>> {
        Ok(self
            .inner
            .get_worker(worker_id)
            .await?
            .and_then(|r| self.checked(r)))
    }

    async fn list_workers(&self) -> StoreResult<Vec<WorkerRecord>> {
        Ok(self
            .inner
            .list_workers()
            .await?
            .into_iter()
            .filter_map(|r| self.checked(r))
            .collect())
    }

    async fn mark_stale_workers(&self, floor_ms: i64) -> StoreResult<Vec<String>> {
        let mut ids = self.inner.mark_stale_workers(floor_ms).await?;
        if let Some(keys) = &self.keys {
            self.mark_unverified_stale(keys, floor_ms, &mut ids).await?;
        }
        Ok(ids)
    }
}

#[async_trait]
impl LockStore for SealedStore {
    async fn acquire_lock(&self, req: &LockRequest) -> StoreResult<Option<Lock>> {
        self.inner.acquire_lock(req).await
    }
    async fn release_lock(
        &self,
        tenant: &str,
        key: &str,
        owner: &str,
        token: u64,
        proof: Option<&HolderSecret>,
    ) -> Result<(), LockError> {
        self.inner
            .release_lock(tenant, key, owner, token, proof)
            .await
    }
    async fn renew_lock(
        &self,
        tenant: &str,
        key: &str,
        owner: &str,
        token: u64,
        ttl_ms: u64,
        proof: Option<&HolderSecret>,
    ) -> Result<Lock, LockError> {
        self.inner
            .renew_lock(tenant, key, owner, token, ttl_ms, proof)
            .await
    }
    async fn get_lock(&self, tenant: &str, key: &str) -> StoreResult<Option<Lock>> {
        self.inner.get_lock(tenant, key).await
    }
    async fn list_locks(&self, filter: &LockFilter) -> StoreResult<Vec<Lock>> {
        self.inner.list_locks(filter).await
    }
    async fn cleanup_stale_locks(&self) -> StoreResult<u64> {
        self.inner.cleanup_stale_locks().await
    }
    async fn release_owner_locks(&self, owner: &str) -> StoreResult<u64> {
        self.inner.release_owner_locks(owner).await
    }
}

#[async_trait]
impl MemoryStore for SealedStore {
    async fn memory_set(&self, write: &MemoryWrite) -> StoreResult<WriteOutcome> {
        self.inner.memory_set(write).await
    }
    async fn memory_get(
        &self,
        tenant: &str,
        ns: &str,
        key: &str,
    ) -> StoreResult<Option<MemoryEntry>> {
        self.inner.memory_get(tenant, ns, key).await
    }
    async fn memory_delete(
        &self,
        tenant: &str,
        ns: &str,
        key: &str,
        writer: &str,
    ) -> StoreResult<bool> {
        self.inner.memory_delete(tenant, ns, key, writer).await
    }
    async fn memory_list(
        &self,
        tenant: &str,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<MemoryEntry>> {
        self.inner
            .memory_list(tenant, ns, prefix, after, limit)
            .await
    }
    async fn memory_list_keys(
        &self,
        tenant: &str,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        self.inner
            .memory_list_keys(tenant, ns, prefix, after, limit)
            .await
    }
    async fn memory_seq(&self) -> StoreResult<u64> {
        self.inner.memory_seq().await
    }
    async fn memory_changes(
        &self,
        tenant: Option<&str>,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<ChangeEvent>> {
        self.inner.memory_changes(tenant, after, limit).await
    }
    async fn memory_purge_expired(&self) -> StoreResult<u64> {
        self.inner.memory_purge_expired().await
    }
    async fn memory_prune_changes(&self, before_ms: i64) -> StoreResult<u64> {
        self.inner.memory_prune_changes(before_ms).await
    }
}

#[async_trait]
impl QueueStore for SealedStore {
    async fn enqueue(&self, tasks: &[NewTask]) -> StoreResult<Vec<String>> {
        self.inner.enqueue(tasks).await
    }
    async fn claim(&self, req: &ClaimRequest) -> StoreResult<Vec<Task>> {
        self.may_act().await?;
        self.inner.claim(req).await
    }
    async fn renew_lease(
        &self,
        tenant: &str,
        task_id: &str,
        fence: u64,
        lease_ms: u64,
    ) -> StoreResult<Result<i64, Rejection>> {
        self.may_act().await?;
        self.inner
            .renew_lease(tenant, task_id, fence, lease_ms)
            .await
    }
    async fn extend_worker_leases(
        &self,
        worker_id: &str,
        incarnation: u64,
        lease_ms: u64,
    ) -> StoreResult<u64> {
        self.may_act().await?;
        self.inner
            .extend_worker_leases(worker_id, incarnation, lease_ms)
            .await
    }
    async fn complete(&self, completions: &[Completion]) -> StoreResult<Vec<Settlement>> {
        self.may_act().await?;
        self.inner.complete(completions).await
    }
    async fn fail(
        &self,
        failures: &[Failure],
        policy: &RetryPolicy,
    ) -> StoreResult<Vec<Settlement>> {
        self.may_act().await?;
        self.inner.fail(failures, policy).await
    }
    async fn release_claims(&self, claims: &[TaskClaim]) -> StoreResult<u64> {
        // Giving work back to the fleet is always allowed, even to a process outside it.
        self.inner.release_claims(claims).await
    }
    async fn cancel(&self, tenant: &str, task_id: &str) -> StoreResult<bool> {
        self.inner.cancel(tenant, task_id).await
    }
    async fn retry_dead(&self, tenant: &str, task_id: &str) -> StoreResult<bool> {
        self.inner.retry_dead(tenant, task_id).await
    }
    async fn get_task(&self, tenant: &str, task_id: &str) -> StoreResult<Option<Task>> {
        self.inner.get_task(tenant, task_id).await
    }
    async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<Vec<Task>> {
        self.inner.list_tasks(filter).await
    }
    async fn queue_stats(&self, tenant: Option<&str>) -> StoreResult<QueueStats> {
        self.inner.queue_stats(tenant).await
    }
    async fn requeue_worker_tasks(&self, worker_id: &str) -> StoreResult<u64> {
        self.inner.requeue_worker_tasks(worker_id).await
    }
    async fn reap_expired(&self, policy: &RetryPolicy) -> StoreResult<ReapReport> {
        self.inner.reap_expired(policy).await
    }
}

#[async_trait]
impl TenantStore for SealedStore {
    async fn put_tenant(&self, settings: &TenantSettings) -> StoreResult<()> {
        self.inner.put_tenant(settings).await
    }
    async fn get_tenant(&self, tenant: &str) -> StoreResult<Option<TenantSettings>> {
        self.inner.get_tenant(tenant).await
    }
    async fn tenant_usage(&self, tenant: &str) -> StoreResult<TenantUsage> {
        self.inner.tenant_usage(tenant).await
    }
}

#[async_trait]
impl Store for SealedStore {
    async fn now(&self) -> StoreResult<i64> {
        self.inner.now().await
    }
    fn subscribe(&self, topic: Topic) -> watch::Receiver<u64> {
        self.inner.subscribe(topic)
    }
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
}
