use serde::{Deserialize, Serialize};

use super::HolderSecret;

/// A granted lock. `token` is the fencing token: strictly greater than any earlier grant of the
/// same key, so a resource that remembers the highest token it has seen can reject a stale holder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lock {
    pub tenant: String,
    pub key: String,
    pub owner: String,
    pub token: u64,
    pub acquired_at: i64,
    pub expires_at: i64,
    pub metadata: serde_json::Value,
    /// The holder's proof, only on the `Lock` an acquire or renew returned to its holder (never
    /// read back from the store, never serialised): release and renew present it.
    #[serde(skip)]
    pub holder_secret: Option<HolderSecret>,
}

impl Lock {
    /// A lock is expired from the instant `expires_at` is reached.
    pub fn is_expired_at(&self, now_ms: i64) -> bool {
        now_ms >= self.expires_at
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockRequest {
    pub tenant: String,
    pub key: String,
    pub owner: String,
    pub ttl_ms: u64,
    pub metadata: serde_json::Value,
    /// If set, the store keeps its digest and a release or renew must present it
    /// ([`holder_proven`]); [`crate::locks::LockManager`] always sets a fresh one.
    #[serde(skip)]
    pub holder_secret: Option<HolderSecret>,
}

/// Filter for listing locks. `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LockFilter {
    pub tenant: Option<String>,
    pub owner: Option<String>,
    pub include_expired: bool,
}
