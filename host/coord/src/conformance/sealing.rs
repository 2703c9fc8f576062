//! Fleet authentication over each backend: hosts wrap the store in a [`SealedStore`], and these
//! cases play the attacker who can write to the store but does not hold the fleet secret. They
//! run on every backend because a seal must survive each backend's round trip of the record.

use std::sync::Arc;

use super::registry::registration;
use super::{StoreFactory, fresh};
use crate::clock::Clock;
use crate::error::StoreError;
use crate::model::*;
use crate::store::Store;
use crate::trust::{FleetKeys, FleetSecret, SealedStore};

const STORE_ID: &str = "conformance";
const LEASE: u64 = 60_000;

fn keys(n: u8) -> FleetKeys {
    FleetKeys::new(FleetSecret::new(&[b'k' + n; 32]).unwrap())
}

fn sealed(inner: &Arc<dyn Store>, keys: Option<FleetKeys>) -> Arc<dyn Store> {
    Arc::new(SealedStore::new(inner.clone(), keys, STORE_ID))
}

fn worker(id: &str, incarnation: u64) -> WorkerRegistration {
    WorkerRegistration {
        incarnation,
        heartbeat_interval_ms: 1_000,
        stale_threshold_ms: 3_000,
        ..registration(id, 4, &[])
    }
}

fn claim_as(worker: &str, incarnation: u64) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.into(),
        task_types: None,
        tenants: None,
        limit: 10,
        lease_ms: LEASE,
        incarnation,
    }
}

fn beat() -> HeartbeatInfo {
    HeartbeatInfo {
        load: Some(0.5),
        active_tasks: Some(1),
        ..Default::default()
    }
}

/// Two fleet workers, `w1` and `w2` (sealed, live), and one pending task; the raw store and
/// `w1`'s process.
async fn fleet_of_two_with_a_task(f: &dyn StoreFactory) -> (Arc<dyn Store>, Arc<dyn Store>) {
    let (inner, _clock) = fresh(f).await;
    let fleet = sealed(&inner, Some(keys(0)));
    fleet.register_worker(&worker("w1", 1)).await.unwrap();
    sealed(&inner, Some(keys(0)))
        .register_worker(&worker("w2", 1))
        .await
        .unwrap();
    inner
        .enqueue(&[NewTask::new("build", b"x".to_vec())])
        .await
        .unwrap();
    (inner, fleet)
}

/// A worker of the fleet registers (sealed) and claims one task.
async fn fleet_worker_with_a_task(inner: &Arc<dyn Store>, fleet: &Arc<dyn Store>) -> Task {
    fleet.register_worker(&worker("w1", 1)).await.unwrap();
    inner
        .enqueue(&[NewTask::new("build", b"x".to_vec())])
        .await
        .unwrap();
    let claimed = fleet.claim(&claim_as("w1", 1)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    claimed.into_iter().next().unwrap()
}

pub async fn a_forged_registration_is_ignored_and_the_worker_restores_its_record(
    f: &dyn StoreFactory,
) {
    let (inner, _clock) = fresh(f).await;
    let fleet = sealed(&inner, Some(keys(0)));
    let task = fleet_worker_with_a_task(&inner, &fleet).await;
    let genuine = fleet
        .get_worker("w1")
        .await
        .unwrap()
        .expect("sealed and visible");
    assert_eq!(genuine.hostname, "w1.example.com");

    // Through Sentinel's own code without the secret: refused outright.
    let keyless = sealed(&inner, None);
    let evil = WorkerRegistration {
        hostname: "evil.example.com".into(),
        ..worker("w1", 1)
    };
    let err = keyless.register_worker(&evil).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid(ref m) if m.contains("fleet secret")),
        "{err}"
    );
    let wrong = sealed(&inner, Some(keys(1)));
    assert!(wrong.register_worker(&evil).await.is_err());

    // Straight into the store: nobody believes it, and the worker's next heartbeat restores
    // its own record without disturbing its task.
    inner.register_worker(&evil).await.unwrap();
    assert_eq!(fleet.get_worker("w1").await.unwrap(), None);
    assert!(fleet.list_workers().await.unwrap().is_empty());
    let maintenance = sealed(&inner, Some(keys(0)));
    assert_eq!(
        maintenance.mark_stale_workers(1_000).await.unwrap(),
        Vec::<String>::new()
    );
    assert!(fleet.record_heartbeat("w1", 1, &beat()).await.unwrap());
    let restored = fleet.get_worker("w1").await.unwrap().expect("restored");
    assert_eq!(restored.hostname, "w1.example.com");
    let still = inner
        .get_task(DEFAULT_TENANT, &task.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((still.state, still.fence), (TaskState::Running, task.fence));
}

