//! Task listings: the queue's order, and keyset pages in submission order that walk every
//! task exactly once whatever was submitted in between.

use super::{StoreFactory, fresh};
use crate::error::StoreError;
use crate::model::*;

fn filter(order: TaskOrder, after: Option<&str>, limit: u32) -> TaskFilter {
    TaskFilter {
        tenant: Some(DEFAULT_TENANT.into()),
        order,
        after: after.map(|id| TaskKey::new(DEFAULT_TENANT, id)),
        limit,
        ..Default::default()
    }
}

pub async fn keyset_pages_walk_every_task_once_in_both_orders(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let t = NewTask::new("t", vec![i]).with_priority(i32::from(i % 3));
        ids.extend(s.enqueue(&[t]).await.unwrap());
        clock.advance_ms(1);
    }
    // Another tenant's tasks never appear.
    s.enqueue(&[NewTask::new("t", vec![9]).with_tenant("other")])
        .await
        .unwrap();
    for (order, expected) in [
        (TaskOrder::Oldest, ids.clone()),
        (TaskOrder::Newest, ids.iter().rev().cloned().collect()),
    ] {
        let mut seen: Vec<String> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = s
                .list_tasks(&filter(order, after.as_deref(), 3))
                .await
                .unwrap();
            assert!(page.len() <= 3);
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            seen.extend(page.into_iter().map(|t| t.id));
        }
        assert_eq!(seen, expected, "{order:?}");
    }
    let queue_order = s
        .list_tasks(&filter(TaskOrder::Priority, None, 0))
        .await
        .unwrap();
    let priorities: Vec<i32> = queue_order.iter().map(|t| t.priority).collect();
    assert_eq!(priorities, [2, 2, 1, 1, 0, 0, 0]);
}

pub async fn a_keyset_anchor_must_exist_in_the_tenant(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let other = s
        .enqueue(&[NewTask::new("t", vec![1]).with_tenant("other")])
        .await
        .unwrap();
    for after in ["no-such-task", other[0].as_str()] {
        let err = s
            .list_tasks(&filter(TaskOrder::Newest, Some(after), 10))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    }
    let err = s
        .list_tasks(&filter(TaskOrder::Priority, Some(&other[0]), 10))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
}
