//! Copying a whole store to another one (`fogbook store copy`, issue 17): SQLite to
//! PostgreSQL, or back.
//!
//! The copy is taken in two steps. [`Store::copy_snapshot`] reads every table of the source
//! in one consistent read (one SQLite read transaction, one PostgreSQL `REPEATABLE READ`
//! transaction), verifies the audit chain of what it read, and lists the leases that were
//! live at that instant, so the caller can refuse to copy a run some process still drives.
//! [`Store::copy_restore`] then writes the rows into the target in one write transaction,
//! after checking in that same transaction that the target holds no fogbook data: the copy
//! is all or nothing, and never overwrites anything.
//!
//! Rows are copied as they are, column for column: events keep their global position, their
//! per-stream position and their hashes, and the `chain` row its head and count, so the
//! chain verifies on the target exactly as it did on the source, with the same head.

use std::sync::Arc;

use crate::audit::AuditReport;
use crate::error::SqlContext;
use crate::sql::{Dialect, Tx, Value, params};
use crate::{Millis, StateError, Store};

/// The tables of a store and their columns, in an order that satisfies every foreign key
/// (a run before its steps, a fleet before its targets, a schedule before its fleet file).
/// `chain` is not here: it is one row, which the target already has and the copy updates.
const TABLES: &[(&str, &[&str])] = &[
    ("runbook_texts", &["sha256", "text"]),
    (
        "runs",
        &[
            "id",
            "runbook_name",
            "runbook_version",
            "runbook_sha256",
            "source_path",
            "params",
            "status",
            "auto_approve",
            "created_at",
            "updated_at",
            "finished_at",
            "error",
            "lease_owner",
            "lease_expires_at",
            "cancel_requested",
            "audit_head",
            "audit_count",
            "schedule_name",
            "window",
            "lease_epoch",
        ],
    ),
    (
        "steps",
        &[
            "run_id",
            "step_id",
            "position",
            "status",
            "attempt",
            "input",
            "output",
            "progress",
            "error",
            "first_started_at",
            "started_at",
            "finished_at",
            "deadline_at",
            "next_attempt_at",
        ],
    ),
    (
        "events",
        &[
            "gseq",
            "run_id",
            "seq",
            "at",
            "kind",
            "step_id",
            "attempt",
            "data",
            "prev_hash",
            "hash",
        ],
    ),
    (
        "windows",
        &[
            "id",
            "run_id",
            "kind",
            "opened_step",
            "opened_at",
            "subject",
            "closed_step",
            "closed_at",
            "limit_notified",
        ],
    ),
    ("locks", &["key", "run_id", "acquired_at"]),
    ("approvals", &["run_id", "step_id", "by", "comment", "at", "auto"]),
    (
        "schedules",
        &[
            "name",
            "cron",
            "tz",
            "runbook_name",
            "runbook_text",
            "runbook_sha256",
            "source_path",
            "params",
            "overlap",
            "catch_up_ms",
            "window",
            "auto_approve",
            "paused",
            "removed",
            "created_at",
            "updated_at",
            "cursor_at",
            "queued",
            "version",
            "audit_head",
            "audit_count",
        ],
    ),
    ("schedule_fleets", &["schedule_name", "fleet_text", "fleet_source"]),
    (
        "fleets",
        &[
            "id",
            "name",
            "source_path",
            "fleet_text",
            "spec",
            "runbook_name",
            "runbook_text",
            "runbook_source",
            "status",
            "reason",
            "approved_wave",
            "cancel_requested",
            "lease_owner",
            "lease_expires_at",
            "created_by",
            "created_at",
            "updated_at",
            "audit_head",
            "audit_count",
            "lease_epoch",
        ],
    ),
    (
        "fleet_targets",
        &[
            "fleet_id",
            "idx",
            "name",
            "wave",
            "params",
            "run_id",
            "status",
            "started_at",
            "ended_at",
        ],
    ),
];

/// The primary key of each table, for a stable order of the rows read.
fn order_of(table: &str) -> &'static str {
    match table {
        "runbook_texts" => "sha256",
        "runs" | "fleets" => "id",
        "steps" => "run_id, position, step_id",
        "events" => "gseq",
        "windows" => "id",
        "locks" => "\"key\"",
        "approvals" => "run_id, step_id",
        "schedules" => "name",
        "schedule_fleets" => "schedule_name",
        _ => "fleet_id, idx",
    }
}

/// Called as `progress(table, rows written, rows of the table)` after each batch of a copy.
pub type CopyProgress = Arc<dyn Fn(&str, usize, usize) + Send + Sync>;

