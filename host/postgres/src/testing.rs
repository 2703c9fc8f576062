//! Shared set-up for this crate's tests and benches (and for any crate that runs its own tests
//! against PostgreSQL): the server URL comes from `SENTINEL_TEST_POSTGRES_URL`, and every store
//! gets a schema of its own, `sentinel_test_<random>`, dropped when its owning store is dropped,
//! so runs never see each other's data. This module must never skip silently: with the variable
//! unset it panics with instructions, so the test fails loudly.

use std::sync::Arc;

use sentinel_coord::Clock;

use crate::store::{PgOptions, PgStore};

/// The environment variable naming the test server.
pub const URL_VAR: &str = "SENTINEL_TEST_POSTGRES_URL";

/// The test server's URL; panics (failing the test) when it is not configured.
pub fn url() -> String {
    match std::env::var(URL_VAR) {
        Ok(u) if !u.trim().is_empty() => u,
        _ => panic!(
            "{URL_VAR} is not set: the PostgreSQL store's tests need a server. Start one \
             (e.g. `pg_ctlcluster --skip-systemctl-redirect 15 main start`) and run \
             `{URL_VAR}=postgres://postgres@127.0.0.1:5432/test cargo test -p sentinel-postgres`"
        ),
    }
}

/// A fresh schema name, unique across concurrent runs.
pub fn fresh_schema() -> String {
    format!("sentinel_test_{}", uuid::Uuid::new_v4().simple())
}

/// Options for a test store in `schema`; `owner` drops the schema when the store is dropped.
pub fn options(schema: &str, clock: Option<Arc<dyn Clock>>, owner: bool) -> PgOptions {
    PgOptions {
        schema: Some(schema.to_string()),
        clock,
        pool_size: 8,
        application_name: "sentinel-test".into(),
        drop_schema_on_drop: owner,
        ..PgOptions::default()
    }
}

/// An empty store in a new schema, driven by `clock` (`None`: the database clock), that drops
/// its schema when dropped.
pub async fn fresh_store(clock: Option<Arc<dyn Clock>>) -> PgStore {
    let schema = fresh_schema();
    PgStore::connect_with(&url(), options(&schema, clock, true))
        .await
        .unwrap_or_else(|e| panic!("connecting to PostgreSQL at {}: {e}", url()))
}

/// Another store (another pool) on an existing schema; it leaves the schema in place.
pub async fn attach(schema: &str, clock: Option<Arc<dyn Clock>>) -> PgStore {
    PgStore::connect_with(&url(), options(schema, clock, false))
        .await
        .unwrap_or_else(|e| panic!("connecting to PostgreSQL at {}: {e}", url()))
}
