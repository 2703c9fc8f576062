//! Failure detection cases: each worker is judged by the heartbeat interval and stale threshold
//! it announced (with a floor), and a worker id is a name, not a process: a new start (a new
//! incarnation) takes over the name, and the previous process's runs are requeued at once.

use std::sync::Arc;

use super::registry::registration;
use super::{StoreFactory, fresh};
use crate::clock::Clock;
use crate::error::StoreError;
use crate::model::*;
use crate::store::Store;

const LEASE: u64 = 10_000;

fn announcing(
    id: &str,
    incarnation: u64,
    interval_ms: u64,
    threshold_ms: u64,
) -> WorkerRegistration {
    WorkerRegistration {
        incarnation,
        heartbeat_interval_ms: interval_ms,
        stale_threshold_ms: threshold_ms,
        ..registration(id, 4, &[])
    }
}

fn claim_as(worker: &str, incarnation: u64, limit: u32) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.into(),
        task_types: None,
        tenants: None,
        limit,
        lease_ms: LEASE,
        incarnation,
    }
}

async fn task(s: &Arc<dyn Store>, id: &str) -> Task {
    s.get_task(DEFAULT_TENANT, id).await.unwrap().unwrap()
}

async fn sweep(s: &Arc<dyn Store>) -> Result<Vec<String>, StoreError> {
    s.mark_stale_workers(MIN_STALE_THRESHOLD_MS).await
}

pub async fn each_worker_goes_stale_by_its_own_announced_threshold(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    // Announced 3 s; announced 60 s; announced 50 ms (the floor, 1 s, applies); announced 1 s
    // but heartbeating every 5 s (two intervals, 10 s, apply).
    s.register_worker(&announcing("short", 1, 1000, 3000))
        .await
        .unwrap();
    s.register_worker(&announcing("long", 2, 10_000, 60_000))
        .await
        .unwrap();
    s.register_worker(&announcing("tiny", 3, 10, 50))
        .await
        .unwrap();
    s.register_worker(&announcing("slow-beats", 4, 5000, 1000))
        .await
        .unwrap();
    let rec = s.get_worker("short").await.unwrap().unwrap();
    assert_eq!(
        (
            rec.incarnation,
            rec.heartbeat_interval_ms,
            rec.stale_threshold_ms
        ),
        (1, 1000, 3000),
        "the announcement is stored with the worker"
    );
    let t0 = rec.last_heartbeat;
    let at = |ms: i64| clock.set_ms(t0 + ms);
    at(999);
    assert!(
        sweep(&s).await.unwrap().is_empty(),
        "nobody is stale before the floor"
    );
    at(1000);
    assert_eq!(sweep(&s).await.unwrap(), ["tiny"], "the floor applies");
    at(2999);
    assert!(sweep(&s).await.unwrap().is_empty());
    at(3000);
    assert_eq!(
        sweep(&s).await.unwrap(),
        ["short"],
        "stale by its own 3 s, not 60 s"
    );
    at(9999);
    assert!(sweep(&s).await.unwrap().is_empty());
    at(10_000);
    assert_eq!(
        sweep(&s).await.unwrap(),
        ["slow-beats"],
        "two heartbeat intervals"
    );
    at(59_999);
    assert!(
        sweep(&s).await.unwrap().is_empty(),
        "a long threshold is not cut short"
    );
    at(60_000);
    assert_eq!(sweep(&s).await.unwrap(), ["long"]);
}

pub async fn health_follows_the_workers_own_threshold(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let rec = s
        .register_worker(&announcing("w", 1, 1000, 4000))
        .await
        .unwrap();
    let fallback = HealthThresholds::default();
    let t0 = rec.last_heartbeat;
    assert_eq!(rec.health_at(t0 + 1999, &fallback), HealthState::Healthy);
    assert_eq!(rec.health_at(t0 + 2000, &fallback), HealthState::Degraded);
    assert_eq!(rec.health_at(t0 + 4000, &fallback), HealthState::Unhealthy);
    let silent = s
        .register_worker(&registration("legacy", 1, &[]))
        .await
        .unwrap();
    assert_eq!(
        silent.health_at(t0 + 60_000, &fallback),
        HealthState::Healthy,
        "a worker that announced nothing is judged by the configured thresholds"
    );
}

