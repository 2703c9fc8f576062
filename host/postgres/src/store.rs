//! [`PgStore`]: the connection pool, the time source, the per-operation retry loop and the
//! `Store` impl (time, subscriptions). This module owns connections and time only; each area's
//! SQL lives in its own module, and nothing here knows about tasks, locks or memory.
//!
//! Every store works inside one PostgreSQL schema (default `sentinel`), set as the `search_path`
//! of every pooled connection, so several independent Sentinel clusters (or test runs) can share
//! one database without seeing each other. Wake-up channels carry the schema name for the same
//! reason (NOTIFY channels are database-wide).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use sentinel_coord::{Clock, Store, StoreError, StoreResult, Topic};
use tokio::sync::{OnceCell, watch};
use tokio_postgres::NoTls;

use crate::error::OpError;
use crate::notify::{Listener, Wake};
use crate::schema::{self, ServerInfo};

/// Conflicts (serialization failure, deadlock) are retried this many times before the operation
/// reports `Unavailable`.
pub(crate) const CONFLICT_RETRIES: u32 = 5;

/// On a server running without autovacuum, the store vacuums its tables after this many claimed
/// rows (see [`PgStore::note_claimed`]).
pub const SELF_VACUUM_ROWS: u64 = 20_000;

/// Of those vacuums, every this many also analyzes (the first one included).
pub const SELF_ANALYZE_EVERY: u64 = 8;

/// Tunables for [`PgStore`].
#[derive(Clone)]
pub struct PgOptions {
    /// The schema holding Sentinel's tables. `None`: the URL's `schema` query parameter, else
    /// `sentinel`. Must match `[a-z_][a-z0-9_]*` and be at most 48 bytes (the wake-up channel
    /// name is derived from it and PostgreSQL limits identifiers to 63 bytes).
    pub schema: Option<String>,
    /// `None`: the database's clock (`statement_timestamp()`), which every worker shares. A clock
    /// given here is read instead and bound as a parameter: for tests that move time by hand.
    pub clock: Option<Arc<dyn Clock>>,
    /// Maximum pooled connections of this store.
    pub pool_size: usize,
    pub connect_timeout: Duration,
    /// How long a call waits for a pooled connection before it reports `Unavailable`.
    pub wait_timeout: Duration,
    /// Server-side cap on one statement; a statement cancelled by it reports `Unavailable`.
    pub statement_timeout: Duration,
    /// Shown in `pg_stat_activity`, so operators (and tests) can tell Sentinel's sessions apart.
    pub application_name: String,
    /// Drop the schema (and everything in it) when the store is dropped. For tests only.
    pub drop_schema_on_drop: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            schema: None,
            clock: None,
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            wait_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
            application_name: "sentinel".into(),
            drop_schema_on_drop: false,
        }
    }
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("schema", &self.schema)
            .field("injected_clock", &self.clock.is_some())
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("wait_timeout", &self.wait_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("application_name", &self.application_name)
            .field("drop_schema_on_drop", &self.drop_schema_on_drop)
            .finish()
    }
}

pub const DEFAULT_SCHEMA: &str = "sentinel";

/// The PostgreSQL backend of the store contract. Cheap to clone; clones share one pool.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pool: Pool,
    pg_config: tokio_postgres::Config,
    schema: String,
    /// The NOTIFY channel of this schema; payload `tasks` or `memory`.
    pub(crate) channel: String,
    clock: Option<Arc<dyn Clock>>,
    pub(crate) wake: Arc<Wake>,
    /// Set once the schema is known to be current.
    migrated: OnceCell<ServerInfo>,
    /// Rows claimed since this store last vacuumed (only counted when the server does not).
    claimed_since_vacuum: AtomicU64,
    /// Self-vacuums started, to analyze every [`SELF_ANALYZE_EVERY`]-th.
    vacuums: AtomicU64,
    vacuuming: AtomicBool,
    /// Dropping it stops the LISTEN task.
    _listener: Listener,
    drop_schema: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.pool.close();
        if self.drop_schema {
            schema::drop_schema_blocking(&self.pg_config, &self.schema);
        }
    }
}

