//! PostgreSQL store next to the SQLite store, in one run, on the same machine:
//!
//! * `queue_cycle/<backend>/<batch>`: enqueue → claim → complete of 4,000 trivial tasks, batched
//!   (submit, claim and complete `batch` at a time) with 2 concurrent workers woken by the
//!   store's task notifications.
//! * `lock_cycle/<backend>`: acquire + release of a lock, one caller.
//! * `heartbeats_1000/<backend>`: one heartbeat from each of 1,000 registered workers, 8 in
//!   flight at a time.
//!
//! Needs `SENTINEL_TEST_POSTGRES_URL` (the PostgreSQL store works in a fresh schema, dropped at
//! the end). After criterion's report, prints each figure per second and the PostgreSQL/SQLite
//! ratio. Run: `cargo bench -p sentinel-postgres`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use sentinel_coord::model::*;
use sentinel_coord::{SqliteStore, Store, Topic};
use sentinel_postgres::testing;

const CYCLE_TASKS: usize = 4_000;
const WORKERS: usize = 1_000;

/// (elements, elapsed) summed over every measured iteration, per benchmark id, for the
/// ratio table printed at the end.
static TOTALS: Mutex<BTreeMap<String, (u64, Duration)>> = Mutex::new(BTreeMap::new());

fn record(id: &str, elements: u64, elapsed: Duration) {
    let mut t = TOTALS.lock().unwrap();
    let e = t.entry(id.to_string()).or_default();
    e.0 += elements;
    e.1 += elapsed;
}

struct Backends {
    stores: Vec<(&'static str, Arc<dyn Store>)>,
    _dir: tempfile::TempDir,
}

fn backends(rt: &tokio::runtime::Runtime) -> Backends {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqliteStore::open(dir.path().join("bench.db")).expect("open SQLite");
    let pg = rt.block_on(testing::fresh_store(None));
    Backends {
        stores: vec![
            ("postgres", Arc::new(pg) as Arc<dyn Store>),
            ("sqlite", Arc::new(sqlite) as Arc<dyn Store>),
        ],
        _dir: dir,
    }
}

/// One full cycle of `n` tasks through the queue; returns its wall time.
async fn queue_cycle(store: Arc<dyn Store>, n: usize, batch: usize) -> Duration {
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let submitter = {
        let store = store.clone();
        tokio::spawn(async move {
            for chunk in 0..n.div_ceil(batch) {
                let size = batch.min(n - chunk * batch);
                let tasks: Vec<NewTask> = (0..size).map(|_| NewTask::new("bench", "{}")).collect();
                store.enqueue(&tasks).await.expect("enqueue");
            }
        })
    };
    let mut workers = Vec::new();
    for w in 0..2 {
        let store = store.clone();
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            let mut wake = store.subscribe(Topic::Tasks);
            let req = ClaimRequest {
                worker_id: format!("bench-{w}"),
                task_types: None,
                tenants: None,
                limit: batch as u32,
                lease_ms: 60_000,
                incarnation: 0,
            };
            while done.load(Ordering::Relaxed) < n {
                wake.borrow_and_update();
                let claimed = store.claim(&req).await.expect("claim");
                if claimed.is_empty() {
                    // Woken by the next submit; the timeout only covers the end of the run.
                    let _ = tokio::time::timeout(Duration::from_millis(5), wake.changed()).await;
                    continue;
                }
                let completions: Vec<Completion> = claimed
                    .iter()
                    .map(|t| Completion {
                        tenant: t.tenant.clone(),
                        task_id: t.id.clone(),
                        fence: t.fence,
                        output: b"{}".to_vec(),
                    })
                    .collect();
                let settled = store.complete(&completions).await.expect("complete");
                done.fetch_add(settled.len(), Ordering::Relaxed);
            }
        }));
    }
    submitter.await.unwrap();
    for w in workers {
        w.await.unwrap();
    }
    start.elapsed()
}

fn bench_queue(c: &mut Criterion, rt: &tokio::runtime::Runtime, b: &Backends) {
    let mut group = c.benchmark_group("queue_cycle");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(CYCLE_TASKS as u64));
    for batch in [100usize, 500] {
        for (name, store) in &b.stores {
            let id = format!("queue_cycle/{name}/{batch}");
            group.bench_function(BenchmarkId::new(*name, batch), |bencher| {
                bencher.to_async(rt).iter_custom(|iters| {
                    let store = store.clone();
                    let id = id.clone();
                    async move {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            total += queue_cycle(store.clone(), CYCLE_TASKS, batch).await;
                        }
                        record(&id, iters * CYCLE_TASKS as u64, total);
                        total
                    }
                })
            });
        }
    }
    group.finish();
}

