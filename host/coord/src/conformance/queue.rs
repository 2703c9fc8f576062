//! Queue cases.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::registry::registration;
use super::{StoreFactory, fresh};
use crate::model::*;
use crate::store::{Store, Topic};

const LEASE: u64 = 10_000;

pub(super) fn claim_req(worker: &str, limit: u32) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.into(),
        task_types: None,
        tenants: None,
        limit,
        lease_ms: LEASE,
        incarnation: 0,
    }
}

pub(super) async fn claim(s: &Arc<dyn Store>, worker: &str, limit: u32) -> Vec<Task> {
    s.claim(&claim_req(worker, limit)).await.unwrap()
}

async fn claim_one(s: &Arc<dyn Store>, worker: &str) -> Option<Task> {
    claim(s, worker, 1).await.pop()
}

pub(super) fn done(t: &Task, out: &[u8]) -> Completion {
    Completion {
        tenant: t.tenant.clone(),
        task_id: t.id.clone(),
        fence: t.fence,
        output: out.to_vec(),
    }
}

fn failure(t: &Task, retryable: bool) -> Failure {
    Failure {
        tenant: t.tenant.clone(),
        task_id: t.id.clone(),
        fence: t.fence,
        error: "boom".into(),
        retryable,
    }
}

fn no_jitter() -> RetryPolicy {
    RetryPolicy {
        jitter: 0.0,
        ..RetryPolicy::default()
    }
}

async fn state(s: &Arc<dyn Store>, id: &str) -> TaskState {
    s.get_task(DEFAULT_TENANT, id)
        .await
        .unwrap()
        .expect("task exists")
        .state
}

pub async fn claim_order_is_priority_then_fifo(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let ids = s
        .enqueue(&[
            NewTask::new("t", "low-1").with_priority(1),
            NewTask::new("t", "high-1").with_priority(10),
            NewTask::new("t", "low-2").with_priority(1),
            NewTask::new("t", "high-2").with_priority(10),
            NewTask::new("t", "neg").with_priority(-5),
        ])
        .await
        .unwrap();
    assert_eq!(ids.len(), 5);
    assert!(
        ids.iter()
            .all(|id| uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 7))
    );
    let got: Vec<Vec<u8>> = claim(&s, "w", 10)
        .await
        .into_iter()
        .map(|t| t.payload)
        .collect();
    let want: Vec<Vec<u8>> = ["high-1", "high-2", "low-1", "low-2", "neg"]
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    assert_eq!(got, want);
    assert!(claim(&s, "w", 10).await.is_empty());
}

pub async fn batch_enqueue_is_all_or_nothing(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let err = s
        .enqueue(&[
            NewTask::new("t", "ok"),
            NewTask::new("t", "bad").depends_on(["no-such-task"]),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, crate::StoreError::Invalid(_)), "{err:?}");
    assert_eq!(
        s.queue_stats(None).await.unwrap().total(),
        0,
        "nothing of a refused batch is stored"
    );
    s.enqueue(&[NewTask::new("t", "a").with_id("fixed")])
        .await
        .unwrap();
    assert!(
        s.enqueue(&[NewTask::new("t", "b").with_id("fixed")])
            .await
            .is_err(),
        "ids are unique"
    );
}

