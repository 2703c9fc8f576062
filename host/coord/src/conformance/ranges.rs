//! Numeric range cases: every client-controlled number is accepted at both ends of its range
//! (and round-trips), and refused one step outside it with `StoreError::Invalid` naming the field,
//! before anything is stored. The ranges are [`crate::model::limits`]; every backend agrees.

use std::fmt::Debug;
use std::sync::Arc;

use serde_json::json;

use super::memory::written;
use super::{StoreFactory, fresh};
use crate::clock::Clock;
use crate::error::{LockError, StoreError};
use crate::model::limits::{self, Range};
use crate::model::*;
use crate::store::Store;

fn assert_refused<T: Debug>(r: Result<T, StoreError>, range: &Range) {
    match r {
        Err(StoreError::Invalid(msg)) => {
            assert!(
                msg.contains(range.field) && msg.contains("out of range"),
                "the refusal names the field: {msg}"
            );
            assert!(
                msg.contains(&format!("{}..={}", range.min, range.max)),
                "and its range: {msg}"
            );
        }
        other => panic!("expected Invalid naming {}, got {other:?}", range.field),
    }
}

async fn nothing_queued(s: &Arc<dyn Store>) {
    assert_eq!(
        s.queue_stats(None).await.unwrap().total(),
        0,
        "nothing stored"
    );
}

pub async fn task_priority_range_is_enforced(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let r = limits::PRIORITY;
    for bad in [r.min - 1, r.max + 1] {
        let t = NewTask::new("t", "x").with_priority(bad as i32);
        assert_refused(s.enqueue(&[t]).await, &r);
    }
    nothing_queued(&s).await;
    for (id, ok) in [("lo", r.min), ("hi", r.max)] {
        let t = NewTask::new("t", "x").with_id(id).with_priority(ok as i32);
        s.enqueue(&[t]).await.unwrap();
        let got = s.get_task(DEFAULT_TENANT, id).await.unwrap().unwrap();
        assert_eq!(got.priority as i64, ok);
    }
}

pub async fn task_max_retries_range_is_enforced(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let r = limits::MAX_RETRIES;
    for bad in [r.max as u32 + 1, u32::MAX] {
        let t = NewTask::new("t", "x").with_max_retries(bad);
        assert_refused(s.enqueue(&[t]).await, &r);
    }
    nothing_queued(&s).await;
    for (id, ok) in [("lo", r.min), ("hi", r.max)] {
        let t = NewTask::new("t", "x")
            .with_id(id)
            .with_max_retries(ok as u32);
        s.enqueue(&[t]).await.unwrap();
        let got = s.get_task(DEFAULT_TENANT, id).await.unwrap().unwrap();
        assert_eq!(got.max_retries as i64, ok);
    }
}

pub async fn task_timeout_range_is_enforced(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    let r = limits::TASK_TIMEOUT_MS;
    for bad in [0, r.max as u64 + 1, i64::MAX as u64, u64::MAX] {
        // One bad task refuses the whole batch.
        let batch = [
            NewTask::new("t", "fine"),
            NewTask::new("t", "x").with_timeout_ms(bad),
        ];
        assert_refused(s.enqueue(&batch).await, &r);
    }
    nothing_queued(&s).await;
    for (id, ok) in [("lo", r.min), ("hi", r.max)] {
        let t = NewTask::new("t", "x")
            .with_id(id)
            .with_timeout_ms(ok as u64);
        s.enqueue(&[t]).await.unwrap();
        let got = s.get_task(DEFAULT_TENANT, id).await.unwrap().unwrap();
        assert_eq!(got.timeout_ms as i64, ok);
    }
    // The longest deadline is claimable and reapable like any other.
    let req = ClaimRequest {
        worker_id: "w".into(),
        task_types: None,
        tenants: None,
        limit: 2,
        lease_ms: limits::LEASE_MS.max as u64,
        incarnation: 0,
    };
    assert_eq!(s.claim(&req).await.unwrap().len(), 2);
    clock.advance_ms(r.max);
    let report = s.reap_expired(&RetryPolicy::default()).await.unwrap();
    assert_eq!(report.retrying + report.requeued, 2);
    assert_eq!(report.skipped, 0);
}

/// A plain write of `key` (tenant `t`, namespace `ns`).
fn write(key: &str) -> MemoryWrite {
    super::memory::write("t", "ns", key, json!(1))
}

