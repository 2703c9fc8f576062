//! `/v1/tasks` and `/v1/dlq`: submit, inspect, list, cancel, retry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use sentinel_coord::model::{Affinity, NewTask, Task, TaskFilter, TaskState};
use serde::{Deserialize, Serialize};

use super::{ApiError, iso, tenant};
use crate::node::NodeState;

/// One task as submitted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitTask {
    /// Optional caller-chosen id (idempotency is the caller's; a duplicate id is rejected).
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub task_type: String,
    #[serde(default)]
    pub payload: serde_json::Value,
    #[serde(default)]
    pub priority: i32,
    pub timeout_ms: Option<u64>,
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub affinity: Option<AffinityRules>,
}

/// Seed 002 affinity rules.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AffinityRules {
    pub required_worker: Option<String>,
    pub same_worker_as: Option<String>,
    #[serde(default)]
    pub excluded_workers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SubmitBody {
    Batch { tasks: Vec<SubmitTask> },
    Many(Vec<SubmitTask>),
    One(Box<SubmitTask>),
}

/// `POST /v1/tasks`: one task, `{"tasks": [...]}` or a JSON array. Answers 201 only once the
/// tasks are durably in the store.
pub async fn submit(
    State(s): State<Arc<NodeState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let tenant = tenant(&s, &headers)?;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "MALFORMED_JSON",
            format!("request body is not valid JSON: {e}"),
        )
    })?;
    let single = value.is_object() && value.get("tasks").is_none();
    let parsed: SubmitBody = serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request("INVALID_TASK", format!("invalid task: {e}")))?;
    let tasks = match parsed {
        SubmitBody::Batch { tasks } | SubmitBody::Many(tasks) => tasks,
        SubmitBody::One(t) => vec![*t],
    };
    if tasks.is_empty() {
        return Err(ApiError::bad_request(
            "INVALID_TASK",
            "no tasks in the request",
        ));
    }
    let known = known_task_types(&s, &tasks).await?;
    let mut new = Vec::with_capacity(tasks.len());
    for (i, t) in tasks.into_iter().enumerate() {
        new.push(validate(&s, &tenant, t, &known).map_err(|mut e| {
            if !single {
                e.message = format!("task {i}: {}", e.message);
            }
            e
        })?);
    }
    let ids = s.queue.submit_batch(new).await?;
    s.metrics.tasks_submitted.inc_by(ids.len() as u64);
    let body = if single {
        serde_json::json!({ "id": ids[0] })
    } else {
        serde_json::json!({ "ids": ids })
    };
    Ok((StatusCode::CREATED, Json(body)))
}

fn validate(
    s: &NodeState,
    tenant: &str,
    t: SubmitTask,
    known: &BTreeSet<String>,
) -> Result<NewTask, ApiError> {
    if !known.contains(&t.task_type) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "UNKNOWN_TASK_TYPE",
            format!(
                "no plugin serves task type {:?}; known types: {}",
                t.task_type,
                known.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let payload = serde_json::to_vec(&t.payload).expect("a JSON value serialises");
    if payload.len() > s.settings.max_payload_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!(
                "payload is {} bytes; the limit is {}",
                payload.len(),
                s.settings.max_payload_bytes
            ),
        ));
    }
    if let Some(id) = &t.id {
        if id.is_empty()
            || id.len() > 128
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err(ApiError::bad_request(
                "INVALID_TASK",
                format!("id {id:?}: 1-128 characters of letters, digits, '-', '_', '.', ':'"),
            ));
        }
    }
    if t.timeout_ms == Some(0) {
        return Err(ApiError::bad_request(
            "INVALID_TASK",
            "timeout_ms must be greater than 0",
        ));
    }
    let affinity = t.affinity.unwrap_or_default();
    Ok(NewTask {
        id: t.id,
        tenant: tenant.to_string(),
        task_type: t.task_type,
        priority: t.priority,
        payload,
        metadata: t.metadata,
        max_retries: t.max_retries,
        timeout_ms: t.timeout_ms,
        depends_on: t.depends_on,
        affinity: Affinity {
            required_worker: affinity.required_worker,
            same_worker_as: affinity.same_worker_as,
            excluded_workers: affinity.excluded_workers,
        },
    })
}

/// Task types some plugin serves: here, or on any registered live worker. The registry is
/// read only when a requested type is not served locally, so the usual submit costs no read.
async fn known_task_types(
    s: &NodeState,
    requested: &[SubmitTask],
) -> Result<BTreeSet<String>, ApiError> {
    let mut known: BTreeSet<String> = s.folder.task_types().into_iter().collect();
    if requested.iter().all(|t| known.contains(&t.task_type)) {
        return Ok(known);
    }
    for w in s.store.list_workers().await? {
        if w.status != sentinel_coord::model::WorkerStatus::Offline {
            known.extend(w.capabilities.supported_task_types);
        }
    }
    Ok(known)
}

