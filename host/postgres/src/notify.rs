//! Wake-ups for [`sentinel_coord::Store::subscribe`]. Writers call `pg_notify(channel, topic)`
//! inside their transaction (delivered at commit, dropped on rollback); each store keeps one
//! dedicated connection that `LISTEN`s on its schema's channel and bumps the topic's
//! `watch` counter for every notification, whichever process sent it. Writes of this process
//! also bump the counter directly, without waiting for the round trip.
//!
//! A wake-up only says "look again": notifications are lost while the listening connection is
//! down, so after every (re)connection both topics are bumped and readers catch up from the
//! durable state (the claimable tasks, the memory change log after their last seq). This module
//! must never carry data in a notification, and never let a lost connection end the listener: it
//! reconnects with capped exponential backoff until the store is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sentinel_coord::Topic;
use tokio::sync::{oneshot, watch};
use tokio_postgres::{AsyncMessage, NoTls};

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Notification payloads, one per topic.
pub(crate) const TASKS_PAYLOAD: &str = "tasks";
pub(crate) const MEMORY_PAYLOAD: &str = "memory";

/// The per-topic counters subscribers watch.
pub struct Wake {
    tasks: watch::Sender<u64>,
    memory: watch::Sender<u64>,
}

impl Default for Wake {
    fn default() -> Self {
        Self::new()
    }
}

impl Wake {
    pub fn new() -> Self {
        Self {
            tasks: watch::Sender::new(0),
            memory: watch::Sender::new(0),
        }
    }

    fn sender(&self, topic: Topic) -> &watch::Sender<u64> {
        match topic {
            Topic::Tasks => &self.tasks,
            Topic::Memory => &self.memory,
        }
    }

    pub fn bump(&self, topic: Topic) {
        self.sender(topic).send_modify(|v| *v = v.wrapping_add(1));
    }

    pub fn subscribe(&self, topic: Topic) -> watch::Receiver<u64> {
        self.sender(topic).subscribe()
    }

    fn bump_payload(&self, payload: &str) {
        match payload {
            TASKS_PAYLOAD => self.bump(Topic::Tasks),
            MEMORY_PAYLOAD => self.bump(Topic::Memory),
            // Unknown payload (a newer writer?): waking too often is harmless, missing is not.
            _ => {
                self.bump(Topic::Tasks);
                self.bump(Topic::Memory);
            }
        }
    }
}

/// The running LISTEN task; dropping this handle stops it.
pub(crate) struct Listener {
    _stop: oneshot::Sender<()>,
}

impl Listener {
    pub(crate) fn spawn(config: tokio_postgres::Config, channel: String, wake: Arc<Wake>) -> Self {
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(run(config, channel, Arc::downgrade(&wake), stop_rx));
        Self { _stop: stop_tx }
    }
}

async fn run(
    config: tokio_postgres::Config,
    channel: String,
    wake: Weak<Wake>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let established = AtomicBool::new(false);
        tokio::select! {
            _ = &mut stop => return,
            result = listen_once(&config, &channel, &wake, &established) => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, channel = %channel, "PostgreSQL LISTEN connection lost; reconnecting");
                }
            }
        }
        if wake.strong_count() == 0 {
            return;
        }
        if established.load(Ordering::Relaxed) {
            // It worked until now: the outage may be short, so try again soon.
            backoff = MIN_BACKOFF;
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One listening session: connect, `LISTEN`, then forward notifications until the connection
/// ends. Returns `Ok` when the server closed the connection cleanly.
async fn listen_once(
    config: &tokio_postgres::Config,
    channel: &str,
    wake: &Weak<Wake>,
    established: &AtomicBool,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    // The connection must be polled for the LISTEN to complete, and it is also where
    // notifications arrive, so it is driven here next to the client's one request.
    let drive = async {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => match wake.upgrade() {
                    Some(w) => w.bump_payload(n.payload()),
                    None => return Ok(()),
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    };
    let subscribe = async {
        // The channel name is built from a validated schema name: no quoting needed.
        client.batch_execute(&format!("LISTEN {channel}")).await?;
        established.store(true, Ordering::Relaxed);
        // Anything may have happened while we were not listening: make every waiter look.
        if let Some(w) = wake.upgrade() {
            w.bump(Topic::Tasks);
            w.bump(Topic::Memory);
        }
        std::future::pending::<Result<(), tokio_postgres::Error>>().await
    };
    tokio::select! {
        r = drive => r,
        r = subscribe => r,
    }
}
