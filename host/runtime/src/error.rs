//! Typed errors of the sandbox runtime.
//!
//! Callers branch on these (retry a timeout, dead-letter an invalid output, reject a
//! plugin), so every way a guest can fail maps to exactly one variant. This module
//! never decides policy (retry or not); it only says what happened.

use std::time::Duration;

/// Why running one task (or one strategy call) in the sandbox did not produce an output.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SandboxError {
    /// The guest returned `err(task-error)`: a failure it chose to report.
    #[error("task failed: {message}")]
    TaskFailed {
        /// The guest's message.
        message: String,
        /// Whether the guest says another attempt could succeed.
        retryable: bool,
    },
    /// The wall-clock timeout elapsed before the guest returned.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The guest used more CPU time than its limit allows.
    #[error("CPU time limit of {0:?} exceeded")]
    CpuLimit(Duration),
    /// The guest tried to grow its memory past its limit.
    #[error("out of memory: limit is {limit_bytes} bytes")]
    OutOfMemory {
        /// The memory limit that was hit.
        limit_bytes: u64,
    },
    /// The guest trapped (panic, unreachable, stack overflow, ...).
    #[error("trap: {message}")]
    Trap {
        /// The trap, with the guest's panic message where it printed one.
        message: String,
    },
    /// The output is larger than the plugin's output limit.
    #[error("output of {size} bytes exceeds the limit of {limit} bytes")]
    OutputTooLarge {
        /// Bytes the guest returned.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The guest answered with something the host cannot accept.
    #[error("invalid output: {0}")]
    InvalidOutput(String),
    /// The sandbox could not be set up (scratch directory, instantiation).
    #[error("sandbox setup failed: {0}")]
    Setup(String),
    /// The guest passed a per-task bound on what it may make the host hold.
    #[error("resource limit exceeded: {bound} (limit {limit})")]
    LimitExceeded {
        /// The bound's name as in the README and manifest (`scratch-bytes`, `host-handles`, ...).
        bound: &'static str,
        /// Its value for this task.
        limit: u64,
    },
    /// The task was cancelled while it ran; the sandbox was stopped.
    #[error("cancelled while running")]
    Cancelled,
}

impl SandboxError {
    /// The error for an interrupt `reason`.
    pub fn from_reason(reason: crate::interrupt::Reason) -> SandboxError {
        match reason {
            crate::interrupt::Reason::Cancelled => SandboxError::Cancelled,
            crate::interrupt::Reason::Limit { bound, limit } => SandboxError::LimitExceeded {
                bound: bound.name(),
                limit,
            },
        }
    }

    /// This error with every message cut to at most `max` bytes (on a character boundary),
    /// saying how much was cut: a guest's message is stored and served, so it is bounded.
    pub fn bounded(self, max: usize) -> SandboxError {
        let cut = |m: String| {
            if m.len() <= max {
                return m;
            }
            let mut end = max;
            while !m.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}… [{} more bytes cut]", &m[..end], m.len() - end)
        };
        match self {
            SandboxError::TaskFailed { message, retryable } => SandboxError::TaskFailed {
                message: cut(message),
                retryable,
            },
            SandboxError::Trap { message } => SandboxError::Trap {
                message: cut(message),
            },
            SandboxError::InvalidOutput(m) => SandboxError::InvalidOutput(cut(m)),
            SandboxError::Setup(m) => SandboxError::Setup(cut(m)),
            other => other,
        }
    }

    /// Whether running the task again could plausibly succeed.
    ///
    /// Timeouts and traps may be transient (a slow dependency, a flaky guest); a
    /// deterministic refusal (invalid output, guest says non-retryable) is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            SandboxError::TaskFailed { retryable, .. } => *retryable,
            SandboxError::Timeout(_)
            | SandboxError::CpuLimit(_)
            | SandboxError::Trap { .. }
            | SandboxError::Setup(_) => true,
            SandboxError::OutOfMemory { .. }
            | SandboxError::OutputTooLarge { .. }
            | SandboxError::InvalidOutput(_)
            | SandboxError::LimitExceeded { .. }
            | SandboxError::Cancelled => false,
        }
    }

    /// A short stable code for logs, metrics and the API.
    pub fn code(&self) -> &'static str {
        match self {
            SandboxError::TaskFailed { .. } => "TASK_FAILED",
            SandboxError::Timeout(_) => "TIMEOUT",
            SandboxError::CpuLimit(_) => "CPU_LIMIT",
            SandboxError::OutOfMemory { .. } => "OUT_OF_MEMORY",
            SandboxError::Trap { .. } => "TRAP",
            SandboxError::OutputTooLarge { .. } => "OUTPUT_TOO_LARGE",
            SandboxError::InvalidOutput(_) => "INVALID_OUTPUT",
            SandboxError::Setup(_) => "SANDBOX_SETUP",
            SandboxError::LimitExceeded { .. } => "RESOURCE_LIMIT",
            SandboxError::Cancelled => "CANCELLED",
        }
    }
}

/// Why a plugin could not be loaded. The previous version (if any) stays in service.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The manifest is missing, unreadable or invalid.
    #[error("plugin {name}: invalid manifest: {reason}")]
    Manifest {
        /// Plugin name (file stem).
        name: String,
        /// What is wrong, naming the key.
        reason: String,
    },
    /// The `.wasm` file does not match the manifest's sha256 pin.
    #[error("plugin {name}: sha256 mismatch: manifest pins {expected}, file is {actual}")]
    HashMismatch {
        /// Plugin name.
        name: String,
        /// Pinned digest.
        expected: String,
        /// Digest of the file.
        actual: String,
    },
    /// Not a WebAssembly component, or it failed to compile.
    #[error("plugin {name}: not a valid component: {reason}")]
    InvalidComponent {
        /// Plugin name.
        name: String,
        /// The compiler's message.
        reason: String,
    },
    /// A component, but not of the world its manifest claims.
    #[error("plugin {name}: does not implement world `sentinel:plugin/{world}@0.1.0`: {reason}")]
    WrongWorld {
        /// Plugin name.
        name: String,
        /// `executor` or `strategy`.
        world: &'static str,
        /// The linker's message (missing export, unsatisfiable import).
        reason: String,
    },
    /// The host policy refuses the plugin (e.g. an unpinned plugin where pins are required).
    #[error("plugin {name}: refused by policy: {reason}")]
    Policy {
        /// Plugin name.
        name: String,
        /// Which rule.
        reason: String,
    },
    /// Reading the plugin's files failed.
    #[error("plugin {name}: {source}")]
    Io {
        /// Plugin name.
        name: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
