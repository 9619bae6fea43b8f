//! The hash-chained audit trail.
//!
//! Every event of every run and schedule is one link of a single chain: its hash covers its
//! global position, its stream (run or `schedule:<name>`), its position in that stream, time,
//! kind, step, attempt, data, and the hash of the event before it in the whole database.
//! The `chain` row keeps the newest hash and the count, and each stream's row keeps its own
//! newest hash and count. Editing an event breaks its hash; deleting any event (or a whole
//! run) breaks the link of the event after it; deleting the newest events shows in the
//! counts. An attacker who can write the file can also rewrite the counts after cutting the
//! tail: against that, `audit verify` prints the head hash for the operator to keep
//! elsewhere, and `--since-head HASH` proves the chain still contains it.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::SqlContext;
use crate::sql::{self, ChainHead, OptionalExt, ToValue, Tx, params};
use crate::{Millis, StateError};

/// The `prev_hash` of the first event.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub(crate) struct NewEvent<'a> {
    pub(crate) kind: &'a str,
    pub(crate) step_id: Option<&'a str>,
    pub(crate) attempt: Option<u32>,
    pub(crate) data: serde_json::Value,
}

impl<'a> NewEvent<'a> {
    pub(crate) fn run(kind: &'a str, data: serde_json::Value) -> Self {
        Self {
            kind,
            step_id: None,
            attempt: None,
            data,
        }
    }

    pub(crate) fn step(kind: &'a str, step_id: &'a str, attempt: Option<u32>, data: serde_json::Value) -> Self {
        Self {
            kind,
            step_id: Some(step_id),
            attempt,
            data,
        }
    }
}

/// The fields an event's hash covers.
struct Hashed<'a> {
    gseq: i64,
    run_id: &'a str,
    seq: i64,
    at: Millis,
    kind: &'a str,
    step_id: Option<&'a str>,
    attempt: Option<u32>,
    data: &'a str,
    prev_hash: &'a str,
}

impl Hashed<'_> {
    /// sha256 over the fields, each followed by a unit separator, hex-encoded.
    fn hash(&self) -> String {
        let mut h = Sha256::new();
        let attempt = self.attempt.map(|a| a.to_string()).unwrap_or_default();
        let (gseq, seq, at) = (self.gseq.to_string(), self.seq.to_string(), self.at.to_string());
        for part in [
            &gseq,
            self.run_id,
            &seq,
            &at,
            self.kind,
            self.step_id.unwrap_or(""),
            &attempt,
            self.data,
            self.prev_hash,
        ] {
            h.update(part.as_bytes());
            h.update([0x1f]);
        }
        hex::encode(h.finalize())
    }
}
/// The prefix of the audit stream of a schedule (`schedule:<name>`); any other stream id
/// is a run id.
pub(crate) const SCHEDULE_STREAM: &str = "schedule:";
/// The prefix of the audit stream of a fleet (`fleet:<id>`).
pub(crate) const FLEET_STREAM: &str = "fleet:";
/// The audit stream of the store itself (`store unmark`: who, why). No row keeps its head:
/// the chain's count and head cover its newest event (`moved::stream_count`).
pub const STORE_STREAM: &str = "store:moves";

/// Where the head of a stream's chain is kept: (table, key column, key).
fn head_of(stream: &str) -> (&'static str, &'static str, &str) {
    if let Some(id) = stream.strip_prefix(FLEET_STREAM) {
        return ("fleets", "id", id);
    }
    match stream.strip_prefix(SCHEDULE_STREAM) {
        Some(name) => ("schedules", "name", name),
        None => ("runs", "id", stream),
    }
}

/// Fails with [`StateError::UnknownRun`] when no run (or schedule) has this stream id.
pub(crate) fn stream_exists(conn: &dyn Tx, stream: &str) -> Result<(), StateError> {
    if stream == STORE_STREAM {
        return Ok(());
    }
    let (table, key_col, key) = head_of(stream);
    let n: i64 = conn
        .query_row(
            &format!("SELECT count(*) FROM {table} WHERE {key_col} = ?1"),
            params![key],
            |r| r.get(0),
        )
        .during("looking up an audit stream")?;
    if n == 0 {
        return Err(StateError::UnknownRun {
            run_id: stream.to_owned(),
        });
    }
    Ok(())
}

