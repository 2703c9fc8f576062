//! Plain data shared by the store contract, every backend and the managers: locks, workers,
//! memory entries, tasks, tenants. Nothing here does I/O or reads a clock; helpers that need "now" take it.

pub mod limits;
mod lock;
mod memory;
mod proof;
mod task;
mod tenant;
mod validate;
mod worker;

pub use lock::*;
pub use memory::*;
pub use proof::*;
pub use task::*;
pub use tenant::*;
pub use validate::*;
pub use worker::*;

/// The tenant used when none is configured.
pub const DEFAULT_TENANT: &str = "default";

/// Tenant for the system's own bookkeeping (e.g. the maintenance leader lock), so it never
/// collides with a user's key.
pub const SYSTEM_TENANT: &str = "__sentinel";
