//! Fair scheduling between tenants, measured like a user: a real `sentinel worker` process
//! (this build's binary), tokens for tenants `a` and `b`, and the HTTP API only.
//!
//! - **alone**: tenant B submits 1,000 trivial tasks (one request each, at a steady rate) to an
//!   idle host; B's p50/p95 submit→completion latency (the task's `finished_at - created_at`).
//! - **flooded**: tenant A first floods 100,000 trivial tasks (batches of 1,000), then B submits
//!   the same 1,000 the same way; B's latency, and the run's total throughput.
//! - **single tenant**: A alone runs the same 101,000 tasks: the throughput to compare with.
//!
//! The three scenarios are interleaved, `SENTINEL_BENCH_RUNS` times (default 3), and medians
//! are printed. A bench, not a test: it asserts nothing. Run with
//! `cargo bench -p sentinel --bench fairness`; `SENTINEL_BENCH_STORE=postgres://…` runs it on
//! PostgreSQL (each run in a fresh schema), `SENTINEL_BENCH_FLOOD` changes the flood size.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sentinel::client::Client;
use sentinel::tenancy::tokens::{digest_hex, new_token};
use serde_json::{Value, json};

const B_TASKS: usize = 1_000;
/// B's submission rate, tasks per second: well under its fair share, as a latency-sensitive
/// tenant would submit.
const B_RATE: f64 = 200.0;

struct Host {
    child: Child,
    a: Client,
    b: Client,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn spawn(dir: &Path, run: usize) -> Host {
    let (ta, tb) = (new_token(), new_token());
    let config = json!({
        "auth": {"tokens": [
            {"tenant": "a", "sha256": digest_hex(&ta)},
            {"tenant": "b", "sha256": digest_hex(&tb)},
        ]},
        "tenants": {"a": {"weight": 1}, "b": {"weight": 1}},
    });
    let path = dir.join("fairness.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let store = match std::env::var("SENTINEL_BENCH_STORE") {
        Ok(url) if url.starts_with("postgres") => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}schema=fairness_{}_{run}", std::process::id())
        }
        _ => format!("sqlite://{}", dir.join("store.db").display()),
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .args(["worker", "--listen", "127.0.0.1:0", "--store", &store])
        .arg("--config")
        .arg(&path)
        .arg("--plugins")
        .arg(&sentinel_guest_build::build_once().plugins_dir)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--worker-id", "fairness", "--log-format", "json"])
        .env("SENTINEL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning sentinel");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent {
                if let Some(addr) = line.strip_prefix("sentinel listening on ") {
                    let _ = tx.send(addr.split_whitespace().next().unwrap_or("").to_string());
                    sent = true;
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("sentinel did not start");
    Host {
        child,
        a: Client::new(&addr, Some(&ta), None).unwrap(),
        b: Client::new(&addr, Some(&tb), None).unwrap(),
    }
}

fn ms(iso: &Value) -> i64 {
    let t = humantime::parse_rfc3339(iso.as_str().unwrap_or_default()).expect("an RFC 3339 time");
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Every task of the client's tenant (all pages), once all are settled.
async fn all_tasks(c: &Client) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cur) => format!("/v1/tasks?limit=1000&cursor={cur}"),
            None => "/v1/tasks?limit=1000".into(),
        };
        let page = c.get(&path).await.unwrap();
        out.extend(page["tasks"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return out,
        }
    }
}

