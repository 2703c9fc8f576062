//! Sentinel's PostgreSQL store: [`PgStore`] implements the coordination contract
//! ([`sentinel_coord::Store`]) on a PostgreSQL server that many worker hosts share, and passes the
//! same conformance suite as the embedded SQLite store.
//!
//! * [`store`]: the pool, the time source, the transaction/retry plumbing and the `Store` impl.
//! * [`schema`]: versioned migrations, applied at open under an advisory lock.
//! * `locks`, `registry`, `memory`, `queue`, `settle`, `recover`: each area's SQL, mirroring
//!   `sentinel_coord::sqlite`.
//! * `claim`: the fair claim (weighted virtual time between tenants, one statement per batch).
//! * `tenants`: tenant settings, usage, and the quota checks the writes run.
//! * [`notify`]: LISTEN/NOTIFY wake-ups feeding [`sentinel_coord::Store::subscribe`].
//! * [`error`]: PostgreSQL errors → [`sentinel_coord::StoreError`] (connection trouble is
//!   `Unavailable`, so callers retry).
//! * [`testing`]: the shared set-up of this crate's tests and benches (one schema per store).
//!
//! How PostgreSQL keeps the contract's promises:
//! * **Claims** lock candidate rows with `FOR UPDATE SKIP LOCKED`, so concurrent claimers never
//!   wait on each other and never share a task; a claim of up to N tasks is one statement,
//!   shared between the backlogged tenants by weight.
//! * **Tasks** are named by (tenant, id); dependencies and affinity resolve inside the tenant.
//! * **Quotas** are exact across processes: the tenant's row is locked before counting, and only
//!   for a tenant that has the quota (see `tenants`).
//! * **Time** is the database's (`statement_timestamp()`), never a worker's, unless a clock is
//!   injected (tests): then that clock's `now_ms()` is bound as a parameter instead.
//! * **Fencing tokens** come from one sequence, drawn only while the key is serialised by a
//!   transaction-scoped advisory lock, so a later grant of a key always has a greater token.
//! * **The memory change log** is numbered by a counter row whose row lock is held to commit, so
//!   sequence order is commit order and a reader resuming "after N" never skips a late commit.
//! * **Wake-ups**: `pg_notify` in the writing transaction, one `LISTEN` connection per store.

mod claim;
mod codec;
pub mod error;
mod locks;
mod memory;
pub mod notify;
mod plan;
mod queue;
mod recover;
mod registry;
pub mod schema;
mod settle;
pub mod store;
mod tenants;
pub mod testing;

pub use store::{PgOptions, PgStore};