pub async fn concurrent_claims_never_hand_out_a_task_twice(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let tasks: Vec<NewTask> = (0..200)
        .map(|i| NewTask::new("t", format!("{i}")))
        .collect();
    s.enqueue(&tasks).await.unwrap();
    let mut handles = Vec::new();
    for w in 0..8 {
        let s = Arc::clone(&s);
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = s.claim(&claim_req(&format!("w{w}"), 7)).await.unwrap();
                if batch.is_empty() {
                    return mine;
                }
                let c: Vec<Completion> = batch.iter().map(|t| done(t, b"ok")).collect();
                let settled = s.complete(&c).await.unwrap();
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
    assert_eq!(all.len(), 200, "every task claimed once");
    assert_eq!(unique.len(), 200, "no task claimed twice");
    assert_eq!(s.queue_stats(None).await.unwrap().completed, 200);
}

pub async fn claim_filters_by_task_type_and_tenant(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    s.enqueue(&[
        NewTask::new("build", "b").with_priority(5),
        NewTask::new("test", "t"),
        NewTask::new("build", "other-tenant")
            .with_tenant("acme")
            .with_priority(9),
    ])
    .await
    .unwrap();
    let req = ClaimRequest {
        task_types: Some(vec!["test".into(), "deploy".into()]),
        ..claim_req("w", 10)
    };
    let got = s.claim(&req).await.unwrap();
    assert_eq!(
        got.iter().map(|t| t.payload.clone()).collect::<Vec<_>>(),
        [b"t".to_vec()]
    );
    let req = ClaimRequest {
        tenants: Some(vec![DEFAULT_TENANT.into()]),
        ..claim_req("w", 10)
    };
    let got = s.claim(&req).await.unwrap();
    assert_eq!(
        got.iter().map(|t| t.payload.clone()).collect::<Vec<_>>(),
        [b"b".to_vec()]
    );
    let got = claim(&s, "w", 10).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].tenant, "acme");
}

pub async fn completion_requires_the_current_fence(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    let id = s
        .enqueue(&[NewTask::new("t", "x")])
        .await
        .unwrap()
        .remove(0);
    let first = claim_one(&s, "w1").await.unwrap();
    assert_eq!(
        (first.attempt, first.state, first.worker_id.as_deref()),
        (1, TaskState::Running, Some("w1"))
    );
    assert_eq!(first.lease_expires_at, Some(clock.now() + LEASE as i64));
    clock.advance_ms(LEASE as i64);
    s.reap_expired(&no_jitter()).await.unwrap();
    assert_eq!(
        s.complete(&[done(&first, b"late")]).await.unwrap(),
        [Settlement::Rejected(Rejection::NotRunning(
            TaskState::Pending
        ))],
        "a worker whose lease was lost cannot complete"
    );
    let second = claim_one(&s, "w2").await.unwrap();
    assert!(second.fence > first.fence);
    assert_eq!(
        s.complete(&[done(&first, b"late")]).await.unwrap(),
        [Settlement::Rejected(Rejection::StaleFence {
            current: second.fence
        })]
    );
    assert_eq!(
        s.complete(&[done(&second, b"ok")]).await.unwrap(),
        [Settlement::Applied(TaskState::Completed)]
    );
    assert_eq!(
        s.complete(&[done(&second, b"again")]).await.unwrap(),
        [Settlement::Rejected(Rejection::NotRunning(
            TaskState::Completed
        ))],
        "completion is exactly once"
    );
    let t = s.get_task(DEFAULT_TENANT, &id).await.unwrap().unwrap();
    assert_eq!(t.output.as_deref(), Some(&b"ok"[..]));
    let missing = Completion {
        tenant: DEFAULT_TENANT.into(),
        task_id: "nope".into(),
        fence: 1,
        output: vec![],
    };
    assert_eq!(
        s.complete(&[missing]).await.unwrap(),
        [Settlement::Rejected(Rejection::NotFound)]
    );
}

pub async fn failure_retries_with_backoff_then_dead_letters(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    let id = s
        .enqueue(&[NewTask::new("t", "x").with_max_retries(2)])
        .await
        .unwrap()
        .remove(0);
    let policy = no_jitter();
    for (attempt, delay) in [(1u32, 1000i64), (2, 2000)] {
        let t = claim_one(&s, "w").await.unwrap();
        assert_eq!(t.attempt, attempt);
        assert_eq!(
            s.fail(&[failure(&t, true)], &policy).await.unwrap(),
            [Settlement::Applied(TaskState::Failed)]
        );
        let t = s.get_task(DEFAULT_TENANT, &id).await.unwrap().unwrap();
        assert_eq!(
            (t.state, t.error.as_deref(), t.run_at),
            (TaskState::Failed, Some("boom"), clock.now() + delay)
        );
        clock.advance_ms(delay - 1);
        assert!(
            claim_one(&s, "w").await.is_none(),
            "not claimable during backoff"
        );
        clock.advance_ms(1);
    }
    let t = claim_one(&s, "w").await.unwrap();
    assert_eq!(t.attempt, 3);
    assert_eq!(
        s.fail(&[failure(&t, true)], &policy).await.unwrap(),
        [Settlement::Applied(TaskState::Dead)]
    );
    let dead = s
        .list_tasks(&TaskFilter {
            state: Some(TaskState::Dead),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].error.as_deref().unwrap().contains("boom"),
        "the DLQ keeps the reason"
    );
    assert!(claim_one(&s, "w").await.is_none());
}

