//! Locks: one ref per key, `refs/sentinel/locks/<tenant>/<key>` (both components encoded by
//! [`crate::codec::enc`]), pointing at a commit whose message is the lock record in seed 001's
//! `DISTRIBUTED_LOCK` shape plus the fencing token. Every grant, renewal and release is a new
//! commit whose parent is the previous state, installed by [`Git::cas_ref`]; so the ref's history
//! is the key's grant history and the CAS makes every transition race-free:
//!
//! * **First grant** of a key creates the ref: a racing creator gets 422 and rereads.
//! * **Grant over a free or expired state** is a fast-forward-only update from the state that
//!   was judged free/expired: if anyone moved the ref since (a renewal that saved it, another
//!   takeover), the update is refused and the decision is taken again on the new state. An
//!   expired lock is therefore taken over at most once per expiry.
//! * **Release** does not delete the ref: it commits a `released` state that keeps the token.
//!   Deleting would let a slow acquirer, holding a token fetched before a later grant, recreate
//!   the ref with a smaller token.
//!
//! Tokens come from [`FenceCounter`], a counter ref advanced by the same CAS. A grant's token
//! must exceed the token in the state it replaces (a stale token is discarded and a new one
//! fetched), so along a key's history tokens strictly increase, and because the counter is
//! shared they also differ across keys. Expiry is judged on the store's clock at decision time.
//! This module owns lock refs and the counter ref; it never touches other refs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sentinel_coord::model::{HolderSecret, Lock, LockFilter, LockRequest, holder_proven};
use sentinel_coord::{Clock, LockError, LockStore, StoreError, StoreResult};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::codec::{dec, enc, iso};
use crate::doc::contention_backoff;
use crate::git::Git;

const LOCKS_PREFIX: &str = "sentinel/locks/";
const FENCE_REF: &str = "sentinel/counters/lock-fence";
const MAX_ATTEMPTS: u32 = 200;

/// The commit-message record of one lock state (seed 001 `DISTRIBUTED_LOCK` plus what the
/// contract needs: tenant, token, exact milliseconds, held/released).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockRecord {
    #[serde(rename = "type")]
    pub kind: String,
    pub state: String,
    pub tenant: String,
    /// The seed's name for the lock key.
    pub task_id: String,
    pub worker_id: String,
    pub token: u64,
    pub acquired_at: String,
    pub expires_at: String,
    pub acquired_at_ms: i64,
    pub expires_at_ms: i64,
    pub metadata: Value,
    pub nonce: String,
    /// SHA-256 (hex) of the holder's secret, when the grant was made with one: release and
    /// renew must present the secret. Absent on older records and on released ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_digest: Option<String>,
}

impl LockRecord {
    fn held(&self) -> bool {
        self.state == "held"
    }

    fn to_lock(&self) -> Lock {
        Lock {
            tenant: self.tenant.clone(),
            key: self.task_id.clone(),
            owner: self.worker_id.clone(),
            token: self.token,
            acquired_at: self.acquired_at_ms,
            expires_at: self.expires_at_ms,
            metadata: self.metadata.clone(),
            holder_secret: None,
        }
    }

    fn with_state(&self, state: &str, expires_at_ms: i64) -> Self {
        Self {
            state: state.into(),
            expires_at: iso(expires_at_ms),
            expires_at_ms,
            nonce: uuid::Uuid::new_v4().to_string(),
            ..self.clone()
        }
    }
}

pub fn lock_ref(tenant: &str, key: &str) -> String {
    format!("{LOCKS_PREFIX}{}/{}", enc(tenant), enc(key))
}

/// The tree every lock and counter commit carries: their records live in commit messages, but a
/// commit needs a tree, and creating this one (content-addressed, so every process gets the same
/// SHA) avoids relying on the empty tree being present in GitHub's object store. Created on first
/// use, so opening a store needs no request.
pub struct RecordTree {
    git: Arc<Git>,
    sha: tokio::sync::OnceCell<String>,
}

const RECORD_TREE_README: &str = "Sentinel keeps lock and counter records in the messages of \
commits under refs/sentinel/. See PROTOCOL.md in the sentinel-github crate.\n";

impl RecordTree {
    pub fn new(git: Arc<Git>) -> Self {
        Self {
            git,
            sha: tokio::sync::OnceCell::new(),
        }
    }

