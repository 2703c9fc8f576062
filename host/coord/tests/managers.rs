//! LockManager, WorkerRegistry and Queue behaviour above the store contract.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sentinel_coord::config::{LockConfig, QueueConfig, RegistryConfig};
use sentinel_coord::locks::LockManager;
use sentinel_coord::model::*;
use sentinel_coord::queue::Queue;
use sentinel_coord::registry::WorkerRegistry;

use common::set_load;
use sentinel_coord::{ManualClock, SqliteStore, Store, WorkerError, clock};

fn store() -> (Arc<dyn Store>, Arc<ManualClock>) {
    let c = ManualClock::new();
    (Arc::new(SqliteStore::open_temporary(c.clone()).unwrap()), c)
}

#[tokio::test]
async fn lock_manager_retries_then_gives_up_on_a_held_lock() {
    let (s, _) = store();
    let cfg = LockConfig {
        retry_attempts: 3,
        retry_delay_ms: 10,
        ..Default::default()
    };
    let locks = LockManager::new(s.clone(), cfg);
    let held = locks
        .acquire("task-1", "w1", serde_json::json!({"pid": 1}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        held.expires_at - held.acquired_at,
        300_000,
        "seed default TTL is 300 s"
    );
    let started = Instant::now();
    assert!(
        locks
            .acquire("task-1", "w2", serde_json::Value::Null)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(20),
        "two delays between three attempts"
    );
    locks.release(&held).await.unwrap();
    assert!(!locks.is_locked("task-1").await.unwrap());
    assert_eq!(locks.release(&held).await.unwrap_err().code(), "NOT_FOUND");
}

#[tokio::test]
async fn lock_manager_acquires_once_the_holder_releases_during_retries() {
    let (s, _) = store();
    let cfg = LockConfig {
        retry_attempts: 50,
        retry_delay_ms: 5,
        ..Default::default()
    };
    let locks = LockManager::new(s.clone(), cfg);
    let held = locks.try_acquire("k", "w1", 60_000).await.unwrap().unwrap();
    let l2 = locks.clone();
    let waiter = tokio::spawn(async move { l2.acquire("k", "w2", serde_json::Value::Null).await });
    tokio::time::sleep(Duration::from_millis(30)).await;
    locks.release(&held).await.unwrap();
    let got = waiter
        .await
        .unwrap()
        .unwrap()
        .expect("acquired after release");
    assert!(got.token > held.token);
    assert_eq!(locks.list(Some("w2"), false).await.unwrap().len(), 1);
}

#[tokio::test]
async fn lock_managers_of_different_tenants_do_not_see_each_other() {
    let (s, _) = store();
    let a = LockManager::new(s.clone(), LockConfig::default()).for_tenant("a");
    let b = LockManager::new(s.clone(), LockConfig::default()).for_tenant("b");
    a.try_acquire("k", "w", 1000).await.unwrap().unwrap();
    assert!(!b.is_locked("k").await.unwrap());
    assert!(b.list(None, true).await.unwrap().is_empty());
}

fn reg(id: &str, max: u32, types: &[&str]) -> WorkerRegistration {
    WorkerRegistration {
        worker_id: id.into(),
        hostname: "h".into(),
        capacity: WorkerCapacity::with_max(max),
        capabilities: WorkerCapabilities {
            cpu_cores: 2,
            memory_mb: 1024,
            supported_task_types: types.iter().map(|s| s.to_string()).collect(),
        },
        metadata: serde_json::Value::Null,
        incarnation: 0,
        heartbeat_interval_ms: 0,
        stale_threshold_ms: 0,
    }
}

#[tokio::test]
async fn registry_health_follows_heartbeat_age_thresholds() {
    let (s, clock) = store();
    let cfg = RegistryConfig {
        health: HealthThresholds {
            healthy_ms: 10_000,
            degraded_ms: 15_000,
        },
    };
    let r = WorkerRegistry::new(s, cfg);
    r.register(&reg("w", 2, &[])).await.unwrap();
    assert_eq!(r.health("w").await.unwrap(), HealthState::Healthy);
    clock.advance_ms(10_000);
    assert_eq!(r.health("w").await.unwrap(), HealthState::Degraded);
    clock.advance_ms(5_000);
    assert_eq!(r.health("w").await.unwrap(), HealthState::Unhealthy);
    r.heartbeat("w", 0, &HeartbeatInfo::default())
        .await
        .unwrap();
    assert_eq!(r.health("w").await.unwrap(), HealthState::Healthy);
}

#[tokio::test]
async fn registry_discovery_filters_combine() {
    let (s, clock) = store();
    let r = WorkerRegistry::new(s, RegistryConfig::default());
    r.register(&reg("builder", 4, &["build"])).await.unwrap();
    r.register(&reg("tester", 2, &["test"])).await.unwrap();
    r.register(&reg("any", 1, &[])).await.unwrap();
    set_load(&r, "tester", WorkerStatus::Busy, 2).await;
    let ids = |v: Vec<WorkerRecord>| v.into_iter().map(|w| w.worker_id).collect::<Vec<_>>();
    let build = WorkerFilter {
        task_type: Some("build".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(r.list(&build).await.unwrap()),
        ["any", "builder"],
        "an empty type list means any type"
    );
    let free = WorkerFilter {
        has_capacity: Some(true),
        ..Default::default()
    };
    assert_eq!(ids(r.list(&free).await.unwrap()), ["any", "builder"]);
    let busy = WorkerFilter {
        statuses: Some(vec![WorkerStatus::Busy]),
        ..Default::default()
    };
    assert_eq!(ids(r.list(&busy).await.unwrap()), ["tester"]);
    let roomy = WorkerFilter {
        min_available_slots: Some(2),
        ..Default::default()
    };
    assert_eq!(ids(r.list(&roomy).await.unwrap()), ["builder"]);
    clock.advance_ms(11 * 60_000);
    r.heartbeat("any", 0, &HeartbeatInfo::default())
        .await
        .unwrap();
    let healthy = WorkerFilter {
        health: Some(vec![HealthState::Healthy]),
        ..Default::default()
    };
    assert_eq!(ids(r.list(&healthy).await.unwrap()), ["any"]);
}

#[tokio::test]
async fn registry_errors_name_the_worker() {
    let (s, _) = store();
    let r = WorkerRegistry::new(s, RegistryConfig::default());
    let err = r
        .update_status("ghost", WorkerStatus::Active, None)
        .await
        .unwrap_err();
    assert!(matches!(&err, WorkerError::NotFound { worker_id } if worker_id == "ghost"));
    assert_eq!(err.worker_id(), "ghost");
    assert_eq!(
        r.deregister("ghost").await.unwrap_err().worker_id(),
        "ghost"
    );
}

#[tokio::test]
async fn registry_performance_summary_reports_success_rate_and_average() {
    let (s, _) = store();
    let r = WorkerRegistry::new(s, RegistryConfig::default());
    r.register(&reg("w", 2, &[])).await.unwrap();
    r.record_task_completion("w", true, 5000).await.unwrap();
    r.record_task_completion("w", false, 3000).await.unwrap();
    let p = r.performance_summary().await.unwrap().remove(0);
    assert_eq!(
        (p.completed, p.failed, p.success_rate, p.avg_duration_ms),
        (1, 1, 0.5, 4000.0)
    );
}

#[tokio::test]
async fn queue_applies_configured_defaults_and_tenant() {
    let (s, _) = store();
    let cfg = QueueConfig {
        retry: RetryPolicy {
            max_retries: 7,
            ..Default::default()
        },
        default_timeout_ms: 1234,
        ..Default::default()
    };
    let q = Queue::new(s, cfg).for_tenant("acme");
    let id = q.submit(NewTask::new("job", "x")).await.unwrap();
    let t = q.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (t.tenant.as_str(), t.max_retries, t.timeout_ms),
        ("acme", 7, 1234)
    );
    let explicit = q
        .submit(
            NewTask::new("job", "y")
                .with_max_retries(1)
                .with_timeout_ms(1),
        )
        .await
        .unwrap();
    let t = q.get(&explicit).await.unwrap().unwrap();
    assert_eq!((t.max_retries, t.timeout_ms), (1, 1));
    assert_eq!(
        q.result(&id).await.unwrap(),
        None,
        "no result before completion"
    );
}

#[tokio::test]
async fn queue_failure_path_ends_in_dead_letters_with_reason() {
    let (s, clock) = store();
    let cfg = QueueConfig {
        retry: RetryPolicy {
            max_retries: 1,
            jitter: 0.0,
            ..Default::default()
        },
        ..Default::default()
    };
    let q = Queue::new(s, cfg);
    let id = q.submit(NewTask::new("job", "x")).await.unwrap();
    let t = q
        .claim(&q.claim_request("w", None, 1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        q.fail(&t, "disk full", true).await.unwrap(),
        TaskState::Failed
    );
    clock.advance_ms(1000);
    let t = q
        .claim(&q.claim_request("w", None, 1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        q.fail(&t, "disk full", true).await.unwrap(),
        TaskState::Dead
    );
    let dlq = q.dead_letters(10).await.unwrap();
    assert_eq!(dlq.len(), 1);
    assert!(dlq[0].error.as_deref().unwrap().contains("disk full"));
    assert!(q.retry_dead(&id).await.unwrap());
    assert_eq!(q.stats().await.unwrap().pending, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_worker_is_woken_by_a_submit_not_by_polling() {
    let s: Arc<dyn Store> = Arc::new(SqliteStore::open_temporary(clock::system()).unwrap());
    // A long idle poll: only the notification can wake the worker quickly.
    let q = Queue::new(
        s,
        QueueConfig {
            idle_poll_ms: 60_000,
            ..Default::default()
        },
    );
    let worker = {
        let q = q.clone();
        tokio::spawn(async move {
            let req = q.claim_request("w", None, 8);
            let got = q.next_batch(&req, Duration::from_secs(30)).await.unwrap();
            (Instant::now(), got)
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let submitted = Instant::now();
    q.submit(NewTask::new("job", "wake")).await.unwrap();
    let (woke, got) = worker.await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(
        woke - submitted < Duration::from_millis(500),
        "woken in {:?}",
        woke - submitted
    );
}

#[tokio::test]
async fn backoff_policy_grows_exponentially_caps_and_jitters_below_the_cap() {
    let p = RetryPolicy::default();
    assert_eq!(
        [1, 2, 3, 4].map(|a| p.base_delay_for(a)),
        [1000, 2000, 4000, 8000]
    );
    assert_eq!(p.base_delay_for(30), 60_000);
    for attempt in 1..10 {
        let d = p.delay_for(attempt);
        let base = p.base_delay_for(attempt);
        assert!(
            d <= base && d >= base / 2,
            "attempt {attempt}: {d} not in [{}, {base}]",
            base / 2
        );
    }
}
