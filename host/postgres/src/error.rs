//! PostgreSQL failures → the contract's [`StoreError`]. Anything that says "the server or the
//! connection is not there right now" (I/O, closed connection, connect or pool timeout, admin
//! shutdown, too many connections, statement timeout) is `Unavailable`, so callers back off and
//! retry; a serialization failure or deadlock is retried inside the store first (see
//! [`OpError::is_conflict`]). This module classifies errors only; it never retries or decides
//! policy itself, and never hides an error as success.

use deadpool_postgres::PoolError;
use sentinel_coord::StoreError;
use tokio_postgres::error::SqlState;

/// The error of one attempt at an operation: either a PostgreSQL/pool failure (classified
/// later, so conflicts can be retried) or an already-decided contract error.
#[derive(Debug)]
pub(crate) enum OpError {
    Pg(tokio_postgres::Error),
    Pool(PoolError),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for OpError {
    fn from(e: tokio_postgres::Error) -> Self {
        OpError::Pg(e)
    }
}

impl From<PoolError> for OpError {
    fn from(e: PoolError) -> Self {
        OpError::Pool(e)
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        OpError::Store(e)
    }
}

impl OpError {
    /// A serialization failure or a detected deadlock: the transaction was rolled back and
    /// running it again from the start is the documented remedy.
    pub(crate) fn is_conflict(&self) -> bool {
        matches!(self, OpError::Pg(e) if e.code().is_some_and(|c|
            *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED))
    }

    pub(crate) fn into_store(self) -> StoreError {
        match self {
            OpError::Pg(e) => map_pg(&e),
            OpError::Pool(e) => map_pool(e),
            OpError::Store(e) => e,
        }
    }
}

/// Classifies a driver error. The driver's error kind is private; its `Display` of the kind is
/// stable and is what we match for errors that carry no SQLSTATE.
pub fn map_pg(e: &tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let msg = format!("{}: {}", db.code().code(), db.message());
        return map_sqlstate(db.code(), msg);
    }
    let msg = match std::error::Error::source(e) {
        Some(src) => format!("{e}: {src}"),
        None => e.to_string(),
    };
    if e.is_closed() {
        return StoreError::Unavailable(msg);
    }
    let kind = e.to_string();
    if kind.starts_with("error serializing parameter") {
        StoreError::Invalid(msg)
    } else if kind.starts_with("error deserializing column")
        || kind.starts_with("invalid column")
        || kind.starts_with("query returned an unexpected number of columns")
    {
        StoreError::Corrupt(msg)
    } else if kind.starts_with("authentication error")
        || kind.starts_with("invalid connection string")
        || kind.starts_with("invalid configuration")
        || kind.starts_with("expected ")
    {
        StoreError::Backend(msg)
    } else {
        // I/O, connect, timeout, TLS, protocol desync: the connection is unusable; a new one
        // (the pool makes it) may well work.
        StoreError::Unavailable(msg)
    }
}

fn map_sqlstate(code: &SqlState, msg: String) -> StoreError {
    let c = code.code();
    let class = &c[..2];
    match class {
        // connection exception, insufficient resources, operator intervention (admin shutdown,
        // crash shutdown, cannot connect now, query canceled by statement_timeout),
        // transaction rollback (serialization failure / deadlock after internal retries).
        "08" | "53" | "57" | "40" => StoreError::Unavailable(msg),
        // lock_not_available: another session holds what we need; try again later.
        "55" if *code == SqlState::LOCK_NOT_AVAILABLE => StoreError::Unavailable(msg),
        // Data exceptions and integrity violations are the caller's input.
        "22" | "23" => StoreError::Invalid(msg),
        _ => StoreError::Backend(msg),
    }
}

fn map_pool(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(pg) => map_pg(&pg),
        PoolError::Timeout(t) => {
            StoreError::Unavailable(format!("connection pool timeout ({t:?})"))
        }
        PoolError::Closed => StoreError::Unavailable("connection pool closed".into()),
        other => StoreError::Unavailable(format!("connection pool: {other}")),
    }
}

/// True for a unique-constraint violation, which some operations turn into a precise message.
pub(crate) fn is_unique_violation(e: &OpError) -> bool {
    matches!(e, OpError::Pg(pg) if pg.code() == Some(&SqlState::UNIQUE_VIOLATION))
}
