//! Reads of runs, their steps and events, and audit verification.

use super::Store;
use super::rows::{
    RUN_COLUMNS, RUN_FROM, STEP_COLUMNS, approval_row, load_run_row, parse_json, run_row_raw, step_row, window_row,
};
use crate::audit::{self};
use crate::error::SqlContext;
use crate::sql::params;
use crate::{AuditReport, EventRow, RunFilter, RunRow, RunSnapshot, StateError};

impl Store {
    /// Everything about one run.
    pub async fn load_run(&self, run_id: &str) -> Result<RunSnapshot, StateError> {
        let run_id = run_id.to_owned();
        self.read(move |conn| {
            let run = load_run_row(conn, &run_id)?;
            let steps = {
                conn.query_map(
                    &format!("SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ?1 ORDER BY position"),
                    params![&run_id],
                    step_row,
                )
                .during("reading steps")?
            };
            let windows = {
                conn.query_map(
                    "SELECT id, kind, opened_step, opened_at, closed_step, closed_at, limit_notified, subject
                         FROM windows WHERE run_id = ?1 ORDER BY id",
                    params![&run_id],
                    window_row,
                )
                .during("reading windows")?
            };
            let approvals = {
                conn.query_map(
                    "SELECT step_id, by, comment, at, auto FROM approvals WHERE run_id = ?1 ORDER BY at",
                    params![&run_id],
                    approval_row,
                )
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
            let rows = conn
                .query_map(
                    &format!("SELECT {RUN_COLUMNS} FROM {RUN_FROM} ORDER BY r.created_at DESC, r.id DESC"),
                    params![],
                    run_row_raw,
                )
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
            let rows = conn
                .query_map(
                    "SELECT run_id, seq, at, kind, step_id, attempt, data, prev_hash, hash
                     FROM events WHERE run_id = ?1 ORDER BY seq",
                    params![&run_id],
                    |r| {
                        let (run, seq): (String, i64) = (r.get(0)?, r.get(1)?);
                        let event = || format!("event #{seq} of run {run}");
                        let kind = r.text(3, &event)?;
                        let event = || format!("event #{seq} ({kind}) of run {run}");
                        Ok((
                            run.clone(),
                            seq,
                            r.get::<i64>(2)?,
                            kind.clone(),
                            r.opt_text(4, &event)?,
                            r.get::<Option<u32>>(5)?,
                            r.text(6, &event)?,
                            r.text(7, &event)?,
                            r.text(8, &event)?,
                        ))
                    },
                )
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
        // One instant: the trail and the rows it is checked against, while others write.
        self.read_consistent(move |conn| audit::verify(conn, run_id.as_deref(), since.as_deref()))
            .await
    }
}