    pub async fn get(&self) -> Result<String, StoreError> {
        let sha = self
            .sha
            .get_or_try_init(|| async {
                let writes = [crate::git::TreeWrite {
                    path: "README.md".into(),
                    content: Some(RECORD_TREE_README.into()),
                }];
                self.git.create_tree(None, &writes).await
            })
            .await?;
        Ok(sha.clone())
    }
}

/// The fencing-token counter: a ref whose commit message holds the last value handed out.
pub struct FenceCounter {
    git: Arc<Git>,
    tree: Arc<RecordTree>,
    local: tokio::sync::Mutex<()>,
}

impl FenceCounter {
    pub fn new(git: Arc<Git>, tree: Arc<RecordTree>) -> Self {
        Self {
            git,
            tree,
            local: tokio::sync::Mutex::new(()),
        }
    }

    /// Strictly greater than every value returned before, by any process.
    pub async fn next(&self) -> Result<u64, StoreError> {
        let _turn = self.local.lock().await;
        for attempt in 1..=MAX_ATTEMPTS {
            let head = self.git.get_ref(FENCE_REF).await?;
            let current = match &head {
                Some(sha) => {
                    let c = self.git.get_commit(sha).await?;
                    serde_json::from_str::<Value>(c.message.trim())
                        .ok()
                        .and_then(|v| v.get("value").and_then(Value::as_u64))
                        .ok_or_else(|| {
                            StoreError::Corrupt(format!("{FENCE_REF}: unreadable counter"))
                        })?
                }
                None => 0,
            };
            let next = current + 1;
            let message = json!({"type": "FENCE_COUNTER", "value": next,
                                 "nonce": uuid::Uuid::new_v4().to_string()})
            .to_string();
            let parents: Vec<String> = head.iter().cloned().collect();
            let tree = self.tree.get().await?;
            let commit = self.git.create_commit(&message, &tree, &parents).await?;
            if self
                .git
                .cas_ref(FENCE_REF, head.as_deref(), &commit)
                .await?
            {
                return Ok(next);
            }
            tokio::time::sleep(contention_backoff(attempt)).await;
        }
        Err(StoreError::Unavailable(
            "fence counter: too much contention".into(),
        ))
    }
}

pub struct GithubLocks {
    git: Arc<Git>,
    clock: Arc<dyn Clock>,
    tree: Arc<RecordTree>,
    fence: FenceCounter,
    /// Per-key turn-taking inside this process (racing ourselves only burns requests).
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// One observed state of a lock ref.
struct Observed {
    head: Option<String>,
    record: Option<LockRecord>,
}

impl GithubLocks {
    /// `tree` is the tree every lock commit carries (records live in the message).
    pub fn new(git: Arc<Git>, clock: Arc<dyn Clock>, tree: Arc<RecordTree>) -> Self {
        Self {
            fence: FenceCounter::new(git.clone(), tree.clone()),
            git,
            clock,
            tree,
            turns: Mutex::new(HashMap::new()),
        }
    }

    fn turn(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut g = self.turns.lock().unwrap();
        // Forget keys nobody is waiting on, so the map stays as small as the active key set.
        g.retain(|_, m| Arc::strong_count(m) > 1);
        g.entry(name.to_string()).or_default().clone()
    }

    async fn observe(&self, name: &str) -> Result<Observed, StoreError> {
        let head = self.git.get_ref(name).await?;
        let record = match &head {
            Some(sha) => Some(self.record_at(sha).await?),
            None => None,
        };
        Ok(Observed { head, record })
    }

    async fn record_at(&self, sha: &str) -> Result<LockRecord, StoreError> {
        let c = self.git.get_commit(sha).await?;
        serde_json::from_str(c.message.trim())
            .map_err(|e| StoreError::Corrupt(format!("lock commit {sha}: {e}")))
    }

    /// Commits `record` on top of the observed state; `false` if someone moved the ref first.
    async fn install(
        &self,
        name: &str,
        seen: &Observed,
        record: &LockRecord,
    ) -> Result<bool, StoreError> {
        let message =
            serde_json::to_string_pretty(record).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let parents: Vec<String> = seen.head.iter().cloned().collect();
        let tree = self.tree.get().await?;
        let commit = self.git.create_commit(&message, &tree, &parents).await?;
        Ok(self
            .git
            .cas_ref(name, seen.head.as_deref(), &commit)
            .await?)
    }

