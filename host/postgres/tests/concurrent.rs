//! Several store instances (several pools, as several worker hosts would have) working one
//! schema at once: claims never overlap, every task completes exactly once, wake-ups cross
//! instances, and the memory change log stays gap-free under concurrent writers.
//! Needs `SENTINEL_TEST_POSTGRES_URL`; fails loudly without it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sentinel_coord::model::*;
use sentinel_coord::{MemoryStore, QueueStore, Store, Topic};
use sentinel_postgres::testing;
use serde_json::json;

const TASKS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claimers_complete_every_task_exactly_once() {
    let owner = testing::fresh_store(None).await;
    let schema = owner.schema().to_string();
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(Arc::new(testing::attach(&schema, None).await));
    }

    // Submission runs alongside the claimers, so claims race with inserts too.
    let submitting = Arc::new(AtomicBool::new(true));
    let submitter = {
        let s = stores[0].clone();
        let submitting = submitting.clone();
        tokio::spawn(async move {
            for chunk in 0..(TASKS / 250) {
                let batch: Vec<NewTask> = (0..250)
                    .map(|i| {
                        NewTask::new("t", format!("{}", chunk * 250 + i))
                            .with_priority((i % 3) as i32)
                    })
                    .collect();
                s.enqueue(&batch).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            submitting.store(false, Ordering::SeqCst);
        })
    };

    let mut claimers = Vec::new();
    for (n, s) in stores.iter().enumerate() {
        for k in 0..2 {
            let s = s.clone();
            let submitting = submitting.clone();
            let worker = format!("w{n}-{k}");
            claimers.push(tokio::spawn(async move {
                let mut applied = Vec::new();
                loop {
                    let req = ClaimRequest {
                        worker_id: worker.clone(),
                        task_types: None,
                        tenants: None,
                        limit: 25,
                        lease_ms: 60_000,
                        incarnation: 0,
                    };
                    // Read before claiming: an empty claim proves the queue drained only if
                    // submission had already ended when the claim began.
                    let still_submitting = submitting.load(Ordering::SeqCst);
                    let batch = s.claim(&req).await.unwrap();
                    if batch.is_empty() {
                        if !still_submitting {
                            return applied;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        continue;
                    }
                    let done: Vec<Completion> = batch
                        .iter()
                        .map(|t| Completion {
                            tenant: t.tenant.clone(),
                            task_id: t.id.clone(),
                            fence: t.fence,
                            output: worker.as_bytes().to_vec(),
                        })
                        .collect();
                    let settled = s.complete(&done).await.unwrap();
                    for (t, st) in batch.iter().zip(settled) {
                        assert_eq!(st, Settlement::Applied(TaskState::Completed), "{}", t.id);
                        applied.push(t.id.clone());
                    }
                }
            }));
        }
    }
    submitter.await.unwrap();
    let mut all = Vec::new();
    for c in claimers {
        all.extend(c.await.unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), TASKS, "every completion applied once");
    assert_eq!(unique.len(), TASKS, "no task completed twice");

    let stats = owner.queue_stats(None).await.unwrap();
    assert_eq!(stats.completed, TASKS as u64);
    assert_eq!(stats.total(), TASKS as u64);
    let tasks = owner.list_tasks(&TaskFilter::default()).await.unwrap();
    assert!(
        tasks.iter().all(|t| t.attempt == 1 && t.fence == 1),
        "no task was ever handed out twice"
    );
    let by_worker: HashMap<Vec<u8>, usize> = tasks.iter().fold(HashMap::new(), |mut m, t| {
        *m.entry(t.output.clone().unwrap()).or_default() += 1;
        m
    });
    assert!(by_worker.len() > 1, "the work was shared: {by_worker:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wakeups_reach_other_store_instances() {
    let a = testing::fresh_store(None).await;
    let b = testing::attach(a.schema(), None).await;
    let mut tasks = b.subscribe(Topic::Tasks);
    let mut memory = b.subscribe(Topic::Memory);
    // Let b's listener connect (its first connection wakes everyone once), then start clean.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tasks.borrow_and_update();
    memory.borrow_and_update();

    a.enqueue(&[NewTask::new("t", "x")]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), tasks.changed())
        .await
        .expect("a submit through one instance wakes another instance's claimers")
        .unwrap();
    let write = MemoryWrite {
        tenant: "t".into(),
        namespace: "global".into(),
        key: "k".into(),
        value: json!(1),
        writer: "w".into(),
        timestamp: None,
        ttl_ms: None,
        expected_version: None,
    };
    a.memory_set(&write).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), memory.changed())
        .await
        .expect("a memory write through one instance wakes another instance's watchers")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_log_tail_misses_nothing_under_concurrent_writers() {
    let owner = testing::fresh_store(None).await;
    let schema = owner.schema().to_string();
    const WRITERS: usize = 4;
    const WRITES: usize = 50;
    let mut handles = Vec::new();
    for w in 0..WRITERS {
        let s = testing::attach(&schema, None).await;
        handles.push(tokio::spawn(async move {
            for i in 0..WRITES {
                let write = MemoryWrite {
                    tenant: "t".into(),
                    namespace: "global".into(),
                    // Keys of its own: last-write-wins never refuses a write here, so every
                    // write must appear in the log.
                    key: format!("w{w}-k{}", i % 5),
                    value: json!([w, i]),
                    writer: format!("w{w}"),
                    timestamp: None,
                    ttl_ms: None,
                    expected_version: None,
                };
                s.memory_set(&write).await.unwrap();
            }
        }));
    }
    // A reader tails the log while the writers run, resuming after the last seq it saw. A
    // change that committed after a greater seq was read would be skipped for good.
    let reader = {
        let s = testing::attach(&schema, None).await;
        tokio::spawn(async move {
            let mut after = 0;
            let mut seen = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while seen.len() < WRITERS * WRITES && tokio::time::Instant::now() < deadline {
                for c in s.memory_changes(None, after, 7).await.unwrap() {
                    after = c.seq;
                    seen.push(c.seq);
                }
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    for h in handles {
        h.await.unwrap();
    }
    let seen = reader.await.unwrap();
    let head = owner.memory_seq().await.unwrap();
    assert_eq!(
        seen,
        (1..=head).collect::<Vec<_>>(),
        "a tailing reader sees every seq once, in order, with no gap"
    );
    assert_eq!(head as usize, WRITERS * WRITES, "every write was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_starting_at_once_migrate_the_schema_once() {
    let schema = testing::fresh_schema();
    let mut opening = Vec::new();
    for i in 0..6 {
        let schema = schema.clone();
        opening.push(tokio::spawn(async move {
            // The first to finish owns the schema's removal; which one does not matter.
            sentinel_postgres::PgStore::connect_with(
                &testing::url(),
                testing::options(&schema, None, i == 0),
            )
            .await
        }));
    }
    let mut stores = Vec::new();
    for o in opening {
        stores.push(o.await.unwrap().expect("every concurrent open succeeds"));
    }
    let (client, conn) = tokio_postgres::connect(&testing::url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let applied: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {schema}.schema_migrations"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        applied as i32,
        sentinel_postgres::schema::SCHEMA_VERSION,
        "each migration recorded once"
    );
    // Every instance works on the one schema.
    stores[3].enqueue(&[NewTask::new("t", "x")]).await.unwrap();
    assert_eq!(stores[5].queue_stats(None).await.unwrap().pending, 1);
    // The owner goes last, so the others' connections are closed when it drops the schema.
    let owner = stores.remove(0);
    drop(stores);
    drop(owner);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_through_one_instance_wakes_another_and_is_visible() {
    let a = testing::fresh_store(None).await;
    let b = testing::attach(a.schema(), None).await;
    let mut tasks = b.subscribe(Topic::Tasks);
    let mut memory = b.subscribe(Topic::Memory);
    for i in 0..50 {
        tasks.borrow_and_update();
        a.enqueue(&[NewTask::new("job", format!("{i}"))])
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(2), tasks.changed())
            .await
            .unwrap_or_else(|_| panic!("submit {i} did not wake the other instance"))
            .unwrap();
        let req = ClaimRequest {
            worker_id: "w".into(),
            task_types: None,
            tenants: None,
            limit: 10,
            lease_ms: 10_000,
            incarnation: 0,
        };
        // The notification is sent at commit: whatever woke us is already visible.
        assert_eq!(b.claim(&req).await.unwrap().len(), 1, "submit {i}");

        memory.borrow_and_update();
        let write = MemoryWrite {
            tenant: "t".into(),
            namespace: "n".into(),
            key: "k".into(),
            value: json!(i),
            writer: "w".into(),
            timestamp: None,
            ttl_ms: None,
            expected_version: None,
        };
        a.memory_set(&write).await.unwrap();
        tokio::time::timeout(Duration::from_secs(2), memory.changed())
            .await
            .unwrap_or_else(|_| panic!("write {i} did not wake the other instance"))
            .unwrap();
        let seen = b.memory_get("t", "n", "k").await.unwrap().map(|e| e.value);
        // Timestamps come from the database's clock; were it to step back, last-write-wins
        // would keep the earlier write. So: this write or an earlier one, never nothing.
        assert!(seen.is_some_and(|v| v.as_i64().is_some_and(|n| n <= i)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_settlements_in_opposite_orders_settle_each_task_once() {
    let owner = testing::fresh_store(None).await;
    let other = testing::attach(owner.schema(), None).await;
    let batch: Vec<NewTask> = (0..300)
        .map(|i| NewTask::new("t", format!("{i}")))
        .collect();
    owner.enqueue(&batch).await.unwrap();
    let req = ClaimRequest {
        worker_id: "w".into(),
        task_types: None,
        tenants: None,
        limit: 300,
        lease_ms: 60_000,
        incarnation: 0,
    };
    let claimed = owner.claim(&req).await.unwrap();
    let done: Vec<Completion> = claimed
        .iter()
        .map(|t| Completion {
            tenant: t.tenant.clone(),
            task_id: t.id.clone(),
            fence: t.fence,
            output: b"ok".to_vec(),
        })
        .collect();
    let reversed: Vec<Completion> = done.iter().rev().cloned().collect();
    // The same completions raced through two pools in opposite orders (a settler retrying a
    // batch whose first attempt's reply was lost looks like this): neither call may fail,
    // and each task is applied by exactly one of them.
    let (a, b) = tokio::join!(owner.complete(&done), other.complete(&reversed));
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut b = b;
    b.reverse();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let applied = [x, y]
            .iter()
            .filter(|s| ***s == Settlement::Applied(TaskState::Completed))
            .count();
        assert_eq!(applied, 1, "task {i}: {x:?} / {y:?}");
    }
    assert_eq!(owner.queue_stats(None).await.unwrap().completed, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_autovacuum_the_store_vacuums_its_queue_itself() {
    let store = testing::fresh_store(None).await;
    let (client, conn) = tokio_postgres::connect(&testing::url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let autovacuum: bool = client
        .query_one("SELECT current_setting('autovacuum')::bool", &[])
        .await
        .unwrap()
        .get(0);
    let rows = sentinel_postgres::store::SELF_VACUUM_ROWS as usize + 1_000;
    for _ in 0..rows / 1_000 {
        let batch: Vec<NewTask> = (0..1_000).map(|_| NewTask::new("t", "x")).collect();
        store.enqueue(&batch).await.unwrap();
        let req = ClaimRequest {
            worker_id: "w".into(),
            task_types: None,
            tenants: None,
            limit: 1_000,
            lease_ms: 60_000,
            incarnation: 0,
        };
        assert_eq!(store.claim(&req).await.unwrap().len(), 1_000);
    }
    let vacuumed = || async {
        client
            .query_one(
                "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables
                 WHERE schemaname = $1 AND relname = 'tasks'",
                &[&store.schema()],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
    };
    if autovacuum {
        // The server keeps the queue vacuumed; the store must leave that to it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !vacuumed().await,
            "the store vacuumed although autovacuum is on"
        );
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !vacuumed().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{rows} claimed rows on a server without autovacuum, and no vacuum of tasks"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A completion (and a lease renewal) that has to wait for a concurrent writer of the same task
/// (here a heartbeat's lease extension, held open) still applies once that writer commits: the
/// statement locks the task's latest version and must update that version, which is newer
/// than the statement's snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settling_a_task_another_transaction_is_writing_waits_and_applies() {
    let store = Arc::new(testing::fresh_store(None).await);
    let schema = store.schema().to_string();
    store
        .enqueue(&[NewTask::new("t", "a"), NewTask::new("t", "b")])
        .await
        .unwrap();
    let req = ClaimRequest {
        worker_id: "w".into(),
        task_types: None,
        tenants: None,
        limit: 2,
        lease_ms: 60_000,
        incarnation: 0,
    };
    let claimed = store.claim(&req).await.unwrap();
    assert_eq!(claimed.len(), 2);

    let (mut admin, conn) = tokio_postgres::connect(&testing::url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    for task in &claimed {
        let tx = admin.transaction().await.unwrap();
        tx.execute(
            &format!(
                "UPDATE {schema}.tasks SET lease_expires_at = lease_expires_at + 1
                 WHERE tenant = $1 AND id = $2"
            ),
            &[&task.tenant, &task.id],
        )
        .await
        .unwrap();
        let settle = {
            let store = store.clone();
            let task = task.clone();
            tokio::spawn(async move {
                if task.payload == b"a" {
                    let done = Completion {
                        tenant: task.tenant.clone(),
                        task_id: task.id.clone(),
                        fence: task.fence,
                        output: b"ok".to_vec(),
                    };
                    let s = store.complete(&[done]).await.unwrap();
                    assert_eq!(s, [Settlement::Applied(TaskState::Completed)], "completion");
                } else {
                    let renewed = store
                        .renew_lease(&task.tenant, &task.id, task.fence, 90_000)
                        .await
                        .unwrap();
                    assert!(renewed.is_ok(), "renewal: {renewed:?}");
                }
            })
        };
        // Long enough for the settlement to be waiting on the row lock.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!settle.is_finished(), "the settlement waits for the writer");
        tx.commit().await.unwrap();
        settle.await.unwrap();
    }
    let a = claimed.iter().find(|t| t.payload == b"a").unwrap();
    let got = store.get_task(&a.tenant, &a.id).await.unwrap().unwrap();
    assert_eq!(got.state, TaskState::Completed);
}
