//! `/v1/tasks` and `/v1/dlq`: submit, inspect, list, cancel, retry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use sentinel_coord::model::limits::{
    BATCH_TASKS, MAX_METADATA_ENTRIES, MAX_NAME_BYTES, MAX_REFERENCES, MAX_RETRIES, PRIORITY,
    TASK_TIMEOUT_MS,
};
use sentinel_coord::model::{Affinity, NewTask, Task, TaskFilter, TaskOrder, TaskState};
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::extract::{Body, NoBody, Path, Query};
use super::page::{Page, encode_cursor};
use super::{ApiError, Int, from_value, in_range, iso, name_len, parse_value};
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
    priority: Option<Int>,
    timeout_ms: Option<Int>,
    max_retries: Option<Int>,
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

impl AffinityRules {
    /// Checks every worker id's length and the number of exclusions; `at` prefixes field names.
    pub(crate) fn into_checked(self, at: &str) -> Result<Affinity, ApiError> {
        for (field, v) in [
            ("required_worker", &self.required_worker),
            ("same_worker_as", &self.same_worker_as),
        ] {
            if let Some(v) = v {
                name_len(&format!("{at}affinity.{field}"), v, MAX_NAME_BYTES)?;
            }
        }
        references(
            &format!("{at}affinity.excluded_workers"),
            &self.excluded_workers,
        )?;
        Ok(Affinity {
            required_worker: self.required_worker,
            same_worker_as: self.same_worker_as,
            excluded_workers: self.excluded_workers,
        })
    }
}

