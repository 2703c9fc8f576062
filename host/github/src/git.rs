//! Typed access to GitHub's git data API (refs, commits, trees, blobs) and the one primitive all
//! coordination rests on: [`Git::cas_ref`], a compare-and-swap of a ref.
//!
//! Why a ref update is a CAS: `PATCH /git/refs/{ref}` with `force: false` only succeeds if the
//! new commit is a descendant of the ref's current commit (otherwise 422 "Update is not a fast
//! forward"). A writer that read commit `C`, built `N` with parent `C`, and finds the ref moved
//! to `C'` (another child of `C`) is refused, because `N` does not descend from `C'`. Refs here
//! only ever move forward, so there is no ABA. Creating a ref (`POST /git/refs`) is the CAS from
//! "absent": the second creator gets 422 "Reference already exists". Every commit message carries
//! a random nonce, because two writers building byte-identical commits would get the same SHA
//! and both "win".
//!
//! Git objects are immutable and content-addressed, so commits, trees and blobs are cached by
//! SHA forever (bounded); refs are read with ETags. This module never interprets commit messages
//! or file contents.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Api, ApiError, Method};

/// Entries kept in the immutable-object cache before it is cleared (a crude bound: objects are
/// re-fetched at most once after a clear).
const OBJECT_CACHE_MAX: usize = 50_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub sha: String,
    pub message: String,
    pub tree: String,
    pub parents: Vec<String>,
}

/// One change to a tree: `Some(content)` writes a file, `None` deletes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeWrite {
    pub path: String,
    pub content: Option<String>,
}

#[derive(Clone)]
enum Object {
    Commit(Commit),
    Tree(Arc<Vec<(String, String)>>),
    Blob(Bytes),
}

pub struct Git {
    pub(crate) api: Arc<Api>,
    objects: Mutex<HashMap<String, Object>>,
}

#[derive(Deserialize)]
struct RefAnswer {
    #[serde(rename = "ref")]
    name: String,
    object: RefObject,
}

#[derive(Deserialize)]
struct RefObject {
    sha: String,
}

#[derive(Deserialize)]
struct CommitAnswer {
    sha: String,
    message: String,
    tree: ShaOnly,
    parents: Vec<ShaOnly>,
}

#[derive(Deserialize)]
struct ShaOnly {
    sha: String,
}

#[derive(Deserialize)]
struct TreeAnswer {
    sha: String,
    tree: Vec<TreeEntry>,
    #[serde(default)]
    truncated: bool,
}

#[derive(Deserialize)]
struct TreeEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    sha: String,
}

#[derive(Deserialize)]
struct BlobAnswer {
    content: String,
    encoding: String,
}

impl Git {
    pub fn new(api: Arc<Api>) -> Self {
        Self {
            api,
            objects: Mutex::new(HashMap::new()),
        }
    }

    fn remember(&self, sha: &str, o: Object) {
        let mut g = self.objects.lock().unwrap();
        if g.len() >= OBJECT_CACHE_MAX {
            g.clear();
        }
        g.insert(sha.to_string(), o);
    }

    fn cached(&self, sha: &str) -> Option<Object> {
        self.objects.lock().unwrap().get(sha).cloned()
    }

