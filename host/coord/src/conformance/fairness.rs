//! Fair claims between tenants: backlogged tenants share claims by weight, priority orders
//! tasks only within a tenant, and an idle tenant banks no credit.

use std::sync::Arc;

use super::tenancy::{claim, task};
use super::{StoreFactory, fresh};
use crate::model::*;
use crate::store::Store;

async fn backlog(s: &Arc<dyn Store>, tenant: &str, n: u32) {
    let tasks: Vec<NewTask> = (0..n)
        .map(|i| task(tenant, &format!("{tenant}-{i}")))
        .collect();
    s.enqueue(&tasks).await.unwrap();
}

/// The tenants of the tasks claimed by successive batches of the given sizes.
async fn claim_sequence(s: &Arc<dyn Store>, batches: &[u32]) -> Vec<String> {
    let mut seq = Vec::new();
    for (i, &n) in batches.iter().enumerate() {
        let got = claim(s, &format!("w{i}"), n).await;
        assert_eq!(
            got.len(),
            n as usize,
            "batch {i} is full: every tenant has work"
        );
        seq.extend(got.into_iter().map(|t| t.tenant));
    }
    seq
}

/// Asserts that in every prefix of `seq`, `tenant` got its `share` (numerator over `of`) of the
/// claims within one task.
fn assert_share(seq: &[String], tenant: &str, share: usize, of: usize) {
    let mut mine = 0usize;
    for (k, t) in seq.iter().enumerate() {
        mine += usize::from(t == tenant);
        let (got, want) = (mine * of, (k + 1) * share);
        assert!(
            got.abs_diff(want) <= of,
            "{tenant} got {mine} of the first {} claims, expected {share}/{of}: {seq:?}",
            k + 1
        );
    }
}

pub async fn claims_alternate_between_tenants_by_weight(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    // Submission order would give A everything first; equal weights alternate instead.
    backlog(&s, "A", 20).await;
    backlog(&s, "B", 20).await;
    let seq = claim_sequence(&s, &[1, 4, 3, 4, 2, 6]).await;
    assert_share(&seq, "A", 1, 2);

    let (s, _) = fresh(f).await;
    s.put_tenant(&TenantSettings::new("C").with_weight(3))
        .await
        .unwrap();
    backlog(&s, "D", 40).await;
    backlog(&s, "C", 40).await;
    let seq = claim_sequence(&s, &[4, 1, 7, 4, 4, 8, 4]).await;
    assert_share(&seq, "C", 3, 4);
    assert_eq!(seq.iter().filter(|t| *t == "C").count(), 24, "{seq:?}");

    // A weight change applies to the next claims.
    s.put_tenant(&TenantSettings::new("C").with_weight(1))
        .await
        .unwrap();
    let seq = claim_sequence(&s, &[4, 4]).await;
    let c = seq.iter().filter(|t| *t == "C").count();
    assert!((3..=5).contains(&c), "equal weights again: {seq:?}");
}

pub async fn priority_orders_tasks_within_a_tenant_not_across(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    s.enqueue(&[
        task("A", "a-low").with_priority(1),
        task("A", "a-high").with_priority(5),
        task("A", "a-low-2").with_priority(1),
    ])
    .await
    .unwrap();
    s.enqueue(&[
        task("B", "b-mid").with_priority(50),
        task("B", "b-top").with_priority(100),
        task("B", "b-top-2").with_priority(100),
    ])
    .await
    .unwrap();
    let got = claim(&s, "w", 4).await;
    let of = |tenant: &str| -> Vec<String> {
        got.iter()
            .filter(|t| t.tenant == tenant)
            .map(|t| t.id.clone())
            .collect()
    };
    assert_eq!(
        of("A"),
        ["a-high", "a-low"],
        "A's own order; B's priority 100 does not starve A"
    );
    assert_eq!(of("B"), ["b-top", "b-top-2"]);
    let rest: Vec<String> = claim(&s, "w", 4).await.into_iter().map(|t| t.id).collect();
    assert_eq!(rest.len(), 2);
    assert!(rest.contains(&"a-low-2".to_string()) && rest.contains(&"b-mid".to_string()));
}

pub async fn an_idle_tenant_does_not_bank_credit(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    backlog(&s, "A", 40).await;
    claim_sequence(&s, &[8, 8, 4]).await;
    // B was idle while A was served 20 times: it joins at A's level, not 20 claims ahead.
    backlog(&s, "B", 20).await;
    let seq = claim_sequence(&s, &[4, 4, 2]).await;
    let b = seq.iter().filter(|t| *t == "B").count();
    assert!((4..=6).contains(&b), "B got {b} of 10: {seq:?}");

    // Nobody backlogged: A ran alone, drained; then B (new) and A submit together.
    let (s, _) = fresh(f).await;
    backlog(&s, "A", 12).await;
    claim_sequence(&s, &[6, 6]).await;
    backlog(&s, "B", 10).await;
    s.enqueue(&[task("A", "again-1"), task("A", "again-2")])
        .await
        .unwrap();
    s.enqueue(&[task("A", "again-3"), task("A", "again-4")])
        .await
        .unwrap();
    let seq = claim_sequence(&s, &[3, 3]).await;
    let b = seq.iter().filter(|t| *t == "B").count();
    assert!((2..=4).contains(&b), "B got {b} of 6: {seq:?}");
}

/// A tenant that becomes backlogged while another floods is served by the very next claim,
/// whatever the names: it joins just below the flooder's virtual time, so ties never go to the
/// name that sorts first.
pub async fn a_newly_backlogged_tenant_is_served_next_whatever_its_name(f: &dyn StoreFactory) {
    for (flooder, light) in [("aaa", "zzz"), ("zzz", "aaa")] {
        let (s, _) = fresh(f).await;
        backlog(&s, flooder, 30).await;
        claim_sequence(&s, &[5, 5]).await;
        backlog(&s, light, 1).await;
        let seq = claim_sequence(&s, &[1]).await;
        assert_eq!(seq, [light], "{light} joined while {flooder} flooded");
    }
}