fn bench_locks(c: &mut Criterion, rt: &tokio::runtime::Runtime, b: &Backends) {
    let mut group = c.benchmark_group("lock_cycle");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(1));
    for (name, store) in &b.stores {
        let id = format!("lock_cycle/{name}");
        group.bench_function(*name, |bencher| {
            bencher.to_async(rt).iter_custom(|iters| {
                let store = store.clone();
                let id = id.clone();
                async move {
                    let start = Instant::now();
                    for i in 0..iters {
                        let req = LockRequest {
                            tenant: "bench".into(),
                            key: format!("k{}", i % 64),
                            owner: "bench-worker".into(),
                            ttl_ms: 30_000,
                            metadata: serde_json::Value::Null,
                            holder_secret: None,
                        };
                        let lock = store.acquire_lock(&req).await.unwrap().expect("free lock");
                        store
                            .release_lock(&lock.tenant, &lock.key, &lock.owner, lock.token, None)
                            .await
                            .unwrap();
                    }
                    let elapsed = start.elapsed();
                    record(&id, iters, elapsed);
                    elapsed
                }
            })
        });
    }
    group.finish();
}

fn bench_heartbeats(c: &mut Criterion, rt: &tokio::runtime::Runtime, b: &Backends) {
    let mut group = c.benchmark_group("heartbeats_1000");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(WORKERS as u64));
    for (name, store) in &b.stores {
        rt.block_on(async {
            for i in 0..WORKERS {
                let reg = WorkerRegistration {
                    worker_id: format!("hb-{i:04}"),
                    hostname: "bench".into(),
                    capacity: WorkerCapacity::with_max(4),
                    capabilities: WorkerCapabilities::default(),
                    metadata: serde_json::Value::Null,
                    incarnation: 0,
                    heartbeat_interval_ms: 0,
                    stale_threshold_ms: 0,
                };
                store.register_worker(&reg).await.expect("register");
            }
        });
        let id = format!("heartbeats_1000/{name}");
        group.bench_function(*name, |bencher| {
            bencher.to_async(rt).iter_custom(|iters| {
                let store = store.clone();
                let id = id.clone();
                async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let mut lanes = Vec::new();
                        for lane in 0..8 {
                            let store = store.clone();
                            lanes.push(tokio::spawn(async move {
                                let info = HeartbeatInfo {
                                    load: Some(0.5),
                                    memory_bytes: Some(64 << 20),
                                    active_tasks: Some(1),
                                    extra: serde_json::Value::Null,
                                    seal: None,
                                };
                                for i in (lane..WORKERS).step_by(8) {
                                    let known = store
                                        .record_heartbeat(&format!("hb-{i:04}"), 0, &info)
                                        .await
                                        .expect("heartbeat");
                                    assert!(known);
                                }
                            }));
                        }
                        for l in lanes {
                            l.await.unwrap();
                        }
                    }
                    let elapsed = start.elapsed();
                    record(&id, iters * WORKERS as u64, elapsed);
                    elapsed
                }
            })
        });
    }
    group.finish();
}

fn print_ratios() {
    let totals = TOTALS.lock().unwrap();
    let rate = |id: &str| {
        totals
            .get(id)
            .map(|(n, d)| *n as f64 / d.as_secs_f64().max(f64::EPSILON))
    };
    println!("\n== PostgreSQL vs SQLite (mean over all measured iterations of this run)");
    let rows = [
        (
            "enqueue→claim→complete, batch 100, tasks/s",
            "queue_cycle",
            "/100",
        ),
        (
            "enqueue→claim→complete, batch 500, tasks/s",
            "queue_cycle",
            "/500",
        ),
        ("lock acquire+release, cycles/s", "lock_cycle", ""),
        (
            "heartbeats of 1,000 workers, heartbeats/s",
            "heartbeats_1000",
            "",
        ),
    ];
    for (label, group, suffix) in rows {
        let pg = rate(&format!("{group}/postgres{suffix}"));
        let lite = rate(&format!("{group}/sqlite{suffix}"));
        if let (Some(pg), Some(lite)) = (pg, lite) {
            println!(
                "{label:<46} postgres {pg:>10.0}  sqlite {lite:>10.0}  ratio {:.2}",
                pg / lite
            );
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let b = backends(&rt);
    let mut c = Criterion::default().configure_from_args();
    bench_queue(&mut c, &rt, &b);
    bench_locks(&mut c, &rt, &b);
    bench_heartbeats(&mut c, &rt, &b);
    c.final_summary();
    print_ratios();
    // Drop the stores inside the runtime: the PostgreSQL store stops its listener and drops its
    // schema as it goes.
    rt.block_on(async move { drop(b) });
}