    /// Every lock ref with its current record.
    async fn all(&self) -> Result<Vec<(String, Observed)>, StoreError> {
        let refs = self.git.matching_refs(LOCKS_PREFIX).await?;
        let mut out = Vec::with_capacity(refs.len());
        for (name, sha) in refs {
            let record = self.record_at(&sha).await?;
            out.push((
                name,
                Observed {
                    head: Some(sha),
                    record: Some(record),
                },
            ));
        }
        Ok(out)
    }

    /// Releases the observed held state if `pick` still holds for the current state; retries on
    /// races. `true` if this call released it.
    async fn release_if(
        &self,
        name: &str,
        pick: impl Fn(&LockRecord, i64) -> bool,
    ) -> Result<bool, StoreError> {
        let turn = self.turn(name);
        let _t = turn.lock().await;
        for attempt in 1..=MAX_ATTEMPTS {
            let seen = self.observe(name).await?;
            let now = self.clock.now_ms();
            let Some(rec) = seen.record.as_ref().filter(|r| r.held() && pick(r, now)) else {
                return Ok(false);
            };
            let released = rec.with_state("released", rec.expires_at_ms.min(now));
            if self.install(name, &seen, &released).await? {
                return Ok(true);
            }
            tokio::time::sleep(contention_backoff(attempt)).await;
        }
        Err(StoreError::Unavailable(format!(
            "{name}: too much contention"
        )))
    }

    /// Shared body of release and renew: check the grant, then commit `next(record, now)`.
    async fn change_grant(
        &self,
        tenant: &str,
        key: &str,
        owner: &str,
        token: u64,
        proof: Option<&HolderSecret>,
        next: impl Fn(&LockRecord, i64) -> LockRecord,
        release_when_expired: bool,
    ) -> Result<LockRecord, LockError> {
        let name = lock_ref(tenant, key);
        let turn = self.turn(&name);
        let _t = turn.lock().await;
        for attempt in 1..=MAX_ATTEMPTS {
            let seen = self.observe(&name).await?;
            let now = self.clock.now_ms();
            let Some(rec) = seen.record.as_ref().filter(|r| r.held()) else {
                return Err(LockError::NotFound { key: key.into() });
            };
            // A wrong proof is judged before expiry: it never clears even an expired grant.
            if rec.worker_id != owner
                || rec.token != token
                || !holder_proven(rec.holder_digest.as_deref(), proof)
            {
                return Err(LockError::InvalidOwner {
                    key: key.into(),
                    owner: owner.into(),
                });
            }
            if now >= rec.expires_at_ms {
                if release_when_expired {
                    // An expired grant is dead weight; clearing it is safe, and a race here
                    // only means someone else already cleared or replaced it.
                    let released = LockRecord {
                        holder_digest: None,
                        ..rec.with_state("released", rec.expires_at_ms)
                    };
                    let _ = self.install(&name, &seen, &released).await?;
                }
                return Err(LockError::Expired { key: key.into() });
            }
            let new = next(rec, now);
            if self.install(&name, &seen, &new).await? {
                return Ok(new);
            }
            tokio::time::sleep(contention_backoff(attempt)).await;
        }
        Err(StoreError::Unavailable(format!("{name}: too much contention")).into())
    }
}

#[async_trait]
impl LockStore for GithubLocks {
    async fn acquire_lock(&self, req: &LockRequest) -> StoreResult<Option<Lock>> {
        req.validate()?;
        let name = lock_ref(&req.tenant, &req.key);
        let turn = self.turn(&name);
        let _t = turn.lock().await;
        let mut token = 0u64;
        for attempt in 1..=MAX_ATTEMPTS {
            let seen = self.observe(&name).await?;
            if let Some(rec) = &seen.record
                && rec.held()
                && self.clock.now_ms() < rec.expires_at_ms
            {
                return Ok(None);
            }
            let floor = seen.record.as_ref().map_or(0, |r| r.token);
            while token <= floor {
                token = self.fence.next().await?;
            }
            // Time is read after the token: the grant's TTL starts when it is decided.
            let now = self.clock.now_ms();
            let expires = now.saturating_add(req.ttl_ms.min(i64::MAX as u64) as i64);
            let record = LockRecord {
                kind: "DISTRIBUTED_LOCK".into(),
                state: "held".into(),
                tenant: req.tenant.clone(),
                task_id: req.key.clone(),
                worker_id: req.owner.clone(),
                token,
                acquired_at: iso(now),
                expires_at: iso(expires),
                acquired_at_ms: now,
                expires_at_ms: expires,
                metadata: req.metadata.clone(),
                nonce: uuid::Uuid::new_v4().to_string(),
                holder_digest: req.holder_secret.as_ref().map(HolderSecret::digest),
            };
            // Re-judge expiry at `now`: the state may have been live when observed but the
            // decision must hold at the instant of the grant too (a manual clock can jump).
            if let Some(rec) = &seen.record
                && rec.held()
                && now < rec.expires_at_ms
            {
                return Ok(None);
            }
            if self.install(&name, &seen, &record).await? {
                return Ok(Some(Lock {
                    holder_secret: req.holder_secret.clone(),
                    ..record.to_lock()
                }));
            }
            tokio::time::sleep(contention_backoff(attempt)).await;
        }
        Err(StoreError::Unavailable(format!(
            "{name}: too much contention"
        )))
    }

