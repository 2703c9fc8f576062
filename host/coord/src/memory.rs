//! MemorySyncManager (seeds 000/001): namespaced JSON key/value per tenant with versions,
//! last-write-wins, compare-and-set, TTL, a bounded local cache and watches. Watches follow the
//! store's change log from a sequence number taken at subscription, so they see every later
//! change, in order, from any process. The cache is kept coherent by the same change log; it never
//! serves an entry with a TTL (expiry is judged on the store's clock, not here).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::MemoryConfig;
use crate::error::{StoreError, SyncError};
use crate::model::*;
use crate::store::{Store, Topic};

const PAGE: u32 = 512;

/// Which keys of a namespace a watch sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Key(String),
    Prefix(String),
}

impl Selector {
    fn matches(&self, key: &str) -> bool {
        match self {
            Selector::Key(k) => k == key,
            Selector::Prefix(p) => key.starts_with(p.as_str()),
        }
    }
}

/// A stream of changes. `start_seq` is the change-log position at subscription: every change
/// with a greater sequence that matches is delivered, in order, and nothing before it.
pub struct Subscription {
    pub start_seq: u64,
    pub events: mpsc::UnboundedReceiver<ChangeEvent>,
    task: JoinHandle<()>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Seed `watch`'s unwatch function: dropping it (or calling `unwatch`) stops the callbacks.
pub struct WatchHandle {
    task: JoinHandle<()>,
    pub start_seq: u64,
}

impl WatchHandle {
    pub fn unwatch(self) {}
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Default)]
struct Cache {
    entries: HashMap<(String, String), Option<MemoryEntry>>,
    order: VecDeque<(String, String)>,
    /// Bumped on every invalidation, so a read that raced with one does not re-insert old data.
    generation: u64,
}

impl Cache {
    fn insert(&mut self, k: (String, String), v: Option<MemoryEntry>, cap: usize) {
        if cap == 0 {
            return;
        }
        if self.entries.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
        }
        if self.order.len() > 2 * cap {
            self.compact();
        }
        while self.entries.len() > cap {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
    }

    /// Invalidation leaves keys in `order`; drop those so it stays bounded by the entries.
    fn compact(&mut self) {
        let Cache { entries, order, .. } = self;
        let mut seen = std::collections::HashSet::new();
        order.retain(|k| entries.contains_key(k) && seen.insert(k.clone()));
    }

    fn invalidate(&mut self, k: &(String, String)) {
        self.generation += 1;
        self.entries.remove(k);
    }
}

pub struct MemorySync {
    store: Arc<dyn Store>,
    tenant: String,
    writer: String,
    config: MemoryConfig,
    cache: Arc<Mutex<Cache>>,
    follower: JoinHandle<()>,
}

impl Drop for MemorySync {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

fn sync_err(ns: &str) -> impl FnOnce(StoreError) -> SyncError + '_ {
    move |source| SyncError::Store {
        namespace: ns.to_string(),
        source,
    }
}

impl MemorySync {
    /// `writer` identifies this node in last-write-wins tie-breaks and change events.
    pub async fn start(
        store: Arc<dyn Store>,
        tenant: impl Into<String>,
        writer: impl Into<String>,
        config: MemoryConfig,
    ) -> Result<Self, SyncError> {
        let tenant = tenant.into();
        let cache = Arc::new(Mutex::new(Cache::default()));
        let from = store.memory_seq().await.map_err(sync_err("*"))?;
        let c = Arc::clone(&cache);
        let follower = spawn_follower(
            Arc::clone(&store),
            tenant.clone(),
            from,
            Duration::from_millis(config.poll_interval_ms),
            move |e| {
                c.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .invalidate(&(e.namespace.clone(), e.key.clone()));
                true
            },
        );
        Ok(Self {
            store,
            tenant,
            writer: writer.into(),
            config,
            cache,
            follower,
        })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    fn generation(&self) -> u64 {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .generation
    }

    fn remember(&self, ns: &str, key: &str, v: Option<MemoryEntry>, generation: u64) {
        if v.as_ref().is_some_and(|e| e.expires_at.is_some()) {
            return;
        }
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.generation == generation {
            c.insert((ns.to_string(), key.to_string()), v, self.config.cache_size);
        }
    }

    fn write(&self, ns: &str, key: &str, value: serde_json::Value) -> MemoryWrite {
        MemoryWrite {
            tenant: self.tenant.clone(),
            namespace: ns.to_string(),
            key: key.to_string(),
            value,
            writer: self.writer.clone(),
            timestamp: None,
            ttl_ms: None,
            expected_version: None,
        }
    }

    async fn apply(&self, w: MemoryWrite) -> Result<MemoryEntry, SyncError> {
        let (ns, key) = (w.namespace.clone(), w.key.clone());
        if ns.is_empty() {
            return Err(SyncError::Invalid {
                namespace: ns,
                message: "namespace must be non-empty".into(),
            });
        }
        let generation = self.generation();
        match self.store.memory_set(&w).await.map_err(sync_err(&ns))? {
            WriteOutcome::Written(e) => {
                self.remember(&ns, &key, Some(e.clone()), generation);
                Ok(e)
            }
            WriteOutcome::Superseded { .. } => Err(SyncError::Superseded { namespace: ns, key }),
            WriteOutcome::VersionMismatch { current } => Err(SyncError::VersionConflict {
                namespace: ns,
                key,
                current: Some(current),
            }),
        }
    }

    fn to_value<T: Serialize>(ns: &str, value: &T) -> Result<serde_json::Value, SyncError> {
        serde_json::to_value(value).map_err(|e| SyncError::Invalid {
            namespace: ns.to_string(),
            message: format!("value is not JSON-serialisable: {e}"),
        })
    }

    /// Seed `set` (last-write-wins on the store's clock).
    pub async fn set<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        namespace: &str,
    ) -> Result<MemoryEntry, SyncError> {
        let w = self.write(namespace, key, Self::to_value(namespace, value)?);
        self.apply(w).await
    }