/// A task as the API shows it.
#[derive(Debug, Serialize)]
pub struct TaskView {
    pub id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    pub tenant: String,
    pub status: &'static str,
    pub priority: i32,
    pub attempt: u32,
    pub max_retries: u32,
    pub timeout_ms: u64,
    pub worker_id: Option<String>,
    pub payload: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_base64: Option<String>,
    pub error: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub depends_on: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<serde_json::Value>,
}

fn bytes_as_json(bytes: &[u8]) -> (Option<serde_json::Value>, Option<String>) {
    match serde_json::from_slice(bytes) {
        Ok(v) => (Some(v), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    }
}

impl TaskView {
    pub fn new(t: Task, progress: Option<(u8, String)>) -> TaskView {
        let (output, output_base64) = match &t.output {
            Some(bytes) => bytes_as_json(bytes),
            None => (None, None),
        };
        let payload = serde_json::from_slice(&t.payload)
            .unwrap_or_else(|_| serde_json::json!({ "base64": base64::engine::general_purpose::STANDARD.encode(&t.payload) }));
        TaskView {
            id: t.id,
            task_type: t.task_type,
            tenant: t.tenant,
            status: t.state.as_str(),
            priority: t.priority,
            attempt: t.attempt,
            max_retries: t.max_retries,
            timeout_ms: t.timeout_ms,
            worker_id: t.worker_id,
            payload,
            output,
            output_base64,
            error: t.error,
            created_at: iso(t.created_at),
            started_at: t.started_at.map(iso),
            finished_at: t.finished_at.map(iso),
            depends_on: t.depends_on,
            metadata: t.metadata,
            progress: progress.map(
                |(percent, message)| serde_json::json!({ "percent": percent, "message": message }),
            ),
        }
    }
}

/// `GET /v1/tasks/{id}`.
pub async fn get(
    State(s): State<Arc<NodeState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    let tenant = tenant(&s, &headers)?;
    let task = s
        .store
        .get_task(&tenant, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("task {id} not found")))?;
    let progress = if task.state == TaskState::Running {
        s.progress.get(&id)
    } else {
        None
    };
    Ok(Json(TaskView::new(task, progress)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub status: Option<String>,
    #[serde(rename = "type")]
    pub task_type: Option<String>,
    pub worker: Option<String>,
    pub limit: Option<u32>,
}

/// `GET /v1/tasks?status=&type=&worker=&limit=`.
pub async fn list(
    State(s): State<Arc<NodeState>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let state = match &q.status {
        Some(name) => Some(TaskState::parse(name).ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_QUERY",
                format!(
                    "status {name:?}: use pending, running, completed, failed, dead or cancelled"
                ),
            )
        })?),
        None => None,
    };
    list_tasks(&s, &headers, state, q).await
}

/// `GET /v1/dlq`: the dead-letter queue.
pub async fn dead_letters(
    State(s): State<Arc<NodeState>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    list_tasks(&s, &headers, Some(TaskState::Dead), q).await
}

async fn list_tasks(
    s: &NodeState,
    headers: &HeaderMap,
    state: Option<TaskState>,
    q: ListQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let filter = TaskFilter {
        tenant: Some(tenant(s, headers)?),
        state,
        task_type: q.task_type,
        worker_id: q.worker,
        limit: q.limit.unwrap_or(100).min(10_000),
    };
    let tasks: Vec<TaskView> = s
        .store
        .list_tasks(&filter)
        .await?
        .into_iter()
        .map(|t| TaskView::new(t, None))
        .collect();
    Ok(Json(serde_json::json!({ "tasks": tasks })))
}

/// `POST /v1/tasks/{id}/cancel`.
pub async fn cancel(
    State(s): State<Arc<NodeState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = tenant(&s, &headers)?;
    if s.store.cancel(&tenant, &id).await? {
        s.cancels.cancelled(&tenant, &id).await;
        return Ok(Json(serde_json::json!({ "id": id, "status": "cancelled" })));
    }
    Err(refusal(&s, &tenant, &id, "NOT_CANCELLABLE", "already").await)
}

/// `POST /v1/dlq/{id}/retry`: back to pending with attempts reset.
pub async fn retry_dead(
    State(s): State<Arc<NodeState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = tenant(&s, &headers)?;
    if s.store.retry_dead(&tenant, &id).await? {
        return Ok(Json(serde_json::json!({ "id": id, "status": "pending" })));
    }
    Err(refusal(&s, &tenant, &id, "NOT_DEAD", "not dead: it is").await)
}

/// Why an operation on task `id` did not apply: it does not exist (404) or its state forbids it (409).
async fn refusal(s: &NodeState, tenant: &str, id: &str, code: &'static str, why: &str) -> ApiError {
    match s.store.get_task(tenant, id).await {
        Ok(None) => ApiError::not_found(format!("task {id} not found")),
        Ok(Some(t)) => ApiError::new(
            StatusCode::CONFLICT,
            code,
            format!("task {id} is {why} {}", t.state.as_str()),
        ),
        Err(e) => ApiError::store(e),
    }
}
