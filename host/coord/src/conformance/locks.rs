//! Lock cases.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;

use super::{StoreFactory, fresh};
use crate::error::LockError;
use crate::model::{LockFilter, LockRequest};

fn req(tenant: &str, key: &str, owner: &str, ttl_ms: u64) -> LockRequest {
    LockRequest {
        tenant: tenant.into(),
        key: key.into(),
        owner: owner.into(),
        ttl_ms,
        metadata: json!({"hostname": "h1", "pid": 42}),
        holder_secret: None,
    }
}

pub async fn lock_is_granted_when_free_and_refused_while_held(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    assert!(!s.get_lock("t", "k").await.unwrap().is_some());
    let lock = s
        .acquire_lock(&req("t", "k", "w1", 1000))
        .await
        .unwrap()
        .expect("free lock is granted");
    assert_eq!(lock.owner, "w1");
    assert_eq!(lock.expires_at - lock.acquired_at, 1000);
    assert_eq!(lock.metadata, json!({"hostname": "h1", "pid": 42}));
    assert!(
        s.acquire_lock(&req("t", "k", "w2", 1000))
            .await
            .unwrap()
            .is_none(),
        "held lock is refused"
    );
    assert!(
        s.acquire_lock(&req("t", "k", "w1", 1000))
            .await
            .unwrap()
            .is_none(),
        "locks are not reentrant"
    );
    assert_eq!(s.get_lock("t", "k").await.unwrap(), Some(lock));
}

pub async fn lock_tokens_strictly_increase_across_grants(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    let a = s
        .acquire_lock(&req("t", "k", "w1", 100))
        .await
        .unwrap()
        .unwrap();
    s.release_lock("t", "k", "w1", a.token, None).await.unwrap();
    let b = s
        .acquire_lock(&req("t", "k", "w1", 100))
        .await
        .unwrap()
        .unwrap();
    assert!(
        b.token > a.token,
        "a re-grant after release gets a greater token"
    );
    clock.advance_ms(100);
    let c = s
        .acquire_lock(&req("t", "k", "w2", 100))
        .await
        .unwrap()
        .unwrap();
    assert!(
        c.token > b.token,
        "a takeover after expiry gets a greater token"
    );
    s.cleanup_stale_locks().await.unwrap();
    clock.advance_ms(100);
    assert_eq!(s.cleanup_stale_locks().await.unwrap(), 1);
    let d = s
        .acquire_lock(&req("t", "k", "w3", 100))
        .await
        .unwrap()
        .unwrap();
    assert!(
        d.token > c.token,
        "tokens keep increasing even after the row was cleaned up"
    );
}

pub async fn expired_lock_can_be_taken_over_by_another_owner(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    s.acquire_lock(&req("t", "k", "w1", 500))
        .await
        .unwrap()
        .unwrap();
    clock.advance_ms(499);
    assert!(
        s.acquire_lock(&req("t", "k", "w2", 500))
            .await
            .unwrap()
            .is_none()
    );
    clock.advance_ms(1);
    assert!(
        s.get_lock("t", "k").await.unwrap().is_none(),
        "expired at exactly expires_at"
    );
    let taken = s.acquire_lock(&req("t", "k", "w2", 500)).await.unwrap();
    assert_eq!(taken.map(|l| l.owner), Some("w2".to_string()));
}

pub async fn expired_lock_cannot_be_released_by_its_old_owner(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    let a = s
        .acquire_lock(&req("t", "k", "w1", 500))
        .await
        .unwrap()
        .unwrap();
    clock.advance_ms(600);
    let err = s
        .release_lock("t", "k", "w1", a.token, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "LOCK_EXPIRED");

    let b = s
        .acquire_lock(&req("t", "k2", "w1", 500))
        .await
        .unwrap()
        .unwrap();
    clock.advance_ms(600);
    s.acquire_lock(&req("t", "k2", "w2", 500))
        .await
        .unwrap()
        .unwrap();
    let err = s
        .release_lock("t", "k2", "w1", b.token, None)
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        "INVALID_OWNER",
        "the new holder's lock is not the old owner's"
    );
    assert_eq!(s.get_lock("t", "k2").await.unwrap().unwrap().owner, "w2");
}

pub async fn release_checks_owner_and_token(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let err = s
        .release_lock("t", "nope", "w1", 1, None)
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::NotFound { .. }));
    assert_eq!(err.code(), "NOT_FOUND");
    let a = s
        .acquire_lock(&req("t", "k", "w1", 1000))
        .await
        .unwrap()
        .unwrap();
    let err = s
        .release_lock("t", "k", "w2", a.token, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "INVALID_OWNER");
    let err = s
        .release_lock("t", "k", "w1", a.token + 1, None)
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        "INVALID_OWNER",
        "a token from another grant is refused"
    );
    assert!(
        s.get_lock("t", "k").await.unwrap().is_some(),
        "refused releases change nothing"
    );
    s.release_lock("t", "k", "w1", a.token, None).await.unwrap();
    assert!(s.get_lock("t", "k").await.unwrap().is_none());
    assert_eq!(
        s.release_lock("t", "k", "w1", a.token, None)
            .await
            .unwrap_err()
            .code(),
        "NOT_FOUND"
    );
}

