use std::collections::BTreeMap;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Task lifecycle. `Failed` means "failed and waiting for a retry"; `Dead` means "in the
/// dead-letter queue".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Pending,
    Running,
    Completed,
    Failed,
    Dead,
    Cancelled,
}

impl TaskState {
    pub const ALL: [TaskState; 6] = [
        TaskState::Pending,
        TaskState::Running,
        TaskState::Completed,
        TaskState::Failed,
        TaskState::Dead,
        TaskState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Dead => "dead",
            TaskState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        TaskState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// No further transition happens without an explicit retry-from-DLQ.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Dead | TaskState::Cancelled
        )
    }
}

/// Placement rules (seed 002).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Affinity {
    pub required_worker: Option<String>,
    /// Run on the worker that ran (or runs) this task (an id in the same tenant); the task waits
    /// until that worker is known.
    pub same_worker_as: Option<String>,
    pub excluded_workers: Vec<String>,
}

impl Affinity {
    pub fn is_empty(&self) -> bool {
        self.required_worker.is_none()
            && self.same_worker_as.is_none()
            && self.excluded_workers.is_empty()
    }
}

/// A task to submit. `None` for `max_retries`/`timeout_ms` means the queue's configured default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    /// Leave `None` to get a UUID v7 (time ordered).
    pub id: Option<String>,
    pub tenant: String,
    pub task_type: String,
    pub priority: i32,
    pub payload: Vec<u8>,
    pub metadata: BTreeMap<String, String>,
    pub max_retries: Option<u32>,
    pub timeout_ms: Option<u64>,
    /// Ids of tasks of the same tenant that must be `completed` before this one can be claimed
    /// (an id that exists only in another tenant is an unknown dependency).
    pub depends_on: Vec<String>,
    pub affinity: Affinity,
}

impl NewTask {
    pub fn new(task_type: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            id: None,
            tenant: super::DEFAULT_TENANT.to_string(),
            task_type: task_type.into(),
            priority: 0,
            payload: payload.into(),
            metadata: BTreeMap::new(),
            max_retries: None,
            timeout_ms: None,
            depends_on: Vec::new(),
            affinity: Affinity::default(),
        }
    }

    /// A task whose payload is the JSON encoding of `value` (what the HTTP API accepts).
    pub fn json(task_type: impl Into<String>, value: &serde_json::Value) -> Self {
        Self::new(task_type, serde_json::to_vec(value).unwrap_or_default())
    }

    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }
    pub fn with_timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = Some(ms);
        self
    }
    pub fn with_metadata(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.metadata.insert(k.into(), v.into());
        self
    }
    pub fn depends_on(mut self, ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.depends_on.extend(ids.into_iter().map(Into::into));
        self
    }
    pub fn with_affinity(mut self, affinity: Affinity) -> Self {
        self.affinity = affinity;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Unique within `tenant` (the same id may live in another tenant).
    pub id: String,
    pub tenant: String,
    pub task_type: String,
    pub priority: i32,
    pub payload: Vec<u8>,
    pub metadata: BTreeMap<String, String>,
    pub max_retries: u32,
    /// 0 = no per-task deadline.
    pub timeout_ms: u64,
    /// How many times the task has been handed to a worker (1 on its first run).
    pub attempt: u32,
    pub state: TaskState,
    /// The worker that holds it (running) or last held it.
    pub worker_id: Option<String>,
    pub lease_expires_at: Option<i64>,
    /// Fencing token of the current (or last) claim; a completion must present it.
    pub fence: u64,
    pub output: Option<Vec<u8>>,
    /// Last error; for a dead task, the reason it is in the dead-letter queue.
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Not claimable before this instant (retry backoff).
    pub run_at: i64,
    pub depends_on: Vec<String>,
    pub affinity: Affinity,
    /// Filled on claim: the output of every task in `depends_on` (same tenant), by task id.
    pub dependency_outputs: BTreeMap<String, Vec<u8>>,
}

impl Task {
    /// The task's identity: `(tenant, id)`.
    pub fn key(&self) -> super::TaskKey {
        super::TaskKey::new(self.tenant.clone(), self.id.clone())
    }

    pub fn payload_json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::from_slice(&self.payload)
    }
}

/// One claim, for up to `limit` tasks, in one transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimRequest {
    pub worker_id: String,
    /// Only these task types; `None` = any.
    pub task_types: Option<Vec<String>>,
    /// Only these tenants; `None` = any.
    pub tenants: Option<Vec<String>>,
    pub limit: u32,
    pub lease_ms: u64,
    /// The claiming process's incarnation: the leases belong to it (see
    /// [`super::WorkerRegistration::incarnation`]); only its heartbeats extend them, and a newer
    /// incarnation's registration requeues them.
    #[serde(default)]
    pub incarnation: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// With `task_id`, the task's identity (ids are unique per tenant).
    pub tenant: String,
    pub task_id: String,
    pub fence: u64,
    pub output: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// With `task_id`, the task's identity (ids are unique per tenant).
    pub tenant: String,
    pub task_id: String,
    pub fence: u64,
    pub error: String,
    /// `false` sends the task straight to the dead-letter queue.
    pub retryable: bool,
}

