//! The PostgreSQL store passes the store conformance suite, each case in a schema of its own
//! (needs `SENTINEL_TEST_POSTGRES_URL`; fails loudly without it).

sentinel_coord::conformance_tests!(|clock| async move {
    std::sync::Arc::new(sentinel_postgres::testing::fresh_store(Some(clock)).await)
        as std::sync::Arc<dyn sentinel_coord::Store>
});
