//! The embedded SQLite backend passes the store conformance suite.

sentinel_coord::conformance_tests!(|clock| async move {
    std::sync::Arc::new(sentinel_coord::SqliteStore::open_temporary(clock).expect("open store"))
        as std::sync::Arc<dyn sentinel_coord::Store>
});
