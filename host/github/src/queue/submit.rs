//! Submissions: a batch enqueue and a revival from the dead-letter queue, the two ways tasks
//! become queued by request, so the two places where `max_queued`, the submit-rate bucket and
//! the fair-share raise of a newly backlogged tenant apply. Pure, like `logic.rs`.

use std::collections::{BTreeMap, BTreeSet};

use sentinel_coord::StoreError;
use sentinel_coord::model::*;

use super::logic::{QueueState, key};
use super::record::TaskRecord;
use crate::codec::bytes_to_json;

impl QueueState {
    /// Inserts a batch; all or nothing (the caller commits only on `Ok`; on `Err` nothing here
    /// has changed). `ids[i]` is the id of `tasks[i]`, chosen before the transaction so that
    /// retries and issues agree on it; `issues` holds the numbers of the issues opened for
    /// them. Checks, in order: names, ids unique in their tenant,
    /// dependencies known in their tenant, then each tenant's quotas (`quota.rs`); then inserts
    /// and raises newly backlogged tenants' virtual times (`fair.rs`).
    pub fn enqueue(
        &mut self,
        now: i64,
        tasks: &[NewTask],
        ids: &[String],
        issues: &BTreeMap<TaskKey, u64>,
    ) -> Result<(), StoreError> {
        let mut batch = BTreeSet::new();
        for (t, id) in tasks.iter().zip(ids) {
            if t.task_type.is_empty() || t.tenant.is_empty() {
                return Err(StoreError::Invalid(
                    "task_type and tenant must be non-empty".into(),
                ));
            }
            let k = key(&t.tenant, id);
            if self.tasks.contains_key(&k) || batch.contains(&k) {
                return Err(StoreError::Invalid(format!(
                    "task id {id} already exists in tenant {}",
                    t.tenant
                )));
            }
            for dep in &t.depends_on {
                let dk = key(&t.tenant, dep);
                if !self.tasks.contains_key(&dk) && !batch.contains(&dk) {
                    return Err(StoreError::Invalid(format!(
                        "task {id} depends on unknown task {dep}"
                    )));
                }
            }
            batch.insert(k);
        }
        let mut per_tenant: BTreeMap<&str, u64> = BTreeMap::new();
        for t in tasks {
            *per_tenant.entry(t.tenant.as_str()).or_default() += 1;
        }
        let backlogged_before = self.backlogged();
        let buckets = self.check_submission(now, &per_tenant, &backlogged_before)?;
        // Everything is checked: from here on the batch goes in whole.
        for (tenant, bucket) in buckets {
            self.set_bucket(&tenant, bucket);
        }
        let mut raised = BTreeSet::new();
        for (t, id) in tasks.iter().zip(ids) {
            let mut state = TaskState::Pending;
            let mut error = None;
            for dep in &t.depends_on {
                let d = &self.tasks[&key(&t.tenant, dep)];
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
                issue: issues.get(&key(&t.tenant, id)).copied(),
                vt: None,
                vt_at: None,
            };
            let k = key(&t.tenant, id);
            self.touch(&k);
            self.tasks.insert(k.clone(), rec);
            // The first queued task of a tenant that had none makes it backlogged.
            if state == TaskState::Pending
                && !backlogged_before.contains_key(&t.tenant)
                && raised.insert(t.tenant.clone())
            {
                self.raise_on_backlog(&k, &backlogged_before);
            }
        }
        self.wake = true;
        Ok(())
    }

    /// Dead → pending. `Ok(false)` if there is no such dead task or a dependency of it is dead
    /// or cancelled; `Err(Quota)` if the tenant is at `max_queued`. A revival that makes the
    /// tenant backlogged raises its virtual time as an enqueue does.
    pub fn retry_dead(&mut self, now: i64, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let k = key(tenant, id);
        let Some(r) = self.tasks.get(&k) else {
            return Ok(false);
        };
        // A task whose dependency is itself dead would sit pending forever: retry that first.
        let blocked = r.depends_on.iter().any(|d| {
            self.get(tenant, d)
                .is_some_and(|x| matches!(x.state, TaskState::Dead | TaskState::Cancelled))
        });
        if r.state != TaskState::Dead || blocked {
            return Ok(false);
        }
        let backlogged = self.backlogged();
        self.check_queued(tenant, backlogged.get(tenant).copied().unwrap_or(0), 1)?;
        let r = self.touch(&k).expect("checked above");
        r.state = TaskState::Pending;
        r.attempt = 0;
        r.error = None;
        r.run_at = now;
        r.updated_at = now;
        r.finished_at = None;
        if !backlogged.contains_key(tenant) {
            self.raise_on_backlog(&k, &backlogged);
        }
        self.wake = true;
        Ok(true)
    }
}
