//! Two store handles on one SQLite file (as two processes would have): every change made through
//! one wakes subscribers of the other, and the woken reader sees the change.

use std::sync::Arc;
use std::time::Duration;

use sentinel_coord::model::*;
use sentinel_coord::{SqliteStore, Store, Topic};

fn pair() -> (tempfile::TempDir, Arc<dyn Store>, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let a: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let b: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    (dir, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_memory_write_wakes_the_other_handle_and_is_visible() {
    let (_d, a, b) = pair();
    let mut rx = b.subscribe(Topic::Memory);
    for i in 0..150 {
        rx.borrow_and_update();
        let w = MemoryWrite {
            tenant: "t".into(),
            namespace: "n".into(),
            key: "k".into(),
            value: serde_json::json!(i),
            writer: "w".into(),
            timestamp: None,
            ttl_ms: None,
            expected_version: None,
        };
        a.memory_set(&w).await.unwrap();
        tokio::time::timeout(Duration::from_millis(500), rx.changed())
            .await
            .unwrap_or_else(|_| panic!("write {i} did not wake the other handle"))
            .unwrap();
        let v = b.memory_get("t", "n", "k").await.unwrap().map(|e| e.value);
        assert_eq!(v, Some(serde_json::json!(i)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_submit_wakes_the_other_handles_workers() {
    let (_d, a, b) = pair();
    let mut rx = b.subscribe(Topic::Tasks);
    for i in 0..100 {
        rx.borrow_and_update();
        a.enqueue(&[NewTask::new("job", format!("{i}"))])
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_millis(500), rx.changed())
            .await
            .unwrap_or_else(|_| panic!("submit {i} did not wake the other handle"))
            .unwrap();
        let req = ClaimRequest {
            worker_id: "w".into(),
            task_types: None,
            tenants: None,
            limit: 1,
            lease_ms: 1000,
            incarnation: 0,
        };
        assert_eq!(b.claim(&req).await.unwrap().len(), 1);
    }
}
