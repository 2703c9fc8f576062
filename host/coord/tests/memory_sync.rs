//! MemorySync: values, versions, cache coherence and watches, including across store handles on
//! one file (as separate processes would be).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sentinel_coord::config::MemoryConfig;
use sentinel_coord::memory::{MemorySync, Selector};
use sentinel_coord::model::*;
use sentinel_coord::{SqliteStore, Store, SyncError, clock};
use serde_json::json;

fn two_handles() -> (tempfile::TempDir, Arc<dyn Store>, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let a: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let b: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    (dir, a, b)
}

async fn sync_for(store: &Arc<dyn Store>, writer: &str) -> MemorySync {
    MemorySync::start(
        store.clone(),
        DEFAULT_TENANT,
        writer,
        MemoryConfig {
            poll_interval_ms: 5_000,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_values_roundtrip_and_versions_advance() {
    let (_d, a, _) = two_handles();
    let m = sync_for(&a, "node-a").await;
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct State {
        status: String,
        progress: u32,
    }
    let e = m
        .set(
            "task-123-state",
            &State {
                status: "in_progress".into(),
                progress: 45,
            },
            namespaces::TASKS,
        )
        .await
        .unwrap();
    assert_eq!(e.version, 1);
    let got: Option<State> = m.get("task-123-state", namespaces::TASKS).await.unwrap();
    assert_eq!(
        got,
        Some(State {
            status: "in_progress".into(),
            progress: 45
        })
    );
    let wrong: Result<Option<u32>, _> = m.get("task-123-state", namespaces::TASKS).await;
    assert!(matches!(wrong, Err(SyncError::Decode { ref namespace, .. }) if namespace == "tasks"));
    assert_eq!(
        m.list(namespaces::TASKS, "task-").await.unwrap(),
        ["task-123-state"]
    );
    assert!(m.delete("task-123-state", namespaces::TASKS).await.unwrap());
    assert_eq!(
        m.get::<State>("task-123-state", namespaces::TASKS)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_conflicts_name_the_namespace() {
    let (_d, a, _) = two_handles();
    let m = sync_for(&a, "n").await;
    m.compare_and_set("leader", &"n1", 0, namespaces::SWARM)
        .await
        .unwrap();
    let err = m
        .compare_and_set("leader", &"n2", 0, namespaces::SWARM)
        .await
        .unwrap_err();
    assert_eq!(err.namespace(), "swarm");
    assert!(matches!(
        err,
        SyncError::VersionConflict {
            current: Some(1),
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_sees_another_handles_write() {
    let (_d, a, b) = two_handles();
    let ma = sync_for(&a, "node-a").await;
    let mb = sync_for(&b, "node-b").await;
    ma.set("k", &1, namespaces::GLOBAL).await.unwrap();
    assert_eq!(
        mb.get::<i32>("k", namespaces::GLOBAL).await.unwrap(),
        Some(1)
    );
    ma.set("k", &2, namespaces::GLOBAL).await.unwrap();
    // The other handle's cached value is invalidated by the change log, within milliseconds.
    let mut seen = None;
    for _ in 0..200 {
        seen = mb.get::<i32>("k", namespaces::GLOBAL).await.unwrap();
        if seen == Some(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(seen, Some(2));
    ma.set("k", &3, namespaces::GLOBAL).await.unwrap();
    mb.sync(Some(namespaces::GLOBAL)).await.unwrap();
    assert_eq!(
        mb.get::<i32>("k", namespaces::GLOBAL).await.unwrap(),
        Some(3),
        "after sync() the read is current"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_delivers_every_change_in_order_from_another_handle() {
    let (_d, a, b) = two_handles();
    let writer = sync_for(&a, "node-a").await;
    let watcher = sync_for(&b, "node-b").await;
    writer
        .set("decision", &json!("before"), namespaces::SWARM)
        .await
        .unwrap();
    let seen: Arc<Mutex<Vec<(ChangeKind, Option<serde_json::Value>)>>> = Arc::default();
    let s2 = seen.clone();
    let handle = watcher
        .watch("decision", namespaces::SWARM, move |e| {
            s2.lock().unwrap().push((e.kind, e.value.clone()))
        })
        .await
        .unwrap();
    for i in 0..30 {
        writer
            .set("decision", &json!(i), namespaces::SWARM)
            .await
            .unwrap();
        writer
            .set("other", &json!(i), namespaces::SWARM)
            .await
            .unwrap();
    }
    writer.delete("decision", namespaces::SWARM).await.unwrap();
    for _ in 0..400 {
        if seen.lock().unwrap().len() >= 31 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = seen.lock().unwrap().clone();
    let mut want: Vec<_> = (0..30).map(|i| (ChangeKind::Set, Some(json!(i)))).collect();
    want.push((ChangeKind::Delete, None));
    assert_eq!(
        got, want,
        "every change after subscribing, none before, in order"
    );
    handle.unwatch();
    writer
        .set("decision", &json!("after"), namespaces::SWARM)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(seen.lock().unwrap().len(), 31, "unwatch stops delivery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_subscription_has_no_gap_after_subscribe_returns() {
    let (_d, a, _) = two_handles();
    let m = sync_for(&a, "n").await;
    let mut sub = m
        .subscribe(namespaces::TASKS, Selector::Prefix("task-".into()))
        .await
        .unwrap();
    // Written immediately after subscribe returns: must not be missed.
    m.set("task-1", &1, namespaces::TASKS).await.unwrap();
    m.set("unrelated", &1, namespaces::TASKS).await.unwrap();
    m.set("task-2", &2, namespaces::TASKS).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(2), sub.events.recv())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(2), sub.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.key.as_str(), second.key.as_str()),
        ("task-1", "task-2")
    );
    assert!(first.seq > sub.start_seq && second.seq > first.seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_of_one_tenant_is_invisible_to_another() {
    let s: Arc<dyn Store> = Arc::new(SqliteStore::open_temporary(clock::system()).unwrap());
    let a = MemorySync::start(s.clone(), "acme", "n", MemoryConfig::default())
        .await
        .unwrap();
    let b = MemorySync::start(s.clone(), "globex", "n", MemoryConfig::default())
        .await
        .unwrap();
    a.set("secret", &"acme-only", namespaces::GLOBAL)
        .await
        .unwrap();
    assert_eq!(
        b.get::<String>("secret", namespaces::GLOBAL).await.unwrap(),
        None
    );
    assert!(b.list(namespaces::GLOBAL, "").await.unwrap().is_empty());
}
