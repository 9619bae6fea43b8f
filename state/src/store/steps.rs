//! Step transitions: starts, progress, ends and the run status they lead to.

use serde_json::json;

use super::Store;
use super::lease::check_lease_counting;
use super::windows::{close_window, open_window};
use crate::audit::{self, NewEvent};
use crate::error::SqlContext;
use crate::sql::{Keys, OptionalExt, Tx, params};
use crate::{Millis, RunStatus, StateError, StepFinish, StepOutcome, StepStart, format_ms};

impl Store {
    /// Commits the start of an attempt (and the windows it opens) before its effect runs.
    pub async fn start_step(&self, run_id: &str, owner: &str, start: StepStart) -> Result<(), StateError> {
        self.advance(run_id, owner, Vec::new(), Some(start)).await
    }

    /// Commits progress saved by a running activity (a polling URL, an intent, a phase).
    pub async fn save_progress(
        &self,
        run_id: &str,
        owner: &str,
        step_id: &str,
        attempt: u32,
        progress: serde_json::Value,
        now: Millis,
    ) -> Result<(), StateError> {
        let (run_id, owner, step_id) = (run_id.to_owned(), owner.to_owned(), step_id.to_owned());
        let (named, named_step) = (run_id.clone(), step_id.clone());
        let held = self.held_epoch(&run_id, &owner);
        let keys = Keys::run(&run_id, [step_id.clone()]);
        self.write_keyed(keys, move |tx| {
            let (_, count, _) = check_lease_counting(tx, &run_id, &owner, held, now)?;
            let running = tx.prefetched_step(&run_id, &step_id).map(|s| s.status == "running");
            let changed = execute_step(
                tx,
                running,
                "UPDATE steps SET progress = ?3 WHERE run_id = ?1 AND step_id = ?2 AND status = 'running'",
                params![run_id, step_id, progress.to_string()],
            )
            .during("saving step progress")?;
            if changed == 0 {
                return Err(StateError::InvalidTransition {
                    message: format!("step `{step_id}` is not running; its progress cannot change"),
                });
            }
            audit::append_counted(
                tx,
                &run_id,
                [(now, NewEvent::step("step.progress", &step_id, Some(attempt), progress))],
                count,
            )
        })
        .await
        .map_err(|e| e.naming(&named, || format!("the progress of step `{named_step}`")))
    }

    /// Commits the end of an attempt: the step's new status and output, the windows it
    /// closes and the run's next status, in one transaction.
    pub async fn finish_step(&self, run_id: &str, owner: &str, finish: StepFinish) -> Result<(), StateError> {
        self.advance(run_id, owner, vec![finish], None).await
    }