    pub async fn set_with_ttl<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        namespace: &str,
        ttl: Duration,
    ) -> Result<MemoryEntry, SyncError> {
        let mut w = self.write(namespace, key, Self::to_value(namespace, value)?);
        w.ttl_ms = Some(ttl.as_millis() as u64);
        self.apply(w).await
    }

    /// Writes only if the key's version is `expected_version` (0 = absent).
    pub async fn compare_and_set<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        expected_version: u64,
        namespace: &str,
    ) -> Result<MemoryEntry, SyncError> {
        let mut w = self.write(namespace, key, Self::to_value(namespace, value)?);
        w.expected_version = Some(expected_version);
        self.apply(w).await
    }

    /// A write carrying its own LWW timestamp (merging state recorded elsewhere).
    pub async fn set_at(
        &self,
        key: &str,
        value: serde_json::Value,
        namespace: &str,
        timestamp: i64,
    ) -> Result<MemoryEntry, SyncError> {
        let mut w = self.write(namespace, key, value);
        w.timestamp = Some(timestamp);
        self.apply(w).await
    }

    /// The entry with its version and timestamp. Served from the cache when it holds the key.
    pub async fn get_entry(
        &self,
        key: &str,
        namespace: &str,
    ) -> Result<Option<MemoryEntry>, SyncError> {
        let k = (namespace.to_string(), key.to_string());
        if let Some(hit) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .get(&k)
        {
            return Ok(hit.clone());
        }
        let generation = self.generation();
        let e = self
            .store
            .memory_get(&self.tenant, namespace, key)
            .await
            .map_err(sync_err(namespace))?;
        self.remember(namespace, key, e.clone(), generation);
        Ok(e)
    }

    /// Seed `get<T>`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        key: &str,
        namespace: &str,
    ) -> Result<Option<T>, SyncError> {
        let Some(e) = self.get_entry(key, namespace).await? else {
            return Ok(None);
        };
        serde_json::from_value(e.value)
            .map(Some)
            .map_err(|err| SyncError::Decode {
                namespace: namespace.to_string(),
                message: err.to_string(),
            })
    }

    /// Seed `delete`: `true` if it existed.
    pub async fn delete(&self, key: &str, namespace: &str) -> Result<bool, SyncError> {
        let generation = self.generation();
        let deleted = self
            .store
            .memory_delete(&self.tenant, namespace, key, &self.writer)
            .await
            .map_err(sync_err(namespace))?;
        self.remember(namespace, key, None, generation);
        Ok(deleted)
    }

    /// Seed `list(namespace, prefix)`: keys, sorted. Always read from the store, a page at a
    /// time and without the values.
    pub async fn list(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, SyncError> {
        let page = crate::model::limits::LIST_LIMIT.max as u32;
        let mut keys: Vec<String> = Vec::new();
        loop {
            let next = self
                .list_page(namespace, prefix, keys.last().map(String::as_str), page)
                .await?;
            let done = next.len() < page as usize;
            keys.extend(next);
            if done {
                return Ok(keys);
            }
        }
    }

    /// Keys after `after` (the previous page's last key), sorted, at most `limit`.
    pub async fn list_page(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, SyncError> {
        self.store
            .memory_list_keys(&self.tenant, namespace, prefix, after, limit)
            .await
            .map_err(sync_err(namespace))
    }

    /// The first `limit` live entries whose key starts with `prefix`, sorted by key.
    pub async fn entries(
        &self,
        namespace: &str,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<MemoryEntry>, SyncError> {
        self.store
            .memory_list(&self.tenant, namespace, prefix, None, limit)
            .await
            .map_err(sync_err(namespace))
    }

    /// Seed `sync`: drops cached entries (of one namespace, or all) and reloads that namespace,
    /// so later reads reflect everything committed before this call.
    pub async fn sync(&self, namespace: Option<&str>) -> Result<(), SyncError> {
        let generation = {
            let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            let drop: Vec<_> = c
                .entries
                .keys()
                .filter(|(ns, _)| namespace.is_none_or(|n| n == ns))
                .cloned()
                .collect();
            for k in &drop {
                c.invalidate(k);
            }
            c.compact();
            c.generation
        };
        if let Some(ns) = namespace {
            // Only as many as the cache can hold: reloading more would just evict them again.
            let room = self.config.cache_size.min(u32::MAX as usize) as u32;
            for e in self.entries(ns, "", room).await? {
                let key = e.key.clone();
                self.remember(ns, &key, Some(e), generation);
            }
        }
        Ok(())
    }

    /// Changes in `namespace` matching `selector`, from now on.
    pub async fn subscribe(
        &self,
        namespace: &str,
        selector: Selector,
    ) -> Result<Subscription, SyncError> {
        let start_seq = self.store.memory_seq().await.map_err(sync_err(namespace))?;
        let (tx, events) = mpsc::unbounded_channel();
        let ns = namespace.to_string();
        let task = spawn_follower(
            Arc::clone(&self.store),
            self.tenant.clone(),
            start_seq,
            Duration::from_millis(self.config.poll_interval_ms),
            move |e| {
                if e.namespace == ns && selector.matches(&e.key) {
                    return tx.send(e.clone()).is_ok();
                }
                !tx.is_closed()
            },
        );
        Ok(Subscription {
            start_seq,
            events,
            task,
        })
    }

    /// Seed `watch(key, callback, namespace)`: the callback gets every later change of the key
    /// (deletions and expiries with `value: None`), in order.
    pub async fn watch(
        &self,
        key: &str,
        namespace: &str,
        callback: impl Fn(&ChangeEvent) + Send + Sync + 'static,
    ) -> Result<WatchHandle, SyncError> {
        self.watch_selector(namespace, Selector::Key(key.to_string()), callback)
            .await
    }

    pub async fn watch_prefix(
        &self,
        prefix: &str,
        namespace: &str,
        callback: impl Fn(&ChangeEvent) + Send + Sync + 'static,
    ) -> Result<WatchHandle, SyncError> {
        self.watch_selector(namespace, Selector::Prefix(prefix.to_string()), callback)
            .await
    }

    async fn watch_selector(
        &self,
        namespace: &str,
        selector: Selector,
        callback: impl Fn(&ChangeEvent) + Send + Sync + 'static,
    ) -> Result<WatchHandle, SyncError> {
        let start_seq = self.store.memory_seq().await.map_err(sync_err(namespace))?;
        let ns = namespace.to_string();
        let task = spawn_follower(
            Arc::clone(&self.store),
            self.tenant.clone(),
            start_seq,
            Duration::from_millis(self.config.poll_interval_ms),
            move |e| {
                if e.namespace == ns && selector.matches(&e.key) {
                    callback(e);
                }
                true
            },
        );
        Ok(WatchHandle { task, start_seq })
    }
}

/// Reads the change log after `from`, in order, handing each event to `on_event` until it returns
/// false. Wakes on the store's memory notification, or every `poll` at the latest.
fn spawn_follower(
    store: Arc<dyn Store>,
    tenant: String,
    from: u64,
    poll: Duration,
    mut on_event: impl FnMut(&ChangeEvent) -> bool + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut rx = store.subscribe(Topic::Memory);
        let mut cursor = from;
        loop {
            rx.borrow_and_update();
            match store.memory_changes(Some(&tenant), cursor, PAGE).await {
                Ok(page) => {
                    let full = page.len() as u32 == PAGE;
                    for e in &page {
                        cursor = e.seq;
                        if !on_event(e) {
                            return;
                        }
                    }
                    if full {
                        continue;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading the memory change log failed"),
            }
            let _ = tokio::time::timeout(poll, rx.changed()).await;
        }
    })
}
