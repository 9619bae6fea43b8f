//! What the read-only views share: durations, windows, rehearsal times, operator actions.
use fogbook_state::{Millis, RunSnapshot, Store, WindowRow, format_ms};
use serde_json::json;

use crate::error::fail;
use crate::exit::Exit;

/// This host's clock (shifted by `FOGBOOK_TEST_CLOCK_FILE` in tests, as the schedules').
pub(super) fn now_ms() -> Millis {
    fogbook_engine::Clock::now_ms(&*crate::schedule_cmd::clock())
}

/// Durations read as on the HTML pages.
pub(super) use crate::html::human;

pub(super) async fn load(store: &Store, run_id: &str) -> Result<RunSnapshot, Exit> {
    store.load_run(run_id).await.map_err(fail)
}

pub(super) fn window_json(w: &WindowRow, now: Millis, ended: Option<Millis>) -> serde_json::Value {
    json!({
        "id": w.id,
        "state": match (w.closed_at, ended) {
            (Some(_), _) => "closed",
            (None, Some(_)) => "abandoned open",
            (None, None) => "open",
        },
        "abandoned_at": w.closed_at.is_none().then_some(ended).flatten().map(format_ms),
        "kind": w.kind,
        "opened_by": w.opened_step,
        "databases_of": w.subject,
        "opened_at": format_ms(w.opened_at),
        "closed_by": w.closed_step,
        "closed_at": w.closed_at.map(format_ms),
        "duration_ms": w.closed_at.map(|c| c - w.opened_at),
        "open": w.closed_at.is_none(),
        "age_ms": w.closed_at.is_none().then(|| now - w.opened_at),
    })
}

pub(super) fn window_text(w: &WindowRow, now: Millis, ended: Option<Millis>) -> String {
    let text = window_line(w, now, ended);
    match (&w.subject, w.kind) {
        (Some(s), fogbook_state::WindowKind::Unprotected) => {
            let verb = if w.closed_at.is_some() { "had" } else { "have" };
            format!("{text}\n      the databases of {s} {verb} no geo-replica")
        }
        _ => text,
    }
}

/// A window in the report. On a finished run an open window is `ABANDONED OPEN`: nothing
/// of fogbook will close it; the operator does, once they know it closed.
pub(super) fn window_line(w: &WindowRow, now: Millis, ended: Option<Millis>) -> String {
    if let (None, Some(end)) = (w.closed_at, ended) {
        return format!(
            "  {:<22} opened by {:<24} at {}  ABANDONED OPEN since the run ended at {} (window {}: `{fb} window close RUN {}` once it closed)",
            w.kind.as_str(),
            w.opened_step,
            format_ms(w.opened_at),
            format_ms(end),
            w.id,
            w.id,
            fb = crate::output::fogbook()
        );
    }
    match w.closed_at {
        Some(closed) => format!(
            "  {:<22} opened by {:<24} at {}  closed by {:<24} at {}  duration {}",
            w.kind.as_str(),
            w.opened_step,
            format_ms(w.opened_at),
            w.closed_step.as_deref().unwrap_or("?"),
            format_ms(closed),
            human(closed - w.opened_at)
        ),
        None => format!(
            "  {:<22} opened by {:<24} at {}  STILL OPEN, age {}",
            w.kind.as_str(),
            w.opened_step,
            format_ms(w.opened_at),
            human(now - w.opened_at)
        ),
    }
}

pub(super) fn step_duration(s: &fogbook_state::StepRow, now: Millis) -> Option<Millis> {
    let start = s.first_started_at?;
    Some(s.finished_at.unwrap_or(now) - start)
}

/// The rehearsal record of a run, if it is one.
pub(super) async fn rehearsal_of(store: &Store, run_id: &str) -> Option<crate::rehearsal::Rehearsal> {
    match crate::rehearsal::target_of(store, run_id).await {
        Ok(crate::rehearsal::Target::Rehearsal(r)) => Some(r),
        _ => None,
    }
}

pub(super) fn rehearsal_json(r: Option<&crate::rehearsal::Rehearsal>) -> serde_json::Value {
    r.map_or(serde_json::Value::Null, crate::rehearsal::Rehearsal::record)
}

pub(super) fn rehearsal_line(r: &crate::rehearsal::Rehearsal) -> String {
    format!(
        "rehearsal: on the ARM emulator (--sim) at {}x time, nothing touched Azure; its state: {}\n",
        r.time_scale,
        r.state_file.display()
    )
}

/// For a rehearsal, the user databases of each instance of its estate (by instance name).
pub(super) fn databases_of(r: Option<&crate::rehearsal::Rehearsal>) -> std::collections::BTreeMap<String, Vec<String>> {
    r.and_then(|r| fogbook_sim::saved_databases(&r.state_file).ok())
        .unwrap_or_default()
}

/// A duration of a run: for a rehearsal in the time it rehearses with the real time beside
/// it ("2.3h simulated (2.3s)"), otherwise the real time.
pub(super) fn lasted(ms: Millis, rehearsal: Option<&crate::rehearsal::Rehearsal>) -> String {
    match rehearsal {
        Some(r) => format!("{} simulated ({})", simulated(ms, r.time_scale), human(ms)),
        None => human(ms),
    }
}

