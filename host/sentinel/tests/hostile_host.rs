//! The standing hostile suite at the host's edge: a hostile plugin and a careless client try
//! to hurt the host through the HTTP API. After every attack the task that carried it is
//! settled with an error naming the bound, a normal task still completes, and `/health`
//! answers. Cancellation stops a running sandbox on the host that runs it, also when the
//! cancel is sent to another host sharing the store.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use sentinel::client::Client;
use sentinel::config::{Overrides, Settings};
use sentinel::node::Node;
use serde_json::{Value, json};
use support::*;

async fn start(dir: &Path, id: &str, edit: impl FnOnce(&mut Overrides)) -> (Node, Client) {
    let data = dir.join(id);
    // The attacks need scratch and shared memory, which a host allows only when told to.
    let config = dir.join(format!("{id}.json"));
    std::fs::write(
        &config,
        r#"{"sandbox": {"allowScratch": true, "allowMemory": true}}"#,
    )
    .unwrap();
    let mut o = Overrides {
        config_file: Some(config),
        data_dir: Some(data),
        store: Some(format!("sqlite://{}", dir.join("store.db").display())),
        listen: Some("127.0.0.1:0".into()),
        plugins: Some(plugin_folder(dir, &["hostile"], &["echo"])),
        worker_id: Some(id.into()),
        heartbeat_interval_ms: Some(500),
        ..Default::default()
    };
    edit(&mut o);
    let settings = Settings::resolve(o, || unreachable!()).unwrap();
    let node = Node::start(settings).await.unwrap();
    let client = Client::new(&format!("http://{}", node.local_addr), None, None).unwrap();
    (node, client)
}

async fn submit(c: &Client, body: Value) -> String {
    let r = c.post("/v1/tasks", &body).await.unwrap();
    r["id"].as_str().unwrap().to_string()
}

/// A normal task completes and the host reports itself healthy.
async fn still_serves(c: &Client) {
    let id = submit(c, json!({"type": "echo", "payload": {"after": "attack"}})).await;
    let t = wait_settled(c, &id, Duration::from_secs(30)).await;
    assert_eq!(t["status"], "completed", "{t}");
    let health = c.get("/health").await.unwrap();
    assert_eq!(health["status"], "healthy", "{health}");
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_resource_attack_ends_in_a_named_bound_and_the_host_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let (node, c) = start(dir.path(), "hostile-host", |_| {}).await;
    still_serves(&c).await;
    let before = resident_kib();
    let attacks = [
        (
            json!({"attack": "deep-tree", "depth": 20_000}),
            "scratch-files",
        ),
        (json!({"attack": "fd-flood"}), "host-handles"),
        (json!({"attack": "handle-hoard"}), "host-handles"),
        (json!({"attack": "key-flood"}), "memory-writes"),
        (
            json!({"attack": "disk-flood", "mib": 1024}),
            "scratch-bytes",
        ),
        (json!({"attack": "sparse-file"}), "scratch-bytes"),
    ];
    for (payload, bound) in attacks {
        let id = submit(
            &c,
            json!({"type": "hostile", "payload": payload, "max_retries": 0}),
        )
        .await;
        let t = wait_settled(&c, &id, Duration::from_secs(60)).await;
        assert_eq!(t["status"], "dead", "{payload}: {t}");
        let error = t["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("RESOURCE_LIMIT") && error.contains(bound),
            "{payload}: expected {bound}, got {error}"
        );
        still_serves(&c).await;
    }
    // A huge error message is stored cut to the error bound, and served as such.
    let id = submit(
        &c,
        json!({"type": "hostile", "payload": {"attack": "huge-error"}, "max_retries": 0}),
    )
    .await;
    let t = wait_settled(&c, &id, Duration::from_secs(60)).await;
    let error = t["error"].as_str().unwrap_or_default();
    assert!(
        error.len() < (16 << 10) + 100,
        "{} bytes stored",
        error.len()
    );
    still_serves(&c).await;
    // Nothing the attacks created is left in the scratch root.
    let scratch = sentinel_runtime::scratch::host_root(&node.state.settings.policy.scratch_root);
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .map(|r| r.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "scratch left behind: {left:?}");
    eprintln!(
        "resident memory of the test process: {before} KiB before the attacks, {} KiB after",
        resident_kib()
    );
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_running_task_frees_its_slot_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (node, c) = start(dir.path(), "one-slot", |o| o.max_tasks = Some(1)).await;
    let id = submit(
        &c,
        json!({"type": "hostile", "payload": {"attack": "wait", "ms": 120_000}}),
    )
    .await;
    wait_until_running(&c, &id).await;
    c.post(&format!("/v1/tasks/{id}/cancel"), &json!({}))
        .await
        .unwrap();
    // With one slot, the next task can only run once the cancelled sandbox has stopped.
    let started = Instant::now();
    still_serves(&c).await;
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(
        c.get(&format!("/v1/tasks/{id}")).await.unwrap()["status"],
        "cancelled"
    );
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_sent_to_another_host_stops_the_sandbox_where_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, rc) = start(dir.path(), "runner", |o| o.max_tasks = Some(1)).await;
    let (other, oc) = start(dir.path(), "other", |o| {
        o.task_types = Some(vec!["echo".into()]);
    })
    .await;
    let id = submit(
        &rc,
        json!({"type": "hostile", "payload": {"attack": "wait", "ms": 120_000}}),
    )
    .await;
    wait_until_running(&rc, &id).await;
    oc.post(&format!("/v1/tasks/{id}/cancel"), &json!({}))
        .await
        .unwrap();
    // The runner's only slot frees once its sandbox stopped: a task pinned to it completes.
    let next = submit(
        &oc,
        json!({"type": "hostile", "payload": {"attack": "ok"}, "affinity": {"required_worker": "runner"}}),
    )
    .await;
    let t = wait_settled(&oc, &next, Duration::from_secs(30)).await;
    assert_eq!(t["status"], "completed", "{t}");
    other.shutdown(Duration::from_secs(5)).await;
    runner.shutdown(Duration::from_secs(5)).await;
}

async fn wait_until_running(c: &Client, id: &str) {
    until(Duration::from_secs(30), "the task to run", async || {
        let t = c.get(&format!("/v1/tasks/{id}")).await.ok()?;
        (t["status"] == "running").then_some(())
    })
    .await;
}
