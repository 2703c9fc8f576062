//! Quotas, per-tenant task ids and fairness at the host's edge: a tenant that floods, races two
//! hosts, reuses another tenant's ids or outruns its submission rate gets a 429 naming the
//! quota and nothing partial is stored; a flooded tenant cannot delay another for long.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use sentinel::client::{ApiFailure, Client};
use sentinel::config::{Overrides, Settings};
use sentinel::node::Node;
use sentinel::tenancy::tokens::{digest_hex, new_token};
use serde_json::{Value, json};
use support::*;

struct Tokens {
    a: String,
    b: String,
    admin: String,
}

impl Tokens {
    fn new() -> Tokens {
        Tokens {
            a: new_token(),
            b: new_token(),
            admin: new_token(),
        }
    }
}

/// A host on `store` (default: SQLite in `dir`) with tenants `a` and `b` and an admin.
async fn start(dir: &Path, id: &str, t: &Tokens, tenants: Value, store: Option<String>) -> Node {
    let config = json!({
        "auth": {"tokens": [
            {"tenant": "a", "sha256": digest_hex(&t.a)},
            {"tenant": "b", "sha256": digest_hex(&t.b)},
            {"tenant": "ops", "role": "admin", "sha256": digest_hex(&t.admin)},
        ]},
        "tenants": tenants,
        "sandbox": {"allowMemory": true},
    });
    let path = dir.join(format!("{id}.json"));
    std::fs::write(&path, config.to_string()).unwrap();
    let o = Overrides {
        config_file: Some(path),
        store: Some(
            store.unwrap_or_else(|| format!("sqlite://{}", dir.join("store.db").display())),
        ),
        data_dir: Some(dir.join(id)),
        listen: Some("127.0.0.1:0".into()),
        plugins: Some(plugins_dir().to_path_buf()),
        worker_id: Some(id.into()),
        heartbeat_interval_ms: Some(500),
        ..Default::default()
    };
    Node::start(Settings::resolve(o, || unreachable!()).unwrap())
        .await
        .unwrap()
}

fn client(node: &Node, token: &str) -> Client {
    Client::new(&format!("http://{}", node.local_addr), Some(token), None).unwrap()
}

fn failure(r: anyhow::Result<Value>) -> ApiFailure {
    match r {
        Ok(v) => panic!("expected a refusal, got {v}"),
        Err(e) => e
            .downcast_ref::<ApiFailure>()
            .cloned()
            .expect("an API failure"),
    }
}

