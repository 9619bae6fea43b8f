//! The rows agree with the trail: `audit verify` derives each run's status, each step's
//! status and attempt, and each window from the run's events, and compares them with the
//! `runs`, `steps` and `windows` rows. A row edited in place (outside fogbook) keeps the
//! chain intact, so only this comparison finds it.
//!
//! The derivation follows the store's transitions: every change of a run's status, a step's
//! status or a window is written with the event that describes it (see `store/steps.rs`).

use std::collections::BTreeMap;

use crate::audit::{AuditFailure, FLEET_STREAM, SCHEDULE_STREAM, STORE_STREAM, Stored};
use crate::error::SqlContext;
use crate::sql::{self, Row, Tx, params};
use crate::{Millis, StateError};

#[derive(Debug, Default)]
struct DerivedStep {
    status: &'static str,
    attempt: u32,
    /// The event that set the status (0: none, the step never moved).
    seq: i64,
}

#[derive(Debug)]
struct DerivedWindow {
    kind: String,
    opened_step: String,
    opened_at: Millis,
    closed: Option<(String, Millis)>,
    seq: i64,
}

#[derive(Debug, Default)]
struct DerivedRun {
    status: &'static str,
    status_seq: i64,
    steps: BTreeMap<String, DerivedStep>,
    windows: BTreeMap<i64, DerivedWindow>,
}

impl DerivedRun {
    fn apply(&mut self, e: &Stored) -> Result<(), String> {
        let step = e.step_id.clone().unwrap_or_default();
        // (the run's new status, the step's new status and attempt)
        let (run, step_status): (Option<&'static str>, Option<(&'static str, Option<u32>)>) = match e.kind.as_str() {
            "run.created" => (Some("pending"), None),
            "lease.acquired" | "lease.taken_over" if matches!(self.status, "pending" | "waiting") => {
                (Some("running"), None)
            }
            // A claim given back names the status it left the run in (`Store::give_back`);
            // a release leaves a running run pending.
            "lease.released" => match released_to(e) {
                Some(status) => (Some(status), None),
                None if self.status == "running" => (Some("pending"), None),
                None => (None, None),
            },
            "run.pending" => (Some("pending"), None),
            "run.running" => (Some("running"), None),
            "run.waiting" => (Some("waiting"), None),
            "run.succeeded" => (Some("succeeded"), None),
            "run.failed" => (Some("failed"), None),
            "run.cancelled" => (Some("cancelled"), None),
            "step.started" => (Some("running"), Some(("running", e.attempt))),
            "step.completed" => (None, Some(("completed", None))),
            "step.skipped" => (None, Some(("skipped", None))),
            "step.failed" => (None, Some(("failed", None))),
            "step.retry_scheduled" => (None, Some(("retry_wait", None))),
            "step.retry_requested" => (Some("pending"), Some(("pending", None))),
            "window.opened" | "window.closed" => {
                self.window(e, step)?;
                (None, None)
            }
            _ => (None, None),
        };
        if let Some(status) = run {
            self.status = status;
            self.status_seq = e.seq;
        }
        if let Some((status, attempt)) = step_status {
            let s = self.steps.entry(e.step_id.clone().unwrap_or_default()).or_default();
            s.status = status;
            if let Some(a) = attempt {
                s.attempt = a;
            }
            s.seq = e.seq;
        }
        Ok(())
    }

    fn window(&mut self, e: &Stored, step: String) -> Result<(), String> {
        let data: serde_json::Value =
            serde_json::from_str(&e.data).map_err(|err| format!("event #{} ({}): {err}", e.seq, e.kind))?;
        let id = data["window"]
            .as_i64()
            .ok_or_else(|| format!("event #{} ({}) names no window", e.seq, e.kind))?;
        if e.kind == "window.opened" {
            self.windows.insert(
                id,
                DerivedWindow {
                    kind: data["kind"].as_str().unwrap_or_default().to_owned(),
                    opened_step: step,
                    opened_at: e.at,
                    closed: None,
                    seq: e.seq,
                },
            );
        } else if let Some(w) = self.windows.get_mut(&id) {
            w.closed = Some((step, e.at));
            w.seq = e.seq;
        } else {
            return Err(format!(
                "event #{} (window.closed) closes window {id}, which the trail never opened",
                e.seq
            ));
        }
        Ok(())
    }
}

/// The status a `lease.released` event says it left its run in, if it says.
fn released_to(e: &Stored) -> Option<&'static str> {
    let data: serde_json::Value = serde_json::from_str(&e.data).ok()?;
    match data["status"].as_str()? {
        "pending" => Some("pending"),
        "waiting" => Some("waiting"),
        "running" => Some("running"),
        _ => None,
    }
}

struct RowRun {
    id: String,
    status: String,
}

struct RowStep {
    run_id: String,
    step_id: String,
    status: String,
    attempt: u32,
}

struct RowWindow {
    id: i64,
    run_id: String,
    kind: String,
    opened_step: String,
    opened_at: Millis,
    closed_step: Option<String>,
    closed_at: Option<Millis>,
}

fn fmt_opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "not closed".to_owned(), |v| v.to_string())
}