    /// Moves a run forward in one transaction: the ends of `finished` attempts (in order),
    /// then the start of the next attempt. This is how a run goes from one step to the next
    /// with one durable commit: the completion of a step and the start of the next are one
    /// transition, committed before the next step's effect runs.
    ///
    /// A cancellation requested by an operator refuses the start with
    /// [`StateError::CancelRequested`], but the ends of `finished` are still committed: they
    /// record effects that already happened.
    pub async fn advance(
        &self,
        run_id: &str,
        owner: &str,
        finished: Vec<StepFinish>,
        start: Option<StepStart>,
    ) -> Result<(), StateError> {
        let what = transition(&finished, start.as_ref());
        let (run_id, owner) = (run_id.to_owned(), owner.to_owned());
        let named = run_id.clone();
        let held = self.held_epoch(&run_id, &owner);
        let steps = finished
            .iter()
            .map(|f| f.step_id.clone())
            .chain(start.as_ref().map(|s| s.step_id.clone()));
        let keys = Keys::run(&run_id, steps);
        // Its refusals (lease, an attempt already ended) come before its first change.
        self.write_refusing_first(Some(keys), move |tx| {
            let now = start
                .as_ref()
                .map(|s| s.now)
                .or(finished.last().map(|f| f.now))
                .unwrap_or(0);
            let (cancel, count, running) = check_lease_counting(tx, &run_id, &owner, held, now)?;
            // The run's audit count as read with the lease, while nothing was appended since.
            let mut count = Some(count);
            let mut events = Vec::new();
            let mut status_set = false;
            for finish in &finished {
                status_set = apply_finish(tx, &run_id, finish, &mut events)?;
                if status_set {
                    count = None;
                }
            }
            let refusal = match &start {
                None => None,
                Some(_) if cancel => Some(StateError::CancelRequested { run_id: run_id.clone() }),
                Some(start) => {
                    if try_start(tx, &run_id, start)? {
                        None
                    } else {
                        match done_in_trail(tx, &run_id, &start.step_id)? {
                            // The trail records the step as done while its row says it may
                            // run (a row edited outside fogbook): refused, naming both.
                            Some(recorded) => match disagreement(tx, &run_id, &start.step_id, &recorded)? {
                                Some(refusal) => Some(refusal),
                                None => {
                                    return Err(refuse_done(tx, &run_id, &start.step_id, "; it is never run again")?);
                                }
                            },
                            None => return Err(refuse_done(tx, &run_id, &start.step_id, "; it is never run again")?),
                        }
                    }
                }
            };
            let start = match (&start, refusal) {
                (Some(start), None) => start,
                // Only the ends: there is no start, or it is refused. The ends are still
                // committed: they record effects that already happened.
                (_, refusal) => {
                    if status_set {
                        audit::append_all(tx, &run_id, events)?;
                    } else {
                        audit::append_and_touch(tx, &run_id, events, None, now, count)?;
                    }
                    return Ok(match refusal {
                        Some(e) => Err(e),
                        None => Ok(()),
                    });
                }
            };
            events.push((
                start.now,
                NewEvent::step(
                    "step.started",
                    &start.step_id,
                    Some(start.attempt),
                    json!({ "input": start.input, "deadline_at": start.deadline_at.map(format_ms) }),
                ),
            ));
            for kind in &start.opens {
                open_window(
                    tx,
                    &run_id,
                    *kind,
                    &start.step_id,
                    start.subject.as_deref(),
                    start.now,
                    &mut events,
                )?;
            }
            // An unchanged status is not written again: it is indexed (twice).
            let status = (!running || status_set).then_some(RunStatus::Running.as_str());
            audit::append_and_touch(tx, &run_id, events, status, start.now, count)?;
            Ok(Ok(()))
        })
        .await
        .map_err(|e| e.naming(&named, || what))?
    }

    /// Changes the run's status (succeeded, waiting, failed) as its driver.
    pub async fn set_run_status(
        &self,
        run_id: &str,
        owner: &str,
        status: RunStatus,
        error: Option<serde_json::Value>,
        now: Millis,
    ) -> Result<(), StateError> {
        let (run_id, owner) = (run_id.to_owned(), owner.to_owned());
        let named = run_id.clone();
        let held = self.held_epoch(&run_id, &owner);
        self.write_keyed(Keys::run(&run_id, []), move |tx| {
            let (_, count, _) = check_lease_counting(tx, &run_id, &owner, held, now)?;
            set_status_counted(tx, &run_id, status, error, now, Some(count))
        })
        .await
        .map_err(|e| e.naming(&named, || format!("the change of its status to {status}")))
    }

    /// Appends an event that changes no other state (credential used, runbook file changed,
    /// a window limit exceeded, a notification delivered).
    pub async fn record_event(
        &self,
        run_id: &str,
        kind: &'static str,
        step_id: Option<String>,
        data: serde_json::Value,
        now: Millis,
    ) -> Result<(), StateError> {
        let run_id = run_id.to_owned();
        self.write(move |tx| {
            // Re-entering a step is a start: a step the trail records as done is refused.
            if kind == "step.reentered"
                && let Some(sid) = step_id.as_deref()
                && let Some(recorded) = done_in_trail(tx, &run_id, sid)?
                && let Some(refusal) = disagreement(tx, &run_id, sid, &recorded)?
            {
                return Err(refusal);
            }
            let ev = NewEvent {
                kind,
                step_id: step_id.as_deref(),
                attempt: None,
                data,
            };
            audit::append(tx, &run_id, now, ev)
        })
        .await
    }
}

