//! The SQLite schema, created idempotently on open. Changing a table here needs a migration step,
//! never a silent redefinition: other processes may already be using the file.

use rusqlite::Connection;

use super::map_err;
use crate::store::StoreResult;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO counters (name, value) VALUES ('lock_fence', 0), ('memory_seq', 0), ('task_wake', 0);

CREATE TABLE IF NOT EXISTS locks (
    tenant      TEXT NOT NULL,
    key         TEXT NOT NULL,
    owner       TEXT NOT NULL,
    token       INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    metadata    TEXT NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS locks_owner ON locks (owner);
CREATE INDEX IF NOT EXISTS locks_expiry ON locks (expires_at);

CREATE TABLE IF NOT EXISTS workers (
    worker_id        TEXT PRIMARY KEY,
    hostname         TEXT NOT NULL,
    status           TEXT NOT NULL,
    registered_at    INTEGER NOT NULL,
    last_heartbeat   INTEGER NOT NULL,
    max_tasks        INTEGER NOT NULL,
    active_tasks     INTEGER NOT NULL,
    available_slots  INTEGER NOT NULL,
    capabilities     TEXT NOT NULL,
    metadata         TEXT NOT NULL,
    heartbeat        TEXT NOT NULL,
    completed        INTEGER NOT NULL DEFAULT 0,
    failed           INTEGER NOT NULL DEFAULT 0,
    total_duration_ms INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS memory (
    tenant     TEXT NOT NULL,
    namespace  TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT,             -- NULL = deleted (the row keeps the version sequence going)
    version    INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    writer     TEXT NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (tenant, namespace, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS memory_expiry ON memory (expires_at) WHERE expires_at IS NOT NULL AND value IS NOT NULL;

CREATE TABLE IF NOT EXISTS memory_changes (
    seq       INTEGER PRIMARY KEY,
    tenant    TEXT NOT NULL,
    namespace TEXT NOT NULL,
    key       TEXT NOT NULL,
    kind      TEXT NOT NULL,
    value     TEXT,
    version   INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    writer    TEXT NOT NULL,
    logged_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS tasks (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    tenant           TEXT NOT NULL,
    task_type        TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    payload          BLOB NOT NULL,
    metadata         TEXT NOT NULL,
    max_retries      INTEGER NOT NULL,
    timeout_ms       INTEGER NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    state            TEXT NOT NULL,
    worker_id        TEXT,
    lease_expires_at INTEGER,
    deadline_at      INTEGER,
    fence            INTEGER NOT NULL DEFAULT 0,
    output           BLOB,
    error            TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    run_at           INTEGER NOT NULL,
    depends_on       TEXT,           -- JSON array, NULL when none
    required_worker  TEXT,
    same_worker_as   TEXT,
    excluded_workers TEXT            -- JSON array, NULL when none
);
CREATE INDEX IF NOT EXISTS tasks_ready ON tasks (priority DESC, seq) WHERE state IN ('pending', 'failed');
CREATE INDEX IF NOT EXISTS tasks_running ON tasks (worker_id) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS tasks_tenant_state ON tasks (tenant, state);

CREATE TABLE IF NOT EXISTS task_deps (
    task_id TEXT NOT NULL,
    dep_id  TEXT NOT NULL,
    PRIMARY KEY (task_id, dep_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS task_deps_dep ON task_deps (dep_id);
"#;

/// Steps after the base schema, numbered by `PRAGMA user_version` (step `i` brings the file to
/// version `i + 1`). A released step must never be edited: append a new one.
const STEPS: &[&str] = &[
    // 1: incarnations and per-worker failure detection. Rows registered before this step get the
    // seeds' defaults (30 s heartbeats, 120 s threshold) rather than the detector's floor.
    "ALTER TABLE workers ADD COLUMN incarnation INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE workers ADD COLUMN heartbeat_interval_ms INTEGER NOT NULL DEFAULT 30000;
     ALTER TABLE workers ADD COLUMN stale_threshold_ms INTEGER NOT NULL DEFAULT 120000;
     ALTER TABLE tasks ADD COLUMN worker_incarnation INTEGER;",
];

pub(super) fn migrate(conn: &Connection) -> StoreResult<()> {
    // Concurrent first opens from several processes: the IMMEDIATE transaction serialises them.
    let mut sql = format!("BEGIN IMMEDIATE;\n{SCHEMA}\n");
    conn.execute_batch(&sql).map_err(map_err)?;
    let result = (|| {
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(map_err)?;
        sql.clear();
        for (i, step) in STEPS.iter().enumerate().skip(version.max(0) as usize) {
            sql.push_str(step);
            sql.push_str(&format!("\nPRAGMA user_version = {};\n", i + 1));
        }
        sql.push_str("COMMIT;");
        conn.execute_batch(&sql).map_err(map_err)
    })();
    if result.is_err() {
        let _ = conn.execute_batch("ROLLBACK;");
    }
    result
}