impl PgStore {
    /// Connects with default options (database clock, schema from `?schema=` or `sentinel`),
    /// creating or migrating the schema before it returns.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url, PgOptions::default()).await
    }

    /// [`PgStore::open_with`], then creates the schema if needed and applies pending migrations
    /// (safe when several workers start at once), so a bad URL or an unreachable server is
    /// reported here.
    pub async fn connect_with(url: &str, options: PgOptions) -> StoreResult<Self> {
        let store = Self::open_with(url, options)?;
        store.ensure_migrated().await.map_err(OpError::into_store)?;
        Ok(store)
    }

    /// [`PgStore::open_with`] with default options.
    pub fn open(url: &str) -> StoreResult<Self> {
        Self::open_with(url, PgOptions::default())
    }

    /// Validates the URL and options and sets up the pool and the LISTEN task without waiting
    /// for the server: the schema is created/migrated by the first call that needs a
    /// connection, and until the server answers every call reports `Unavailable`. For callers
    /// that cannot await (and for workers that may start before the database). Must be called
    /// inside a tokio runtime, which then runs the store's background task.
    pub fn open_with(url: &str, options: PgOptions) -> StoreResult<Self> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::Invalid(
                "the PostgreSQL store must be opened inside a tokio runtime".into(),
            ));
        }
        let (url, url_schema) = split_schema_param(url);
        let schema = options
            .schema
            .clone()
            .or(url_schema)
            .unwrap_or_else(|| DEFAULT_SCHEMA.to_string());
        validate_schema(&schema)?;
        let mut pg_config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("PostgreSQL URL: {e}")))?;
        pg_config
            .application_name(options.application_name.clone())
            .connect_timeout(options.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        // The URL may carry its own server options; ours are appended. The schema name was
        // validated above, so it needs no quoting. JIT is off: every statement here is short,
        // and compiling one (triggered by a cost estimate, not by real cost) takes hundreds of
        // milliseconds.
        let mut server_opts = pg_config.get_options().unwrap_or("").to_string();
        server_opts.push_str(&format!(
            " -c search_path={schema} -c statement_timeout={} -c jit=off",
            options.statement_timeout.as_millis()
        ));
        pg_config.options(server_opts.trim().to_string());

        let manager = Manager::from_config(
            pg_config.clone(),
            NoTls,
            ManagerConfig {
                // A broken connection is noticed by its closed flag; checking each one with a
                // query would add a round trip to every call.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.wait_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Backend(format!("building the connection pool: {e}")))?;

        let channel = channel_name(&schema);
        let wake = Arc::new(Wake::new());
        let listener = Listener::spawn(pg_config.clone(), channel.clone(), wake.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                pg_config,
                schema,
                channel,
                clock: options.clock,
                wake,
                migrated: OnceCell::new(),
                claimed_since_vacuum: AtomicU64::new(0),
                vacuums: AtomicU64::new(0),
                vacuuming: AtomicBool::new(false),
                _listener: listener,
                drop_schema: options.drop_schema_on_drop,
            }),
        })
    }

    /// Runs the migrations once per store; a failure (server down) is retried by the next call.
    async fn ensure_migrated(&self) -> Result<ServerInfo, OpError> {
        let inner = &self.inner;
        Ok(*inner
            .migrated
            .get_or_try_init(|| schema::migrate(&inner.pg_config, &inner.schema))
            .await?)
    }

    /// Counts claimed rows and, on a server without autovacuum, vacuums the store's tables in
    /// the background every [`SELF_VACUUM_ROWS`]. Each claim turns a `tasks_ready_tenant` entry into a
    /// dead one at the head of the index, which every later claim walks past until a vacuum
    /// removes it: unvacuumed, the cost of a claim grows with the number of tasks ever run.
    pub(crate) fn note_claimed(&self, rows: usize) {
        let inner = &self.inner;
        if rows == 0 || inner.migrated.get().is_none_or(|i| i.autovacuum) {
            return;
        }
        let total = inner
            .claimed_since_vacuum
            .fetch_add(rows as u64, Ordering::Relaxed)
            + rows as u64;
        if total < SELF_VACUUM_ROWS || inner.vacuuming.swap(true, Ordering::AcqRel) {
            return;
        }
        inner.claimed_since_vacuum.store(0, Ordering::Relaxed);
        let store = self.clone();
        tokio::spawn(async move {
            // SKIP_LOCKED: another worker vacuuming the same table right now is just as good.
            let result = async {
                let c = store.client().await?;
                // ANALYZE costs about twice the VACUUM (it samples the whole table) and the
                // statistics change slowly: every SELF_ANALYZE_EVERY-th time only.
                let round = store.inner.vacuums.fetch_add(1, Ordering::Relaxed);
                c.batch_execute(if round % SELF_ANALYZE_EVERY == 0 {
                    "VACUUM (SKIP_LOCKED, ANALYZE) tasks, task_deps, tenants, locks, memory, memory_changes"
                } else {
                    "VACUUM (SKIP_LOCKED) tasks, task_deps, tenants, locks, memory, memory_changes"
                })
                .await?;
                Ok::<_, OpError>(())
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %e.into_store(), "vacuuming the PostgreSQL store's tables failed");
            }
            store.inner.vacuuming.store(false, Ordering::Release);
        });
    }

    /// The schema this store works in.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// A pooled connection; failures (server down, pool exhausted) are `Unavailable`.
    pub(crate) async fn client(&self) -> Result<Object, OpError> {
        self.ensure_migrated().await?;
        Ok(self.inner.pool.get().await?)
    }

    /// The time to bind for `sentinel_now_ms($n)`: the injected clock's, or `None` so the
    /// statement reads the database clock itself (no extra round trip).
    pub(crate) fn now_param(&self) -> Option<i64> {
        self.inner.clock.as_ref().map(|c| c.now_ms())
    }

    /// Wakes this process's subscribers at once; other processes learn of the change from the
    /// `pg_notify` the writing transaction issued.
    pub(crate) fn wake_local(&self, topic: Topic) {
        self.inner.wake.bump(topic);
    }
}