pub async fn non_retryable_failure_goes_straight_to_dead_letter(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let id = s
        .enqueue(&[NewTask::new("t", "x")])
        .await
        .unwrap()
        .remove(0);
    let t = claim_one(&s, "w").await.unwrap();
    assert_eq!(
        s.fail(&[failure(&t, false)], &no_jitter()).await.unwrap(),
        [Settlement::Applied(TaskState::Dead)]
    );
    assert_eq!(state(&s, &id).await, TaskState::Dead);
    assert_eq!(
        s.fail(&[failure(&t, true)], &no_jitter()).await.unwrap(),
        [Settlement::Rejected(Rejection::NotRunning(TaskState::Dead))]
    );
}

pub async fn dead_letter_task_can_be_retried(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let id = s
        .enqueue(&[NewTask::new("t", "x").with_max_retries(0)])
        .await
        .unwrap()
        .remove(0);
    assert!(
        !s.retry_dead(DEFAULT_TENANT, &id).await.unwrap(),
        "only dead tasks can be retried"
    );
    let t = claim_one(&s, "w").await.unwrap();
    s.fail(&[failure(&t, true)], &no_jitter()).await.unwrap();
    assert_eq!(state(&s, &id).await, TaskState::Dead);
    assert!(!s.retry_dead("someone-else", &id).await.unwrap());
    assert!(s.retry_dead(DEFAULT_TENANT, &id).await.unwrap());
    let t2 = claim_one(&s, "w").await.unwrap();
    assert_eq!(
        (t2.id.as_str(), t2.attempt),
        (id.as_str(), 1),
        "a retried task starts its attempts over"
    );
    assert!(t2.fence > t.fence);
}

pub async fn cancelled_task_refuses_its_workers_completion(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let ids = s
        .enqueue(&[NewTask::new("t", "a"), NewTask::new("t", "b")])
        .await
        .unwrap();
    assert!(s.cancel(DEFAULT_TENANT, &ids[1]).await.unwrap());
    let t = claim_one(&s, "w").await.unwrap();
    assert_eq!(t.id, ids[0]);
    assert!(
        claim_one(&s, "w").await.is_none(),
        "a cancelled task is never claimed"
    );
    assert!(s.cancel(DEFAULT_TENANT, &ids[0]).await.unwrap());
    assert_eq!(
        s.complete(&[done(&t, b"x")]).await.unwrap(),
        [Settlement::Rejected(Rejection::NotRunning(
            TaskState::Cancelled
        ))]
    );
    assert!(
        !s.cancel(DEFAULT_TENANT, &ids[0]).await.unwrap(),
        "terminal tasks cannot be cancelled"
    );
}

pub async fn expired_lease_is_requeued_and_next_claim_is_next_attempt(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    s.enqueue(&[NewTask::new("t", "x")]).await.unwrap();
    let t = claim_one(&s, "w1").await.unwrap();
    clock.advance_ms(LEASE as i64 - 1);
    assert_eq!(
        s.reap_expired(&no_jitter()).await.unwrap(),
        ReapReport::default()
    );
    clock.advance_ms(1);
    assert_eq!(
        s.reap_expired(&no_jitter()).await.unwrap(),
        ReapReport {
            requeued: 1,
            ..Default::default()
        }
    );
    let again = claim_one(&s, "w2").await.unwrap();
    assert_eq!((again.id, again.attempt), (t.id, 2));
}

