//! Versioned schema migrations, tracked in SQLite's `user_version`.

use std::path::Path;

use rusqlite::Connection;

use crate::StateError;

/// Each entry moves the schema from version `i` to `i + 1`. Never edit a shipped entry;
/// append a new one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    runbook_name     TEXT NOT NULL,
    runbook_version  INTEGER NOT NULL,
    runbook_text     TEXT NOT NULL,
    runbook_sha256   TEXT NOT NULL,
    source_path      TEXT,
    params           TEXT NOT NULL,
    status           TEXT NOT NULL,
    auto_approve     INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    error            TEXT,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    audit_head       TEXT NOT NULL,
    audit_count      INTEGER NOT NULL
);
CREATE INDEX runs_by_status ON runs(status);

CREATE TABLE steps (
    run_id           TEXT NOT NULL REFERENCES runs(id),
    step_id          TEXT NOT NULL,
    position         INTEGER NOT NULL,
    status           TEXT NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    input            TEXT,
    output           TEXT,
    progress         TEXT,
    error            TEXT,
    first_started_at INTEGER,
    started_at       INTEGER,
    finished_at      INTEGER,
    deadline_at      INTEGER,
    next_attempt_at  INTEGER,
    PRIMARY KEY (run_id, step_id)
);

CREATE TABLE chain (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    head  TEXT NOT NULL,
    count INTEGER NOT NULL
);
INSERT INTO chain (id, head, count)
    VALUES (1, '0000000000000000000000000000000000000000000000000000000000000000', 0);

CREATE TABLE events (
    gseq      INTEGER NOT NULL UNIQUE,
    run_id    TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    step_id   TEXT,
    attempt   INTEGER,
    data      TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;

CREATE TABLE windows (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id         TEXT NOT NULL REFERENCES runs(id),
    kind           TEXT NOT NULL,
    opened_step    TEXT NOT NULL,
    opened_at      INTEGER NOT NULL,
    subject        TEXT,
    closed_step    TEXT,
    closed_at      INTEGER,
    limit_notified INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX windows_by_run ON windows(run_id);

CREATE TABLE locks (
    key         TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL REFERENCES runs(id),
    acquired_at INTEGER NOT NULL
);

CREATE TABLE approvals (
    run_id  TEXT NOT NULL REFERENCES runs(id),
    step_id TEXT NOT NULL,
    by      TEXT NOT NULL,
    comment TEXT,
    at      INTEGER NOT NULL,
    auto    INTEGER NOT NULL,
    PRIMARY KEY (run_id, step_id)
);
"#,
    r#"
CREATE TABLE schedules (
    name           TEXT PRIMARY KEY,
    cron           TEXT NOT NULL,
    tz             TEXT NOT NULL,
    runbook_name   TEXT NOT NULL,
    runbook_text   TEXT NOT NULL,
    runbook_sha256 TEXT NOT NULL,
    source_path    TEXT,
    params         TEXT NOT NULL,
    overlap        TEXT NOT NULL,
    catch_up_ms    INTEGER NOT NULL,
    window         TEXT,
    auto_approve   INTEGER NOT NULL,
    paused         INTEGER NOT NULL DEFAULT 0,
    removed        INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    cursor_at      INTEGER NOT NULL,
    queued         INTEGER NOT NULL DEFAULT 0,
    version        INTEGER NOT NULL DEFAULT 0,
    audit_head     TEXT NOT NULL,
    audit_count    INTEGER NOT NULL
);
ALTER TABLE runs ADD COLUMN schedule_name TEXT;
ALTER TABLE runs ADD COLUMN window TEXT;
CREATE INDEX runs_by_schedule ON runs(schedule_name, status);
"#,
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the schema up to [`SCHEMA_VERSION`], one transaction per migration.
pub(crate) fn apply(conn: &mut Connection, path: &Path) -> Result<(), StateError> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|source| StateError::ApplyMigrations { version: 0, source })?;
    if current > SCHEMA_VERSION {
        return Err(StateError::NewerSchema {
            path: path.to_owned(),
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        let version = i + 1;
        let err = |source| StateError::ApplyMigrations { version, source };
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", version as i64).map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(())
}