/// Runs `$body` (an expression evaluating to `Result<T, OpError>`, free to `.await` and `?`)
/// with a pooled connection bound to `$client`, again from the start on a serialization failure
/// or deadlock (a few times, with a short randomized pause), and maps the final error to
/// `StoreError`. A macro rather than a closure-taking function because the body borrows the
/// connection across awaits, which closures returning futures cannot express soundly.
macro_rules! with_conn {
    ($store:expr, |$client:ident| $body:expr) => {{
        let mut attempt: u32 = 0;
        loop {
            let result: ::std::result::Result<_, $crate::error::OpError> = async {
                #[allow(unused_mut)]
                let mut $client = $store.client().await?;
                $body
            }
            .await;
            match result {
                Err(e) if e.is_conflict() && attempt < $crate::store::CONFLICT_RETRIES => {
                    attempt += 1;
                    $crate::store::conflict_backoff(attempt).await;
                }
                other => break other.map_err($crate::error::OpError::into_store),
            }
        }
    }};
}
pub(crate) use with_conn;

/// A short randomized pause before retrying a conflicted transaction, so the two parties to a
/// deadlock do not collide again in lockstep.
pub(crate) async fn conflict_backoff(attempt: u32) {
    use rand::Rng;
    let max = 2u64.saturating_pow(attempt).min(50);
    let ms = rand::rng().random_range(1..=max);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// `postgres://...?schema=x&sslmode=...` → the URL without `schema` (the driver rejects unknown
/// parameters) and the schema.
fn split_schema_param(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None);
    };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("schema=") {
            Some(v) => {
                schema = Some(v.to_string());
                false
            }
            None => !kv.is_empty(),
        })
        .collect();
    if rest.is_empty() {
        (base.to_string(), schema)
    } else {
        (format!("{base}?{}", rest.join("&")), schema)
    }
}

fn validate_schema(schema: &str) -> StoreResult<()> {
    let mut chars = schema.chars();
    let ok = schema.len() <= 48
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "schema name {schema:?}: use 1-48 characters of [a-z0-9_], not starting with a digit"
        )))
    }
}

fn channel_name(schema: &str) -> String {
    format!("sentinel_wake_{schema}")
}

#[async_trait]
impl Store for PgStore {
    async fn now(&self) -> StoreResult<i64> {
        if let Some(now) = self.now_param() {
            return Ok(now);
        }
        with_conn!(self, |c| {
            let stmt = c.prepare_cached("SELECT sentinel_now_ms(NULL)").await?;
            Ok(c.query_one(&stmt, &[]).await?.get::<_, i64>(0))
        })
    }

    fn subscribe(&self, topic: Topic) -> watch::Receiver<u64> {
        self.inner.wake.subscribe(topic)
    }

    fn backend_name(&self) -> &'static str {
        "postgres"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_param_is_split_from_the_url() {
        assert_eq!(
            split_schema_param("postgres://u@h/db?schema=abc"),
            ("postgres://u@h/db".to_string(), Some("abc".to_string()))
        );
        assert_eq!(
            split_schema_param("postgres://u@h/db?sslmode=disable&schema=abc&connect_timeout=3"),
            (
                "postgres://u@h/db?sslmode=disable&connect_timeout=3".to_string(),
                Some("abc".to_string())
            )
        );
        assert_eq!(
            split_schema_param("postgres://u@h/db"),
            ("postgres://u@h/db".to_string(), None)
        );
    }

    #[test]
    fn schema_names_are_restricted() {
        assert!(validate_schema("sentinel_test_01").is_ok());
        assert!(validate_schema("Sentinel").is_err());
        assert!(validate_schema("1abc").is_err());
        assert!(validate_schema("a;drop").is_err());
        assert!(validate_schema(&"a".repeat(49)).is_err());
        assert!(channel_name(&"a".repeat(48)).len() <= 63);
    }
}