pub async fn task_past_its_deadline_fails_with_timeout(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    let id = s
        .enqueue(&[NewTask::new("t", "x").with_timeout_ms(500)])
        .await
        .unwrap()
        .remove(0);
    let t = claim_one(&s, "w").await.unwrap();
    assert_eq!(t.timeout_ms, 500);
    s.renew_lease(&t.tenant, &t.id, t.fence, LEASE)
        .await
        .unwrap()
        .unwrap();
    clock.advance_ms(500);
    assert_eq!(
        s.reap_expired(&no_jitter()).await.unwrap(),
        ReapReport {
            retrying: 1,
            ..Default::default()
        }
    );
    let t = s.get_task(DEFAULT_TENANT, &id).await.unwrap().unwrap();
    assert_eq!(t.state, TaskState::Failed);
    assert!(t.error.unwrap().contains("timed out"));
}

pub async fn killed_workers_task_is_requeued_with_next_attempt(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    s.enqueue(&[NewTask::new("t", "a"), NewTask::new("t", "b")])
        .await
        .unwrap();
    let a = claim_one(&s, "doomed").await.unwrap();
    let b = claim_one(&s, "survivor").await.unwrap();
    assert_eq!(s.requeue_worker_tasks("doomed").await.unwrap(), 1);
    assert_eq!(
        state(&s, &b.id).await,
        TaskState::Running,
        "other workers' tasks are untouched"
    );
    let again = claim_one(&s, "survivor").await.unwrap();
    assert_eq!((again.id.as_str(), again.attempt), (a.id.as_str(), 2));
    assert_eq!(
        s.complete(&[done(&a, b"zombie")]).await.unwrap(),
        [Settlement::Rejected(Rejection::StaleFence {
            current: again.fence
        })]
    );
}

pub async fn task_that_keeps_losing_its_worker_ends_dead(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let id = s
        .enqueue(&[NewTask::new("t", "x").with_max_retries(1)])
        .await
        .unwrap()
        .remove(0);
    claim_one(&s, "w1").await.unwrap();
    s.requeue_worker_tasks("w1").await.unwrap();
    assert_eq!(state(&s, &id).await, TaskState::Pending);
    claim_one(&s, "w2").await.unwrap();
    s.requeue_worker_tasks("w2").await.unwrap();
    let t = s.get_task(DEFAULT_TENANT, &id).await.unwrap().unwrap();
    assert_eq!(t.state, TaskState::Dead);
    assert!(t.error.unwrap().contains("w2"));
}

pub async fn lease_renewal_and_heartbeat_extension(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    s.enqueue(&[NewTask::new("t", "a"), NewTask::new("t", "b")])
        .await
        .unwrap();
    let a = claim_one(&s, "w").await.unwrap();
    let b = claim_one(&s, "w").await.unwrap();
    clock.advance_ms(LEASE as i64 - 10);
    assert_eq!(
        s.renew_lease(&a.tenant, &a.id, a.fence, LEASE)
            .await
            .unwrap(),
        Ok(clock.now() + LEASE as i64)
    );
    assert_eq!(
        s.renew_lease(&a.tenant, &a.id, a.fence + 1, LEASE)
            .await
            .unwrap(),
        Err(Rejection::StaleFence { current: a.fence })
    );
    assert_eq!(
        s.renew_lease(DEFAULT_TENANT, "nope", 1, LEASE)
            .await
            .unwrap(),
        Err(Rejection::NotFound)
    );
    clock.advance_ms(5);
    assert_eq!(s.extend_worker_leases("w", 0, LEASE).await.unwrap(), 2);
    clock.advance_ms(LEASE as i64 - 1);
    assert_eq!(
        s.reap_expired(&no_jitter()).await.unwrap(),
        ReapReport::default(),
        "both leases were extended"
    );
    assert_eq!(state(&s, &b.id).await, TaskState::Running);
}

