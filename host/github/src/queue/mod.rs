//! The queue: every task record lives in the queue document (`refs/sentinel/queue`, one file per
//! task), so a claim, a settlement or a batch enqueue is one optimistic transaction: two workers
//! can never both claim a task, because the second one's ref update is refused and it recomputes
//! on a state where the task is running. Each claim increments the task's fence; a completion or
//! failure applies only with the current fence on a running task (exactly-once completion).
//!
//! After a transaction commits (never before), this module mirrors state changes to issues
//! ([`crate::issues`]), adds task outcomes to worker stats (a separate registry transaction:
//! GitHub has no transaction spanning two refs, so stats can lag a settlement if the process dies
//! in between) and wakes subscribers. It never decides anything from an issue's labels.

mod fair;
pub mod logic;
pub mod quota;
pub mod record;
mod submit;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use sentinel_coord::model::*;
use sentinel_coord::{Clock, QueueStore, StoreError, StoreResult, Topic};

use crate::doc::Doc;
use crate::issues::Issues;
use crate::notify::Notifier;
use crate::registry::GithubRegistry;
use logic::{Outcome, QueueState};

pub const QUEUE_REF: &str = "sentinel/queue";

pub struct GithubQueue {
    doc: Doc,
    clock: Arc<dyn Clock>,
    issues: Option<Issues>,
    registry: Arc<GithubRegistry>,
    notify: Arc<Notifier>,
}

/// What a committed transaction changed, for the after-commit work.
struct Effects {
    changed: Vec<(Option<TaskState>, record::TaskRecord)>,
    outcomes: Vec<Outcome>,
    wake: bool,
}

impl GithubQueue {
    pub fn new(
        doc: Doc,
        clock: Arc<dyn Clock>,
        issues: Option<Issues>,
        registry: Arc<GithubRegistry>,
        notify: Arc<Notifier>,
    ) -> Self {
        Self {
            doc,
            clock,
            issues,
            registry,
            notify,
        }
    }

    pub fn doc(&self) -> &Doc {
        &self.doc
    }

    /// One transaction: `f` runs on a fresh state (possibly several times) at the store's now.
    async fn txn<T, F>(&self, what: &str, mut f: F) -> StoreResult<T>
    where
        F: FnMut(&mut QueueState, i64) -> StoreResult<T>,
    {
        let clock = self.clock.clone();
        let (out, effects) = self
            .doc
            .transact(what, |snap| {
                let mut st = QueueState::load(snap)?;
                let out = f(&mut st, clock.now_ms())?;
                let effects = Effects {
                    changed: st.changed(),
                    outcomes: std::mem::take(&mut st.outcomes),
                    wake: st.wake,
                };
                Ok((st.writes()?, (out, effects)))
            })
            .await?;
        self.after_commit(effects).await;
        Ok(out)
    }

    async fn after_commit(&self, e: Effects) {
        if e.wake {
            self.notify.bump(Topic::Tasks);
        }
        if let Some(issues) = &self.issues {
            for (before, rec) in &e.changed {
                issues.mirror(*before, rec).await;
            }
        }
        if !e.outcomes.is_empty()
            && let Err(err) = self.registry.add_outcomes(&e.outcomes).await
        {
            tracing::warn!(error = %err, "task outcomes committed but worker stats not updated");
        }
    }

    async fn read(&self) -> StoreResult<QueueState> {
        QueueState::load(&self.doc.read().await?)
    }

    /// Requeues the tasks still running under a replaced incarnation of `worker_id` (see
    /// [`QueueState::requeue_replaced`]); returns how many.
    pub async fn requeue_replaced(&self, worker_id: &str, incarnation: u64) -> StoreResult<u64> {
        self.txn("requeue a replaced incarnation's tasks", |st, now| {
            Ok(st.requeue_replaced(now, worker_id, incarnation))
        })
        .await
    }

    /// Inserts or replaces a tenant's settings (no commit if they are already stored); returns
    /// the revision now stored.
    pub async fn put_tenant(&self, s: &TenantSettings) -> StoreResult<u64> {
        self.txn("tenant settings", |st, _| {
            st.wake |= st.put_tenant(s);
            Ok(st.tenants.get(&s.tenant).map_or(0, |f| f.revision))
        })
        .await
    }