/// A claim a worker gives back unstarted ([`crate::store::QueueStore::release_claims`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskClaim {
    pub tenant: String,
    pub task_id: String,
    pub fence: u64,
}

impl TaskClaim {
    /// The claim of a task as it was handed out.
    pub fn of(task: &Task) -> Self {
        Self {
            tenant: task.tenant.clone(),
            task_id: task.id.clone(),
            fence: task.fence,
        }
    }
}

/// Why a completion, failure or lease renewal was not applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    NotFound,
    NotRunning(TaskState),
    StaleFence { current: u64 },
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::NotFound => write!(f, "task not found"),
            Rejection::NotRunning(s) => write!(f, "task is {}", s.as_str()),
            Rejection::StaleFence { current } => {
                write!(f, "stale fencing token (current {current})")
            }
        }
    }
}

/// Result of a completion or failure: the state the task moved to, or why it was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Settlement {
    Applied(TaskState),
    Rejected(Rejection),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFilter {
    pub tenant: Option<String>,
    pub state: Option<TaskState>,
    pub task_type: Option<String>,
    pub worker_id: Option<String>,
    /// 0 = no limit.
    pub limit: u32,
    /// Which way the listing runs.
    pub order: TaskOrder,
    /// Keyset paging (`Oldest`/`Newest` only): only tasks after this one in `order` (the last
    /// task of the previous page, named by tenant and id, so the cursor is unambiguous when
    /// `tenant` is `None`). A key that names no task, or a task outside `tenant` when `tenant`
    /// is set, is `StoreError::Invalid`. Each page is one index range read, whatever the size
    /// of the history.
    pub after: Option<super::TaskKey>,
}

/// Order of a task listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskOrder {
    /// The queue's order: priority (desc), then submission order.
    #[default]
    Priority,
    /// Submission order, oldest first.
    Oldest,
    /// Submission order, newest first.
    Newest,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    pub pending: u64,
    pub running: u64,
    pub completed: u64,
    pub failed: u64,
    pub dead: u64,
    pub cancelled: u64,
}

impl QueueStats {
    pub fn total(&self) -> u64 {
        self.pending + self.running + self.completed + self.failed + self.dead + self.cancelled
    }

    pub fn add(&mut self, state: TaskState, n: u64) {
        match state {
            TaskState::Pending => self.pending += n,
            TaskState::Running => self.running += n,
            TaskState::Completed => self.completed += n,
            TaskState::Failed => self.failed += n,
            TaskState::Dead => self.dead += n,
            TaskState::Cancelled => self.cancelled += n,
        }
    }
}

/// What one expiry sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReapReport {
    /// Lease expired (worker presumed dead): back to pending.
    pub requeued: u64,
    /// Deadline passed: failed, waiting for a retry.
    pub retrying: u64,
    /// Out of attempts: moved to the dead-letter queue.
    pub dead: u64,
    /// Records the sweep could not process (undecodable): left alone and logged, so one bad
    /// record never stops the sweep for everyone else.
    #[serde(default)]
    pub skipped: u64,
}

/// Retry with exponential backoff and jitter (seed 002 defaults: 3 retries, 1 s base, 60 s cap,
/// factor 2). A task is run at most `max_retries + 1` times.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    pub backoff_factor: f64,
    /// Fraction of the delay that is randomised (0 = none, 1 = "full jitter").
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay_ms: 1000,
            max_delay_ms: 60_000,
            backoff_factor: 2.0,
            jitter: 0.5,
        }
    }
}

impl RetryPolicy {
    /// The capped exponential delay after the `attempt`-th run failed, before jitter.
    pub fn base_delay_for(&self, attempt: u32) -> u64 {
        let exp = attempt.saturating_sub(1).min(64) as i32;
        let d = self.base_delay_ms as f64 * self.backoff_factor.powi(exp);
        if d.is_finite() {
            (d as u64).min(self.max_delay_ms)
        } else {
            self.max_delay_ms
        }
    }

    /// Delay with jitter: uniformly in `[d * (1 - jitter), d]`, so retries of tasks that failed
    /// together spread out without ever exceeding the cap.
    pub fn delay_for(&self, attempt: u32) -> u64 {
        let d = self.base_delay_for(attempt);
        let j = self.jitter.clamp(0.0, 1.0);
        if j == 0.0 || d == 0 {
            return d;
        }
        let low = (d as f64 * (1.0 - j)) as u64;
        rand::rng().random_range(low..=d)
    }
}

/// Seed 002 `defaultTaskTimeoutMs`: used when neither the task nor the queue sets one.
pub const DEFAULT_TASK_TIMEOUT_MS: u64 = 300_000;
