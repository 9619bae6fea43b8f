//! Versioned schema migrations, tracked in SQLite's `user_version`.

use std::path::Path;

use rusqlite::Connection;

use crate::StateError;
use crate::sql::sqlite::without_sql;

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
    // The pinned runbook text leaves the run row: SQLite rewrites a whole row on every
    // UPDATE, and a run's row is updated several times per step (status, audit head), so a
    // text spilling into overflow pages made every step copy and compare it. Texts are kept
    // once per content hash, shared by every run of the same runbook.
    r#"
CREATE TABLE runbook_texts (
    sha256 TEXT PRIMARY KEY,
    text   TEXT NOT NULL
);
INSERT OR IGNORE INTO runbook_texts (sha256, text) SELECT runbook_sha256, runbook_text FROM runs;
ALTER TABLE runs DROP COLUMN runbook_text;

-- The global position becomes the row id: events are stored in chain order, appended at the
-- end of the table, with one index (per stream) instead of two.
CREATE TABLE events_v3 (
    gseq      INTEGER PRIMARY KEY,
    run_id    TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    step_id   TEXT,
    attempt   INTEGER,
    data      TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    UNIQUE (run_id, seq)
);
INSERT INTO events_v3 (gseq, run_id, seq, at, kind, step_id, attempt, data, prev_hash, hash)
    SELECT gseq, run_id, seq, at, kind, step_id, attempt, data, prev_hash, hash FROM events ORDER BY gseq;
DROP TABLE events;
ALTER TABLE events_v3 RENAME TO events;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"#,
    // Fleets (issue 18): one runbook over many targets with rate control. The fleet is a
    // durable driver of its own: its decisions are rows here and events of its audit stream
    // (`fleet:<id>`); each target is an ordinary run, linked by `fleet_targets.run_id`, and
    // created in the same transaction as that link.
    r#"
CREATE TABLE fleets (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    source_path      TEXT,
    fleet_text       TEXT NOT NULL,
    spec             TEXT NOT NULL,
    runbook_name     TEXT NOT NULL,
    runbook_text     TEXT NOT NULL,
    runbook_source   TEXT,
    status           TEXT NOT NULL,
    reason           TEXT,
    approved_wave    INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    created_by       TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    audit_head       TEXT NOT NULL,
    audit_count      INTEGER NOT NULL
);
CREATE TABLE fleet_targets (
    fleet_id   TEXT NOT NULL REFERENCES fleets(id),
    idx        INTEGER NOT NULL,
    name       TEXT NOT NULL,
    wave       INTEGER NOT NULL,
    params     TEXT NOT NULL,
    run_id     TEXT REFERENCES runs(id),
    status     TEXT NOT NULL,
    started_at INTEGER,
    ended_at   INTEGER,
    PRIMARY KEY (fleet_id, idx)
);
CREATE INDEX fleet_targets_by_run ON fleet_targets(run_id);
"#,
    // Schedules that fire a fleet (issue 18): the pinned fleet file beside the schedule's
    // pinned runbook. A schedule without a row here fires a run.
    r#"
CREATE TABLE schedule_fleets (
    schedule_name TEXT PRIMARY KEY REFERENCES schedules(name),
    fleet_text    TEXT NOT NULL,
    fleet_source  TEXT
);
"#,
    // Lease epochs (issue 17): the fencing token of a driver. Taking over a run's or a
    // fleet's lease raises it; every write of a driver names the epoch it holds and is
    // refused once the row has moved on. The PostgreSQL schema has the same columns.
    r#"
ALTER TABLE runs ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE fleets ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
"#,
    // A step's last end (or operator re-opening) in the trail, read before every start
    // (`store/steps.rs`, `done_in_trail` and the start's own check): without it the query walked the
    // run's events backwards from the newest, all of them for a step that never ended (a
    // run of n steps read O(n²) events). Only those three kinds are indexed, so the other
    // events cost no index write. The PostgreSQL schema has the same index (its version 3).
    r#"
CREATE INDEX events_step_ends ON events(run_id, step_id, seq)
    WHERE kind IN ('step.completed', 'step.skipped', 'step.retry_requested');
"#,
    // Moved stores (`fogbook store copy`): one row per copy out of this store. A row in
    // state `copying` or `moved` makes every command that writes or drives refuse the store
    // (its runs live in `target` now); `store unmark` ends it (state `unmarked`, who, when,
    // why) and a failed copy ends it as `failed`. Rows are never deleted: they are the
    // store's record of where its runs went. The PostgreSQL schema has the same table.
    r#"
