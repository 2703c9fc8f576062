//! Queue (seed 002): submit, claim, complete, fail, cancel, DLQ, results, stats, on top of
//! [`QueueStore`], applying the configured defaults and retry policy. It also turns the store's
//! change notifications into "wait for work" so idle workers sleep instead of polling. It never
//! decides which worker should run a task (that is the balancer's job).

use std::sync::Arc;
use std::time::Duration;

use crate::config::QueueConfig;
use crate::error::{QueueError, StoreError};
use crate::model::*;
use crate::store::{Store, Topic};

#[derive(Clone)]
pub struct Queue {
    store: Arc<dyn Store>,
    config: QueueConfig,
    tenant: String,
}

impl Queue {
    pub fn new(store: Arc<dyn Store>, config: QueueConfig) -> Self {
        Self {
            store,
            config,
            tenant: DEFAULT_TENANT.to_string(),
        }
    }

    /// Operations addressed by task id (get, cancel, retry, result, stats) see only this tenant.
    pub fn for_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    fn with_defaults(&self, mut t: NewTask) -> NewTask {
        t.max_retries.get_or_insert(self.config.retry.max_retries);
        t.timeout_ms.get_or_insert(self.config.default_timeout_ms);
        t
    }

    /// Durable before it returns. A task built with the default tenant is submitted under this
    /// queue's tenant.
    pub async fn submit(&self, task: NewTask) -> Result<String, QueueError> {
        Ok(self.submit_batch(vec![task]).await?.remove(0))
    }

    /// All or nothing, in one transaction.
    pub async fn submit_batch(&self, tasks: Vec<NewTask>) -> Result<Vec<String>, QueueError> {
        let tasks: Vec<NewTask> = tasks
            .into_iter()
            .map(|mut t| {
                if t.tenant == DEFAULT_TENANT {
                    t.tenant = self.tenant.clone();
                }
                self.with_defaults(t)
            })
            .collect();
        Ok(self.store.enqueue(&tasks).await?)
    }

    pub fn claim_request(
        &self,
        worker_id: &str,
        task_types: Option<Vec<String>>,
        limit: u32,
    ) -> ClaimRequest {
        ClaimRequest {
            worker_id: worker_id.to_string(),
            task_types,
            tenants: None,
            limit,
            lease_ms: self.config.lease_ms,
            incarnation: 0,
        }
    }

    pub async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Task>, QueueError> {
        Ok(self.store.claim(req).await?)
    }

    /// Claims up to `req.limit` tasks, sleeping until a submit/requeue notification (or the idle
    /// poll, for retry backoffs that end silently) when there are none, for at most `wait`.
    pub async fn next_batch(
        &self,
        req: &ClaimRequest,
        wait: Duration,
    ) -> Result<Vec<Task>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut rx = self.store.subscribe(Topic::Tasks);
        loop {
            // Mark seen before claiming: a submit racing with this claim still wakes us.
            rx.borrow_and_update();
            let got = self.store.claim(req).await?;
            if !got.is_empty() {
                return Ok(got);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(got);
            }
            let nap = (deadline - now).min(Duration::from_millis(self.config.idle_poll_ms));
            let _ = tokio::time::timeout(nap, rx.changed()).await;
        }
    }

    pub async fn complete(&self, task: &Task, output: Vec<u8>) -> Result<(), QueueError> {
        let c = Completion {
            tenant: task.tenant.clone(),
            task_id: task.id.clone(),
            fence: task.fence,
            output,
        };
        match self.store.complete(&[c]).await?.pop() {
            Some(Settlement::Applied(_)) => Ok(()),
            Some(Settlement::Rejected(r)) => Err(rejected(&task.id, r)),
            None => Err(StoreError::Backend("no settlement returned".into()).into()),
        }
    }

    /// One transaction; one settlement per completion, in order.
    pub async fn complete_batch(
        &self,
        completions: &[Completion],
    ) -> Result<Vec<Settlement>, QueueError> {
        Ok(self.store.complete(completions).await?)
    }

    /// Returns the state the task moved to: `Failed` (will retry) or `Dead`.
    pub async fn fail(
        &self,
        task: &Task,
        error: &str,
        retryable: bool,
    ) -> Result<TaskState, QueueError> {
        let f = Failure {
            tenant: task.tenant.clone(),
            task_id: task.id.clone(),
            fence: task.fence,
            error: error.to_string(),
            retryable,
        };
        match self.store.fail(&[f], &self.config.retry).await?.pop() {
            Some(Settlement::Applied(s)) => Ok(s),
            Some(Settlement::Rejected(r)) => Err(rejected(&task.id, r)),
            None => Err(StoreError::Backend("no settlement returned".into()).into()),
        }
    }

    pub async fn fail_batch(&self, failures: &[Failure]) -> Result<Vec<Settlement>, QueueError> {
        Ok(self.store.fail(failures, &self.config.retry).await?)
    }

    /// Returns the new lease expiry.
    pub async fn renew_lease(&self, task: &Task) -> Result<i64, QueueError> {
        self.store
            .renew_lease(&task.tenant, &task.id, task.fence, self.config.lease_ms)
            .await?
            .map_err(|r| rejected(&task.id, r))
    }

    pub async fn cancel(&self, task_id: &str) -> Result<bool, QueueError> {
        Ok(self.store.cancel(&self.tenant, task_id).await?)
    }

    pub async fn retry_dead(&self, task_id: &str) -> Result<bool, QueueError> {
        Ok(self.store.retry_dead(&self.tenant, task_id).await?)
    }

    pub async fn get(&self, task_id: &str) -> Result<Option<Task>, QueueError> {
        Ok(self.store.get_task(&self.tenant, task_id).await?)
    }

    /// The stored output of a completed task; `None` while it is not completed.
    pub async fn result(&self, task_id: &str) -> Result<Option<Vec<u8>>, QueueError> {
        let task = self
            .get(task_id)
            .await?
            .ok_or_else(|| QueueError::NotFound {
                task_id: task_id.to_string(),
            })?;
        Ok((task.state == TaskState::Completed).then(|| task.output.unwrap_or_default()))
    }

    /// The dead-letter queue of this tenant; each task's `error` is the reason.
    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<Task>, QueueError> {
        self.list(Some(TaskState::Dead), limit).await
    }

    pub async fn list(
        &self,
        state: Option<TaskState>,
        limit: u32,
    ) -> Result<Vec<Task>, QueueError> {
        let filter = TaskFilter {
            tenant: Some(self.tenant.clone()),
            state,
            limit,
            ..Default::default()
        };
        Ok(self.store.list_tasks(&filter).await?)
    }

    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        Ok(self.store.queue_stats(Some(&self.tenant)).await?)
    }

    /// Across all tenants: a maintenance chore.
    pub async fn reap_expired(&self) -> Result<ReapReport, QueueError> {
        Ok(self.store.reap_expired(&self.config.retry).await?)
    }

    pub async fn requeue_worker_tasks(&self, worker_id: &str) -> Result<u64, QueueError> {
        Ok(self.store.requeue_worker_tasks(worker_id).await?)
    }
}

fn rejected(task_id: &str, r: Rejection) -> QueueError {
    match r {
        Rejection::NotFound => QueueError::NotFound {
            task_id: task_id.to_string(),
        },
        other => QueueError::LeaseLost {
            task_id: task_id.to_string(),
            reason: other.to_string(),
        },
    }
}
