//! The embedded SQLite backend: one database file in WAL mode, shared safely by several OS
//! processes on one machine. Writes go through one writer connection per process (a mutex) inside
//! `BEGIN IMMEDIATE`, so SQLite's file lock serialises writers across processes; reads use a small
//! pool. All blocking work runs on tokio's blocking pool. This module owns connections and
//! notifications only; each area's SQL lives in its own file.

mod claim;
mod codec;
mod locks;
mod memory;
mod queue;
mod registry;
mod schema;
mod tasks;
mod tenants;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::watch;

use crate::clock::{self, Clock};
use crate::error::StoreError;
use crate::store::{Store, StoreResult, Topic};

/// Tunables for [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How long a writer waits for another process's write transaction.
    pub busy_timeout: Duration,
    pub read_connections: usize,
    /// How often the cross-process change detector checks `PRAGMA data_version`.
    pub change_poll_interval: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(10),
            read_connections: 2,
            change_poll_interval: Duration::from_millis(2),
        }
    }
}

pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    clock: Arc<dyn Clock>,
    tasks_tx: watch::Sender<u64>,
    memory_tx: watch::Sender<u64>,
    closed: AtomicBool,
    // Dropped last, after the connections, so the directory outlives the database.
    _temp: Option<tempfile::TempDir>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with the system clock.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        Self::open_with(path, clock::system(), SqliteOptions::default())
    }

    pub fn open_with(
        path: impl AsRef<Path>,
        clock: Arc<dyn Clock>,
        options: SqliteOptions,
    ) -> StoreResult<Self> {
        Self::open_inner(path.as_ref().to_path_buf(), clock, options, None)
    }

    /// A store in a fresh temporary directory that is removed when the store is dropped.
    pub fn open_temporary(clock: Arc<dyn Clock>) -> StoreResult<Self> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Backend(e.to_string()))?;
        let path = dir.path().join("sentinel.db");
        Self::open_inner(path, clock, SqliteOptions::default(), Some(dir))
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn open_inner(
        path: PathBuf,
        clock: Arc<dyn Clock>,
        options: SqliteOptions,
        temp: Option<tempfile::TempDir>,
    ) -> StoreResult<Self> {
        let writer = open_connection(&path, &options)?;
        schema::migrate(&writer)?;
        let mut readers = Vec::new();
        for _ in 0..options.read_connections {
            readers.push(open_connection(&path, &options)?);
        }
        let watcher = open_connection(&path, &options)?;
        let inner = Arc::new(Inner {
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(readers),
            clock,
            tasks_tx: watch::Sender::new(0),
            memory_tx: watch::Sender::new(0),
            closed: AtomicBool::new(false),
            _temp: temp,
        });
        spawn_change_detector(
            Arc::downgrade(&inner),
            watcher,
            options.change_poll_interval,
        );
        Ok(Self { inner })
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction on the writer connection, on the blocking
    /// pool. `now` is read after the write lock is taken, so across all processes a later
    /// transaction never sees an earlier time than one committed before it.
    pub(crate) async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, i64) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        run_blocking(move || {
            let mut conn = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(map_err)?;
            let now = inner.clock.now_ms();
            let out = f(&tx, now)?;
            tx.commit().map_err(map_err)?;
            Ok(out)
        })
        .await
    }

    /// Runs `f` on a read connection inside a deferred transaction (one consistent snapshot).
    pub(crate) async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, i64) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        run_blocking(move || {
            let taken = inner
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            let mut conn = match taken {
                Some(c) => c,
                None => open_connection(&inner.path, &SqliteOptions::default())?,
            };
            let result = (|| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Deferred)
                    .map_err(map_err)?;
                let now = inner.clock.now_ms();
                let out = f(&tx, now)?;
                tx.finish().map_err(map_err)?;
                Ok(out)
            })();
            inner
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
            result
        })
        .await
    }

    pub(crate) fn notify(&self, topic: Topic) {
        let tx = match topic {
            Topic::Tasks => &self.inner.tasks_tx,
            Topic::Memory => &self.inner.memory_tx,
        };
        tx.send_modify(|v| *v = v.wrapping_add(1));
    }
}

async fn run_blocking<T, F>(f: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> StoreResult<T> + Send + 'static,
{
    // On a multi-thread runtime, block_in_place runs the short SQLite work right here (the
    // runtime moves this worker's other tasks elsewhere), saving a hop to the blocking pool on
    // every call. A current-thread runtime cannot do that, so it uses the blocking pool.
    if let Ok(handle) = tokio::runtime::Handle::try_current()
        && handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
    {
        return tokio::task::block_in_place(f);
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend(format!("blocking task failed: {e}")))?
}

fn open_connection(path: &Path, options: &SqliteOptions) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(map_err)?;
    conn.busy_timeout(options.busy_timeout).map_err(map_err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(map_err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(map_err)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Another process's commit is invisible to our in-process senders, so a dedicated thread reads
/// the two wake counters (`memory_seq`, bumped by every memory change, and `task_wake`, bumped
/// whenever tasks may have become claimable) and bumps the matching topic when one moved. A
/// counter read is exact where `PRAGMA data_version` proved to miss the odd commit. The thread
/// ends when the store is dropped.
fn read_wake_counters(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.prepare_cached(
        "SELECT (SELECT value FROM counters WHERE name = 'memory_seq'),
                (SELECT value FROM counters WHERE name = 'task_wake')",
    )
    .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
}

fn spawn_change_detector(inner: Weak<Inner>, conn: Connection, every: Duration) {
    // The baseline is read before open() returns: a commit made right after opening must
    // count as a change, not become the baseline.
    let mut last = read_wake_counters(&conn).ok();
    let spawned = std::thread::Builder::new()
        .name("sqlite-change-detector".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(inner) = inner.upgrade() else { return };
                if inner.closed.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok((mem, tasks)) = read_wake_counters(&conn) {
                    if let Some((last_mem, last_tasks)) = last {
                        if mem != last_mem {
                            inner.memory_tx.send_modify(|x| *x = x.wrapping_add(1));
                        }
                        if tasks != last_tasks {
                            inner.tasks_tx.send_modify(|x| *x = x.wrapping_add(1));
                        }
                    }
                    last = Some((mem, tasks));
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the SQLite change detector; other processes' changes will be seen only by polling");
    }
}

pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::CannotOpen
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn now(&self) -> StoreResult<i64> {
        Ok(self.inner.clock.now_ms())
    }

    fn subscribe(&self, topic: Topic) -> watch::Receiver<u64> {
        match topic {
            Topic::Tasks => self.inner.tasks_tx.subscribe(),
            Topic::Memory => self.inner.memory_tx.subscribe(),
        }
    }

    fn backend_name(&self) -> &'static str {
        "sqlite"
    }
}
