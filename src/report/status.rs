//! `fogbook status RUN` (and `--watch`).

use std::time::Duration;

use fogbook_state::{Store, format_ms};
use serde_json::json;

use crate::cli::{Cli, Format};
use crate::exit::Exit;
use crate::output;

use super::drive::{Drive, drive_of_run, lease_clock, open_unprotected, set_stall_json, waits_for, waits_for_approval};
use super::shared::{
    cancel_text, lasted, load, now_ms, rehearsal_json, rehearsal_line, rehearsal_of, step_column, window_json,
};

/// The status document of a run (text or JSON) and whether the run is over.
pub(super) async fn render_status(cli: &Cli, store: &Store, run_id: &str) -> Result<(String, bool), Exit> {
    let snap = load(store, run_id).await?;
    let over = snap.run.status.is_terminal();
    let now = now_ms();
    // Whether a driver's lease is live is judged by the clock leases are written by (the
    // database server's on PostgreSQL), not this host's.
    let lease_now = lease_clock(store, now).await?;
    let current = snap.steps.iter().find(|s| !s.status.is_done());
    let rehearsal = rehearsal_of(store, run_id).await;
    let waiting_approval = (waits_for_approval(&snap, now) && !snap.run.status.is_terminal())
        .then(|| current.map(|s| s.step_id.clone()))
        .flatten()
        .filter(|step| !snap.approvals.iter().any(|a| &a.step_id == step));
    let approved_waiting = (snap.run.status == fogbook_state::RunStatus::Waiting)
        .then(|| current.and_then(|s| snap.approvals.iter().find(|a| a.step_id == s.step_id)))
        .flatten();
    if cli.format == Format::Json {
        let mut doc = json!({
                "run": snap.run,
                "state": drive_of_run(&snap, lease_now, cli.lease_ttl).label(snap.run.status),
                "waits_for": waits_for(&snap, now).1,
                "current_step": current.map(|s| &s.step_id),
                "waiting_for_approval": waiting_approval,
                "steps": snap.steps,
                "windows": snap.windows.iter().map(|w| window_json(w, now, snap.run.finished_at)).collect::<Vec<_>>(),
                "approvals": snap.approvals,
                "rehearsal": rehearsal_json(rehearsal.as_ref()),
                "age_ms": snap.run.finished_at.unwrap_or(now) - snap.run.created_at,
                // The run's age in the time it rehearses (null for a real run).
                "simulated_age_ms": rehearsal.as_ref().map(|reh| {
                    let sim = ((snap.run.finished_at.unwrap_or(now) - snap.run.created_at) as f64 * reh.time_scale).round();
                    if sim.is_finite() { sim as i64 } else { 0 }
                }),
        });
        set_stall_json(&mut doc, &drive_of_run(&snap, lease_now, cli.lease_ttl));
        return Ok((output::json_text("status", &doc), over));
    }
    let r = &snap.run;
    let drive = drive_of_run(&snap, lease_now, cli.lease_ttl);
    // Where this run is continued: on the target once the store was moved.
    let driving = output::fogbook_driving(store);
    let mut out = String::new();
    if let Drive::Stalled { since, .. } = &drive {
        let unprotected = open_unprotected(&snap, now, rehearsal.as_ref());
        if !unprotected.is_empty() {
            out.push_str(&format!(
                "!!! STALLED WITH AN UNPROTECTED WINDOW OPEN: {}; nobody drives this run since {}: `{driving} resume {}`\n",
                unprotected.join("; "),
                format_ms(*since),
                r.id,
            ));
        }
    }
    out.push_str(&format!(
        "run {}  {} v{}\nstatus: {}\n",
        r.id,
        r.runbook_name,
        r.runbook_version,
        drive.label(r.status)
    ));
    if let Drive::Stalled { since, why } = &drive {
        out.push_str(&format!(
            "stalled: nobody drives this run since {} ({why}); continue it: `{driving} resume {}`\n",
            format_ms(*since),
            r.id,
        ));
    }
    if r.status == fogbook_state::RunStatus::Pending && r.lease_owner.is_none() {
        // Stopped at a safe point (Ctrl-C, SIGTERM, a lost lease) or created with `--detach`:
        // nothing is wrong, but nothing moves it until someone resumes it.
        let started = snap
            .steps
            .iter()
            .any(|s| s.status != fogbook_state::StepStatus::Pending);
        out.push_str(&format!(
            "not driven: {}; continue it: `{driving} resume {}` (or a running `{driving} worker` picks it up)\n",
            if started {
                "it stopped at a safe point"
            } else {
                "it has not started"
            },
            r.id,
        ));
    }
    out.push_str(&format!("created: {}\n", format_ms(r.created_at)));
    if let Some(reh) = &rehearsal {
        out.push_str(&rehearsal_line(reh));
        // A rehearsal's age in the time it rehearses (the emulator's clock runs on at the
        // run's scale while no process drives it), the real time beside it.
        let (word, end) = match r.finished_at {
            Some(f) => ("took", f),
            None => ("age", now),
        };
        out.push_str(&format!("{word}: {}\n", lasted(end - r.created_at, rehearsal.as_ref())));
    }
    match current {
        Some(step) if !over => out.push_str(&format!(
            "current step: {} ({}, attempt {})\n",
            step.step_id, step.status, step.attempt
        )),
        Some(step) if step.status == fogbook_state::StepStatus::Running => out.push_str(&format!(
            "left unfinished: step {} (attempt {}) when the run ended\n",
            step.step_id, step.attempt
        )),
        _ => {}
    }
    if let Some(step) = &waiting_approval {
        out.push_str(&format!(
            "waiting for approval: {fb} approve {} {step} --by NAME (or: {fb} reject {} {step} --by NAME --reason TEXT)\n",
            r.id, r.id, fb = crate::output::fogbook()
        ));
    }
    if let Some(a) = approved_waiting {
        out.push_str(&format!(
            "approved: step {} by {} at {}; continue the run: {fb} resume {} (or a running `{fb} worker` picks it up)\n",
            a.step_id,
            a.by,
            format_ms(a.at),
            r.id, fb = crate::output::fogbook()
        ));
    }
    match (&drive, &r.lease_owner) {
        (Drive::Running { owner, until }, _) => {
            out.push_str(&format!("driven by: {owner} (lease until {})\n", format_ms(*until)))
        }
        (_, Some(o)) => out.push_str(&format!("last driver: {o}\n")),
        _ => {}
    }
    match &r.error {
        Some(e) if e.get("waiting_for").is_some() => out.push_str(&format!(
            "waiting for: {} ({}) before step {}\n",
            e["waiting_for"].as_str().unwrap_or("?"),
            e["window"].as_str().unwrap_or("?"),
            e["step"].as_str().unwrap_or("?")
        )),
        Some(e) if e.get("cancelled_by").is_some() => out.push_str(&cancel_text(e, r.finished_at, &snap.steps)),
        Some(e) => {
            // `{"step", "error": {"code", "message"}}`: one readable block, whatever its length.
            let inner = e.get("error").unwrap_or(e);
            let code = inner["code"].as_str().unwrap_or("failed");
            let message = inner["message"]
                .as_str()
                .unwrap_or_default()
                .trim()
                .replace('\n', "\n    ");
            match e["step"].as_str() {
                Some(step) => out.push_str(&format!("error: step `{step}` failed: {code}\n    {message}\n")),
                None => out.push_str(&format!("error: {code}\n    {message}\n")),
            }
            if let Some(next) =
                super::shared::next_after_failure(code, &r.id).filter(|_| r.status == fogbook_state::RunStatus::Failed)
            {
                out.push_str(&format!("next: {next}\n"));
            }
        }
        None => {}
    }
    for w in snap.windows.iter().filter(|w| w.closed_at.is_none() && over) {
        out.push_str(&format!(
            "ABANDONED OPEN {} window {} since {} (opened by {}), left open when the run ended at {}; once you know it closed: {fb} window close {} {} --reason TEXT\n",
            w.kind,
            w.id,
            format_ms(w.opened_at),
            w.opened_step,
            r.finished_at.map(format_ms).unwrap_or_default(),
            r.id,
            w.id, fb = crate::output::fogbook()
        ));
    }
    for w in snap.windows.iter().filter(|w| w.closed_at.is_none() && !over) {
        out.push_str(&format!(
            "OPEN {} window since {} (opened by {}), age {}\n",
            w.kind,
            format_ms(w.opened_at),
            w.opened_step,
            lasted(now - w.opened_at, rehearsal.as_ref())
        ));
    }
    out.push_str("steps:\n");
    for s in &snap.steps {
        out.push_str(&format!(
            "  {:<w$} {:<10} attempt {}\n",
            s.step_id,
            s.status.as_str(),
            s.attempt,
            w = step_column(&snap.steps)
        ));
    }
    Ok((out, over))
}

/// `status RUN`, or with `watch`, refreshed every second until the run is over or Ctrl-C:
/// in place on a terminal, otherwise each time it changes.
pub(crate) async fn status(cli: &Cli, store: Store, run_id: String, watch: bool) -> Exit {
    use std::io::IsTerminal;
    if !watch {
        return match render_status(cli, &store, &run_id).await {
            Ok((doc, _)) => {
                output::data(&doc);
                Exit::Success
            }
            Err(e) => e,
        };
    }
    let tty = std::io::stdout().is_terminal();
    let stop = tokio_util::sync::CancellationToken::new();
    crate::signals::spawn_signal_handler(stop.clone(), true);
    let mut last = String::new();
    loop {
        let (doc, over) = match render_status(cli, &store, &run_id).await {
            Ok(x) => x,
            Err(e) => return e,
        };
        if tty {
            // Home and clear, then the document: refreshed in place.
            output::data(&format!("\x1b[H\x1b[2J{doc}"));
        } else if doc != last {
            output::data(&doc);
        }
        last = doc;
        if over {
            return Exit::Success;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stop.cancelled() => return Exit::Success,
        }
    }
}
