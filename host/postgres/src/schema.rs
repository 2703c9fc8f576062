//! The PostgreSQL schema and its migrations. Migrations are numbered, applied in order inside one
//! transaction at open, and recorded in `schema_migrations`; a transaction-scoped advisory lock
//! keyed by the schema name serialises workers that start at once, so each step runs exactly
//! once. A released migration must never be edited: change the schema by appending a new step.
//!
//! Column conventions (the same as the SQLite store's, so both decode alike): times are `bigint`
//! milliseconds on the store's clock; JSON documents are `text` holding serde_json output (read
//! whole, never queried inside, and round-tripped byte for byte); identifiers use `COLLATE "C"` so
//! ordering by key is bytewise, whatever the database's locale.

use tokio_postgres::{Config, NoTls};

use crate::error::map_pg;
use sentinel_coord::{StoreError, StoreResult};

/// `(version, SQL)`, ascending. Each runs with `search_path` set to the store's schema.
const MIGRATIONS: &[(i32, &str)] = &[(1, V1), (2, V2), (3, V3), (4, V4), (5, V5), (6, V6)];

/// Incarnations and per-worker failure detection. Rows registered before this step get the
/// seeds' defaults (30 s heartbeats, 120 s threshold) rather than the detector's floor.
const V2: &str = r#"
ALTER TABLE workers ADD COLUMN incarnation bigint NOT NULL DEFAULT 0,
    ADD COLUMN heartbeat_interval_ms bigint NOT NULL DEFAULT 30000,
    ADD COLUMN stale_threshold_ms bigint NOT NULL DEFAULT 120000;
ALTER TABLE tasks ADD COLUMN worker_incarnation bigint;
"#;

/// Tenancy. A task's identity becomes `(tenant, id)` (dependencies carry the tenant too);
/// `tenants` holds each tenant's settings, submit-rate bucket and fair-share virtual time (a row
/// appears when a tenant first submits, or when its settings are put); claims find the
/// backlogged tenants by skipping through `tasks_ready_tenant` (one probe per tenant, never a
/// scan of the backlog) and read each one's head of it, so the global `tasks_ready` goes.
/// Holder proofs: a grant made with a holder secret keeps the secret's SHA-256 digest (hex);
/// release and renew must present the secret. Older grants have none and stay open to owner and
/// token, as they were.
const V4: &str = r#"
ALTER TABLE locks ADD COLUMN holder_digest text;
"#;

/// Fewer index entries per task. Every state change writes a new row version with an entry in
/// each index whose predicate it matches, so `tasks_tenant_state` cost three entries per task
/// (submit, claim, completion) to serve rare per-tenant counts, and it misled the planner into
/// probing it for key lookups (see `crate::settle`). The per-tenant counts it served now read
/// the partial indexes of the states they count: pending/failed `tasks_ready_tenant`, running
/// `tasks_running_tenant` (one entry per claim), dead `tasks_dead` (the dead-letter queue,
/// listed by tenant in `seq` order). Counting completed tasks reads the table, as it did.
const V5: &str = r#"
DROP INDEX tasks_tenant_state;
CREATE INDEX tasks_running_tenant ON tasks (tenant) WHERE state = 'running';
CREATE INDEX tasks_dead ON tasks (tenant, seq) WHERE state = 'dead';
"#;

/// Each task type's claimable head per tenant: a claim naming its task types merges the heads
/// of its types (see `crate::claim`) instead of walking other types' backlog.
const V6: &str = r#"
CREATE INDEX tasks_ready_type ON tasks (tenant, task_type, priority DESC, seq)
    WHERE state IN ('pending', 'failed');
"#;

const V3: &str = r#"
ALTER TABLE tasks DROP CONSTRAINT tasks_pkey;
ALTER TABLE tasks ADD PRIMARY KEY (tenant, id);
DROP INDEX tasks_ready;
-- Exactly the claimable-state rows, per tenant in claim order.
CREATE INDEX tasks_ready_tenant ON tasks (tenant, priority DESC, seq)
    WHERE state IN ('pending', 'failed');

ALTER TABLE task_deps ADD COLUMN tenant text COLLATE "C";
UPDATE task_deps d SET tenant = t.tenant FROM tasks t WHERE t.id = d.task_id;
DELETE FROM task_deps WHERE tenant IS NULL;
ALTER TABLE task_deps ALTER COLUMN tenant SET NOT NULL;
ALTER TABLE task_deps DROP CONSTRAINT task_deps_pkey;
ALTER TABLE task_deps ADD PRIMARY KEY (tenant, task_id, dep_id);
DROP INDEX task_deps_dep;
CREATE INDEX task_deps_dep ON task_deps (tenant, dep_id);

