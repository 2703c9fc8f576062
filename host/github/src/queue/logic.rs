//! The queue's state machine over one snapshot of the queue document: the same transitions as
//! the SQLite backend (the reference semantics), as plain functions on a map of records. A
//! transaction loads a [`QueueState`], applies one operation, and the touched records become the
//! commit's writes. Pure: no I/O, and `now` is always passed in.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sentinel_coord::StoreError;
use sentinel_coord::model::*;

use super::record::{META_PATH, QueueMeta, TASKS_DIR, TaskRecord, task_path};
use crate::codec::bytes_to_json;
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
    pub tasks: BTreeMap<String, TaskRecord>,
    pub meta: QueueMeta,
    dirty: BTreeSet<String>,
    /// State of each touched task before this transaction (`None`: created by it).
    before: BTreeMap<String, Option<TaskState>>,
    meta_dirty: bool,
    pub outcomes: Vec<Outcome>,
    /// Whether tasks may have become claimable (wake subscribers).
    pub wake: bool,
    /// Task files that could not be decoded: left out (and logged) so one bad record never
    /// stops the queue, or a sweep, for everyone else.
    pub skipped: u64,
}

fn ms(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
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
                    s.tasks.insert(r.id.clone(), r);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an undecodable task record");
                    s.skipped += 1;
                }
            }
        }
        Ok(s)
    }

    /// The commit's writes: every touched record, and the meta file if it changed.
    pub fn writes(&self) -> Result<Vec<Write>, StoreError> {
        let mut w = Vec::new();
        for id in &self.dirty {
            if let Some(r) = self.tasks.get(id) {
                w.push(Write::Put(task_path(id), r.encode()?));
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
            .filter_map(|id| {
                let r = self.tasks.get(id)?.clone();
                Some((self.before.get(id).copied().flatten(), r))
            })
            .collect()
    }

    fn touch(&mut self, id: &str) -> Option<&mut TaskRecord> {
        if self.dirty.insert(id.to_string()) {
            let prev = self.tasks.get(id).map(|r| r.state);
            self.before.insert(id.to_string(), prev);
        }
        self.tasks.get_mut(id)
    }

    /// Inserts a batch; all or nothing (the caller commits only on `Ok`). `ids[i]` is the id of
    /// `tasks[i]`, chosen before the transaction so that retries and issues agree on it.
    pub fn enqueue(
        &mut self,
        now: i64,
        tasks: &[NewTask],
        ids: &[String],
        issues: &BTreeMap<String, u64>,
    ) -> Result<(), StoreError> {
        for (t, id) in tasks.iter().zip(ids) {
            if t.task_type.is_empty() || t.tenant.is_empty() {
                return Err(StoreError::Invalid(
                    "task_type and tenant must be non-empty".into(),
                ));
            }
            if self.tasks.contains_key(id) {
                return Err(StoreError::Invalid(format!("task id {id} already exists")));
            }
            let mut state = TaskState::Pending;
            let mut error = None;
            for dep in &t.depends_on {
                let Some(d) = self.tasks.get(dep).filter(|d| d.tenant == t.tenant) else {
                    return Err(StoreError::Invalid(format!(
                        "task {id} depends on unknown task {dep}"
                    )));
                };
                if matches!(d.state, TaskState::Dead | TaskState::Cancelled) {
                    state = TaskState::Dead;
                    error = Some(format!("dependency {dep} will never complete"));
                }
            }
            self.meta.next_seq += 1;
            self.meta_dirty = true;
            let rec = TaskRecord {
                kind: "SENTINEL_TASK".into(),
                seq: self.meta.next_seq,
                id: id.clone(),
                tenant: t.tenant.clone(),
                task_type: t.task_type.clone(),
                priority: t.priority,
                payload: bytes_to_json(&t.payload),
                metadata: t.metadata.clone(),
                max_retries: t.max_retries.unwrap_or(RetryPolicy::default().max_retries),
                timeout_ms: t.timeout_ms.unwrap_or(DEFAULT_TASK_TIMEOUT_MS),
                attempt: 0,
                state,
                worker_id: None,
                worker_incarnation: 0,
                lease_expires_at: None,
                deadline_at: None,
                fence: 0,
                output: None,
                error,
                created_at: now,
                updated_at: now,
                started_at: None,
                finished_at: (state == TaskState::Dead).then_some(now),
                run_at: now,
                depends_on: t.depends_on.clone(),
                affinity: t.affinity.clone(),
                issue: issues.get(id).copied(),
            };
            self.touch(id);
            self.tasks.insert(id.clone(), rec);
        }
        self.wake = true;
        Ok(())
    }

    fn claimable(&self, r: &TaskRecord, now: i64, req: &ClaimRequest) -> bool {
        matches!(r.state, TaskState::Pending | TaskState::Failed)
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
                self.tasks
                    .get(other)
                    .is_some_and(|x| x.worker_id.as_deref() == Some(req.worker_id.as_str()))
            })
            && r.depends_on.iter().all(|d| {
                self.tasks
                    .get(d)
                    .is_some_and(|x| x.state == TaskState::Completed)
            })
    }

    pub fn claim(&mut self, now: i64, req: &ClaimRequest) -> Vec<Task> {
        let mut picked: Vec<(i32, u64, String)> = self
            .tasks
            .values()
            .filter(|r| self.claimable(r, now, req))
            .map(|r| (r.priority, r.seq, r.id.clone()))
            .collect();
        picked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        picked.truncate(req.limit as usize);
        let lease_until = now.saturating_add(ms(req.lease_ms));
        let mut out = Vec::with_capacity(picked.len());
        for (_, _, id) in picked {
            let r = self.touch(&id).expect("picked from the map");
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
                    .tasks
                    .get(dep)
                    .and_then(|d| d.output_bytes())
                    .unwrap_or_default();
                task.dependency_outputs.insert(dep.clone(), output);
            }
            out.push(task);
        }
        out
    }

    fn rejection(&self, id: &str, fence: u64) -> Rejection {
        match self.tasks.get(id) {
            None => Rejection::NotFound,
            Some(r) if r.state == TaskState::Running && r.fence != fence => {
                Rejection::StaleFence { current: r.fence }
            }
            Some(r) => Rejection::NotRunning(r.state),
        }
    }

    fn running_with(&self, id: &str, fence: u64) -> bool {
        self.tasks
            .get(id)
            .is_some_and(|r| r.state == TaskState::Running && r.fence == fence)
    }

    pub fn renew_lease(
        &mut self,
        now: i64,
        id: &str,
        fence: u64,
        lease_ms: u64,
    ) -> Result<i64, Rejection> {
        if !self.running_with(id, fence) {
            return Err(self.rejection(id, fence));
        }
        let until = now.saturating_add(ms(lease_ms));
        let r = self.touch(id).expect("checked above");
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
        let ids: Vec<String> = self
            .tasks
            .values()
            .filter(|r| r.state == TaskState::Running && r.worker_id.as_deref() == Some(worker))
            .filter(|r| r.worker_incarnation == incarnation)
            .map(|r| r.id.clone())
            .collect();
        for id in &ids {
            let r = self.touch(id).expect("listed above");
            r.lease_expires_at = Some(r.lease_expires_at.unwrap_or(0).max(until));
        }
        ids.len() as u64
    }

    fn has_dependents(&self, id: &str) -> bool {
        self.tasks
            .values()
            .any(|r| r.depends_on.iter().any(|d| d == id))
    }

    pub fn complete(&mut self, now: i64, c: &Completion) -> Settlement {
        if !self.running_with(&c.task_id, c.fence) {
            return Settlement::Rejected(self.rejection(&c.task_id, c.fence));
        }
        let wake = self.has_dependents(&c.task_id);
        let r = self.touch(&c.task_id).expect("checked above");
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
        let Some(r) = self.tasks.get(&f.task_id) else {
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
        let state =
            self.apply_failure(now, &f.task_id, attempt, max, &f.error, f.retryable, policy);
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
        id: &str,
        attempt: u32,
        max_retries: u32,
        error: &str,
        retryable: bool,
        policy: &RetryPolicy,
    ) -> TaskState {
        let r = self.touch(id).expect("caller checked");
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
            self.cascade_dead(now, id);
            TaskState::Dead
        }
    }

    fn requeue_lost(&mut self, now: i64, id: &str, reason: &str) -> TaskState {
        let r = self.touch(id).expect("caller checked");
        r.lease_expires_at = None;
        r.deadline_at = None;
        r.updated_at = now;
        if r.attempt > r.max_retries {
            r.state = TaskState::Dead;
            r.error = Some(format!("{reason} (gave up after {} attempts)", r.attempt));
            r.finished_at = Some(now);
            self.cascade_dead(now, id);
            TaskState::Dead
        } else {
            r.state = TaskState::Pending;
            r.error = Some(reason.to_string());
            r.run_at = now;
            TaskState::Pending
        }
    }

    /// Every pending/failed task that (transitively) depends on `root` becomes dead.
    fn cascade_dead(&mut self, now: i64, root: &str) {
        let mut queue = VecDeque::from([root.to_string()]);
        while let Some(dep) = queue.pop_front() {
            let dependents: Vec<String> = self
                .tasks
                .values()
                .filter(|r| r.depends_on.contains(&dep))
                .filter(|r| matches!(r.state, TaskState::Pending | TaskState::Failed))
                .map(|r| r.id.clone())
                .collect();
            for d in dependents {
                let r = self.touch(&d).expect("listed above");
                r.state = TaskState::Dead;
                r.error = Some(format!("dependency {dep} will never complete"));
                r.finished_at = Some(now);
                r.updated_at = now;
                queue.push_back(d);
            }
        }
    }

    pub fn cancel(&mut self, now: i64, tenant: &str, id: &str) -> bool {
        let ok = self.tasks.get(id).is_some_and(|r| {
            r.tenant == tenant
                && matches!(
                    r.state,
                    TaskState::Pending | TaskState::Failed | TaskState::Running
                )
        });
        if !ok {
            return false;
        }
        let r = self.touch(id).expect("checked above");
        r.state = TaskState::Cancelled;
        r.finished_at = Some(now);
        r.updated_at = now;
        r.lease_expires_at = None;
        r.deadline_at = None;
        self.cascade_dead(now, id);
        true
    }

    pub fn retry_dead(&mut self, now: i64, tenant: &str, id: &str) -> bool {
        let Some(r) = self.tasks.get(id) else {
            return false;
        };
        // A task whose dependency is itself dead would sit pending forever: retry that first.
        let blocked = r.depends_on.iter().any(|d| {
            self.tasks
                .get(d)
                .is_some_and(|x| matches!(x.state, TaskState::Dead | TaskState::Cancelled))
        });
        if r.tenant != tenant || r.state != TaskState::Dead || blocked {
            return false;
        }
        let r = self.touch(id).expect("checked above");
        r.state = TaskState::Pending;
        r.attempt = 0;
        r.error = None;
        r.run_at = now;
        r.updated_at = now;
        r.finished_at = None;
        self.wake = true;
        true
    }

    pub fn requeue_worker_tasks(&mut self, now: i64, worker: &str) -> u64 {
        let ids: Vec<String> = self
            .tasks
            .values()
            .filter(|r| r.state == TaskState::Running && r.worker_id.as_deref() == Some(worker))
            .map(|r| r.id.clone())
            .collect();
        for id in &ids {
            self.requeue_lost(now, id, &format!("worker {worker} lost"));
        }
        self.wake |= !ids.is_empty();
        ids.len() as u64
    }

    /// Requeues (dead if out of attempts) every task of `worker` still running under an
    /// incarnation other than `incarnation`: that process was replaced by a new start under the
    /// same name, so its runs are lost.
    pub fn requeue_replaced(&mut self, now: i64, worker: &str, incarnation: u64) -> u64 {
        let lost: Vec<(String, u64)> = self
            .tasks
            .values()
            .filter(|r| r.state == TaskState::Running && r.worker_id.as_deref() == Some(worker))
            .filter(|r| r.worker_incarnation != incarnation)
            .map(|r| (r.id.clone(), r.worker_incarnation))
            .collect();
        for (id, old) in &lost {
            let reason = format!(
                "worker {worker} restarted (incarnation {old} replaced by {incarnation}); the task's run was lost"
            );
            self.requeue_lost(now, id, &reason);
        }
        self.wake |= !lost.is_empty();
        lost.len() as u64
    }

    pub fn reap_expired(&mut self, now: i64, policy: &RetryPolicy) -> ReapReport {
        let expired: Vec<String> = self
            .tasks
            .values()
            .filter(|r| r.state == TaskState::Running)
            .filter(|r| {
                r.lease_expires_at.is_some_and(|l| l <= now)
                    || r.deadline_at.is_some_and(|d| d <= now)
            })
            .map(|r| r.id.clone())
            .collect();
        let mut report = ReapReport {
            skipped: self.skipped,
            ..ReapReport::default()
        };
        for id in expired {
            let r = &self.tasks[&id];
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
                self.apply_failure(now, &id, attempt, max, &msg, true, policy)
            } else {
                let who = worker.as_deref().unwrap_or("?");
                self.requeue_lost(now, &id, &format!("lease of worker {who} expired"))
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

    pub fn set_issue(&mut self, id: &str, number: u64) {
        if let Some(r) = self.touch(id) {
            r.issue = Some(number);
        }
    }
}
