//! Lock SQL. A grant's token comes from the `lock_fence` sequence, drawn only while a
//! transaction-scoped advisory lock on the key is held, so every later grant of that key (held
//! back by the advisory lock until this one commits) draws a greater token, even across deletes,
//! restarts and processes. Expiry is judged on the store's clock inside the statement. This
//! module must never grant a lock in two statements: check-then-insert would race.
//!
//! Grants and renewals commit durably. Deletions (release, cleanup, release-all-of-a-worker)
//! commit without waiting for the WAL flush: one lost in a server crash leaves the old grant in
//! place until its TTL, which delays the next holder but can never create a second one, and it
//! halves the cost of an acquire/release cycle on a disk with slow flushes.

use async_trait::async_trait;
use sentinel_coord::model::{
    HolderSecret, Lock, LockFilter, LockRequest, holder_proven, validate_lock_ttl,
};
use sentinel_coord::{LockError, LockStore, StoreError, StoreResult};
use tokio_postgres::Row;

use crate::codec::{from_json, ms_param, to_json, u64_col};
use crate::store::{PgStore, with_conn};

const COLS: &str = "tenant, key, owner, token, acquired_at, expires_at, metadata";

fn decode(r: &Row) -> Result<Lock, StoreError> {
    Ok(Lock {
        tenant: r.get(0),
        key: r.get(1),
        owner: r.get(2),
        token: u64_col(r.get(3)),
        acquired_at: r.get(4),
        expires_at: r.get(5),
        metadata: from_json(r.get::<_, &str>(6))?,
        holder_secret: None,
    })
}

/// Granted if no row exists or the row's grant has expired. The advisory lock is taken in the
/// first CTE and `nextval` runs in the projection that reads from it, so the token is drawn
/// only after every earlier grant of this key has committed.
const ACQUIRE: &str = "
WITH guard AS MATERIALIZED (
    SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || chr(31) || $1 || chr(31) || $2, 0))
), clk AS MATERIALIZED (
    SELECT sentinel_now_ms($4::int8) AS now FROM guard
)
INSERT INTO locks AS l (tenant, key, owner, token, acquired_at, expires_at, metadata, holder_digest)
SELECT $1, $2, $3, nextval('lock_fence'), clk.now, clk.now + $5::int8, $6, $7 FROM clk
ON CONFLICT (tenant, key) DO UPDATE
   SET owner = EXCLUDED.owner, token = EXCLUDED.token, acquired_at = EXCLUDED.acquired_at,
       expires_at = EXCLUDED.expires_at, metadata = EXCLUDED.metadata,
       holder_digest = EXCLUDED.holder_digest
 WHERE l.expires_at <= EXCLUDED.acquired_at
RETURNING token, acquired_at, expires_at";

/// The digest a release or renew matches against: a grant with a digest matches only the same
/// digest; `''` (no proof presented) never equals a hex digest.
fn proof_digest(proof: Option<&HolderSecret>) -> String {
    proof.map(HolderSecret::digest).unwrap_or_default()
}

/// Why release or renew did not match `(owner, token, proof)` on an unexpired grant.
async fn diagnose(
    c: &deadpool_postgres::Client,
    now: Option<i64>,
    tenant: &str,
    key: &str,
    owner: &str,
    token: u64,
    proof: Option<&HolderSecret>,
) -> Result<LockError, crate::error::OpError> {
    let stmt = c
        .prepare_cached(
            "SELECT owner, token, expires_at <= sentinel_now_ms($3::int8), holder_digest
             FROM locks WHERE tenant = $1 AND key = $2",
        )
        .await?;
    let row = c.query_opt(&stmt, &[&tenant, &key, &now]).await?;
    Ok(match row {
        None => LockError::NotFound {
            key: key.to_string(),
        },
        Some(r)
            if r.get::<_, &str>(0) != owner
                || u64_col(r.get(1)) != token
                || !holder_proven(r.get::<_, Option<&str>>(3), proof) =>
        {
            LockError::InvalidOwner {
                key: key.to_string(),
                owner: owner.to_string(),
            }
        }
        Some(_) => LockError::Expired {
            key: key.to_string(),
        },
    })
}

#[async_trait]
impl LockStore for PgStore {
    async fn acquire_lock(&self, req: &LockRequest) -> StoreResult<Option<Lock>> {
        req.validate()?;
        let meta = to_json(&req.metadata)?;
        let ttl = ms_param(req.ttl_ms);
        let now = self.now_param();
        let digest = req.holder_secret.as_ref().map(HolderSecret::digest);
        let row = with_conn!(self, |c| {
            let stmt = c.prepare_cached(ACQUIRE).await?;
            Ok(c.query_opt(
                &stmt,
                &[
                    &req.tenant,
                    &req.key,
                    &req.owner,
                    &now,
                    &ttl,
                    &meta,
                    &digest,
                ],
            )
            .await?)
        })?;
        Ok(row.map(|r| Lock {
            tenant: req.tenant.clone(),
            key: req.key.clone(),
            owner: req.owner.clone(),
            token: u64_col(r.get(0)),
            acquired_at: r.get(1),
            expires_at: r.get(2),
            metadata: req.metadata.clone(),
            holder_secret: req.holder_secret.clone(),
        }))
    }

