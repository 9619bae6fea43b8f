//! Operator actions on a run: approvals, cancel, retry of a failed run.

use serde_json::json;

use super::Store;
use super::rows::{approval_row, load_run_row, load_step_row};
use super::steps::{finished_word, set_status};
use crate::audit::{self, NewEvent};
use crate::error::SqlContext;
use crate::sql::{OptionalExt, params};
use crate::{ApprovalRow, Millis, RunStatus, StateError};

impl Store {
    /// Records an approval of `step_id` (which must be running or not yet started).
    pub async fn approve(
        &self,
        run_id: &str,
        step_id: &str,
        by: &str,
        comment: Option<String>,
        auto: bool,
        now: Millis,
    ) -> Result<ApprovalRow, StateError> {
        self.approve_with(run_id, step_id, by, comment, auto, serde_json::Value::Null, now)
            .await
    }

    /// As [`Store::approve`], with more fields for the audit event (`by_source`, `reason`).
    #[allow(clippy::too_many_arguments)]
    pub async fn approve_with(
        &self,
        run_id: &str,
        step_id: &str,
        by: &str,
        comment: Option<String>,
        auto: bool,
        extra: serde_json::Value,
        now: Millis,
    ) -> Result<ApprovalRow, StateError> {
        let (run_id, step_id, by) = (run_id.to_owned(), step_id.to_owned(), by.to_owned());
        self.write(move |tx| {
            let run = load_run_row(tx, &run_id)?;
            if run.status.is_terminal() {
                return Err(StateError::InvalidTransition {
                    message: format!(
                        "run {run_id} has already {}; nothing to approve",
                        finished_word(run.status)
                    ),
                });
            }
            let step = load_step_row(tx, &run_id, &step_id)?;
            if step.status.is_done() {
                return Err(StateError::InvalidTransition {
                    message: format!("step `{step_id}` is already {}", step.status),
                });
            }
            let existing: Option<String> = tx
                .query_row(
                    "SELECT by FROM approvals WHERE run_id = ?1 AND step_id = ?2",
                    params![run_id, step_id],
                    |r| r.get(0),
                )
                .optional()
                .during("reading approvals")?;
            if let Some(who) = existing {
                return Err(StateError::InvalidTransition {
                    message: format!("step `{step_id}` was already approved by {who}"),
                });
            }
            tx.execute(
                "INSERT INTO approvals (run_id, step_id, by, comment, at, auto) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![run_id, step_id, by, comment, now, auto],
            )
            .during("recording an approval")?;
            audit::append(
                tx,
                &run_id,
                now,
                NewEvent::step("step.approved", &step_id, None, {
                    let mut data = json!({ "by": by, "comment": comment, "auto": auto });
                    if let (Some(d), Some(x)) = (data.as_object_mut(), extra.as_object()) {
                        d.extend(x.clone());
                    }
                    data
                }),
            )?;
            Ok(ApprovalRow {
                step_id,
                by,
                comment,
                at: now,
                auto,
            })
        })
        .await
    }

    /// The approval of a step, if any.
    pub async fn approval(&self, run_id: &str, step_id: &str) -> Result<Option<ApprovalRow>, StateError> {
        let (run_id, step_id) = (run_id.to_owned(), step_id.to_owned());
        self.read(move |conn| {
            conn.query_row(
                "SELECT step_id, by, comment, at, auto FROM approvals WHERE run_id = ?1 AND step_id = ?2",
                params![run_id, step_id],
                approval_row,
            )
            .optional()
            .during("reading an approval")
        })
        .await
    }

