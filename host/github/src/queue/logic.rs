//! The queue's state machine over one snapshot of the queue document: the same transitions as
//! the SQLite backend (the reference semantics), as plain functions on a map of records keyed by
//! the task's identity `(tenant, id)`. A transaction loads a [`QueueState`], applies one
//! operation, and the touched records become the commit's writes. Pure: no I/O, and `now` is
//! always passed in. Submissions are in `submit.rs`, claims and fair share in `fair.rs`, tenant
//! settings and quotas in `quota.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sentinel_coord::StoreError;
use sentinel_coord::model::*;

use super::quota::{TENANTS_DIR, TenantFile};
use super::record::{
    META_PATH, QueueMeta, TASKS_DIR, TaskRecord, is_legacy_path, legacy_task_path, task_path,
};
use crate::doc::{Snapshot, Write};

/// A task outcome to add to its worker's stats once the settlement has committed.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub worker: String,
    pub success: bool,
    pub duration_ms: u64,
}

#[derive(Debug, Default)]
pub struct QueueState {
    pub tasks: BTreeMap<TaskKey, TaskRecord>,
    pub meta: QueueMeta,
    /// Tenant settings (`tenants/<enc tenant>.json`), by tenant.
    pub tenants: BTreeMap<String, TenantFile>,
    /// Each tenant's virtual time: the largest `vt` stamp of its records (see `fair.rs`).
    pub(super) vt: BTreeMap<String, i64>,
    /// The store's virtual clock: the largest `vt_at` stamp of all records.
    pub(super) vclock: i64,
    dirty: BTreeSet<TaskKey>,
    /// Records read from a layout-1 path: written back at the layout-2 path, the old file
    /// deleted in the same commit.
    legacy: BTreeSet<TaskKey>,
    /// State of each touched task before this transaction (`None`: created by it).
    before: BTreeMap<TaskKey, Option<TaskState>>,
    pub(super) meta_dirty: bool,
    pub(super) tenants_dirty: BTreeSet<String>,
    pub outcomes: Vec<Outcome>,
    /// Whether tasks may have become claimable (wake subscribers).
    pub wake: bool,
    /// Task files that could not be decoded: left out (and logged) so one bad record never
    /// stops the queue, or a sweep, for everyone else.
    pub skipped: u64,
}