async fn count(c: &Client, status: &str) -> usize {
    c.get(&format!("/v1/tasks?status={status}&limit=1000"))
        .await
        .unwrap()["tasks"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_use_the_same_task_id_and_references_stay_inside_each() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tokens::new();
    let node = start(dir.path(), "ids", &t, json!({}), None).await;
    let (a, b) = (client(&node, &t.a), client(&node, &t.b));
    for (c, payload) in [(&a, "from a"), (&b, "from b")] {
        let r = c
            .post(
                "/v1/tasks",
                &json!({"id": "nightly-1", "type": "echo", "payload": payload}),
            )
            .await
            .unwrap();
        assert_eq!(r["id"], "nightly-1");
    }
    for (c, payload) in [(&a, "from a"), (&b, "from b")] {
        let done = wait_settled(c, "nightly-1", Duration::from_secs(30)).await;
        assert_eq!(done["output"], payload, "{done}");
    }
    // Within one tenant the id is still unique.
    let f = failure(
        a.post("/v1/tasks", &json!({"id": "nightly-1", "type": "echo"}))
            .await,
    );
    assert_eq!(f.status, 400, "{f:?}");
    assert!(f.message.contains("already exists"), "{f:?}");
    // A reference to an id that exists only in the other tenant is unknown.
    a.post("/v1/tasks", &json!({"id": "only-in-a", "type": "echo"}))
        .await
        .unwrap();
    let f = failure(
        b.post(
            "/v1/tasks",
            &json!({"type": "echo", "depends_on": ["only-in-a"]}),
        )
        .await,
    );
    assert_eq!(f.status, 400, "{f:?}");
    assert!(f.message.contains("only-in-a"), "{f:?}");
    // An admin listing across tenants pages through both without mixing them up.
    let admin = client(&node, &t.admin);
    let mut seen = Vec::new();
    let mut path = "/v1/tasks?limit=1".to_string();
    loop {
        let page = admin.get(&path).await.unwrap();
        for task in page["tasks"].as_array().unwrap() {
            seen.push(format!(
                "{}/{}",
                task["tenant"].as_str().unwrap(),
                task["id"].as_str().unwrap()
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/tasks?limit=1&cursor={c}"),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["a/nightly-1", "a/only-in-a", "b/nightly-1"]);
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_quota_answers_429_naming_it_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tokens::new();
    // maxRunning 0 keeps a's tasks queued, so the queue quota is exact to observe.
    let tenants = json!({
        "a": {"quota": {"maxQueued": 5, "maxRunning": 0, "memoryKeys": 2, "memoryBytes": 4096}},
        "b": {"quota": {"submitRate": {"perSecond": 1, "burst": 3}}},
    });
    let node = start(dir.path(), "quotas", &t, tenants, None).await;
    let a = client(&node, &t.a);

    let four: Vec<Value> = (0..4)
        .map(|i| json!({"type": "echo", "payload": i}))
        .collect();
    a.post("/v1/tasks", &json!({ "tasks": four }))
        .await
        .unwrap();
    let two: Vec<Value> = (0..2)
        .map(|i| json!({"type": "echo", "payload": i}))
        .collect();
    let f = failure(a.post("/v1/tasks", &json!({ "tasks": two })).await);
    assert_eq!(
        (f.status, f.code.as_str()),
        (429, "QUOTA_EXCEEDED"),
        "{f:?}"
    );
    assert!(f.message.contains("queued_tasks"), "{f:?}");
    assert_eq!(
        count(&a, "pending").await,
        4,
        "nothing of the refused batch is stored"
    );
    a.post("/v1/tasks", &json!({"type": "echo"})).await.unwrap();
    assert_eq!(count(&a, "pending").await, 5);
    // maxRunning 0: nothing of a's ever starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&a, "running").await + count(&a, "completed").await, 0);

    a.put("/v1/memory/ns/k1", &json!(1)).await.unwrap();
    a.put("/v1/memory/ns/k2", &json!(2)).await.unwrap();
    let f = failure(a.put("/v1/memory/ns/k3", &json!(3)).await);
    assert_eq!(f.status, 429);
    assert!(f.message.contains("memory_keys"), "{f:?}");
    a.put("/v1/memory/ns/k2", &json!(22)).await.unwrap();
    let f = failure(a.put("/v1/memory/ns/k1", &json!("x".repeat(5000))).await);
    assert!(f.message.contains("memory_bytes"), "{f:?}");
    a.delete("/v1/memory/ns/k2").await.unwrap();
    a.put("/v1/memory/ns/k3", &json!(3)).await.unwrap();

    // b: a bucket of 3, refilled at one a second; the refusal says when to come back.
    let raw = reqwest::Client::new();
    let url = format!("http://{}/v1/tasks", node.local_addr);
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..4 {
        let resp = raw
            .post(&url)
            .bearer_auth(&t.b)
            .json(&json!({"type": "echo", "payload": i}))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
        if let Some(v) = resp.headers().get("retry-after") {
            retry_after = v.to_str().ok().and_then(|v| v.parse::<u64>().ok());
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["quota"], "submit_rate", "{body}");
        }
    }
    assert_eq!(statuses, [201, 201, 201, 429]);
    assert_eq!(retry_after, Some(1));
    // Another tenant is untouched by b's bucket.
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_submissions_on_two_hosts_never_pass_the_queue_quota() {
    let base = sentinel_postgres::testing::url();
    let schema = sentinel_postgres::testing::fresh_schema();
    let _owner = sentinel_postgres::PgStore::open_with(
        &base,
        sentinel_postgres::PgOptions {
            schema: Some(schema.clone()),
            drop_schema_on_drop: true,
            ..Default::default()
        },
    )
    .expect("PostgreSQL reachable");
    let sep = if base.contains('?') { '&' } else { '?' };
    let store = format!("{base}{sep}schema={schema}");
    let dir = tempfile::tempdir().unwrap();
    let t = Tokens::new();
    let tenants = json!({"a": {"quota": {"maxQueued": 50, "maxRunning": 0}}});
    let h1 = start(
        dir.path(),
        "race-1",
        &t,
        tenants.clone(),
        Some(store.clone()),
    )
    .await;
    let h2 = start(dir.path(), "race-2", &t, tenants, Some(store)).await;
    let hosts = [client(&h1, &t.a), client(&h2, &t.a)];
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..120 {
        let c = hosts[i % 2].clone();
        racers.spawn(async move {
            c.post("/v1/tasks", &json!({"type": "echo", "payload": i}))
                .await
                .map_err(|e| e.downcast_ref::<ApiFailure>().cloned().unwrap().status)
        });
    }
    let (mut stored, mut refused) = (0, 0);
    while let Some(r) = racers.join_next().await {
        match r.unwrap() {
            Ok(_) => stored += 1,
            Err(429) => refused += 1,
            Err(other) => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((stored, refused), (50, 70));
    assert_eq!(count(&hosts[0], "pending").await, 50);
    h1.shutdown(Duration::from_secs(5)).await;
    h2.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_tenant_cannot_delay_another_for_long() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tokens::new();
    let node = start(dir.path(), "fair", &t, json!({}), None).await;
    let (a, b) = (client(&node, &t.a), client(&node, &t.b));
    // a floods 3,000 tasks, at a higher priority than anything b submits.
    let batch: Vec<Value> = (0..1000)
        .map(|i| json!({"type": "echo", "payload": i, "priority": 1000}))
        .collect();
    for _ in 0..3 {
        a.post("/v1/tasks", &json!({ "tasks": batch }))
            .await
            .unwrap();
    }
    let started = Instant::now();
    let mut submits = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let b = b.clone();
        submits.spawn(async move {
            b.post("/v1/tasks", &json!({"type": "echo", "payload": "b"}))
                .await
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        });
    }
    let ids = submits.join_all().await;
    let mut b_last_start = String::new();
    for id in &ids {
        let done = wait_settled(&b, id, Duration::from_secs(60)).await;
        assert_eq!(done["status"], "completed");
        b_last_start = b_last_start.max(done["started_at"].as_str().unwrap().to_string());
    }
    let b_done = started.elapsed();
    // Most of a's flood started after b's last task did: b was served alongside a, not after.
    // Counted by start times (same clock, same format), not by what is left when this test
    // sees b done: how fast a drains while the test polls says nothing about the order.
    until(Duration::from_secs(60), "a's flood to finish", async || {
        (count(&a, "pending").await == 0 && count(&a, "running").await == 0).then_some(())
    })
    .await;
    let a_tasks = all_tasks_with(&a, "limit=1000").await;
    assert_eq!(a_tasks.len(), 3000);
    let a_before_b = a_tasks
        .iter()
        .filter(|t| {
            t["started_at"]
                .as_str()
                .is_some_and(|s| s < b_last_start.as_str())
        })
        .count();
    assert!(
        a_before_b <= 1500,
        "{a_before_b} of a's 3000 tasks started before b's last (b done after {b_done:?}): b waited behind a"
    );
    node.shutdown(Duration::from_secs(5)).await;
}
