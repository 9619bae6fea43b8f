//! Operator actions on a run: cancel (and reject an approval), close a window the operator
//! knows has closed, skip a step, mark a step done with a given output.
//!
//! Each is one transaction that changes the rows and appends one event saying who asked,
//! why, and what changed, so `audit verify` can derive the rows from the trail (`agree.rs`).

use serde::Serialize;
use serde_json::json;

use crate::audit::{self, NewEvent};
use crate::error::SqlContext;
use crate::sql::{OptionalExt, params};
use crate::store::{finished_word, load_run_row, load_step_row, set_status};
use crate::{Millis, RunStatus, StateError, Store, format_ms};

/// Who asks for an operator action, how that name was found, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Actor {
    /// The name recorded in the audit trail.
    pub name: String,
    /// Where the name came from: `--by`, `FOGBOOK_USER`, or `os user`.
    pub source: String,
    /// The reason the operator gave, if any.
    pub reason: Option<String>,
}

impl Actor {
    /// The fields every operator event carries.
    pub fn record(&self) -> serde_json::Value {
        json!({ "by": self.name, "by_source": self.source, "reason": self.reason })
    }
}

/// What a cancel ends: the run, or the run because its approval was rejected.
#[derive(Clone, Debug)]
pub enum CancelKind {
    /// `fogbook cancel`.
    Cancel,
    /// `fogbook reject RUN STEP`: the approval step `step` was rejected.
    Reject {
        /// The approval step.
        step: String,
    },
}

fn refuse(message: String) -> StateError {
    StateError::InvalidTransition { message }
}

impl Store {
    /// Cancels a run (or ends it because an approval was rejected). `abandoned` records what
    /// a forced cancel leaves behind (operations in flight, windows left open). When nobody
    /// drives the run (no lease, an expired one, or `dead_owner`'s) it ends at once and its
    /// locks are released; otherwise its driver is asked to stop at its next safe point and
    /// ends it with this same record. Returns whether the run is over now.
    pub async fn operator_cancel(
        &self,
        run_id: &str,
        actor: &Actor,
        kind: CancelKind,
        abandoned: serde_json::Value,
        dead_owner: Option<String>,
        now: Millis,
    ) -> Result<bool, StateError> {
        let run_id = run_id.to_owned();
        let mut record = actor.record();
        record["cancelled_by"] = json!(actor.name);
        if !abandoned.is_null() {
            record["abandoned"] = abandoned;
        }
        if let CancelKind::Reject { step } = &kind {
            record["rejected_step"] = json!(step);
        }
        let step_record = actor.record();
        self.write(move |tx| {
            let run = load_run_row(tx, &run_id)?;
            if matches!(run.status, RunStatus::Succeeded | RunStatus::Cancelled) {
                return Err(refuse(format!("run {run_id} has already {}", finished_word(run.status))));
            }
            if let CancelKind::Reject { step } = &kind {
                let row = load_step_row(tx, &run_id, step)?;
                if run.status == RunStatus::Failed {
                    return Err(refuse(format!(
                        "run {run_id} has failed, so step `{step}` is no longer a pending approval to reject; to end the run: fogbook cancel {run_id}"
                    )));
                }
                if row.status.is_done() {
                    return Err(refuse(format!(
                        "step `{step}` of run {run_id} is {}; there is no pending approval to reject",
                        row.status
                    )));
                }
                let approved: Option<String> = tx
                    .query_row(
                        "SELECT by FROM approvals WHERE run_id = ?1 AND step_id = ?2",
                        params![run_id, step],
                        |r| r.get(0),
                    )
                    .optional()
                    .during("reading approvals")?;
                if let Some(who) = approved {
                    return Err(refuse(format!(
                        "step `{step}` of run {run_id} was already approved by {who}; to stop the run: fogbook cancel {run_id}"
                    )));
                }
                audit::append(
                    tx,
                    &run_id,
                    now,
                    NewEvent::step("step.rejected", step, None, step_record),
                )?;
            }
            let driven = match (&run.lease_owner, run.lease_expires_at) {
                (Some(owner), Some(exp)) => exp > tx.lease_now(now).during("reading the database's clock")? && dead_owner.as_deref() != Some(owner.as_str()),
                _ => false,
            };
            if driven {
                tx.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?1", params![&run_id])
                    .during("requesting cancellation")?;
                audit::append(tx, &run_id, now, NewEvent::run("run.cancel_requested", record))?;
                return Ok(false);
            }
            tx.execute(
                "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ?1",
                params![&run_id],
            )
            .during("cancelling")?;
            set_status(tx, &run_id, RunStatus::Cancelled, Some(record), now)?;
            Ok(true)
        })
        .await
    }

