//! Heartbeats, stale-worker recovery and elected maintenance, through the managers.

use std::sync::Arc;
use std::time::Duration;

use sentinel_coord::config::{
    HeartbeatConfig, LockConfig, MemoryConfig, QueueConfig, RegistryConfig,
};
use sentinel_coord::heartbeat::{HeartbeatMonitor, Maintenance};
use sentinel_coord::locks::LockManager;
use sentinel_coord::model::*;
use sentinel_coord::queue::Queue;
use sentinel_coord::registry::WorkerRegistry;
use sentinel_coord::{ManualClock, SqliteStore, Store};

struct Fleet {
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    registry: WorkerRegistry,
    monitor: Arc<HeartbeatMonitor>,
    queue: Queue,
    locks: LockManager,
}

fn fleet() -> Fleet {
    let clock = ManualClock::new();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temporary(clock.clone()).unwrap());
    let registry = WorkerRegistry::new(store.clone(), RegistryConfig::default());
    let queue_cfg = QueueConfig {
        lease_ms: 2_000,
        ..Default::default()
    };
    let monitor = Arc::new(HeartbeatMonitor::new(
        store.clone(),
        registry.clone(),
        HeartbeatConfig::fast(1_000),
        queue_cfg.lease_ms,
    ));
    Fleet {
        queue: Queue::new(store.clone(), queue_cfg),
        locks: LockManager::new(store.clone(), LockConfig::default()),
        store,
        clock,
        registry,
        monitor,
    }
}

fn reg(id: &str) -> WorkerRegistration {
    WorkerRegistration {
        worker_id: id.into(),
        hostname: "h".into(),
        capacity: WorkerCapacity::with_max(4),
        capabilities: WorkerCapabilities::default(),
        metadata: serde_json::Value::Null,
        incarnation: 0,
        // What HeartbeatConfig::fast(1_000) promises.
        heartbeat_interval_ms: 1_000,
        stale_threshold_ms: 2_000,
    }
}

#[tokio::test]
async fn killed_workers_task_is_requeued_with_attempt_plus_one_and_its_locks_released() {
    let f = fleet();
    f.registry.register(&reg("alive")).await.unwrap();
    f.registry.register(&reg("killed")).await.unwrap();
    let id = f.queue.submit(NewTask::new("job", "x")).await.unwrap();
    let task = f
        .queue
        .claim(&f.queue.claim_request("killed", None, 1))
        .await
        .unwrap()
        .remove(0);
    f.locks
        .acquire(&format!("task-{id}"), "killed", serde_json::Value::Null)
        .await
        .unwrap()
        .unwrap();

    // "killed" stops heartbeating; "alive" keeps going.
    for _ in 0..2 {
        f.clock.advance_ms(1_000);
        f.monitor
            .send_heartbeat("alive", 0, &HeartbeatInfo::default())
            .await
            .unwrap();
    }
    let stale = f.monitor.check_stale_workers().await.unwrap();
    assert_eq!(stale, ["killed"]);
    assert_eq!(
        f.registry.get("killed").await.unwrap().unwrap().status,
        WorkerStatus::Offline
    );
    assert!(
        !f.locks.is_locked(&format!("task-{id}")).await.unwrap(),
        "its locks were released"
    );
    let again = f
        .queue
        .claim(&f.queue.claim_request("alive", None, 1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!((again.id.as_str(), again.attempt), (id.as_str(), 2));
    let err = f
        .queue
        .complete(&task, b"zombie".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(err, sentinel_coord::QueueError::LeaseLost { .. }),
        "the dead worker cannot complete it"
    );
    f.queue.complete(&again, b"ok".to_vec()).await.unwrap();
    assert_eq!(f.queue.result(&id).await.unwrap(), Some(b"ok".to_vec()));
}

#[tokio::test]
async fn heartbeats_keep_a_long_task_leased() {
    let f = fleet();
    f.registry.register(&reg("w")).await.unwrap();
    f.queue.submit(NewTask::new("job", "x")).await.unwrap();
    let t = f
        .queue
        .claim(&f.queue.claim_request("w", None, 1))
        .await
        .unwrap()
        .remove(0);
    for _ in 0..5 {
        f.clock.advance_ms(1_000);
        f.monitor
            .send_heartbeat(
                "w",
                0,
                &HeartbeatInfo {
                    active_tasks: Some(1),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(f.queue.reap_expired().await.unwrap(), ReapReport::default());
    }
    f.queue.complete(&t, vec![]).await.unwrap();
}

#[tokio::test]
async fn maintenance_runs_on_one_elected_node_and_fails_over() {
    let f = fleet();
    let make = |node: &str| {
        Maintenance::new(
            f.store.clone(),
            node,
            f.monitor.clone(),
            QueueConfig::default(),
            MemoryConfig::default(),
        )
    };
    let (a, b) = (make("node-a"), make("node-b"));
    assert!(
        a.run_once().await.unwrap().is_some(),
        "the first node becomes leader"
    );
    assert!(
        b.run_once().await.unwrap().is_none(),
        "a second node does not run chores"
    );
    f.clock.advance_ms(1_000);
    assert!(
        a.run_once().await.unwrap().is_some(),
        "the leader keeps its lease by renewing"
    );
    assert!(b.run_once().await.unwrap().is_none());
    // node-a dies: after its lease (three check periods) node-b takes over.
    f.clock.advance_ms(3_000);
    assert!(b.run_once().await.unwrap().is_some());
    assert!(
        a.run_once().await.unwrap().is_none(),
        "the old leader notices it lost the lock"
    );
}

#[tokio::test]
async fn maintenance_round_reaps_recovers_and_cleans() {
    let f = fleet();
    f.registry.register(&reg("gone")).await.unwrap();
    f.queue.submit(NewTask::new("job", "x")).await.unwrap();
    f.queue
        .claim(&f.queue.claim_request("gone", None, 1))
        .await
        .unwrap();
    f.locks
        .try_acquire("short", "someone", 10)
        .await
        .unwrap()
        .unwrap();
    f.clock.advance_ms(2_500);
    let m = Maintenance::new(
        f.store.clone(),
        "node",
        f.monitor.clone(),
        QueueConfig::default(),
        MemoryConfig::default(),
    );
    let report = m.run_once().await.unwrap().unwrap();
    assert_eq!(report.stale_workers, ["gone"]);
    assert_eq!(report.stale_locks, 1);
    assert_eq!(
        f.queue.stats().await.unwrap().pending,
        1,
        "the stale worker's task is runnable again"
    );
}

#[tokio::test]
async fn automatic_heartbeats_run_until_stopped() {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open_temporary(sentinel_coord::clock::system()).unwrap());
    let registry = WorkerRegistry::new(store.clone(), RegistryConfig::default());
    registry.register(&reg("w")).await.unwrap();
    let monitor = Arc::new(HeartbeatMonitor::new(
        store.clone(),
        registry.clone(),
        HeartbeatConfig::fast(20),
        1_000,
    ));
    let first = registry.get("w").await.unwrap().unwrap().last_heartbeat;
    monitor.start(
        "w",
        0,
        Arc::new(|| HeartbeatInfo {
            load: Some(0.25),
            ..Default::default()
        }),
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    let w = registry.get("w").await.unwrap().unwrap();
    assert!(w.last_heartbeat > first);
    assert_eq!(w.heartbeat.load, Some(0.25));
    monitor.stop();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let stopped_at = registry.get("w").await.unwrap().unwrap().last_heartbeat;
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        registry.get("w").await.unwrap().unwrap().last_heartbeat,
        stopped_at
    );
}
