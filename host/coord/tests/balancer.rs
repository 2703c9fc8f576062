//! LoadBalancer strategies, the Strategy seam and its guard rails.

mod common;

use std::sync::Arc;

use sentinel_coord::balancer::*;
use sentinel_coord::config::RegistryConfig;
use sentinel_coord::model::*;
use sentinel_coord::registry::WorkerRegistry;

use common::set_load;
use sentinel_coord::{ManualClock, SqliteStore, Store};

fn view(id: &str, max: u32, active: u32) -> WorkerView {
    WorkerView {
        worker_id: id.into(),
        status: WorkerStatus::Active,
        health: HealthState::Healthy,
        max_tasks: max,
        active_tasks: active,
        available_slots: max - active,
        supported_task_types: vec![],
        cpu_cores: 4,
        memory_mb: 1024,
        completed: 0,
        failed: 0,
        success_rate: 1.0,
        avg_duration_ms: 0.0,
        load: None,
    }
}

fn task(t: &str) -> TaskInfo {
    TaskInfo {
        id: "t1".into(),
        tenant: DEFAULT_TENANT.into(),
        task_type: t.into(),
        priority: 0,
        affinity: Affinity::default(),
        estimated_duration_ms: None,
        metadata: Default::default(),
    }
}

#[test]
fn weighted_score_matches_the_seed_003_example() {
    let mut a = view("A", 10, 2);
    a.success_rate = 0.9;
    a.avg_duration_ms = 5000.0;
    let mut b = view("B", 5, 1);
    b.success_rate = 1.0;
    b.avg_duration_ms = 3000.0;
    assert!((a.weighted_score() - 0.71).abs() < 1e-9);
    assert!((b.weighted_score() - 0.7667).abs() < 1e-3);
    assert_eq!(
        Weighted.select(&task("x"), &[a, b]),
        Some(1),
        "worker B is selected"
    );
}

#[test]
fn builtin_strategies_pick_as_documented() {
    let ws = [view("busy", 4, 3), view("idle", 4, 0), view("big", 16, 4)];
    let t = task("build");
    assert_eq!(LeastLoaded.select(&t, &ws), Some(1));
    assert_eq!(CapacityBased.select(&t, &ws), Some(2));
    let rr = RoundRobin::default();
    assert_eq!(
        [0, 1, 2, 3].map(|_| rr.select(&t, &ws)),
        [Some(0), Some(1), Some(2), Some(0)]
    );
    let r = RandomChoice.select(&t, &ws).unwrap();
    assert!(r < 3);
    let mut special = view("specialist", 4, 2);
    special.supported_task_types = vec!["build".into()];
    let mut general = view("generalist", 4, 0);
    general.supported_task_types = vec!["build".into(), "test".into(), "deploy".into()];
    assert_eq!(CapabilityMatch.select(&t, &[general, special]), Some(1));
    let aff = AffinityStrategy::default();
    let first = aff.select(&t, &ws).unwrap();
    assert_eq!(
        aff.select(&t, &[view("other", 4, 0), ws[first].clone()]),
        Some(1),
        "same type goes back to the warm worker"
    );
    for k in StrategyKind::ALL {
        assert_eq!(StrategyKind::parse(k.as_str()), Some(k));
        assert!(k.build().select(&t, &ws).is_some_and(|i| i < ws.len()));
        assert_eq!(k.build().select(&t, &[]), None);
    }
    assert_eq!(
        StrategyKind::parse("least-loaded"),
        Some(StrategyKind::LeastLoaded)
    );
}

#[test]
fn adaptive_switches_to_least_loaded_under_pressure() {
    let ws = [view("a", 4, 4), view("b", 4, 3), view("c", 4, 4)];
    assert_eq!(Adaptive::default().select(&task("x"), &ws), Some(1));
}

struct Broken(usize);
impl Strategy for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    fn select(&self, _: &TaskInfo, _: &[WorkerView]) -> Option<usize> {
        Some(self.0)
    }
}

struct Panicky;
impl Strategy for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }
    fn select(&self, _: &TaskInfo, _: &[WorkerView]) -> Option<usize> {
        panic!("plugin bug")
    }
}

async fn setup() -> (Arc<dyn Store>, WorkerRegistry, LoadBalancer) {
    let s: Arc<dyn Store> = Arc::new(SqliteStore::open_temporary(ManualClock::new()).unwrap());
    let r = WorkerRegistry::new(s.clone(), RegistryConfig::default());
    let lb = LoadBalancer::new(s.clone(), r.clone(), StrategyKind::LeastLoaded);
    (s, r, lb)
}

