//! The hash-chained audit trail.
//!
//! Each event's hash covers its run, position, time, kind, step, attempt, data and the hash
//! of the event before it in the same run; the run row keeps the newest hash and the count.
//! Editing an event breaks its hash; deleting one breaks the next event's link, or (for the
//! newest) the count and head kept in the run row.

use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::SqlContext;
use crate::{Millis, StateError};

/// The `prev_hash` of a run's first event.
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
        let (seq, at) = (self.seq.to_string(), self.at.to_string());
        for part in [
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

/// Where the head of a stream's chain is kept: (table, key column, key).
fn head_of(stream: &str) -> (&'static str, &'static str, &str) {
    match stream.strip_prefix(SCHEDULE_STREAM) {
        Some(name) => ("schedules", "name", name),
        None => ("runs", "id", stream),
    }
}

/// Fails with [`StateError::UnknownRun`] when no run (or schedule) has this stream id.
pub(crate) fn stream_exists(conn: &rusqlite::Connection, stream: &str) -> Result<(), StateError> {
    let (table, key_col, key) = head_of(stream);
    let n: i64 = conn
        .query_row(
            &format!("SELECT count(*) FROM {table} WHERE {key_col} = ?1"),
            [key],
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

/// Appends an event to a stream's chain (a run's, or a schedule's `schedule:<name>`) inside
/// the caller's transaction.
pub(crate) fn append(tx: &Transaction<'_>, run_id: &str, at: Millis, ev: NewEvent<'_>) -> Result<(), StateError> {
    let (table, key_col, key) = head_of(run_id);
    let (head, count): (String, i64) = tx
        .query_row(
            &format!("SELECT audit_head, audit_count FROM {table} WHERE {key_col} = ?1"),
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .during("reading the audit head")?
        .ok_or_else(|| StateError::UnknownRun {
            run_id: run_id.to_owned(),
        })?;
    let seq = count + 1;
    let data = ev.data.to_string();
    let hash = Hashed {
        run_id,
        seq,
        at,
        kind: ev.kind,
        step_id: ev.step_id,
        attempt: ev.attempt,
        data: &data,
        prev_hash: &head,
    }
    .hash();
    tx.execute(
        "INSERT INTO events (run_id, seq, at, kind, step_id, attempt, data, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![run_id, seq, at, ev.kind, ev.step_id, ev.attempt, data, head, hash],
    )
    .during("appending an audit event")?;
    tx.execute(
        &format!("UPDATE {table} SET audit_head = ?2, audit_count = ?3 WHERE {key_col} = ?1"),
        params![key, hash, seq],
    )
    .during("advancing the audit head")?;
    Ok(())
}

/// What `audit verify` found.
#[derive(Clone, Debug, Serialize)]
pub struct AuditReport {
    /// Runs checked.
    pub runs: usize,
    /// Events checked.
    pub events: usize,
    /// The first problem, if any.
    pub failure: Option<AuditFailure>,
}

/// The first event that does not verify.
#[derive(Clone, Debug, Serialize)]
pub struct AuditFailure {
    /// The run.
    pub run_id: String,
    /// The event's position in the run's trail.
    pub seq: i64,
    /// What is wrong.
    pub reason: String,
}

type StoredEvent = (i64, Millis, String, Option<String>, Option<u32>, String, String, String);

pub(crate) fn verify(conn: &rusqlite::Connection, run: Option<&str>) -> Result<AuditReport, StateError> {
    let runs: Vec<(String, String, i64)> = {
        let mut stmt = conn
            .prepare(
                "SELECT id, audit_head, audit_count, created_at FROM runs WHERE (?1 IS NULL OR id = ?1)
                 UNION ALL
                 SELECT 'schedule:' || name, audit_head, audit_count, created_at FROM schedules
                 WHERE (?1 IS NULL OR 'schedule:' || name = ?1)
                 ORDER BY 4, 1",
            )
            .during("listing runs to verify")?;
        let rows = stmt
            .query_map([run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .during("listing runs to verify")?;
        rows.collect::<Result<_, _>>().during("listing runs to verify")?
    };
    if let Some(id) = run
        && runs.is_empty()
    {
        return Err(StateError::UnknownRun { run_id: id.to_owned() });
    }
    let mut report = AuditReport {
        runs: runs.len(),
        events: 0,
        failure: None,
    };
    let mut stmt = conn
        .prepare(
            "SELECT seq, at, kind, step_id, attempt, data, prev_hash, hash FROM events WHERE run_id = ?1 ORDER BY seq",
        )
        .during("reading the audit trail")?;
    for (run_id, head, count) in runs {
        let events: Vec<StoredEvent> = stmt
            .query_map([&run_id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })
            .during("reading the audit trail")?
            .collect::<Result<_, _>>()
            .during("reading the audit trail")?;
        let fail = |seq: i64, reason: String| AuditFailure {
            run_id: run_id.clone(),
            seq,
            reason,
        };
        let mut prev = GENESIS.to_owned();
        let mut failure = None;
        for (expected_seq, (seq, at, kind, step_id, attempt, data, prev_hash, hash)) in (1..).zip(&events) {
            report.events += 1;
            if *seq != expected_seq {
                failure = Some(fail(
                    expected_seq,
                    format!("event #{expected_seq} is missing (the next one is #{seq}): an event was deleted"),
                ));
                break;
            }
            if *prev_hash != prev {
                failure = Some(fail(
                    *seq,
                    format!(
                        "event #{seq} ({kind}) does not link to the event before it: an earlier event was edited or deleted"
                    ),
                ));
                break;
            }
            let actual = Hashed {
                run_id: &run_id,
                seq: *seq,
                at: *at,
                kind,
                step_id: step_id.as_deref(),
                attempt: *attempt,
                data,
                prev_hash,
            }
            .hash();
            if actual != *hash {
                failure = Some(fail(
                    *seq,
                    format!("event #{seq} ({kind}) was altered: its content does not match its hash"),
                ));
                break;
            }
            prev.clone_from(hash);
        }
        if failure.is_none() {
            let last = i64::try_from(events.len()).unwrap_or(i64::MAX);
            if last != count {
                failure = Some(fail(
                    last + 1,
                    format!("the run records {count} events but {last} remain: the newest events were deleted"),
                ));
            } else if prev != head {
                failure = Some(fail(
                    last,
                    "the run's recorded audit head does not match its newest event".to_owned(),
                ));
            }
        }
        if failure.is_some() {
            report.failure = failure;
            break;
        }
    }
    Ok(report)
}
