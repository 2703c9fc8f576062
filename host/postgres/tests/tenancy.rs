//! Tenancy on PostgreSQL beyond the conformance suite: quotas hold across store instances (as
//! across worker hosts sharing the database), a fair claim fills its batch when a backlogged
//! tenant has nothing claimable, and a store created before tenancy migrates with its tasks.
//! Needs `SENTINEL_TEST_POSTGRES_URL`; fails loudly without it.

use std::sync::Arc;

use sentinel_coord::model::*;
use sentinel_coord::{QueueStore, StoreError, TenantStore};
use sentinel_postgres::{schema, testing};

fn claim_req(worker: &str, limit: u32) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.into(),
        task_types: None,
        tenants: None,
        limit,
        lease_ms: 60_000,
        incarnation: 0,
    }
}

fn tasks(tenant: &str, n: usize) -> Vec<NewTask> {
    (0..n)
        .map(|i| {
            NewTask::new("t", "{}")
                .with_tenant(tenant)
                .with_id(format!("{tenant}-{i}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_quota_holds_across_store_instances() {
    let owner = testing::fresh_store(None).await;
    let stores = [
        Arc::new(testing::attach(owner.schema(), None).await),
        Arc::new(testing::attach(owner.schema(), None).await),
    ];
    let quota = TenantQuota {
        max_running: Some(3),
        ..Default::default()
    };
    owner
        .put_tenant(&TenantSettings::new("A").with_quota(quota))
        .await
        .unwrap();
    owner.enqueue(&tasks("A", 40)).await.unwrap();
    owner.enqueue(&tasks("B", 40)).await.unwrap();
    let mut claims = Vec::new();
    for i in 0..8 {
        let s = stores[i % 2].clone();
        claims.push(tokio::spawn(async move {
            s.claim(&claim_req(&format!("w{i}"), 5)).await.unwrap()
        }));
    }
    let mut a = 0;
    for c in claims {
        a += c.await.unwrap().iter().filter(|t| t.tenant == "A").count();
    }
    let usage = owner.tenant_usage("A").await.unwrap();
    assert_eq!(usage.running, a as u64);
    assert!(a <= 3, "{a} of A's tasks running over a quota of 3");
    // With the racers gone, the next claim tops A up to exactly its quota.
    owner.claim(&claim_req("late", 10)).await.unwrap();
    assert_eq!(owner.tenant_usage("A").await.unwrap().running, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_quota_holds_across_store_instances() {
    let owner = testing::fresh_store(None).await;
    let quota = TenantQuota {
        max_queued: Some(10),
        ..Default::default()
    };
    owner
        .put_tenant(&TenantSettings::new("A").with_quota(quota))
        .await
        .unwrap();
    let stores = [
        Arc::new(testing::attach(owner.schema(), None).await),
        Arc::new(testing::attach(owner.schema(), None).await),
    ];
    let mut handles = Vec::new();
    for i in 0..12 {
        let s = stores[i % 2].clone();
        handles.push(tokio::spawn(async move {
            let batch = vec![
                NewTask::new("t", "{}")
                    .with_tenant("A")
                    .with_id(format!("a-{i}")),
            ];
            match s.enqueue(&batch).await {
                Ok(_) => 1u64,
                Err(StoreError::Quota(q)) => {
                    assert_eq!(q.quota, Quota::QueuedTasks);
                    0
                }
                Err(e) => panic!("{e}"),
            }
        }));
    }
    let mut accepted = 0;
    for h in handles {
        accepted += h.await.unwrap();
    }
    assert_eq!(accepted, 10, "exactly the quota is accepted");
    assert_eq!(owner.tenant_usage("A").await.unwrap().queued, 10);
}

#[tokio::test]
async fn a_tenant_with_nothing_claimable_does_not_shrink_the_batch() {
    let s = testing::fresh_store(None).await;
    // A's tasks all wait on a task that is running: A is backlogged, yet has nothing to give.
    s.enqueue(&tasks("A", 1)).await.unwrap();
    let blocker = s.claim(&claim_req("w0", 1)).await.unwrap();
    assert_eq!(blocker[0].id, "A-0");
    let waiting: Vec<NewTask> = (0..5)
        .map(|i| {
            NewTask::new("t", "{}")
                .with_tenant("A")
                .with_id(format!("wait-{i}"))
                .depends_on(["A-0"])
        })
        .collect();
    s.enqueue(&waiting).await.unwrap();
    s.enqueue(&tasks("B", 3)).await.unwrap();
    s.enqueue(&tasks("C", 3)).await.unwrap();
    let got = s.claim(&claim_req("w1", 6)).await.unwrap();
    let mut names: Vec<&str> = got.iter().map(|t| t.id.as_str()).collect();
    // B and C alternate (C, the newest, joined just below B and goes first); A gives nothing.
    let tenants: Vec<&str> = got.iter().map(|t| t.tenant.as_str()).collect();
    assert_eq!(tenants, ["C", "B", "C", "B", "C", "B"]);
    names.sort_unstable();
    assert_eq!(names, ["B-0", "B-1", "B-2", "C-0", "C-1", "C-2"]);
}

#[tokio::test]
async fn a_store_from_before_tenancy_migrates_and_keeps_its_tasks() {
    testing::ensure_database().await;
    let name = testing::fresh_schema();
    let config: tokio_postgres::Config = testing::url().parse().unwrap();
    schema::migrate_to(&config, &name, 2).await.unwrap();
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "SET search_path TO {name};
             INSERT INTO tasks (id, tenant, task_type, priority, payload, metadata, max_retries,
                 timeout_ms, state, created_at, updated_at, run_at, depends_on)
             VALUES ('a', 'acme', 't', 0, '\\x7b7d', '{{}}', 3, 0, 'pending', 1, 1, 1, NULL),
                    ('b', 'acme', 't', 0, '\\x7b7d', '{{}}', 3, 0, 'pending', 2, 2, 2, '[\"a\"]');
             INSERT INTO task_deps (task_id, dep_id) VALUES ('b', 'a');"
        ))
        .await
        .unwrap();
    // Opening the store applies the tenancy migration to the existing data.
    let s = testing::attach(&name, None).await;
    assert_eq!(
        s.get_task("acme", "b").await.unwrap().unwrap().depends_on,
        ["a"]
    );
    s.enqueue(&[NewTask::new("t", "{}").with_tenant("other").with_id("a")])
        .await
        .expect("the id is free in another tenant");
    let req = ClaimRequest {
        tenants: Some(vec!["acme".into()]),
        ..claim_req("w", 10)
    };
    let first = s.claim(&req).await.unwrap();
    assert_eq!(first.len(), 1, "b still waits for a: {first:?}");
    let done = Completion {
        tenant: "acme".into(),
        task_id: "a".into(),
        fence: first[0].fence,
        output: b"out".to_vec(),
    };
    s.complete(&[done]).await.unwrap();
    let second = s.claim(&req).await.unwrap();
    assert_eq!(second[0].id, "b");
    assert_eq!(second[0].dependency_outputs["a"], b"out");
    drop(s);
    let _ = client
        .batch_execute(&format!("DROP SCHEMA {name} CASCADE"))
        .await;
}
