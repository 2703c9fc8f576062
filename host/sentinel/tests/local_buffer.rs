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

/// Which of two tasks is running and which is not.
fn split(t: Vec<Task>) -> (Task, Task) {
    let mut t = t.into_iter();
    let (a, b) = (t.next().unwrap(), t.next().unwrap());
    if a.state == TaskState::Running && b.state != TaskState::Running {
        (a, b)
    } else {
        (b, a)
    }
}

/// One slot, two long tasks: the host claims both (one runs, one is buffered, since it claims a
/// task per slot ahead); the buffered one, once it has waited its limit, is pending again as a
/// first attempt, and the host later runs each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffered_claim_that_waits_too_long_goes_back_unstarted() {
    let dir = tempfile::tempdir().unwrap();
    let node = host(dir.path(), "buffering", 3, 250).await;
    let store = node.state.store.clone();
    node.state
        .queue
        .submit_batch(vec![sleep_task("a", 1_500), sleep_task("b", 1_500)])
        .await
        .unwrap();
    until(Duration::from_secs(20), "both to be claimed", async || {
        let t = tasks(&store, &["a", "b"]).await;
        t.iter()
            .all(|t| t.state == TaskState::Running)
            .then_some(())
    })
    .await;
    let (running, given_back) = until(
        Duration::from_secs(20),
        "one to be given back",
        async || {
            let (running, other) = split(tasks(&store, &["a", "b"]).await);
            (running.state == TaskState::Running && other.state == TaskState::Pending)
                .then_some((running, other))
        },
    )
    .await;
    assert_eq!(running.attempt, 1);
    assert_eq!((given_back.attempt, given_back.worker_id), (0, None));
    assert!(node.state.metrics.claims_released.get() >= 1);
    until(Duration::from_secs(30), "both to complete", async || {
        let t = tasks(&store, &["a", "b"]).await;
        t.iter()
            .all(|t| t.state == TaskState::Completed)
            .then_some(t)
    })
    .await
    .iter()
    .for_each(|t| assert_eq!(t.attempt, 1, "{} ran once", t.id));
    node.shutdown(Duration::from_secs(5)).await;
}

/// Shutdown gives the buffer back at once (here long before the buffered task's wait would end),
/// even with no grace for the running task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_the_buffer_back() {
    let dir = tempfile::tempdir().unwrap();
    let node = host(dir.path(), "stopping", 3, 60_000).await;
    let store = node.state.store.clone();
    node.state
        .queue
        .submit_batch(
            // Long timeouts: a buffered task here would wait a minute before giving up its own.
            ["a", "b"]
                .map(|id| NewTask {
                    timeout_ms: Some(600_000),
                    ..sleep_task(id, 3_000)
                })
                .to_vec(),
        )
        .await
        .unwrap();
    until(Duration::from_secs(20), "both to be claimed", async || {
        let t = tasks(&store, &["a", "b"]).await;
        t.iter()
            .all(|t| t.state == TaskState::Running)
            .then_some(())
    })
    .await;
    node.shutdown(Duration::ZERO).await;
    let (running, given_back) = until(
        Duration::from_secs(5),
        "the buffer to be given back",
        async || {
            let (running, other) = split(tasks(&store, &["a", "b"]).await);
            (other.state == TaskState::Pending).then_some((running, other))
        },
    )
    .await;
    assert_eq!((given_back.attempt, given_back.worker_id), (0, None));
    // The running task was left leased to the stopped host, for recovery to requeue.
    assert_eq!((running.state, running.attempt), (TaskState::Running, 1));
}
