//! Sentinel's coordination layer.
//!
//! * [`store`]: the store contract ([`Store`]), the only way coordination touches persistence.
//! * [`sqlite`]: the embedded backend ([`SqliteStore`]).
//! * [`conformance`]: the suite every backend must pass ([`conformance_tests!`]).
//! * Managers above the contract: [`locks::LockManager`], [`registry::WorkerRegistry`],
//!   [`memory::MemorySync`], [`queue::Queue`], [`heartbeat::HeartbeatMonitor`],
//!   [`balancer::LoadBalancer`].
//!
//! A new backend implements [`Store`] (the union of [`LockStore`], [`RegistryStore`],
//! [`MemoryStore`], [`QueueStore`], [`TenantStore`] plus `now()`/`subscribe()`), takes a [`Clock`] for every time
//! it reads, and proves itself with one test file:
//!
//! ```ignore
//! sentinel_coord::conformance_tests!(|clock| async move {
//!     std::sync::Arc::new(MyStore::fresh(clock).await) as std::sync::Arc<dyn sentinel_coord::Store>
//! });
//! ```
//!
//! Wakeups: [`Store::subscribe`] returns a `tokio::sync::watch` counter per [`Topic`], bumped in
//! process on every submit/requeue (tasks) or write (memory); the SQLite backend also bumps it
//! when `PRAGMA data_version` shows another process committed (checked every 2 ms by one thread).
//! [`queue::Queue::next_batch`] and memory watches sleep on it instead of polling.

pub mod balancer;
pub mod clock;
pub mod config;
pub mod conformance;
pub mod error;
pub mod heartbeat;
pub mod locks;
pub mod memory;
pub mod model;
pub mod queue;
pub mod registry;
pub mod sqlite;
pub mod store;
pub mod trust;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{LockError, QueueError, StoreError, SyncError, WorkerError};
pub use sqlite::SqliteStore;
pub use store::{
    LockStore, MemoryStore, QueueStore, RegistryStore, Store, StoreResult, TenantStore, Topic,
};
