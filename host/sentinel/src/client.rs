//! A small HTTP client for the host API, used by the operator CLI and the end-to-end tests.

use anyhow::{Context, bail};
use reqwest::Method;

/// Talks to one host.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    /// The tenant an admin acts on (`X-Sentinel-Tenant`).
    tenant: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client for `server` (e.g. `http://127.0.0.1:7070`).
    pub fn new(server: &str, token: Option<&str>, tenant: Option<&str>) -> anyhow::Result<Client> {
        let base = server.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            bail!("--server {server:?}: expected http://HOST:PORT");
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()?;
        Ok(Client {
            base,
            token: token.map(str::to_string),
            tenant: tenant.map(str::to_string),
            http,
        })
    }

    /// Sends a request; a non-2xx answer becomes an error with the API's message.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(t) = &self.tenant {
            req = req.header(crate::api::auth::TENANT_HEADER, t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {} ({method} {path})", self.base))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value: serde_json::Value =
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        if !status.is_success() {
            let message = value["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            let code = value["error"]["code"].as_str().unwrap_or("").to_string();
            return Err(ApiFailure {
                status: status.as_u16(),
                code,
                message,
            }
            .into());
        }
        Ok(value)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.call(Method::DELETE, path, None).await
    }

    /// Text of `GET path` (for `/metrics`).
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        Ok(resp.error_for_status()?.text().await?)
    }
}

/// A non-2xx answer of the API: its status, code and message (displayed `STATUS CODE: message`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// Percent-encodes one path segment.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
