//! Claims given back unstarted: what a worker's local buffer relies on at shutdown.

use std::time::Duration;

use super::queue::{claim, done};
use super::{StoreFactory, fresh};
use crate::model::*;
use crate::store::Topic;

fn task(id: &str) -> NewTask {
    NewTask {
        id: Some(id.into()),
        ..NewTask::new("t", id)
    }
}

/// Released claims are pending again at once, in their old place, their attempt not counted and
/// their old fence void; a claim already moved on (stale fence) or settled is left alone.
pub async fn released_claims_return_to_the_queue_uncounted(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    s.enqueue(&[task("a"), task("b"), task("c"), task("d")])
        .await
        .unwrap();
    let got = claim(&s, "w1", 4).await;
    let ids: Vec<&str> = got.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d"]);
    assert!(got.iter().all(|t| t.attempt == 1));
    s.complete(&[done(&got[3], b"ok")]).await.unwrap();
    let mut rx = s.subscribe(Topic::Tasks);
    rx.borrow_and_update();
    let stale = TaskClaim {
        fence: got[1].fence + 1,
        ..TaskClaim::of(&got[1])
    };
    let released = s
        .release_claims(&[
            TaskClaim::of(&got[0]),
            stale,
            TaskClaim::of(&got[2]),
            TaskClaim::of(&got[3]),
        ])
        .await
        .unwrap();
    assert_eq!(released, 2, "a and c; b's fence is wrong, d is completed");
    assert!(
        tokio::time::timeout(Duration::from_secs(2), rx.changed())
            .await
            .is_ok(),
        "claimers are woken"
    );
    let a = s.get_task(DEFAULT_TENANT, "a").await.unwrap().unwrap();
    assert_eq!(
        (
            a.state,
            a.attempt,
            a.worker_id.as_deref(),
            a.lease_expires_at
        ),
        (TaskState::Pending, 0, None, None)
    );
    let b = s.get_task(DEFAULT_TENANT, "b").await.unwrap().unwrap();
    assert_eq!(b.state, TaskState::Running);
    let d = s.get_task(DEFAULT_TENANT, "d").await.unwrap().unwrap();
    assert_eq!(d.state, TaskState::Completed);
    // The released claim can settle nothing.
    assert_eq!(
        s.complete(&[done(&got[0], b"late")]).await.unwrap(),
        [Settlement::Rejected(Rejection::NotRunning(
            TaskState::Pending
        ))]
    );
    // Claimed again in their old order, as a first attempt, under a newer fence.
    let again = claim(&s, "w2", 10).await;
    let ids: Vec<&str> = again.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["a", "c"]);
    assert!(
        again
            .iter()
            .all(|t| t.attempt == 1 && t.worker_id.as_deref() == Some("w2"))
    );
    assert!(again[0].fence > got[0].fence);
    assert_eq!(
        s.release_claims(&[TaskClaim::of(&got[0])]).await.unwrap(),
        0,
        "the old claim cannot release the new one"
    );
    assert_eq!(s.release_claims(&[]).await.unwrap(), 0);
    assert_eq!(
        s.complete(&[done(&again[0], b"ok")]).await.unwrap(),
        [Settlement::Applied(TaskState::Completed)]
    );
}
