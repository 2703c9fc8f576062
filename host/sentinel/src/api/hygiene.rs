//! HTTP hygiene around the routes: our own (smaller) limits on the URI and the headers, answered
//! in JSON before hyper's larger last-resort limits answer with an empty body; a safety net that
//! rewrites any error the framework produced itself into the JSON shape; and the panic handler.

use std::any::Any;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::config::HttpSettings;

/// 414 / 431 in JSON when the request line or the headers exceed this host's limits.
pub async fn request_limits(
    State(http): State<HttpSettings>,
    req: Request,
    next: Next,
) -> Response {
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > http.max_uri_bytes {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "URI_TOO_LONG",
            format!(
                "the request URI is {uri_len} bytes; the limit is {}",
                http.max_uri_bytes
            ),
        )
        .into_response();
    }
    let count = req.headers().len();
    let bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if count > http.max_headers || bytes > http.max_header_bytes {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "HEADERS_TOO_LARGE",
            format!(
                "the request has {count} headers of {bytes} bytes; the limits are {} headers and {} bytes",
                http.max_headers, http.max_header_bytes
            ),
        )
        .into_response();
    }
    next.run(req).await
}

/// The stable code of an error status the framework answered by itself.
fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_REQUEST",
        401 => "UNAUTHORIZED",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        408 => "REQUEST_TIMEOUT",
        413 => "BODY_TOO_LARGE",
        414 => "URI_TOO_LONG",
        415 => "UNSUPPORTED_MEDIA_TYPE",
        422 => "INVALID_REQUEST",
        431 => "HEADERS_TOO_LARGE",
        503 => "UNAVAILABLE",
        s if s >= 500 => "INTERNAL",
        _ => "INVALID_REQUEST",
    }
}

/// Any 4xx/5xx answer that is not already JSON (a rejection of the framework's own, a layer's
/// empty-bodied error) becomes `{"error": {"code", "message"}}` with its text as the message.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string()
    } else {
        text
    };
    let mut rewritten = ApiError::new(status, code_for(status), message).into_response();
    // Keep the framework's informative headers (`Allow` on a 405, `Retry-After`).
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            rewritten.headers_mut().insert(name, v.clone());
        }
    }
    rewritten
}

/// A handler panicked: a JSON 500 and an error event; the host goes on serving.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = %detail, "a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL",
        "the request failed unexpectedly; this is a bug and has been logged",
    )
    .into_response()
}

/// 404 for a path no route serves.
pub async fn no_route() -> ApiError {
    ApiError::not_found("no such endpoint")
}

/// 405 for a method the path does not serve.
pub async fn wrong_method(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}
