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

pub(super) fn migrate(conn: &Connection) -> StoreResult<()> {
    // Concurrent first opens from several processes: the IMMEDIATE transaction serialises them.
    conn.execute_batch(&format!("BEGIN IMMEDIATE;\n{SCHEMA}\nCOMMIT;"))
        .map_err(map_err)
}
