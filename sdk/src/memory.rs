//! Tenant-scoped shared memory over `wasi:keyvalue/store`, with JSON helpers.
//!
//! This module owns [`open`], [`Bucket`] and [`MemoryError`]. A bucket is a named memory
//! namespace of the running task's tenant: the host decides which tenant, so a plugin can
//! never name (or even see) another tenant's data. It needs `memory = true` in the
//! manifest's `[capabilities]`; without it every call fails with
//! [`MemoryError::AccessDenied`].
//!
//! It must never cache values across calls or tasks (other tasks may write the same
//! keys concurrently) and never pick a tenant itself.
//!
//! ```
//! # #[cfg(target_arch = "wasm32")]
//! # fn demo() -> Result<(), sentinel_sdk::TaskError> {
//! let counters = sentinel_sdk::memory::open("counters")?;
//! let seen: u64 = counters.get_json("seen")?.unwrap_or(0);
//! counters.set_json("seen", &(seen + 1))?;
//! # Ok(())
//! # }
//! ```

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::executor::bindings::wasi::keyvalue::store as kv;
use crate::task::TaskError;

/// Why a memory operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryError {
    /// The host has no such bucket (and would not create it).
    NoSuchStore,
    /// The plugin may not use memory (no `memory = true` capability), or not this bucket.
    AccessDenied,
    /// The host failed; may be transient.
    Other(String),
    /// A stored value did not decode as the requested JSON type.
    Decode {
        /// The key read.
        key: String,
        /// The serde error.
        message: String,
    },
    /// A value did not serialise as JSON.
    Encode(String),
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::NoSuchStore => write!(f, "memory: no such bucket"),
            MemoryError::AccessDenied => write!(f, "memory: access denied"),
            MemoryError::Other(m) => write!(f, "memory: {m}"),
            MemoryError::Decode { key, message } => {
                write!(
                    f,
                    "memory: value of `{key}` is not the expected JSON: {message}"
                )
            }
            MemoryError::Encode(m) => write!(f, "memory: cannot serialise value as JSON: {m}"),
        }
    }
}

impl std::error::Error for MemoryError {}

impl From<kv::Error> for MemoryError {
    fn from(e: kv::Error) -> Self {
        match e {
            kv::Error::NoSuchStore => MemoryError::NoSuchStore,
            kv::Error::AccessDenied => MemoryError::AccessDenied,
            kv::Error::Other(m) => MemoryError::Other(m),
        }
    }
}

impl From<MemoryError> for TaskError {
    /// [`MemoryError::Other`] is retryable (the host failed); everything else is fatal.
    fn from(e: MemoryError) -> Self {
        let retryable = matches!(e, MemoryError::Other(_));
        TaskError {
            message: e.to_string(),
            retryable,
        }
    }
}

/// Opens the tenant's bucket `name`.
pub fn open(name: &str) -> Result<Bucket, MemoryError> {
    Ok(Bucket {
        inner: kv::open(name)?,
        name: name.to_string(),
    })
}

/// An open bucket of the tenant's memory. Dropping it closes it.
pub struct Bucket {
    inner: kv::Bucket,
    name: String,
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bucket").field("name", &self.name).finish()
    }
}

impl Bucket {
    /// The name the bucket was opened with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The raw value of `key`, if set.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, MemoryError> {
        Ok(self.inner.get(key)?)
    }

    /// Sets `key` to raw `value`.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), MemoryError> {
        Ok(self.inner.set(key, value)?)
    }

    /// The value of `key` decoded as JSON, if set.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, MemoryError> {
        match self.get(key)? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| MemoryError::Decode {
                        key: key.to_string(),
                        message: e.to_string(),
                    })
            }
        }
    }

    /// Sets `key` to `value` serialised as JSON.
    pub fn set_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), MemoryError> {
        let bytes = serde_json::to_vec(value).map_err(|e| MemoryError::Encode(e.to_string()))?;
        self.set(key, &bytes)
    }

    /// Deletes `key` (no error if it was not set).
    pub fn delete(&self, key: &str) -> Result<(), MemoryError> {
        Ok(self.inner.delete(key)?)
    }

    /// Whether `key` is set.
    pub fn exists(&self, key: &str) -> Result<bool, MemoryError> {
        Ok(self.inner.exists(key)?)
    }

    /// Every key of the bucket (follows the host's cursor to the end).
    pub fn keys(&self) -> Result<Vec<String>, MemoryError> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.inner.list_keys(cursor.as_deref())?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) if cursor.as_ref() != Some(&next) => cursor = Some(next),
                _ => return Ok(keys),
            }
        }
    }
}
