//! Worker registry cases.

use serde_json::json;

use super::{StoreFactory, fresh};
use crate::clock::Clock;
use crate::model::*;

pub(crate) fn registration(id: &str, max: u32, types: &[&str]) -> WorkerRegistration {
    WorkerRegistration {
        worker_id: id.into(),
        hostname: format!("{id}.example.com"),
        capacity: WorkerCapacity::with_max(max),
        capabilities: WorkerCapabilities {
            cpu_cores: 4,
            memory_mb: 8192,
            supported_task_types: types.iter().map(|t| t.to_string()).collect(),
        },
        metadata: json!({"region": "us-east-1"}),
        incarnation: 0,
        heartbeat_interval_ms: 0,
        stale_threshold_ms: 0,
    }
}

pub async fn registered_worker_is_active_and_listed(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    let now = clock.now_ms();
    let rec = s
        .register_worker(&registration("w2", 10, &["build"]))
        .await
        .unwrap();
    assert_eq!(rec.status, WorkerStatus::Active);
    assert_eq!((rec.registered_at, rec.last_heartbeat), (now, now));
    assert_eq!(rec.capacity, WorkerCapacity::with_max(10));
    assert_eq!(rec.capabilities.supported_task_types, ["build"]);
    assert_eq!(rec.metadata, json!({"region": "us-east-1"}));
    s.register_worker(&registration("w1", 5, &[]))
        .await
        .unwrap();
    let ids: Vec<_> = s
        .list_workers()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.worker_id)
        .collect();
    assert_eq!(ids, ["w1", "w2"]);
    assert_eq!(s.get_worker("w2").await.unwrap(), Some(rec));
    assert_eq!(s.get_worker("nope").await.unwrap(), None);
}

pub async fn status_and_partial_capacity_updates_apply(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    s.register_worker(&registration("w1", 10, &[]))
        .await
        .unwrap();
    let up = CapacityUpdate {
        active_tasks: Some(3),
        ..Default::default()
    };
    assert!(
        s.update_worker_status("w1", None, WorkerStatus::Busy, Some(&up))
            .await
            .unwrap()
    );
    let w = s.get_worker("w1").await.unwrap().unwrap();
    assert_eq!(w.status, WorkerStatus::Busy);
    assert_eq!(
        w.capacity,
        WorkerCapacity {
            max_tasks: 10,
            active_tasks: 3,
            available_slots: 7
        }
    );
    assert!(
        s.update_worker_status("w1", None, WorkerStatus::Draining, None)
            .await
            .unwrap()
    );
    let w = s.get_worker("w1").await.unwrap().unwrap();
    assert_eq!(w.status, WorkerStatus::Draining);
    assert_eq!(
        w.capacity.available_slots, 7,
        "no capacity update leaves capacity alone"
    );
    assert!(
        !s.update_worker_status("ghost", None, WorkerStatus::Active, None)
            .await
            .unwrap()
    );
}

pub async fn heartbeat_refreshes_age_and_revives_offline_worker(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    s.register_worker(&registration("w1", 4, &[]))
        .await
        .unwrap();
    clock.advance_ms(5000);
    let info = HeartbeatInfo {
        load: Some(0.5),
        memory_bytes: Some(1 << 20),
        active_tasks: Some(1),
        extra: json!({"healthStatus": "healthy"}),
        seal: None,
    };
    assert!(s.record_heartbeat("w1", 0, &info).await.unwrap());
    let w = s.get_worker("w1").await.unwrap().unwrap();
    assert_eq!(w.last_heartbeat, clock.now_ms());
    assert_eq!(w.heartbeat, info);
    assert_eq!(w.capacity.active_tasks, 1);
    assert_eq!(w.capacity.available_slots, 3);
    s.update_worker_status("w1", None, WorkerStatus::Offline, None)
        .await
        .unwrap();
    s.record_heartbeat("w1", 0, &HeartbeatInfo::default())
        .await
        .unwrap();
    assert_eq!(
        s.get_worker("w1").await.unwrap().unwrap().status,
        WorkerStatus::Active
    );
    assert!(
        !s.record_heartbeat("ghost", 0, &HeartbeatInfo::default())
            .await
            .unwrap()
    );
}

pub async fn mark_stale_takes_only_old_heartbeats_offline(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    s.register_worker(&registration("old1", 1, &[]))
        .await
        .unwrap();
    s.register_worker(&registration("old2", 1, &[]))
        .await
        .unwrap();
    clock.advance_ms(60_000);
    s.register_worker(&registration("fresh", 1, &[]))
        .await
        .unwrap();
    clock.advance_ms(60_000);
    assert_eq!(
        s.mark_stale_workers(120_000).await.unwrap(),
        ["old1", "old2"]
    );
    assert_eq!(
        s.get_worker("old1").await.unwrap().unwrap().status,
        WorkerStatus::Offline
    );
    assert_eq!(
        s.get_worker("fresh").await.unwrap().unwrap().status,
        WorkerStatus::Active
    );
    assert!(
        s.mark_stale_workers(120_000).await.unwrap().is_empty(),
        "already offline is not reported again"
    );
}

pub async fn task_outcomes_accumulate_worker_stats(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    s.register_worker(&registration("w1", 1, &[]))
        .await
        .unwrap();
    for (ok, ms) in [(true, 100), (true, 300), (false, 200), (true, 400)] {
        assert!(s.record_task_outcome("w1", ok, ms).await.unwrap());
    }
    let st = s.get_worker("w1").await.unwrap().unwrap().stats;
    assert_eq!(
        st,
        WorkerStats {
            completed: 3,
            failed: 1,
            total_duration_ms: 1000
        }
    );
    assert_eq!(st.success_rate(), 0.75);
    assert_eq!(st.average_duration_ms(), 250.0);
    s.register_worker(&registration("w1", 2, &[]))
        .await
        .unwrap();
    assert_eq!(
        s.get_worker("w1").await.unwrap().unwrap().stats.completed,
        3,
        "re-registration keeps history"
    );
    assert!(!s.record_task_outcome("ghost", true, 1).await.unwrap());
}

pub async fn deregistered_worker_is_gone(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    s.register_worker(&registration("w1", 1, &[]))
        .await
        .unwrap();
    assert!(s.deregister_worker("w1").await.unwrap());
    assert!(s.get_worker("w1").await.unwrap().is_none());
    assert!(s.list_workers().await.unwrap().is_empty());
    assert!(!s.deregister_worker("w1").await.unwrap());
}
