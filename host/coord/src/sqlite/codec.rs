//! Conversions between SQLite columns and model types. Decoding failures become
//! `StoreError::Corrupt`; nothing here touches a connection.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;

pub(super) fn to_json<T: Serialize + ?Sized>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Invalid(format!("unencodable value: {e}")))
}

pub(super) fn from_json<T: DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("bad JSON column: {e}")))
}

pub(super) fn u64_col(v: i64) -> u64 {
    v.max(0) as u64
}

/// A u64 duration or count as an SQLite integer, saturating at `i64::MAX`.
pub(super) fn i64_param(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// Binds an optional id list as a JSON array for `IN (SELECT value FROM json_each(?))`.
pub(super) fn next_counter(tx: &rusqlite::Transaction<'_>, name: &str) -> Result<u64, StoreError> {
    let v: i64 = tx
        .prepare_cached("UPDATE counters SET value = value + 1 WHERE name = ?1 RETURNING value")
        .and_then(|mut s| s.query_row([name], |r| r.get(0)))
        .map_err(super::map_err)?;
    Ok(u64_col(v))
}