/// Rows per `INSERT` statement (a few hundred parameters, well under both backends' limit).
const BATCH: usize = 50;

/// A lease that was live when the snapshot was read: some process may be driving the run
/// (or fleet) right now.
#[derive(Clone, Debug)]
pub struct LiveLease {
    /// The run id, or `fleet:<id>`.
    pub stream: String,
    /// The lease owner (`host:pid:start`).
    pub owner: String,
    /// When the lease expires unless renewed.
    pub expires_at: Millis,
}

/// Everything a store holds, read at one instant, ready to be written into another store.
pub struct CopySnapshot {
    tables: Vec<(&'static str, Vec<Vec<Value>>)>,
    chain_head: String,
    chain_count: i64,
    audit: AuditReport,
    leases: Vec<LiveLease>,
}

impl std::fmt::Debug for CopySnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopySnapshot")
            .field("counts", &self.counts())
            .field("chain_head", &self.chain_head)
            .finish_non_exhaustive()
    }
}

impl CopySnapshot {
    /// The number of rows read, per table, in copy order.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        self.tables.iter().map(|(t, rows)| (*t, rows.len())).collect()
    }

    /// The audit chain of the snapshot, verified (a failure names the first bad event).
    pub fn audit(&self) -> &AuditReport {
        &self.audit
    }

    /// The newest event's hash (the chain head) and the number of events in the chain.
    pub fn chain(&self) -> (&str, i64) {
        (&self.chain_head, self.chain_count)
    }

    /// The leases live at the instant of the snapshot.
    pub fn live_leases(&self) -> &[LiveLease] {
        &self.leases
    }
}

