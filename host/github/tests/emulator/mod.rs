//! A GitHub REST emulator for tests: a small axum app serving, from memory, exactly the endpoints
//! `sentinel-github` uses, the way GitHub documents them: git refs/commits/trees/blobs with
//! fast-forward checks and 422 refusals, issues and comments with ascending ids and `Link`
//! pagination, JSON error bodies (`{"message", "documentation_url"}`), `ETag` + 304 on
//! `If-None-Match` (a 304 does not count against the budget), `x-ratelimit-*` headers on every
//! answer, and, when told to, secondary-rate-limit 403s with `retry-after`. It must never share
//! state with the code under test except over HTTP.

#![allow(dead_code)]

mod git;
mod issues;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub use git::Obj;
pub use issues::{Author, Issue};

pub const DOCS: &str = "https://docs.github.com/rest";

/// The emulated repository.
#[derive(Default)]
pub struct Repo {
    pub objects: HashMap<String, Obj>,
    pub refs: BTreeMap<String, String>,
    pub issues: Vec<Issue>,
    pub comments: Vec<issues::Comment>,
    pub next_id: u64,
}

/// What the test can steer and observe.
#[derive(Debug, Clone)]
pub struct Control {
    pub limit: u64,
    pub remaining: u64,
    /// Epoch seconds of the window reset.
    pub reset: u64,
    /// Refuse this many next requests with a secondary-limit 403.
    pub refuse_next: u32,
    pub retry_after_secs: u64,
    /// Counted (non-304) answers, 304 answers, refusals.
    pub counted: u64,
    pub not_modified: u64,
    pub refused: u64,
    pub writes: u64,
}

pub struct Shared {
    pub repo: Mutex<Repo>,
    pub ctl: Mutex<Control>,
}

pub struct Emulator {
    pub base: String,
    pub shared: Arc<Shared>,
}

