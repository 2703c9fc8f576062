//! Several workers, each with its own store (own client, caches and local turn-taking, as
//! separate processes would have), race through one emulated repository. The ref CAS must keep
//! every lock to one holder with a valid fence and every task to one claim.

mod emulator;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use sentinel_coord::model::*;
use sentinel_coord::{Clock, ManualClock, Store};
use sentinel_github::GithubStore;

async fn fleet(
    emu: &emulator::Emulator,
    clock: &Arc<ManualClock>,
    n: usize,
) -> Vec<Arc<dyn Store>> {
    let mut v = Vec::new();
    for _ in 0..n {
        let c: Arc<dyn Clock> = clock.clone();
        v.push(Arc::new(GithubStore::connect(emu.config(), c).await.unwrap()) as Arc<dyn Store>);
    }
    v
}

fn req(owner: &str, ttl_ms: u64) -> LockRequest {
    LockRequest {
        tenant: "t".into(),
        key: "hot".into(),
        owner: owner.into(),
        ttl_ms,
        metadata: serde_json::json!({"pid": 1}),
        holder_secret: None,
    }
}

/// A fenced resource: remembers the highest token it has accepted and refuses older ones.
#[derive(Default)]
struct Fenced {
    highest: u64,
    writes: Vec<(String, u64)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_workers_never_hold_a_lock_together() {
    let emu = emulator::Emulator::start().await;
    let clock = ManualClock::new();
    let stores = fleet(&emu, &clock, 5).await;
    let inside = Arc::new(AtomicU32::new(0));
    let grants = Arc::new(Mutex::new(Vec::<u64>::new()));
    let resource = Arc::new(Mutex::new(Fenced::default()));
    let mut handles = Vec::new();
    for (i, s) in stores.iter().enumerate() {
        let (s, inside, grants, resource) =
            (s.clone(), inside.clone(), grants.clone(), resource.clone());
        handles.push(tokio::spawn(async move {
            let me = format!("w{i}");
            let mut held = 0;
            for _ in 0..200 {
                if held == 3 {
                    break;
                }
                let Some(lock) = s.acquire_lock(&req(&me, 60_000)).await.unwrap() else {
                    tokio::task::yield_now().await;
                    continue;
                };
                assert_eq!(
                    inside.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two holders at once"
                );
                grants.lock().unwrap().push(lock.token);
                {
                    let mut r = resource.lock().unwrap();
                    assert!(lock.token > r.highest, "a grant's fence is not the newest");
                    r.highest = lock.token;
                    r.writes.push((me.clone(), lock.token));
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                s.release_lock("t", "hot", &me, lock.token, None)
                    .await
                    .unwrap();
                held += 1;
            }
            held
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    let grants = grants.lock().unwrap().clone();
    assert_eq!(total, grants.len());
    assert!(
        total >= 5,
        "every worker got the lock at least once: {grants:?}"
    );
    assert!(
        grants.windows(2).all(|w| w[0] < w[1]),
        "fences strictly increase in grant order: {grants:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lock_is_taken_over_by_exactly_one_racer() {
    let emu = emulator::Emulator::start().await;
    let clock = ManualClock::new();
    let stores = fleet(&emu, &clock, 6).await;
    let old = stores[0]
        .acquire_lock(&req("old", 1000))
        .await
        .unwrap()
        .unwrap();
    clock.advance_ms(1000);
    let mut handles = Vec::new();
    for (i, s) in stores.iter().enumerate().skip(1) {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            s.acquire_lock(&req(&format!("new{i}"), 60_000))
                .await
                .unwrap()
        }));
    }
    let mut winners = Vec::new();
    for h in handles {
        winners.extend(h.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "one takeover per expiry: {winners:?}");
    assert!(winners[0].token > old.token);
    assert_eq!(
        stores[0]
            .release_lock("t", "hot", "old", old.token, None)
            .await
            .unwrap_err()
            .code(),
        "INVALID_OWNER",
        "the old holder's fence is dead"
    );
    assert_eq!(
        stores[0].get_lock("t", "hot").await.unwrap().unwrap().owner,
        winners[0].owner
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_workers_claim_each_task_once() {
    let emu = emulator::Emulator::start().await;
    let clock = ManualClock::new();
    let stores = fleet(&emu, &clock, 4).await;
    let ids = stores[0]
        .enqueue(
            &(0..40)
                .map(|i| NewTask::new("t", format!("{i}")))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let mut handles = Vec::new();
    for (w, s) in stores.iter().enumerate() {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = s
                    .claim(&ClaimRequest {
                        worker_id: format!("w{w}"),
                        task_types: None,
                        tenants: None,
                        limit: 3,
                        lease_ms: 60_000,
                        incarnation: 0,
                    })
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return mine;
                }
                let done: Vec<Completion> = batch
                    .iter()
                    .map(|t| Completion {
                        tenant: t.tenant.clone(),
                        task_id: t.id.clone(),
                        fence: t.fence,
                        output: vec![],
                    })
                    .collect();
                let settled = s.complete(&done).await.unwrap();
                assert!(
                    settled
                        .iter()
                        .all(|x| *x == Settlement::Applied(TaskState::Completed))
                );
                mine.extend(batch.into_iter().map(|t| t.id));
            }
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (40, 40));
    assert_eq!(unique, ids.iter().collect());
    assert_eq!(stores[3].queue_stats(None).await.unwrap().completed, 40);
}
