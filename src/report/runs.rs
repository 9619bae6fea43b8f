//! `fogbook runs`: the runs, newest first.

use std::time::Duration;

use fogbook_state::{Millis, RunFilter, RunSnapshot, Store};
use serde_json::json;

use crate::cli::{Cli, Format};
use crate::error::fail;
use crate::exit::Exit;
use crate::output;

use super::drive::{Drive, drive_of_run, lease_clock, set_stall_json, waits_for, waits_for_approval};
use super::shared::{human, now_ms, window_json};

/// `statuses` are stored statuses; `stalled` adds the `running` runs nobody drives (the
/// `stalled` state `runs` shows).
pub(crate) async fn runs(
    cli: &Cli,
    store: Store,
    statuses: Vec<fogbook_state::RunStatus>,
    stalled: bool,
    limit: usize,
) -> Exit {
    use fogbook_state::RunStatus;
    // A run waits for an approval whether it exited with code 3 (`waiting`) or a foreground
    // `--wait` driver holds it at the approval step (`running`): `--status waiting` lists both.
    let foreground_waits = statuses.contains(&RunStatus::Waiting) && !statuses.contains(&RunStatus::Running);
    // `stalled` is a `running` run whose lease lapsed: picked from the running ones.
    let stalled_only = stalled && !statuses.contains(&RunStatus::Running);
    let mut query = statuses.clone();
    if foreground_waits || stalled_only {
        query.push(RunStatus::Running);
    }
    // A run stopped with an unprotected window open is `pending` and stalled too.
    if stalled_only && !statuses.contains(&RunStatus::Pending) {
        query.push(RunStatus::Pending);
    }
    let filter = RunFilter {
        statuses: query,
        limit: (!foreground_waits && !stalled_only).then_some(limit.saturating_add(1)),
    };
    let rows = match store.list_runs(filter).await {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let now = now_ms();
    // Leases are judged by the clock they are written by (the database's on PostgreSQL).
    let lease_now = match lease_clock(&store, now).await {
        Ok(t) => t,
        Err(code) => return code,
    };
    let mut shown = Vec::new();
    let mut truncated = false;
    for row in rows {
        let snap = match store.load_run(&row.id).await {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        // The running rows added to the query above are shown only for what they were added for.
        if stalled_only && row.status == RunStatus::Pending && !statuses.contains(&RunStatus::Pending) {
            if !matches!(drive_of_run(&snap, lease_now, cli.lease_ttl), Drive::Stalled { .. }) {
                continue;
            }
        } else if (foreground_waits || stalled_only) && row.status == RunStatus::Running {
            let is_stalled = matches!(drive_of_run(&snap, lease_now, cli.lease_ttl), Drive::Stalled { .. });
            let shown_as_waiting = foreground_waits && waits_for_approval(&snap, now);
            let wanted = shown_as_waiting || (stalled && is_stalled);
            if !wanted {
                continue;
            }
        }
        if shown.len() == limit {
            truncated = true;
            break;
        }
        shown.push(snap);
    }
    let lines: Vec<RunLine> = shown
        .iter()
        .map(|snap| run_line(snap, now, lease_now, cli.lease_ttl))
        .collect();
    if cli.format == Format::Json {
        let runs: Vec<serde_json::Value> = shown
            .iter()
            .zip(&lines)
            .map(|(snap, l)| {
                let mut v = serde_json::to_value(&snap.run).unwrap_or_default();
                v["state"] = l.state.into();
                set_stall_json(&mut v, &drive_of_run(snap, lease_now, cli.lease_ttl));
                v["current_step"] = json!(l.step);
                v["waits_for"] = json!(l.waits);
                v["age_ms"] = json!(now - snap.run.created_at);
                v["open_windows"] = snap
                    .windows
                    .iter()
                    .filter(|w| w.closed_at.is_none())
                    .map(|w| window_json(w, now, snap.run.finished_at))
                    .collect();
                v
            })
            .collect();
        output::json("runs", &json!({ "runs": runs, "truncated": truncated, "limit": limit }));
    } else {
        let mut out = format!(
            "{:<36}  {:<22} {:<9} {:<28} {:>7}  {:<20} {}\n",
            "RUN", "RUNBOOK", "STATUS", "STEP", "AGE", "WAITS FOR", "OPEN WINDOWS"
        );
        for (snap, l) in shown.iter().zip(&lines) {
            out.push_str(&format!(
                "{:<36}  {:<22} {:<9} {:<28} {:>7}  {:<20} {}\n",
                snap.run.id,
                snap.run.runbook_name,
                l.state,
                l.step.as_deref().unwrap_or("-"),
                human(now - snap.run.created_at),
                l.waits,
                l.windows
            ));
        }
        output::data(&out);
    }
    if truncated {
        output::always(&format!(
            "showing the newest {limit} runs; more match: `{fb} runs --limit {}` shows more",
            limit.saturating_mul(2).max(1),
            fb = crate::output::fogbook()
        ));
    }
    Exit::Success
}

/// One row of `runs`.
pub(super) struct RunLine {
    state: &'static str,
    step: Option<String>,
    waits: String,
    windows: String,
}

/// `lease_now`: the lease clock ([`lease_clock`]).
pub(super) fn run_line(snap: &RunSnapshot, now: Millis, lease_now: Millis, lease_ttl: Duration) -> RunLine {
    let drive = drive_of_run(snap, lease_now, lease_ttl);
    let (step, mut waits) = waits_for(snap, now);
    if let Drive::Stalled { since, .. } = &drive {
        waits = format!("a driver ({})", human(now - since));
    }
    let open: Vec<String> = snap
        .windows
        .iter()
        .filter(|w| w.closed_at.is_none())
        .map(|w| {
            let whose = w.subject.as_deref().map(|s| format!(" ({s})")).unwrap_or_default();
            if snap.run.status.is_terminal() {
                format!("{} ABANDONED OPEN{whose}", w.kind.as_str())
            } else {
                format!("{} {}{whose}", w.kind.as_str(), human(now - w.opened_at))
            }
        })
        .collect();
    RunLine {
        state: drive.label(snap.run.status),
        step,
        waits,
        windows: if open.is_empty() {
            "-".to_owned()
        } else {
            open.join(", ")
        },
    }
}