pub type Answer = (StatusCode, Value, Vec<(&'static str, String)>);

pub fn ok(status: StatusCode, v: Value) -> Answer {
    (status, v, Vec::new())
}

pub fn error(status: StatusCode, message: &str) -> Answer {
    (
        status,
        json!({"message": message, "documentation_url": DOCS}),
        Vec::new(),
    )
}

pub fn sha_of(kind: &str, bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(bytes);
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    hex[..40].to_string()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Query string as a map (no percent-decoding needed for the values this emulator reads).
pub fn query(uri: &axum::http::Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%3A", ":").replace("%2C", ",")))
        .collect()
}

/// One page of `items` and the `Link` header GitHub would send with it.
pub fn paginate(
    items: Vec<Value>,
    q: &HashMap<String, String>,
    path: &str,
    host_base: &str,
) -> Answer {
    let per_page: usize = q
        .get("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page: usize = q
        .get("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let pages = items.len().div_ceil(per_page).max(1);
    let chunk: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut headers = Vec::new();
    let link_to = |p: usize| {
        let mut q2: Vec<(String, String)> = q
            .iter()
            .filter(|(k, _)| *k != "page")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        q2.sort();
        q2.push(("page".into(), p.to_string()));
        let qs: Vec<String> = q2.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{host_base}{path}?{}", qs.join("&"))
    };
    let mut links = Vec::new();
    if page < pages {
        links.push(format!("<{}>; rel=\"next\"", link_to(page + 1)));
        links.push(format!("<{}>; rel=\"last\"", link_to(pages)));
    }
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", link_to(page - 1)));
        links.push(format!("<{}>; rel=\"first\"", link_to(1)));
    }
    if !links.is_empty() {
        headers.push(("link", links.join(", ")));
    }
    (StatusCode::OK, Value::Array(chunk), headers)
}

impl Emulator {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            repo: Mutex::new(Repo {
                next_id: 1,
                ..Default::default()
            }),
            ctl: Mutex::new(Control {
                limit: 5000,
                remaining: 5000,
                reset: now_secs() + 3600,
                refuse_next: 0,
                retry_after_secs: 1,
                counted: 0,
                not_modified: 0,
                refused: 0,
                writes: 0,
            }),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind emulator");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state((shared.clone(), base.clone()));
        // The server lives as long as the test's runtime: stores outlive this handle.
        tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Self { base, shared }
    }

    /// A store configuration pointing at this emulator, with test-speed retries.
    pub fn config(&self) -> sentinel_github::GithubConfig {
        let mut c = sentinel_github::GithubConfig::new("octo", "fleet");
        c.api_base = self.base.clone();
        c.token = Some("test-token".into());
        c.poll_interval = Some(std::time::Duration::from_millis(300));
        c.retry.base_backoff = std::time::Duration::from_millis(5);
        c.retry.secondary_default_wait = std::time::Duration::from_millis(200);
        c
    }

    /// [`Self::config`] without background polling (so a test's request counts are its own).
    pub fn quiet_config(&self) -> sentinel_github::GithubConfig {
        let mut c = self.config();
        c.poll_interval = Some(std::time::Duration::from_secs(3600));
        c
    }

    /// The next `n` requests get a secondary-limit 403 with `retry-after: secs`.
    pub fn refuse_next(&self, n: u32, retry_after_secs: u64) {
        let mut c = self.shared.ctl.lock().unwrap();
        c.refuse_next = n;
        c.retry_after_secs = retry_after_secs;
    }

    pub fn control(&self) -> Control {
        self.shared.ctl.lock().unwrap().clone()
    }

    pub fn with_repo<T>(&self, f: impl FnOnce(&mut Repo) -> T) -> T {
        f(&mut self.shared.repo.lock().unwrap())
    }

    /// Opens an issue as a person would (outside the store): as the token's owner, `OWNER`.
    pub fn open_issue(&self, title: &str, body: &str, labels: &[&str]) -> u64 {
        self.open_issue_as(Author::owner(), title, body, labels)
    }

    /// Opens an issue written by `author` (e.g. `Author::new("mallory", "NONE")`).
    pub fn open_issue_as(&self, author: Author, title: &str, body: &str, labels: &[&str]) -> u64 {
        self.with_repo(|r| {
            issues::create(
                r,
                &json!({"title": title, "body": body, "labels": labels}),
                author,
            )
            .1["number"]
                .as_u64()
                .unwrap()
        })
    }
}

fn rate_headers(c: &Control) -> Vec<(&'static str, String)> {
    vec![
        ("x-ratelimit-limit", c.limit.to_string()),
        ("x-ratelimit-remaining", c.remaining.to_string()),
        ("x-ratelimit-used", (c.limit - c.remaining).to_string()),
        ("x-ratelimit-reset", c.reset.to_string()),
        ("x-ratelimit-resource", "core".into()),
    ]
}

fn respond(
    status: StatusCode,
    body: Option<&Value>,
    headers: Vec<(&'static str, String)>,
) -> Response {
    let bytes = match body {
        Some(v) if status != StatusCode::NO_CONTENT && status != StatusCode::NOT_MODIFIED => {
            serde_json::to_vec(v).unwrap()
        }
        _ => Vec::new(),
    };
    let mut r = Response::builder().status(status);
    if !bytes.is_empty() {
        r = r.header("content-type", "application/json; charset=utf-8");
    }
    for (k, v) in headers {
        r = r.header(k, v);
    }
    r.body(Body::from(bytes)).unwrap()
}

async fn handle(State((shared, base)): State<(Arc<Shared>, String)>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let auth = parts
        .headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !(auth.starts_with("Bearer ") || auth.starts_with("token ")) {
        let (s, v, _) = error(StatusCode::UNAUTHORIZED, "Requires authentication");
        return respond(s, Some(&v), Vec::new());
    }
    // Refusals happen before the request is acted on, as on GitHub.
    {
        let mut c = shared.ctl.lock().unwrap();
        if c.refuse_next > 0 {
            c.refuse_next -= 1;
            c.refused += 1;
            let mut h = rate_headers(&c);
            h.push(("retry-after", c.retry_after_secs.to_string()));
            let (s, v, _) = error(
                StatusCode::FORBIDDEN,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            );
            return respond(s, Some(&v), h);
        }
        if c.remaining == 0 {
            c.refused += 1;
            let (s, v, _) = error(StatusCode::FORBIDDEN, "API rate limit exceeded for user.");
            return respond(s, Some(&v), rate_headers(&c));
        }
    }
    let bytes = to_bytes(body, 16 << 20).await.unwrap_or_default();
    let input: Value = if bytes.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(_) => {
                let (s, v, _) = error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
                return respond(s, Some(&v), Vec::new());
            }
        }
    };
    let (status, value, mut headers) = route(&shared, &parts.method, &parts.uri, &input, &base);
    let mut c = shared.ctl.lock().unwrap();
    if parts.method == Method::GET && status == StatusCode::OK {
        let etag = format!("W/\"{}\"", sha_of("etag", value.to_string().as_bytes()));
        if if_none_match(&parts.headers) == Some(etag.clone()) {
            c.not_modified += 1;
            let mut h = rate_headers(&c);
            h.push(("etag", etag));
            return respond(StatusCode::NOT_MODIFIED, None, h);
        }
        headers.push(("etag", etag));
    }
    c.counted += 1;
    c.remaining = c.remaining.saturating_sub(1);
    if parts.method != Method::GET {
        c.writes += 1;
    }
    headers.extend(rate_headers(&c));
    respond(status, Some(&value), headers)
}

fn if_none_match(h: &HeaderMap) -> Option<String> {
    h.get("if-none-match")
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::to_string)
}

fn route(
    shared: &Shared,
    method: &Method,
    uri: &axum::http::Uri,
    input: &Value,
    base: &str,
) -> Answer {
    let path = uri.path();
    let q = query(uri);
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    if segs.len() < 4 || segs[0] != "repos" {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let rest = &segs[3..];
    let mut repo = shared.repo.lock().unwrap();
    match (method.clone(), rest) {
        (m, ["git", tail @ ..]) => git::route(&mut repo, &m, tail, input, &q, path, base),
        (m, ["issues", tail @ ..]) => issues::route(&mut repo, &m, tail, input, &q, path, base),
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}