CREATE TABLE store_moves (
    id          INTEGER PRIMARY KEY,
    target      TEXT NOT NULL,
    state       TEXT NOT NULL,
    by          TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    moved_at    INTEGER,
    ended_at    INTEGER,
    ended_by    TEXT,
    reason      TEXT
);
"#,
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the schema up to [`SCHEMA_VERSION`].
///
/// Any number of processes may open a new database at once: the migrations run in one
/// exclusive transaction that reads `user_version` again once it holds the lock, so the
/// first process migrates and the others, waiting on the lock (the busy timeout), find the
/// schema already current and apply nothing.
pub(crate) fn apply(conn: &mut Connection, path: &Path) -> Result<(), StateError> {
    let current = user_version(conn, path)?;
    if current == SCHEMA_VERSION {
        return Ok(());
    }
    let err = |version: i64| {
        move |source| StateError::ApplyMigrations {
            version: usize::try_from(version).unwrap_or(0),
            source: std::sync::Arc::new(without_sql(source)),
        }
    };
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .map_err(err(current + 1))?;
    // Another process may have migrated between the first read and the lock.
    let current = user_version(&tx, path)?;
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        let version = i as i64 + 1;
        tx.execute_batch(sql).map_err(err(version))?;
        tx.pragma_update(None, "user_version", version).map_err(err(version))?;
    }
    tx.commit().map_err(err(SCHEMA_VERSION))?;
    Ok(())
}

/// Whether the schema is older than this build's (and must be migrated before it is
/// read); a version this build cannot work with is refused.
pub(crate) fn needs_upgrade(conn: &Connection, path: &Path) -> Result<bool, StateError> {
    Ok(user_version(conn, path)? < SCHEMA_VERSION)
}

/// Refuses a file this build cannot work with (a newer or unknown schema, or another
/// program's database) before anything is written to it, not even the switch to WAL.
pub(crate) fn check(conn: &Connection, path: &Path) -> Result<(), StateError> {
    user_version(conn, path).map(|_| ())
}

/// The schema version in the file, refused when this build cannot work with it.
fn user_version(conn: &Connection, path: &Path) -> Result<i64, StateError> {
    // One statement, so the version and the tables are read from one snapshot (another
    // process may be migrating a new file at this moment).
    let (found, objects): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(|source| StateError::OpenDatabase {
            path: path.to_owned(),
            source: Box::new(without_sql(source)),
        })?;
    if found > SCHEMA_VERSION {
        return Err(StateError::NewerSchema {
            path: path.to_owned(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    if found < 0 {
        return Err(StateError::UnknownSchema {
            path: path.to_owned(),
            found,
        });
    }
    // Version 0 is a new database, unless another program's tables are already there.
    if found == 0 && objects > 0 {
        return Err(StateError::NotFogbook { path: path.to_owned() });
    }
    Ok(found)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The check before every start (`store/steps.rs`, `done_in_trail`, and the same subquery in the
    /// start's `UPDATE`) reads one entry of `events_step_ends`: it no longer walks the run's
    /// events backwards (all of them for a step that never ended). Its text is the query's.
    #[test]
    fn a_steps_last_end_is_found_through_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let mut conn = Connection::open(&path).unwrap();
        apply(&mut conn, &path).unwrap();
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT kind FROM events WHERE run_id = ?1 AND step_id = ?2
                     AND kind IN ('step.completed', 'step.skipped', 'step.retry_requested')
                 ORDER BY seq DESC LIMIT 1",
            )
            .unwrap()
            .query_map(["r", "s"], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            plan,
            ["SEARCH events USING INDEX events_step_ends (run_id=? AND step_id=?)"],
            "one search of the index, no sort"
        );
    }

    /// A database written by schema 2 (text in the run row) keeps every run's pinned text
    /// when it is opened by this build, and the row no longer carries it.
    #[test]
    fn runbook_texts_move_out_of_the_run_rows_of_an_older_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let mut conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        for (id, sha, text) in [
            ("r1", "h1", "runbook: one"),
            ("r2", "h1", "runbook: one"),
            ("r3", "h2", "runbook: two"),
        ] {
            conn.execute(
                "INSERT INTO runs (id, runbook_name, runbook_version, runbook_text, runbook_sha256, params, status,
                                   created_at, updated_at, audit_head, audit_count)
                 VALUES (?1, 'rb', 1, ?3, ?2, '{}', 'succeeded', 0, 0, 'x', 0)",
                [id, sha, text],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO events (gseq, run_id, seq, at, kind, data, prev_hash, hash)
             VALUES (1, 'r1', 1, 0, 'run.created', '{}', 'p', 'h')",
            [],
        )
        .unwrap();
        apply(&mut conn, &path).unwrap();
        let event: (i64, String, String) = conn
            .query_row(
                "SELECT gseq, kind, hash FROM events WHERE run_id = 'r1' AND seq = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(event, (1, "run.created".to_owned(), "h".to_owned()), "events are kept");
        let edit = conn.execute("UPDATE events SET kind = 'x'", []);
        assert!(edit.is_err(), "the trail is still append-only");
        let delete = conn.execute("DELETE FROM events", []);
        assert!(delete.is_err(), "the trail is still append-only");
        let texts: Vec<(String, String)> = conn
            .prepare(
                "SELECT r.id, t.text FROM runs r JOIN runbook_texts t ON t.sha256 = r.runbook_sha256 ORDER BY r.id",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected = [("r1", "runbook: one"), ("r2", "runbook: one"), ("r3", "runbook: two")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()));
        assert_eq!(texts, expected);
        let stored: i64 = conn
            .query_row("SELECT count(*) FROM runbook_texts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, 2, "one copy per content hash");
        let still_there = conn.prepare("SELECT runbook_text FROM runs");
        assert!(still_there.is_err(), "the run row no longer carries the text");
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }
}