    async fn release_lock(
        &self,
        tenant: &str,
        key: &str,
        owner: &str,
        token: u64,
        proof: Option<&HolderSecret>,
    ) -> Result<(), LockError> {
        self.change_grant(
            tenant,
            key,
            owner,
            token,
            proof,
            |rec, now| LockRecord {
                holder_digest: None,
                ..rec.with_state("released", now)
            },
            true,
        )
        .await
        .map(|_| ())
    }

    async fn renew_lock(
        &self,
        tenant: &str,
        key: &str,
        owner: &str,
        token: u64,
        ttl_ms: u64,
        proof: Option<&HolderSecret>,
    ) -> Result<Lock, LockError> {
        sentinel_coord::model::validate_lock_ttl(ttl_ms).map_err(StoreError::from)?;
        self.change_grant(
            tenant,
            key,
            owner,
            token,
            proof,
            |rec, now| {
                rec.with_state(
                    "held",
                    now.saturating_add(ttl_ms.min(i64::MAX as u64) as i64),
                )
            },
            false,
        )
        .await
        .map(|r| Lock {
            holder_secret: proof.cloned(),
            ..r.to_lock()
        })
    }

    async fn get_lock(&self, tenant: &str, key: &str) -> StoreResult<Option<Lock>> {
        let seen = self.observe(&lock_ref(tenant, key)).await?;
        let now = self.clock.now_ms();
        Ok(seen
            .record
            .filter(|r| r.held() && now < r.expires_at_ms)
            .map(|r| r.to_lock()))
    }

    async fn list_locks(&self, filter: &LockFilter) -> StoreResult<Vec<Lock>> {
        let now = self.clock.now_ms();
        let mut out: Vec<Lock> = self
            .all()
            .await?
            .into_iter()
            .filter_map(|(_, o)| o.record)
            .filter(|r| r.held())
            .filter(|r| filter.include_expired || now < r.expires_at_ms)
            .filter(|r| filter.tenant.as_ref().is_none_or(|t| *t == r.tenant))
            .filter(|r| filter.owner.as_ref().is_none_or(|o| *o == r.worker_id))
            .map(|r| r.to_lock())
            .collect();
        out.sort_by(|a, b| (&a.tenant, &a.key).cmp(&(&b.tenant, &b.key)));
        Ok(out)
    }

    async fn cleanup_stale_locks(&self) -> StoreResult<u64> {
        let mut n = 0;
        for (name, seen) in self.all().await? {
            let now = self.clock.now_ms();
            if seen
                .record
                .as_ref()
                .is_some_and(|r| r.held() && now >= r.expires_at_ms)
                && self
                    .release_if(&name, |r, now| now >= r.expires_at_ms)
                    .await?
            {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn release_owner_locks(&self, owner: &str) -> StoreResult<u64> {
        let mut n = 0;
        for (name, seen) in self.all().await? {
            if seen
                .record
                .as_ref()
                .is_some_and(|r| r.held() && r.worker_id == owner)
                && self.release_if(&name, |r, _| r.worker_id == owner).await?
            {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Decodes a lock ref name back into (tenant, key), for tools that list refs.
pub fn parse_lock_ref(name: &str) -> Option<(String, String)> {
    let rest = name.strip_prefix(LOCKS_PREFIX)?;
    let (t, k) = rest.split_once('/')?;
    Some((dec(t), dec(k)))
}