/// What [`Store::copy_restore`] did.
#[derive(Clone, Debug)]
pub enum CopyOutcome {
    /// Every row was written, in one transaction; the target's chain head and count after it.
    Copied {
        /// Rows written per table, in copy order.
        counts: Vec<(&'static str, usize)>,
        /// The target's chain head after the copy.
        chain_head: String,
        /// The target's event count after the copy.
        chain_count: i64,
    },
    /// The target already holds fogbook data (rows per table that holds any); nothing was
    /// written.
    TargetNotEmpty(Vec<(&'static str, i64)>),
}

fn select_sql(table: &str, columns: &[&str]) -> String {
    let cols: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
    format!("SELECT {} FROM {table} ORDER BY {}", cols.join(", "), order_of(table))
}

fn insert_sql(table: &str, columns: &[&str], rows: usize) -> String {
    let cols: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
    let tuples: Vec<String> = (0..rows)
        .map(|r| {
            let marks: Vec<String> = (1..=columns.len())
                .map(|c| format!("?{}", r * columns.len() + c))
                .collect();
            format!("({})", marks.join(", "))
        })
        .collect();
    format!("INSERT INTO {table} ({}) VALUES {}", cols.join(", "), tuples.join(", "))
}

/// Reads every table (the caller's read is one consistent snapshot).
fn read_all(tx: &dyn Tx, now: Millis) -> Result<CopySnapshot, StateError> {
    let mut tables = Vec::with_capacity(TABLES.len());
    for (table, columns) in TABLES {
        let rows = tx
            .query(&select_sql(table, columns), params![])
            .during("reading the source store for the copy")?;
        let values = rows
            .iter()
            .map(|r| (0..columns.len()).map(|i| r.value(i).cloned()).collect())
            .collect::<crate::sql::Result<Vec<Vec<Value>>>>()
            .during("reading the source store for the copy")?;
        tables.push((*table, values));
    }
    let (chain_head, chain_count): (String, i64) = tx
        .query_row("SELECT head, count FROM chain WHERE id = 1", params![], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .during("reading the chain head")?;
    let leases = tx
        .query_map(
            "SELECT id, lease_owner, lease_expires_at FROM runs
                 WHERE lease_owner IS NOT NULL AND lease_expires_at > ?1
                   AND status NOT IN ('succeeded', 'failed', 'cancelled')
             UNION ALL SELECT 'fleet:' || id, lease_owner, lease_expires_at FROM fleets
                 WHERE lease_owner IS NOT NULL AND lease_expires_at > ?1
             ORDER BY 1",
            params![now],
            |r| {
                Ok(LiveLease {
                    stream: r.get(0)?,
                    owner: r.get(1)?,
                    expires_at: r.get(2)?,
                })
            },
        )
        .during("reading the leases of the source store")?;
    let audit = crate::audit::verify(tx, None, None)?;
    Ok(CopySnapshot {
        tables,
        chain_head,
        chain_count,
        audit,
        leases,
    })
}

/// Counts the rows of every table of the target that hold fogbook data.
fn occupied(tx: &dyn Tx) -> Result<Vec<(&'static str, i64)>, StateError> {
    let mut found = Vec::new();
    for (table, _) in TABLES {
        let n: i64 = tx
            .query_row(&format!("SELECT count(*) FROM {table}"), params![], |r| r.get(0))
            .during("checking that the target store is empty")?;
        if n > 0 {
            found.push((*table, n));
        }
    }
    let events: i64 = tx
        .query_row("SELECT count FROM chain WHERE id = 1", params![], |r| r.get(0))
        .during("checking that the target store is empty")?;
    if events > 0 {
        found.push(("chain", events));
    }
    Ok(found)
}

/// Writes the snapshot into an empty target, inside the caller's transaction.
fn write_all(
    tx: &dyn Tx,
    snap: &CopySnapshot,
    progress: &(dyn Fn(&str, usize, usize) + Send + Sync),
) -> Result<CopyOutcome, StateError> {
    let found = occupied(tx)?;
    if !found.is_empty() {
        return Ok(CopyOutcome::TargetNotEmpty(found));
    }
    for ((table, rows), (_, columns)) in snap.tables.iter().zip(TABLES) {
        let mut done = 0;
        for batch in rows.chunks(BATCH) {
            let values: Vec<Value> = batch.iter().flatten().cloned().collect();
            tx.execute(&insert_sql(table, columns, batch.len()), &values)
                .during("writing the copy into the target store")?;
            done += batch.len();
            progress(table, done, rows.len());
        }
        if rows.is_empty() {
            progress(table, 0, 0);
        }
    }
    // Windows keep their ids; PostgreSQL's identity sequence must then start after them
    // (SQLite's AUTOINCREMENT counter follows the largest id inserted by itself).
    if tx.dialect() == Dialect::Postgres {
        tx.query(
            "SELECT setval(pg_get_serial_sequence('windows', 'id'), (SELECT COALESCE(MAX(id), 0) + 1 FROM windows), false)",
            params![],
        )
        .during("moving the window id sequence past the copied windows")?;
    }
    tx.execute(
        "UPDATE chain SET head = ?1, count = ?2 WHERE id = 1",
        params![snap.chain_head, snap.chain_count],
    )
    .during("writing the chain head")?;
    let (chain_head, chain_count): (String, i64) = tx
        .query_row("SELECT head, count FROM chain WHERE id = 1", params![], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .during("reading the target's chain head")?;
    Ok(CopyOutcome::Copied {
        counts: snap.counts(),
        chain_head,
        chain_count,
    })
}

impl Store {
    /// Reads everything this store holds in one consistent read, verifies its audit chain,
    /// and lists the leases live at `now` (see [`CopySnapshot`]).
    pub async fn copy_snapshot(&self, now: Millis) -> Result<CopySnapshot, StateError> {
        self.read(move |tx| {
            // A SQLite read outside a transaction sees each statement's own snapshot: read
            // every table in one, so the copy is of one instant.
            let sqlite = tx.dialect() == Dialect::Sqlite;
            if sqlite {
                tx.execute("BEGIN", params![]).during("beginning the copy's read")?;
            }
            let snap = read_all(tx, now);
            if sqlite {
                // Ended whatever the outcome, so the connection is left outside a transaction.
                let ended = tx.execute("COMMIT", params![]).during("ending the copy's read");
                return snap.and_then(|s| ended.map(|_| s));
            }
            snap
        })
        .await
    }

    /// Writes `snap` into this store in one transaction, if this store holds no fogbook
    /// data; otherwise writes nothing and says what it holds. `progress(table, done, total)`
    /// is called after each batch of rows.
    pub async fn copy_restore(&self, snap: CopySnapshot, progress: CopyProgress) -> Result<CopyOutcome, StateError> {
        self.write(move |tx| write_all(tx, &snap, progress.as_ref())).await
    }

    /// The chain head and event count this store holds, read in a write transaction: under
    /// the store's write lock, which a copy's transaction holds until it ends, so a copy whose
    /// COMMIT went unanswered has been committed or rolled back when this reads (learning
    /// which, where reading outside the lock could see it unfinished).
    pub async fn settled_chain(&self) -> Result<(String, i64), StateError> {
        self.write(|tx| crate::audit::read_chain_head(tx).map(|h| (h.hash, h.count)))
            .await
    }
}
