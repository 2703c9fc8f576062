//! Tenancy: a task's identity is `(tenant, id)`, references resolve inside the tenant, listings
//! page across tenants by a [`TaskKey`], and tenant settings round-trip inside their ranges.
//! Shared helpers for the quota and fairness cases live here too.

use std::sync::Arc;

use super::{StoreFactory, fresh};
use crate::error::StoreError;
use crate::model::*;
use crate::store::Store;

pub(super) const LEASE: u64 = 10_000;

pub(super) fn claim_req(worker: &str, limit: u32, tenants: Option<&[&str]>) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.into(),
        task_types: None,
        tenants: tenants.map(|t| t.iter().map(|s| s.to_string()).collect()),
        limit,
        lease_ms: LEASE,
        incarnation: 0,
    }
}

/// Claims up to `limit` tasks of any tenant for `worker`.
pub(super) async fn claim(s: &Arc<dyn Store>, worker: &str, limit: u32) -> Vec<Task> {
    s.claim(&claim_req(worker, limit, None)).await.unwrap()
}

/// Claims one task of `tenant`.
pub(super) async fn claim_in(s: &Arc<dyn Store>, worker: &str, tenant: &str) -> Option<Task> {
    s.claim(&claim_req(worker, 1, Some(&[tenant])))
        .await
        .unwrap()
        .pop()
}

pub(super) fn done(t: &Task, out: &[u8]) -> Completion {
    Completion {
        tenant: t.tenant.clone(),
        task_id: t.id.clone(),
        fence: t.fence,
        output: out.to_vec(),
    }
}

pub(super) fn failed(t: &Task, retryable: bool) -> Failure {
    Failure {
        tenant: t.tenant.clone(),
        task_id: t.id.clone(),
        fence: t.fence,
        error: "boom".into(),
        retryable,
    }
}

pub(super) fn no_jitter() -> RetryPolicy {
    RetryPolicy {
        jitter: 0.0,
        ..RetryPolicy::default()
    }
}

pub(super) fn task(tenant: &str, id: &str) -> NewTask {
    NewTask::new("t", id.as_bytes().to_vec())
        .with_id(id)
        .with_tenant(tenant)
}

pub(super) async fn get(s: &Arc<dyn Store>, tenant: &str, id: &str) -> Task {
    s.get_task(tenant, id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("task {tenant}/{id} exists"))
}

pub(super) fn quota_error(e: StoreError) -> QuotaExceeded {
    match e {
        StoreError::Quota(q) => q,
        other => panic!("expected a quota refusal, got {other:?}"),
    }
}

