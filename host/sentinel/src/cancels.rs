//! Cancelling running tasks: stopping their sandboxes, on this host or on another one.
//!
//! The store's `cancel` decides (a cancelled task's late result is refused by its fence);
//! this module only makes the sandbox stop at once instead of running on until its own
//! limits. A task running here is interrupted directly. For a task running on another host,
//! the cancelling host leaves a short-lived notice in the system tenant's shared memory
//! (namespace [`NAMESPACE`]); every host follows that namespace through the store's memory
//! change log (cross-process wake-ups on every backend) and interrupts the task if it runs
//! there. A lost notice costs only promptness, never correctness.
//!
//! It must never decide whether a task may be cancelled: that is the store's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sentinel_coord::Store;
use sentinel_coord::config::MemoryConfig;
use sentinel_coord::memory::{MemorySync, WatchHandle};
use sentinel_coord::model::SYSTEM_TENANT;
use sentinel_runtime::Interrupt;

/// Shared-memory namespace (system tenant) of cancellation notices.
pub const NAMESPACE: &str = "cancels";
/// How long a notice lives: long enough for any host to see it, short enough to be forgotten.
const NOTICE_TTL: Duration = Duration::from_secs(600);

/// How often the notices are read when no notification arrives.
const NOTICE_FALLBACK_POLL: Duration = Duration::from_secs(30);

/// Tasks running on this host, by (tenant, task id), with the handle that stops each.
#[derive(Default)]
pub struct CancelBoard {
    running: Mutex<HashMap<(String, String), Interrupt>>,
    notices: Mutex<Option<Arc<MemorySync>>>,
}

impl CancelBoard {
    /// Registers a task that starts running here; returns the handle its sandbox watches.
    pub fn start(&self, tenant: &str, task_id: &str) -> Interrupt {
        let interrupt = Interrupt::new();
        self.lock()
            .insert((tenant.to_string(), task_id.to_string()), interrupt.clone());
        interrupt
    }

    /// Forgets a task that ended here.
    pub fn finish(&self, tenant: &str, task_id: &str) {
        self.lock()
            .remove(&(tenant.to_string(), task_id.to_string()));
    }

    /// Stops the task if it runs here; `true` if it did.
    pub fn cancel_local(&self, tenant: &str, task_id: &str) -> bool {
        match self.lock().get(&(tenant.to_string(), task_id.to_string())) {
            Some(interrupt) => {
                interrupt.cancel();
                true
            }
            None => false,
        }
    }

    /// After the store cancelled a task: stop it here, or tell the other hosts.
    pub async fn cancelled(&self, tenant: &str, task_id: &str) {
        if self.cancel_local(tenant, task_id) {
            return;
        }
        let notices = self
            .notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(notices) = notices else { return };
        let key = notice_key(tenant, task_id);
        if let Err(e) = notices
            .set_with_ttl(&key, &true, NAMESPACE, NOTICE_TTL)
            .await
        {
            // The task's result will still be refused; it just runs until its own limits.
            tracing::warn!(task_id, error = %e, "could not notify other hosts of a cancellation");
        }
    }

    /// Follows other hosts' notices; keep the handle for as long as the host runs.
    pub async fn follow(
        self: &Arc<Self>,
        store: Arc<dyn Store>,
        writer: &str,
    ) -> anyhow::Result<WatchHandle> {
        // Woken by the store's memory notifications (cross-process on every backend); the
        // fallback poll is rare so an idle host costs the store (and a GitHub token) nothing.
        let config = MemoryConfig {
            poll_interval_ms: NOTICE_FALLBACK_POLL.as_millis() as u64,
            ..MemoryConfig::default()
        };
        let sync = Arc::new(MemorySync::start(store, SYSTEM_TENANT, writer, config).await?);
        *self.notices.lock().unwrap_or_else(|p| p.into_inner()) = Some(sync.clone());
        let board = Arc::downgrade(self);
        let handle = sync
            .watch_prefix("", NAMESPACE, move |event| {
                if event.value.is_none() {
                    return;
                }
                let Some((tenant, task_id)) = parse_notice_key(&event.key) else {
                    return;
                };
                if let Some(board) = board.upgrade() {
                    if board.cancel_local(tenant, task_id) {
                        tracing::info!(task_id, "cancelled on another host: sandbox stopped");
                    }
                }
            })
            .await?;
        Ok(handle)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Interrupt>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `<tenant length>:<tenant>/<task id>`: unambiguous whatever characters either contains.
fn notice_key(tenant: &str, task_id: &str) -> String {
    format!("{}:{tenant}/{task_id}", tenant.len())
}

fn parse_notice_key(key: &str) -> Option<(&str, &str)> {
    let (len, rest) = key.split_once(':')?;
    let len: usize = len.parse().ok()?;
    let tenant = rest.get(..len)?;
    let task_id = rest.get(len..)?.strip_prefix('/')?;
    Some((tenant, task_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_keys_round_trip_whatever_the_names_contain() {
        for (tenant, id) in [("acme", "t-1"), ("a/b:c", "x/y:z"), ("", "")] {
            assert_eq!(
                parse_notice_key(&notice_key(tenant, id)),
                Some((tenant, id))
            );
        }
        assert_eq!(parse_notice_key("junk"), None);
        assert_eq!(parse_notice_key("99:short/x"), None);
    }

    #[test]
    fn a_local_task_is_interrupted_and_forgotten_when_it_ends() {
        let board = CancelBoard::default();
        let interrupt = board.start("acme", "t1");
        assert!(!board.cancel_local("other", "t1"));
        assert!(board.cancel_local("acme", "t1"));
        assert_eq!(
            interrupt.reason(),
            Some(sentinel_runtime::Reason::Cancelled)
        );
        board.finish("acme", "t1");
        assert!(!board.cancel_local("acme", "t1"));
    }
}
