//! Our own extractors: every way a request can be malformed answers in the API's JSON shape
//! with a message naming the offending field, never the framework's plain-text rejection.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::node::NodeState;

/// Path parameters, percent-decoded; bad encoding or invalid UTF-8 is a 400 `INVALID_PATH`.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(rejection) => Err(ApiError::bad_request(
                "INVALID_PATH",
                format!("invalid path: {}", rejection.body_text()),
            )),
        }
    }
}

/// The query string, parsed strictly (unknown parameters refused); a bad one is a 400
/// `INVALID_QUERY` naming the parameter.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or("")).map(Query)
    }
}

/// Parses a query string into `T`, naming the parameter at fault.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path == "." {
            format!("invalid query string: {inner}")
        } else {
            format!("invalid query parameter {path}: {inner}")
        };
        ApiError::bad_request("INVALID_QUERY", message)
    })
}

/// The request body, read whole under the host's body limit and body read timeout: too large
/// is a 413 `BODY_TOO_LARGE`, too slow a 408 `REQUEST_TIMEOUT` (and the connection is closed).
pub struct Body(pub Bytes);

impl FromRequest<Arc<NodeState>> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, s: &Arc<NodeState>) -> Result<Self, ApiError> {
        let http = &s.settings.http;
        read_body(req, http.max_body_bytes, http.body_timeout)
            .await
            .map(Body)
    }
}

/// Reads `req`'s body whole: at most `limit` bytes, within `timeout`.
pub async fn read_body(
    req: Request,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "BODY_TOO_LARGE",
            format!("the request body exceeds {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = req.into_body();
    let read = async {
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                ApiError::bad_request("INVALID_BODY", format!("reading the request body: {e}"))
            })?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > limit {
                    return Err(too_large());
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(Bytes::from(buf))
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(read) => read,
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST_TIMEOUT",
            format!(
                "the request body was not received within {} ms",
                timeout.as_millis()
            ),
        )),
    }
}

/// A body that must be empty or an empty JSON object (`POST .../cancel`, `.../retry`,
/// `/v1/cluster/rebalance`): anything else is refused rather than ignored.
pub struct NoBody;

impl FromRequest<Arc<NodeState>> for NoBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, s: &Arc<NodeState>) -> Result<Self, ApiError> {
        let Body(bytes) = Body::from_request(req, s).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(NoBody);
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Empty {}
        let _: Empty = super::parse_json(&bytes)?;
        Ok(NoBody)
    }
}