pub async fn the_same_task_id_lives_in_two_tenants(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let a = s
        .enqueue(&[NewTask::new("t", "from-a")
            .with_id("job-1")
            .with_tenant("A")])
        .await
        .unwrap();
    let b = s
        .enqueue(&[NewTask::new("t", "from-b")
            .with_id("job-1")
            .with_tenant("B")])
        .await
        .unwrap();
    assert_eq!(
        (a, b),
        (vec!["job-1".to_string()], vec!["job-1".to_string()])
    );
    let err = s.enqueue(&[task("A", "job-1")]).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid(_)),
        "ids stay unique within a tenant: {err:?}"
    );
    let err = s
        .enqueue(&[task("C", "dup"), task("C", "dup")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(s.get_task("C", "dup").await.unwrap().is_none());

    let ta = claim_in(&s, "w", "A").await.expect("A's job-1");
    assert_eq!((ta.tenant.as_str(), &ta.payload[..]), ("A", &b"from-a"[..]));
    // Settling or renewing with the right id and fence but the other tenant touches nothing.
    let wrong = Completion {
        tenant: "B".into(),
        ..done(&ta, b"x")
    };
    assert_eq!(
        s.complete(&[wrong]).await.unwrap(),
        [Settlement::Rejected(Rejection::NotRunning(
            TaskState::Pending
        ))]
    );
    assert_eq!(
        s.renew_lease("B", "job-1", ta.fence, LEASE).await.unwrap(),
        Err(Rejection::NotRunning(TaskState::Pending))
    );
    assert_eq!(
        s.renew_lease("C", "job-1", ta.fence, LEASE).await.unwrap(),
        Err(Rejection::NotFound)
    );
    assert!(
        s.renew_lease("A", "job-1", ta.fence, LEASE)
            .await
            .unwrap()
            .is_ok()
    );
    assert_eq!(
        s.complete(&[done(&ta, b"out-a")]).await.unwrap(),
        [Settlement::Applied(TaskState::Completed)]
    );
    let (ga, gb) = (get(&s, "A", "job-1").await, get(&s, "B", "job-1").await);
    assert_eq!(
        (ga.state, ga.output.as_deref()),
        (TaskState::Completed, Some(&b"out-a"[..]))
    );
    assert_eq!(
        (gb.state, &gb.payload[..], gb.fence),
        (TaskState::Pending, &b"from-b"[..], 0)
    );

    // Failures are scoped the same way: both run with fence 1, only A's fails.
    // (B's job-2 outranks its still pending job-1.)
    s.enqueue(&[task("A", "job-2"), task("B", "job-2").with_priority(1)])
        .await
        .unwrap();
    let ta = claim_in(&s, "w", "A").await.unwrap();
    let tb = claim_in(&s, "w", "B").await.unwrap();
    assert_eq!((ta.id.as_str(), tb.id.as_str()), ("job-2", "job-2"));
    let f = Failure {
        tenant: "A".into(),
        ..failed(&tb, false)
    };
    assert_eq!(
        s.fail(&[f], &no_jitter()).await.unwrap(),
        [Settlement::Applied(TaskState::Dead)]
    );
    assert_eq!(get(&s, "B", "job-2").await.state, TaskState::Running);

    // Cancel and retry act on the named tenant only.
    assert!(
        !s.cancel("A", "job-1").await.unwrap(),
        "A's job-1 is completed"
    );
    assert!(s.cancel("B", "job-1").await.unwrap());
    assert_eq!(get(&s, "A", "job-1").await.state, TaskState::Completed);
    assert!(
        !s.retry_dead("B", "job-2").await.unwrap(),
        "B's job-2 is running"
    );
    assert!(s.retry_dead("A", "job-2").await.unwrap());
    assert_eq!(get(&s, "A", "job-2").await.state, TaskState::Pending);
    assert_eq!(get(&s, "B", "job-2").await.state, TaskState::Running);
    let all = s.list_tasks(&TaskFilter::default()).await.unwrap();
    assert_eq!(all.iter().filter(|t| t.id == "job-1").count(), 2);
}

pub async fn dependencies_resolve_only_inside_the_tenant(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    s.enqueue(&[task("A", "p")]).await.unwrap();
    let err = s
        .enqueue(&[task("B", "c").depends_on(["p"])])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid(_)),
        "A's p is unknown in B: {err:?}"
    );
    assert!(s.get_task("B", "c").await.unwrap().is_none());

    s.enqueue(&[task("B", "p"), task("B", "c").depends_on(["p"])])
        .await
        .unwrap();
    let pa = claim_in(&s, "w", "A").await.unwrap();
    s.complete(&[done(&pa, b"from-a")]).await.unwrap();
    let pb = claim_in(&s, "w", "B").await.expect("B's p");
    assert_eq!(pb.id, "p");
    assert!(
        claim_in(&s, "w", "B").await.is_none(),
        "B's c waits for B's p, not A's"
    );
    s.complete(&[done(&pb, b"from-b")]).await.unwrap();
    let c = claim_in(&s, "w", "B").await.expect("B's c");
    assert_eq!(
        c.dependency_outputs.get("p").map(Vec::as_slice),
        Some(&b"from-b"[..])
    );
    s.complete(&[done(&c, b"")]).await.unwrap();

    // Affinity: `same_worker_as` names a task of the same tenant.
    s.enqueue(&[task("A", "x"), task("B", "x")]).await.unwrap();
    let xa = claim_in(&s, "w-a", "A").await.unwrap();
    let xb = claim_in(&s, "w-b", "B").await.unwrap();
    assert_eq!((xa.id.as_str(), xb.id.as_str()), ("x", "x"));
    let follow = task("B", "y").with_affinity(Affinity {
        same_worker_as: Some("x".into()),
        ..Affinity::default()
    });
    s.enqueue(&[follow]).await.unwrap();
    assert!(
        claim_in(&s, "w-a", "B").await.is_none(),
        "w-a ran A's x, not B's"
    );
    assert_eq!(
        claim_in(&s, "w-b", "B").await.map(|t| t.id),
        Some("y".into())
    );

    // A dead task fails its dependents in its own tenant only.
    s.enqueue(&[
        task("A", "d"),
        task("A", "e").depends_on(["d"]),
        task("B", "d"),
        task("B", "e").depends_on(["d"]),
    ])
    .await
    .unwrap();
    let da = claim_in(&s, "w", "A").await.unwrap();
    assert_eq!(da.id, "d");
    s.fail(&[failed(&da, false)], &no_jitter()).await.unwrap();
    assert_eq!(get(&s, "A", "e").await.state, TaskState::Dead);
    assert_eq!(get(&s, "B", "e").await.state, TaskState::Pending);
    assert!(s.cancel("B", "d").await.unwrap());
    assert_eq!(get(&s, "B", "e").await.state, TaskState::Dead);
}

