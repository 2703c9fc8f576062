//! `wasi:logging/logging`: guest log lines go into the task's bounded log.

use crate::bindings::executor::wasi::logging::logging::{Host, Level};
use crate::state::SandboxState;

/// Longest single log message kept; the rest of a longer one is cut.
const MAX_MESSAGE: usize = 4096;

impl Host for SandboxState {
    async fn log(
        &mut self,
        level: Level,
        context: String,
        message: String,
    ) -> wasmtime::Result<()> {
        let level = match level {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        };
        let message = truncate(&message, MAX_MESSAGE);
        let context = truncate(&context, 128);
        if context.is_empty() {
            self.log.line(&format!("[{level}] {message}"));
        } else {
            self.log.line(&format!("[{level}] {context}: {message}"));
        }
        tracing::trace!(plugin = %self.plugin, level, context, message, "guest log");
        Ok(())
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
