//! The documented bounds of every client-controlled number and size (`model::limits`), list
//! paging, and the CLI's file submission: a value at its extreme is accepted, one past it is a
//! 400 naming the field (and the task's index in a batch) and the range; nothing is stored.

mod support;

use std::process::Command;
use std::time::Duration;

use sentinel::client::Client;
use sentinel::config::{Overrides, Settings};
use sentinel::node::Node;
use serde_json::{Value, json};
use support::*;

async fn start(dir: &std::path::Path) -> (Node, Client) {
    let o = Overrides {
        data_dir: Some(dir.to_path_buf()),
        listen: Some("127.0.0.1:0".into()),
        plugins: Some(plugins_dir().to_path_buf()),
        worker_id: Some("limits-host".into()),
        heartbeat_interval_ms: Some(500),
        ..Default::default()
    };
    let settings = Settings::resolve(o, || unreachable!()).unwrap();
    let node = Node::start(settings).await.unwrap();
    let client = Client::new(&format!("http://{}", node.local_addr), None, None).unwrap();
    (node, client)
}

async fn send(node: &Node, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .request(
            method.parse().unwrap(),
            format!("http://{}{path}", node.local_addr),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A 400 with this code whose message contains every one of `words`.
fn assert_refused(status: u16, answer: &Value, code: &str, words: &[&str]) {
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], code, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    for w in words {
        assert!(message.contains(w), "{w:?} missing from {message:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_number_is_accepted_at_its_extremes_and_refused_one_past() {
    let dir = tempfile::tempdir().unwrap();
    let (node, c) = start(dir.path()).await;
    let day = 86_400_000i64;
    let fields: [(&str, i64, i64); 3] = [
        ("priority", -1_000_000, 1_000_000),
        ("timeout_ms", 1, 7 * day),
        ("max_retries", 0, 100),
    ];
    for (field, min, max) in fields {
        for ok in [min, max] {
            let r = c
                .post("/v1/tasks", &json!({"type": "echo", field: ok}))
                .await;
            assert!(r.is_ok(), "{field} = {ok}: {r:?}");
        }
        let range = format!("{min}..={max}");
        for bad in [min as i128 - 1, max as i128 + 1] {
            let (status, answer) = send(
                &node,
                "POST",
                "/v1/tasks",
                &json!({"type": "echo", field: bad as i64}),
            )
            .await;
            assert_refused(status, &answer, "OUT_OF_RANGE", &[field, &range]);
        }
        // Far past any integer type: still a 400 naming the field.
        let (status, answer) = send(
            &node,
            "POST",
            "/v1/tasks",
            &json!({"type": "echo", field: u64::MAX}),
        )
        .await;
        assert_refused(status, &answer, "OUT_OF_RANGE", &[field]);
    }
    assert_eq!(all_tasks(&c).await.len(), 6, "only the accepted ones");
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_field_is_named_with_its_batch_index_and_unknown_fields_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (node, c) = start(dir.path()).await;
    let ok = json!({"type": "echo"});
    let batch = json!({"tasks": [ok, ok, ok, {"type": "echo", "priority": "x"}]});
    let (status, answer) = send(&node, "POST", "/v1/tasks", &batch).await;
    assert_refused(
        status,
        &answer,
        "INVALID_TASK",
        &["tasks[3].priority: invalid type: string \"x\", expected an integer"],
    );
    let array = json!([ok, {"type": "echo", "timeout_ms": 0}]);
    let (status, answer) = send(&node, "POST", "/v1/tasks", &array).await;
    assert_refused(
        status,
        &answer,
        "OUT_OF_RANGE",
        &["tasks[1].timeout_ms = 0"],
    );
    let (status, answer) = send(
        &node,
        "POST",
        "/v1/tasks",
        &json!({"type": "echo", "colour": 1}),
    )
    .await;
    assert_refused(status, &answer, "INVALID_TASK", &["colour"]);
    let (status, answer) = send(
        &node,
        "POST",
        "/v1/tasks",
        &json!({"tasks": [ok], "extra": 1}),
    )
    .await;
    assert_refused(status, &answer, "INVALID_TASK", &["extra"]);
    let (status, answer) = send(
        &node,
        "POST",
        "/v1/tasks",
        &json!({"tasks": [ok, {"type": "echo", "affinity": {"required_worker": "w", "sticky": true}}]}),
    )
    .await;
    assert_refused(
        status,
        &answer,
        "INVALID_TASK",
        &["tasks[1].affinity", "sticky"],
    );
    // Every other request body refuses unknown fields too.
    for (method, path, body) in [
        (
            "POST",
            "/v1/cluster/select-worker",
            json!({"type": "echo", "urgent": true}),
        ),
        (
            "POST",
            "/v1/cluster/select-worker",
            json!({"type": "echo", "affinity": {"near": "x"}}),
        ),
        (
            "PUT",
            "/v1/cluster/strategy",
            json!({"strategy": "random", "why": "x"}),
        ),
        ("POST", "/v1/tasks/some-id/cancel", json!({"force": true})),
        ("POST", "/v1/dlq/some-id/retry", json!({"now": true})),
        ("POST", "/v1/cluster/rebalance", json!({"all": true})),
    ] {
        let (status, answer) = send(&node, method, path, &body).await;
        assert_eq!(status, 400, "{method} {path}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("unknown field"),
            "{answer}"
        );
    }
    assert!(all_tasks(&c).await.is_empty(), "nothing was stored");
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_counts_and_memory_numbers_have_their_documented_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let (node, c) = start(dir.path()).await;
    let name = |n: usize| "a".repeat(n);
    let refused = [
        (json!({"type": name(129)}), "INVALID_FIELD", "type"),
        (
            json!({"type": "echo", "id": name(129)}),
            "INVALID_FIELD",
            "id",
        ),
        (
            json!({"type": "echo", "metadata": (0..65).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
            "INVALID_FIELD",
            "metadata: 65 entries; at most 64",
        ),
        (
            json!({"type": "echo", "depends_on": (0..257).map(|i| format!("t{i}")).collect::<Vec<_>>()}),
            "INVALID_FIELD",
            "depends_on",
        ),
        (
            json!({"type": "echo", "affinity": {"excluded_workers": [name(129)]}}),
            "INVALID_FIELD",
            "affinity.excluded_workers[0]",
        ),
    ];
    for (task, code, words) in refused {
        let (status, answer) = send(&node, "POST", "/v1/tasks", &task).await;
        assert_refused(status, &answer, code, &[words]);
    }
    // Metadata counts against the payload limit (1 MiB by default).
    let (status, answer) = send(
        &node,
        "POST",
        "/v1/tasks",
        &json!({"type": "echo", "payload": name(600 << 10), "metadata": {"k": name(500 << 10)}}),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (413, Some("PAYLOAD_TOO_LARGE"))
    );
    let edge = json!({"type": "echo", "id": name(128), "metadata": (0..64).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()});
    assert!(c.post("/v1/tasks", &edge).await.is_ok());

    // Shared memory: ttl_ms 1..=1 year, expected_version 0..=i64::MAX, key ≤ 512 bytes.
    let year = 365 * 86_400_000u64;
    for ttl in [1, year] {
        assert!(
            c.put(&format!("/v1/memory/ns/k{ttl}?ttl_ms={ttl}"), &json!(1))
                .await
                .is_ok()
        );
    }
    for ttl in [0, year + 1, u64::MAX] {
        let (status, answer) = send(
            &node,
            "PUT",
            &format!("/v1/memory/ns/k?ttl_ms={ttl}"),
            &json!(1),
        )
        .await;
        assert_refused(
            status,
            &answer,
            "OUT_OF_RANGE",
            &["ttl_ms", "1..=31536000000"],
        );
    }
    let max = i64::MAX as u64;
    let (status, _) = send(
        &node,
        "PUT",
        &format!("/v1/memory/ns/k?expected_version={max}"),
        &json!(1),
    )
    .await;
    assert_eq!(status, 409, "in range: a version conflict, not a refusal");
    let (status, answer) = send(
        &node,
        "PUT",
        &format!("/v1/memory/ns/k?expected_version={}", max + 1),
        &json!(1),
    )
    .await;
    assert_refused(status, &answer, "OUT_OF_RANGE", &["expected_version"]);
    assert!(
        c.put(&format!("/v1/memory/ns/{}", name(512)), &json!(1))
            .await
            .is_ok()
    );
    let (status, answer) = send(
        &node,
        "PUT",
        &format!("/v1/memory/ns/{}", name(513)),
        &json!(1),
    )
    .await;
    assert_refused(status, &answer, "INVALID_FIELD", &["key"]);
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_walk_every_task_exactly_once_in_both_orders() {
    let dir = tempfile::tempdir().unwrap();
    let (node, c) = start(dir.path()).await;
    let mut submitted = Vec::new();
    for i in 0..5 {
        let batch: Vec<Value> = (0..5)
            .map(|j| json!({"type": "echo", "payload": i * 5 + j}))
            .collect();
        let r = c
            .post("/v1/tasks", &json!({ "tasks": batch }))
            .await
            .unwrap();
        submitted.extend(
            r["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string()),
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (order, newest_first) in [("desc", true), ("asc", false)] {
        let walked = all_tasks_with(&c, &format!("limit=7&order={order}")).await;
        let ids: Vec<&str> = walked.iter().map(|t| t["id"].as_str().unwrap()).collect();
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            (ids.len(), unique.len()),
            (25, 25),
            "{order}: each task exactly once"
        );
        let times: Vec<&str> = walked
            .iter()
            .map(|t| t["created_at"].as_str().unwrap())
            .collect();
        let mut sorted = times.clone();
        sorted.sort();
        if newest_first {
            sorted.reverse();
        }
        assert_eq!(times, sorted, "{order}: ordered by creation");
    }
    let first = c.get("/v1/tasks?limit=7").await.unwrap();
    assert_eq!(first["tasks"].as_array().unwrap().len(), 7);
    assert!(first["next_cursor"].is_string());
    let newest = submitted.last().unwrap();
    assert!(
        first["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == newest.as_str()),
        "newest first by default"
    );
    let (status, answer) = send(&node, "GET", "/v1/tasks?cursor=%21%21", &Value::Null).await;
    assert_refused(status, &answer, "INVALID_CURSOR", &["cursor"]);
    for limit in ["0", "1001", "-1"] {
        let (status, answer) = send(
            &node,
            "GET",
            &format!("/v1/dlq?limit={limit}"),
            &Value::Null,
        )
        .await;
        assert_refused(status, &answer, "OUT_OF_RANGE", &["limit", "1..=1000"]);
    }
    node.shutdown(Duration::from_secs(5)).await;
}

fn cli(server: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .arg("--server")
        .arg(server)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_checks_a_whole_file_before_storing_and_waits_with_a_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (node, c) = start(dir.path()).await;
    let server = format!("http://{}", node.local_addr);
    let run = |args: Vec<String>| {
        let server = server.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                cli(&server, &args)
            })
            .await
            .unwrap()
        }
    };
    let file = dir.path().join("tasks.jsonl");
    let path = file.to_str().unwrap().to_string();
    let echo = |i: usize| format!("{{\"type\": \"echo\", \"payload\": {i}}}\n");
    // A line that is not JSON, a task the host would refuse: named (line 4, after a blank
    // line), and nothing stored.
    for (bad, words) in [
        ("{\"type\": \"echo\"\n", "not valid JSON"),
        (
            "{\"type\": \"echo\", \"priority\": 2000000}\n",
            "priority = 2000000",
        ),
        ("{\"type\": \"no-such-type\"}\n", "UNKNOWN_TASK_TYPE"),
    ] {
        std::fs::write(&file, format!("{}{}\n{bad}{}", echo(1), echo(2), echo(4))).unwrap();
        let out = run(vec!["submit".into(), "--file".into(), path.clone()]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        for w in ["tasks.jsonl:4:", words, "nothing was stored"] {
            assert!(stderr.contains(w), "{w:?} missing from {stderr}");
        }
    }
    assert!(all_tasks(&c).await.is_empty(), "nothing was stored");

    // A good file with --wait: every task finished, their results printed.
    std::fs::write(&file, (0..5).map(echo).collect::<String>()).unwrap();
    let out = run(vec![
        "--output".into(),
        "json".into(),
        "submit".into(),
        "--file".into(),
        path.clone(),
        "--wait".into(),
        "--timeout".into(),
        "60s".into(),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let outputs: Vec<Value> = r["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["output"].clone())
        .collect();
    assert_eq!(outputs, (0..5).map(|i| json!(i)).collect::<Vec<_>>());

    // --wait --timeout gives up with a clear message and status 4.
    let out = run([
        "submit",
        "--type",
        "sleep",
        "--payload",
        r#"{"ms": 5000}"#,
        "--wait",
        "--timeout",
        "500ms",
    ]
    .map(String::from)
    .to_vec())
    .await;
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("timed out after 500ms"));

    // List commands page: --limit with --all walks everything.
    let out = run([
        "--output", "json", "tasks", "list", "--limit", "2", "--order", "asc", "--all",
    ]
    .map(String::from)
    .to_vec())
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["tasks"].as_array().unwrap().len(), 6);
    let out = run(["--output", "json", "tasks", "list", "--limit", "2"]
        .map(String::from)
        .to_vec())
    .await;
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["tasks"].as_array().unwrap().len(), 2);
    assert!(r["next_cursor"].is_string());
    node.shutdown(Duration::from_secs(5)).await;
}