pub(crate) fn finished_word(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed (use `resume --retry-failed` or `cancel`)",
        RunStatus::Cancelled => "been cancelled",
        _ => "finished",
    }
}

pub(crate) fn set_status(
    tx: &dyn Tx,
    run_id: &str,
    status: RunStatus,
    error: Option<serde_json::Value>,
    now: Millis,
) -> Result<(), StateError> {
    set_status_counted(tx, run_id, status, error, now, None)
}

/// [`set_status`], given the run's audit count when the caller read it in this write
/// before anything was appended (`None`: read it).
fn set_status_counted(
    tx: &dyn Tx,
    run_id: &str,
    status: RunStatus,
    error: Option<serde_json::Value>,
    now: Millis,
    count: Option<i64>,
) -> Result<(), StateError> {
    let finished = status.is_terminal().then_some(now);
    tx.execute_later(
        "UPDATE runs SET status = ?2, error = ?3, updated_at = ?4, finished_at = ?5,
                cancel_requested = CASE WHEN ?6 THEN 0 ELSE cancel_requested END
         WHERE id = ?1",
        params![
            run_id,
            status.as_str(),
            error.as_ref().map(|e| e.to_string()),
            now,
            finished,
            status.is_terminal()
        ],
    )
    .during("changing the run status")?;
    // A failed run keeps its locks: the resources are half-way through a procedure and no
    // other run should touch them until an operator retries or cancels this one.
    if matches!(status, RunStatus::Succeeded | RunStatus::Cancelled) {
        tx.execute_later("DELETE FROM locks WHERE run_id = ?1", params![run_id])
            .during("releasing resource locks")?;
    }
    let kind = match status {
        RunStatus::Pending => "run.pending",
        RunStatus::Running => "run.running",
        RunStatus::Waiting => "run.waiting",
        RunStatus::Succeeded => "run.succeeded",
        RunStatus::Failed => "run.failed",
        RunStatus::Cancelled => "run.cancelled",
    };
    let event = NewEvent::run(kind, error.unwrap_or(serde_json::Value::Null));
    match count {
        Some(count) => audit::append_counted(tx, run_id, [(now, event)], count),
        None => audit::append(tx, run_id, now, event),
    }
}

/// The events of one transition, appended together at its end.
pub(super) type Events<'a> = Vec<(Millis, NewEvent<'a>)>;