/// A list of ids: at most `MAX_REFERENCES`, each 1..=`MAX_NAME_BYTES` bytes.
fn references(field: &str, ids: &[String]) -> Result<(), ApiError> {
    if ids.len() > MAX_REFERENCES {
        return Err(ApiError::bad_request(
            "INVALID_FIELD",
            format!("{field}: {} entries; at most {MAX_REFERENCES}", ids.len()),
        ));
    }
    for (i, id) in ids.iter().enumerate() {
        name_len(&format!("{field}[{i}]"), id, MAX_NAME_BYTES)?;
    }
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitQuery {
    /// Validate everything, store nothing (`sentinel submit --file` checks a whole file first).
    #[serde(default)]
    pub dry_run: bool,
}

/// The tasks of a submission body, each with the prefix its errors carry: one task object
/// (no prefix), `{"tasks": [...]}` or a JSON array (`tasks[i]`).
fn split_body(value: serde_json::Value) -> Result<(bool, Vec<serde_json::Value>), ApiError> {
    use serde_json::Value;
    let shape = || {
        ApiError::bad_request(
            "INVALID_TASK",
            "body: expected a task object, an array of tasks or {\"tasks\": [...]}",
        )
    };
    match value {
        Value::Array(items) => Ok((false, items)),
        Value::Object(mut map) if map.contains_key("tasks") => {
            if let Some(other) = map.keys().find(|k| *k != "tasks") {
                return Err(ApiError::bad_request(
                    "INVALID_TASK",
                    format!("body: unknown field `{other}` beside `tasks`"),
                ));
            }
            match map.remove("tasks") {
                Some(Value::Array(items)) => Ok((false, items)),
                _ => Err(ApiError::bad_request(
                    "INVALID_TASK",
                    "tasks: expected an array of tasks",
                )),
            }
        }
        v @ Value::Object(_) => Ok((true, vec![v])),
        _ => Err(shape()),
    }
}

/// `POST /v1/tasks[?dry_run=true]`: one task, `{"tasks": [...]}` or a JSON array. Answers 201
/// only once the tasks are durably in the store; a dry run answers 200 and stores nothing.
pub async fn submit(
    State(s): State<Arc<NodeState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Query(q): Query<SubmitQuery>,
    Body(body): Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let tenant = caller.tenant.clone();
    let (single, values) = split_body(parse_value(&body)?)?;
    in_range(&BATCH_TASKS, values.len() as i128, "")?;
    let at = |i: usize| {
        if single {
            String::new()
        } else {
            format!("tasks[{i}]")
        }
    };
    let mut tasks = Vec::with_capacity(values.len());
    for (i, v) in values.into_iter().enumerate() {
        let t: SubmitTask = from_value(v, &at(i), "INVALID_TASK")?;
        tasks.push(t);
    }
    let mut new = Vec::with_capacity(tasks.len());
    for (i, t) in tasks.into_iter().enumerate() {
        new.push(validate(&s, &tenant, t, &at(i))?);
    }
    let known = known_task_types(&s, &tenant, &new).await?;
    for (i, t) in new.iter().enumerate() {
        if !known.contains(&t.task_type) {
            let at = at(i);
            let field = if at.is_empty() {
                "type".to_string()
            } else {
                format!("{at}.type")
            };
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "UNKNOWN_TASK_TYPE",
                format!(
                    "{field}: no plugin you may use serves task type {:?}; known types: {}",
                    t.task_type,
                    known.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    if q.dry_run {
        return Ok((
            StatusCode::OK,
            Json(serde_json::json!({ "dry_run": true, "valid": new.len() })),
        ));
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

/// Every documented bound of one task; `at` is its place in a batch (`tasks[3]`) or empty.
fn validate(s: &NodeState, tenant: &str, t: SubmitTask, at: &str) -> Result<NewTask, ApiError> {
    let field = |name: &str| {
        if at.is_empty() {
            name.to_string()
        } else {
            format!("{at}.{name}")
        }
    };
    name_len(&field("type"), &t.task_type, MAX_NAME_BYTES)?;
    if let Some(id) = &t.id
        && (id.is_empty()
            || id.len() > MAX_NAME_BYTES
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)))
    {
        return Err(ApiError::bad_request(
            "INVALID_FIELD",
            format!(
                "{}: 1-{MAX_NAME_BYTES} characters of letters, digits, '-', '_', '.', ':'",
                field("id")
            ),
        ));
    }
    let priority = t.priority.map_or(0, |p| p.0);
    in_range(&PRIORITY, priority, at)?;
    if let Some(Int(ms)) = t.timeout_ms {
        in_range(&TASK_TIMEOUT_MS, ms, at)?;
    }
    if let Some(Int(n)) = t.max_retries {
        in_range(&MAX_RETRIES, n, at)?;
    }
    if t.metadata.len() > MAX_METADATA_ENTRIES {
        return Err(ApiError::bad_request(
            "INVALID_FIELD",
            format!(
                "{}: {} entries; at most {MAX_METADATA_ENTRIES}",
                field("metadata"),
                t.metadata.len()
            ),
        ));
    }
    references(&field("depends_on"), &t.depends_on)?;
    let affinity = t
        .affinity
        .unwrap_or_default()
        .into_checked(&if at.is_empty() {
            String::new()
        } else {
            format!("{at}.")
        })?;
    let payload = serde_json::to_vec(&t.payload).expect("a JSON value serialises");
    let metadata_bytes: usize = t.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    let size = payload.len() + metadata_bytes;
    if size > s.settings.max_payload_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!(
                "{}: payload and metadata are {size} bytes; the limit is {}",
                field("payload"),
                s.settings.max_payload_bytes
            ),
        ));
    }
    Ok(NewTask {
        id: t.id,
        tenant: tenant.to_string(),
        task_type: t.task_type,
        priority: priority as i32,
        payload,
        metadata: t.metadata,
        max_retries: t.max_retries.map(|n| n.0 as u32),
        timeout_ms: t.timeout_ms.map(|n| n.0 as u64),
        depends_on: t.depends_on,
        affinity,
    })
}

/// The task types `tenant` may submit that some plugin serves, here or on any registered live
/// worker. The registry is read only when a requested type is not served locally, so the usual
/// submit costs no read. A type the tenant's policy does not allow is as unknown to it as one
/// nobody serves.
async fn known_task_types(
    s: &NodeState,
    tenant: &str,
    requested: &[NewTask],
) -> Result<BTreeSet<String>, ApiError> {
    let tenancy = &s.settings.tenancy;
    // Types served here by a plugin the tenant does not trust are not "known" through this
    // host (another host's plugin may still serve them).
    let mut known: BTreeSet<String> = s
        .folder
        .task_types()
        .into_iter()
        .filter(|t| tenancy.trusts(tenant, s.folder.signer_of(t).as_ref()))
        .collect();
    if !requested.iter().all(|t| known.contains(&t.task_type)) {
        for w in s.store.list_workers().await? {
            // This host's own types are the folder's, judged above.
            if w.status != sentinel_coord::model::WorkerStatus::Offline
                && w.worker_id != s.settings.worker_id
            {
                known.extend(w.capabilities.supported_task_types);
            }
        }
    }
    known.retain(|t| tenancy.may_submit(tenant, t));
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
    Extension(caller): Extension<Arc<Caller>>,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    let tenant = caller.tenant.clone();
    let task = s
        .store
        .get_task(&tenant, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("task {id} not found")))?;
    let progress = if task.state == TaskState::Running {
        s.progress.get(&tenant, &id)
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
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub order: Option<String>,
}

/// `GET /v1/tasks?status=&type=&worker=&limit=&cursor=&order=`: newest first by default.
pub async fn list(
    State(s): State<Arc<NodeState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let state = match &q.status {
        Some(name) => Some(TaskState::parse(name).ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_QUERY",
                format!(
                    "invalid query parameter status: {name:?}; use pending, running, completed, failed, dead or cancelled"
                ),
            )
        })?),
        None => None,
    };
    list_tasks(&s, &caller, state, q).await
}

