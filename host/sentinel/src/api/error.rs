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
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
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
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, Json(body)).into_response();
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