/// Applies the end of an attempt; returns whether it set the run's status.
pub(super) fn apply_finish<'a>(
    tx: &dyn Tx,
    run_id: &str,
    finish: &'a StepFinish,
    events: &mut Events<'a>,
) -> Result<bool, StateError> {
    let sid = finish.step_id.as_str();
    let attempt = Some(finish.attempt);
    let now = finish.now;
    // Whether the step's row may still change, when it was read ahead.
    let open = tx.prefetched_step(run_id, sid).map(|s| s.open());
    let changed = match &finish.outcome {
        StepOutcome::Completed { output } => {
            let changed = execute_step(
                tx,
                open,
                "UPDATE steps SET status = 'completed', output = ?3, error = NULL, finished_at = ?4,
                        next_attempt_at = NULL
                 WHERE run_id = ?1 AND step_id = ?2 AND status NOT IN ('completed', 'skipped', 'failed')",
                params![run_id, sid, output.to_string(), now],
            )
            .during("completing a step")?;
            if changed > 0 {
                events.push((
                    now,
                    NewEvent::step("step.completed", sid, attempt, json!({ "output": output })),
                ));
                for kind in &finish.closes {
                    close_window(tx, run_id, *kind, sid, now, events)?;
                }
            }
            changed
        }
        StepOutcome::Skipped { reason } => {
            let changed = execute_step(
                tx,
                open,
                "UPDATE steps SET status = 'skipped', finished_at = ?3
                 WHERE run_id = ?1 AND step_id = ?2 AND status NOT IN ('completed', 'skipped', 'failed')",
                params![run_id, sid, now],
            )
            .during("skipping a step")?;
            events.push((
                now,
                NewEvent::step("step.skipped", sid, None, json!({ "when": reason })),
            ));
            changed
        }
        StepOutcome::RetryScheduled { error, next_attempt_at } => {
            let changed = execute_step(
                tx,
                open,
                "UPDATE steps SET status = 'retry_wait', error = ?3, next_attempt_at = ?4
                 WHERE run_id = ?1 AND step_id = ?2 AND status NOT IN ('completed', 'skipped', 'failed')",
                params![run_id, sid, error.to_string(), next_attempt_at],
            )
            .during("scheduling a retry")?;
            events.push((
                now,
                NewEvent::step(
                    "step.retry_scheduled",
                    sid,
                    attempt,
                    json!({ "error": error, "next_attempt_at": format_ms(*next_attempt_at) }),
                ),
            ));
            changed
        }
        StepOutcome::Failed { error, run_continues } => {
            let changed = execute_step(
                tx,
                open,
                "UPDATE steps SET status = 'failed', error = ?3, finished_at = ?4
                 WHERE run_id = ?1 AND step_id = ?2 AND status NOT IN ('completed', 'skipped', 'failed')",
                params![run_id, sid, error.to_string(), now],
            )
            .during("failing a step")?;
            events.push((
                now,
                NewEvent::step(
                    "step.failed",
                    sid,
                    attempt,
                    json!({ "error": error, "run_continues": run_continues }),
                ),
            ));
            changed
        }
    };
    if changed == 0 {
        return Err(refuse_done(tx, run_id, sid, "")?);
    }
    let Some(status) = finish.run_status else {
        return Ok(false);
    };
    let error = match &finish.outcome {
        StepOutcome::Failed { error, .. } if status == RunStatus::Failed => {
            Some(json!({ "step": sid, "error": error }))
        }
        _ => None,
    };
    // The run's own event follows the step's: append what is queued first.
    audit::append_all(tx, run_id, events.drain(..))?;
    set_status(tx, run_id, status, error, now)?;
    Ok(true)
}

/// Marks the start of an attempt in the step's row, unless the step is done: by its row, or
/// by the trail (a step whose completion is in the trail never runs again, whatever its row
/// says; `step.retry_requested`, written by `retry-from`, re-opens it). Returns whether the
/// step was started; when not, the caller finds out why.
fn try_start(tx: &dyn Tx, run_id: &str, start: &StepStart) -> Result<bool, StateError> {
    let may_start = tx.prefetched_step(run_id, &start.step_id).map(|s| s.may_start());
    let changed = execute_step(
        tx,
        may_start,
        "UPDATE steps SET status = 'running', attempt = ?3, input = ?4, started_at = ?5,
                    first_started_at = COALESCE(first_started_at, ?5), deadline_at = ?6,
                    next_attempt_at = NULL, progress = CASE WHEN ?7 THEN progress ELSE NULL END
             WHERE run_id = ?1 AND step_id = ?2 AND status NOT IN ('completed', 'skipped', 'failed')
               AND COALESCE((SELECT kind FROM events WHERE run_id = ?1 AND step_id = ?2
                                 AND kind IN ('step.completed', 'step.skipped', 'step.retry_requested')
                             ORDER BY seq DESC LIMIT 1), 'step.retry_requested') = 'step.retry_requested'",
        params![
            run_id,
            start.step_id,
            start.attempt,
            start.input.to_string(),
            start.now,
            start.deadline_at,
            start.keep_progress
        ],
    )
    .during("starting a step")?;
    Ok(changed > 0)
}

