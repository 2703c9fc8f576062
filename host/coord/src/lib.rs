//! Sentinel's coordination layer.
//!
//! * [`store`]: the store contract ([`Store`]), the only way coordination touches persistence.
//! * [`sqlite`]: the embedded backend ([`SqliteStore`]).
//! * [`conformance`]: the suite every backend must pass ([`conformance_tests!`]).
//! * Managers above the contract: [`locks::LockManager`], [`registry::WorkerRegistry`],
//!   [`memory::MemorySync`], [`queue::Queue`], [`heartbeat::HeartbeatMonitor`],
//!   [`balancer::LoadBalancer`].

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

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{LockError, QueueError, StoreError, SyncError, WorkerError};
pub use sqlite::SqliteStore;
pub use store::{LockStore, MemoryStore, QueueStore, RegistryStore, Store, StoreResult, Topic};
