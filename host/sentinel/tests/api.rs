//! The HTTP API and the operator CLI against an in-process host: what a tenant and an
//! operator see, including every way a request can be wrong.

mod support;

use std::process::Command;
use std::time::Duration;

use sentinel::client::Client;
use sentinel::config::{Overrides, Settings};
use sentinel::node::Node;
use serde_json::{Value, json};
use support::*;

async fn start(dir: &std::path::Path, edit: impl FnOnce(&mut Overrides)) -> (Node, Client) {
    let mut o = Overrides {
        data_dir: Some(dir.to_path_buf()),
        listen: Some("127.0.0.1:0".into()),
        plugins: Some(plugins_dir().to_path_buf()),
        worker_id: Some("api-host".into()),
        heartbeat_interval_ms: Some(500),
        ..Default::default()
    };
    edit(&mut o);
    let settings = Settings::resolve(o, || unreachable!()).unwrap();
    let node = Node::start(settings).await.unwrap();
    let client = Client::new(&format!("http://{}", node.local_addr), None, None).unwrap();
    (node, client)
}

async fn raw(c: &Client, node: &Node, method: &str, path: &str, body: &str) -> (u16, Value) {
    let url = format!("http://{}{path}", node.local_addr);
    let http = reqwest::Client::new();
    let resp = http
        .request(method.parse().unwrap(), url)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let _ = c;
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn wait_done(c: &Client, id: &str) -> Value {
    wait_settled(c, id, Duration::from_secs(30)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_task_is_run_and_its_result_retrievable() {
    let dir = tempfile::tempdir().unwrap();
    let (node, c) = start(dir.path(), |_| {}).await;
    let r = c
        .post(
            "/v1/tasks",
            &json!({"type": "sha256", "payload": {"data": "hello"}}),
        )
        .await
        .unwrap();
    let t = wait_done(&c, r["id"].as_str().unwrap()).await;
    assert_eq!(t["status"], "completed");
    assert_eq!(
        t["output"]["sha256"],
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    assert_eq!(t["worker_id"], "api-host");

    let batch = c.post("/v1/tasks", &json!({"tasks": [{"type": "echo", "payload": 1}, {"type": "echo", "payload": 2, "priority": 5}]})).await.unwrap();
    assert_eq!(batch["ids"].as_array().unwrap().len(), 2);
    for id in batch["ids"].as_array().unwrap() {
        assert_eq!(
            wait_done(&c, id.as_str().unwrap()).await["status"],
            "completed"
        );
    }
    let listed = c.get("/v1/tasks?status=completed&type=echo").await.unwrap();
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 2);
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_4xx_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (node, c) = start(dir.path(), |_| {}).await;
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("POST", "{not json".into(), 400, "MALFORMED_JSON"),
        (
            "POST",
            json!({"type": "no-such-type"}).to_string(),
            422,
            "UNKNOWN_TASK_TYPE",
        ),
        (
            "POST",
            json!({"type": "echo", "payload": "x".repeat(2 << 20)}).to_string(),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "POST",
            json!({"type": "echo", "surprise": true}).to_string(),
            400,
            "INVALID_TASK",
        ),
        (
            "POST",
            json!({"tasks": [{"type": "echo"}, {"type": "nope"}]}).to_string(),
            422,
            "UNKNOWN_TASK_TYPE",
        ),
        (
            "POST",
            json!({"type": "echo", "timeout_ms": 0}).to_string(),
            400,
            "OUT_OF_RANGE",
        ),
    ];
    for (method, body, status, code) in cases {
        let (got, answer) = raw(&c, &node, method, "/v1/tasks", &body).await;
        assert_eq!(got, status, "{answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
    }
    // A batch with one bad task stores none of it.
    assert!(
        c.get("/v1/tasks").await.unwrap()["tasks"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(raw(&c, &node, "GET", "/v1/tasks/nope", "").await.0, 404);
    assert_eq!(
        raw(&c, &node, "GET", "/v1/tasks?status=sleeping", "")
            .await
            .0,
        400
    );
    assert_eq!(raw(&c, &node, "GET", "/nowhere", "").await.0, 404);
    // The host is unaffected.
    let r = c
        .post("/v1/tasks", &json!({"type": "echo", "payload": "fine"}))
        .await
        .unwrap();
    assert_eq!(
        wait_done(&c, r["id"].as_str().unwrap()).await["output"],
        "fine"
    );
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_task_retries_then_lands_in_the_dlq_and_can_be_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (node, c) = start(dir.path(), |_| {}).await;
    // sha256 without `data` fails non-retryably: straight to the dead-letter queue.
    let r = c
        .post(
            "/v1/tasks",
            &json!({"type": "sha256", "payload": {"text": "x"}, "max_retries": 2}),
        )
        .await
        .unwrap();
    let id = r["id"].as_str().unwrap().to_string();
    let t = wait_done(&c, &id).await;
    assert_eq!(t["status"], "dead");
    assert!(t["error"].as_str().unwrap().contains("data"), "{t}");
    let dlq = c.get("/v1/dlq").await.unwrap();
    assert_eq!(dlq["tasks"][0]["id"], id.as_str());
    c.post(&format!("/v1/dlq/{id}/retry"), &json!({}))
        .await
        .unwrap();
    assert_eq!(
        wait_done(&c, &id).await["status"],
        "dead",
        "it fails again, deterministically"
    );
    // Retrying something that is not dead is a conflict.
    let ok = c
        .post("/v1/tasks", &json!({"type": "echo", "payload": 1}))
        .await
        .unwrap();
    let ok_id = ok["id"].as_str().unwrap();
    wait_done(&c, ok_id).await;
    assert_eq!(
        raw(&c, &node, "POST", &format!("/v1/dlq/{ok_id}/retry"), "")
            .await
            .0,
        409
    );
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_task_shows_progress_and_can_be_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let (node, c) = start(dir.path(), |_| {}).await;
    let r = c
        .post(
            "/v1/tasks",
            &json!({"type": "sleep", "payload": {"ms": 3000}}),
        )
        .await
        .unwrap();
    let id = r["id"].as_str().unwrap().to_string();
    let t = until(Duration::from_secs(30), "progress", async || {
        let t = c.get(&format!("/v1/tasks/{id}")).await.ok()?;
        t.get("progress").is_some().then_some(t)
    })
    .await;
    assert_eq!(t["status"], "running");
    c.post(&format!("/v1/tasks/{id}/cancel"), &json!({}))
        .await
        .unwrap();
    let t = wait_done(&c, &id).await;
    assert_eq!(t["status"], "cancelled");
    // Its late completion is refused: the task stays cancelled.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        c.get(&format!("/v1/tasks/{id}")).await.unwrap()["status"],
        "cancelled"
    );
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_pass_outputs_to_dependents() {
    let dir = tempfile::tempdir().unwrap();
    let (node, c) = start(dir.path(), |_| {}).await;
    let r = c
        .post(
            "/v1/tasks",
            &json!({"tasks": [
                {"id": "wf-a", "type": "sha256", "payload": {"data": "a"}},
                {"id": "wf-b", "type": "echo", "payload": "b", "depends_on": ["wf-a"]},
            ]}),
        )
        .await
        .unwrap();
    assert_eq!(r["ids"], json!(["wf-a", "wf-b"]));
    let a = wait_done(&c, "wf-a").await;
    let b = wait_done(&c, "wf-b").await;
    assert_eq!(b["status"], "completed");
    assert!(b["started_at"].as_str().unwrap() >= a["finished_at"].as_str().unwrap());
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_health_metrics_and_plugins_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (node, c) = start(dir.path(), |_| {}).await;
    let e = c
        .put("/v1/memory/swarm/config", &json!({"mode": "fast"}))
        .await
        .unwrap();
    assert_eq!(e["version"], 1);
    assert_eq!(
        c.get("/v1/memory/swarm/config").await.unwrap()["value"],
        json!({"mode": "fast"})
    );
    let (status, conflict) = raw(
        &c,
        &node,
        "PUT",
        "/v1/memory/swarm/config?expected_version=7",
        "1",
    )
    .await;
    assert_eq!(
        (status, conflict["error"]["code"].as_str()),
        (409, Some("VERSION_CONFLICT"))
    );
    assert_eq!(
        c.get("/v1/memory/swarm?prefix=con").await.unwrap()["entries"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    c.delete("/v1/memory/swarm/config").await.unwrap();
    assert_eq!(
        raw(&c, &node, "GET", "/v1/memory/swarm/config", "").await.0,
        404
    );

    let h = c.get("/health").await.unwrap();
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["worker_id"], "api-host");
    assert_eq!(h["capacity"]["max"], 10);
    let ch = c.get("/cluster/health").await.unwrap();
    assert_eq!(
        (ch["status"].as_str(), ch["total_workers"].as_u64()),
        (Some("healthy"), Some(1))
    );
    let metrics = c.get_text("/metrics").await.unwrap();
    for name in [
        "sentinel_workers_active",
        "sentinel_tasks",
        "sentinel_locks_active",
        "sentinel_heartbeats_total",
        "sentinel_task_duration_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    let plugins = c.get("/v1/plugins").await.unwrap();
    assert_eq!(plugins["plugins"].as_array().unwrap().len(), 6);
    let load = c.get("/v1/cluster/load").await.unwrap();
    assert_eq!(load["strategy"], "least_loaded");
    // Push placement through a WASM strategy, switched at run time.
    let changed = c
        .put(
            "/v1/cluster/strategy",
            &json!({"strategy": "plugin:weighted-score"}),
        )
        .await
        .unwrap();
    assert_eq!(changed["strategy"], "plugin:weighted-score");
    let placed = c
        .post("/v1/cluster/select-worker", &json!({"type": "echo"}))
        .await
        .unwrap();
    assert_eq!(
        (
            placed["strategy"].as_str(),
            placed["worker"]["worker_id"].as_str()
        ),
        (Some("plugin:weighted-score"), Some("api-host"))
    );
    let none = c
        .post(
            "/v1/cluster/select-worker",
            &json!({"type": "unknown-type"}),
        )
        .await
        .unwrap();
    assert!(none["worker"].is_null());
    assert_eq!(
        raw(
            &c,
            &node,
            "PUT",
            "/v1/cluster/strategy",
            r#"{"strategy": "fastest"}"#
        )
        .await
        .0,
        400
    );
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_submits_waits_lists_and_fails_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = start(dir.path(), |_| {}).await;
    let server = format!("http://{}", node.local_addr);
    let cli = |args: &[&str]| {
        let server = server.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move {
            tokio::task::spawn_blocking(move || {
                Command::new(env!("CARGO_BIN_EXE_sentinel"))
                    .arg("--server")
                    .arg(server)
                    .args(args)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let out = cli(&[
        "--output",
        "json",
        "submit",
        "--type",
        "word-count",
        "--payload",
        r#"{"text": "b a b"}"#,
        "--wait",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        task["output"],
        json!({"words": 3, "top": [["b", 2], ["a", 1]]})
    );

    let jsonl = dir.path().join("tasks.jsonl");
    std::fs::write(
        &jsonl,
        (0..20)
            .map(|i| format!("{{\"type\": \"echo\", \"payload\": {i}}}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let out = cli(&[
        "--output",
        "json",
        "submit",
        "--file",
        jsonl.to_str().unwrap(),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["ids"]
            .as_array()
            .unwrap()
            .len(),
        20
    );

    for args in [
        vec!["tasks", "list"],
        vec!["workers", "list"],
        vec!["cluster", "health"],
        vec!["plugins", "list"],
        vec!["locks", "list"],
        vec!["dlq", "list"],
    ] {
        let out = cli(&args).await;
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "{args:?} printed nothing");
    }

    let out = cli(&["submit", "--type", "no-such-type"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one-line reason: {stderr}"
    );
    assert!(stderr.contains("UNKNOWN_TASK_TYPE"), "{stderr}");

    let out = cli(&[
        "plugins",
        "check",
        plugins_dir().join("sha256.wasm").to_str().unwrap(),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let garbage = dir.path().join("junk.wasm");
    std::fs::write(&garbage, b"junk").unwrap();
    std::fs::copy(
        plugins_dir().join("echo.toml"),
        dir.path().join("junk.toml"),
    )
    .unwrap();
    let out = cli(&["plugins", "check", garbage.to_str().unwrap()]).await;
    assert!(!out.status.success());
    node.shutdown(Duration::from_secs(5)).await;
}

#[test]
fn an_invalid_config_is_refused_at_start_naming_the_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .args(["worker", "--max-tasks", "0", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WORKER_MAX_TASKS"), "{stderr}");
}

#[test]
fn a_github_store_without_a_token_is_refused_at_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .args([
            "worker",
            "--store",
            "github://octo/repo",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(tempfile::tempdir().unwrap().path())
        .env_remove("GITHUB_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("GITHUB_TOKEN is not set"), "{stderr}");
}
