//! API errors: a status and a JSON body with a stable code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sentinel_coord::{LockError, QueueError, StoreError, SyncError, WorkerError};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The quota that refused the request, shown as `error.quota`.
    pub quota: Option<String>,
    /// Sent as `Retry-After` (seconds, rounded up).
    pub retry_after_ms: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            quota: None,
            retry_after_ms: None,
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }
    pub fn store(e: StoreError) -> ApiError {
        match e {
            StoreError::Unavailable(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "STORE_UNAVAILABLE", m)
            }
            StoreError::Invalid(m) => ApiError::bad_request("INVALID_REQUEST", m),
            // 429 for every quota: the tenant may try again once it has used less (or, for the
            // submission rate, after `Retry-After`).
            StoreError::Quota(q) => ApiError {
                quota: Some(q.quota.to_string()),
                retry_after_ms: q.retry_after_ms,
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "QUOTA_EXCEEDED",
                    q.to_string(),
                )
            },
            other => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "STORE_ERROR",
                other.to_string(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let mut error = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(q) = &self.quota {
            error["quota"] = q.clone().into();
        }
        let mut response =
            (self.status, Json(serde_json::json!({ "error": error }))).into_response();
        if let Some(ms) = self.retry_after_ms {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                ms.div_ceil(1000).max(1).into(),
            );
        }
        response
            .extensions_mut()
            .insert(super::auth::ErrorCode(self.code));
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::store(e)
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Store(s) => ApiError::store(s),
            other => ApiError::bad_request("QUEUE_ERROR", other.to_string()),
        }
    }
}

impl From<WorkerError> for ApiError {
    fn from(e: WorkerError) -> Self {
        match e {
            WorkerError::Store { source, .. } => ApiError::store(source),
            other => ApiError::new(StatusCode::NOT_FOUND, "WORKER_ERROR", other.to_string()),
        }
    }
}

impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Store { source, .. } => ApiError::store(source),
            other => ApiError::bad_request("SYNC_ERROR", other.to_string()),
        }
    }
}

impl From<LockError> for ApiError {
    fn from(e: LockError) -> Self {
        ApiError::bad_request("LOCK_ERROR", e.to_string())
    }
}