    pub async fn get_tenant(&self, tenant: &str) -> StoreResult<Option<TenantSettings>> {
        Ok(self.read().await?.settings(tenant).cloned())
    }

    /// The tenant's queued and running tasks.
    pub async fn tally(&self, tenant: &str) -> StoreResult<quota::Tally> {
        Ok(self.read().await?.tally(tenant))
    }

    /// Enqueues people's issue submissions (see [`Issues::submissions`]); returns the new ids.
    /// Safe to run from every worker: the task id is derived from the issue number, so a second
    /// importer finds it present and skips it.
    pub async fn import_submissions(&self) -> StoreResult<Vec<String>> {
        let Some(issues) = &self.issues else {
            return Ok(Vec::new());
        };
        let subs = issues.submissions().await?;
        if subs.is_empty() {
            return Ok(Vec::new());
        }
        let imported = self
            .txn("import issue submissions", |st, now| {
                let mut ids = Vec::new();
                for (number, id, task) in &subs {
                    if st.get(&task.tenant, id).is_some() {
                        continue;
                    }
                    let map = BTreeMap::from([(logic::key(&task.tenant, id), *number)]);
                    match st.enqueue(
                        now,
                        std::slice::from_ref(task),
                        std::slice::from_ref(id),
                        &map,
                    ) {
                        Ok(()) => ids.push(id.clone()),
                        Err(e) => tracing::warn!(issue = number, error = %e, "submission refused"),
                    }
                }
                Ok(ids)
            })
            .await?;
        Ok(imported)
    }
}

