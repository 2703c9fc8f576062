//! End-to-end on PostgreSQL: several `sentinel worker` processes share one server; one worker
//! is killed with SIGKILL and the server itself restarts mid-run; every task still completes
//! exactly once.
//!
//! Needs `SENTINEL_TEST_POSTGRES_URL` (`.ci/run` sets it) and the right to restart the local
//! cluster with `pg_ctlcluster` (root on these machines). It lives in its own test binary
//! because restarting the server would disturb any other PostgreSQL test running beside it.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const TASKS: usize = 5_000;

fn restart_postgres() {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a local PostgreSQL cluster under /etc/postgresql")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("a cluster version");
    let status = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()
        .expect("running pg_ctlcluster");
    assert!(status.success(), "restarting PostgreSQL failed: {status:?}");
}

async fn completed(c: &sentinel::client::Client) -> Option<u64> {
    c.get("/cluster/health").await.ok()?["tasks_completed"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_on_postgres_survives_a_killed_worker_and_a_server_restart() {
    // Owns the schema: dropped (with all the test's data) at the end.
    let (_owner, store) = fresh_postgres_store();
    let dir = tempfile::tempdir().unwrap();
    let w1 = spawn_worker("pg1", &store, dir.path(), 16);
    let w2 = spawn_worker("pg2", &store, dir.path(), 16);
    let w3 = spawn_worker("pg3", &store, dir.path(), 16);

    let tasks: Vec<_> = (0..TASKS)
        .map(|i| match i % 10 {
            0..=3 => json!({"type": "echo", "payload": i}),
            4..=6 => json!({"type": "sha256", "payload": {"data": format!("{i}")}}),
            // Enough sleeping work that tasks are running while the server restarts.
            _ => json!({"type": "sleep", "payload": {"ms": 100}}),
        })
        .collect();
    for chunk in tasks.chunks(500) {
        w1.client
            .post("/v1/tasks", &json!({ "tasks": chunk }))
            .await
            .unwrap();
    }

    wait_until_running_on(&w1.client, "pg3").await;
    w3.signal(libc::SIGKILL);

    // Restart the server while the survivors are busy.
    until(
        Duration::from_secs(60),
        "progress before the restart",
        async || (completed(&w1.client).await? > 500).then_some(()),
    )
    .await;
    let before = completed(&w1.client).await.unwrap();
    assert!(before < TASKS as u64, "the restart must happen mid-run");
    let restart = Instant::now();
    tokio::task::spawn_blocking(restart_postgres).await.unwrap();
    eprintln!(
        "PostgreSQL restarted in {:?} with {before} of {TASKS} tasks completed",
        restart.elapsed()
    );

    let done_at = until(
        Duration::from_secs(300),
        "all tasks to complete",
        async || (completed(&w1.client).await? == TASKS as u64).then(Instant::now),
    )
    .await;
    eprintln!(
        "all {TASKS} tasks completed {:?} after the restart began",
        done_at - restart
    );

    let tasks = all_tasks(&w1.client).await;
    assert_eq!(tasks.len(), TASKS);
    assert!(tasks.iter().all(|t| t["status"] == "completed"));
    // Exactly once: applied completions, counted per worker (the killed one included).
    assert_eq!(applied_completions(&w1.client).await, TASKS as u64);
    drop((w2, w3));
}
