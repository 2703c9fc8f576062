//! The HTTP layer: every request this crate makes to GitHub goes through [`Api::send`], on top of
//! octocrab's raw `_get/_post/_patch/_put/_delete`. It owns three disciplines and nothing else:
//!
//! * **Conditional requests.** Every GET remembers the `ETag` of its last 200 answer and sends it
//!   back as `If-None-Match`; a 304 (which GitHub does not count against the primary limit) is
//!   answered from the remembered body.
//! * **Rate limits.** `x-ratelimit-*` headers of every answer update the shared
//!   [`RateState`](crate::budget::RateState). A 403/429 that is a rate-limit answer (primary:
//!   `x-ratelimit-remaining: 0`; secondary: `retry-after` or GitHub's "secondary rate limit"
//!   message) pauses *every* request of this store until the wait is over, then retries; 5xx
//!   answers of idempotent requests are retried with exponential backoff and jitter.
//! * **Errors.** Anything else becomes an [`ApiError`] carrying GitHub's status and `message`.
//!
//! It must never interpret what it carries (refs, issues): that is the callers' business. Times
//! for `x-ratelimit-reset` arithmetic come from the store's [`Clock`]; waiting uses tokio's timer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use octocrab::Octocrab;
use rand::Rng;
use sentinel_coord::{Clock, StoreError};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::budget::RateState;

/// How the layer retries. Defaults follow GitHub's guidance: honour `retry-after`, otherwise wait
/// at least a minute after a secondary-limit answer, and back off exponentially on 5xx.
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Attempts per request before giving up with `StoreError::Unavailable`.
    pub max_attempts: u32,
    /// First backoff after a 5xx or transport error.
    pub base_backoff: Duration,
    /// Cap on any single wait, including a far-away `x-ratelimit-reset`.
    pub max_wait: Duration,
    /// Wait after a secondary-limit answer that carries no `retry-after` (GitHub: "at least one
    /// minute").
    pub secondary_default_wait: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_backoff: Duration::from_millis(500),
            max_wait: Duration::from_secs(15 * 60),
            secondary_default_wait: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// GitHub answered with this status and JSON `message`.
    #[error("GitHub answered {status}: {message}")]
    Status { status: u16, message: String },
    /// Rate limited or unreachable after every retry: try again later.
    #[error("GitHub unavailable: {0}")]
    Unavailable(String),
    #[error("unexpected GitHub answer: {0}")]
    Decode(String),
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// 422 (and 409 for an empty repository or a ref race): the request was understood and refused.
    pub fn is_unprocessable(&self) -> bool {
        matches!(self.status(), Some(422 | 409))
    }
}

impl From<ApiError> for StoreError {
    fn from(e: ApiError) -> Self {
        match &e {
            ApiError::Unavailable(_) => StoreError::Unavailable(e.to_string()),
            ApiError::Status { status, .. } if *status >= 500 => {
                StoreError::Unavailable(e.to_string())
            }
            ApiError::Decode(_) => StoreError::Corrupt(e.to_string()),
            ApiError::Status { .. } => StoreError::Backend(e.to_string()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Patch,
    Put,
    Delete,
}

impl Method {
    pub fn is_write(self) -> bool {
        !matches!(self, Method::Get)
    }
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Served from the ETag cache after a 304.
    pub not_modified: bool,
}

impl Reply {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| ApiError::Decode(e.to_string()))
    }

    /// The `rel="next"` target of a `Link` header, as a path relative to the API root.
    pub fn next_page(&self) -> Option<String> {
        let link = self.headers.get(http::header::LINK)?.to_str().ok()?;
        link.split(',').find_map(|part| {
            let (url, rel) = part.split_once(';')?;
            if !rel.contains("rel=\"next\"") {
                return None;
            }
            let url = url.trim().trim_start_matches('<').trim_end_matches('>');
            // Keep path and query only: octocrab's base-URI layer puts the host back, and the
            // auth header is only attached to requests without an authority of their own.
            let uri: http::Uri = url.parse().ok()?;
            uri.path_and_query().map(|p| p.as_str().to_string())
        })
    }
}

struct Cached {
    etag: HeaderValue,
    body: Bytes,
}

pub struct Api {
    octo: Octocrab,
    /// `/repos/{owner}/{repo}`.
    repo: String,
    etags: Mutex<HashMap<String, Cached>>,
    pub(crate) rate: Arc<RateState>,
    clock: Arc<dyn Clock>,
    retry: RetryConfig,
}

impl Api {
    pub fn new(
        octo: Octocrab,
        owner: &str,
        repo: &str,
        clock: Arc<dyn Clock>,
        retry: RetryConfig,
    ) -> Self {
        Self {
            octo,
            repo: format!("/repos/{owner}/{repo}"),
            etags: Mutex::new(HashMap::new()),
            rate: Arc::new(RateState::default()),
            clock,
            retry,
        }
    }

    /// `/repos/{owner}/{repo}` + `rest`.
    pub fn repo_path(&self, rest: &str) -> String {
        format!("{}{}", self.repo, rest)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.send(Method::Get, path, None, true).await?.json()
    }

    /// Every page of a paginated list, following `Link: rel="next"`.
    pub async fn get_all<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, ApiError> {
        let mut out = Vec::new();
        let mut next = Some(path.to_string());
        while let Some(p) = next {
            let reply = self.send(Method::Get, &p, None, true).await?;
            out.extend(reply.json::<Vec<T>>()?);
            next = reply.next_page();
        }
        Ok(out)
    }

