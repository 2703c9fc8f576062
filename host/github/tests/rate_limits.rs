//! Rate-limit discipline against the emulator: secondary-limit 403s with `retry-after` pause the
//! store and it recovers; unchanged reads are conditional and answered 304.

mod emulator;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sentinel_coord::model::*;
use sentinel_coord::{LockStore, ManualClock, MemoryStore, QueueStore};
use sentinel_github::GithubStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backs_off_on_secondary_limit_403_and_recovers() {
    let emu = emulator::Emulator::start().await;
    let store = GithubStore::connect(emu.quiet_config(), ManualClock::new())
        .await
        .unwrap();
    store.enqueue(&[NewTask::new("t", "before")]).await.unwrap();

    emu.refuse_next(3, 1);
    let started = Instant::now();
    let ids = store
        .enqueue(&[NewTask::new("t", "during")])
        .await
        .expect("the store waits out the limit and succeeds");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(1),
        "honoured retry-after: {waited:?}"
    );
    assert_eq!(emu.control().refused, 3);
    let rate = store.rate_limit();
    assert!(rate.limited_answers >= 1, "{rate:?}");
    assert!(
        rate.remaining.is_some() && rate.limit == Some(5000),
        "{rate:?}"
    );
    assert!(
        store
            .get_task(DEFAULT_TENANT, &ids[0])
            .await
            .unwrap()
            .is_some()
    );

    // Recovered: the limit is gone and requests flow without waiting.
    let started = Instant::now();
    store.enqueue(&[NewTask::new("t", "after")]).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(emu.control().refused, 3);
    assert_eq!(store.queue_stats(None).await.unwrap().pending, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_up_as_unavailable_when_the_limit_persists() {
    let emu = emulator::Emulator::start().await;
    let mut config = emu.quiet_config();
    config.retry.max_attempts = 2;
    let store = GithubStore::connect(config, ManualClock::new())
        .await
        .unwrap();
    emu.refuse_next(10, 0);
    let err = store.memory_seq().await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_reads_are_conditional_and_answered_304() {
    let emu = emulator::Emulator::start().await;
    let store = Arc::new(
        GithubStore::connect(emu.quiet_config(), ManualClock::new())
            .await
            .unwrap(),
    );
    store
        .acquire_lock(&LockRequest {
            tenant: "t".into(),
            key: "k".into(),
            owner: "w".into(),
            ttl_ms: 60_000,
            metadata: serde_json::Value::Null,
            holder_secret: None,
        })
        .await
        .unwrap()
        .unwrap();
    store.get_lock("t", "k").await.unwrap().unwrap();
    let before = emu.control();
    for _ in 0..5 {
        store.get_lock("t", "k").await.unwrap().unwrap();
    }
    let after = emu.control();
    assert_eq!(
        after.not_modified - before.not_modified,
        5,
        "each reread is a 304"
    );
    assert_eq!(
        after.counted, before.counted,
        "304s do not count against the budget"
    );
}

#[test]
fn planning_warns_about_a_fleet_that_cannot_fit() {
    let plan = sentinel_github::FleetPlan {
        workers: 20,
        tasks_per_hour: 500,
        issues: true,
        claim_batch: 1,
    };
    let i = sentinel_github::plan_and_warn(&plan, &sentinel_github::Limits::default());
    assert!(!i.fits);
}