/// Runs `sql`, an update of one step's row guarded by that row's (and the trail's) state,
/// and returns how many rows it changed. When the step was read ahead
/// ([`Tx::prefetched_step`]), `ahead` says whether the guard holds: the statement is then
/// queued ([`Tx::execute_later`]: no round trip), or not sent at all when it would change
/// nothing.
fn execute_step(
    tx: &dyn Tx,
    ahead: Option<bool>,
    sql: &str,
    params: &[crate::sql::Value],
) -> crate::sql::Result<usize> {
    match ahead {
        Some(true) => tx.execute_later(sql, params).map(|()| 1),
        Some(false) => Ok(0),
        None => tx.execute(sql, params),
    }
}

/// The kind of the event (`step.completed` or `step.skipped`) that records `step_id` of
/// `run_id` as done, if the trail holds one that no later operator re-opening
/// (`step.retry_requested`, written by `retry-from`) undid.
fn done_in_trail(conn: &dyn Tx, run_id: &str, step_id: &str) -> Result<Option<String>, StateError> {
    let last: Option<String> = conn
        .query_row(
            "SELECT kind FROM events WHERE run_id = ?1 AND step_id = ?2
                 AND kind IN ('step.completed', 'step.skipped', 'step.retry_requested')
             ORDER BY seq DESC LIMIT 1",
            params![run_id, step_id],
            |r| r.get(0),
        )
        .optional()
        .during("reading the audit trail")?;
    Ok(last.filter(|k| k != "step.retry_requested"))
}

/// The error for a transition of a step that is already done (or does not exist).
pub(super) fn refuse_done(tx: &dyn Tx, run_id: &str, step_id: &str, tail: &str) -> Result<StateError, StateError> {
    let status: Option<String> = tx
        .query_row(
            "SELECT status FROM steps WHERE run_id = ?1 AND step_id = ?2",
            params![run_id, step_id],
            |r| r.get(0),
        )
        .optional()
        .during("reading a step")?;
    Ok(match status {
        None => StateError::UnknownStep {
            run_id: run_id.to_owned(),
            step_id: step_id.to_owned(),
        },
        Some(status) => StateError::InvalidTransition {
            message: format!("step `{step_id}` is already {status}{tail}"),
        },
    })
}

/// Names a transition for an error: "the end of step `a` and the start of step `b`".
pub(super) fn transition(finished: &[StepFinish], start: Option<&StepStart>) -> String {
    let ends: Vec<String> = finished.iter().map(|f| format!("`{}`", f.step_id)).collect();
    let ends = match ends.as_slice() {
        [] => None,
        [one] => Some(format!("the end of step {one}")),
        many => Some(format!("the ends of steps {}", many.join(", "))),
    };
    let start = start.map(|s| format!("the start of step `{}`", s.step_id));
    match (ends, start) {
        (Some(e), Some(s)) => format!("{e} and {s}"),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => "a transition".to_owned(),
    }
}

/// The refusal of a step whose row says it may run while the trail records it as done
/// (`None` when the row agrees that the step is done: the usual refusal applies).
pub(super) fn disagreement(
    tx: &dyn Tx,
    run_id: &str,
    step_id: &str,
    recorded: &str,
) -> Result<Option<StateError>, StateError> {
    let row: Option<String> = tx
        .query_row(
            "SELECT status FROM steps WHERE run_id = ?1 AND step_id = ?2",
            params![run_id, step_id],
            |r| r.get(0),
        )
        .optional()
        .during("reading a step")?;
    if matches!(row.as_deref(), Some("completed" | "skipped" | "failed")) {
        return Ok(None);
    }
    Ok(Some(StateError::TrailDisagrees {
        run_id: run_id.to_owned(),
        step_id: step_id.to_owned(),
        row: row.unwrap_or_else(|| "missing".to_owned()),
        recorded: recorded.to_owned(),
    }))
}
