//! A *document*: a ref (`refs/sentinel/<name>`) whose commit's tree holds JSON files, changed
//! only by optimistic transactions. [`Doc::transact`] reads a snapshot, lets the caller compute
//! writes from it, commits them on top of the snapshot's commit and moves the ref with
//! [`Git::cas_ref`]; if another writer moved the ref first, it rereads and recomputes. So every
//! committed transaction saw the state it changed, exactly as a serialisable database
//! transaction would, and a transaction's writes land all or none (one commit).
//!
//! Reading costs one conditional GET of the ref (a 304 when nothing changed) plus, for a new
//! commit, its tree listing and the blobs that changed (everything is cached by SHA). Writing
//! costs three requests (tree with inline contents, commit, ref update) whatever the number of
//! files. This module knows nothing of what the files mean.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use sentinel_coord::StoreError;
use serde_json::Value;

use crate::git::{Git, TreeWrite};

/// How many times a transaction recomputes after losing a race before reporting the store
/// unavailable (contention that high means the fleet is too big for one ref).
const MAX_ATTEMPTS: u32 = 200;

/// A consistent view of a document at one commit.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub head: Option<String>,
    pub tree: Option<String>,
    pub files: BTreeMap<String, Arc<Value>>,
}

impl Snapshot {
    pub fn get(&self, path: &str) -> Option<&Value> {
        self.files.get(path).map(|v| &**v)
    }

    /// Files under `dir/` (the prefix is included in the returned paths).
    pub fn under<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = (&'a String, &'a Value)> {
        self.files
            .range(dir.to_string()..)
            .take_while(move |(k, _)| k.starts_with(dir))
            .map(|(k, v)| (k, &**v))
    }
}

/// One file change of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Put(String, Value),
    Delete(String),
}

pub struct Doc {
    git: Arc<Git>,
    /// Ref name without `refs/`, e.g. `sentinel/queue`.
    name: String,
    /// Parsed files by blob SHA: blobs never change, so neither does their parse.
    parsed: Mutex<BTreeMap<String, Arc<Value>>>,
    /// Serialises this process's transactions on the document: racing ourselves would only burn
    /// requests. Other processes are kept out by the ref CAS, not by this.
    local: tokio::sync::Mutex<()>,
}

impl Doc {
    pub fn new(git: Arc<Git>, name: impl Into<String>) -> Self {
        Self {
            git,
            name: name.into(),
            parsed: Mutex::new(BTreeMap::new()),
            local: tokio::sync::Mutex::new(()),
        }
    }

    pub fn ref_name(&self) -> &str {
        &self.name
    }

    /// The current commit of the document's ref (`None` before the first transaction).
    pub async fn head(&self) -> Result<Option<String>, StoreError> {
        Ok(self.git.get_ref(&self.name).await?)
    }

    pub async fn read(&self) -> Result<Snapshot, StoreError> {
        let Some(head) = self.git.get_ref(&self.name).await? else {
            return Ok(Snapshot::default());
        };
        let commit = self.git.get_commit(&head).await?;
        let listing = self.git.tree_files(&commit.tree).await?;
        let mut files = BTreeMap::new();
        let mut keep = BTreeMap::new();
        for (path, sha) in listing.iter() {
            let cached = self.parsed.lock().unwrap().get(sha).cloned();
            let value = match cached {
                Some(v) => v,
                None => {
                    let bytes = self.git.get_blob(sha).await?;
                    let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
                        StoreError::Corrupt(format!("{}: {path} is not JSON: {e}", self.name))
                    })?;
                    Arc::new(v)
                }
            };
            keep.insert(sha.clone(), value.clone());
            files.insert(path.clone(), value);
        }
        // Keep only the parses of the current commit, so the cache tracks the document's size.
        *self.parsed.lock().unwrap() = keep;
        Ok(Snapshot {
            head: Some(head),
            tree: Some(commit.tree),
            files,
        })
    }

    /// Runs `f` on fresh snapshots until its writes commit without a race. `f` must be a pure
    /// function of the snapshot (it may run several times). No writes: nothing is committed.
    pub async fn transact<T, F>(&self, what: &str, mut f: F) -> Result<T, StoreError>
    where
        F: FnMut(&Snapshot) -> Result<(Vec<Write>, T), StoreError>,
    {
        let _turn = self.local.lock().await;
        for attempt in 1..=MAX_ATTEMPTS {
            let snap = self.read().await?;
            let (writes, out) = f(&snap)?;
            if writes.is_empty() {
                return Ok(out);
            }
            let mut tree_writes = Vec::with_capacity(writes.len());
            for w in &writes {
                tree_writes.push(match w {
                    Write::Put(p, v) => TreeWrite {
                        path: p.clone(),
                        content: Some(
                            serde_json::to_string_pretty(v)
                                .map_err(|e| StoreError::Invalid(e.to_string()))?,
                        ),
                    },
                    Write::Delete(p) => TreeWrite {
                        path: p.clone(),
                        content: None,
                    },
                });
            }
            let tree = self
                .git
                .create_tree(snap.tree.as_deref(), &tree_writes)
                .await?;
            // The nonce makes the commit unique even if another writer computed the same tree
            // from the same parent (see git.rs: identical commits would both "win").
            let message = format!(
                "sentinel {}: {what}\n\nnonce: {}",
                self.name,
                uuid::Uuid::new_v4()
            );
            let parents: Vec<String> = snap.head.iter().cloned().collect();
            let commit = self.git.create_commit(&message, &tree, &parents).await?;
            if self
                .git
                .cas_ref(&self.name, snap.head.as_deref(), &commit)
                .await?
            {
                return Ok(out);
            }
            tracing::trace!(doc = %self.name, attempt, "lost a race; recomputing");
            tokio::time::sleep(contention_backoff(attempt)).await;
        }
        Err(StoreError::Unavailable(format!(
            "{}: gave up after {MAX_ATTEMPTS} conflicting transactions",
            self.name
        )))
    }
}

/// Short, growing, jittered pauses between lost races so that racing writers spread out.
pub fn contention_backoff(attempt: u32) -> Duration {
    let cap = (2u64 << attempt.min(7)).min(250);
    Duration::from_millis(rand::rng().random_range(0..=cap))
}