pub async fn a_replayed_heartbeat_does_not_keep_a_dead_worker_alive(f: &dyn StoreFactory) {
    let (inner, clock) = fresh(f).await;
    let fleet = sealed(&inner, Some(keys(0)));
    let task = fleet_worker_with_a_task(&inner, &fleet).await;
    assert!(fleet.record_heartbeat("w1", 1, &beat()).await.unwrap());
    let sealed_at = clock.now_ms();
    let recorded = inner.get_worker("w1").await.unwrap().unwrap().heartbeat;
    assert!(recorded.seal.is_some(), "the backend keeps the seal");

    // w1 dies; someone keeps writing its last heartbeat back, so the store's own heartbeat
    // time stays fresh.
    let maintenance = sealed(&inner, Some(keys(0)));
    for _ in 0..5 {
        clock.advance_ms(1_000);
        assert!(inner.record_heartbeat("w1", 1, &recorded).await.unwrap());
    }
    let seen = maintenance.get_worker("w1").await.unwrap().unwrap();
    assert_eq!(
        seen.last_heartbeat, sealed_at,
        "readers see the sealed time"
    );
    let stale = maintenance.mark_stale_workers(1_000).await.unwrap();
    assert_eq!(stale, ["w1"]);
    assert_eq!(maintenance.requeue_worker_tasks("w1").await.unwrap(), 1);
    let requeued = inner
        .get_task(DEFAULT_TENANT, &task.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(requeued.state, TaskState::Pending);
    let dead = maintenance.get_worker("w1").await.unwrap().unwrap();
    assert_eq!(dead.status, WorkerStatus::Offline);
}

pub async fn a_process_without_the_secret_may_not_claim_in_an_authenticated_fleet(
    f: &dyn StoreFactory,
) {
    let (inner, fleet) = fleet_of_two_with_a_task(f).await;
    // A process without the secret, and one with another secret (outnumbered two to one).
    for outsider in [sealed(&inner, None), sealed(&inner, Some(keys(1)))] {
        outsider.register_worker(&worker("rogue", 9)).await.unwrap();
        let err = outsider.claim(&claim_as("rogue", 9)).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Invalid(ref m) if m.contains("fleet")),
            "{err}"
        );
        // Its own record is invisible to the fleet.
        assert_eq!(fleet.get_worker("rogue").await.unwrap(), None);
    }
    assert_eq!(fleet.claim(&claim_as("w1", 1)).await.unwrap().len(), 1);
}

pub async fn tasks_held_by_an_unauthenticated_worker_are_taken_back(f: &dyn StoreFactory) {
    let (inner, clock) = fresh(f).await;
    let fleet = sealed(&inner, Some(keys(0)));
    fleet.register_worker(&worker("w1", 1)).await.unwrap();
    inner
        .enqueue(&[
            NewTask::new("build", b"a".to_vec()),
            NewTask::new("build", b"b".to_vec()),
        ])
        .await
        .unwrap();
    // Claimed straight through the store by a worker with an unsealed record and by one with
    // no record at all, both keeping their leases extended.
    inner.register_worker(&worker("rogue", 9)).await.unwrap();
    let mut one = claim_as("rogue", 9);
    one.limit = 1;
    assert_eq!(inner.claim(&one).await.unwrap().len(), 1);
    let mut other = claim_as("ghost", 5);
    other.limit = 1;
    assert_eq!(inner.claim(&other).await.unwrap().len(), 1);

    let maintenance = sealed(&inner, Some(keys(0)));
    assert_eq!(
        maintenance.mark_stale_workers(1_000).await.unwrap(),
        Vec::<String>::new()
    );
    for _ in 0..4 {
        clock.advance_ms(1_000);
        assert!(fleet.record_heartbeat("w1", 1, &beat()).await.unwrap());
        inner.record_heartbeat("rogue", 9, &beat()).await.unwrap();
        inner.extend_worker_leases("rogue", 9, LEASE).await.unwrap();
        inner.extend_worker_leases("ghost", 5, LEASE).await.unwrap();
    }
    let stale = maintenance.mark_stale_workers(1_000).await.unwrap();
    assert_eq!(stale, ["ghost", "rogue"]);
    for id in &stale {
        assert_eq!(maintenance.requeue_worker_tasks(id).await.unwrap(), 1);
    }
    // The fleet's own worker was never in doubt.
    assert_eq!(
        maintenance.get_worker("w1").await.unwrap().unwrap().status,
        WorkerStatus::Active
    );
}

