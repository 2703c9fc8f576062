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
    // 2: tenancy. A task's identity becomes (tenant, id): the table is rebuilt with that
    // uniqueness (SQLite cannot drop a column constraint) keeping every row and its seq, and the
    // ready index leads with the tenant so a fair claim reads each tenant's head. Dependencies
    // carry their tenant. `tenants` holds settings, the submit-rate bucket, memory usage
    // counters (kept only while a memory quota is set) and the fair-claim virtual time;
    // `fair_vclock` is the store's virtual clock.
    "CREATE TABLE tasks_v2 (
        seq                INTEGER PRIMARY KEY,
        id                 TEXT NOT NULL,
        tenant             TEXT NOT NULL,
        task_type          TEXT NOT NULL,
        priority           INTEGER NOT NULL,
        payload            BLOB NOT NULL,
        metadata           TEXT NOT NULL,
        max_retries        INTEGER NOT NULL,
        timeout_ms         INTEGER NOT NULL,
        attempt            INTEGER NOT NULL DEFAULT 0,
        state              TEXT NOT NULL,
        worker_id          TEXT,
        lease_expires_at   INTEGER,
        deadline_at        INTEGER,
        fence              INTEGER NOT NULL DEFAULT 0,
        output             BLOB,
        error              TEXT,
        created_at         INTEGER NOT NULL,
        updated_at         INTEGER NOT NULL,
        started_at         INTEGER,
        finished_at        INTEGER,
        run_at             INTEGER NOT NULL,
        depends_on         TEXT,
        required_worker    TEXT,
        same_worker_as     TEXT,
        excluded_workers   TEXT,
        worker_incarnation INTEGER,
        UNIQUE (tenant, id)
     );
     INSERT INTO tasks_v2 (seq, id, tenant, task_type, priority, payload, metadata, max_retries,
        timeout_ms, attempt, state, worker_id, lease_expires_at, deadline_at, fence, output, error,
        created_at, updated_at, started_at, finished_at, run_at, depends_on, required_worker,
        same_worker_as, excluded_workers, worker_incarnation)
     SELECT seq, id, tenant, task_type, priority, payload, metadata, max_retries,
        timeout_ms, attempt, state, worker_id, lease_expires_at, deadline_at, fence, output, error,
        created_at, updated_at, started_at, finished_at, run_at, depends_on, required_worker,
        same_worker_as, excluded_workers, worker_incarnation FROM tasks;
     DROP TABLE tasks;
     ALTER TABLE tasks_v2 RENAME TO tasks;
     CREATE INDEX tasks_ready ON tasks (tenant, priority DESC, seq) WHERE state IN ('pending', 'failed');
     CREATE INDEX tasks_running ON tasks (worker_id) WHERE state = 'running';
     CREATE INDEX tasks_tenant_state ON tasks (tenant, state);
     CREATE TABLE task_deps_v2 (
        tenant  TEXT NOT NULL,
        task_id TEXT NOT NULL,
        dep_id  TEXT NOT NULL,
        PRIMARY KEY (tenant, task_id, dep_id)
     ) WITHOUT ROWID;
     INSERT OR IGNORE INTO task_deps_v2 (tenant, task_id, dep_id)
        SELECT t.tenant, d.task_id, d.dep_id FROM task_deps d JOIN tasks t ON t.id = d.task_id;
     DROP TABLE task_deps;
     ALTER TABLE task_deps_v2 RENAME TO task_deps;
     CREATE INDEX task_deps_dep ON task_deps (tenant, dep_id);
     CREATE TABLE tenants (
        tenant          TEXT PRIMARY KEY,
        configured      INTEGER NOT NULL DEFAULT 0,
        weight          INTEGER NOT NULL DEFAULT 1,
        max_queued      INTEGER,
        max_running     INTEGER,
        rate_per_second INTEGER,
        rate_burst      INTEGER,
        bucket_milli    INTEGER,
        bucket_at       INTEGER,
        memory_keys     INTEGER,
        memory_bytes    INTEGER,
        mem_used_keys   INTEGER NOT NULL DEFAULT 0,
        mem_used_bytes  INTEGER NOT NULL DEFAULT 0,
        vtime           INTEGER NOT NULL DEFAULT 0
     ) WITHOUT ROWID;
     CREATE INDEX memory_tenant_expiry ON memory (tenant, expires_at)
        WHERE expires_at IS NOT NULL AND value IS NOT NULL;
     INSERT OR IGNORE INTO counters (name, value) VALUES ('fair_vclock', 0);",
    // 3: holder proofs. A grant made with a holder secret keeps its SHA-256 digest; release and
    // renew must present the secret. Grants from before this step have none and stay open to
    // owner and token, as they were.
    "ALTER TABLE locks ADD COLUMN holder_digest TEXT;",
    // 4: each task type's claimable head per tenant, so a claim naming its task types never
    // walks tasks of other types (see `claim::TYPE_HEAD`).
    "CREATE INDEX tasks_ready_type ON tasks (tenant, task_type, priority DESC, seq)
        WHERE state IN ('pending', 'failed');",
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A file written before tenancy (version 1) opens with its tasks, their seq, and their
    /// dependencies (now carrying the tenant); ids become unique per tenant only.
    #[test]
    fn a_version_1_store_keeps_its_tasks_through_the_tenancy_step() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("{SCHEMA}\n{}\nPRAGMA user_version = 1;", STEPS[0]))
            .unwrap();
        conn.execute_batch(
            "INSERT INTO tasks (seq, id, tenant, task_type, priority, payload, metadata,
                max_retries, timeout_ms, state, created_at, updated_at, run_at, depends_on)
             VALUES (7, 'a', 'acme', 't', 0, x'00', '{}', 3, 1000, 'completed', 1, 1, 1, NULL),
                    (9, 'b', 'acme', 't', 5, x'01', '{}', 3, 1000, 'pending', 2, 2, 2, '[\"a\"]');
             INSERT INTO task_deps (task_id, dep_id) VALUES ('b', 'a');",
        )
        .unwrap();
        migrate(&conn).unwrap();
        migrate(&conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, STEPS.len() as i64);
        let rows: Vec<(i64, String, String, String)> = conn
            .prepare("SELECT seq, tenant, id, state FROM tasks ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (7, "acme".into(), "a".into(), "completed".into()),
                (9, "acme".into(), "b".into(), "pending".into())
            ]
        );
        let dep: (String, String, String) = conn
            .query_row("SELECT tenant, task_id, dep_id FROM task_deps", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(dep, ("acme".into(), "b".into(), "a".into()));
        // The same id in another tenant is now a different task; in the same tenant it is not.
        let insert = "INSERT INTO tasks (id, tenant, task_type, priority, payload, metadata,
                max_retries, timeout_ms, state, created_at, updated_at, run_at)
             VALUES ('a', ?1, 't', 0, x'', '{}', 3, 1000, 'pending', 3, 3, 3)";
        conn.execute(insert, ["other"]).unwrap();
        assert!(conn.execute(insert, ["acme"]).is_err());
        let ready: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'tasks_ready'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(ready.contains("(tenant, priority DESC, seq)"), "{ready}");
    }
}
