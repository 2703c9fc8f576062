//! End-to-end figures of one host on the embedded store (BRIEF targets):
//! - throughput of trivial tasks (submit in batches → claim → sandbox → settle), target ≥ 25k/s;
//! - latency from submit to completion on an idle host (an upper bound on submit → executor
//!   start), target p50 < 1 ms;
//! - resident memory idle (< 64 MB) and with 100 tasks running at once (< 256 MB).
//!
//! A bench binary, not a test: it prints figures and asserts nothing. Run with
//! `cargo bench -p sentinel --bench end_to_end`.

use std::time::{Duration, Instant};

use sentinel::config::{Overrides, Settings};
use sentinel::node::{Node, resident_memory_bytes};
use sentinel_coord::model::NewTask;

async fn node(dir: &std::path::Path, max_tasks: u32) -> Node {
    let o = Overrides {
        data_dir: Some(dir.to_path_buf()),
        listen: Some("127.0.0.1:0".into()),
        plugins: Some(sentinel_guest_build::build_once().plugins_dir.clone()),
        worker_id: Some(format!("bench-{max_tasks}")),
        max_tasks: Some(max_tasks),
        ..Default::default()
    };
    Node::start(Settings::resolve(o, || unreachable!()).unwrap())
        .await
        .unwrap()
}

fn completed(node: &Node) -> u64 {
    node.state
        .metrics
        .tasks_settled
        .with_label_values(&["completed"])
        .get()
}

async fn throughput(max_tasks: u32, n: usize, batch: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), max_tasks).await;
    let start = Instant::now();
    let submit = {
        let queue_tasks: Vec<Vec<NewTask>> = (0..n)
            .map(|i| NewTask::new("echo", format!("{i}").into_bytes()))
            .collect::<Vec<_>>()
            .chunks(batch)
            .map(|c| c.to_vec())
            .collect();
        let state = node.state.clone();
        tokio::spawn(async move {
            for chunk in queue_tasks {
                state.queue.submit_batch(chunk).await.unwrap();
            }
        })
    };
    while completed(&node) < n as u64 {
        tokio::time::sleep(Duration::from_micros(200)).await;
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "stalled at {} of {n}",
            completed(&node)
        );
    }
    submit.await.unwrap();
    let rate = n as f64 / start.elapsed().as_secs_f64();
    node.shutdown(Duration::from_secs(5)).await;
    rate
}

async fn latency(samples: usize) -> (Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), 10).await;
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples + 20 {
        let before = completed(&node);
        let start = Instant::now();
        node.state
            .queue
            .submit(NewTask::new("echo", b"1".to_vec()))
            .await
            .unwrap();
        while completed(&node) == before {
            tokio::task::yield_now().await;
        }
        if i >= 20 {
            times.push(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    times.sort();
    let p = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    node.shutdown(Duration::from_secs(5)).await;
    (p(0.5), p(0.99))
}

async fn memory() -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), 100).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = resident_memory_bytes().unwrap_or(0);
    let tasks: Vec<NewTask> = (0..100)
        .map(|_| NewTask::new("sleep", br#"{"ms": 3000}"#.to_vec()))
        .collect();
    node.state.queue.submit_batch(tasks).await.unwrap();
    let start = Instant::now();
    while node.state.active.load(std::sync::atomic::Ordering::Relaxed) < 100
        && start.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let busy = resident_memory_bytes().unwrap_or(0);
    node.shutdown(Duration::from_secs(10)).await;
    (idle, busy)
}

fn main() {
    // `cargo bench` passes `--bench`; accept and ignore criterion-style arguments.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (idle, busy) = memory().await;
        println!("memory: idle host {:.1} MB resident; 100 sleep tasks running {:.1} MB resident", idle as f64 / 1e6, busy as f64 / 1e6);
        let (p50, p99) = latency(300).await;
        println!("latency submit -> completed (idle host, echo): p50 {:?}, p99 {:?}", p50, p99);
        for (max_tasks, batch) in [(10, 500), (64, 500), (256, 1000)] {
            let rate = throughput(max_tasks, 30_000, batch).await;
            println!("throughput: {rate:.0} trivial tasks/s (max_tasks {max_tasks}, submit batches of {batch}, 30k tasks)");
        }
    });
}