    /// Closes an open window the operator knows has closed (the run must be finished or
    /// not driven: a driver closes its own windows).
    pub async fn operator_close_window(
        &self,
        run_id: &str,
        window_id: i64,
        actor: &Actor,
        now: Millis,
    ) -> Result<String, StateError> {
        let run_id = run_id.to_owned();
        let data = actor.record();
        self.write(move |tx| {
            let run = load_run_row(tx, &run_id)?;
            let lease_now = tx.lease_now(now).during("reading the database's clock")?;
            if run.lease_expires_at.is_some_and(|exp| exp > lease_now) && run.lease_owner.is_some() {
                return Err(refuse(format!(
                    "run {run_id} is being driven by {}; its driver closes its windows",
                    run.lease_owner.unwrap_or_default()
                )));
            }
            let row: Option<(String, Millis, Option<Millis>)> = tx
                .query_row(
                    "SELECT kind, opened_at, closed_at FROM windows WHERE run_id = ?1 AND id = ?2",
                    params![run_id, window_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .during("reading windows")?;
            let Some((kind, opened_at, closed_at)) = row else {
                return Err(refuse(format!("run {run_id} has no window {window_id}")));
            };
            if let Some(at) = closed_at {
                return Err(refuse(format!(
                    "window {window_id} ({kind}) of run {run_id} was already closed at {}",
                    format_ms(at)
                )));
            }
            let closed_at = now.max(opened_at);
            tx.execute(
                "UPDATE windows SET closed_step = ?3, closed_at = ?4 WHERE run_id = ?1 AND id = ?2",
                params![run_id, window_id, OPERATOR_STEP, closed_at],
            )
            .during("closing a window")?;
            let mut data = data;
            data["window"] = json!(window_id);
            data["kind"] = json!(kind);
            audit::append(
                tx,
                &run_id,
                closed_at,
                NewEvent::step("window.closed", OPERATOR_STEP, None, data),
            )?;
            Ok(kind)
        })
        .await
    }

    /// Marks a step that is not done as skipped (`output: None`) or completed with the
    /// output the operator supplies. A failed run becomes pending again, so `resume`
    /// continues after the step. Refused while a process drives the run.
    pub async fn operator_finish_step(
        &self,
        run_id: &str,
        step_id: &str,
        output: Option<serde_json::Value>,
        actor: &Actor,
        now: Millis,
    ) -> Result<(), StateError> {
        let (run_id, step_id) = (run_id.to_owned(), step_id.to_owned());
        let record = actor.record();
        self.write(move |tx| {
            let run = load_run_row(tx, &run_id)?;
            if matches!(run.status, RunStatus::Succeeded | RunStatus::Cancelled) {
                return Err(refuse(format!("run {run_id} has already {}", finished_word(run.status))));
            }
            // Live or not by the clock leases are decided by (the database's on PostgreSQL).
            if let (Some(owner), Some(exp)) = (&run.lease_owner, run.lease_expires_at)
                && exp > tx.lease_now(now).during("reading the database's clock")?
            {
                return Err(refuse(format!(
                    "run {run_id} is being driven by {owner}; stop that process first (Ctrl-C in its terminal, or SIGTERM: it stops at a safe point), or wait until the run fails or waits"
                )));
            }
            let step = load_step_row(tx, &run_id, &step_id)?;
            if step.status.is_done() && step.status != crate::StepStatus::Failed {
                return Err(refuse(format!("step `{step_id}` of run {run_id} is already {}", step.status)));
            }
            let (kind, mut data) = match &output {
                Some(out) => {
                    tx.execute(
                        "UPDATE steps SET status = 'completed', output = ?3, error = NULL, finished_at = ?4,
                                next_attempt_at = NULL
                         WHERE run_id = ?1 AND step_id = ?2",
                        params![run_id, step_id, out.to_string(), now],
                    )
                    .during("completing a step")?;
                    let mut d = record.clone();
                    d["output"] = out.clone();
                    ("step.completed", d)
                }
                None => {
                    tx.execute(
                        "UPDATE steps SET status = 'skipped', finished_at = ?3, next_attempt_at = NULL
                         WHERE run_id = ?1 AND step_id = ?2",
                        params![run_id, step_id, now],
                    )
                    .during("skipping a step")?;
                    ("step.skipped", record.clone())
                }
            };
            data["operator"] = json!(true);
            data["was"] = json!(step.status.as_str());
            audit::append(tx, &run_id, now, NewEvent::step(kind, &step_id, None, data))?;
            if run.status == RunStatus::Failed {
                tx.execute(
                    "UPDATE runs SET status = 'pending', error = NULL, finished_at = NULL, updated_at = ?2 WHERE id = ?1",
                    params![run_id, now],
                )
                .during("re-opening the run")?;
                let mut d = record;
                d["after"] = json!(kind);
                audit::append(tx, &run_id, now, NewEvent::run("run.pending", d))?;
            }
            Ok(())
        })
        .await
    }
}

/// A new runbook text for a run (`fogbook repin`): the command checked that every step that
/// started keeps its id, activity and inputs.
#[derive(Clone, Debug)]
pub struct NewPin {
    /// The new text.
    pub text: String,
    /// Its sha256.
    pub sha256: String,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: u32,
    /// Its step ids, in order.
    pub steps: Vec<String>,
}

impl Store {
    /// Re-pins a stopped run to a new runbook text. Steps that never started and are not in
    /// the new text are dropped; new ones are added as pending; a step that started must be
    /// in the new text (refused otherwise, naming it). Refused while a process drives it.
    pub async fn operator_repin(
        &self,
        run_id: &str,
        pin: NewPin,
        actor: &Actor,
        now: Millis,
    ) -> Result<(), StateError> {
        let run_id = run_id.to_owned();
        let mut data = actor.record();
        self.write(move |tx| {
            let run = load_run_row(tx, &run_id)?;
            if matches!(run.status, RunStatus::Succeeded | RunStatus::Cancelled) {
                return Err(refuse(format!("run {run_id} has already {}", finished_word(run.status))));
            }
            // Live or not by the clock leases are decided by (the database's on PostgreSQL).
            if let (Some(owner), Some(exp)) = (&run.lease_owner, run.lease_expires_at)
                && exp > tx.lease_now(now).during("reading the database's clock")?
            {
                return Err(refuse(format!(
                    "run {run_id} is being driven by {owner}; stop that process first (Ctrl-C in its terminal, or SIGTERM: it stops at a safe point), or wait until the run fails or waits"
                )));
            }
            let rows: Vec<(String, String)> = {
                tx.query_map("SELECT step_id, status FROM steps WHERE run_id = ?1 ORDER BY position", params![&run_id], |r| Ok((r.get(0)?, r.get(1)?))).during("reading steps")?
            };
            if let Some((id, status)) = rows
                .iter()
                .find(|(id, status)| status != "pending" && !pin.steps.contains(id))
            {
                return Err(refuse(format!(
                    "step `{id}` of run {run_id} is {status} and the new runbook has no such step; a step that started must stay"
                )));
            }
            let removed: Vec<&String> = rows
                .iter()
                .filter(|(id, _)| !pin.steps.contains(id))
                .map(|(id, _)| id)
                .collect();
            for id in &removed {
                tx.execute("DELETE FROM steps WHERE run_id = ?1 AND step_id = ?2", params![run_id, id])
                    .during("dropping a step that never started")?;
            }
            let mut added = Vec::new();
            // Positions past the existing ones first, so renumbering never collides.
            let offset = i64::try_from(rows.len() + pin.steps.len()).unwrap_or(i64::MAX / 2);
            for (position, id) in pin.steps.iter().enumerate() {
                let position = i64::try_from(position).unwrap_or(0);
                if rows.iter().any(|(r, _)| r == id) {
                    tx.execute(
                        "UPDATE steps SET position = ?3 WHERE run_id = ?1 AND step_id = ?2",
                        params![run_id, id, offset + position],
                    )
                    .during("ordering the steps")?;
                } else {
                    tx.execute(
                        "INSERT INTO steps (run_id, step_id, position, status) VALUES (?1, ?2, ?3, 'pending')",
                        params![run_id, id, offset + position],
                    )
                    .during("adding a step")?;
                    added.push(id.clone());
                }
            }
            tx.execute(
                "UPDATE steps SET position = position - ?2 WHERE run_id = ?1",
                params![run_id, offset],
            )
            .during("ordering the steps")?;
            tx.execute(
                "INSERT INTO runbook_texts (sha256, text) VALUES (?1, ?2) ON CONFLICT (sha256) DO NOTHING",
                params![pin.sha256, pin.text],
            )
            .during("pinning the runbook text")?;
            tx.execute(
                "UPDATE runs SET runbook_sha256 = ?2, runbook_name = ?3, runbook_version = ?4, updated_at = ?5 WHERE id = ?1",
                params![run_id, pin.sha256, pin.name, pin.version, now],
            )
            .during("re-pinning the runbook")?;
            data["from_sha256"] = json!(run.runbook_sha256);
            data["to_sha256"] = json!(pin.sha256);
            data["runbook"] = json!(pin.name);
            data["version"] = json!(pin.version);
            data["added_steps"] = json!(added);
            data["removed_steps"] = json!(removed);
            audit::append(tx, &run_id, now, NewEvent::run("run.repinned", data))?;
            Ok(())
        })
        .await
    }
}

impl Store {
    /// Re-opens `steps` (in runbook order, from the step the operator named) so the run
    /// re-runs from there. Each keeps its attempts and saved progress, so an activity that
    /// saved an intent or an operation reads back what happened instead of repeating it.
    /// Refused while a process drives the run or a step in the range is running.
    pub async fn operator_retry_from(
        &self,
        run_id: &str,
        steps: Vec<String>,
        actor: &Actor,
        now: Millis,
    ) -> Result<(), StateError> {
        let run_id = run_id.to_owned();
        let mut record = actor.record();
        record["from"] = json!(steps.first());
        self.write(move |tx| {
            let run = load_run_row(tx, &run_id)?;
            if matches!(run.status, RunStatus::Succeeded | RunStatus::Cancelled) {
                return Err(refuse(format!(
                    "run {run_id} has already {}",
                    finished_word(run.status)
                )));
            }
            // Live or not by the clock leases are decided by (the database's on PostgreSQL).
            if let (Some(owner), Some(exp)) = (&run.lease_owner, run.lease_expires_at)
                && exp > tx.lease_now(now).during("reading the database's clock")?
            {
                return Err(refuse(format!(
                    "run {run_id} is being driven by {owner}; stop that process first (Ctrl-C in its terminal, or SIGTERM: it stops at a safe point), or wait until the run fails or waits"
                )));
            }
            for id in &steps {
                let row = load_step_row(tx, &run_id, id)?;
                if matches!(row.status, crate::StepStatus::Running | crate::StepStatus::RetryWait) {
                    return Err(refuse(format!(
                        "step `{id}` of run {run_id} is {}: resume the run to finish it first",
                        row.status
                    )));
                }
            }
            for id in &steps {
                let row = load_step_row(tx, &run_id, id)?;
                if row.status == crate::StepStatus::Pending {
                    continue;
                }
                tx.execute(
                    "UPDATE steps SET status = 'pending', next_attempt_at = NULL, finished_at = NULL
                     WHERE run_id = ?1 AND step_id = ?2",
                    params![run_id, id],
                )
                .during("re-opening a step")?;
                let mut d = record.clone();
                d["was"] = json!(row.status.as_str());
                audit::append(tx, &run_id, now, NewEvent::step("step.retry_requested", id, None, d))?;
            }
            tx.execute(
                "UPDATE runs SET status = 'pending', error = NULL, finished_at = NULL, updated_at = ?2 WHERE id = ?1",
                params![run_id, now],
            )
            .during("re-opening the run")?;
            if run.status != RunStatus::Pending {
                audit::append(tx, &run_id, now, NewEvent::run("run.pending", record))?;
            }
            Ok(())
        })
        .await
    }
}

/// The `closed_step` of a window an operator closed.
pub const OPERATOR_STEP: &str = "(operator)";