/// Real milliseconds as simulated time at `scale`.
pub(super) fn simulated(ms: Millis, scale: f64) -> String {
    let sim = (ms as f64 * scale).round();
    let sim = if sim.is_finite() { sim as i64 } else { 0 };
    human(sim)
}

/// Who cancelled (or rejected) a run, why, and what the cancel abandoned, as text. A cancel
/// asked of a live driver records what was in flight when it was asked; the driver may have
/// finished that step before it stopped, and then nothing of it was abandoned.
pub(super) fn cancel_text(e: &serde_json::Value, at: Option<Millis>, steps: &[fogbook_state::StepRow]) -> String {
    let by = e["cancelled_by"].as_str().unwrap_or("?");
    let source = e["by_source"].as_str().map(|s| format!(" ({s})")).unwrap_or_default();
    let when = at.map(|t| format!(" at {}", format_ms(t))).unwrap_or_default();
    let reason = e["reason"]
        .as_str()
        .map_or_else(|| "no reason given".to_owned(), |r| format!("reason: {r}"));
    let mut out = match e["rejected_step"].as_str() {
        Some(step) => format!("rejected: approval step {step} rejected by {by}{source}{when}; {reason}\n"),
        None => format!("cancelled: by {by}{source}{when}; {reason}\n"),
    };
    let still_in_flight = |o: &&serde_json::Value| {
        let step = o["step"].as_str().unwrap_or_default();
        !steps.iter().any(|s| s.step_id == step && s.status.is_done())
    };
    for o in e["abandoned"]["operations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(still_in_flight)
    {
        out.push_str(&format!(
            "abandoned operation: step {} ({}) was in flight since {}; its outcome is Azure's, check it there\n",
            o["step"].as_str().unwrap_or("?"),
            o["uses"].as_str().unwrap_or("?"),
            o["since"].as_str().unwrap_or("?")
        ));
    }
    out
}

/// The operator actions of a run, oldest first: who did what, and why (from the trail).
pub(super) async fn operator_actions(store: &Store, run_id: &str) -> Vec<serde_json::Value> {
    let Ok(events) = store.events(run_id).await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in &events {
        let d = &e.data;
        let step = e.step_id.clone().unwrap_or_default();
        let operator = d.get("by_source").is_some() || d.get("operator").is_some();
        let action = match e.kind.as_str() {
            "run.created" => "started",
            "step.approved" if d["auto"] == json!(true) => "auto-approved",
            "step.approved" => "approved",
            "step.rejected" => "rejected",
            "run.cancel_requested" => "cancel requested",
            "run.cancelled" => "cancelled",
            "step.retry_requested" => "retry requested",
            "run.repinned" => "re-pinned",
            "step.skipped" if operator => "skipped",
            "step.completed" if operator => "completed by hand",
            "window.closed" if operator => "closed window",
            _ => continue,
        };
        let by = match e.kind.as_str() {
            "run.created" => d["by"]["user"].as_str().unwrap_or("?").to_owned(),
            "run.cancelled" => d["cancelled_by"].as_str().unwrap_or("?").to_owned(),
            _ => d["by"].as_str().unwrap_or("?").to_owned(),
        };
        let mut text = format!("by {by}");
        if let Some(src) = d["by_source"].as_str().or(d["by"]["user_source"].as_str()) {
            text.push_str(&format!(" ({src})"));
        }
        if !step.is_empty() && step != fogbook_state::OPERATOR_STEP {
            text.push_str(&format!(", step {step}"));
        }
        if let Some(w) = d["window"].as_i64().filter(|_| e.kind == "window.closed") {
            text.push_str(&format!(", window {w} ({})", d["kind"].as_str().unwrap_or("?")));
        }
        if !d["abandoned"].is_null() && e.kind == "run.cancel_requested" {
            // Asked of a live driver: it stops at its next safe point, so what it abandons (if
            // anything) is what its `run.cancelled` event's status shows.
            text.push_str(", forced while a step was in flight or a window open");
        } else if !d["abandoned"].is_null() && e.kind != "run.created" {
            text.push_str(", abandoning what was in flight");
        }
        if let Some(r) = d["reason"].as_str().or(d["comment"].as_str()) {
            text.push_str(&format!(": {r}"));
        }
        out.push(
            json!({ "at": format_ms(e.at), "action": action, "step": e.step_id, "by": by, "text": text, "data": d }),
        );
    }
    out
}

/// The width of a steps table's id column: the longest step id, at least 28 characters, so
/// a long id never pushes its row's status out of line.
pub(super) fn step_column(steps: &[fogbook_state::StepRow]) -> usize {
    steps
        .iter()
        .map(|s| s.step_id.chars().count())
        .max()
        .unwrap_or(0)
        .max(28)
}

/// The commands that follow a run's failure with `code`, for this invocation's store
/// ([`crate::output::fogbook`]): the activities' messages say what happened, not which
/// `fogbook` (with which `--db`) to type next.
pub(crate) fn next_after_failure(code: &str, run_id: &str) -> Option<String> {
    let fb = crate::output::fogbook();
    (code == "AmbiguousInterruption").then(|| {
        format!(
            "check what the step did, then run it again: `{fb} resume {run_id} --retry-failed`; or give the run up: `{fb} cancel {run_id}`"
        )
    })
}