/// Waits until the client's tenant has no pending, running or retrying task.
async fn wait_all_settled(c: &Client, limit: Duration) {
    let start = Instant::now();
    loop {
        let pending = c.get("/v1/tasks?status=pending&limit=1").await.unwrap();
        let running = c.get("/v1/tasks?status=running&limit=1").await.unwrap();
        let failed = c.get("/v1/tasks?status=failed&limit=1").await.unwrap();
        if [pending, running, failed]
            .iter()
            .all(|p| p["tasks"].as_array().is_none_or(|t| t.is_empty()))
        {
            return;
        }
        assert!(start.elapsed() < limit, "tasks did not settle in {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn flood(a: &Client, n: usize) {
    let batch: Vec<Value> = (0..1000)
        .map(|i| json!({"type": "echo", "payload": i}))
        .collect();
    let mut left = n;
    while left > 0 {
        let k = left.min(1000);
        a.post("/v1/tasks", &json!({ "tasks": &batch[..k] }))
            .await
            .unwrap();
        left -= k;
    }
}

/// B submits its tasks one request each at `B_RATE`; returns p50 and p95 latency (ms).
async fn tenant_b(b: &Client) -> (f64, f64) {
    let gap = Duration::from_secs_f64(1.0 / B_RATE);
    let start = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..B_TASKS {
        let due = start + gap * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let b = b.clone();
        sends.spawn(async move {
            b.post("/v1/tasks", &json!({"type": "echo", "payload": i}))
                .await
                .unwrap();
        });
    }
    while sends.join_next().await.is_some() {}
    wait_all_settled(b, Duration::from_secs(600)).await;
    let tasks = all_tasks(b).await;
    let mut lat: Vec<i64> = tasks
        .iter()
        .map(|t| ms(&t["finished_at"]) - ms(&t["created_at"]))
        .collect();
    assert_eq!(lat.len(), B_TASKS);
    lat.sort_unstable();
    let mean =
        |f: &dyn Fn(&Value) -> i64| tasks.iter().map(f).sum::<i64>() as f64 / tasks.len() as f64;
    eprintln!(
        "    mean: submit→claim {:.3} ms, claim→settled {:.3} ms, total {:.3} ms",
        mean(&|t| ms(&t["started_at"]) - ms(&t["created_at"])),
        mean(&|t| ms(&t["finished_at"]) - ms(&t["started_at"])),
        mean(&|t| ms(&t["finished_at"]) - ms(&t["created_at"])),
    );
    (lat[lat.len() / 2] as f64, lat[lat.len() * 95 / 100] as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs = env_usize("SENTINEL_BENCH_RUNS", 3);
    let flood_n = env_usize("SENTINEL_BENCH_FLOOD", 100_000);
    let (mut alone, mut flooded, mut single, mut shared) = (vec![], vec![], vec![], vec![]);
    for run in 0..runs {
        // B alone.
        let dir = tempfile::tempdir().unwrap();
        let host = spawn(dir.path(), run * 3);
        let (p50, p95) = tenant_b(&host.b).await;
        println!("run {run}: B alone           p50 {p50:>6.1} ms  p95 {p95:>6.1} ms");
        alone.push(p50);
        drop(host);

        // A floods, then B.
        let dir = tempfile::tempdir().unwrap();
        let host = spawn(dir.path(), run * 3 + 1);
        let start = Instant::now();
        flood(&host.a, flood_n).await;
        let (p50, p95) = tenant_b(&host.b).await;
        wait_all_settled(&host.a, Duration::from_secs(1800)).await;
        let rate = (flood_n + B_TASKS) as f64 / start.elapsed().as_secs_f64();
        println!(
            "run {run}: B under A's flood p50 {p50:>6.1} ms  p95 {p95:>6.1} ms  total {rate:>8.0} tasks/s"
        );
        flooded.push(p50);
        shared.push(rate);
        drop(host);

        // A alone, the same number of tasks.
        let dir = tempfile::tempdir().unwrap();
        let host = spawn(dir.path(), run * 3 + 2);
        let start = Instant::now();
        flood(&host.a, flood_n + B_TASKS).await;
        wait_all_settled(&host.a, Duration::from_secs(1800)).await;
        let rate = (flood_n + B_TASKS) as f64 / start.elapsed().as_secs_f64();
        println!("run {run}: single tenant      total {rate:>8.0} tasks/s");
        single.push(rate);
        drop(host);
    }
    let (alone, flooded) = (median(alone), median(flooded));
    let (single, shared) = (median(single), median(shared));
    println!(
        "\nmedians of {runs}: B p50 alone {alone:.1} ms, flooded {flooded:.1} ms ({:+.1}%); \
         throughput single tenant {single:.0}/s, two tenants {shared:.0}/s ({:+.1}%)",
        (flooded / alone - 1.0) * 100.0,
        (shared / single - 1.0) * 100.0
    );
}
