//! `/v1/memory/{namespace}[/{key}]`: shared memory of the caller's tenant.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use sentinel_coord::model::{MemoryEntry, MemoryWrite, WriteOutcome};
use serde::Deserialize;

use super::{ApiError, iso, tenant};
use crate::node::NodeState;

fn valid_name(what: &str, s: &str) -> Result<(), ApiError> {
    if s.is_empty() || s.len() > 1024 {
        return Err(ApiError::bad_request(
            "INVALID_KEY",
            format!("{what} must be 1-1024 bytes"),
        ));
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
}

/// `GET /v1/memory/{namespace}?prefix=`.
pub async fn list(
    State(s): State<Arc<NodeState>>,
    headers: HeaderMap,
    Path(ns): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = tenant(&s, &headers)?;
    s.metrics.memory_ops.with_label_values(&["list"]).inc();
    let limit = sentinel_coord::model::limits::LIST_LIMIT.max as u32;
    let entries = s.store.memory_list(&tenant, &ns, &q.prefix, limit).await?;
    Ok(Json(
        serde_json::json!({ "entries": entries.iter().map(entry_json).collect::<Vec<_>>() }),
    ))
}

/// `GET /v1/memory/{namespace}/{key}`.
pub async fn get(
    State(s): State<Arc<NodeState>>,
    headers: HeaderMap,
    Path((ns, key)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = tenant(&s, &headers)?;
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
    headers: HeaderMap,
    Path((ns, key)): Path<(String, String)>,
    Query(q): Query<SetQuery>,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let tenant = tenant(&s, &headers)?;
    valid_name("namespace", &ns)?;
    valid_name("key", &key)?;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "MALFORMED_JSON",
            format!("the value is not valid JSON: {e}"),
        )
    })?;
    if body.len() > s.settings.max_payload_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "value too large",
        ));
    }
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
    headers: HeaderMap,
    Path((ns, key)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = tenant(&s, &headers)?;
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