    /// Cancels a run. When nobody drives it (no lease, an expired one, or `dead_owner`'s),
    /// it becomes `cancelled` at once and its locks are released; otherwise the driver is
    /// asked to stop at its next safe point. Returns whether it is cancelled now.
    pub async fn cancel(
        &self,
        run_id: &str,
        by: &str,
        dead_owner: Option<String>,
        now: Millis,
    ) -> Result<bool, StateError> {
        let (run_id, by) = (run_id.to_owned(), by.to_owned());
        self.write(move |tx| {
            let run = load_run_row(tx, &run_id)?;
            if matches!(run.status, RunStatus::Succeeded | RunStatus::Cancelled) {
                return Err(StateError::InvalidTransition {
                    message: format!("run {run_id} has already {}", finished_word(run.status)),
                });
            }
            let driven = match (&run.lease_owner, run.lease_expires_at) {
                (Some(owner), Some(exp)) => {
                    exp > tx.lease_now(now).during("reading the database's clock")?
                        && dead_owner.as_deref() != Some(owner.as_str())
                }
                _ => false,
            };
            if driven {
                tx.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?1", params![&run_id])
                    .during("requesting cancellation")?;
                audit::append(
                    tx,
                    &run_id,
                    now,
                    NewEvent::run("run.cancel_requested", json!({ "by": by })),
                )?;
                return Ok(false);
            }
            tx.execute(
                "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ?1",
                params![&run_id],
            )
            .during("cancelling")?;
            set_status(
                tx,
                &run_id,
                RunStatus::Cancelled,
                Some(json!({ "cancelled_by": by })),
                now,
            )?;
            Ok(true)
        })
        .await
    }

    /// Completes a cancellation requested while the run was driven (called by the driver).
    pub async fn finish_cancel(&self, run_id: &str, owner: &str, now: Millis) -> Result<(), StateError> {
        let (run_id, owner) = (run_id.to_owned(), owner.to_owned());
        self.write(move |tx| {
            // Completing a requested cancellation needs the owner, not an unexpired lease:
            // stopping is always allowed.
            let held: Option<String> = tx
                .query_row("SELECT lease_owner FROM runs WHERE id = ?1", params![&run_id], |r| r.get(0))
                .during("cancelling")?;
            if held.as_deref() != Some(owner.as_str()) {
                return Err(StateError::LeaseLost {
                    run_id: run_id.clone(),
                    owner: held.unwrap_or_else(|| "nobody".to_owned()),
                });
            }
            tx.execute(
                "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ?1",
                params![&run_id],
            )
            .during("cancelling")?;
            // The run ends with the record of the request (who, why, what it abandons).
            let requested: Option<String> = tx
                .query_row(
                    "SELECT data FROM events WHERE run_id = ?1 AND kind = 'run.cancel_requested' ORDER BY seq DESC LIMIT 1",
                    params![&run_id],
                    |r| r.get(0),
                )
                .optional()
                .during("reading the cancel request")?;
            let record = requested
                .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
                .filter(serde_json::Value::is_object)
                .map(|mut d| {
                    if d.get("cancelled_by").is_none() {
                        d["cancelled_by"] = d["by"].clone();
                    }
                    d
                })
                .unwrap_or_else(|| json!({ "cancelled_by": "operator request" }));
            set_status(tx, &run_id, RunStatus::Cancelled, Some(record), now)
        })
        .await
    }

    /// Re-opens a failed run: its failed step gets a fresh attempt (progress cleared).
    pub async fn retry_failed(&self, run_id: &str, by: &crate::Actor, now: Millis) -> Result<String, StateError> {
        let (run_id, by) = (run_id.to_owned(), by.record());
        self.write(move |tx| {
            let run = load_run_row(tx, &run_id)?;
            if run.status != RunStatus::Failed {
                return Err(StateError::InvalidTransition {
                    message: format!("run {run_id} is {}, not failed; there is nothing to retry", run.status),
                });
            }
            let step: Option<String> = tx
                .query_row(
                    "SELECT step_id FROM steps WHERE run_id = ?1 AND status = 'failed' ORDER BY position DESC LIMIT 1",
                    params![&run_id],
                    |r| r.get(0),
                )
                .optional()
                .during("finding the failed step")?;
            let Some(step) = step else {
                return Err(StateError::InvalidTransition {
                    message: format!("run {run_id} has no failed step to retry"),
                });
            };
            tx.execute(
                "UPDATE steps SET status = 'pending', next_attempt_at = NULL, finished_at = NULL
                 WHERE run_id = ?1 AND step_id = ?2",
                params![run_id, step],
            )
            .during("re-opening the failed step")?;
            tx.execute(
                "UPDATE runs SET status = 'pending', error = NULL, finished_at = NULL, updated_at = ?2 WHERE id = ?1",
                params![run_id, now],
            )
            .during("re-opening the run")?;
            audit::append(
                tx,
                &run_id,
                now,
                NewEvent::step("step.retry_requested", &step, None, by),
            )?;
            Ok(step)
        })
        .await
    }
}