/// The first run, step or window whose row disagrees with what the trail records (all runs,
/// or only `run`). `events` is the whole verified chain.
pub(crate) fn first_disagreement(
    conn: &dyn Tx,
    events: &[Stored],
    run: Option<&str>,
) -> Result<Option<AuditFailure>, StateError> {
    let mut derived: BTreeMap<&str, DerivedRun> = BTreeMap::new();
    for e in events {
        // Schedule, fleet and store streams are not runs: their rows are not derived from the
        // trail here (a fleet's target rows link runs that are checked as runs).
        if e.run_id.starts_with(SCHEDULE_STREAM)
            || e.run_id.starts_with(FLEET_STREAM)
            || e.run_id == STORE_STREAM
            || run.is_some_and(|r| r != e.run_id)
        {
            continue;
        }
        if let Err(reason) = derived.entry(e.run_id.as_str()).or_default().apply(e) {
            return Ok(Some(AuditFailure {
                run_id: e.run_id.clone(),
                seq: e.seq,
                reason,
            }));
        }
    }
    let runs: Vec<RowRun> = rows(
        conn,
        "SELECT id, status FROM runs WHERE CAST(?1 AS TEXT) IS NULL OR id = ?1 ORDER BY created_at, id",
        run,
        |r| {
            Ok(RowRun {
                id: r.get(0)?,
                status: r.get(1)?,
            })
        },
    )?;
    let steps: Vec<RowStep> = rows(
        conn,
        "SELECT s.run_id, s.step_id, s.status, s.attempt FROM steps s
         WHERE CAST(?1 AS TEXT) IS NULL OR s.run_id = ?1 ORDER BY s.run_id, s.position",
        run,
        |r| {
            Ok(RowStep {
                run_id: r.get(0)?,
                step_id: r.get(1)?,
                status: r.get(2)?,
                attempt: r.get(3)?,
            })
        },
    )?;
    let windows: Vec<RowWindow> = rows(
        conn,
        "SELECT id, run_id, kind, opened_step, opened_at, closed_step, closed_at FROM windows
         WHERE CAST(?1 AS TEXT) IS NULL OR run_id = ?1 ORDER BY id",
        run,
        |r| {
            Ok(RowWindow {
                id: r.get(0)?,
                run_id: r.get(1)?,
                kind: r.get(2)?,
                opened_step: r.get(3)?,
                opened_at: r.get(4)?,
                closed_step: r.get(5)?,
                closed_at: r.get(6)?,
            })
        },
    )?;
    let empty = DerivedRun::default();
    let fail = |run_id: &str, seq: i64, reason: String| {
        Ok(Some(AuditFailure {
            run_id: run_id.to_owned(),
            seq,
            reason,
        }))
    };
    for r in &runs {
        let d = derived.get(r.id.as_str()).unwrap_or(&empty);
        if d.status != r.status {
            return fail(
                &r.id,
                d.status_seq,
                format!(
                    "the run's row says `{}`, the trail says `{}`: the row was changed outside fogbook",
                    r.status,
                    if d.status.is_empty() { "no run" } else { d.status }
                ),
            );
        }
        for s in steps.iter().filter(|s| s.run_id == r.id) {
            let pending = DerivedStep {
                status: "pending",
                ..DerivedStep::default()
            };
            let ds = d.steps.get(&s.step_id).unwrap_or(&pending);
            if ds.status != s.status || ds.attempt != s.attempt {
                return fail(
                    &r.id,
                    ds.seq,
                    format!(
                        "step `{}`: its row says `{}` (attempt {}), the trail says `{}` (attempt {}): the row was changed outside fogbook",
                        s.step_id, s.status, s.attempt, ds.status, ds.attempt
                    ),
                );
            }
        }
        if let Some(missing) = d
            .steps
            .keys()
            .find(|k| !steps.iter().any(|s| s.run_id == r.id && &s.step_id == *k))
        {
            return fail(
                &r.id,
                d.steps[missing].seq,
                format!("step `{missing}` is in the trail but has no row: the row was deleted outside fogbook"),
            );
        }
        let rows_here: Vec<&RowWindow> = windows.iter().filter(|w| w.run_id == r.id).collect();
        for w in &rows_here {
            let Some(dw) = d.windows.get(&w.id) else {
                return fail(
                    &r.id,
                    0,
                    format!("window {} ({}) has a row but the trail never opened it", w.id, w.kind),
                );
            };
            let row_closed = w.closed_step.clone().zip(w.closed_at);
            if dw.kind != w.kind
                || dw.opened_step != w.opened_step
                || dw.opened_at != w.opened_at
                || dw.closed != row_closed
            {
                return fail(
                    &r.id,
                    dw.seq,
                    format!(
                        "window {} ({}): its row says opened by `{}` at {}, closed {}; the trail says opened by `{}` at {}, closed {}: the row was changed outside fogbook",
                        w.id,
                        w.kind,
                        w.opened_step,
                        w.opened_at,
                        fmt_opt(row_closed.as_ref().map(|(s, at)| format!("by `{s}` at {at}"))),
                        dw.opened_step,
                        dw.opened_at,
                        fmt_opt(dw.closed.as_ref().map(|(s, at)| format!("by `{s}` at {at}"))),
                    ),
                );
            }
        }
        if let Some((id, dw)) = d.windows.iter().find(|(id, _)| !rows_here.iter().any(|w| w.id == **id)) {
            return fail(
                &r.id,
                dw.seq,
                format!(
                    "window {id} ({}) is in the trail but has no row: the row was deleted outside fogbook",
                    dw.kind
                ),
            );
        }
    }
    Ok(None)
}

fn rows<T>(
    conn: &dyn Tx,
    sql: &str,
    run: Option<&str>,
    f: impl FnMut(&Row) -> sql::Result<T>,
) -> Result<Vec<T>, StateError> {
    conn.query_map(sql, params![run], f)
        .during("reading rows to compare with the trail")
}
