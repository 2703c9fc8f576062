//! The task record: one JSON file `tasks/<enc tenant>/<enc id>.json` in the queue document (a
//! task's identity is `(tenant, id)`). It is the authority on a task's state, fence and lease;
//! the task's issue only mirrors it. Conversions to and from the contract's [`Task`] live here
//! and nowhere else.
//!
//! Layout history (append-only; every store ever written still opens):
//! 1. `tasks/<enc id>.json`: ids were unique across tenants. Such a *legacy* record is still read
//!    (its file name has no `/` after `tasks/`; the record itself names its tenant), and the
//!    first transaction that changes it moves it to the layout-2 path in the same commit.
//! 2. `tasks/<enc tenant>/<enc id>.json`, plus the optional fair-share stamps `vt`/`vt_at`
//!    (absent in older records, which then simply carry no fairness history).

use std::collections::BTreeMap;

use sentinel_coord::StoreError;
use sentinel_coord::model::{Affinity, Task, TaskKey, TaskState};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codec::{bytes_to_json, enc, json_to_bytes};

pub const TASKS_DIR: &str = "tasks/";
pub const META_PATH: &str = "meta.json";

/// Where a task's record lives (layout 2).
pub fn task_path(key: &TaskKey) -> String {
    format!("{TASKS_DIR}{}/{}.json", enc(&key.tenant), enc(&key.id))
}

/// Where a layout-1 record of task `id` lived (ids were unique across tenants then).
pub fn legacy_task_path(id: &str) -> String {
    format!("{TASKS_DIR}{}.json", enc(id))
}

/// Whether `path` (under [`TASKS_DIR`]) is a layout-1 record.
pub fn is_legacy_path(path: &str) -> bool {
    !path[TASKS_DIR.len().min(path.len())..].contains('/')
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    #[serde(rename = "type")]
    pub kind: String,
    /// Submission order across the whole queue (FIFO within a priority).
    pub seq: u64,
    pub id: String,
    pub tenant: String,
    pub task_type: String,
    pub priority: i32,
    pub payload: Value,
    pub metadata: BTreeMap<String, String>,
    pub max_retries: u32,
    pub timeout_ms: u64,
    pub attempt: u32,
    pub state: TaskState,
    pub worker_id: Option<String>,
    /// The incarnation of `worker_id` that claimed it (0 = unannounced).
    #[serde(default)]
    pub worker_incarnation: u64,
    pub lease_expires_at: Option<i64>,
    pub deadline_at: Option<i64>,
    pub fence: u64,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub run_at: i64,
    pub depends_on: Vec<String>,
    pub affinity: Affinity,
    /// The mirroring issue's number, if one was opened.
    pub issue: Option<u64>,
    /// Fair share (see `queue/fair.rs`): the tenant's virtual time after this task was claimed,
    /// or after the tenant was raised when this task made it backlogged. A tenant's virtual time
    /// is the largest `vt` of its records: it only ever grows, so no separate file (and no
    /// extra request) is needed to keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vt: Option<i64>,
    /// The virtual time this task was claimed at (before the advance). The store's virtual
    /// clock is the largest `vt_at` of all records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vt_at: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueMeta {
    pub next_seq: u64,
}

impl TaskRecord {
    pub fn key(&self) -> TaskKey {
        TaskKey::new(self.tenant.clone(), self.id.clone())
    }

    /// Pending, or failed awaiting a retry: what `max_queued` counts.
    pub fn queued(&self) -> bool {
        matches!(self.state, TaskState::Pending | TaskState::Failed)
    }

    pub fn payload_bytes(&self) -> Vec<u8> {
        json_to_bytes(&self.payload).unwrap_or_default()
    }

    pub fn output_bytes(&self) -> Option<Vec<u8>> {
        self.output.as_ref().and_then(json_to_bytes)
    }

    pub fn set_output(&mut self, out: &[u8]) {
        self.output = Some(bytes_to_json(out));
    }

    pub fn to_task(&self) -> Task {
        Task {
            id: self.id.clone(),
            tenant: self.tenant.clone(),
            task_type: self.task_type.clone(),
            priority: self.priority,
            payload: self.payload_bytes(),
            metadata: self.metadata.clone(),
            max_retries: self.max_retries,
            timeout_ms: self.timeout_ms,
            attempt: self.attempt,
            state: self.state,
            worker_id: self.worker_id.clone(),
            lease_expires_at: self.lease_expires_at,
            fence: self.fence,
            output: self.output_bytes(),
            error: self.error.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            run_at: self.run_at,
            depends_on: self.depends_on.clone(),
            affinity: self.affinity.clone(),
            dependency_outputs: BTreeMap::new(),
        }
    }

    pub fn decode(path: &str, v: &Value) -> Result<Self, StoreError> {
        serde_json::from_value(v.clone())
            .map_err(|e| StoreError::Corrupt(format!("queue: {path}: {e}")))
    }

    pub fn encode(&self) -> Result<Value, StoreError> {
        serde_json::to_value(self).map_err(|e| StoreError::Invalid(e.to_string()))
    }
}
