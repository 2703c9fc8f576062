//! Claims that name their task types: the worker always sends the types its plugins serve, so
//! this is the claim every host makes.

use super::queue::claim_req;
use super::{StoreFactory, fresh};
use crate::error::StoreError;
use crate::model::limits;
use crate::model::*;

fn payloads(tasks: &[Task]) -> Vec<String> {
    tasks
        .iter()
        .map(|t| String::from_utf8(t.payload.clone()).unwrap())
        .collect()
}

/// Across the named types the order is the queue's (priority, then submission), and tasks of
/// other types queued in front are passed over (and stay queued).
pub async fn a_typed_claim_merges_its_types_in_queue_order(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let mut batch: Vec<NewTask> = (0..50)
        .map(|i| NewTask::new("other", format!("o{i}")).with_priority(9))
        .collect();
    batch.extend([
        NewTask::new("a", "a1"),
        NewTask::new("b", "b1").with_priority(2),
        NewTask::new("a", "a2").with_priority(2),
        NewTask::new("b", "b2"),
        NewTask::new("c", "c1").with_priority(5),
        NewTask::new("a", "a3"),
    ]);
    s.enqueue(&batch).await.unwrap();
    let req = |limit| ClaimRequest {
        task_types: Some(vec!["a".into(), "b".into(), "a".into()]),
        ..claim_req("w", limit)
    };
    assert_eq!(payloads(&s.claim(&req(2)).await.unwrap()), ["b1", "a2"]);
    assert_eq!(
        payloads(&s.claim(&req(10)).await.unwrap()),
        ["a1", "b2", "a3"]
    );
    assert!(s.claim(&req(10)).await.unwrap().is_empty());
    let rest = s.claim(&claim_req("w", 100)).await.unwrap();
    assert_eq!(rest.len(), 51, "the other types stay queued");
    assert_eq!(payloads(&rest)[0], "o0");
    assert_eq!(payloads(&rest)[50], "c1");
}

/// A claim names at most [`limits::CLAIM_TASK_TYPES`] task types; one more is refused as
/// `Invalid` naming the field, and claims nothing. At the bound, it claims as usual.
pub async fn a_claim_names_a_bounded_number_of_task_types(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    s.enqueue(&[NewTask::new("t999", "x")]).await.unwrap();
    let r = limits::CLAIM_TASK_TYPES;
    let req = |n: i64| ClaimRequest {
        task_types: Some((0..n).map(|i| format!("t{i}")).collect()),
        ..claim_req("w", 10)
    };
    match s.claim(&req(r.max + 1)).await {
        Err(StoreError::Invalid(msg)) => assert!(msg.contains(r.field), "names the field: {msg}"),
        other => panic!("expected Invalid naming {}, got {other:?}", r.field),
    }
    assert_eq!(
        s.queue_stats(None).await.unwrap().pending,
        1,
        "nothing claimed"
    );
    assert_eq!(payloads(&s.claim(&req(r.max)).await.unwrap()), ["x"]);
}