pub async fn memory_ttl_range_is_enforced(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    let r = limits::MEMORY_TTL_MS;
    for bad in [0, r.max as u64 + 1, u64::MAX] {
        let w = MemoryWrite {
            ttl_ms: Some(bad),
            ..write("k")
        };
        assert_refused(s.memory_set(&w).await, &r);
    }
    assert!(
        s.memory_get("t", "ns", "k").await.unwrap().is_none(),
        "nothing stored"
    );
    for (key, ok) in [("lo", r.min), ("hi", r.max)] {
        let w = MemoryWrite {
            ttl_ms: Some(ok as u64),
            ..write(key)
        };
        let e = written(s.memory_set(&w).await.unwrap());
        assert_eq!(e.expires_at, Some(clock.now_ms() + ok));
    }
    assert_eq!(
        s.memory_get("t", "ns", "hi")
            .await
            .unwrap()
            .unwrap()
            .expires_at,
        Some(clock.now_ms() + r.max)
    );
    clock.advance_ms(r.min);
    let live: Vec<String> = s
        .memory_list("t", "ns", "", None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(live, ["hi"], "the shortest TTL has run out");
}

pub async fn memory_version_and_timestamp_ranges_are_enforced(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let v = limits::MEMORY_VERSION;
    let w = MemoryWrite {
        expected_version: Some(v.max as u64 + 1),
        ..write("k")
    };
    assert_refused(s.memory_set(&w).await, &v);
    let w = MemoryWrite {
        expected_version: Some(v.max as u64),
        ..write("k")
    };
    assert_eq!(
        s.memory_set(&w).await.unwrap(),
        WriteOutcome::VersionMismatch { current: 0 },
        "the largest version is a valid (failing) compare-and-set"
    );
    let w = MemoryWrite {
        expected_version: Some(v.min as u64),
        ..write("k")
    };
    assert_eq!(written(s.memory_set(&w).await.unwrap()).version, 1);

    let ts = limits::TIMESTAMP_MS;
    for bad in [ts.min - 1, ts.max + 1, i64::MIN, i64::MAX] {
        let w = MemoryWrite {
            timestamp: Some(bad),
            ..write("ts")
        };
        assert_refused(s.memory_set(&w).await, &ts);
    }
    assert!(
        s.memory_get("t", "ns", "ts").await.unwrap().is_none(),
        "nothing stored"
    );
    for ok in [ts.min, ts.max] {
        let w = MemoryWrite {
            timestamp: Some(ok),
            ..write("ts")
        };
        assert_eq!(written(s.memory_set(&w).await.unwrap()).timestamp, ok);
        let got = s.memory_get("t", "ns", "ts").await.unwrap().unwrap();
        assert_eq!(got.timestamp, ok);
    }
}

fn lock_req(key: &str, ttl_ms: u64) -> LockRequest {
    LockRequest {
        tenant: "t".into(),
        key: key.into(),
        owner: "o".into(),
        ttl_ms,
        metadata: json!({}),
        holder_secret: None,
    }
}

fn lock_refused<T: Debug>(r: Result<T, LockError>, range: &Range) {
    match r {
        Err(LockError::Store(e)) => assert_refused(Err::<(), _>(e), range),
        other => panic!("expected Invalid naming {}, got {other:?}", range.field),
    }
}

pub async fn lock_ttl_range_is_enforced(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    let r = limits::LOCK_TTL_MS;
    for bad in [0, r.max as u64 + 1, u64::MAX] {
        assert_refused(s.acquire_lock(&lock_req("k", bad)).await, &r);
    }
    assert!(
        s.get_lock("t", "k").await.unwrap().is_none(),
        "nothing granted"
    );
    let lo = s
        .acquire_lock(&lock_req("lo", r.min as u64))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lo.expires_at, clock.now_ms() + r.min);
    let hi = s
        .acquire_lock(&lock_req("hi", r.max as u64))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hi.expires_at, clock.now_ms() + r.max);
    for bad in [0, r.max as u64 + 1, u64::MAX] {
        lock_refused(s.renew_lock("t", "hi", "o", hi.token, bad, None).await, &r);
    }
    let renewed = s
        .renew_lock("t", "hi", "o", hi.token, r.max as u64, None)
        .await
        .unwrap();
    assert_eq!(renewed.expires_at, clock.now_ms() + r.max);
}

pub async fn lease_range_is_enforced(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    let r = limits::LEASE_MS;
    s.enqueue(&[NewTask::new("t", "a"), NewTask::new("t", "b")])
        .await
        .unwrap();
    let req = |lease_ms: u64| ClaimRequest {
        worker_id: "w".into(),
        task_types: None,
        tenants: None,
        limit: 1,
        lease_ms,
        incarnation: 0,
    };
    for bad in [0, r.min as u64 - 1, r.max as u64 + 1, u64::MAX] {
        assert_refused(s.claim(&req(bad)).await, &r);
    }
    assert_eq!(
        s.queue_stats(None).await.unwrap().pending,
        2,
        "nothing claimed"
    );
    let lo = s.claim(&req(r.min as u64)).await.unwrap().remove(0);
    assert_eq!(lo.lease_expires_at, Some(clock.now_ms() + r.min));
    let hi = s.claim(&req(r.max as u64)).await.unwrap().remove(0);
    assert_eq!(hi.lease_expires_at, Some(clock.now_ms() + r.max));
    for bad in [r.min as u64 - 1, r.max as u64 + 1] {
        assert_refused(s.renew_lease(&hi.tenant, &hi.id, hi.fence, bad).await, &r);
        assert_refused(s.extend_worker_leases("w", 0, bad).await, &r);
    }
    assert_eq!(
        s.renew_lease(&lo.tenant, &lo.id, lo.fence, r.max as u64)
            .await
            .unwrap(),
        Ok(clock.now_ms() + r.max)
    );
}
