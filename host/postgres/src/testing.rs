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

/// Creates the URL's database if the server says it does not exist (a fresh cluster has only
/// `postgres`), so a new machine needs no manual set-up beyond a running server.
pub async fn ensure_database() {
    let url = &url();
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let config: tokio_postgres::Config = url
            .parse()
            .unwrap_or_else(|e| panic!("{URL_VAR}={url} is not a PostgreSQL URL: {e}"));
        let missing = match config.connect(tokio_postgres::NoTls).await {
            Ok(_) => false,
            Err(e) => e.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME),
        };
        let Some(db) = config.get_dbname().filter(|_| missing) else {
            return;
        };
        let mut admin = config.clone();
        admin.dbname("postgres");
        if let Ok((client, conn)) = admin.connect(tokio_postgres::NoTls).await {
            tokio::spawn(conn);
            // Two test binaries may race here; "already exists" is as good as created.
            let _ = client
                .batch_execute(&format!("CREATE DATABASE \"{}\"", db.replace('"', "\"\"")))
                .await;
        }
    })
    .await;
}

/// An empty store in a new schema, driven by `clock` (`None`: the database clock), that drops
/// its schema when dropped.
pub async fn fresh_store(clock: Option<Arc<dyn Clock>>) -> PgStore {
    ensure_database().await;
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