#[async_trait]
impl QueueStore for GithubQueue {
    async fn enqueue(&self, tasks: &[NewTask]) -> StoreResult<Vec<String>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        validate_tasks(tasks)?;
        // Ids are chosen once, so that retried transactions and the issues agree on them.
        let ids: Vec<String> = tasks
            .iter()
            .map(|t| {
                t.id.clone()
                    .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
            })
            .collect();
        let mut issue_numbers = BTreeMap::new();
        if let Some(issues) = &self.issues {
            // Validate before opening issues, so a refused batch leaves nothing behind.
            let mut dry = self.read().await?;
            dry.enqueue(self.clock.now_ms(), tasks, &ids, &BTreeMap::new())?;
            for (t, id) in tasks.iter().zip(&ids) {
                let state = dry
                    .get(&t.tenant, id)
                    .map_or(TaskState::Pending, |r| r.state);
                match issues.open(id, t, state).await {
                    Ok(n) => {
                        issue_numbers.insert(logic::key(&t.tenant, id), n);
                    }
                    Err(e) => {
                        let opened: Vec<u64> = issue_numbers.values().copied().collect();
                        issues.abandon(&opened, &e.to_string()).await;
                        return Err(e.into());
                    }
                }
            }
        }
        let result = self
            .txn("enqueue", |st, now| {
                st.enqueue(now, tasks, &ids, &issue_numbers)?;
                Ok(())
            })
            .await;
        if let (Err(e), Some(issues)) = (&result, &self.issues) {
            let opened: Vec<u64> = issue_numbers.values().copied().collect();
            issues.abandon(&opened, &e.to_string()).await;
        }
        result.map(|_| ids)
    }

    async fn claim(&self, req: &ClaimRequest) -> StoreResult<Vec<Task>> {
        req.validate()?;
        if req.limit == 0 {
            return Ok(Vec::new());
        }
        self.txn("claim", |st, now| Ok(st.claim(now, req))).await
    }

    async fn renew_lease(
        &self,
        tenant: &str,
        task_id: &str,
        fence: u64,
        lease_ms: u64,
    ) -> StoreResult<Result<i64, Rejection>> {
        validate_lease(lease_ms)?;
        let k = logic::key(tenant, task_id);
        self.txn("renew lease", |st, now| {
            Ok(st.renew_lease(now, &k, fence, lease_ms))
        })
        .await
    }

    async fn extend_worker_leases(
        &self,
        worker_id: &str,
        incarnation: u64,
        lease_ms: u64,
    ) -> StoreResult<u64> {
        validate_lease(lease_ms)?;
        self.txn("extend leases", |st, now| {
            Ok(st.extend_worker_leases(now, worker_id, incarnation, lease_ms))
        })
        .await
    }

    async fn complete(&self, completions: &[Completion]) -> StoreResult<Vec<Settlement>> {
        self.txn("complete", |st, now| {
            Ok(completions.iter().map(|c| st.complete(now, c)).collect())
        })
        .await
    }

    async fn fail(
        &self,
        failures: &[Failure],
        policy: &RetryPolicy,
    ) -> StoreResult<Vec<Settlement>> {
        self.txn("fail", |st, now| {
            Ok(failures.iter().map(|f| st.fail(now, f, policy)).collect())
        })
        .await
    }

    async fn release_claims(&self, claims: &[TaskClaim]) -> StoreResult<u64> {
        if claims.is_empty() {
            return Ok(0);
        }
        self.txn("release unstarted claims", |st, now| {
            Ok(st.release_claims(now, claims))
        })
        .await
    }

    async fn cancel(&self, tenant: &str, task_id: &str) -> StoreResult<bool> {
        self.txn("cancel", |st, now| Ok(st.cancel(now, tenant, task_id)))
            .await
    }

    async fn retry_dead(&self, tenant: &str, task_id: &str) -> StoreResult<bool> {
        self.txn("retry from DLQ", |st, now| {
            st.retry_dead(now, tenant, task_id)
        })
        .await
    }

    async fn get_task(&self, tenant: &str, task_id: &str) -> StoreResult<Option<Task>> {
        let st = self.read().await?;
        Ok(st.get(tenant, task_id).map(|r| r.to_task()))
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<Vec<Task>> {
        let st = self.read().await?;
        let mut recs: Vec<_> = st
            .tasks
            .values()
            .filter(|r| filter.tenant.as_ref().is_none_or(|t| *t == r.tenant))
            .filter(|r| filter.state.is_none_or(|s| s == r.state))
            .filter(|r| filter.task_type.as_ref().is_none_or(|t| *t == r.task_type))
            .filter(|r| {
                filter
                    .worker_id
                    .as_ref()
                    .is_none_or(|w| Some(w) == r.worker_id.as_ref())
            })
            .collect();
        match filter.order {
            TaskOrder::Priority => {
                if filter.after.is_some() {
                    return Err(StoreError::Invalid(
                        "`after` pages only the oldest/newest orders".into(),
                    ));
                }
                recs.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.seq.cmp(&b.seq)));
            }
            TaskOrder::Oldest => recs.sort_by_key(|r| r.seq),
            TaskOrder::Newest => recs.sort_by_key(|r| std::cmp::Reverse(r.seq)),
        }
        if let Some(after) = &filter.after {
            let Some(anchor) = st
                .tasks
                .get(after)
                .filter(|r| filter.tenant.as_ref().is_none_or(|t| *t == r.tenant))
            else {
                return Err(StoreError::Invalid(format!(
                    "no task {}/{} to list after",
                    after.tenant, after.id
                )));
            };
            let seq = anchor.seq;
            recs.retain(|r| match filter.order {
                TaskOrder::Newest => r.seq < seq,
                _ => r.seq > seq,
            });
        }
        if filter.limit > 0 {
            recs.truncate(filter.limit as usize);
        }
        Ok(recs.into_iter().map(|r| r.to_task()).collect())
    }

    async fn queue_stats(&self, tenant: Option<&str>) -> StoreResult<QueueStats> {
        let st = self.read().await?;
        let mut stats = QueueStats::default();
        for r in st.tasks.values() {
            if tenant.is_none_or(|t| t == r.tenant) {
                stats.add(r.state, 1);
            }
        }
        Ok(stats)
    }

    async fn requeue_worker_tasks(&self, worker_id: &str) -> StoreResult<u64> {
        self.txn("requeue a lost worker's tasks", |st, now| {
            Ok(st.requeue_worker_tasks(now, worker_id))
        })
        .await
    }

    async fn reap_expired(&self, policy: &RetryPolicy) -> StoreResult<ReapReport> {
        self.txn("reap expired leases", |st, now| {
            Ok(st.reap_expired(now, policy))
        })
        .await
    }
}
