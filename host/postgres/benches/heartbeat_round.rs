//! What a fleet's heartbeats cost one PostgreSQL server (issue #13 target: a round of 1,000
//! simulated workers at ≤ 30% of one core).
//!
//! 1,000 workers are registered, each holding 4 running tasks. One round is what each host's
//! heartbeat does once per interval: `record_heartbeat` plus `extend_worker_leases` for every
//! worker, 16 in flight. The bench runs `ROUNDS` rounds back to back and reads the CPU time of
//! every `postgres` process on the machine (`/proc/<pid>/stat`, clock ticks) and of this process
//! before and after, then prints CPU per round and what that is as a share of one core at the
//! default heartbeat interval (30 s) and at one round per second (the worst a fleet configured
//! with `--heartbeat-interval-ms 1000` would see).
//!
//! A bench binary, not a test: it prints figures and asserts nothing. Needs
//! `SENTINEL_TEST_POSTGRES_URL` and a PostgreSQL server on this machine (its processes are read
//! from `/proc`). Run: `cargo bench -p sentinel-postgres --bench heartbeat_round`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sentinel_coord::Store;
use sentinel_coord::model::*;
use sentinel_postgres::testing;

const WORKERS: usize = 1_000;
const TASKS_PER_WORKER: u32 = 4;
const ROUNDS: usize = 20;
const IN_FLIGHT: usize = 16;
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// CPU seconds (user + system) of the processes `filter(pid, comm)` accepts.
fn cpu_seconds(filter: &dyn Fn(&str, &str) -> bool) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0u64;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    for e in dir.flatten() {
        let pid = e.file_name().to_string_lossy().to_string();
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ...`: comm may hold spaces, so split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        if !filter(&pid, comm) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        // After the comm: state is field 3, utime 14, stime 15 (1-based in proc(5)).
        let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
        let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        total += utime + stime;
    }
    total as f64 / tick
}

fn server_cpu() -> f64 {
    cpu_seconds(&|_, comm| comm.starts_with("postgres"))
}

fn own_cpu() -> f64 {
    let me = std::process::id().to_string();
    cpu_seconds(&|pid, _| pid == me)
}

async fn setup(store: &Arc<dyn Store>) {
    for i in 0..WORKERS {
        let reg = WorkerRegistration {
            worker_id: format!("hb-{i:04}"),
            hostname: "bench".into(),
            capacity: WorkerCapacity::with_max(TASKS_PER_WORKER),
            capabilities: WorkerCapabilities::default(),
            metadata: serde_json::Value::Null,
            incarnation: 1,
            heartbeat_interval_ms: 0,
            stale_threshold_ms: 0,
        };
        store.register_worker(&reg).await.expect("register");
    }
    let tasks: Vec<NewTask> = (0..WORKERS * TASKS_PER_WORKER as usize)
        .map(|_| NewTask::new("bench", "{}"))
        .collect();
    for chunk in tasks.chunks(1000) {
        store.enqueue(chunk).await.expect("enqueue");
    }
    for i in 0..WORKERS {
        let req = ClaimRequest {
            worker_id: format!("hb-{i:04}"),
            task_types: None,
            tenants: None,
            limit: TASKS_PER_WORKER,
            lease_ms: 600_000,
            incarnation: 1,
        };
        let got = store.claim(&req).await.expect("claim");
        assert_eq!(
            got.len(),
            TASKS_PER_WORKER as usize,
            "every worker holds its tasks"
        );
    }
}

async fn round(store: &Arc<dyn Store>) {
    let mut lanes = Vec::new();
    for lane in 0..IN_FLIGHT {
        let store = store.clone();
        lanes.push(tokio::spawn(async move {
            let info = HeartbeatInfo {
                load: Some(0.5),
                memory_bytes: Some(64 << 20),
                active_tasks: Some(TASKS_PER_WORKER),
                extra: serde_json::Value::Null,
                seal: None,
            };
            for i in (lane..WORKERS).step_by(IN_FLIGHT) {
                let id = format!("hb-{i:04}");
                let known = store
                    .record_heartbeat(&id, 1, &info)
                    .await
                    .expect("heartbeat");
                assert!(known, "{id} is registered");
                let extended = store
                    .extend_worker_leases(&id, 1, 600_000)
                    .await
                    .expect("extend leases");
                assert_eq!(extended, TASKS_PER_WORKER as u64);
            }
        }));
    }
    for l in lanes {
        l.await.expect("lane");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    {
        let store: Arc<dyn Store> = Arc::new(testing::fresh_store(None).await);
        setup(&store).await;
        round(&store).await; // warm: connections, prepared statements
        let (s0, c0, t0) = (server_cpu(), own_cpu(), Instant::now());
        for _ in 0..ROUNDS {
            round(&store).await;
        }
        let (s1, c1, wall) = (server_cpu(), own_cpu(), t0.elapsed());
        let server = (s1 - s0) / ROUNDS as f64;
        let client = (c1 - c0) / ROUNDS as f64;
        let per_round = wall.as_secs_f64() / ROUNDS as f64;
        println!(
            "heartbeat round: {WORKERS} workers x (record_heartbeat + extend_worker_leases of \
             {TASKS_PER_WORKER} tasks), {IN_FLIGHT} in flight, {ROUNDS} rounds"
        );
        println!(
            "  wall {:.1} ms/round; CPU per round: PostgreSQL server {:.1} ms, simulator {:.1} ms",
            per_round * 1e3,
            server * 1e3,
            client * 1e3
        );
        println!(
            "  PostgreSQL share of one core: {:.2}% at the default {} s interval, {:.1}% at one round per second",
            server / DEFAULT_INTERVAL.as_secs_f64() * 100.0,
            DEFAULT_INTERVAL.as_secs(),
            server * 100.0
        );
    }
}