/// Appends an event to a stream (a run's, or a schedule's `schedule:<name>`) and to the
/// global chain, inside the caller's transaction.
pub(crate) fn append(tx: &dyn Tx, run_id: &str, at: Millis, ev: NewEvent<'_>) -> Result<(), StateError> {
    append_all(tx, run_id, [(at, ev)])
}

/// Appends events to one stream in order, inside the caller's transaction: the stream's and
/// the chain's heads are read once and written once, whatever the number of events.
pub(crate) fn append_all<'a>(
    tx: &dyn Tx,
    run_id: &str,
    events: impl IntoIterator<Item = (Millis, NewEvent<'a>)>,
) -> Result<(), StateError> {
    append_events(tx, run_id, events, None, None)
}

/// [`append_all`], given the stream's event count as the caller read it in this
/// transaction before anything was appended to it (with the lease: no second read).
pub(crate) fn append_counted<'a>(
    tx: &dyn Tx,
    run_id: &str,
    events: impl IntoIterator<Item = (Millis, NewEvent<'a>)>,
    count: i64,
) -> Result<(), StateError> {
    append_events(tx, run_id, events, None, Some(count))
}

/// Appends a run's events (as [`append_all`]) and records in the same row update that the
/// run moved at `now` (and its new status, if it changes): one write of the run's row.
///
/// `count` is the run's audit count when the caller read it earlier in this transaction
/// (and appended nothing since); `None` reads it here.
pub(crate) fn append_and_touch<'a>(
    tx: &dyn Tx,
    run_id: &str,
    events: impl IntoIterator<Item = (Millis, NewEvent<'a>)>,
    status: Option<&'static str>,
    now: Millis,
    count: Option<i64>,
) -> Result<(), StateError> {
    append_events(tx, run_id, events, Some((status, now)), count)
}