pub(super) fn ms(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

pub fn key(tenant: &str, id: &str) -> TaskKey {
    TaskKey::new(tenant, id)
}

impl QueueState {
    pub fn load(snap: &Snapshot) -> Result<Self, StoreError> {
        let mut s = QueueState::default();
        if let Some(m) = snap.get(META_PATH) {
            s.meta = serde_json::from_value(m.clone())
                .map_err(|e| StoreError::Corrupt(format!("queue meta: {e}")))?;
        }
        for (path, v) in snap.under(TASKS_DIR) {
            match TaskRecord::decode(path, v) {
                Ok(r) => {
                    let k = r.key();
                    if is_legacy_path(path) {
                        s.legacy.insert(k.clone());
                    }
                    if let Some(vt) = r.vt {
                        let e = s.vt.entry(r.tenant.clone()).or_insert(vt);
                        *e = (*e).max(vt);
                    }
                    s.vclock = s.vclock.max(r.vt_at.unwrap_or(0));
                    s.tasks.insert(k, r);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an undecodable task record");
                    s.skipped += 1;
                }
            }
        }
        for (path, v) in snap.under(TENANTS_DIR) {
            let t = TenantFile::decode(path, v)?;
            s.tenants.insert(t.settings.tenant.clone(), t);
        }
        Ok(s)
    }

    /// The commit's writes: every touched record (moved to its layout-2 path if it was read
    /// from a layout-1 one), touched tenant files, and the meta file if it changed.
    pub fn writes(&self) -> Result<Vec<Write>, StoreError> {
        let mut w = Vec::new();
        for k in &self.dirty {
            if let Some(r) = self.tasks.get(k) {
                w.push(Write::Put(task_path(k), r.encode()?));
                if self.legacy.contains(k) {
                    w.push(Write::Delete(legacy_task_path(&k.id)));
                }
            }
        }
        for t in &self.tenants_dirty {
            if let Some(f) = self.tenants.get(t) {
                w.push(Write::Put(TenantFile::path(t), f.encode()?));
            }
        }
        if self.meta_dirty {
            w.push(Write::Put(
                META_PATH.into(),
                serde_json::to_value(&self.meta).map_err(|e| StoreError::Invalid(e.to_string()))?,
            ));
        }
        Ok(w)
    }

    /// Every touched record with its state before the transaction.
    pub fn changed(&self) -> Vec<(Option<TaskState>, TaskRecord)> {
        self.dirty
            .iter()
            .filter_map(|k| {
                let r = self.tasks.get(k)?.clone();
                Some((self.before.get(k).copied().flatten(), r))
            })
            .collect()
    }

    pub(super) fn touch(&mut self, k: &TaskKey) -> Option<&mut TaskRecord> {
        if self.dirty.insert(k.clone()) {
            let prev = self.tasks.get(k).map(|r| r.state);
            self.before.insert(k.clone(), prev);
        }
        self.tasks.get_mut(k)
    }

    /// The task `(tenant, id)`.
    pub fn get(&self, tenant: &str, id: &str) -> Option<&TaskRecord> {
        self.tasks.get(&key(tenant, id))
    }

    /// The weight and quota of `tenant` (weight 1 and no quota without settings).
    pub fn settings(&self, tenant: &str) -> Option<&TenantSettings> {
        self.tenants.get(tenant).map(|t| &t.settings)
    }

    /// Whether `r` may be leased to `req`'s worker now (quotas and fairness aside).
    pub(super) fn claimable(&self, r: &TaskRecord, now: i64, req: &ClaimRequest) -> bool {
        r.queued()
            && r.run_at <= now
            && req
                .task_types
                .as_ref()
                .is_none_or(|t| t.contains(&r.task_type))
            && req.tenants.as_ref().is_none_or(|t| t.contains(&r.tenant))
            && r.affinity
                .required_worker
                .as_ref()
                .is_none_or(|w| *w == req.worker_id)
            && !r.affinity.excluded_workers.contains(&req.worker_id)
            && r.affinity.same_worker_as.as_ref().is_none_or(|other| {
                self.get(&r.tenant, other)
                    .is_some_and(|x| x.worker_id.as_deref() == Some(req.worker_id.as_str()))
            })
            && r.depends_on.iter().all(|d| {
                self.get(&r.tenant, d)
                    .is_some_and(|x| x.state == TaskState::Completed)
            })
    }

    /// Leases the task `k` to `req`'s worker; returns it with its dependencies' outputs.
    pub(super) fn lease(&mut self, now: i64, k: &TaskKey, req: &ClaimRequest) -> Task {
        let lease_until = now.saturating_add(ms(req.lease_ms));
        let r = self.touch(k).expect("a claimable task");
        r.state = TaskState::Running;
        r.worker_id = Some(req.worker_id.clone());
        r.worker_incarnation = req.incarnation;
        r.attempt = r.attempt.saturating_add(1);
        r.fence = r.fence.saturating_add(1);
        r.lease_expires_at = Some(lease_until);
        r.deadline_at = (r.timeout_ms > 0).then(|| now.saturating_add(ms(r.timeout_ms)));
        r.started_at = Some(now);
        r.updated_at = now;
        r.finished_at = None;
        let mut task = r.to_task();
        for dep in &task.depends_on.clone() {
            let output = self
                .get(&k.tenant, dep)
                .and_then(|d| d.output_bytes())
                .unwrap_or_default();
            task.dependency_outputs.insert(dep.clone(), output);
        }
        task
    }

    fn rejection(&self, k: &TaskKey, fence: u64) -> Rejection {
        match self.tasks.get(k) {
            None => Rejection::NotFound,
            Some(r) if r.state == TaskState::Running && r.fence != fence => {
                Rejection::StaleFence { current: r.fence }
            }
            Some(r) => Rejection::NotRunning(r.state),
        }
    }

    fn running_with(&self, k: &TaskKey, fence: u64) -> bool {
        self.tasks
            .get(k)
            .is_some_and(|r| r.state == TaskState::Running && r.fence == fence)
    }

    pub fn renew_lease(
        &mut self,
        now: i64,
        k: &TaskKey,
        fence: u64,
        lease_ms: u64,
    ) -> Result<i64, Rejection> {
        if !self.running_with(k, fence) {
            return Err(self.rejection(k, fence));
        }
        let until = now.saturating_add(ms(lease_ms));
        let r = self.touch(k).expect("checked above");
        r.lease_expires_at = Some(until);
        r.updated_at = now;
        Ok(until)
    }

    pub fn extend_worker_leases(
        &mut self,
        now: i64,
        worker: &str,
        incarnation: u64,
        lease_ms: u64,
    ) -> u64 {
        let until = now.saturating_add(ms(lease_ms));
        let keys: Vec<TaskKey> = self
            .tasks
            .values()
            .filter(|r| r.state == TaskState::Running && r.worker_id.as_deref() == Some(worker))
            .filter(|r| r.worker_incarnation == incarnation)
            .map(TaskRecord::key)
            .collect();
        for k in &keys {
            let r = self.touch(k).expect("listed above");
            r.lease_expires_at = Some(r.lease_expires_at.unwrap_or(0).max(until));
        }
        keys.len() as u64
    }

    /// Tasks of `k`'s tenant that depend on `k`.
    fn dependents(&self, k: &TaskKey) -> impl Iterator<Item = &TaskRecord> {
        self.tasks
            .values()
            .filter(move |r| r.tenant == k.tenant && r.depends_on.contains(&k.id))
    }

    pub fn complete(&mut self, now: i64, c: &Completion) -> Settlement {
        let k = key(&c.tenant, &c.task_id);
        if !self.running_with(&k, c.fence) {
            return Settlement::Rejected(self.rejection(&k, c.fence));
        }
        let wake = self.dependents(&k).next().is_some();
        let r = self.touch(&k).expect("checked above");
        r.state = TaskState::Completed;
        r.set_output(&c.output);
        r.finished_at = Some(now);
        r.updated_at = now;
        r.lease_expires_at = None;
        r.deadline_at = None;
        let outcome = r.worker_id.clone().map(|w| Outcome {
            worker: w,
            success: true,
            duration_ms: (now - r.started_at.unwrap_or(now)).max(0) as u64,
        });
        self.outcomes.extend(outcome);
        self.wake |= wake;
        Settlement::Applied(TaskState::Completed)
    }

    pub fn fail(&mut self, now: i64, f: &Failure, policy: &RetryPolicy) -> Settlement {
        let k = key(&f.tenant, &f.task_id);
        let Some(r) = self.tasks.get(&k) else {
            return Settlement::Rejected(Rejection::NotFound);
        };
        if r.state != TaskState::Running {
            return Settlement::Rejected(Rejection::NotRunning(r.state));
        }
        if r.fence != f.fence {
            return Settlement::Rejected(Rejection::StaleFence { current: r.fence });
        }
        let (attempt, max, worker, started) =
            (r.attempt, r.max_retries, r.worker_id.clone(), r.started_at);
        let state = self.apply_failure(now, &k, attempt, max, &f.error, f.retryable, policy);
        if let Some(w) = worker {
            self.outcomes.push(Outcome {
                worker: w,
                success: false,
                duration_ms: (now - started.unwrap_or(now)).max(0) as u64,
            });
        }
        Settlement::Applied(state)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_failure(
        &mut self,
        now: i64,
        k: &TaskKey,
        attempt: u32,
        max_retries: u32,
        error: &str,
        retryable: bool,
        policy: &RetryPolicy,
    ) -> TaskState {
        let r = self.touch(k).expect("caller checked");
        r.lease_expires_at = None;
        r.deadline_at = None;
        r.updated_at = now;
        if retryable && attempt <= max_retries {
            r.state = TaskState::Failed;
            r.error = Some(error.to_string());
            r.run_at = now.saturating_add(ms(policy.delay_for(attempt)));
            TaskState::Failed
        } else {
            r.state = TaskState::Dead;
            r.error = Some(if retryable {
                format!("{error} (gave up after {attempt} attempts)")
            } else {
                error.to_string()
            });
            r.finished_at = Some(now);
            self.cascade_dead(now, k);
            TaskState::Dead
        }
    }

    fn requeue_lost(&mut self, now: i64, k: &TaskKey, reason: &str) -> TaskState {
        let r = self.touch(k).expect("caller checked");
        r.lease_expires_at = None;
        r.deadline_at = None;
        r.updated_at = now;
        if r.attempt > r.max_retries {
            r.state = TaskState::Dead;
            r.error = Some(format!("{reason} (gave up after {} attempts)", r.attempt));
            r.finished_at = Some(now);
            self.cascade_dead(now, k);
            TaskState::Dead
        } else {
            r.state = TaskState::Pending;
            r.error = Some(reason.to_string());
            r.run_at = now;
            TaskState::Pending
        }
    }

    /// Every pending/failed task of the same tenant that (transitively) depends on `root`
    /// becomes dead.
    fn cascade_dead(&mut self, now: i64, root: &TaskKey) {
        let mut queue = VecDeque::from([root.clone()]);
        while let Some(dep) = queue.pop_front() {
            let dependents: Vec<TaskKey> = self
                .dependents(&dep)
                .filter(|r| r.queued())
                .map(TaskRecord::key)
                .collect();
            for d in dependents {
                let r = self.touch(&d).expect("listed above");
                r.state = TaskState::Dead;
                r.error = Some(format!("dependency {} will never complete", dep.id));
                r.finished_at = Some(now);
                r.updated_at = now;
                queue.push_back(d);
            }
        }
    }

    pub fn cancel(&mut self, now: i64, tenant: &str, id: &str) -> bool {
        let k = key(tenant, id);
        let ok = self.tasks.get(&k).is_some_and(|r| {
            matches!(
                r.state,
                TaskState::Pending | TaskState::Failed | TaskState::Running
            )
        });
        if !ok {
            return false;
        }
        let r = self.touch(&k).expect("checked above");
        r.state = TaskState::Cancelled;
        r.finished_at = Some(now);
        r.updated_at = now;
        r.lease_expires_at = None;
        r.deadline_at = None;
        self.cascade_dead(now, &k);
        true
    }

    /// See [`sentinel_coord::QueueStore::release_claims`].
    pub fn release_claims(&mut self, now: i64, claims: &[TaskClaim]) -> u64 {
        let mut n = 0;
        for c in claims {
            let k = key(&c.tenant, &c.task_id);
            if !self.running_with(&k, c.fence) {
                continue;
            }
            let r = self.touch(&k).expect("checked above");
            r.state = TaskState::Pending;
            r.attempt = r.attempt.saturating_sub(1);
            r.worker_id = None;
            r.worker_incarnation = 0;
            r.lease_expires_at = None;
            r.deadline_at = None;
            r.started_at = None;
            r.updated_at = now;
            n += 1;
        }
        self.wake |= n > 0;
        n
    }

    pub fn requeue_worker_tasks(&mut self, now: i64, worker: &str) -> u64 {
        let keys: Vec<TaskKey> = self
            .tasks
            .values()
            .filter(|r| r.state == TaskState::Running && r.worker_id.as_deref() == Some(worker))
            .map(TaskRecord::key)
            .collect();
        for k in &keys {
            self.requeue_lost(now, k, &format!("worker {worker} lost"));
        }
        self.wake |= !keys.is_empty();
        keys.len() as u64
    }

    /// Requeues (dead if out of attempts) every task of `worker` still running under an
    /// incarnation other than `incarnation`: that process was replaced by a new start under the
    /// same name, so its runs are lost.
    pub fn requeue_replaced(&mut self, now: i64, worker: &str, incarnation: u64) -> u64 {
        let lost: Vec<(TaskKey, u64)> = self
            .tasks
            .values()
            .filter(|r| r.state == TaskState::Running && r.worker_id.as_deref() == Some(worker))
            .filter(|r| r.worker_incarnation != incarnation)
            .map(|r| (r.key(), r.worker_incarnation))
            .collect();
        for (k, old) in &lost {
            let reason = format!(
                "worker {worker} restarted (incarnation {old} replaced by {incarnation}); the task's run was lost"
            );
            self.requeue_lost(now, k, &reason);
        }
        self.wake |= !lost.is_empty();
        lost.len() as u64
    }

    pub fn reap_expired(&mut self, now: i64, policy: &RetryPolicy) -> ReapReport {
        let expired: Vec<TaskKey> = self
            .tasks
            .values()
            .filter(|r| r.state == TaskState::Running)
            .filter(|r| {
                r.lease_expires_at.is_some_and(|l| l <= now)
                    || r.deadline_at.is_some_and(|d| d <= now)
            })
            .map(TaskRecord::key)
            .collect();
        let mut report = ReapReport {
            skipped: self.skipped,
            ..ReapReport::default()
        };
        for k in expired {
            let r = &self.tasks[&k];
            let (attempt, max, worker, started, timeout, deadline) = (
                r.attempt,
                r.max_retries,
                r.worker_id.clone(),
                r.started_at,
                r.timeout_ms,
                r.deadline_at,
            );
            // A passed deadline is the task's fault; an expired lease alone means its worker
            // stopped renewing, i.e. is presumed dead.
            let state = if deadline.is_some_and(|d| d <= now) {
                if let Some(w) = &worker {
                    self.outcomes.push(Outcome {
                        worker: w.clone(),
                        success: false,
                        duration_ms: now.saturating_sub(started.unwrap_or(now)).max(0) as u64,
                    });
                }
                let msg = format!("timed out after {timeout} ms");
                self.apply_failure(now, &k, attempt, max, &msg, true, policy)
            } else {
                let who = worker.as_deref().unwrap_or("?");
                self.requeue_lost(now, &k, &format!("lease of worker {who} expired"))
            };
            match state {
                TaskState::Pending => report.requeued += 1,
                TaskState::Failed => report.retrying += 1,
                _ => report.dead += 1,
            }
        }
        self.wake |= report.requeued > 0;
        report
    }
}
