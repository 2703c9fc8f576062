//! `wasi:keyvalue/store`: tenant-scoped shared memory.
//!
//! A bucket name is only ever interpreted under the task's own tenant, so no identifier
//! a guest can write reaches another tenant's data. Without the `memory` grant, `open`
//! answers `access-denied`.

use wasmtime::component::Resource;

use crate::bindings::executor::wasi::keyvalue::store::{Error, Host, HostBucket, KeyResponse};
use crate::interrupt::{Bound, Reason};
use crate::services::KvError;
use crate::state::{KvAccess, SandboxState};

/// An open bucket: just its validated name.
pub struct BucketHandle {
    name: String,
}

/// Largest value a guest may store.
const MAX_VALUE: usize = 1 << 20;
/// Longest key.
const MAX_KEY: usize = 1024;

fn valid_bucket(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name != "."
        && name != ".."
}

fn to_wit(e: KvError) -> Error {
    match e {
        KvError::NoSuchBucket => Error::NoSuchStore,
        KvError::AccessDenied => Error::AccessDenied,
        KvError::Other(m) => Error::Other(m),
    }
}

impl SandboxState {
    /// The bucket's name and the tenant's memory, or `access-denied` without the grant.
    fn access(
        &self,
        bucket: &Resource<BucketHandle>,
    ) -> wasmtime::Result<Result<(String, &KvAccess), Error>> {
        let name = self.table.get(bucket)?.name.clone();
        Ok(self
            .kv
            .as_ref()
            .map(|kv| (name, kv))
            .ok_or(Error::AccessDenied))
    }
}

impl SandboxState {
    /// Counts one write against the task's shared-memory bounds; passing one stops the task.
    fn count_kv_write(&mut self, bytes: usize) -> wasmtime::Result<()> {
        self.kv_writes += 1;
        self.kv_bytes = self.kv_bytes.saturating_add(bytes as u64);
        let over = if self.kv_writes > self.limits.memory_writes {
            Some((Bound::MemoryWrites, self.limits.memory_writes))
        } else if self.kv_bytes > self.limits.memory_write_bytes {
            Some((Bound::MemoryBytes, self.limits.memory_write_bytes))
        } else {
            None
        };
        if let Some((bound, limit)) = over {
            self.interrupt.raise(Reason::Limit { bound, limit });
            return Err(wasmtime::Error::msg(format!(
                "{} limit of {limit} exceeded",
                bound.name()
            )));
        }
        Ok(())
    }
}

/// Unwraps `access`, answering the guest with the error when there is one.
macro_rules! access {
    ($state:expr, $bucket:expr) => {
        match $state.access(&$bucket)? {
            Ok(access) => access,
            Err(e) => return Ok(Err(e)),
        }
    };
}

impl Host for SandboxState {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<BucketHandle>, Error>> {
        if self.kv.is_none() {
            return Ok(Err(Error::AccessDenied));
        }
        if !valid_bucket(&identifier) {
            return Ok(Err(Error::Other(format!(
                "invalid bucket name {identifier:?}: 1-64 characters of a-z, A-Z, 0-9, '-', '_', '.'"
            ))));
        }
        Ok(Ok(self.table.push(BucketHandle { name: identifier })?))
    }
}

impl HostBucket for SandboxState {
    async fn get(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let (name, kv) = access!(self, bucket);
        Ok(kv
            .backend
            .get(&kv.tenant, &name, &key)
            .await
            .map_err(to_wit))
    }

    async fn set(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        self.count_kv_write(key.len() + value.len())?;
        let (name, kv) = access!(self, bucket);
        if key.len() > MAX_KEY || key.is_empty() {
            return Ok(Err(Error::Other(format!("keys are 1-{MAX_KEY} bytes"))));
        }
        if value.len() > MAX_VALUE {
            return Ok(Err(Error::Other(format!(
                "values are at most {MAX_VALUE} bytes"
            ))));
        }
        Ok(kv
            .backend
            .set(&kv.tenant, &name, &key, value)
            .await
            .map_err(to_wit))
    }

    async fn delete(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (name, kv) = access!(self, bucket);
        Ok(kv
            .backend
            .delete(&kv.tenant, &name, &key)
            .await
            .map_err(to_wit))
    }

    async fn exists(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let (name, kv) = access!(self, bucket);
        Ok(kv
            .backend
            .get(&kv.tenant, &name, &key)
            .await
            .map(|v| v.is_some())
            .map_err(to_wit))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<BucketHandle>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<KeyResponse, Error>> {
        let (name, kv) = access!(self, bucket);
        Ok(kv
            .backend
            .list_keys(&kv.tenant, &name, cursor)
            .await
            .map(|(keys, cursor)| KeyResponse { keys, cursor })
            .map_err(to_wit))
    }

    async fn drop(&mut self, bucket: Resource<BucketHandle>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}