pub async fn an_admin_listing_pages_across_tenants_by_task_key(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    let mut want = Vec::new();
    for i in 0..3 {
        for tenant in ["B", "A"] {
            let id = format!("job-{i}");
            s.enqueue(&[task(tenant, &id)]).await.unwrap();
            want.push(TaskKey::new(tenant, id));
            clock.advance_ms(1);
        }
    }
    for (order, expected) in [
        (TaskOrder::Oldest, want.clone()),
        (TaskOrder::Newest, want.iter().rev().cloned().collect()),
    ] {
        let mut seen = Vec::new();
        let mut after: Option<TaskKey> = None;
        loop {
            let filter = TaskFilter {
                order,
                after: after.clone(),
                limit: 4,
                ..Default::default()
            };
            let page = s.list_tasks(&filter).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.key());
            seen.extend(page.iter().map(Task::key));
        }
        assert_eq!(seen, expected, "{order:?}");
    }
    let unknown = TaskFilter {
        order: TaskOrder::Oldest,
        after: Some(TaskKey::new("C", "job-0")),
        ..Default::default()
    };
    let err = s.list_tasks(&unknown).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
}

pub async fn tenant_settings_roundtrip_and_ranges(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    assert_eq!(s.get_tenant("acme").await.unwrap(), None);
    assert_eq!(
        s.tenant_usage("acme").await.unwrap(),
        TenantUsage::default()
    );
    let full = TenantSettings::new("acme")
        .with_weight(7)
        .with_quota(TenantQuota {
            max_queued: Some(10),
            max_running: Some(2),
            submit_rate: Some(RateLimit {
                per_second: 5,
                burst: 20,
            }),
            memory_keys: Some(3),
            memory_bytes: Some(4096),
        });
    s.put_tenant(&full).await.unwrap();
    assert_eq!(s.get_tenant("acme").await.unwrap().as_ref(), Some(&full));
    let lighter = TenantSettings::new("acme").with_weight(2);
    s.put_tenant(&lighter).await.unwrap();
    assert_eq!(s.get_tenant("acme").await.unwrap().as_ref(), Some(&lighter));
    assert_eq!(s.get_tenant("other").await.unwrap(), None);

    let extremes = TenantSettings::new("edge")
        .with_weight(1000)
        .with_quota(TenantQuota {
            max_queued: Some(100_000_000),
            max_running: Some(1_000_000),
            submit_rate: Some(RateLimit {
                per_second: 100_000,
                burst: 1_000_000,
            }),
            memory_keys: Some(100_000_000),
            memory_bytes: Some(1 << 40),
        });
    let zeros = TenantSettings::new("zero").with_quota(TenantQuota {
        max_queued: Some(0),
        max_running: Some(0),
        submit_rate: Some(RateLimit {
            per_second: 1,
            burst: 1,
        }),
        memory_keys: Some(0),
        memory_bytes: Some(0),
    });
    for ok in [&extremes, &zeros] {
        s.put_tenant(ok).await.unwrap();
        assert_eq!(s.get_tenant(&ok.tenant).await.unwrap().as_ref(), Some(ok));
    }

    let q = TenantQuota::default;
    let rate = |per_second, burst| TenantQuota {
        submit_rate: Some(RateLimit { per_second, burst }),
        ..q()
    };
    let bad = [
        ("weight", lighter.clone().with_weight(0)),
        ("weight", lighter.clone().with_weight(1001)),
        (
            "max_queued",
            lighter.clone().with_quota(TenantQuota {
                max_queued: Some(100_000_001),
                ..q()
            }),
        ),
        (
            "max_running",
            lighter.clone().with_quota(TenantQuota {
                max_running: Some(1_000_001),
                ..q()
            }),
        ),
        ("per_second", lighter.clone().with_quota(rate(0, 1))),
        ("per_second", lighter.clone().with_quota(rate(100_001, 1))),
        ("burst", lighter.clone().with_quota(rate(1, 0))),
        ("burst", lighter.clone().with_quota(rate(1, 1_000_001))),
        (
            "memory_keys",
            lighter.clone().with_quota(TenantQuota {
                memory_keys: Some(100_000_001),
                ..q()
            }),
        ),
        (
            "memory_bytes",
            lighter.clone().with_quota(TenantQuota {
                memory_bytes: Some((1 << 40) + 1),
                ..q()
            }),
        ),
        ("tenant", TenantSettings::new("")),
        (
            "tenant",
            TenantSettings::new("x".repeat(limits::MAX_NAME_BYTES + 1)),
        ),
    ];
    for (field, settings) in bad {
        match s.put_tenant(&settings).await {
            Err(StoreError::Invalid(m)) => assert!(m.contains(field), "{field}: {m}"),
            other => panic!("{field}: expected Invalid, got {other:?}"),
        }
    }
    assert_eq!(
        s.get_tenant("acme").await.unwrap().as_ref(),
        Some(&lighter),
        "a refused put changes nothing"
    );
}
