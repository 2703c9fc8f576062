//! What the host offers a running task beyond WASI: shared memory and progress.
//!
//! These are seams: the coordination layer implements them over its store, tests and
//! single-process uses take the in-memory versions here. The runtime only ever calls
//! them with the task's own tenant, so a plugin cannot name another tenant's data.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

/// Why a shared-memory operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The bucket does not exist and cannot be created.
    #[error("no such bucket")]
    NoSuchBucket,
    /// The caller may not do this.
    #[error("access denied")]
    AccessDenied,
    /// The backing store failed.
    #[error("{0}")]
    Other(String),
}

/// Tenant-scoped key/value storage behind `wasi:keyvalue/store`.
#[async_trait]
pub trait KvBackend: Send + Sync + 'static {
    /// The value of `key`, if any.
    async fn get(&self, tenant: &str, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Sets `key` to `value`.
    async fn set(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), KvError>;
    /// Removes `key`; removing a missing key is not an error.
    async fn delete(&self, tenant: &str, bucket: &str, key: &str) -> Result<(), KvError>;
    /// Keys in the bucket in ascending order, a page at a time: `cursor` is the last key of the
    /// previous page; the returned cursor is `None` on the last page.
    async fn list_keys(
        &self,
        tenant: &str,
        bucket: &str,
        cursor: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), KvError>;
}

/// Progress reports of running tasks. Must not block: it is called from inside the sandbox.
pub trait ProgressSink: Send + Sync + 'static {
    /// Task `task_id` of `tenant` is `percent` done (task ids are unique only per tenant);
    /// also the task's heartbeat.
    fn report(&self, tenant: &str, task_id: &str, percent: u8, message: &str);
}

/// The services handed to one task.
#[derive(Clone)]
pub struct TaskServices {
    /// Shared memory.
    pub kv: Arc<dyn KvBackend>,
    /// Progress reports.
    pub progress: Arc<dyn ProgressSink>,
}

impl TaskServices {
    /// In-memory shared memory and progress that goes nowhere but the log.
    pub fn in_memory() -> TaskServices {
        TaskServices {
            kv: Arc::new(InMemoryKv::default()),
            progress: Arc::new(LogProgress),
        }
    }
}

/// Progress reports written to the host's tracing log.
pub struct LogProgress;

impl ProgressSink for LogProgress {
    fn report(&self, tenant: &str, task_id: &str, percent: u8, message: &str) {
        tracing::debug!(tenant, task_id, percent, message, "progress");
    }
}

/// Page size of `list_keys`.
pub const LIST_PAGE: usize = 1000;

/// Process-local shared memory, for a single host and for tests.
#[derive(Default)]
pub struct InMemoryKv {
    data: Mutex<BTreeMap<(String, String, String), Vec<u8>>>,
}

#[async_trait]
impl KvBackend for InMemoryKv {
    async fn get(&self, tenant: &str, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let data = self.data.lock().unwrap_or_else(|p| p.into_inner());
        Ok(data
            .get(&(tenant.into(), bucket.into(), key.into()))
            .cloned())
    }

    async fn set(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), KvError> {
        let mut data = self.data.lock().unwrap_or_else(|p| p.into_inner());
        data.insert((tenant.into(), bucket.into(), key.into()), value);
        Ok(())
    }

    async fn delete(&self, tenant: &str, bucket: &str, key: &str) -> Result<(), KvError> {
        let mut data = self.data.lock().unwrap_or_else(|p| p.into_inner());
        data.remove(&(tenant.into(), bucket.into(), key.into()));
        Ok(())
    }

    async fn list_keys(
        &self,
        tenant: &str,
        bucket: &str,
        cursor: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), KvError> {
        let data = self.data.lock().unwrap_or_else(|p| p.into_inner());
        let keys = data
            .keys()
            .filter(|(t, b, _)| t == tenant && b == bucket)
            .map(|(_, _, k)| k.clone());
        Ok(page_after(keys, cursor.as_deref()))
    }
}

/// One page of `keys` (ascending) after `cursor`, and the cursor of the next page.
pub fn page_after(
    keys: impl Iterator<Item = String>,
    cursor: Option<&str>,
) -> (Vec<String>, Option<String>) {
    let mut page: Vec<String> = keys
        .filter(|k| cursor.is_none_or(|c| k.as_str() > c))
        .take(LIST_PAGE + 1)
        .collect();
    if page.len() > LIST_PAGE {
        page.truncate(LIST_PAGE);
        let next = page.last().cloned();
        (page, next)
    } else {
        (page, None)
    }
}
