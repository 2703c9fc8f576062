//! Lock SQL. A grant's token comes from one store-wide counter, so it is strictly greater than
//! every earlier grant of any key, even across deletes, restarts and processes.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::codec::{from_json, next_counter, to_json, u64_col};
use super::{SqliteStore, map_err};
use crate::error::{LockError, StoreError};
use crate::model::{
    HolderSecret, Lock, LockFilter, LockRequest, expiry, holder_proven, validate_lock_ttl,
};
use crate::store::{LockStore, StoreResult};

/// The stored columns; the last, `holder_digest`, is read only to check a proof.
const COLS: &str = "tenant, key, owner, token, acquired_at, expires_at, metadata, holder_digest";

type Stored = (Lock, String, Option<String>);

fn row_to_lock(r: &Row<'_>) -> rusqlite::Result<Stored> {
    Ok((
        Lock {
            tenant: r.get(0)?,
            key: r.get(1)?,
            owner: r.get(2)?,
            token: u64_col(r.get(3)?),
            acquired_at: r.get(4)?,
            expires_at: r.get(5)?,
            metadata: serde_json::Value::Null,
            holder_secret: None,
        },
        r.get(6)?,
        r.get(7)?,
    ))
}

fn decode((lock, meta, digest): Stored) -> Result<(Lock, Option<String>), StoreError> {
    Ok((
        Lock {
            metadata: from_json(&meta)?,
            ..lock
        },
        digest,
    ))
}

fn decode_lock(stored: Stored) -> Result<Lock, StoreError> {
    decode(stored).map(|(lock, _)| lock)
}

/// The grant and its holder digest.
fn fetch(
    tx: &Transaction<'_>,
    tenant: &str,
    key: &str,
) -> Result<Option<(Lock, Option<String>)>, StoreError> {
    tx.prepare_cached(&format!(
        "SELECT {COLS} FROM locks WHERE tenant = ?1 AND key = ?2"
    ))
    .and_then(|mut s| s.query_row(params![tenant, key], row_to_lock).optional())
    .map_err(map_err)?
    .map(decode)
    .transpose()
}

/// The shared owner/token/proof/expiry check of release and renew. A wrong proof is judged
/// before expiry, so it never deletes even an expired grant.
fn check_grant(
    tx: &Transaction<'_>,
    now: i64,
    tenant: &str,
    key: &str,
    owner: &str,
    token: u64,
    proof: Option<&HolderSecret>,
) -> Result<Lock, LockError> {
    let Some((lock, digest)) = fetch(tx, tenant, key)? else {
        return Err(LockError::NotFound {
            key: key.to_string(),
        });
    };
    if lock.owner != owner || lock.token != token || !holder_proven(digest.as_deref(), proof) {
        return Err(LockError::InvalidOwner {
            key: key.to_string(),
            owner: owner.to_string(),
        });
    }
    if lock.is_expired_at(now) {
        return Err(LockError::Expired {
            key: key.to_string(),
        });
    }
    Ok(lock)
}

