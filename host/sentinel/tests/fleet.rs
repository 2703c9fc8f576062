//! End-to-end: real `sentinel worker` processes sharing one SQLite store.
//!
//! The killed worker: its running tasks are requeued within the stale threshold plus one
//! check period and every task completes exactly once. The drained worker: SIGTERM lets its
//! running tasks finish and loses or repeats nothing.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_loses_nothing_and_completes_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("fleet.db").display());
    let w1 = spawn_worker("w1", &store, dir.path(), 8);
    let w2 = spawn_worker("w2", &store, dir.path(), 8);
    let w3 = spawn_worker("w3", &store, dir.path(), 8);

    // 500 tasks, most of them sleeps so that work is in flight when the worker dies.
    let mut tasks = Vec::new();
    for i in 0..500 {
        tasks.push(match i % 5 {
            0 => json!({"type": "sha256", "payload": {"data": format!("task {i}")}}),
            1 => json!({"type": "echo", "payload": {"n": i}}),
            _ => json!({"type": "sleep", "payload": {"ms": 20 + (i % 7) * 15}}),
        });
    }
    let mut ids = Vec::new();
    for chunk in tasks.chunks(100) {
        let r = w1
            .client
            .post("/v1/tasks", &json!({ "tasks": chunk }))
            .await
            .unwrap();
        ids.extend(
            r["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string()),
        );
    }
    assert_eq!(ids.len(), 500);

    // Kill w3 while it runs tasks.
    let running_on_w3 = wait_until_running_on(&w1.client, "w3").await;
    w3.signal(libc::SIGKILL);
    let killed_at = Instant::now();

    // Its tasks run again elsewhere (or are done) within stale threshold + one check period.
    let orphans: BTreeSet<String> = running_on_w3.into_iter().collect();
    until(
        Duration::from_secs(60),
        "w3's tasks to be picked up again",
        async || {
            let tasks = all_tasks(&w1.client).await;
            let picked_up = tasks
                .iter()
                .filter(|t| orphans.contains(t["id"].as_str().unwrap()))
                .all(|t| {
                    t["status"] == "completed"
                        || (t["status"] == "running" && t["worker_id"] != "w3")
                        || t["status"] == "pending"
                });
            picked_up.then_some(())
        },
    )
    .await;
    let recovered_after = killed_at.elapsed();
    eprintln!(
        "w3's tasks requeued {recovered_after:?} after SIGKILL (stale threshold {STALE_MS} ms + check {CHECK_MS} ms)"
    );
    // Generous margin for a loaded 2-core machine; the figure itself is printed above.
    assert!(
        recovered_after < Duration::from_millis(STALE_MS + CHECK_MS) + Duration::from_secs(5),
        "recovery took {recovered_after:?}"
    );

    let tasks = until(
        Duration::from_secs(120),
        "all 500 tasks to complete",
        async || {
            let tasks = all_tasks(&w1.client).await;
            tasks
                .iter()
                .all(|t| t["status"] == "completed")
                .then_some(tasks)
        },
    )
    .await;
    assert_eq!(tasks.len(), 500);
    let submitted: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let completed: BTreeSet<&str> = tasks.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(submitted, completed);
    for t in &tasks {
        if t["type"] == "sha256" {
            assert_eq!(t["output"]["sha256"].as_str().unwrap().len(), 64);
        }
    }
    // Exactly once: every applied completion is counted on the worker that made it (the
    // killed one included), and a completion with a stale fencing token is refused.
    assert_eq!(applied_completions(&w1.client).await, 500);
    let workers = w1.client.get("/v1/workers").await.unwrap();
    let w3_record = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["worker_id"] == "w3")
        .unwrap()
        .clone();
    assert_eq!(
        w3_record["status"], "offline",
        "the killed worker is marked offline"
    );
    drop((w2, w3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_worker_without_losing_or_repeating_a_task() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("drain.db").display());
    let w1 = spawn_worker("d1", &store, dir.path(), 4);
    let mut w2 = spawn_worker("d2", &store, dir.path(), 4);
    let tasks: Vec<_> = (0..60)
        .map(|_| json!({"type": "sleep", "payload": {"ms": 150}}))
        .collect();
    w1.client
        .post("/v1/tasks", &json!({ "tasks": tasks }))
        .await
        .unwrap();

    wait_until_running_on(&w1.client, "d2").await;
    w2.signal(libc::SIGTERM);
    let status = tokio::task::spawn_blocking(move || {
        let s = w2.child.wait().unwrap();
        (s, w2)
    })
    .await
    .unwrap();
    assert!(
        status.0.success(),
        "a drained worker exits 0, got {:?}",
        status.0
    );

    let tasks = until(
        Duration::from_secs(120),
        "all tasks to complete",
        async || {
            let tasks = all_tasks(&w1.client).await;
            tasks
                .iter()
                .all(|t| t["status"] == "completed")
                .then_some(tasks)
        },
    )
    .await;
    assert_eq!(tasks.len(), 60);
    // Nothing ran twice: a task requeued from d2 would be on its second attempt.
    assert!(tasks.iter().all(|t| t["attempt"] == 1), "{tasks:?}");
    assert!(
        tasks.iter().any(|t| t["worker_id"] == "d2"),
        "d2 did work before draining"
    );
    // The drained worker deregistered.
    let workers = w1.client.get("/v1/workers").await.unwrap();
    assert!(
        workers["workers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["worker_id"] != "d2"),
        "{workers}"
    );
}

/// A supervisor restarts a killed worker under the same id at once. The new process's
/// heartbeat must not keep the dead process's leases alive: its registration requeues them
/// (attempt + 1, cause: the restart), long before their 120 s deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_restarted_under_the_same_id_requeues_its_previous_runs_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("restart.db").display());
    let first = spawn_worker("w1", &store, dir.path(), 4);
    let mut ids = Vec::new();
    for _ in 0..4 {
        let r = first
            .client
            .post(
                "/v1/tasks",
                &json!({"type": "sleep", "payload": {"ms": 3000}, "timeout_ms": 120_000}),
            )
            .await
            .unwrap();
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    let running = wait_until_running_on(&first.client, "w1").await;
    assert!(!running.is_empty());
    first.signal(libc::SIGKILL);
    let second = spawn_worker("w1", &store, dir.path(), 4);
    let restarted_at = Instant::now();
    let tasks = until(
        Duration::from_secs(60),
        "every task to complete on the new process",
        async || {
            let tasks = all_tasks(&second.client).await;
            (tasks.len() == 4 && tasks.iter().all(|t| t["status"] == "completed")).then_some(tasks)
        },
    )
    .await;
    eprintln!(
        "all tasks completed {:?} after the restart",
        restarted_at.elapsed()
    );
    // Well before the 120 s deadline (and the reaper): the restart requeued them.
    assert!(restarted_at.elapsed() < Duration::from_secs(60));
    for t in tasks
        .iter()
        .filter(|t| running.contains(&t["id"].as_str().unwrap().to_string()))
    {
        assert_eq!(t["attempt"], 2, "{t}");
    }
}
