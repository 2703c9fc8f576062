//! The local buffer: a host claims ahead of its free slots, and what it claimed but never
//! started goes back to the queue unstarted (its attempt not counted) when it waits too long for
//! a slot or when the host shuts down. Nothing is lost and nothing runs twice.

mod support;

use std::sync::Arc;
use std::time::Duration;

use sentinel::config::{Overrides, Settings};
use sentinel::node::Node;
use sentinel_coord::Store;
use sentinel_coord::model::{DEFAULT_TENANT, NewTask, Task, TaskState};
use support::*;

async fn host(dir: &std::path::Path, id: &str, prefetch: u32, wait_ms: u64) -> Node {
    let o = Overrides {
        data_dir: Some(dir.join(id)),
        store: Some(format!("sqlite://{}", dir.join("store.db").display())),
        listen: Some("127.0.0.1:0".into()),
        plugins: Some(plugin_folder(dir, &[], &["sleep"])),
        worker_id: Some(id.into()),
        max_tasks: Some(1),
        prefetch: Some(prefetch),
        prefetch_wait_ms: Some(wait_ms),
        ..Default::default()
    };
    Node::start(Settings::resolve(o, || unreachable!()).unwrap())
        .await
        .unwrap()
}

fn sleep_task(id: &str, ms: u64) -> NewTask {
    NewTask {
        id: Some(id.into()),
        ..NewTask::new("sleep", format!(r#"{{"ms": {ms}}}"#))
    }
}

async fn tasks(store: &Arc<dyn Store>, ids: &[&str]) -> Vec<Task> {
    let mut out = Vec::new();
    for id in ids {
        out.push(store.get_task(DEFAULT_TENANT, id).await.unwrap().unwrap());
    }
    out
}

/// One slot, three buffered claims behind a long task: once they have waited their limit they
/// are pending again as first attempts, and the host later runs each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_claims_that_wait_too_long_go_back_unstarted() {
    let dir = tempfile::tempdir().unwrap();
    let node = host(dir.path(), "buffering", 3, 250).await;
    let store = node.state.store.clone();
    node.state
        .queue
        .submit_batch(vec![
            sleep_task("long", 1_500),
            sleep_task("a", 1),
            sleep_task("b", 1),
            sleep_task("c", 1),
        ])
        .await
        .unwrap();
    until(
        Duration::from_secs(20),
        "all four to be claimed",
        async || {
            let t = tasks(&store, &["long", "a", "b", "c"]).await;
            t.iter()
                .all(|t| t.state == TaskState::Running)
                .then_some(())
        },
    )
    .await;
    until(
        Duration::from_secs(20),
        "the buffer to give back",
        async || {
            let t = tasks(&store, &["a", "b", "c"]).await;
            t.iter()
                .all(|t| t.state == TaskState::Pending && t.attempt == 0)
                .then_some(())
        },
    )
    .await;
    let released = node.state.metrics.claims_released.get();
    assert!(released >= 3, "{released}");
    until(
        Duration::from_secs(30),
        "every task to complete",
        async || {
            let t = tasks(&store, &["long", "a", "b", "c"]).await;
            t.iter()
                .all(|t| t.state == TaskState::Completed)
                .then_some(t)
        },
    )
    .await
    .iter()
    .for_each(|t| assert_eq!(t.attempt, 1, "{} ran once", t.id));
    node.shutdown(Duration::from_secs(5)).await;
}

/// Shutdown gives the buffer back at once (here long before the buffered tasks' wait would),
/// even with no grace for the running task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_the_buffer_back() {
    let dir = tempfile::tempdir().unwrap();
    let node = host(dir.path(), "stopping", 3, 60_000).await;
    let store = node.state.store.clone();
    node.state
        .queue
        .submit_batch(vec![
            sleep_task("long", 3_000),
            sleep_task("a", 1),
            sleep_task("b", 1),
        ])
        .await
        .unwrap();
    until(
        Duration::from_secs(20),
        "all three to be claimed",
        async || {
            let t = tasks(&store, &["long", "a", "b"]).await;
            t.iter()
                .all(|t| t.state == TaskState::Running)
                .then_some(())
        },
    )
    .await;
    node.shutdown(Duration::ZERO).await;
    until(
        Duration::from_secs(5),
        "the buffer to be given back",
        async || {
            let t = tasks(&store, &["a", "b"]).await;
            t.iter()
                .all(|t| t.state == TaskState::Pending && t.attempt == 0 && t.worker_id.is_none())
                .then_some(())
        },
    )
    .await;
    // The running task was left leased to the stopped host, for recovery to requeue.
    let long = &tasks(&store, &["long"]).await[0];
    assert_eq!((long.state, long.attempt), (TaskState::Running, 1));
}
