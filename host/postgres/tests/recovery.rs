//! The store survives the server dropping every connection mid-run: calls in flight fail as
//! `Unavailable` (never a panic, never another error), later calls succeed on fresh pooled
//! connections, the LISTEN connection comes back, and no task is lost or completed twice.
//! Needs `SENTINEL_TEST_POSTGRES_URL`; fails loudly without it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sentinel_coord::model::*;
use sentinel_coord::{QueueStore, Store, StoreError, Topic};
use sentinel_postgres::{PgStore, testing};

const TASKS: usize = 2_000;
/// Only this test's sessions are terminated, so tests running at the same time against the
/// same database are not disturbed.
const APP: &str = "sentinel-recovery-test";

async fn open(schema: &str, owner: bool) -> PgStore {
    testing::ensure_database().await;
    let mut options = testing::options(schema, None, owner);
    options.application_name = APP.into();
    PgStore::connect_with(&testing::url(), options)
        .await
        .expect("connect")
}

/// Terminates every backend of this test's stores, from a separate admin connection.
async fn terminate_backends(admin: &tokio_postgres::Client) -> u64 {
    admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND application_name = $1",
            &[&APP],
        )
        .await
        .expect("terminate backends")
        .len() as u64
}

/// Anything but `Unavailable` is a bug here.
fn expect_unavailable(e: StoreError, what: &str, count: &AtomicU64) {
    assert!(
        e.is_unavailable(),
        "{what} failed with a non-retryable error: {e:?}"
    );
    count.fetch_add(1, Ordering::Relaxed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_recovers_when_the_server_drops_its_connections() {
    let schema = testing::fresh_schema();
    let owner = Arc::new(open(&schema, true).await);
    let other = Arc::new(open(&schema, false).await);
    let (admin, admin_conn) = tokio_postgres::connect(&testing::url(), tokio_postgres::NoTls)
        .await
        .expect("admin connection");
    tokio::spawn(admin_conn);

    let batch: Vec<NewTask> = (0..TASKS)
        .map(|i| NewTask::new("t", format!("{i}")))
        .collect();
    owner.enqueue(&batch).await.unwrap();

    let applied: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    // Completions whose first attempt failed as Unavailable and whose retry found the task
    // already completed: the reply of a committed completion was lost with the connection.
    let lost_replies: Arc<Mutex<HashSet<String>>> = Arc::default();
    let settled = {
        let (applied, lost) = (applied.clone(), lost_replies.clone());
        move || {
            let a = applied.lock().unwrap();
            let l = lost.lock().unwrap();
            a.len() + l.iter().filter(|id| !a.contains_key(*id)).count()
        }
    };
    let unavailable = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(tokio::sync::Notify::new());

    // Two workers on two pools: claim, "run", complete (retrying a completion whose outcome is
    // unknown: the store refuses a second one, so at most one is ever applied).
    let mut workers = Vec::new();
    for (n, s) in [owner.clone(), other.clone()].into_iter().enumerate() {
        let applied = applied.clone();
        let lost_replies = lost_replies.clone();
        let settled = settled.clone();
        let unavailable = unavailable.clone();
        workers.push(tokio::spawn(async move {
            let worker = format!("w{n}");
            loop {
                if settled() == TASKS {
                    return;
                }
                let req = ClaimRequest {
                    worker_id: worker.clone(),
                    task_types: None,
                    tenants: None,
                    limit: 20,
                    // Short, so a claim whose reply was lost with the connection is requeued
                    // soon by the reaper below.
                    lease_ms: 1_500,
                    incarnation: 0,
                };
                let batch = match s.claim(&req).await {
                    Ok(b) => b,
                    Err(e) => {
                        expect_unavailable(e, "claim", &unavailable);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                if batch.is_empty() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let done: Vec<Completion> = batch
                    .iter()
                    .map(|t| Completion {
                        tenant: t.tenant.clone(),
                        task_id: t.id.clone(),
                        fence: t.fence,
                        output: b"ok".to_vec(),
                    })
                    .collect();
                let mut retried = false;
                let outcome = loop {
                    match s.complete(&done).await {
                        Ok(x) => break x,
                        Err(e) => {
                            expect_unavailable(e, "complete", &unavailable);
                            retried = true;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                };
                let mut map = applied.lock().unwrap();
                for (c, st) in done.iter().zip(outcome) {
                    match st {
                        Settlement::Applied(TaskState::Completed) => {
                            *map.entry(c.task_id.clone()).or_default() += 1;
                        }
                        Settlement::Rejected(Rejection::NotRunning(TaskState::Completed))
                            if retried =>
                        {
                            lost_replies.lock().unwrap().insert(c.task_id.clone());
                        }
                        _ => {}
                    }
                }
            }
        }));
    }

    // The reaper requeues tasks whose claim reply (or completion) was lost.
    let reaper = {
        let s = owner.clone();
        let unavailable = unavailable.clone();
        let finished = finished.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = finished.notified() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                if let Err(e) = s.reap_expired(&RetryPolicy::default()).await {
                    expect_unavailable(e, "reap", &unavailable);
                }
            }
        })
    };

    // Kill every connection at three points of progress, and keep killing (bounded) until some
    // call has visibly failed, so the test proves the failure mode and not just luck.
    let mut kills = 0;
    for threshold in [300, 900, 1500] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while settled() < threshold {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no progress towards {threshold}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        terminate_backends(&admin).await;
        kills += 1;
    }
    while unavailable.load(Ordering::Relaxed) == 0 && kills < 50 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        terminate_backends(&admin).await;
        kills += 1;
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while settled() < TASKS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled at {} of {TASKS} completions",
            settled()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for w in workers {
        w.await.unwrap();
    }
    finished.notify_one();
    reaper.await.unwrap();

    assert!(
        unavailable.load(Ordering::Relaxed) > 0,
        "after {kills} rounds of terminated connections, some call should have reported Unavailable"
    );
    let map = applied.lock().unwrap().clone();
    assert_eq!(settled(), TASKS, "no task lost");
    assert!(map.values().all(|&n| n == 1), "no task completed twice");
    let stats = owner.queue_stats(None).await.unwrap();
    assert_eq!(
        (stats.completed, stats.total()),
        (TASKS as u64, TASKS as u64)
    );

    // The LISTEN connection was terminated too; it must have come back.
    let mut rx = owner.subscribe(Topic::Tasks);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        rx.borrow_and_update();
        other.enqueue(&[NewTask::new("t", "after")]).await.unwrap();
        if tokio::time::timeout(Duration::from_millis(500), rx.changed())
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the LISTEN connection did not come back"
        );
    }
    eprintln!(
        "recovered from {kills} rounds of terminated connections; {} calls reported Unavailable",
        unavailable.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable_not_a_panic() {
    // Nothing listens on port 1: connecting is refused at once.
    let url = "postgres://postgres@127.0.0.1:1/test";
    let options = || {
        let mut o = testing::options("sentinel_unreachable", None, false);
        o.connect_timeout = Duration::from_secs(2);
        o.wait_timeout = Duration::from_secs(2);
        o
    };
    let err = PgStore::connect_with(url, options())
        .await
        .err()
        .expect("connecting to nothing fails");
    assert!(err.is_unavailable(), "{err:?}");
    // Opened lazily (as the host does), the store exists and every call reports Unavailable.
    let store = PgStore::open_with(url, options()).expect("lazy open");
    let err = store.get_task("t", "x").await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    let err = store.enqueue(&[NewTask::new("t", "x")]).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(store.now().await.unwrap_err().is_unavailable());
}