fn reg(id: &str, max: u32, types: &[&str]) -> WorkerRegistration {
    WorkerRegistration {
        worker_id: id.into(),
        hostname: "h".into(),
        capacity: WorkerCapacity::with_max(max),
        capabilities: WorkerCapabilities {
            supported_task_types: types.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
        metadata: serde_json::Value::Null,
        incarnation: 0,
        heartbeat_interval_ms: 0,
        stale_threshold_ms: 0,
    }
}

#[tokio::test]
async fn out_of_range_or_panicking_strategy_falls_back_to_a_builtin() {
    let (_, r, lb) = setup().await;
    r.register(&reg("a", 2, &[])).await.unwrap();
    r.register(&reg("b", 2, &[])).await.unwrap();
    set_load(&r, "a", WorkerStatus::Busy, 1).await;
    lb.set_strategy(Arc::new(Broken(99)));
    assert_eq!(lb.strategy_name(), "broken");
    let w = lb.select_worker(&task("x"), None).await.unwrap().unwrap();
    assert_eq!(w.worker_id, "b", "fallback is least loaded");
    lb.set_strategy(Arc::new(Panicky));
    assert_eq!(
        lb.select_worker(&task("x"), None)
            .await
            .unwrap()
            .unwrap()
            .worker_id,
        "b"
    );
    lb.set_strategy(Arc::new(Broken(0)));
    assert_eq!(
        lb.select_worker(&task("x"), None)
            .await
            .unwrap()
            .unwrap()
            .worker_id,
        "a",
        "in-range answers are obeyed"
    );
}

#[tokio::test]
async fn candidates_are_filtered_before_the_strategy_sees_them() {
    let (s, r, lb) = setup().await;
    r.register(&reg("full", 1, &[])).await.unwrap();
    set_load(&r, "full", WorkerStatus::Active, 1).await;
    r.register(&reg("draining", 4, &[])).await.unwrap();
    r.update_status("draining", WorkerStatus::Draining, None)
        .await
        .unwrap();
    r.register(&reg("tester", 4, &["test"])).await.unwrap();
    r.register(&reg("builder", 4, &["build"])).await.unwrap();
    r.register(&reg("builder2", 4, &["build"])).await.unwrap();
    lb.set_builtin(StrategyKind::RoundRobin);
    for _ in 0..4 {
        let w = lb
            .select_worker(&task("build"), None)
            .await
            .unwrap()
            .unwrap();
        assert!(w.worker_id.starts_with("builder"), "{}", w.worker_id);
    }
    let mut t = task("build");
    t.affinity.excluded_workers = vec!["builder".into()];
    assert_eq!(
        lb.select_worker(&t, None).await.unwrap().unwrap().worker_id,
        "builder2"
    );
    t.affinity = Affinity {
        required_worker: Some("tester".into()),
        ..Default::default()
    };
    assert!(
        lb.select_worker(&t, None).await.unwrap().is_none(),
        "the required worker cannot run builds"
    );
    let prev = s
        .enqueue(&[NewTask::new("build", "p").with_id("prev")])
        .await
        .unwrap();
    let c = s
        .claim(&ClaimRequest {
            worker_id: "builder2".into(),
            task_types: None,
            tenants: None,
            limit: 1,
            lease_ms: 1000,
            incarnation: 0,
        })
        .await
        .unwrap();
    assert_eq!(c[0].id, prev[0]);
    t.affinity = Affinity {
        same_worker_as: Some("prev".into()),
        ..Default::default()
    };
    assert_eq!(
        lb.select_worker(&t, None).await.unwrap().unwrap().worker_id,
        "builder2"
    );
}

#[tokio::test]
async fn pull_gives_the_highest_priority_runnable_task_and_busy_workers_defer() {
    let (s, r, lb) = setup().await;
    r.register(&reg("idle", 4, &[])).await.unwrap();
    r.register(&reg("loaded", 4, &[])).await.unwrap();
    set_load(&r, "loaded", WorkerStatus::Busy, 3).await;
    s.enqueue(&[
        NewTask::new("x", "low").with_priority(1),
        NewTask::new("x", "high").with_priority(9),
    ])
    .await
    .unwrap();
    let pending = s
        .list_tasks(&TaskFilter {
            state: Some(TaskState::Pending),
            ..Default::default()
        })
        .await
        .unwrap();
    let got = lb.get_next_task("idle", &pending).await.unwrap().unwrap();
    assert_eq!(got.payload, b"high");
    assert!(
        lb.get_next_task("loaded", &pending)
            .await
            .unwrap()
            .is_none(),
        "the loaded worker leaves it to the idle one"
    );
    assert!(lb.get_next_task("ghost", &pending).await.is_err());
}

#[tokio::test]
async fn load_distribution_and_rebalance_of_stranded_work() {
    let (s, r, lb) = setup().await;
    r.register(&reg("a", 4, &[])).await.unwrap();
    r.register(&reg("b", 4, &[])).await.unwrap();
    set_load(&r, "a", WorkerStatus::Busy, 2).await;
    let d = lb.load_distribution().await.unwrap();
    assert_eq!(
        (d.total_capacity, d.utilized_capacity, d.utilization_percent),
        (8, 2, 25.0)
    );
    assert_eq!(d.worker_loads[0].utilization_percent, 50.0);

    s.enqueue(&[NewTask::new("x", "1"), NewTask::new("x", "2")])
        .await
        .unwrap();
    s.claim(&ClaimRequest {
        worker_id: "a".into(),
        task_types: None,
        tenants: None,
        limit: 2,
        lease_ms: 3_600_000,
        incarnation: 0,
    })
    .await
    .unwrap();
    let nothing = lb.rebalance().await.unwrap();
    assert_eq!(nothing.tasks_moved, 0, "healthy workers keep their tasks");
    r.update_status("a", WorkerStatus::Offline, None)
        .await
        .unwrap();
    let moved = lb.rebalance().await.unwrap();
    assert_eq!(moved.tasks_moved, 2);
    assert!(moved.after_utilization < moved.before_utilization);
    assert_eq!(s.queue_stats(None).await.unwrap().pending, 2);
}
