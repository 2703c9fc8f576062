//! Enqueue → claim → complete throughput of trivial tasks on the embedded SQLite store.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sentinel_coord::model::{ClaimRequest, Completion, NewTask};
use sentinel_coord::{SqliteStore, Store, clock};

fn claim_req(limit: u32) -> ClaimRequest {
    ClaimRequest {
        worker_id: "bench".into(),
        task_types: None,
        tenants: None,
        limit,
        lease_ms: 60_000,
        incarnation: 0,
    }
}

async fn cycle(store: &Arc<dyn Store>, tasks: usize, batch: usize) {
    let new: Vec<NewTask> = (0..tasks)
        .map(|_| NewTask::new("noop", b"{}".to_vec()))
        .collect();
    for chunk in new.chunks(batch) {
        store.enqueue(chunk).await.unwrap();
    }
    let mut left = tasks;
    while left > 0 {
        let got = store.claim(&claim_req(batch as u32)).await.unwrap();
        assert!(!got.is_empty());
        left -= got.len();
        let done: Vec<Completion> = got
            .iter()
            .map(|t| Completion {
                tenant: t.tenant.clone(),
                task_id: t.id.clone(),
                fence: t.fence,
                output: Vec::new(),
            })
            .collect();
        store.complete(&done).await.unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temporary(clock::system()).unwrap());
    let mut g = c.benchmark_group("queue");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(1));
    g.bench_function("enqueue_claim_complete_single", |b| {
        b.to_async(&rt).iter(|| cycle(&store, 1, 1))
    });
    for batch in [64usize, 256] {
        g.throughput(Throughput::Elements(2048));
        g.bench_function(format!("enqueue_claim_complete_batch_{batch}"), |b| {
            b.to_async(&rt).iter(|| cycle(&store, 2048, batch))
        });
    }
    // Two concurrent workers claiming from the same queue, batched.
    g.throughput(Throughput::Elements(4096));
    g.bench_function("two_workers_batch_256", |b| {
        b.to_async(&rt).iter(|| async {
            let new: Vec<NewTask> = (0..4096)
                .map(|_| NewTask::new("noop", b"{}".to_vec()))
                .collect();
            for chunk in new.chunks(512) {
                store.enqueue(chunk).await.unwrap();
            }
            let mut hs = Vec::new();
            for _ in 0..2 {
                let store = store.clone();
                hs.push(tokio::spawn(async move {
                    loop {
                        let got = store.claim(&claim_req(256)).await.unwrap();
                        if got.is_empty() {
                            return;
                        }
                        let done: Vec<Completion> = got
                            .iter()
                            .map(|t| Completion {
                                tenant: t.tenant.clone(),
                                task_id: t.id.clone(),
                                fence: t.fence,
                                output: Vec::new(),
                            })
                            .collect();
                        store.complete(&done).await.unwrap();
                    }
                }));
            }
            for h in hs {
                h.await.unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