#[async_trait]
impl LockStore for SqliteStore {
    async fn acquire_lock(&self, req: &LockRequest) -> StoreResult<Option<Lock>> {
        req.validate()?;
        let req = req.clone();
        let meta = to_json(&req.metadata)?;
        let digest = req.holder_secret.as_ref().map(HolderSecret::digest);
        self.write(move |tx, now| {
            let held: Option<i64> = tx
                .prepare_cached("SELECT expires_at FROM locks WHERE tenant = ?1 AND key = ?2")
                .and_then(|mut s| {
                    s.query_row(params![req.tenant, req.key], |r| r.get(0))
                        .optional()
                })
                .map_err(map_err)?;
            if held.is_some_and(|exp| now < exp) {
                return Ok(None);
            }
            let token = next_counter(tx, "lock_fence")?;
            let expires_at = expiry(now, req.ttl_ms);
            tx.prepare_cached(&format!(
                "INSERT OR REPLACE INTO locks ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))
            .and_then(|mut s| {
                s.execute(params![
                    req.tenant,
                    req.key,
                    req.owner,
                    token as i64,
                    now,
                    expires_at,
                    meta,
                    digest
                ])
            })
            .map_err(map_err)?;
            Ok(Some(Lock {
                tenant: req.tenant,
                key: req.key,
                owner: req.owner,
                token,
                acquired_at: now,
                expires_at,
                metadata: req.metadata,
                holder_secret: req.holder_secret,
            }))
        })
        .await
    }

    async fn release_lock(
        &self,
        tenant: &str,
        key: &str,
        owner: &str,
        token: u64,
        proof: Option<&HolderSecret>,
    ) -> Result<(), LockError> {
        let (tenant, key, owner) = (tenant.to_string(), key.to_string(), owner.to_string());
        let proof = proof.cloned();
        self.write(move |tx, now| {
            let outcome = check_grant(tx, now, &tenant, &key, &owner, token, proof.as_ref());
            if matches!(outcome, Ok(_) | Err(LockError::Expired { .. })) {
                // An expired grant is dead weight either way; removing it is always safe.
                tx.prepare_cached("DELETE FROM locks WHERE tenant = ?1 AND key = ?2")
                    .and_then(|mut s| s.execute(params![tenant, key]))
                    .map_err(map_err)?;
            }
            Ok(outcome.map(|_| ()))
        })
        .await?
    }

    async fn renew_lock(
        &self,
        tenant: &str,
        key: &str,
        owner: &str,
        token: u64,
        ttl_ms: u64,
        proof: Option<&HolderSecret>,
    ) -> Result<Lock, LockError> {
        validate_lock_ttl(ttl_ms).map_err(StoreError::from)?;
        let (tenant, key, owner) = (tenant.to_string(), key.to_string(), owner.to_string());
        let proof = proof.cloned();
        self.write(move |tx, now| {
            let mut lock = match check_grant(tx, now, &tenant, &key, &owner, token, proof.as_ref())
            {
                Ok(l) => l,
                Err(e) => return Ok(Err(e)),
            };
            lock.expires_at = expiry(now, ttl_ms);
            lock.holder_secret = proof;
            tx.prepare_cached("UPDATE locks SET expires_at = ?3 WHERE tenant = ?1 AND key = ?2")
                .and_then(|mut s| s.execute(params![tenant, key, lock.expires_at]))
                .map_err(map_err)?;
            Ok(Ok(lock))
        })
        .await?
    }

    async fn get_lock(&self, tenant: &str, key: &str) -> StoreResult<Option<Lock>> {
        let (tenant, key) = (tenant.to_string(), key.to_string());
        self.read(move |tx, now| {
            Ok(fetch(tx, &tenant, &key)?
                .map(|(lock, _)| lock)
                .filter(|l| !l.is_expired_at(now)))
        })
        .await
    }

    async fn list_locks(&self, filter: &LockFilter) -> StoreResult<Vec<Lock>> {
        let f = filter.clone();
        self.read(move |tx, now| {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {COLS} FROM locks
                     WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR owner = ?2)
                       AND (?3 OR expires_at > ?4)
                     ORDER BY tenant, key"
                ))
                .map_err(map_err)?;
            let rows = stmt
                .query_map(
                    params![f.tenant, f.owner, f.include_expired, now],
                    row_to_lock,
                )
                .map_err(map_err)?;
            rows.map(|r| decode_lock(r.map_err(map_err)?)).collect()
        })
        .await
    }

    async fn cleanup_stale_locks(&self) -> StoreResult<u64> {
        self.write(|tx, now| {
            tx.prepare_cached("DELETE FROM locks WHERE expires_at <= ?1")
                .and_then(|mut s| s.execute([now]))
                .map(|n| n as u64)
                .map_err(map_err)
        })
        .await
    }

    async fn release_owner_locks(&self, owner: &str) -> StoreResult<u64> {
        let owner = owner.to_string();
        self.write(move |tx, _| {
            tx.prepare_cached("DELETE FROM locks WHERE owner = ?1")
                .and_then(|mut s| s.execute([owner]))
                .map(|n| n as u64)
                .map_err(map_err)
        })
        .await
    }
}
