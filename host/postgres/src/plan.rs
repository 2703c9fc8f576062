//! Hot statements run with a generic plan, planned once per connection. PostgreSQL plans a
//! prepared statement afresh for its first executions and keeps doing so while a custom plan
//! looks cheaper: for the submit `INSERT` and the batch `COMPLETE` (large CTEs over parameter
//! arrays) that planning costs 0.4–0.8 ms per call, more than their execution, and sits on the
//! path from submit to executor start. Their plans do not depend on the parameters' values
//! (arrays probed by key), so the generic plan is the one wanted.
//!
//! [`Generic::query`] sends, in one round trip (pipelined), a session `set_config` forcing
//! generic plans, the statement, and a `set_config` restoring the default, so no other
//! statement on the pooled connection is affected. Inside a transaction an abort undoes the
//! setting with it. This module must never report a statement's outcome other than its own.

use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row, Statement};

use crate::error::OpError;

const FORCE: &str = "SELECT set_config('plan_cache_mode', 'force_generic_plan', false)";
const RESTORE: &str = "SELECT set_config('plan_cache_mode', 'auto', false)";

/// The two prepared `set_config` statements of one connection.
pub(crate) struct Generic {
    force: Statement,
    restore: Statement,
}

impl Generic {
    /// Prepares (once per connection: the pool caches them) the two settings.
    pub(crate) async fn prepare(c: &deadpool_postgres::Object) -> Result<Self, OpError> {
        Ok(Self {
            force: c.prepare_cached(FORCE).await?,
            restore: c.prepare_cached(RESTORE).await?,
        })
    }

    /// Runs `stmt` with a generic plan (see the module documentation).
    pub(crate) async fn query<C: GenericClient + Sync>(
        &self,
        c: &C,
        stmt: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, OpError> {
        // join polls in order, so the three requests go out in this order, one round trip.
        // Only the statement's own outcome is reported: had the connection died after it
        // committed, an error from the restore would make a write that happened look failed
        // (a completion retried and refused). A failed force fails the statement too (same
        // connection, same transaction); a failed restore on a live connection only leaves
        // generic plans on it, a cost, never a wrong result.
        let (_, rows, _) = tokio::join!(
            c.query(&self.force, &[]),
            c.query(stmt, params),
            c.query(&self.restore, &[]),
        );
        Ok(rows?)
    }
}