pub async fn two_secrets_are_accepted_while_the_fleet_changes_its_secret(f: &dyn StoreFactory) {
    let (inner, _clock) = fresh(f).await;
    let old_only = sealed(&inner, Some(keys(0)));
    old_only.register_worker(&worker("old", 1)).await.unwrap();
    let changing = sealed(
        &inner,
        Some(
            FleetKeys::new(FleetSecret::new(&[b'l'; 32]).unwrap())
                .with_previous(FleetSecret::new(&[b'k'; 32]).unwrap()),
        ),
    );
    changing.register_worker(&worker("new", 1)).await.unwrap();
    let names = |ws: Vec<WorkerRecord>| ws.into_iter().map(|w| w.worker_id).collect::<Vec<_>>();
    assert_eq!(
        names(changing.list_workers().await.unwrap()),
        ["new", "old"]
    );
    // Before the change-over ends, the old-only process does not yet accept the new secret.
    assert_eq!(names(old_only.list_workers().await.unwrap()), ["old"]);
    let new_only = sealed(&inner, Some(keys(1)));
    assert_eq!(names(new_only.list_workers().await.unwrap()), ["new"]);
}

/// A claim made straight through the store (before the fleet authenticated, or by a rogue
/// process) cannot be settled, failed or renewed by a process without the fleet's secret: the
/// result is refused, the task stays running until maintenance takes it back, and a fleet
/// worker then completes it.
pub async fn a_settlement_by_a_process_without_the_secret_is_refused(f: &dyn StoreFactory) {
    let (inner, fleet) = fleet_of_two_with_a_task(f).await;
    let task = inner.claim(&claim_as("rogue", 9)).await.unwrap().remove(0);
    for outsider in [sealed(&inner, None), sealed(&inner, Some(keys(1)))] {
        let done = Completion {
            tenant: task.tenant.clone(),
            task_id: task.id.clone(),
            fence: task.fence,
            output: b"forged".to_vec(),
        };
        let err = outsider.complete(&[done]).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Invalid(ref m) if m.contains("fleet")),
            "{err}"
        );
        let failed = Failure {
            tenant: task.tenant.clone(),
            task_id: task.id.clone(),
            fence: task.fence,
            error: "forged".into(),
            retryable: false,
        };
        let policy = RetryPolicy::default();
        assert!(outsider.fail(&[failed], &policy).await.is_err());
        assert!(
            outsider
                .renew_lease(&task.tenant, &task.id, task.fence, LEASE)
                .await
                .is_err()
        );
    }
    let now = inner
        .get_task(&task.tenant, &task.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.state, TaskState::Running);
    assert_eq!(now.output, None, "no forged result was recorded");
    assert_eq!(fleet.requeue_worker_tasks("rogue").await.unwrap(), 1);
    let again = fleet.claim(&claim_as("w1", 1)).await.unwrap().remove(0);
    let settled = fleet
        .complete(&[Completion {
            tenant: again.tenant.clone(),
            task_id: again.id.clone(),
            fence: again.fence,
            output: b"real".to_vec(),
        }])
        .await
        .unwrap();
    assert_eq!(settled, [Settlement::Applied(TaskState::Completed)]);
}