fn append_events<'a>(
    tx: &dyn Tx,
    run_id: &str,
    events: impl IntoIterator<Item = (Millis, NewEvent<'a>)>,
    touch: Option<(Option<&'static str>, Millis)>,
    count: Option<i64>,
) -> Result<(), StateError> {
    let mut events = events.into_iter().peekable();
    if events.peek().is_none() {
        match touch {
            Some((Some(status), now)) => tx.execute_later(
                "UPDATE runs SET status = ?3, updated_at = ?2 WHERE id = ?1",
                params![run_id, now, status],
            ),
            Some((None, now)) => {
                tx.execute_later("UPDATE runs SET updated_at = ?2 WHERE id = ?1", params![run_id, now])
            }
            None => Ok(()),
        }
        .during("updating the run")?;
        return Ok(());
    }
    let (table, key_col, key) = head_of(run_id);
    let store_stream = run_id == STORE_STREAM;
    let mut seq: i64 = match count {
        Some(count) => count,
        None if store_stream => crate::moved::stream_count(tx)?,
        None => tx
            .query_row(
                &format!("SELECT audit_count FROM {table} WHERE {key_col} = ?1"),
                params![key],
                |r| r.get(0),
            )
            .optional()
            .during("reading the audit head")?
            .ok_or_else(|| StateError::UnknownRun {
                run_id: run_id.to_owned(),
            })?,
    };
    let cached = tx.chain_head();
    let held = cached.and_then(|c| c.borrow().clone());
    let ChainHead {
        hash: mut prev,
        count: mut gseq,
    } = match held {
        Some(head) => head,
        None => read_chain_head(tx)?,
    };
    // The events go in with as few statements as possible: up to `INSERT_ROWS` per
    // statement, each row's ten values one after the other.
    let mut rows: Vec<sql::Value> = Vec::with_capacity(INSERT_ROWS * EVENT_COLUMNS);
    for (at, ev) in events {
        crate::pg::listen::wake_workers(tx, ev.kind).during("notifying the workers")?;
        seq += 1;
        gseq += 1;
        let data = ev.data.to_string();
        let hash = Hashed {
            gseq,
            run_id,
            seq,
            at,
            kind: ev.kind,
            step_id: ev.step_id,
            attempt: ev.attempt,
            data: &data,
            prev_hash: &prev,
        }
        .hash();
        let prev_hash = std::mem::replace(&mut prev, hash.clone());
        rows.extend([
            gseq.to_value(),
            run_id.to_value(),
            seq.to_value(),
            at.to_value(),
            ev.kind.to_value(),
            ev.step_id.to_value(),
            ev.attempt.to_value(),
            sql::Value::Text(data),
            sql::Value::Text(prev_hash),
            sql::Value::Text(hash),
        ]);
        if rows.len() == INSERT_ROWS * EVENT_COLUMNS {
            insert_events(tx, &rows)?;
            rows.clear();
        }
    }
    if !rows.is_empty() {
        insert_events(tx, &rows)?;
    }
    match touch {
        None if store_stream => Ok(()),
        // The status only when it changes: a column in the SET list has its indexes
        // rewritten even when its value stays the same.
        Some((Some(status), now)) => tx.execute_later(
            "UPDATE runs SET audit_head = ?2, audit_count = ?3, status = ?4, updated_at = ?5 WHERE id = ?1",
            params![key, prev, seq, status, now],
        ),
        Some((None, now)) => tx.execute_later(
            "UPDATE runs SET audit_head = ?2, audit_count = ?3, updated_at = ?4 WHERE id = ?1",
            params![key, prev, seq, now],
        ),
        None => tx.execute_later(
            &format!("UPDATE {table} SET audit_head = ?2, audit_count = ?3 WHERE {key_col} = ?1"),
            params![key, prev, seq],
        ),
    }
    .during("advancing the audit head")?;
    let head = ChainHead {
        hash: prev,
        count: gseq,
    };
    match cached {
        // Written once, before the transaction commits (`write_chain_head`).
        Some(cell) => *cell.borrow_mut() = Some(head),
        None => write_chain_head(tx, &head)?,
    }
    Ok(())
}

/// The columns of an event's row, in the order [`insert_events`] binds them.
const EVENT_COLUMNS: usize = 10;
/// At most this many events are inserted by one statement.
const INSERT_ROWS: usize = 8;

/// Inserts events whose values are laid out row after row in `values`
/// (`EVENT_COLUMNS` each, at most `INSERT_ROWS` rows).
fn insert_events(tx: &dyn Tx, values: &[sql::Value]) -> Result<(), StateError> {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let statements = SQL.get_or_init(|| {
        (1..=INSERT_ROWS)
            .map(|n| {
                let rows: Vec<String> = (0..n)
                    .map(|r| {
                        let cells: Vec<String> = (1..=EVENT_COLUMNS)
                            .map(|c| format!("?{}", r * EVENT_COLUMNS + c))
                            .collect();
                        format!("({})", cells.join(", "))
                    })
                    .collect();
                format!(
                    "INSERT INTO events (gseq, run_id, seq, at, kind, step_id, attempt, data, prev_hash, hash) VALUES {}",
                    rows.join(", ")
                )
            })
            .collect()
    });
    let n = values.len() / EVENT_COLUMNS;
    let sql = statements
        .get(n.wrapping_sub(1))
        .ok_or_else(|| StateError::commit_failed("an audit insert of an unexpected size"))?;
    tx.execute_later(sql, values).during("appending an audit event")?;
    Ok(())
}

/// The chain's head as its row records it.
pub(crate) fn read_chain_head(tx: &dyn Tx) -> Result<ChainHead, StateError> {
    tx.query_row("SELECT head, count FROM chain WHERE id = 1", params![], |r| {
        Ok(ChainHead {
            hash: r.get(0)?,
            count: r.get(1)?,
        })
    })
    .during("reading the chain head")
}

/// Records `head` as the chain's head (a backend that keeps the head in memory for a
/// transaction calls this once, before it commits).
pub(crate) fn write_chain_head(tx: &dyn Tx, head: &ChainHead) -> Result<(), StateError> {
    tx.execute_later(
        "UPDATE chain SET head = ?1, count = ?2 WHERE id = 1",
        params![head.hash, head.count],
    )
    .during("advancing the chain head")?;
    Ok(())
}

/// What `audit verify` found.
#[derive(Clone, Debug, Serialize)]
pub struct AuditReport {
    /// Runs and schedules checked.
    pub runs: usize,
    /// Events checked.
    pub events: usize,
    /// The hash of the newest event: keep it outside the database, and later check with
    /// `--since-head` that the chain still contains it.
    pub head: String,
    /// The first problem, if any.
    pub failure: Option<AuditFailure>,
}

/// The first event that does not verify.
#[derive(Clone, Debug, Serialize)]
pub struct AuditFailure {
    /// The run (or `schedule:<name>`).
    pub run_id: String,
    /// The event's position in its run's trail.
    pub seq: i64,
    /// What is wrong.
    pub reason: String,
}

pub(crate) struct Stored {
    pub(crate) gseq: i64,
    pub(crate) run_id: String,
    pub(crate) seq: i64,
    pub(crate) at: Millis,
    pub(crate) kind: String,
    pub(crate) step_id: Option<String>,
    pub(crate) attempt: Option<u32>,
    pub(crate) data: String,
    pub(crate) prev_hash: String,
    pub(crate) hash: String,
    /// The first column whose text is not valid UTF-8 (fogbook writes only UTF-8).
    pub(crate) unreadable: Option<String>,
}

/// Recomputes the whole chain (every run's trail is part of it) and each stream's count and
/// head. With `run`, the run must exist. With `since_head`, the chain must contain an event
/// with that hash (a head recorded earlier, outside the database).
pub(crate) fn verify(conn: &dyn Tx, run: Option<&str>, since_head: Option<&str>) -> Result<AuditReport, StateError> {
    if let Some(id) = run {
        stream_exists(conn, id)?;
    }
    let streams: Vec<(String, String, i64)> = {
        conn.query_map(
            "SELECT id, audit_head, audit_count FROM runs
                 UNION ALL SELECT 'schedule:' || name, audit_head, audit_count FROM schedules
                 UNION ALL SELECT 'fleet:' || id, audit_head, audit_count FROM fleets",
            params![],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .during("listing runs to verify")?
    };
    let (chain_head, chain_count): (String, i64) = conn
        .query_row("SELECT head, count FROM chain WHERE id = 1", params![], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .during("reading the chain head")?;
    let events: Vec<Stored> = conn
        .query_map(
            "SELECT gseq, run_id, seq, at, kind, step_id, attempt, data, prev_hash, hash FROM events ORDER BY gseq",
            params![],
            |r| {
                // Text that is not valid UTF-8 is read anyway (lossily) and named: the event is
                // reported as altered instead of the whole check failing on it.
                let mut unreadable = None;
                let mut lossy = |idx: usize| -> sql::Result<Option<String>> {
                    match r.value(idx)? {
                        sql::Value::Null => Ok(None),
                        sql::Value::Text(s) => Ok(Some(s.clone())),
                        sql::Value::Blob(b) => Ok(Some(match std::str::from_utf8(b) {
                            Ok(s) => s.to_owned(),
                            Err(_) => {
                                unreadable.get_or_insert_with(|| r.column_name(idx).to_owned());
                                String::from_utf8_lossy(b).into_owned()
                            }
                        })),
                        _ => r.get(idx),
                    }
                };
                let run_id = lossy(1)?.unwrap_or_default();
                let kind = lossy(4)?.unwrap_or_default();
                let step_id = lossy(5)?;
                let data = lossy(7)?.unwrap_or_default();
                let prev_hash = lossy(8)?.unwrap_or_default();
                let hash = lossy(9)?.unwrap_or_default();
                Ok(Stored {
                    gseq: r.get(0)?,
                    run_id,
                    seq: r.get(2)?,
                    at: r.get(3)?,
                    kind,
                    step_id,
                    attempt: r.get(6)?,
                    data,
                    prev_hash,
                    hash,
                    unreadable,
                })
            },
        )
        .during("reading the audit trail")?;
    let mut report = AuditReport {
        runs: streams.len(),
        events: events.len(),
        head: chain_head.clone(),
        failure: None,
    };
    report.failure = first_failure(&events, &streams, &chain_head, chain_count, since_head);
    if report.failure.is_none() {
        // The chain is whole: the rows must also say what it records.
        report.failure = crate::agree::first_disagreement(conn, &events, run)?;
    }
    Ok(report)
}

fn first_failure(
    events: &[Stored],
    streams: &[(String, String, i64)],
    chain_head: &str,
    chain_count: i64,
    since_head: Option<&str>,
) -> Option<AuditFailure> {
    let fail = |run_id: &str, seq: i64, reason: String| {
        Some(AuditFailure {
            run_id: run_id.to_owned(),
            seq,
            reason,
        })
    };
    let mut prev = GENESIS;
    let mut next_seq: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for (expected_gseq, e) in (1..).zip(events) {
        let want_seq = next_seq.entry(e.run_id.as_str()).or_insert(1);
        if e.seq != *want_seq {
            return fail(
                &e.run_id,
                *want_seq,
                format!(
                    "event #{want_seq} is missing (the next one is #{}): an event was deleted",
                    e.seq
                ),
            );
        }
        if e.gseq != expected_gseq {
            return fail(
                &e.run_id,
                e.seq,
                format!(
                    "{} events of other runs before event #{} ({}) were deleted",
                    e.gseq - expected_gseq,
                    e.seq,
                    e.kind
                ),
            );
        }
        if let Some(column) = &e.unreadable {
            return fail(
                &e.run_id,
                e.seq,
                format!(
                    "event #{} ({}) was altered: its column `{column}` is not valid UTF-8 (fogbook writes only UTF-8)",
                    e.seq, e.kind
                ),
            );
        }
        if e.prev_hash != prev {
            return fail(
                &e.run_id,
                e.seq,
                format!(
                    "event #{} ({}) does not link to the event before it: an earlier event was edited or deleted",
                    e.seq, e.kind
                ),
            );
        }
        let actual = Hashed {
            gseq: e.gseq,
            run_id: &e.run_id,
            seq: e.seq,
            at: e.at,
            kind: &e.kind,
            step_id: e.step_id.as_deref(),
            attempt: e.attempt,
            data: &e.data,
            prev_hash: &e.prev_hash,
        }
        .hash();
        if actual != e.hash {
            return fail(
                &e.run_id,
                e.seq,
                format!(
                    "event #{} ({}) was altered: its content does not match its hash",
                    e.seq, e.kind
                ),
            );
        }
        *want_seq += 1;
        prev = &e.hash;
    }
    let total = i64::try_from(events.len()).unwrap_or(i64::MAX);
    if total != chain_count || prev != chain_head {
        let last = events.last();
        return fail(
            last.map_or("", |e| e.run_id.as_str()),
            last.map_or(0, |e| e.seq + 1),
            format!("the database records {chain_count} events but {total} remain: the newest events were deleted"),
        );
    }
    for (id, head, count) in streams {
        let have = next_seq.get(id.as_str()).map_or(0, |n| n - 1);
        if have != *count {
            return fail(
                id,
                have + 1,
                format!("the run records {count} events but {have} remain: its newest events were deleted"),
            );
        }
        let newest = events
            .iter()
            .rev()
            .find(|e| e.run_id == *id)
            .map_or(GENESIS, |e| e.hash.as_str());
        if newest != head {
            return fail(
                id,
                have,
                "the run's recorded audit head does not match its newest event".to_owned(),
            );
        }
    }
    if let Some(h) = since_head
        && !events.iter().any(|e| e.hash.eq_ignore_ascii_case(h))
    {
        return fail(
            "",
            0,
            format!("no event has the head {h} recorded earlier: the chain was cut or rewritten since"),
        );
    }
    None
}
