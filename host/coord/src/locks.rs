//! LockManager (seed 000): the seed's lock API on top of [`LockStore`], with the configured TTL
//! and retry policy. It never bypasses the store's owner and token checks, and every grant it
//! asks for carries a fresh holder secret, so a lock it hands out can be released or renewed only
//! through the `Lock` value it returned.

use std::sync::Arc;
use std::time::Duration;

use crate::config::LockConfig;
use crate::error::LockError;
use crate::model::{DEFAULT_TENANT, HolderSecret, Lock, LockFilter, LockRequest};
use crate::store::Store;

#[derive(Clone)]
pub struct LockManager {
    store: Arc<dyn Store>,
    config: LockConfig,
    tenant: String,
}

impl LockManager {
    pub fn new(store: Arc<dyn Store>, config: LockConfig) -> Self {
        Self {
            store,
            config,
            tenant: DEFAULT_TENANT.to_string(),
        }
    }

    pub fn for_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    pub fn config(&self) -> &LockConfig {
        &self.config
    }

    /// Seed `acquireLock`: up to `retry_attempts` tries `retry_delay_ms` apart; `None` if the
    /// lock is still held by someone else. Transient store failures are retried the same way.
    pub async fn acquire(
        &self,
        key: &str,
        owner: &str,
        metadata: serde_json::Value,
    ) -> Result<Option<Lock>, LockError> {
        self.acquire_with_ttl(
            key,
            owner,
            metadata,
            self.config.ttl_seconds.saturating_mul(1000),
        )
        .await
    }

    pub async fn acquire_with_ttl(
        &self,
        key: &str,
        owner: &str,
        metadata: serde_json::Value,
        ttl_ms: u64,
    ) -> Result<Option<Lock>, LockError> {
        let req = LockRequest {
            tenant: self.tenant.clone(),
            key: key.to_string(),
            owner: owner.to_string(),
            ttl_ms,
            metadata,
            holder_secret: Some(HolderSecret::generate()),
        };
        let attempts = self.config.retry_attempts.max(1);
        for attempt in 1..=attempts {
            match self.store.acquire_lock(&req).await {
                Ok(Some(lock)) => return Ok(Some(lock)),
                Ok(None) if attempt == attempts => return Ok(None),
                Err(e) if !e.is_unavailable() || attempt == attempts => return Err(e.into()),
                Ok(None) | Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(self.config.retry_delay_ms)).await;
        }
        Ok(None)
    }

    /// One attempt, no waiting.
    pub async fn try_acquire(
        &self,
        key: &str,
        owner: &str,
        ttl_ms: u64,
    ) -> Result<Option<Lock>, LockError> {
        let req = LockRequest {
            tenant: self.tenant.clone(),
            key: key.to_string(),
            owner: owner.to_string(),
            ttl_ms,
            metadata: serde_json::Value::Null,
            holder_secret: Some(HolderSecret::generate()),
        };
        Ok(self.store.acquire_lock(&req).await?)
    }

    /// Seed `releaseLock`, checked against the grant's owner, fencing token and holder secret
    /// (every grant this manager makes has one, so only the `Lock` it returned can release).
    pub async fn release(&self, lock: &Lock) -> Result<(), LockError> {
        self.store
            .release_lock(
                &lock.tenant,
                &lock.key,
                &lock.owner,
                lock.token,
                lock.holder_secret.as_ref(),
            )
            .await
    }

    /// Extends the grant by the configured TTL.
    pub async fn renew(&self, lock: &Lock) -> Result<Lock, LockError> {
        self.renew_for(lock, self.config.ttl_seconds.saturating_mul(1000))
            .await
    }

    pub async fn renew_for(&self, lock: &Lock, ttl_ms: u64) -> Result<Lock, LockError> {
        self.store
            .renew_lock(
                &lock.tenant,
                &lock.key,
                &lock.owner,
                lock.token,
                ttl_ms,
                lock.holder_secret.as_ref(),
            )
            .await
    }

    pub async fn is_locked(&self, key: &str) -> Result<bool, LockError> {
        Ok(self.store.get_lock(&self.tenant, key).await?.is_some())
    }

    pub async fn get(&self, key: &str) -> Result<Option<Lock>, LockError> {
        Ok(self.store.get_lock(&self.tenant, key).await?)
    }

    /// Seed `listLocks({ workerId, includeExpired })`, within this manager's tenant.
    pub async fn list(
        &self,
        worker_id: Option<&str>,
        include_expired: bool,
    ) -> Result<Vec<Lock>, LockError> {
        let filter = LockFilter {
            tenant: Some(self.tenant.clone()),
            owner: worker_id.map(str::to_string),
            include_expired,
        };
        Ok(self.store.list_locks(&filter).await?)
    }

    /// Seed `cleanupStaleLocks` (all tenants: it is a maintenance chore).
    pub async fn cleanup_stale(&self) -> Result<u64, LockError> {
        Ok(self.store.cleanup_stale_locks().await?)
    }

    /// Seed `releaseWorkerLocks` (all tenants).
    pub async fn release_worker_locks(&self, worker_id: &str) -> Result<u64, LockError> {
        Ok(self.store.release_owner_locks(worker_id).await?)
    }
}
