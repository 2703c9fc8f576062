//! The example plugins behave exactly as documented (tests and demos rely on them).

mod support;

use std::sync::{Arc, Mutex};

use sentinel_runtime::{HostPolicy, InMemoryKv, ProgressSink, SandboxError, TaskServices};
use serde_json::json;
use sha2::{Digest, Sha256};
use support::*;

async fn run(name: &str, payload: serde_json::Value) -> Result<serde_json::Value, SandboxError> {
    let rt = runtime(HostPolicy::default());
    let plugin = executor(&rt, examples_dir(), name);
    let out = plugin
        .run(&rt, &task(name, payload), &TaskServices::in_memory())
        .await;
    out.result.map(|bytes| json(&bytes))
}

#[tokio::test]
async fn echo_returns_its_payload_unchanged() {
    let payload = json!({"hello": ["world", 1, null], "n": 3.5});
    assert_eq!(run("echo", payload.clone()).await.unwrap(), payload);
}

#[tokio::test]
async fn echo_returns_non_json_bytes_unchanged() {
    let rt = runtime(HostPolicy::default());
    let plugin = executor(&rt, examples_dir(), "echo");
    let mut t = task("echo", json!(null));
    t.payload = vec![0, 159, 146, 150, 255];
    let out = plugin.run(&rt, &t, &TaskServices::in_memory()).await;
    assert_eq!(out.result.unwrap(), vec![0, 159, 146, 150, 255]);
}

#[tokio::test]
async fn sha256_hashes_the_utf8_bytes_in_lowercase_hex() {
    let text = "héllo wörld";
    let expected = hex::encode(Sha256::digest(text.as_bytes()));
    assert_eq!(
        run("sha256", json!({"data": text})).await.unwrap(),
        json!({"sha256": expected})
    );
}

#[tokio::test]
async fn sha256_rejects_a_payload_without_data() {
    match run("sha256", json!({"text": "x"})).await {
        Err(SandboxError::TaskFailed {
            retryable: false,
            message,
        }) => assert!(message.contains("data"), "{message}"),
        other => panic!("expected a non-retryable failure, got {other:?}"),
    }
}

#[tokio::test]
async fn word_count_counts_and_ranks_with_alphabetical_ties() {
    let out = run(
        "word-count",
        json!({"text": "the cat and the hat; The end. and"}),
    )
    .await
    .unwrap();
    assert_eq!(out["words"], json!(8));
    assert_eq!(
        out["top"],
        json!([["the", 3], ["and", 2], ["cat", 1], ["end", 1], ["hat", 1]])
    );
}

#[tokio::test]
async fn word_count_keeps_the_top_ten() {
    let text: String = (0..30).map(|i| format!("w{i:02} ")).collect();
    let out = run("word-count", json!({"text": text})).await.unwrap();
    assert_eq!(out["words"], json!(30));
    assert_eq!(out["top"].as_array().unwrap().len(), 10);
    assert_eq!(out["top"][0], json!(["w00", 1]));
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, u8)>>);

impl ProgressSink for Recorder {
    fn report(&self, _tenant: &str, task_id: &str, percent: u8, _message: &str) {
        self.0.lock().unwrap().push((task_id.to_string(), percent));
    }
}

#[tokio::test]
async fn sleep_sleeps_and_reports_progress() {
    let rt = runtime(HostPolicy::default());
    let plugin = executor(&rt, examples_dir(), "sleep");
    let recorder = Arc::new(Recorder::default());
    let services = TaskServices {
        kv: Arc::new(InMemoryKv::default()),
        progress: recorder.clone(),
    };
    let t = task("sleep", json!({"ms": 300}));
    let out = plugin.run(&rt, &t, &services).await;
    assert_eq!(json(&out.result.unwrap()), json!({"slept_ms": 300}));
    assert!(out.duration.as_millis() >= 300, "took {:?}", out.duration);
    // Sleeping is waiting, not computing: almost no CPU is charged.
    assert!(
        out.cpu.as_millis() < 150,
        "charged {:?} of CPU for sleeping",
        out.cpu
    );
    let reports = recorder.0.lock().unwrap().clone();
    assert!(reports.len() >= 3, "{reports:?}");
    assert!(reports.iter().all(|(id, _)| *id == t.id));
    assert_eq!(reports.last().unwrap().1, 100);
    assert!(
        reports.windows(2).all(|w| w[0].1 <= w[1].1),
        "progress never goes back: {reports:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sleeps_run_concurrently_on_one_runtime() {
    let rt = runtime(HostPolicy::default());
    let plugin = executor(&rt, examples_dir(), "sleep");
    let services = TaskServices::in_memory();
    let started = std::time::Instant::now();
    let runs: Vec<_> = (0..50)
        .map(|_| {
            let (rt, plugin, services) = (rt.clone(), plugin.clone(), services.clone());
            tokio::spawn(async move {
                plugin
                    .run(&rt, &task("sleep", json!({"ms": 200})), &services)
                    .await
            })
        })
        .collect();
    for run in runs {
        run.await.unwrap().result.expect("sleep");
    }
    // 50 sequential sleeps would take 10 s.
    assert!(
        started.elapsed().as_secs() < 8,
        "took {:?}",
        started.elapsed()
    );
}