pub async fn dependencies_gate_claims_and_pass_outputs(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let ids = s
        .enqueue(&[
            NewTask::new("extract", "e").with_id("extract"),
            NewTask::new("other", "o").with_id("other"),
        ])
        .await
        .unwrap();
    s.enqueue(&[NewTask::new("transform", "t")
        .with_id("transform")
        .with_priority(100)
        .depends_on(ids.clone())])
        .await
        .unwrap();
    let first = claim(&s, "w", 10).await;
    assert_eq!(
        first.len(),
        2,
        "the dependent waits despite its higher priority"
    );
    assert!(first.iter().all(|t| t.id != "transform"));
    for t in &first {
        let out = format!("out-{}", t.id);
        s.complete(&[done(t, out.as_bytes())]).await.unwrap();
        if t.id == "extract" {
            assert!(
                claim_one(&s, "w").await.is_none(),
                "still waiting for its other dependency"
            );
        }
    }
    let t = claim_one(&s, "w").await.unwrap();
    assert_eq!(t.id, "transform");
    assert_eq!(t.depends_on, ids);
    assert_eq!(
        t.dependency_outputs.get("extract").map(Vec::as_slice),
        Some(&b"out-extract"[..])
    );
    assert_eq!(
        t.dependency_outputs.get("other").map(Vec::as_slice),
        Some(&b"out-other"[..])
    );
}

pub async fn dead_dependency_fails_dependents_fast(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    s.enqueue(&[NewTask::new("t", "a").with_id("a").with_max_retries(0)])
        .await
        .unwrap();
    s.enqueue(&[NewTask::new("t", "b").with_id("b").depends_on(["a"])])
        .await
        .unwrap();
    s.enqueue(&[NewTask::new("t", "c").with_id("c").depends_on(["b"])])
        .await
        .unwrap();
    let a = claim_one(&s, "w").await.unwrap();
    s.fail(&[failure(&a, true)], &no_jitter()).await.unwrap();
    for id in ["a", "b", "c"] {
        assert_eq!(state(&s, id).await, TaskState::Dead, "{id} is dead");
    }
    let c = s.get_task(DEFAULT_TENANT, "c").await.unwrap().unwrap();
    assert!(
        c.error.unwrap().contains("b"),
        "the reason names the dead dependency"
    );
    s.enqueue(&[NewTask::new("t", "d").with_id("d").depends_on(["a"])])
        .await
        .unwrap();
    assert_eq!(
        state(&s, "d").await,
        TaskState::Dead,
        "a task submitted after its dependency died is dead at once"
    );
    assert!(
        !s.retry_dead(DEFAULT_TENANT, "b").await.unwrap(),
        "retry the dependency first"
    );
    assert!(s.retry_dead(DEFAULT_TENANT, "a").await.unwrap());
    assert!(s.retry_dead(DEFAULT_TENANT, "b").await.unwrap());
}

pub async fn affinity_rules_restrict_claims(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    s.enqueue(&[NewTask::new("t", "first").with_id("first")])
        .await
        .unwrap();
    let first = claim_one(&s, "w1").await.unwrap();
    s.complete(&[done(&first, b"")]).await.unwrap();
    s.enqueue(&[
        NewTask::new("t", "pinned")
            .with_id("pinned")
            .with_affinity(Affinity {
                required_worker: Some("w2".into()),
                ..Default::default()
            }),
        NewTask::new("t", "follow")
            .with_id("follow")
            .with_affinity(Affinity {
                same_worker_as: Some("first".into()),
                ..Default::default()
            }),
        NewTask::new("t", "avoid")
            .with_id("avoid")
            .with_affinity(Affinity {
                excluded_workers: vec!["w1".into(), "w3".into()],
                ..Default::default()
            }),
    ])
    .await
    .unwrap();
    let ids = |v: Vec<Task>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert!(
        claim(&s, "w3", 10).await.is_empty(),
        "w3 is excluded, not pinned, not first's worker"
    );
    assert_eq!(ids(claim(&s, "w1", 10).await), ["follow"]);
    assert_eq!(ids(claim(&s, "w2", 10).await), ["pinned", "avoid"]);
}