/// `GET /v1/dlq`: the dead-letter queue, with the same parameters.
pub async fn dead_letters(
    State(s): State<Arc<NodeState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if q.status.is_some() {
        return Err(ApiError::bad_request(
            "INVALID_QUERY",
            "invalid query parameter status: the dead-letter queue holds dead tasks only",
        ));
    }
    list_tasks(&s, &caller, Some(TaskState::Dead), q).await
}

/// One page of tasks in submission order (newest first by default), read by the store as one
/// keyset range: the cursor is the last task's id, and the page costs the same however long
/// the history is.
async fn list_tasks(
    s: &NodeState,
    caller: &Caller,
    state: Option<TaskState>,
    q: ListQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let page = Page::parse(q.limit, q.cursor.as_deref(), q.order.as_deref(), true)?;
    let tenant = caller.listing_tenant();
    // The cursor is `tenant/id` (tenant names never hold a '/'): an admin's listing spans
    // tenants, and task ids are unique only within one.
    let after = match page.after.as_deref() {
        None => None,
        Some(cursor) => match cursor.split_once('/') {
            Some((t, id)) if tenant.as_deref().is_none_or(|mine| mine == t) => {
                Some(sentinel_coord::model::TaskKey::new(t, id))
            }
            _ => {
                return Err(ApiError::bad_request(
                    "INVALID_CURSOR",
                    "cursor: not a cursor of this listing",
                ));
            }
        },
    };
    let filter = TaskFilter {
        after,
        tenant,
        state,
        task_type: q.task_type,
        worker_id: q.worker,
        // One more than the page: whether there is a next page, without a count.
        limit: page.limit as u32 + 1,
        order: if page.descending {
            TaskOrder::Newest
        } else {
            TaskOrder::Oldest
        },
    };
    let mut tasks = s.store.list_tasks(&filter).await.map_err(|e| match e {
        sentinel_coord::StoreError::Invalid(_) if page.after.is_some() => ApiError::bad_request(
            "INVALID_CURSOR",
            "cursor: its task no longer exists (start again without a cursor)",
        ),
        other => ApiError::from(other),
    })?;
    let more = tasks.len() > page.limit;
    tasks.truncate(page.limit);
    let next = more
        .then(|| {
            tasks
                .last()
                .map(|t| encode_cursor(&format!("{}/{}", t.tenant, t.id)))
        })
        .flatten();
    let tasks: Vec<TaskView> = tasks.into_iter().map(|t| TaskView::new(t, None)).collect();
    Ok(Json(
        serde_json::json!({ "tasks": tasks, "next_cursor": next }),
    ))
}

/// `POST /v1/tasks/{id}/cancel`.
pub async fn cancel(
    State(s): State<Arc<NodeState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(id): Path<String>,
    _: NoBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = caller.tenant.clone();
    if s.store.cancel(&tenant, &id).await? {
        s.cancels.cancelled(&tenant, &id).await;
        return Ok(Json(serde_json::json!({ "id": id, "status": "cancelled" })));
    }
    Err(refusal(&s, &tenant, &id, "NOT_CANCELLABLE", "already").await)
}

/// `POST /v1/dlq/{id}/retry`: back to pending with attempts reset.
pub async fn retry_dead(
    State(s): State<Arc<NodeState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(id): Path<String>,
    _: NoBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = caller.tenant.clone();
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
