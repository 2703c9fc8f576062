//! Trust: which plugins this host runs (ed25519 signatures by trusted keys) and, for the fleet,
//! the secret that authenticates what workers write to the shared store.
//!
//! This module resolves the configuration's `trust` section and the per-tenant keys into
//! policies; it never verifies anything itself (the plugin folder checks signatures, the
//! coordination layer checks fleet MACs) and never logs a secret.

pub mod config;

pub use config::{TrustSection, TrustSettings};

/// Most trusted plugin keys in one list (the host's, or one tenant's).
pub const MAX_TRUSTED_KEYS: usize = 64;