-- One row per tenant that ever submitted or has settings. `configured`: put_tenant was called
-- (get_tenant answers None otherwise). Quota columns NULL = unlimited. The bucket is in
-- milli-tokens as of `tokens_at` (NULL until first used: a full bucket). `vtime`: the
-- tenant's fair-share virtual time; `last_tag`: the virtual time its latest claimed task was
-- taken at (the store's virtual clock is the largest of them).
CREATE TABLE tenants (
    tenant          text COLLATE "C" PRIMARY KEY,
    configured      boolean NOT NULL DEFAULT false,
    weight          integer NOT NULL DEFAULT 1,
    max_queued      bigint,
    max_running     bigint,
    rate_per_second bigint,
    rate_burst      bigint,
    memory_keys     bigint,
    memory_bytes    bigint,
    tokens_milli    bigint,
    tokens_at       bigint,
    vtime           bigint NOT NULL DEFAULT 0,
    last_tag        bigint
);
CREATE INDEX tenants_running_quota ON tenants (tenant) WHERE max_running IS NOT NULL;
-- The store's virtual clock, max(last_tag), read when a tenant becomes backlogged alone.
CREATE INDEX tenants_last_tag ON tenants (last_tag);
INSERT INTO tenants (tenant) SELECT DISTINCT tenant FROM tasks;

-- A fair claim's shares when several tenants are backlogged: the first p_limit tags of the
-- merged sequences vtime + j * step (j < cap), ties by tenant name, counted per tenant.
CREATE FUNCTION sentinel_fair_shares(p_tenant text[], p_vtime int8[], p_step int8[],
    p_cap int8[], p_limit int8)
RETURNS TABLE (share_tenant text, share_n int8) LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    SELECT x.tenant, count(*)::int8 FROM (
        SELECT t.tenant FROM (
            SELECT u.tenant, u.vtime, u.step, u.cap
            FROM unnest(p_tenant, p_vtime, p_step, p_cap) AS u(tenant, vtime, step, cap)
            WHERE u.cap > 0 ORDER BY u.vtime, u.tenant COLLATE "C" LIMIT p_limit) t,
            generate_series(0, LEAST(t.cap, p_limit) - 1) AS j
        ORDER BY t.vtime + j * t.step, t.tenant COLLATE "C" LIMIT p_limit) x
    GROUP BY x.tenant;
END $$;

-- Live memory keys per tenant, for the memory quotas and usage.
CREATE INDEX memory_live ON memory (tenant) WHERE value IS NOT NULL;
"#;

const V1: &str = r#"
-- The store's "now" in ms: the injected clock's value when one is bound, else the database's
-- statement time (stable within a statement, so every use in one statement agrees).
CREATE FUNCTION sentinel_now_ms(p bigint) RETURNS bigint LANGUAGE sql STABLE AS
$$ SELECT COALESCE(p, floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint) $$;

-- memory_seq: the change log's counter; its row lock, held to commit, orders memory writers.
CREATE TABLE counters (
    name  text COLLATE "C" PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO counters (name, value) VALUES ('memory_seq', 0);

-- Fencing tokens for every lock grant, store-wide.
CREATE SEQUENCE lock_fence;

CREATE TABLE locks (
    tenant      text COLLATE "C" NOT NULL,
    key         text COLLATE "C" NOT NULL,
    owner       text COLLATE "C" NOT NULL,
    token       bigint NOT NULL,
    acquired_at bigint NOT NULL,
    expires_at  bigint NOT NULL,
    metadata    text NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE INDEX locks_owner ON locks (owner);
CREATE INDEX locks_expiry ON locks (expires_at);

CREATE TABLE workers (
    worker_id         text COLLATE "C" PRIMARY KEY,
    hostname          text NOT NULL,
    status            text NOT NULL,
    registered_at     bigint NOT NULL,
    last_heartbeat    bigint NOT NULL,
    max_tasks         bigint NOT NULL,
    active_tasks      bigint NOT NULL,
    available_slots   bigint NOT NULL,
    capabilities      text NOT NULL,
    metadata          text NOT NULL,
    heartbeat         text NOT NULL,
    completed         bigint NOT NULL DEFAULT 0,
    failed            bigint NOT NULL DEFAULT 0,
    total_duration_ms bigint NOT NULL DEFAULT 0
);

CREATE TABLE memory (
    tenant     text COLLATE "C" NOT NULL,
    namespace  text COLLATE "C" NOT NULL,
    key        text COLLATE "C" NOT NULL,
    value      text,             -- NULL = deleted (the row keeps the version sequence going)
    version    bigint NOT NULL,
    ts         bigint NOT NULL,
    writer     text COLLATE "C" NOT NULL,
    expires_at bigint,
    PRIMARY KEY (tenant, namespace, key)
);
CREATE INDEX memory_expiry ON memory (expires_at) WHERE expires_at IS NOT NULL AND value IS NOT NULL;

CREATE TABLE memory_changes (
    seq       bigint PRIMARY KEY,
    tenant    text COLLATE "C" NOT NULL,
    namespace text COLLATE "C" NOT NULL,
    key       text COLLATE "C" NOT NULL,
    kind      text NOT NULL,
    value     text,
    version   bigint NOT NULL,
    ts        bigint NOT NULL,
    writer    text COLLATE "C" NOT NULL,
    logged_at bigint NOT NULL
);
CREATE INDEX memory_changes_logged ON memory_changes (logged_at);

-- No index on seq: it only orders claims (through tasks_ready), and every index costs an
-- insertion on each of a task's three row versions (submit, claim, settle).
CREATE TABLE tasks (
    seq              bigint GENERATED ALWAYS AS IDENTITY,
    id               text COLLATE "C" PRIMARY KEY,
    tenant           text COLLATE "C" NOT NULL,
    task_type        text COLLATE "C" NOT NULL,
    priority         integer NOT NULL,
    payload          bytea NOT NULL,
    metadata         text NOT NULL,
    max_retries      bigint NOT NULL,
    timeout_ms       bigint NOT NULL,
    attempt          bigint NOT NULL DEFAULT 0,
    state            text NOT NULL,
    worker_id        text COLLATE "C",
    lease_expires_at bigint,
    deadline_at      bigint,
    fence            bigint NOT NULL DEFAULT 0,
    output           bytea,
    error            text,
    created_at       bigint NOT NULL,
    updated_at       bigint NOT NULL,
    started_at       bigint,
    finished_at      bigint,
    run_at           bigint NOT NULL,
    depends_on       text,           -- JSON array, NULL when none
    required_worker  text COLLATE "C",
    same_worker_as   text COLLATE "C",
    excluded_workers text[] COLLATE "C"  -- NULL when none
);
-- Exactly the claimable-state rows, in claim order: a claim reads the head of this index.
CREATE INDEX tasks_ready ON tasks (priority DESC, seq) WHERE state IN ('pending', 'failed');
CREATE INDEX tasks_running ON tasks (worker_id) WHERE state = 'running';
CREATE INDEX tasks_tenant_state ON tasks (tenant, state);
-- A queue table churns: vacuum and analyze it far more often than the defaults would (where
-- autovacuum runs at all), so claims keep reading a short index head.
ALTER TABLE tasks SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02);

CREATE TABLE task_deps (
    task_id text COLLATE "C" NOT NULL,
    dep_id  text COLLATE "C" NOT NULL,
    PRIMARY KEY (task_id, dep_id)
);
CREATE INDEX task_deps_dep ON task_deps (dep_id);
"#;

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// What the store needs to know about the server, learned when it migrates.
#[derive(Debug, Clone, Copy)]
pub struct ServerInfo {
    /// `autovacuum` is on. Without it nothing ever removes the dead row versions and index
    /// entries a queue leaves behind, and the store vacuums its tables itself.
    pub autovacuum: bool,
}

/// Creates the schema if needed and applies pending migrations, on a connection of its own.
pub async fn migrate(config: &Config, schema: &str) -> StoreResult<ServerInfo> {
    migrate_to(config, schema, SCHEMA_VERSION).await
}

/// [`migrate`], stopping after version `target` (tests build an older store with it, to check
/// that a newer build opens it and keeps its data).
pub async fn migrate_to(config: &Config, schema: &str, target: i32) -> StoreResult<ServerInfo> {
    let (mut client, connection) = config.connect(NoTls).await.map_err(|e| map_pg(&e))?;
    let driver = tokio::spawn(connection);
    let result = async {
        let tx = client.transaction().await?;
        // Serialises concurrent openers of this schema, including its creation (a bare
        // `CREATE SCHEMA IF NOT EXISTS` races with itself and can fail on a unique index).
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1)::bigint)",
            &[&format!("sentinel_migrate:{schema}")],
        )
        .await?;
        // The name was validated by the caller ([a-z0-9_]), so it is safe to splice.
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             SET LOCAL search_path TO {schema};
             CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );"
        ))
        .await?;
        let current: i32 = tx
            .query_one(
                "SELECT COALESCE(max(version), 0) FROM schema_migrations",
                &[],
            )
            .await?
            .get(0);
        if current > SCHEMA_VERSION {
            return Ok(Err(StoreError::Backend(format!(
                "schema {schema} is at version {current}, newer than this build's {SCHEMA_VERSION}: upgrade Sentinel"
            ))));
        }
        for (version, sql) in MIGRATIONS
            .iter()
            .filter(|(v, _)| *v > current && *v <= target)
        {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[version],
            )
            .await?;
            tracing::info!(schema, version, "applied PostgreSQL store migration");
        }
        let autovacuum: bool = tx
            .query_one("SELECT current_setting('autovacuum')::bool", &[])
            .await?
            .get(0);
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>(Ok(ServerInfo { autovacuum }))
    }
    .await;
    drop(client);
    let _ = driver.await;
    result.map_err(|e| map_pg(&e))?
}

/// Drops the schema and everything in it, from any context (also from `Drop` inside an async
/// runtime): a thread with its own small runtime does the work while the caller waits.
/// Best-effort: failures are logged, never raised.
pub(crate) fn drop_schema_blocking(config: &Config, schema: &str) {
    let config = config.clone();
    let schema = schema.to_string();
    let joined = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let (client, connection) = config.connect(NoTls).await.map_err(|e| e.to_string())?;
            let driver = tokio::spawn(connection);
            let r = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await
                .map_err(|e| e.to_string());
            drop(client);
            let _ = driver.await;
            r
        })
    })
    .join();
    match joined {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not drop the PostgreSQL test schema"),
        Err(_) => tracing::warn!("the schema-dropping thread panicked"),
    }
}
