//! The plugin's configuration over `wasi:config/store`.
//!
//! This module owns [`get`], [`get_or`], [`try_get`], [`all`] and [`ConfigError`]. The
//! values are the string map of the manifest's `[config]` table, possibly overridden by
//! the host's policy; they are read-only.
//!
//! It must never cache values (the host may change them between tasks) and never fall
//! back to environment variables or files on its own: configuration comes from the host.
//!
//! ```
//! # #[cfg(target_arch = "wasm32")] {
//! let language = sentinel_sdk::config::get_or("language", "en");
//! # }
//! ```

use std::fmt;

use crate::executor::bindings::wasi::config::store as wasi_config;
use crate::task::TaskError;

/// Why the host could not serve the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The configuration source failed.
    Upstream(String),
    /// An I/O error in the host.
    Io(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Upstream(m) => write!(f, "config: upstream error: {m}"),
            ConfigError::Io(m) => write!(f, "config: I/O error: {m}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<wasi_config::Error> for ConfigError {
    fn from(e: wasi_config::Error) -> Self {
        match e {
            wasi_config::Error::Upstream(m) => ConfigError::Upstream(m),
            wasi_config::Error::Io(m) => ConfigError::Io(m),
        }
    }
}

impl From<ConfigError> for TaskError {
    /// Host-side configuration failures may be transient: retryable.
    fn from(e: ConfigError) -> Self {
        TaskError::retryable(e.to_string())
    }
}

/// The value of `key`, or `None` if it is not set. A host error is logged at warn
/// level and treated as not set; use [`try_get`] to see it.
pub fn get(key: &str) -> Option<String> {
    match try_get(key) {
        Ok(value) => value,
        Err(e) => {
            crate::log::log(
                crate::log::Level::Warn,
                "sentinel_sdk::config",
                &e.to_string(),
            );
            None
        }
    }
}

/// The value of `key`, or `default` if it is not set (or the host failed).
pub fn get_or(key: &str, default: &str) -> String {
    get(key).unwrap_or_else(|| default.to_string())
}

/// The value of `key`, `None` if it is not set, or the host's error.
pub fn try_get(key: &str) -> Result<Option<String>, ConfigError> {
    Ok(wasi_config::get(key)?)
}

/// Every key and value.
pub fn all() -> Result<Vec<(String, String)>, ConfigError> {
    Ok(wasi_config::get_all()?)
}