    async fn release_lock(
        &self,
        tenant: &str,
        key: &str,
        owner: &str,
        token: u64,
        proof: Option<&HolderSecret>,
    ) -> Result<(), LockError> {
        let now = self.now_param();
        let tok = token as i64;
        let digest = proof_digest(proof);
        with_conn!(self, |c| {
            // An expired grant is dead weight either way: removing it is always safe, and the
            // caller still learns it had expired.
            let stmt = c
                .prepare_cached(
                    "WITH relaxed AS MATERIALIZED (
                         SELECT set_config('synchronous_commit', 'off', true))
                     DELETE FROM locks USING relaxed
                     WHERE tenant = $1 AND key = $2 AND owner = $3 AND token = $4
                       AND (holder_digest IS NULL OR holder_digest = $6)
                     RETURNING expires_at <= sentinel_now_ms($5::int8)",
                )
                .await?;
            match c
                .query_opt(&stmt, &[&tenant, &key, &owner, &tok, &now, &digest])
                .await?
            {
                Some(r) if r.get::<_, bool>(0) => Ok(Err(LockError::Expired {
                    key: key.to_string(),
                })),
                Some(_) => Ok(Ok(())),
                None => Ok(Err(
                    diagnose(&c, now, tenant, key, owner, token, proof).await?
                )),
            }
        })?
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
        let now = self.now_param();
        let tok = token as i64;
        let ttl = ms_param(ttl_ms);
        let digest = proof_digest(proof);
        with_conn!(self, |c| {
            let stmt = c
                .prepare_cached(&format!(
                    "UPDATE locks SET expires_at = clk.now + $5::int8
                     FROM (SELECT sentinel_now_ms($6::int8) AS now) clk
                     WHERE tenant = $1 AND key = $2 AND owner = $3 AND token = $4
                       AND expires_at > clk.now
                       AND (holder_digest IS NULL OR holder_digest = $7)
                     RETURNING {COLS}"
                ))
                .await?;
            match c
                .query_opt(&stmt, &[&tenant, &key, &owner, &tok, &ttl, &now, &digest])
                .await?
            {
                Some(r) => Ok(Ok(Lock {
                    holder_secret: proof.cloned(),
                    ..decode(&r)?
                })),
                None => Ok(Err(
                    diagnose(&c, now, tenant, key, owner, token, proof).await?
                )),
            }
        })?
    }

    async fn get_lock(&self, tenant: &str, key: &str) -> StoreResult<Option<Lock>> {
        let now = self.now_param();
        with_conn!(self, |c| {
            let stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLS} FROM locks
                     WHERE tenant = $1 AND key = $2 AND expires_at > sentinel_now_ms($3::int8)"
                ))
                .await?;
            match c.query_opt(&stmt, &[&tenant, &key, &now]).await? {
                Some(r) => Ok(Some(decode(&r)?)),
                None => Ok(None),
            }
        })
    }

    async fn list_locks(&self, filter: &LockFilter) -> StoreResult<Vec<Lock>> {
        let now = self.now_param();
        with_conn!(self, |c| {
            let stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLS} FROM locks
                     WHERE ($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR owner = $2)
                       AND ($3 OR expires_at > sentinel_now_ms($4::int8))
                     ORDER BY tenant, key"
                ))
                .await?;
            let rows = c
                .query(
                    &stmt,
                    &[&filter.tenant, &filter.owner, &filter.include_expired, &now],
                )
                .await?;
            Ok(rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?)
        })
    }

    async fn cleanup_stale_locks(&self) -> StoreResult<u64> {
        let now = self.now_param();
        with_conn!(self, |c| {
            let stmt = c
                .prepare_cached(
                    "WITH relaxed AS MATERIALIZED (
                         SELECT set_config('synchronous_commit', 'off', true))
                     DELETE FROM locks USING relaxed WHERE expires_at <= sentinel_now_ms($1::int8)",
                )
                .await?;
            Ok(c.execute(&stmt, &[&now]).await?)
        })
    }

    async fn release_owner_locks(&self, owner: &str) -> StoreResult<u64> {
        with_conn!(self, |c| {
            let stmt = c
                .prepare_cached(
                    "WITH relaxed AS MATERIALIZED (
                         SELECT set_config('synchronous_commit', 'off', true))
                     DELETE FROM locks USING relaxed WHERE owner = $1",
                )
                .await?;
            Ok(c.execute(&stmt, &[&owner]).await?)
        })
    }
}
