//! Conversions between PostgreSQL columns and model types, shared by the SQL modules. Decoding
//! failures become `StoreError::Corrupt`; nothing here touches a connection.

use sentinel_coord::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) fn to_json<T: Serialize + ?Sized>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Invalid(format!("unencodable value: {e}")))
}

pub(crate) fn from_json<T: DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("bad JSON column: {e}")))
}

/// Counters and tokens are stored as `bigint`; a negative value can only be corruption, and
/// reads as 0 the way the SQLite store reads it.
pub(crate) fn u64_col(v: i64) -> u64 {
    v.max(0) as u64
}

pub(crate) fn u32_col(v: i64) -> u32 {
    v.clamp(0, u32::MAX as i64) as u32
}

/// A duration in ms as a SQL parameter. Capped at about 285 years so `now + d` can never
/// overflow `bigint` (the SQLite store saturates instead; no real TTL comes near either bound).
pub(crate) fn ms_param(ms: u64) -> i64 {
    ms.min(1 << 53) as i64
}