pub async fn renew_extends_ttl_and_keeps_token(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    let a = s
        .acquire_lock(&req("t", "k", "w1", 1000))
        .await
        .unwrap()
        .unwrap();
    clock.advance_ms(900);
    let r = s
        .renew_lock("t", "k", "w1", a.token, 1000, None)
        .await
        .unwrap();
    assert_eq!(r.token, a.token);
    assert_eq!(r.expires_at, a.acquired_at + 900 + 1000);
    clock.advance_ms(900);
    assert!(
        s.get_lock("t", "k").await.unwrap().is_some(),
        "renewed lock outlives its first TTL"
    );
    assert_eq!(
        s.renew_lock("t", "k", "w2", a.token, 1000, None)
            .await
            .unwrap_err()
            .code(),
        "INVALID_OWNER"
    );
    clock.advance_ms(100);
    assert_eq!(
        s.renew_lock("t", "k", "w1", a.token, 1000, None)
            .await
            .unwrap_err()
            .code(),
        "LOCK_EXPIRED"
    );
    assert_eq!(
        s.renew_lock("t", "zz", "w1", 1, 1000, None)
            .await
            .unwrap_err()
            .code(),
        "NOT_FOUND"
    );
}

pub async fn list_locks_filters_by_tenant_owner_and_expiry(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    s.acquire_lock(&req("t1", "a", "w1", 100))
        .await
        .unwrap()
        .unwrap();
    s.acquire_lock(&req("t1", "b", "w2", 10_000))
        .await
        .unwrap()
        .unwrap();
    s.acquire_lock(&req("t2", "c", "w1", 10_000))
        .await
        .unwrap()
        .unwrap();
    clock.advance_ms(200);
    let keys = |v: Vec<crate::model::Lock>| v.into_iter().map(|l| l.key).collect::<Vec<_>>();
    assert_eq!(
        keys(s.list_locks(&LockFilter::default()).await.unwrap()),
        ["b", "c"]
    );
    let all = LockFilter {
        include_expired: true,
        ..Default::default()
    };
    assert_eq!(keys(s.list_locks(&all).await.unwrap()), ["a", "b", "c"]);
    let w1 = LockFilter {
        owner: Some("w1".into()),
        include_expired: true,
        ..Default::default()
    };
    assert_eq!(keys(s.list_locks(&w1).await.unwrap()), ["a", "c"]);
    let t1 = LockFilter {
        tenant: Some("t1".into()),
        ..Default::default()
    };
    assert_eq!(keys(s.list_locks(&t1).await.unwrap()), ["b"]);
}

pub async fn cleanup_removes_only_expired_locks(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    s.acquire_lock(&req("t", "short", "w1", 100))
        .await
        .unwrap()
        .unwrap();
    s.acquire_lock(&req("t", "long", "w1", 10_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.cleanup_stale_locks().await.unwrap(), 0);
    clock.advance_ms(100);
    assert_eq!(s.cleanup_stale_locks().await.unwrap(), 1);
    let all = LockFilter {
        include_expired: true,
        ..Default::default()
    };
    let left: Vec<_> = s
        .list_locks(&all)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.key)
        .collect();
    assert_eq!(left, ["long"]);
}

pub async fn releasing_a_workers_locks_spans_tenants(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    s.acquire_lock(&req("t1", "a", "dead", 1000))
        .await
        .unwrap()
        .unwrap();
    s.acquire_lock(&req("t2", "b", "dead", 1000))
        .await
        .unwrap()
        .unwrap();
    s.acquire_lock(&req("t1", "c", "alive", 1000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.release_owner_locks("dead").await.unwrap(), 2);
    assert!(!s.get_lock("t1", "a").await.unwrap().is_some());
    assert!(!s.get_lock("t2", "b").await.unwrap().is_some());
    assert!(s.get_lock("t1", "c").await.unwrap().is_some());
    assert!(
        s.acquire_lock(&req("t1", "a", "other", 1000))
            .await
            .unwrap()
            .is_some()
    );
}

pub async fn locks_are_isolated_by_tenant(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let a = s
        .acquire_lock(&req("t1", "k", "w1", 1000))
        .await
        .unwrap()
        .unwrap();
    let b = s.acquire_lock(&req("t2", "k", "w1", 1000)).await.unwrap();
    assert!(
        b.is_some(),
        "the same key in another tenant is another lock"
    );
    assert_eq!(
        s.release_lock("t2", "k", "w1", a.token, None)
            .await
            .unwrap_err()
            .code(),
        "INVALID_OWNER"
    );
    assert!(s.get_lock("t1", "k").await.unwrap().is_some());
}

pub async fn concurrent_acquires_grant_exactly_one_holder(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let mut handles = Vec::new();
    for i in 0..32 {
        let s = Arc::clone(&s);
        handles.push(tokio::spawn(async move {
            s.acquire_lock(&req("t", "hot", &format!("w{i}"), 60_000))
                .await
                .unwrap()
        }));
    }
    let mut winners = Vec::new();
    for h in handles {
        if let Some(l) = h.await.unwrap() {
            winners.push(l);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one of 32 racing acquirers wins");
    assert_eq!(
        s.get_lock("t", "hot").await.unwrap().unwrap().owner,
        winners[0].owner
    );
    let tokens: HashSet<u64> = winners.iter().map(|l| l.token).collect();
    assert_eq!(tokens.len(), 1);
}
