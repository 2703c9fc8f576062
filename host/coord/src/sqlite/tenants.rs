//! Tenant settings, usage, quotas and fair-claim bookkeeping on SQLite.

use async_trait::async_trait;

use super::SqliteStore;
use crate::error::StoreError;
use crate::model::*;
use crate::store::{StoreResult, TenantStore};

#[async_trait]
impl TenantStore for SqliteStore {
    async fn put_tenant(&self, _settings: &TenantSettings) -> StoreResult<()> {
        Err(StoreError::Backend("tenancy: not yet implemented".into()))
    }
    async fn get_tenant(&self, _tenant: &str) -> StoreResult<Option<TenantSettings>> {
        Err(StoreError::Backend("tenancy: not yet implemented".into()))
    }
    async fn tenant_usage(&self, _tenant: &str) -> StoreResult<TenantUsage> {
        Err(StoreError::Backend("tenancy: not yet implemented".into()))
    }
}
