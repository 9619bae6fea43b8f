//! Mapping database rows to the row types of `records.rs`.

use crate::error::SqlContext;
use crate::sql::{self, OptionalExt, Row, Tx, params};
use crate::{ApprovalRow, RunRow, RunStatus, StateError, StepRow, StepStatus, WindowKind, WindowRow};

/// The run's columns with its pinned text (`RUN_FROM` joins the two tables).
pub(super) const RUN_COLUMNS: &str =
    "r.id, r.runbook_name, r.runbook_version, t.text, r.runbook_sha256, r.source_path, r.params, r.status,
     r.auto_approve, r.created_at, r.updated_at, r.finished_at, r.error, r.lease_owner, r.lease_expires_at,
     r.cancel_requested, r.audit_head, r.audit_count, r.\"window\"";
pub(super) const RUN_FROM: &str = "runs r JOIN runbook_texts t ON t.sha256 = r.runbook_sha256";

pub(super) struct RawRun {
    row: RunRow,
    params: String,
    status: String,
    error: Option<String>,
    window: Option<String>,
}

impl RawRun {
    pub(super) fn into_row(self) -> Result<RunRow, StateError> {
        let mut row = self.row;
        row.params = parse_json(&self.params, "run parameters")?;
        row.status = self.status.parse().map_err(|message| StateError::CorruptValue {
            what: "run status",
            message,
        })?;
        row.error = self.error.as_deref().map(|e| parse_json(e, "run error")).transpose()?;
        row.window = self
            .window
            .as_deref()
            .map(|w| parse_json(w, "run window"))
            .transpose()?;
        Ok(row)
    }
}

pub(super) fn run_row_raw(r: &Row) -> sql::Result<RawRun> {
    let id = r.text(0, &|| "the id of a run's row".to_owned())?;
    let row = || format!("run {id}");
    Ok(RawRun {
        row: RunRow {
            runbook_name: r.text(1, &row)?,
            runbook_version: r.get(2)?,
            runbook_text: r.text(3, &row)?,
            runbook_sha256: r.text(4, &row)?,
            source_path: r.opt_text(5, &row)?,
            params: serde_json::Value::Null,
            status: RunStatus::Pending,
            auto_approve: r.get(8)?,
            created_at: r.get(9)?,
            updated_at: r.get(10)?,
            finished_at: r.get(11)?,
            error: None,
            lease_owner: r.opt_text(13, &row)?,
            lease_expires_at: r.get(14)?,
            cancel_requested: r.get(15)?,
            window: None,
            audit_head: r.text(16, &row)?,
            audit_count: r.get(17)?,
            id: id.clone(),
        },
        params: r.text(6, &row)?,
        status: r.text(7, &row)?,
        error: r.opt_text(12, &row)?,
        window: r.opt_text(18, &row)?,
    })
}

pub(crate) fn load_run_row(conn: &dyn Tx, run_id: &str) -> Result<RunRow, StateError> {
    conn.query_row(
        &format!("SELECT {RUN_COLUMNS} FROM {RUN_FROM} WHERE r.id = ?1"),
        params![run_id],
        run_row_raw,
    )
    .optional()
    .during("reading a run")?
    .ok_or_else(|| StateError::UnknownRun {
        run_id: run_id.to_owned(),
    })?
    .into_row()
}

pub(super) const STEP_COLUMNS: &str =
    "step_id, position, status, attempt, input, output, progress, error, first_started_at,
     started_at, finished_at, deadline_at, next_attempt_at";

pub(super) struct RawStep {
    row: StepRow,
    status: String,
    input: Option<String>,
    output: Option<String>,
    progress: Option<String>,
    error: Option<String>,
}

impl RawStep {
    pub(super) fn and_then_json(self) -> Result<StepRow, StateError> {
        let mut row = self.row;
        let j = |v: Option<String>, what| v.as_deref().map(|s| parse_json(s, what)).transpose();
        row.status = self.status.parse().map_err(|message| StateError::CorruptValue {
            what: "step status",
            message,
        })?;
        row.input = j(self.input, "step input")?;
        row.output = j(self.output, "step output")?;
        row.progress = j(self.progress, "step progress")?;
        row.error = j(self.error, "step error")?;
        Ok(row)
    }
}

pub(super) fn step_row(r: &Row) -> sql::Result<RawStep> {
    let id = r.text(0, &|| "the id of a step's row".to_owned())?;
    let row = || format!("step `{id}`");
    Ok(RawStep {
        row: StepRow {
            position: r.get(1)?,
            status: StepStatus::Pending,
            attempt: r.get(3)?,
            input: None,
            output: None,
            progress: None,
            error: None,
            first_started_at: r.get(8)?,
            started_at: r.get(9)?,
            finished_at: r.get(10)?,
            deadline_at: r.get(11)?,
            next_attempt_at: r.get(12)?,
            step_id: id.clone(),
        },
        status: r.text(2, &row)?,
        input: r.opt_text(4, &row)?,
        output: r.opt_text(5, &row)?,
        progress: r.opt_text(6, &row)?,
        error: r.opt_text(7, &row)?,
    })
}

pub(crate) fn load_step_row(conn: &dyn Tx, run_id: &str, step_id: &str) -> Result<StepRow, StateError> {
    conn.query_row(
        &format!("SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ?1 AND step_id = ?2"),
        params![run_id, step_id],
        step_row,
    )
    .optional()
    .during("reading a step")?
    .ok_or_else(|| StateError::UnknownStep {
        run_id: run_id.to_owned(),
        step_id: step_id.to_owned(),
    })?
    .and_then_json()
}

pub(super) fn window_row(r: &Row) -> sql::Result<WindowRow> {
    let kind: String = r.get(1)?;
    Ok(WindowRow {
        id: r.get(0)?,
        kind: kind.parse().unwrap_or(WindowKind::Unprotected),
        opened_step: r.get(2)?,
        opened_at: r.get(3)?,
        closed_step: r.get(4)?,
        closed_at: r.get(5)?,
        limit_notified: r.get(6)?,
        subject: r.get(7)?,
    })
}

pub(super) fn approval_row(r: &Row) -> sql::Result<ApprovalRow> {
    Ok(ApprovalRow {
        step_id: r.get(0)?,
        by: r.get(1)?,
        comment: r.get(2)?,
        at: r.get(3)?,
        auto: r.get(4)?,
    })
}

pub(super) fn parse_json(s: &str, what: &'static str) -> Result<serde_json::Value, StateError> {
    serde_json::from_str(s).map_err(|source| StateError::Corrupt { what, source })
}
