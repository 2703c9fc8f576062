//! Wake-ups for [`Store::subscribe`](sentinel_coord::Store::subscribe). In-process writes bump
//! their topic at once; other processes' writes are noticed by [`poll_heads`], which reads the
//! queue and memory refs with ETags (a 304 costs nothing against the primary rate limit) every
//! poll interval. GitHub has no push channel a worker could hold open (webhooks need a public
//! endpoint), so cross-process wake-ups arrive within one poll interval, not within
//! milliseconds: that is the honest closest behaviour. This module owns the watch channels and
//! the polling loop; it never writes anything to GitHub except what importing submissions does.

use std::sync::Weak;
use std::time::Duration;

use sentinel_coord::Topic;
use tokio::sync::watch;

use crate::store::Inner;

pub struct Notifier {
    tasks: watch::Sender<u64>,
    memory: watch::Sender<u64>,
}

impl Default for Notifier {
    fn default() -> Self {
        Self {
            tasks: watch::Sender::new(0),
            memory: watch::Sender::new(0),
        }
    }
}

impl Notifier {
    pub fn bump(&self, topic: Topic) {
        self.sender(topic).send_modify(|v| *v = v.wrapping_add(1));
    }

    pub fn subscribe(&self, topic: Topic) -> watch::Receiver<u64> {
        self.sender(topic).subscribe()
    }

    fn sender(&self, topic: Topic) -> &watch::Sender<u64> {
        match topic {
            Topic::Tasks => &self.tasks,
            Topic::Memory => &self.memory,
        }
    }
}

/// Runs until the store is dropped: every `every`, compares the queue and memory heads with
/// the last seen ones and bumps the topic that moved; imports issue submissions if enabled.
pub async fn poll_heads(store: Weak<Inner>, every: Duration) {
    let mut last_tasks: Option<Option<String>> = None;
    let mut last_memory: Option<Option<String>> = None;
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = store.upgrade() else { return };
        match inner.queue.doc().head().await {
            Ok(h) => {
                if last_tasks.as_ref().is_some_and(|l| *l != h) {
                    inner.notify.bump(Topic::Tasks);
                }
                last_tasks = Some(h);
            }
            Err(e) => tracing::debug!(error = %e, "polling the queue head failed"),
        }
        match inner.memory.doc().head().await {
            Ok(h) => {
                if last_memory.as_ref().is_some_and(|l| *l != h) {
                    inner.notify.bump(Topic::Memory);
                }
                last_memory = Some(h);
            }
            Err(e) => tracing::debug!(error = %e, "polling the memory head failed"),
        }
        if inner.import_issues {
            match inner.queue.import_submissions().await {
                Ok(ids) if !ids.is_empty() => {
                    tracing::info!(count = ids.len(), "imported task submissions from issues")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "importing issue submissions failed"),
            }
        }
    }
}
