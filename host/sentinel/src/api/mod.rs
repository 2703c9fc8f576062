//! The HTTP API (JSON), thin over the node's managers.
//!
//! Handlers validate, resolve the caller's tenant and call one manager each; they hold no
//! state of their own. Every error is a JSON body `{"error": {"code", "message"}}` with a 4xx
//! for the caller's mistakes and 503 when the store is unreachable; nothing is stored on error.

mod cluster;
mod error;
mod memory;
mod tasks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum::routing::{get, post};

pub use error::ApiError;

use crate::node::NodeState;

/// The routes of a host.
pub fn router(state: Arc<NodeState>) -> Router {
    // Batches carry many payloads; each payload is still checked against the payload limit.
    let body_limit = (state.settings.max_payload_bytes * 64).max(8 << 20);
    Router::new()
        .route("/health", get(cluster::health))
        .route("/cluster/health", get(cluster::cluster_health))
        .route("/metrics", get(cluster::metrics))
        .route("/v1/tasks", post(tasks::submit).get(tasks::list))
        .route("/v1/tasks/{id}", get(tasks::get))
        .route("/v1/tasks/{id}/cancel", post(tasks::cancel))
        .route("/v1/dlq", get(tasks::dead_letters))
        .route("/v1/dlq/{id}/retry", post(tasks::retry_dead))
        .route("/v1/workers", get(cluster::workers))
        .route("/v1/workers/{id}", get(cluster::worker))
        .route("/v1/locks", get(cluster::locks))
        .route("/v1/plugins", get(cluster::plugins))
        .route("/v1/cluster/load", get(cluster::load))
        .route("/v1/cluster/rebalance", post(cluster::rebalance))
        .route("/v1/cluster/select-worker", post(cluster::select_worker))
        .route(
            "/v1/cluster/strategy",
            axum::routing::put(cluster::set_strategy),
        )
        .route("/v1/memory/{namespace}", get(memory::list))
        .route(
            "/v1/memory/{namespace}/{key}",
            get(memory::get).put(memory::set).delete(memory::delete),
        )
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The caller's tenant: from `Authorization: Bearer <token>` when tenants are configured,
/// else the `default` tenant.
pub(crate) fn tenant(state: &NodeState, headers: &HeaderMap) -> Result<String, ApiError> {
    if state.settings.tenants.is_empty() {
        return Ok(sentinel_coord::model::DEFAULT_TENANT.to_string());
    }
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <token>`"))?;
    state
        .settings
        .tenants
        .get(token.trim())
        .cloned()
        .ok_or_else(|| ApiError::unauthorized("unknown token"))
}

/// Parses a JSON request body into `T`, whatever its content type: a malformed body is a 400
/// with our error shape, never the framework's plain-text rejection.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "MALFORMED_JSON",
            format!("request body is not valid JSON: {e}"),
        )
    })?;
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request("INVALID_REQUEST", format!("invalid request: {e}")))
}

/// Milliseconds since the epoch as RFC 3339.
pub(crate) fn iso(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}