pub async fn restart_under_the_same_id_requeues_the_previous_runs_at_once(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    s.register_worker(&announcing("w1", 11, 1000, 3000))
        .await
        .unwrap();
    let ids = s
        .enqueue(&[
            NewTask::new("t", "a").with_id("a"),
            NewTask::new("t", "b").with_id("b").with_max_retries(0),
        ])
        .await
        .unwrap();
    let claimed = s.claim(&claim_as("w1", 11, 2)).await.unwrap();
    assert_eq!(claimed.len(), 2);
    clock.advance_ms(100);
    // Same incarnation again (a reconnect, not a restart): nothing happens to its tasks.
    s.register_worker(&announcing("w1", 11, 1000, 3000))
        .await
        .unwrap();
    assert_eq!(task(&s, "a").await.state, TaskState::Running);

    // The process was killed and started again under the same --worker-id.
    s.register_worker(&announcing("w1", 22, 1000, 3000))
        .await
        .unwrap();
    let a = task(&s, "a").await;
    assert_eq!(
        a.state,
        TaskState::Pending,
        "requeued at registration, not at the deadline"
    );
    let cause = a.error.unwrap();
    assert!(cause.contains("worker w1 restarted"), "{cause}");
    assert!(cause.contains("incarnation 11 replaced by 22"), "{cause}");
    let b = task(&s, "b").await;
    assert_eq!(
        b.state,
        TaskState::Dead,
        "out of attempts: dead, like any lost run"
    );
    assert!(b.error.unwrap().contains("worker w1 restarted"));

    let again = s.claim(&claim_as("w1", 22, 5)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].id.as_str(), again[0].attempt),
        (ids[0].as_str(), 2)
    );
    let old = claimed.iter().find(|t| t.id == "a").unwrap();
    assert_eq!(
        s.complete(&[Completion {
            tenant: old.tenant.clone(),
            task_id: "a".into(),
            fence: old.fence,
            output: b"late".to_vec(),
        }])
        .await
        .unwrap(),
        [Settlement::Rejected(Rejection::StaleFence {
            current: again[0].fence
        })],
        "the old incarnation's completion is refused"
    );
    assert_eq!(
        s.fail(
            &[Failure {
                tenant: old.tenant.clone(),
                task_id: "a".into(),
                fence: old.fence,
                error: "late".into(),
                retryable: true,
            }],
            &RetryPolicy::default()
        )
        .await
        .unwrap(),
        [Settlement::Rejected(Rejection::StaleFence {
            current: again[0].fence
        })]
    );
}

pub async fn a_replaced_incarnation_cannot_heartbeat_extend_or_update(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    s.register_worker(&announcing("w1", 1, 1000, 3000))
        .await
        .unwrap();
    s.enqueue(&[NewTask::new("t", "a").with_id("a")])
        .await
        .unwrap();
    s.claim(&claim_as("w1", 1, 1)).await.unwrap();
    clock.advance_ms(500);
    let new = s
        .register_worker(&announcing("w1", 2, 1000, 3000))
        .await
        .unwrap();
    let mine = s.claim(&claim_as("w1", 2, 1)).await.unwrap().remove(0);
    let lease = mine.lease_expires_at.unwrap();

    clock.advance_ms(500);
    assert!(
        !s.record_heartbeat("w1", 1, &HeartbeatInfo::default())
            .await
            .unwrap(),
        "the old process's heartbeat is refused"
    );
    assert!(
        !s.update_worker_status("w1", Some(1), WorkerStatus::Draining, None)
            .await
            .unwrap(),
        "the old process cannot drain its successor"
    );
    assert_eq!(
        s.get_worker("w1").await.unwrap().unwrap(),
        new,
        "record untouched"
    );
    assert_eq!(
        s.extend_worker_leases("w1", 1, LEASE).await.unwrap(),
        0,
        "the old process's heartbeat extends nothing of the new one's"
    );
    assert_eq!(task(&s, "a").await.lease_expires_at, Some(lease));

    assert!(
        s.record_heartbeat("w1", 2, &HeartbeatInfo::default())
            .await
            .unwrap()
    );
    assert_eq!(s.extend_worker_leases("w1", 2, LEASE).await.unwrap(), 1);
    assert_eq!(
        task(&s, "a").await.lease_expires_at,
        Some(clock.now_ms() + LEASE as i64)
    );
    assert!(
        s.update_worker_status("w1", None, WorkerStatus::Draining, None)
            .await
            .unwrap(),
        "an operator's update applies to whichever incarnation is registered"
    );
}
