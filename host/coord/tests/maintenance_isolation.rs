//! One bad record never stops maintenance for everyone else: a task, a memory entry and a worker
//! planted directly in the SQLite file with values no build writes (an overflowed REAL deadline
//! and a non-numeric attempt, which read saturated; a blob worker id and a blob tenant,
//! which are skipped and reported; a threshold past `i64`) never stop the other tenants' expired
//! leases, memory and locks from being reaped.

use std::sync::Arc;

use rusqlite::{Connection, params};
use sentinel_coord::config::{HeartbeatConfig, MemoryConfig, QueueConfig, RegistryConfig};
use sentinel_coord::heartbeat::{HeartbeatMonitor, Maintenance};
use sentinel_coord::model::*;
use sentinel_coord::registry::WorkerRegistry;
use sentinel_coord::{Clock, ManualClock, SqliteStore, Store};

fn plant(path: &std::path::Path, now: i64) {
    let c = Connection::open(path).unwrap();
    // A running task whose deadline overflowed into a REAL and whose attempt is not a number.
    c.execute(
        "INSERT INTO tasks (id, tenant, task_type, priority, payload, metadata, max_retries,
           timeout_ms, attempt, state, worker_id, lease_expires_at, deadline_at, fence,
           created_at, updated_at, run_at)
         VALUES ('bad-task', 'evil', 't', 0, x'', 'not json', 3, 9223372036854775807, 'many',
           'running', 'ghost', ?1, 1e300, 1, ?1, ?1, ?1)",
        [now - 1],
    )
    .unwrap();
    // A running task no decoding can read: its worker id is a blob.
    c.execute(
        "INSERT INTO tasks (id, tenant, task_type, priority, payload, metadata, max_retries,
           timeout_ms, state, worker_id, lease_expires_at, fence, created_at, updated_at, run_at)
         VALUES ('blob-task', 'evil', 't', 0, x'', '{}', 3, 1000, 'running', x'ff00', ?1, 1,
           ?1, ?1, ?1)",
        [now - 1],
    )
    .unwrap();
    // An expired memory entry no decoding can read: its tenant is a blob.
    c.execute(
        "INSERT INTO memory (tenant, namespace, key, value, version, ts, writer, expires_at)
         VALUES (x'ee00', 'ns', 'k', '{', 'v?', ?1, 'w', ?1)",
        [now - 1],
    )
    .unwrap();
    // A worker announcing a threshold no arithmetic on i64 survives.
    c.execute(
        "INSERT INTO workers (worker_id, hostname, status, registered_at, last_heartbeat,
           max_tasks, active_tasks, available_slots, capabilities, metadata, heartbeat,
           incarnation, heartbeat_interval_ms, stale_threshold_ms)
         VALUES ('huge', 'h', 'active', ?1, ?1, 1, 0, 1, '{', 'null', '{}', 1, ?2, ?2)",
        params![now, i64::MAX],
    )
    .unwrap();
}

#[tokio::test]
async fn a_corrupt_record_is_skipped_and_every_other_tenant_is_still_maintained() {
    let clock = ManualClock::new();
    let store = SqliteStore::open_temporary(clock.clone()).unwrap();
    let path = store.path().to_path_buf();
    let store: Arc<dyn Store> = Arc::new(store);

    // Tenant "acme": a claimed task, a short-lived memory entry and a short lock, all of which
    // will have expired by the maintenance round.
    store
        .enqueue(&[NewTask::new("t", "x").with_tenant("acme").with_id("good")])
        .await
        .unwrap();
    let claim = ClaimRequest {
        worker_id: "w".into(),
        task_types: None,
        tenants: None,
        limit: 1,
        lease_ms: 1000,
        incarnation: 0,
    };
    assert_eq!(store.claim(&claim).await.unwrap().len(), 1);
    store
        .memory_set(&MemoryWrite {
            tenant: "acme".into(),
            namespace: "ns".into(),
            key: "k".into(),
            value: serde_json::json!(1),
            writer: "w".into(),
            timestamp: None,
            ttl_ms: Some(10),
            expected_version: None,
        })
        .await
        .unwrap();
    store
        .acquire_lock(&LockRequest {
            tenant: "acme".into(),
            key: "l".into(),
            owner: "w".into(),
            ttl_ms: 10,
            metadata: serde_json::Value::Null,
            holder_secret: None,
        })
        .await
        .unwrap()
        .unwrap();
    clock.advance_ms(5000);
    plant(&path, clock.now_ms());

    let registry = WorkerRegistry::new(store.clone(), RegistryConfig::default());
    let monitor = Arc::new(HeartbeatMonitor::new(
        store.clone(),
        registry,
        HeartbeatConfig::fast(1000),
        1000,
    ));
    let m = Maintenance::new(
        store.clone(),
        "node",
        monitor,
        QueueConfig::default(),
        MemoryConfig::default(),
    );
    let report = m.run_once().await.unwrap().expect("this node leads");

    assert_eq!(
        report.failed,
        Vec::<String>::new(),
        "no chore failed as a whole"
    );
    assert_eq!(
        report.reaped.requeued, 2,
        "acme's expired lease was reaped, and so was the task whose numbers read saturated"
    );
    assert_eq!(
        report.reaped.skipped, 1,
        "the undecodable task was skipped and counted"
    );
    assert_eq!(
        report.expired_memory, 1,
        "acme's entry expired; the planted one was skipped"
    );
    assert_eq!(report.stale_locks, 1);
    assert!(
        report.stale_workers.is_empty(),
        "a threshold past i64 means 'never stale', not an overflow"
    );
    let good = store.get_task("acme", "good").await.unwrap().unwrap();
    assert_eq!(good.state, TaskState::Pending);
    // The next round still runs, and still skips the same record.
    clock.advance_ms(1000);
    let again = m.run_once().await.unwrap().unwrap();
    assert_eq!((again.failed.len(), again.reaped.skipped), (0, 1));
    assert!(store.memory_get("acme", "ns", "k").await.unwrap().is_none());
}