    /// Sends one request, waiting out rate limits and retrying as [`RetryConfig`] says.
    /// `idempotent = false` (issue and comment creation) is never retried after a 5xx or a
    /// transport error, where GitHub may have acted on it; a rate-limit answer is always retried
    /// because GitHub refused it before acting.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        idempotent: bool,
    ) -> Result<Reply, ApiError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.rate.wait_until_allowed(&*self.clock).await;
            let cached_etag = (method == Method::Get)
                .then(|| self.etags.lock().unwrap().get(path).map(|c| c.etag.clone()))
                .flatten();
            let outcome = self.send_once(method, path, body, cached_etag).await;
            let (status, headers, bytes) = match outcome {
                Ok(x) => x,
                Err(e) => {
                    if idempotent && attempt < self.retry.max_attempts {
                        let wait = self.backoff(attempt);
                        tracing::debug!(%path, error = %e, ?wait, "GitHub request failed; retrying");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(ApiError::Unavailable(e));
                }
            };
            self.rate.observe(&headers, &*self.clock);
            if status == StatusCode::NOT_MODIFIED {
                if let Some(c) = self.etags.lock().unwrap().get(path) {
                    return Ok(Reply {
                        status: 200,
                        headers,
                        body: c.body.clone(),
                        not_modified: true,
                    });
                }
                // A 304 for something we never cached cannot happen unless the cache was
                // cleared between send and answer; ask again unconditionally.
                self.etags.lock().unwrap().remove(path);
                continue;
            }
            if status.is_success() {
                if method == Method::Get
                    && let Some(etag) = headers.get(http::header::ETAG)
                {
                    self.etags.lock().unwrap().insert(
                        path.to_string(),
                        Cached {
                            etag: etag.clone(),
                            body: bytes.clone(),
                        },
                    );
                }
                return Ok(Reply {
                    status: status.as_u16(),
                    headers,
                    body: bytes,
                    not_modified: false,
                });
            }
            let message = error_message(&bytes);
            if let Some(wait) = self.rate_limit_wait(status, &headers, &message) {
                self.rate.pause_for(wait, &*self.clock);
                tracing::warn!(
                    %path,
                    status = status.as_u16(),
                    wait_ms = wait.as_millis() as u64,
                    attempt,
                    "GitHub rate limit hit; pausing every request of this store"
                );
                if attempt < self.retry.max_attempts {
                    continue;
                }
                return Err(ApiError::Unavailable(format!(
                    "rate limited after {attempt} attempts: {message}"
                )));
            }
            if status.is_server_error() && idempotent && attempt < self.retry.max_attempts {
                let wait = self.backoff(attempt);
                tracing::debug!(%path, status = status.as_u16(), ?wait, "GitHub server error; retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(ApiError::Status {
                status: status.as_u16(),
                message,
            });
        }
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        etag: Option<HeaderValue>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), String> {
        let uri = path.to_string();
        let res = match method {
            Method::Get => {
                let mut headers = HeaderMap::new();
                if let Some(e) = etag {
                    headers.insert(http::header::IF_NONE_MATCH, e);
                }
                self.octo._get_with_headers(uri, Some(headers)).await
            }
            Method::Post => self.octo._post(uri, body).await,
            Method::Patch => self.octo._patch(uri, body).await,
            Method::Put => self.octo._put(uri, body).await,
            Method::Delete => self.octo._delete(uri, body).await,
        }
        .map_err(|e| e.to_string())?;
        let status = res.status();
        let headers = res.headers().clone();
        let text = self
            .octo
            .body_to_string(res)
            .await
            .map_err(|e| e.to_string())?;
        Ok((status, headers, Bytes::from(text)))
    }

    /// `Some(wait)` if this answer is a rate-limit refusal (GitHub's documented signals).
    fn rate_limit_wait(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        message: &str,
    ) -> Option<Duration> {
        if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
            return None;
        }
        let retry_after = header_u64(headers, "retry-after");
        let remaining = header_u64(headers, "x-ratelimit-remaining");
        let reset = header_u64(headers, "x-ratelimit-reset");
        let secondary = message
            .to_ascii_lowercase()
            .contains("secondary rate limit");
        let wait = if let Some(s) = retry_after {
            Duration::from_secs(s)
        } else if remaining == Some(0) {
            // Primary limit: wait until the window resets, on the store's clock.
            let now_s = self.clock.now_ms().div_euclid(1000);
            let until = reset.map_or(60, |r| (r as i64 - now_s).max(1) as u64);
            Duration::from_secs(until)
        } else if secondary || status == StatusCode::TOO_MANY_REQUESTS {
            self.retry.secondary_default_wait
        } else {
            // A plain 403: a permission problem, not a limit.
            return None;
        };
        Some(wait.min(self.retry.max_wait))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.retry.base_backoff.as_millis() as u64;
        let exp = base.saturating_mul(1u64 << attempt.min(10).saturating_sub(1));
        let capped = exp.min(self.retry.max_wait.as_millis() as u64);
        // Jitter in [d/2, d] so a fleet that failed together does not retry together.
        let jittered = rand::rng().random_range(capped / 2..=capped.max(1));
        Duration::from_millis(jittered)
    }
}

fn header_u64(h: &HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// GitHub's JSON error body is `{"message": ..., "documentation_url": ...}`.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect())
}
