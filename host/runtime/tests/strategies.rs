//! Strategy plugins: the seed's weighted score as WASM, and a broken strategy rejected.

mod support;

use sentinel_runtime::{Health, HostPolicy, SandboxError, WorkerStatus, WorkerView};
use serde_json::json;
use support::*;

fn worker(id: &str, max: u32, active: u32, success: f64, avg_ms: f64) -> WorkerView {
    WorkerView {
        id: id.into(),
        status: WorkerStatus::Active,
        health: Health::Healthy,
        max_slots: max,
        active_slots: active,
        available_slots: max - active,
        cpu_cores: 2,
        memory_mb: 1024,
        task_types: vec![],
        labels: vec![],
        success_rate: success,
        avg_duration_ms: avg_ms,
        heartbeat_age_ms: 100,
    }
}

#[tokio::test]
async fn weighted_score_prefers_free_reliable_fast_workers() {
    let rt = runtime(HostPolicy::default());
    let s = strategy(&rt, examples_dir(), "weighted-score");
    let workers = vec![
        worker("busy", 10, 9, 1.0, 100.0),
        worker("best", 10, 1, 0.99, 100.0),
        worker("flaky", 10, 1, 0.2, 100.0),
        worker("slow", 10, 1, 0.99, 1000.0),
    ];
    let t = task("echo", json!({}));
    assert_eq!(s.select_worker(&rt, &t, &workers).await.unwrap(), Some(1));
}

#[tokio::test]
async fn weighted_score_skips_full_and_unhealthy_workers() {
    let rt = runtime(HostPolicy::default());
    let s = strategy(&rt, examples_dir(), "weighted-score");
    let mut sick = worker("sick", 10, 0, 1.0, 1.0);
    sick.health = Health::Unhealthy;
    let workers = vec![worker("full", 4, 4, 1.0, 1.0), sick];
    assert_eq!(
        s.select_worker(&rt, &task("echo", json!({})), &workers)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn next_task_takes_the_highest_priority_supported_task() {
    let rt = runtime(HostPolicy::default());
    let s = strategy(&rt, examples_dir(), "least-active");
    let mut w = worker("w", 4, 0, 1.0, 1.0);
    w.task_types = vec!["echo".into()];
    let mut tasks = vec![
        task("echo", json!(1)),
        task("sleep", json!(2)),
        task("echo", json!(3)),
    ];
    tasks[1].priority = 100;
    tasks[2].priority = 5;
    assert_eq!(s.next_task(&rt, &w, &tasks).await.unwrap(), Some(2));
}

#[tokio::test]
async fn an_out_of_range_answer_is_rejected() {
    let rt = runtime(HostPolicy::default());
    let s = strategy(&rt, hostile_dir(), "bad-strategy");
    let workers = vec![worker("a", 1, 0, 1.0, 1.0)];
    match s
        .select_worker(&rt, &task("echo", json!({})), &workers)
        .await
    {
        Err(SandboxError::InvalidOutput(m)) => assert!(m.contains("out of range"), "{m}"),
        other => panic!("expected invalid output, got {other:?}"),
    }
    let err = s
        .next_task(&rt, &workers[0], &[task("echo", json!({}))])
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::InvalidOutput(_)));
}

#[tokio::test]
async fn a_strategy_chooses_among_a_thousand_workers() {
    let rt = runtime(HostPolicy::default());
    let s = strategy(&rt, examples_dir(), "weighted-score");
    let mut workers: Vec<WorkerView> = (0..1000)
        .map(|i| worker(&format!("w{i}"), 10, 5, 0.9, 100.0))
        .collect();
    workers[777] = worker("idle", 10, 0, 1.0, 50.0);
    assert_eq!(
        s.select_worker(&rt, &task("echo", json!({})), &workers)
            .await
            .unwrap(),
        Some(777)
    );
}

#[tokio::test]
async fn an_executor_is_not_accepted_as_a_strategy() {
    let rt = runtime(HostPolicy::default());
    let mut m = manifest(examples_dir(), "echo");
    m.kind = sentinel_runtime::PluginKind::Strategy;
    m.task_types.clear();
    let err = rt
        .load(m, &wasm(examples_dir(), "echo"))
        .err()
        .expect("must be rejected");
    assert!(
        err.to_string()
            .contains("does not implement world `sentinel:plugin/strategy"),
        "{err}"
    );
}

#[tokio::test]
async fn a_strategy_sees_standing_clocks_and_seeded_randomness_so_its_answer_is_reproducible() {
    let rt = runtime(HostPolicy::default());
    let s = strategy(&rt, hostile_dir(), "bad-strategy");
    let workers: Vec<WorkerView> = (0..1000)
        .map(|i| worker(&format!("w{i}"), 10, 5, 0.9, 100.0))
        .collect();
    let task = task("clock", json!({}));
    let first = s.select_worker(&rt, &task, &workers).await.unwrap();
    assert!(first.is_some());
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        assert_eq!(s.select_worker(&rt, &task, &workers).await.unwrap(), first);
    }
}
