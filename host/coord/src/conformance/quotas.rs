//! Tenant quotas, enforced by the store in the same transaction as the write: a refused write
//! stores nothing, and racing writers never push a tenant past its quota.

use std::sync::Arc;

use super::tenancy::{claim, claim_in, done, failed, get, no_jitter, quota_error, task};
use super::{StoreFactory, fresh};
use crate::error::StoreError;
use crate::model::*;
use crate::store::Store;

async fn put(s: &Arc<dyn Store>, tenant: &str, quota: TenantQuota) {
    s.put_tenant(&TenantSettings::new(tenant).with_quota(quota))
        .await
        .unwrap();
}

fn tasks(tenant: &str, ids: std::ops::Range<u32>) -> Vec<NewTask> {
    ids.map(|i| task(tenant, &format!("{tenant}-{i}")))
        .collect()
}

async fn total(s: &Arc<dyn Store>, tenant: &str) -> u64 {
    s.queue_stats(Some(tenant)).await.unwrap().total()
}

pub async fn queued_quota_refuses_the_whole_batch_and_stores_nothing(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    put(
        &s,
        "A",
        TenantQuota {
            max_queued: Some(3),
            ..Default::default()
        },
    )
    .await;
    s.enqueue(&tasks("A", 0..2)).await.unwrap();
    let q = quota_error(s.enqueue(&tasks("A", 2..4)).await.unwrap_err());
    assert_eq!(
        q,
        QuotaExceeded {
            tenant: "A".into(),
            quota: Quota::QueuedTasks,
            limit: 3,
            retry_after_ms: None,
        }
    );
    assert!(q.to_string().contains("queued_tasks"), "{q}");
    assert_eq!(
        total(&s, "A").await,
        2,
        "nothing of the refused batch is stored"
    );

    // A batch spanning tenants is refused whole, even the unlimited tenant's part.
    let mut mixed = tasks("B", 0..1);
    mixed.extend(tasks("A", 2..4));
    let q = quota_error(s.enqueue(&mixed).await.unwrap_err());
    assert_eq!((q.tenant.as_str(), q.quota), ("A", Quota::QueuedTasks));
    assert_eq!(total(&s, "B").await, 0);

    s.enqueue(&tasks("A", 2..3)).await.unwrap();
    assert!(
        s.enqueue(&tasks("A", 3..4)).await.is_err(),
        "3 queued is the quota"
    );
    // Running tasks are not queued: claiming one makes room for one.
    let t = claim_in(&s, "w", "A").await.unwrap();
    s.enqueue(&tasks("A", 3..4)).await.unwrap();
    let usage = s.tenant_usage("A").await.unwrap();
    assert_eq!((usage.queued, usage.running), (3, 1));
    // Failed-awaiting-retry tasks are queued.
    s.fail(&[failed(&t, true)], &no_jitter()).await.unwrap();
    assert_eq!(s.tenant_usage("A").await.unwrap().queued, 4);
    assert!(s.enqueue(&tasks("A", 4..5)).await.is_err());
    // A tenant without a quota is never refused.
    s.enqueue(&tasks("B", 0..50)).await.unwrap();
    // Lowering the quota keeps what is stored and refuses new work.
    put(
        &s,
        "B",
        TenantQuota {
            max_queued: Some(10),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(total(&s, "B").await, 50);
    let q = quota_error(s.enqueue(&tasks("B", 50..51)).await.unwrap_err());
    assert_eq!((q.quota, q.limit), (Quota::QueuedTasks, 10));
}

pub async fn retry_dead_respects_queued_quota(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    put(
        &s,
        "A",
        TenantQuota {
            max_queued: Some(1),
            ..Default::default()
        },
    )
    .await;
    s.enqueue(&tasks("A", 0..1)).await.unwrap();
    let t = claim_in(&s, "w", "A").await.unwrap();
    s.fail(&[failed(&t, false)], &no_jitter()).await.unwrap();
    assert_eq!(get(&s, "A", "A-0").await.state, TaskState::Dead);
    s.enqueue(&tasks("A", 1..2)).await.unwrap();
    let q = quota_error(s.retry_dead("A", "A-0").await.unwrap_err());
    assert_eq!(
        (q.tenant.as_str(), q.quota, q.limit),
        ("A", Quota::QueuedTasks, 1)
    );
    assert_eq!(
        get(&s, "A", "A-0").await.state,
        TaskState::Dead,
        "nothing changed"
    );
    assert!(
        !s.retry_dead("A", "A-1").await.unwrap(),
        "not dead: no quota question"
    );
    let next = claim_in(&s, "w", "A").await.unwrap();
    assert_eq!(next.id, "A-1");
    assert!(s.retry_dead("A", "A-0").await.unwrap());
    assert_eq!(get(&s, "A", "A-0").await.state, TaskState::Pending);
}

pub async fn submit_rate_is_a_token_bucket_with_retry_after(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    let rate = RateLimit {
        per_second: 2,
        burst: 4,
    };
    put(
        &s,
        "A",
        TenantQuota {
            submit_rate: Some(rate),
            ..Default::default()
        },
    )
    .await;
    // The bucket starts full: 4 tokens.
    s.enqueue(&tasks("A", 0..3)).await.unwrap();
    let q = quota_error(s.enqueue(&tasks("A", 3..5)).await.unwrap_err());
    assert_eq!(
        q,
        QuotaExceeded {
            tenant: "A".into(),
            quota: Quota::SubmitRate,
            limit: 4,
            retry_after_ms: Some(500),
        },
        "one token left, two needed, two per second"
    );
    assert_eq!(total(&s, "A").await, 3);
    clock.advance_ms(499);
    let q = quota_error(s.enqueue(&tasks("A", 3..5)).await.unwrap_err());
    assert_eq!(q.retry_after_ms, Some(1));
    clock.advance_ms(1);
    s.enqueue(&tasks("A", 3..5)).await.unwrap();
    // More than the burst can never pass, however long one waits.
    clock.advance_ms(3_600_000);
    let q = quota_error(s.enqueue(&tasks("A", 5..10)).await.unwrap_err());
    assert_eq!(
        (q.quota, q.limit, q.retry_after_ms),
        (Quota::SubmitRate, 4, None)
    );
    assert!(q.to_string().contains("never pass"), "{q}");
    // The bucket refilled to its burst, not beyond.
    s.enqueue(&tasks("A", 5..9)).await.unwrap();
    let q = quota_error(s.enqueue(&tasks("A", 9..10)).await.unwrap_err());
    assert_eq!(q.retry_after_ms, Some(500));
    assert_eq!(total(&s, "A").await, 9);

    // A batch refused by another quota takes no token.
    put(
        &s,
        "B",
        TenantQuota {
            submit_rate: Some(RateLimit {
                per_second: 1,
                burst: 2,
            }),
            max_queued: Some(1),
            ..Default::default()
        },
    )
    .await;
    let q = quota_error(s.enqueue(&tasks("B", 0..2)).await.unwrap_err());
    assert_eq!(q.quota, Quota::QueuedTasks);
    s.enqueue(&tasks("B", 0..1)).await.unwrap();
    let t = claim_in(&s, "w", "B").await.unwrap();
    s.complete(&[done(&t, b"")]).await.unwrap();
    s.enqueue(&tasks("B", 1..2))
        .await
        .expect("the refused batch left the second token in the bucket");
}

pub async fn running_quota_caps_claims_fleet_wide(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    put(
        &s,
        "A",
        TenantQuota {
            max_running: Some(2),
            ..Default::default()
        },
    )
    .await;
    s.enqueue(&tasks("A", 0..5)).await.unwrap();
    s.enqueue(&tasks("B", 0..2)).await.unwrap();
    let first = claim(&s, "w1", 10).await;
    let of = |ts: &[Task], tenant: &str| ts.iter().filter(|t| t.tenant == tenant).count();
    assert_eq!(
        (of(&first, "A"), of(&first, "B")),
        (2, 2),
        "A is capped at 2 running"
    );
    assert!(
        claim(&s, "w2", 10).await.is_empty(),
        "the cap is fleet-wide"
    );
    let a: Vec<&Task> = first.iter().filter(|t| t.tenant == "A").collect();
    s.complete(&[done(a[0], b"")]).await.unwrap();
    assert_eq!(claim(&s, "w2", 10).await.len(), 1, "one slot freed");
    s.fail(&[failed(a[1], true)], &no_jitter()).await.unwrap();
    assert_eq!(claim(&s, "w3", 10).await.len(), 1);
    let usage = s.tenant_usage("A").await.unwrap();
    assert_eq!((usage.running, usage.queued), (2, 2));
    put(
        &s,
        "A",
        TenantQuota {
            max_running: Some(0),
            ..Default::default()
        },
    )
    .await;
    s.enqueue(&tasks("B", 2..3)).await.unwrap();
    let got = claim(&s, "w4", 10).await;
    assert_eq!(
        got.iter().map(|t| t.tenant.as_str()).collect::<Vec<_>>(),
        ["B"]
    );
}

pub async fn memory_key_and_byte_quotas_hold_and_free_on_delete(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    put(
        &s,
        "A",
        TenantQuota {
            memory_keys: Some(2),
            memory_bytes: Some(100),
            ..Default::default()
        },
    )
    .await;
    let w = |key: &str, value: serde_json::Value, ttl_ms: Option<u64>| MemoryWrite {
        tenant: "A".into(),
        namespace: "ns".into(),
        key: key.into(),
        value,
        writer: "w".into(),
        timestamp: None,
        ttl_ms,
        expected_version: None,
    };
    let size = |key: &str, v: &serde_json::Value| memory_entry_bytes("ns", key, v);
    let small = serde_json::json!("x");
    s.memory_set(&w("k1", small.clone(), None)).await.unwrap();
    s.memory_set(&w("k2", small.clone(), None)).await.unwrap();
    let q = quota_error(
        s.memory_set(&w("k3", small.clone(), None))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        q,
        QuotaExceeded {
            tenant: "A".into(),
            quota: Quota::MemoryKeys,
            limit: 2,
            retry_after_ms: None,
        }
    );
    assert!(s.memory_get("A", "ns", "k3").await.unwrap().is_none());
    s.memory_set(&w("k1", serde_json::json!("y"), None))
        .await
        .expect("replacing a key creates none");
    assert!(s.memory_delete("A", "ns", "k2", "w").await.unwrap());
    s.memory_set(&w("k3", small.clone(), None)).await.unwrap();
    let usage = s.tenant_usage("A").await.unwrap();
    assert_eq!(
        (usage.memory_keys, usage.memory_bytes),
        (2, 2 * size("k1", &small))
    );

    // Bytes: k3 holds 7; k1 may grow to exactly 100 - 7, not one byte more.
    let room = 100 - size("k3", &small) - size("k1", &serde_json::json!(""));
    let fits = serde_json::json!("a".repeat(room as usize));
    let over = serde_json::json!("a".repeat(room as usize + 1));
    let q = quota_error(s.memory_set(&w("k1", over, None)).await.unwrap_err());
    assert_eq!((q.quota, q.limit), (Quota::MemoryBytes, 100));
    assert_eq!(
        s.memory_get("A", "ns", "k1").await.unwrap().unwrap().value,
        "y"
    );
    s.memory_set(&w("k1", fits.clone(), None)).await.unwrap();
    assert_eq!(s.tenant_usage("A").await.unwrap().memory_bytes, 100);
    assert!(s.memory_delete("A", "ns", "k1", "w").await.unwrap());
    assert_eq!(
        s.tenant_usage("A").await.unwrap().memory_bytes,
        size("k3", &small)
    );

    // Expired entries do not count, purged or not.
    s.memory_set(&w("k4", small.clone(), Some(1_000)))
        .await
        .unwrap();
    assert!(s.memory_set(&w("k5", small.clone(), None)).await.is_err());
    clock.advance_ms(1_000);
    s.memory_set(&w("k5", small.clone(), None))
        .await
        .expect("k4 expired, so only k3 is live");
    let usage = s.tenant_usage("A").await.unwrap();
    assert_eq!(
        (usage.memory_keys, usage.memory_bytes),
        (2, 2 * size("k3", &small))
    );
    // Another tenant is unaffected.
    for i in 0..5 {
        let mut other = w(&format!("b{i}"), fits.clone(), None);
        other.tenant = "B".into();
        s.memory_set(&other).await.unwrap();
    }
    assert!(matches!(
        s.memory_set(&w("k6", small, None)).await,
        Err(StoreError::Quota(_))
    ));
}

pub async fn racing_submissions_never_exceed_the_queued_quota(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    put(
        &s,
        "A",
        TenantQuota {
            max_queued: Some(10),
            ..Default::default()
        },
    )
    .await;
    let mut handles = Vec::new();
    for i in 0..16u32 {
        let s = Arc::clone(&s);
        handles.push(tokio::spawn(async move {
            let batch = tasks("A", i * 2..i * 2 + 1 + i % 2);
            match s.enqueue(&batch).await {
                Ok(ids) => ids.len() as u64,
                Err(e) => {
                    assert_eq!(quota_error(e).quota, Quota::QueuedTasks);
                    0
                }
            }
        }));
    }
    let mut accepted = 0;
    for h in handles {
        accepted += h.await.unwrap();
    }
    let queued = s.tenant_usage("A").await.unwrap().queued;
    assert_eq!(
        queued, accepted,
        "every accepted task is stored, nothing else"
    );
    assert!(queued <= 10, "{queued} queued over a quota of 10");
    assert!(queued >= 9, "refusals only at the quota ({queued} queued)");
    assert_eq!(total(&s, "A").await, queued);
}
