//! Holder-proof cases: a lock granted with a holder secret can be released or renewed only by
//! whoever presents that secret. The owner id and token are public (anyone may list locks), so
//! they alone must not be enough.

use serde_json::json;

use super::{StoreFactory, fresh};
use crate::clock::Clock;
use crate::model::{HolderSecret, LockFilter, LockRequest};

fn held(key: &str, owner: &str, secret: &HolderSecret) -> LockRequest {
    LockRequest {
        tenant: "t".into(),
        key: key.into(),
        owner: owner.into(),
        ttl_ms: 10_000,
        metadata: json!({}),
        holder_secret: Some(secret.clone()),
    }
}

/// The hijack: another process lists the lock, learns owner and token, and tries to release it
/// with no proof and with a proof of its own. Both are `INVALID_OWNER` and the lock stays held;
/// the holder's own release then works.
pub async fn a_forged_release_is_refused_and_the_holder_keeps_the_lock(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let secret = HolderSecret::generate();
    let lock = s
        .acquire_lock(&held("k", "w1", &secret))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lock.holder_secret.as_ref(), Some(&secret));
    let seen = &s.list_locks(&LockFilter::default()).await.unwrap()[0];
    assert!(
        seen.holder_secret.is_none(),
        "a listing never carries a secret"
    );
    let intruder = HolderSecret::generate();
    for proof in [None, Some(&intruder)] {
        let err = s
            .release_lock("t", "k", &seen.owner, seen.token, proof)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "INVALID_OWNER");
        let still = s.get_lock("t", "k").await.unwrap().expect("still held");
        assert_eq!((still.owner.as_str(), still.token), ("w1", lock.token));
    }
    s.release_lock("t", "k", "w1", lock.token, Some(&secret))
        .await
        .unwrap();
    assert!(s.get_lock("t", "k").await.unwrap().is_none());
}

/// A forged renew is refused and does not move the expiry; the holder's renew does and hands
/// the proof back on the renewed lock.
pub async fn a_forged_renew_is_refused_and_leaves_the_expiry(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    let secret = HolderSecret::generate();
    let lock = s
        .acquire_lock(&held("k", "w1", &secret))
        .await
        .unwrap()
        .unwrap();
    clock.advance_ms(1_000);
    let err = s
        .renew_lock("t", "k", "w1", lock.token, 60_000, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "INVALID_OWNER");
    let err = s
        .renew_lock(
            "t",
            "k",
            "w1",
            lock.token,
            60_000,
            Some(&HolderSecret::generate()),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "INVALID_OWNER");
    let still = s.get_lock("t", "k").await.unwrap().unwrap();
    assert_eq!(still.expires_at, lock.expires_at, "expiry untouched");
    let renewed = s
        .renew_lock("t", "k", "w1", lock.token, 60_000, Some(&secret))
        .await
        .unwrap();
    assert_eq!(renewed.token, lock.token);
    assert_eq!(renewed.expires_at, clock.now_ms() + 60_000);
    assert_eq!(renewed.holder_secret.as_ref(), Some(&secret));
    // The proof survives a renewal: the holder can still release, an intruder still cannot.
    assert_eq!(
        s.release_lock("t", "k", "w1", lock.token, None)
            .await
            .unwrap_err()
            .code(),
        "INVALID_OWNER"
    );
    s.release_lock("t", "k", "w1", lock.token, Some(&secret))
        .await
        .unwrap();
}

/// A wrong proof on an expired grant is still `INVALID_OWNER` and deletes nothing; a new
/// holder's grant demands the new holder's secret, not the old one.
pub async fn a_proof_belongs_to_one_grant(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    let first = HolderSecret::generate();
    let a = s
        .acquire_lock(&held("k", "w1", &first))
        .await
        .unwrap()
        .unwrap();
    clock.advance_ms(10_000);
    let err = s
        .release_lock("t", "k", "w1", a.token, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "INVALID_OWNER");
    let second = HolderSecret::generate();
    let b = s
        .acquire_lock(&held("k", "w2", &second))
        .await
        .unwrap()
        .expect("expired grant is taken over");
    let err = s
        .release_lock("t", "k", "w2", b.token, Some(&first))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        "INVALID_OWNER",
        "the old holder's secret is void"
    );
    s.release_lock("t", "k", "w2", b.token, Some(&second))
        .await
        .unwrap();
}

/// A grant made without a secret (an older client) is released by owner and token, as before.
pub async fn a_grant_without_a_secret_is_released_by_owner_and_token(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let mut req = held("k", "w1", &HolderSecret::generate());
    req.holder_secret = None;
    let a = s.acquire_lock(&req).await.unwrap().unwrap();
    assert!(a.holder_secret.is_none());
    s.release_lock("t", "k", "w1", a.token, Some(&HolderSecret::generate()))
        .await
        .unwrap();
}
