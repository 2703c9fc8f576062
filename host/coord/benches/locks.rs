//! Lock acquire + release throughput on the embedded SQLite store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sentinel_coord::model::LockRequest;
use sentinel_coord::{SqliteStore, Store, clock};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temporary(clock::system()).unwrap());
    let n = AtomicU64::new(0);
    let mut g = c.benchmark_group("locks");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(1));
    g.bench_function("acquire_release", |b| {
        b.to_async(&rt).iter(|| async {
            let i = n.fetch_add(1, Ordering::Relaxed);
            let req = LockRequest {
                tenant: "default".into(),
                key: format!("task-{}", i % 64),
                owner: "worker-1".into(),
                ttl_ms: 300_000,
                metadata: serde_json::Value::Null,
                holder_secret: None,
            };
            let lock = store.acquire_lock(&req).await.unwrap().expect("free");
            store
                .release_lock(&lock.tenant, &lock.key, &lock.owner, lock.token, None)
                .await
                .unwrap();
        })
    });
    // Eight concurrent clients on distinct keys: what a busy host sees.
    g.throughput(Throughput::Elements(8 * 64));
    g.bench_function("acquire_release_8_clients", |b| {
        b.to_async(&rt).iter(|| async {
            let mut hs = Vec::new();
            for c in 0..8 {
                let store = store.clone();
                hs.push(tokio::spawn(async move {
                    for i in 0..64 {
                        let req = LockRequest {
                            tenant: "default".into(),
                            key: format!("c{c}-{i}"),
                            owner: format!("worker-{c}"),
                            ttl_ms: 300_000,
                            metadata: serde_json::Value::Null,
                            holder_secret: None,
                        };
                        let lock = store.acquire_lock(&req).await.unwrap().expect("free");
                        store
                            .release_lock(&lock.tenant, &lock.key, &lock.owner, lock.token, None)
                            .await
                            .unwrap();
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