pub async fn stats_count_by_state_and_results_are_kept(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let ids = s
        .enqueue(
            &(0..6)
                .map(|i| NewTask::new("t", format!("{i}")).with_max_retries(1))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    s.enqueue(&[NewTask::new("t", "x").with_tenant("acme")])
        .await
        .unwrap();
    let only_default = ClaimRequest {
        tenants: Some(vec![DEFAULT_TENANT.into()]),
        ..claim_req("w", 4)
    };
    let got = s.claim(&only_default).await.unwrap();
    s.complete(&[done(&got[0], b"result-0")]).await.unwrap();
    s.fail(&[failure(&got[1], true)], &no_jitter())
        .await
        .unwrap();
    s.fail(&[failure(&got[2], false)], &no_jitter())
        .await
        .unwrap();
    s.cancel(DEFAULT_TENANT, &ids[5]).await.unwrap();
    let st = s.queue_stats(Some(DEFAULT_TENANT)).await.unwrap();
    assert_eq!(
        st,
        QueueStats {
            pending: 1,
            running: 1,
            completed: 1,
            failed: 1,
            dead: 1,
            cancelled: 1
        }
    );
    assert_eq!(s.queue_stats(None).await.unwrap().pending, 2);
    let t = s.get_task(DEFAULT_TENANT, &ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (t.state, t.output.as_deref()),
        (TaskState::Completed, Some(&b"result-0"[..]))
    );
    assert!(t.finished_at.is_some());
}

pub async fn tasks_are_isolated_by_tenant(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let id = s
        .enqueue(&[NewTask::new("t", "secret").with_tenant("acme")])
        .await
        .unwrap()
        .remove(0);
    assert!(s.get_task("other", &id).await.unwrap().is_none());
    assert!(!s.cancel("other", &id).await.unwrap());
    assert!(s.get_task("acme", &id).await.unwrap().is_some());
    let listed = s
        .list_tasks(&TaskFilter {
            tenant: Some("other".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(listed.is_empty());
    assert_eq!(s.queue_stats(Some("other")).await.unwrap().total(), 0);
    let err = s
        .enqueue(&[NewTask::new("t", "x")
            .with_tenant("other")
            .depends_on([id.clone()])])
        .await
        .unwrap_err();
    assert!(
        matches!(err, crate::StoreError::Invalid(_)),
        "dependencies cannot cross tenants"
    );
}

pub async fn submit_notifies_task_subscribers(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let mut rx = s.subscribe(Topic::Tasks);
    rx.borrow_and_update();
    let s2 = Arc::clone(&s);
    let waiter = tokio::spawn(async move {
        tokio::time::timeout(Duration::from_secs(2), rx.changed())
            .await
            .is_ok()
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    s2.enqueue(&[NewTask::new("t", "x")]).await.unwrap();
    assert!(waiter.await.unwrap(), "a submit wakes a waiting worker");
}

pub async fn completion_updates_worker_stats(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    s.register_worker(&registration("w", 4, &[])).await.unwrap();
    s.enqueue(&[NewTask::new("t", "a"), NewTask::new("t", "b")])
        .await
        .unwrap();
    let got = claim(&s, "w", 2).await;
    clock.advance_ms(40);
    s.complete(&[done(&got[0], b"")]).await.unwrap();
    s.fail(&[failure(&got[1], false)], &no_jitter())
        .await
        .unwrap();
    let st = s.get_worker("w").await.unwrap().unwrap().stats;
    assert_eq!(
        st,
        WorkerStats {
            completed: 1,
            failed: 1,
            total_duration_ms: 80
        }
    );
}

trait Now {
    fn now(&self) -> i64;
}

impl Now for crate::clock::ManualClock {
    fn now(&self) -> i64 {
        crate::clock::Clock::now_ms(self)
    }
}
