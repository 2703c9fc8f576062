use serde::{Deserialize, Serialize};

/// Well-known namespaces from the seeds. Any non-empty name is accepted.
pub mod namespaces {
    pub const SWARM: &str = "swarm";
    pub const TASKS: &str = "tasks";
    pub const WORKERS: &str = "workers";
    pub const GLOBAL: &str = "global";
}

/// A live (not deleted, not expired) memory value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryEntry {
    pub tenant: String,
    pub namespace: String,
    pub key: String,
    pub value: serde_json::Value,
    /// Per key, strictly increasing across sets and deletes; 0 means "absent" for compare-and-set.
    pub version: u64,
    /// Last-write-wins timestamp (ms). Ties are broken by `writer`, the greater string winning.
    pub timestamp: i64,
    pub writer: String,
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryWrite {
    pub tenant: String,
    pub namespace: String,
    pub key: String,
    pub value: serde_json::Value,
    pub writer: String,
    /// LWW timestamp; `None` means the store's now. Only a replayed or merged write sets it.
    pub timestamp: Option<i64>,
    pub ttl_ms: Option<u64>,
    /// Compare-and-set: the write applies only if the key's live version equals this (0 = absent).
    /// A CAS write skips the LWW comparison: the version check already orders it.
    pub expected_version: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WriteOutcome {
    Written(MemoryEntry),
    /// Last-write-wins kept the existing value: its (timestamp, writer) is greater.
    Superseded {
        current_version: u64,
        timestamp: i64,
        writer: String,
    },
    /// Compare-and-set failed; `current` is the live version (0 = absent).
    VersionMismatch {
        current: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Set,
    Delete,
    Expire,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Set => "set",
            ChangeKind::Delete => "delete",
            ChangeKind::Expire => "expire",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "set" => ChangeKind::Set,
            "delete" => ChangeKind::Delete,
            "expire" => ChangeKind::Expire,
            _ => return None,
        })
    }
}

/// One entry of the memory change log. `seq` is global to the store and strictly increasing in
/// commit order, so a reader that resumes "after seq N" sees every later change exactly once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    pub seq: u64,
    pub tenant: String,
    pub namespace: String,
    pub key: String,
    pub kind: ChangeKind,
    pub value: Option<serde_json::Value>,
    pub version: u64,
    pub timestamp: i64,
    pub writer: String,
}