    /// The commit a ref points to; `None` if the ref does not exist. `name` is without `refs/`.
    pub async fn get_ref(&self, name: &str) -> Result<Option<String>, ApiError> {
        let path = self.api.repo_path(&format!("/git/ref/{name}"));
        match self.api.get::<RefAnswer>(&path).await {
            Ok(r) => Ok(Some(r.object.sha)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every ref under `prefix` (without `refs/`), as (name without `refs/`, commit sha).
    pub async fn matching_refs(&self, prefix: &str) -> Result<Vec<(String, String)>, ApiError> {
        let path = self
            .api
            .repo_path(&format!("/git/matching-refs/{prefix}?per_page=100"));
        let refs: Vec<RefAnswer> = self.api.get_all(&path).await?;
        Ok(refs
            .into_iter()
            .map(|r| {
                let name = r.name.strip_prefix("refs/").unwrap_or(&r.name).to_string();
                (name, r.object.sha)
            })
            .collect())
    }

    /// Moves ref `name` from `expected` (`None` = absent) to `new`. `Ok(false)` if someone else
    /// moved it first. A refusal whose ref already points at `new` counts as success: it is our
    /// own earlier attempt that GitHub applied before a retried request.
    pub async fn cas_ref(
        &self,
        name: &str,
        expected: Option<&str>,
        new: &str,
    ) -> Result<bool, ApiError> {
        let outcome = match expected {
            None => {
                let body = json!({"ref": format!("refs/{name}"), "sha": new});
                self.api
                    .send(
                        Method::Post,
                        &self.api.repo_path("/git/refs"),
                        Some(&body),
                        true,
                    )
                    .await
            }
            Some(_) => {
                let body = json!({"sha": new, "force": false});
                self.api
                    .send(
                        Method::Patch,
                        &self.api.repo_path(&format!("/git/refs/{name}")),
                        Some(&body),
                        true,
                    )
                    .await
            }
        };
        match outcome {
            Ok(_) => Ok(true),
            Err(e) if e.is_unprocessable() => Ok(self.get_ref(name).await?.as_deref() == Some(new)),
            Err(e) => Err(e),
        }
    }

    pub async fn create_commit(
        &self,
        message: &str,
        tree: &str,
        parents: &[String],
    ) -> Result<String, ApiError> {
        let body = json!({"message": message, "tree": tree, "parents": parents});
        let reply = self
            .api
            .send(
                Method::Post,
                &self.api.repo_path("/git/commits"),
                Some(&body),
                true,
            )
            .await?;
        let c: CommitAnswer = reply.json()?;
        let commit = Commit {
            sha: c.sha.clone(),
            message: message.to_string(),
            tree: tree.to_string(),
            parents: parents.to_vec(),
        };
        self.remember(&c.sha, Object::Commit(commit));
        Ok(c.sha)
    }

    pub async fn get_commit(&self, sha: &str) -> Result<Commit, ApiError> {
        if let Some(Object::Commit(c)) = self.cached(sha) {
            return Ok(c);
        }
        let c: CommitAnswer = self
            .api
            .get(&self.api.repo_path(&format!("/git/commits/{sha}")))
            .await?;
        let commit = Commit {
            sha: c.sha,
            message: c.message,
            tree: c.tree.sha,
            parents: c.parents.into_iter().map(|p| p.sha).collect(),
        };
        self.remember(sha, Object::Commit(commit.clone()));
        Ok(commit)
    }

    /// Creates a tree from `base` with `writes` applied (nested paths; `content: None` deletes).
    pub async fn create_tree(
        &self,
        base: Option<&str>,
        writes: &[TreeWrite],
    ) -> Result<String, ApiError> {
        let entries: Vec<Value> = writes
            .iter()
            .map(|w| match &w.content {
                Some(c) => {
                    json!({"path": w.path, "mode": "100644", "type": "blob", "content": c})
                }
                None => json!({"path": w.path, "mode": "100644", "type": "blob", "sha": null}),
            })
            .collect();
        let mut body = json!({"tree": entries});
        if let Some(b) = base {
            body["base_tree"] = json!(b);
        }
        let reply = self
            .api
            .send(
                Method::Post,
                &self.api.repo_path("/git/trees"),
                Some(&body),
                true,
            )
            .await?;
        Ok(reply.json::<TreeAnswer>()?.sha)
    }

    /// Every blob of a tree, recursively, as (path, blob sha).
    pub async fn tree_files(&self, sha: &str) -> Result<Arc<Vec<(String, String)>>, ApiError> {
        if let Some(Object::Tree(t)) = self.cached(sha) {
            return Ok(t);
        }
        let t: TreeAnswer = self
            .api
            .get(&self.api.repo_path(&format!("/git/trees/{sha}?recursive=1")))
            .await?;
        if t.truncated {
            // GitHub truncates recursive listings past 100,000 entries or 7 MB. Reading a
            // partial document would silently lose records, so refuse instead.
            return Err(ApiError::Decode(format!(
                "tree {} is too large for one recursive listing; prune it",
                t.sha
            )));
        }
        let files: Arc<Vec<(String, String)>> = Arc::new(
            t.tree
                .into_iter()
                .filter(|e| e.kind == "blob")
                .map(|e| (e.path, e.sha))
                .collect(),
        );
        self.remember(sha, Object::Tree(files.clone()));
        Ok(files)
    }

    pub async fn get_blob(&self, sha: &str) -> Result<Bytes, ApiError> {
        if let Some(Object::Blob(b)) = self.cached(sha) {
            return Ok(b);
        }
        let b: BlobAnswer = self
            .api
            .get(&self.api.repo_path(&format!("/git/blobs/{sha}")))
            .await?;
        let bytes = if b.encoding == "base64" {
            let cleaned: String = b.content.split_whitespace().collect();
            Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(cleaned)
                    .map_err(|e| ApiError::Decode(format!("blob {sha}: {e}")))?,
            )
        } else {
            Bytes::from(b.content.into_bytes())
        };
        self.remember(sha, Object::Blob(bytes.clone()));
        Ok(bytes)
    }
}
