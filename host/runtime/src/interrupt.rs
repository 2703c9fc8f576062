//! Stopping a running sandbox from outside: cancellation and resource bounds.
//!
//! An [`Interrupt`] is shared by the host (which cancels a task) and the sandbox's own
//! watchers (a scratch quota monitor, a host call that counts shared-memory writes). Raising
//! it ends the guest within one epoch tick while guest code runs (the epoch callback checks
//! it) and at once while the guest waits in a host call (the call's future is dropped).
//! The first reason raised wins, so the task's error names what actually stopped it.

use std::sync::Arc;

use tokio::sync::watch;

/// A per-task bound a guest can exceed, named as in the README's limits table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Host-side handles (files, directories, streams, HTTP objects, buckets) open at once.
    HostHandles,
    /// Bytes in the scratch directory.
    ScratchBytes,
    /// Files and directories in the scratch directory.
    ScratchFiles,
    /// Shared-memory writes by one task.
    MemoryWrites,
    /// Shared-memory bytes written by one task.
    MemoryBytes,
}

impl Bound {
    /// The name used in errors, logs and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Bound::HostHandles => "host-handles",
            Bound::ScratchBytes => "scratch-bytes",
            Bound::ScratchFiles => "scratch-files",
            Bound::MemoryWrites => "memory-writes",
            Bound::MemoryBytes => "memory-bytes",
        }
    }
}

/// Why a sandbox was stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The task was cancelled.
    Cancelled,
    /// The guest passed a bound.
    Limit {
        /// Which bound.
        bound: Bound,
        /// Its value for this task.
        limit: u64,
    },
}

/// A handle that stops one sandbox; cheap to clone.
#[derive(Debug, Clone)]
pub struct Interrupt {
    tx: Arc<watch::Sender<Option<Reason>>>,
}

impl Default for Interrupt {
    fn default() -> Self {
        Interrupt::new()
    }
}

impl Interrupt {
    /// Not raised.
    pub fn new() -> Interrupt {
        Interrupt {
            tx: Arc::new(watch::channel(None).0),
        }
    }

    /// Cancels the task (no effect if something already stopped it).
    pub fn cancel(&self) {
        self.raise(Reason::Cancelled);
    }

    /// Stops the sandbox for `reason` unless it was already stopped.
    pub fn raise(&self, reason: Reason) {
        self.tx.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(reason);
            true
        });
    }

    /// Why it was stopped, if it was.
    pub fn reason(&self) -> Option<Reason> {
        *self.tx.borrow()
    }

    /// Resolves once raised.
    pub async fn raised(&self) -> Reason {
        let mut rx = self.tx.subscribe();
        loop {
            if let Some(reason) = *rx.borrow_and_update() {
                return reason;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`, so this cannot happen; never resolve if it does.
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_wins_and_wakes_waiters() {
        let i = Interrupt::new();
        let waiter = tokio::spawn({
            let i = i.clone();
            async move { i.raised().await }
        });
        tokio::task::yield_now().await;
        i.raise(Reason::Limit {
            bound: Bound::ScratchBytes,
            limit: 1,
        });
        i.cancel();
        let expected = Reason::Limit {
            bound: Bound::ScratchBytes,
            limit: 1,
        };
        assert_eq!(waiter.await.unwrap(), expected);
        assert_eq!(i.reason(), Some(expected));
    }
}
