//! `fogbook report RUN`: steps with durations and every unprotected window of a run.

use fogbook_state::{Store, format_ms};
use serde_json::json;

use crate::cli::{Cli, Format};
use crate::exit::Exit;
use crate::output;

use super::shared::{
    databases_of, human, load, now_ms, operator_actions, rehearsal_json, rehearsal_line, rehearsal_of, simulated,
    step_column, step_duration, window_json, window_text,
};

pub(crate) async fn report(cli: &Cli, store: Store, run_id: String) -> Exit {
    let snap = match load(&store, &run_id).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    let now = now_ms();
    let rehearsal = rehearsal_of(&store, &run_id).await;
    let databases = databases_of(rehearsal.as_ref());
    let actions = operator_actions(&store, &run_id).await;
    if cli.format == Format::Json {
        let steps: Vec<_> = snap
            .steps
            .iter()
            .map(|s| {
                json!({
                    "id": s.step_id, "status": s.status, "attempts": s.attempt,
                    "started_at": s.first_started_at.map(format_ms), "finished_at": s.finished_at.map(format_ms),
                    "duration_ms": step_duration(s, now), "error": s.error,
                })
            })
            .collect();
        let windows: Vec<_> = snap
            .windows
            .iter()
            .map(|w| {
                let mut v = window_json(w, now, snap.run.finished_at);
                if let Some(names) = w.subject.as_ref().and_then(|s| databases.get(s)) {
                    v["databases"] = json!(names);
                }
                v
            })
            .collect();
        output::json(
            "report",
            &json!({
                "run_id": snap.run.id, "runbook": snap.run.runbook_name, "status": snap.run.status,
                "created_at": format_ms(snap.run.created_at), "finished_at": snap.run.finished_at.map(format_ms),
                "duration_ms": snap.run.finished_at.unwrap_or(now) - snap.run.created_at,
                "steps": steps, "windows": windows, "error": snap.run.error,
                "rehearsal": rehearsal_json(rehearsal.as_ref()),
                "operator_actions": actions,
                "results": snap.steps.iter().filter_map(|s| s.output.as_ref()?.get("report").cloned()).collect::<Vec<_>>(),
            }),
        );
        return Exit::Success;
    }
    let mut out = String::new();
    out.push_str(&format!(
        "run {}  {} v{}  {}\n",
        snap.run.id, snap.run.runbook_name, snap.run.runbook_version, snap.run.status
    ));
    let took = snap.run.finished_at.unwrap_or(now) - snap.run.created_at;
    let took_sim = rehearsal
        .as_ref()
        .map(|r| format!(" ({} simulated)", simulated(took, r.time_scale)))
        .unwrap_or_default();
    out.push_str(&format!(
        "started {}  {}{took_sim}\n",
        format_ms(snap.run.created_at),
        match snap.run.finished_at {
            Some(f) => format!("finished {}  took {}", format_ms(f), human(took)),
            None => format!("running for {}", human(took)),
        }
    ));
    if let Some(r) = &rehearsal {
        out.push_str(&rehearsal_line(r));
    }
    out.push_str("\nsteps:\n");
    for s in &snap.steps {
        let dur = step_duration(s, now).map(human).unwrap_or_else(|| "-".to_owned());
        // A rehearsal's steps also in the time they rehearse, after the table's columns.
        let sim = match (&rehearsal, step_duration(s, now)) {
            (Some(r), Some(ms)) => format!("  = {} simulated", simulated(ms, r.time_scale)),
            _ => String::new(),
        };
        let attempts = if s.attempt > 1 {
            format!("  ({} attempts)", s.attempt)
        } else {
            String::new()
        };
        // Only the code in the table, so a long or multi-line message cannot break it; the
        // message follows the table, once.
        let err = s
            .error
            .as_ref()
            .filter(|_| s.status == fogbook_state::StepStatus::Failed)
            .map(|e| format!("  {}", e["code"].as_str().unwrap_or("failed")))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {:<w$} {:<10} {:>10}{attempts}{err}{sim}\n",
            s.step_id,
            s.status.as_str(),
            dur,
            w = step_column(&snap.steps)
        ));
    }
    for s in snap
        .steps
        .iter()
        .filter(|s| s.status == fogbook_state::StepStatus::Failed)
    {
        if let Some(e) = &s.error {
            let message = e["message"].as_str().unwrap_or("").trim().replace('\n', "\n    ");
            out.push_str(&format!(
                "\nstep `{}` failed: {}\n    {message}\n",
                s.step_id,
                e["code"].as_str().unwrap_or("failed")
            ));
        }
    }
    let reported: Vec<(String, serde_json::Value)> = snap
        .steps
        .iter()
        .filter_map(|s| s.output.as_ref()?.get("report")?.as_object().cloned())
        .flat_map(|m| m.into_iter())
        .collect();
    if !reported.is_empty() {
        out.push_str("\nresults:\n");
        for (k, v) in &reported {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            out.push_str(&format!("  {k}: {v}\n"));
        }
    }
    if !actions.is_empty() {
        out.push_str("\noperator actions:\n");
        for a in &actions {
            out.push_str(&format!(
                "  {}  {:<22} {}\n",
                a["at"].as_str().unwrap_or(""),
                a["action"].as_str().unwrap_or(""),
                a["text"].as_str().unwrap_or("")
            ));
        }
    }
    out.push_str("\nwindows:\n");
    if snap.windows.is_empty() && snap.run.status.is_terminal() {
        out.push_str("  none: the databases kept their geo-replica throughout\n");
    } else if snap.windows.is_empty() {
        out.push_str("  none so far (the run has not finished)\n");
    }
    for w in &snap.windows {
        out.push_str(&window_text(w, now, snap.run.finished_at));
        out.push('\n');
        if let Some(names) = w.subject.as_ref().and_then(|s| databases.get(s))
            && w.kind == fogbook_state::WindowKind::Unprotected
        {
            out.push_str(&format!("      databases: {}\n", names.join(", ")));
        }
        if let Some(r) = &rehearsal {
            let lasted = w.closed_at.unwrap_or(now) - w.opened_at;
            out.push_str(&format!(
                "      {} simulated ({} real at {}x)\n",
                simulated(lasted, r.time_scale),
                human(lasted),
                r.time_scale
            ));
        }
    }
    output::data(&out);
    Exit::Success
}
