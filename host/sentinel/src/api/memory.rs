//! `/v1/memory/{namespace}[/{key}]`: shared memory of the caller's tenant.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use sentinel_coord::model::limits::{MAX_MEMORY_KEY_BYTES, MEMORY_TTL_MS, MEMORY_VERSION};
use sentinel_coord::model::{MemoryEntry, MemoryWrite, WriteOutcome};
use serde::Deserialize;

use super::auth::Caller;
use super::extract::{Body, Path, Query};
use super::page::{Page, encode_cursor};
use super::{ApiError, in_range, iso, name_len};
use crate::node::NodeState;

/// A namespace and a key are 1..=`MAX_MEMORY_KEY_BYTES` bytes each (plugins name namespaces
/// too, so the API can reach whatever a plugin may write).
fn valid_names(ns: &str, key: Option<&str>) -> Result<(), ApiError> {
    name_len("namespace", ns, MAX_MEMORY_KEY_BYTES)?;
    if let Some(key) = key {
        name_len("key", key, MAX_MEMORY_KEY_BYTES)?;
    }
    Ok(())
}

fn entry_json(e: &MemoryEntry) -> serde_json::Value {
    serde_json::json!({
        "namespace": e.namespace, "key": e.key, "value": e.value, "version": e.version,
        "timestamp": iso(e.timestamp), "writer": e.writer, "expires_at": e.expires_at.map(iso),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    pub prefix: String,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub order: Option<String>,
}

/// `GET /v1/memory/{namespace}?prefix=&limit=&cursor=&order=`: by key, ascending by default.
pub async fn list(
    State(s): State<Arc<NodeState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(ns): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = caller.tenant.clone();
    valid_names(&ns, None)?;
    if q.prefix.len() > MAX_MEMORY_KEY_BYTES {
        return Err(ApiError::bad_request(
            "INVALID_FIELD",
            format!("prefix: at most {MAX_MEMORY_KEY_BYTES} bytes"),
        ));
    }
    let page = Page::parse(q.limit, q.cursor.as_deref(), q.order.as_deref(), false)?;
    s.metrics.memory_ops.with_label_values(&["list"]).inc();
    if page.descending {
        return Err(ApiError::bad_request(
            "INVALID_QUERY",
            "invalid query parameter order: memory keys are listed in ascending order only",
        ));
    }
    // One keyset page from the store: limit + 1 entries say whether there is a next page.
    let mut entries = s
        .store
        .memory_list(
            &tenant,
            &ns,
            &q.prefix,
            page.after.as_deref(),
            page.limit as u32 + 1,
        )
        .await?;
    let more = entries.len() > page.limit;
    entries.truncate(page.limit);
    let next = more
        .then(|| entries.last().map(|e| encode_cursor(&e.key)))
        .flatten();
    Ok(Json(serde_json::json!({
        "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

/// `GET /v1/memory/{namespace}/{key}`.
pub async fn get(
    State(s): State<Arc<NodeState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path((ns, key)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = caller.tenant.clone();
    valid_names(&ns, Some(&key))?;
    s.metrics.memory_ops.with_label_values(&["get"]).inc();
    let e = s
        .store
        .memory_get(&tenant, &ns, &key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{ns}/{key} not found")))?;
    Ok(Json(entry_json(&e)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetQuery {
    pub ttl_ms: Option<u64>,
    /// Compare-and-set: write only if the current version is this (0 = absent).
    pub expected_version: Option<u64>,
}

/// `PUT /v1/memory/{namespace}/{key}` with a JSON body: the value.
pub async fn set(
    State(s): State<Arc<NodeState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path((ns, key)): Path<(String, String)>,
    Query(q): Query<SetQuery>,
    Body(body): Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let tenant = caller.tenant.clone();
    valid_names(&ns, Some(&key))?;
    if let Some(ttl) = q.ttl_ms {
        in_range(&MEMORY_TTL_MS, ttl.into(), "")?;
    }
    if let Some(v) = q.expected_version {
        in_range(&MEMORY_VERSION, v.into(), "")?;
    }
    if body.len() > s.settings.max_payload_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!(
                "the value is {} bytes; the limit is {}",
                body.len(),
                s.settings.max_payload_bytes
            ),
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "MALFORMED_JSON",
            format!("the value is not valid JSON: {e}"),
        )
    })?;
    s.metrics.memory_ops.with_label_values(&["set"]).inc();
    let write = MemoryWrite {
        tenant,
        namespace: ns,
        key,
        value,
        writer: s.settings.worker_id.clone(),
        timestamp: None,
        ttl_ms: q.ttl_ms,
        expected_version: q.expected_version,
    };
    match s.store.memory_set(&write).await? {
        WriteOutcome::Written(e) => Ok((StatusCode::OK, Json(entry_json(&e)))),
        WriteOutcome::VersionMismatch { current } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "VERSION_CONFLICT",
            format!(
                "expected version {}, current is {current}",
                q.expected_version.unwrap_or(0)
            ),
        )),
        WriteOutcome::Superseded {
            current_version, ..
        } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "SUPERSEDED",
            format!("a newer write (version {current_version}) wins under last-write-wins"),
        )),
    }
}

/// `DELETE /v1/memory/{namespace}/{key}`.
pub async fn delete(
    State(s): State<Arc<NodeState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path((ns, key)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = caller.tenant.clone();
    valid_names(&ns, Some(&key))?;
    s.metrics.memory_ops.with_label_values(&["delete"]).inc();
    if s.store
        .memory_delete(&tenant, &ns, &key, &s.settings.worker_id)
        .await?
    {
        Ok(Json(serde_json::json!({ "deleted": true })))
    } else {
        Err(ApiError::not_found(format!("{ns}/{key} not found")))
    }
}
