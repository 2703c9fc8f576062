//! Logging through `wasi:logging`, for executors and strategies alike.
//!
//! This module owns the plugin's side of `wasi:logging/logging`: [`Level`], the
//! functions [`trace()`], [`debug()`], [`info()`], [`warn()`], [`error()`], [`critical()`] and
//! [`log()`],
//! and (re-exported here, defined at the crate root) the `format!`-style macros
//! [`trace!`](crate::trace), [`debug!`](crate::debug), [`info!`](crate::info),
//! [`warn!`](crate::warn), [`error!`](crate::error) and [`critical!`](crate::critical),
//! whose context is the calling module's path.
//!
//! It must never buffer, drop or rate-limit records itself, nor write to stdout/stderr:
//! the host owns the log, its per-task size limit (`log-kb`) and where it goes.
//!
//! ```
//! # #[cfg(target_arch = "wasm32")] {
//! sentinel_sdk::info!("processing {} items", 3);
//! sentinel_sdk::log::warn("payload has no `lang`, assuming English");
//! # }
//! ```

#[cfg(feature = "executor")]
use crate::executor::bindings::wasi::logging::logging as wasi_logging;
#[cfg(all(feature = "strategy", not(feature = "executor")))]
use crate::strategy::bindings::wasi::logging::logging as wasi_logging;

pub use crate::{critical, debug, error, info, trace, warn};

/// Severity of a log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the plugin handled.
    Warn,
    /// A failure.
    Error,
    /// A failure that needs attention now.
    Critical,
}

impl From<Level> for wasi_logging::Level {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => wasi_logging::Level::Trace,
            Level::Debug => wasi_logging::Level::Debug,
            Level::Info => wasi_logging::Level::Info,
            Level::Warn => wasi_logging::Level::Warn,
            Level::Error => wasi_logging::Level::Error,
            Level::Critical => wasi_logging::Level::Critical,
        }
    }
}

/// Logs `message` at `level`; `context` names where it comes from (a module, a step).
pub fn log(level: Level, context: &str, message: &str) {
    wasi_logging::log(level.into(), context, message);
}

/// Logs `message` at [`Level::Trace`] with an empty context.
pub fn trace(message: &str) {
    log(Level::Trace, "", message);
}

/// Logs `message` at [`Level::Debug`] with an empty context.
pub fn debug(message: &str) {
    log(Level::Debug, "", message);
}

/// Logs `message` at [`Level::Info`] with an empty context.
pub fn info(message: &str) {
    log(Level::Info, "", message);
}

/// Logs `message` at [`Level::Warn`] with an empty context.
pub fn warn(message: &str) {
    log(Level::Warn, "", message);
}

/// Logs `message` at [`Level::Error`] with an empty context.
pub fn error(message: &str) {
    log(Level::Error, "", message);
}

/// Logs `message` at [`Level::Critical`] with an empty context.
pub fn critical(message: &str) {
    log(Level::Critical, "", message);
}

#[doc(hidden)]
#[macro_export]
macro_rules! __sentinel_log {
    ($level:ident, $($arg:tt)+) => {
        $crate::log::log(
            $crate::log::Level::$level,
            ::core::module_path!(),
            &::std::format!($($arg)+),
        )
    };
}

/// Logs a `format!`-style message at [`Level::Trace`](crate::log::Level::Trace).
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::__sentinel_log!(Trace, $($arg)+) };
}

/// Logs a `format!`-style message at [`Level::Debug`](crate::log::Level::Debug).
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::__sentinel_log!(Debug, $($arg)+) };
}

/// Logs a `format!`-style message at [`Level::Info`](crate::log::Level::Info).
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::__sentinel_log!(Info, $($arg)+) };
}

/// Logs a `format!`-style message at [`Level::Warn`](crate::log::Level::Warn).
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::__sentinel_log!(Warn, $($arg)+) };
}

/// Logs a `format!`-style message at [`Level::Error`](crate::log::Level::Error).
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::__sentinel_log!(Error, $($arg)+) };
}

/// Logs a `format!`-style message at [`Level::Critical`](crate::log::Level::Critical).
#[macro_export]
macro_rules! critical {
    ($($arg:tt)+) => { $crate::__sentinel_log!(Critical, $($arg)+) };
}
