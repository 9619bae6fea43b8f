//! Reads of runs, their steps and events, and audit verification.

use super::Store;
use super::rows::{
    RUN_COLUMNS, RUN_FROM, STEP_COLUMNS, approval_row, load_run_row, parse_json, run_row_raw, step_row, window_row,
};
use crate::audit::{self};
use crate::error::{SqlContext, opt_text, text};
use crate::{AuditReport, EventRow, RunFilter, RunRow, RunSnapshot, StateError};

impl Store {
    /// Everything about one run.
    pub async fn load_run(&self, run_id: &str) -> Result<RunSnapshot, StateError> {
        let run_id = run_id.to_owned();
        self.read(move |conn| {
            let run = load_run_row(conn, &run_id)?;
            let steps = {
                let mut stmt = conn
                    .prepare(&format!(
                        "SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ?1 ORDER BY position"
                    ))
                    .during("reading steps")?;
                stmt.query_map([&run_id], step_row)
                    .during("reading steps")?
                    .collect::<Result<Vec<_>, _>>()
                    .during("reading steps")?
            };
            let windows = {
                let mut stmt = conn
                    .prepare(
                        "SELECT id, kind, opened_step, opened_at, closed_step, closed_at, limit_notified, subject
                         FROM windows WHERE run_id = ?1 ORDER BY id",
                    )
                    .during("reading windows")?;
                stmt.query_map([&run_id], window_row)
                    .during("reading windows")?
                    .collect::<Result<Vec<_>, _>>()
                    .during("reading windows")?
            };
            let approvals = {
                let mut stmt = conn
                    .prepare("SELECT step_id, by, comment, at, auto FROM approvals WHERE run_id = ?1 ORDER BY at")
                    .during("reading approvals")?;
                stmt.query_map([&run_id], approval_row)
                    .during("reading approvals")?
                    .collect::<Result<Vec<_>, _>>()
                    .during("reading approvals")?
            };
            Ok(RunSnapshot {
                run,
                steps: steps.into_iter().map(|s| s.and_then_json()).collect::<Result<_, _>>()?,
                windows,
                approvals,
            })
        })
        .await
    }

    /// Runs matching `filter`, newest first.
    pub async fn list_runs(&self, filter: RunFilter) -> Result<Vec<RunRow>, StateError> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {RUN_COLUMNS} FROM {RUN_FROM} ORDER BY r.created_at DESC, r.id DESC"
                ))
                .during("listing runs")?;
            let rows = stmt
                .query_map([], run_row_raw)
                .during("listing runs")?
                .collect::<Result<Vec<_>, _>>()
                .during("listing runs")?;
            let mut out = Vec::new();
            for raw in rows {
                let row = raw.into_row()?;
                if filter.statuses.is_empty() || filter.statuses.contains(&row.status) {
                    out.push(row);
                }
                if filter.limit.is_some_and(|l| out.len() >= l) {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    /// The audit trail of a run (or of a schedule, `schedule:<name>`), oldest first.
    pub async fn events(&self, run_id: &str) -> Result<Vec<EventRow>, StateError> {
        let run_id = run_id.to_owned();
        self.read(move |conn| {
            audit::stream_exists(conn, &run_id)?;
            let mut stmt = conn
                .prepare(
                    "SELECT run_id, seq, at, kind, step_id, attempt, data, prev_hash, hash
                     FROM events WHERE run_id = ?1 ORDER BY seq",
                )
                .during("reading the audit trail")?;
            let rows = stmt
                .query_map([&run_id], |r| {
                    let (run, seq): (String, i64) = (r.get(0)?, r.get(1)?);
                    let event = || format!("event #{seq} of run {run}");
                    let kind = text(r, 3, &event)?;
                    let event = || format!("event #{seq} ({kind}) of run {run}");
                    Ok((
                        run.clone(),
                        seq,
                        r.get::<_, i64>(2)?,
                        kind.clone(),
                        opt_text(r, 4, &event)?,
                        r.get::<_, Option<u32>>(5)?,
                        text(r, 6, &event)?,
                        text(r, 7, &event)?,
                        text(r, 8, &event)?,
                    ))
                })
                .during("reading the audit trail")?
                .collect::<Result<Vec<_>, _>>()
                .during("reading the audit trail")?;
            rows.into_iter()
                .map(|(run_id, seq, at, kind, step_id, attempt, data, prev_hash, hash)| {
                    Ok(EventRow {
                        run_id,
                        seq,
                        at,
                        kind,
                        step_id,
                        attempt,
                        data: parse_json(&data, "event data")?,
                        prev_hash,
                        hash,
                    })
                })
                .collect()
        })
        .await
    }

    /// Recomputes the hash chains of one run (or all) and reports the first bad event.
    pub async fn verify_audit(&self, run_id: Option<&str>) -> Result<AuditReport, StateError> {
        self.verify_audit_since(run_id, None).await
    }

    /// As [`Store::verify_audit`], and the chain must still contain the event whose hash is
    /// `since_head` (a head recorded earlier, outside this database).
    pub async fn verify_audit_since(
        &self,
        run_id: Option<&str>,
        since_head: Option<&str>,
    ) -> Result<AuditReport, StateError> {
        let (run_id, since) = (run_id.map(str::to_owned), since_head.map(str::to_owned));
        self.read(move |conn| audit::verify(conn, run_id.as_deref(), since.as_deref()))
            .await
    }
}
