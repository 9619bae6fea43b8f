//! Read-only commands: `status`, `runs`, `history`, `report`, `audit verify`.
//!
//! JSON output uses the serializable rows of the state crate wrapped in a document with a
//! `schema_version`; text output is for people.

use std::time::Duration;

use fogbook_state::{EventRow, Millis, RunFilter, RunSnapshot, Store, WindowRow, format_ms};
use serde_json::json;

use crate::cli::{Cli, Format};
use crate::{Exit, output};

fn now_ms() -> Millis {
    fogbook_engine::Clock::now_ms(&fogbook_engine::SystemClock)
}

fn human(ms: Millis) -> String {
    let d = Duration::from_millis(ms.max(0).unsigned_abs());
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    if d < Duration::from_secs(60) {
        return format!("{:.1}s", d.as_secs_f64());
    }
    fogbook_activities::duration::format(Duration::from_secs(d.as_secs()))
}

async fn load(store: &Store, run_id: &str) -> Result<RunSnapshot, Exit> {
    store.load_run(run_id).await.map_err(|e| {
        match e {
            fogbook_state::StateError::UnknownRun { .. } => {
                output::error(&e.to_string(), Some("`fogbook runs` lists the runs in this database"));
            }
            other => output::error_chain(&other, None),
        }
        Exit::BadInput
    })
}

fn window_json(w: &WindowRow, now: Millis) -> serde_json::Value {
    json!({
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

fn window_text(w: &WindowRow, now: Millis) -> String {
    let text = window_line(w, now);
    match (&w.subject, w.kind) {
        (Some(s), fogbook_state::WindowKind::Unprotected) => {
            let verb = if w.closed_at.is_some() { "had" } else { "have" };
            format!("{text}\n      the databases of {s} {verb} no geo-replica")
        }
        _ => text,
    }
}

fn window_line(w: &WindowRow, now: Millis) -> String {
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

fn step_duration(s: &fogbook_state::StepRow, now: Millis) -> Option<Millis> {
    let start = s.first_started_at?;
    Some(s.finished_at.unwrap_or(now) - start)
}

pub(crate) async fn report(cli: &Cli, store: Store, run_id: String) -> Exit {
    let snap = match load(&store, &run_id).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    let now = now_ms();
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
        let windows: Vec<_> = snap.windows.iter().map(|w| window_json(w, now)).collect();
        output::json(
            "report",
            &json!({
                "run_id": snap.run.id, "runbook": snap.run.runbook_name, "status": snap.run.status,
                "created_at": format_ms(snap.run.created_at), "finished_at": snap.run.finished_at.map(format_ms),
                "duration_ms": snap.run.finished_at.unwrap_or(now) - snap.run.created_at,
                "steps": steps, "windows": windows, "error": snap.run.error,
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
    out.push_str(&format!(
        "started {}  {}\n\nsteps:\n",
        format_ms(snap.run.created_at),
        match snap.run.finished_at {
            Some(f) => format!("finished {}  took {}", format_ms(f), human(f - snap.run.created_at)),
            None => format!("running for {}", human(now - snap.run.created_at)),
        }
    ));
    for s in &snap.steps {
        let dur = step_duration(s, now).map(human).unwrap_or_else(|| "-".to_owned());
        let attempts = if s.attempt > 1 {
            format!("  ({} attempts)", s.attempt)
        } else {
            String::new()
        };
        let err = s
            .error
            .as_ref()
            .filter(|_| s.status == fogbook_state::StepStatus::Failed)
            .map(|e| {
                format!(
                    "  {}: {}",
                    e["code"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "  {:<28} {:<10} {:>10}{attempts}{err}\n",
            s.step_id,
            s.status.as_str(),
            dur
        ));
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
    out.push_str("\nwindows:\n");
    if snap.windows.is_empty() {
        out.push_str("  none: the databases kept their geo-replica throughout\n");
    }
    for w in &snap.windows {
        out.push_str(&window_text(w, now));
        out.push('\n');
    }
    output::data(&out);
    Exit::Success
}

pub(crate) async fn status(cli: &Cli, store: Store, run_id: String) -> Exit {
    let snap = match load(&store, &run_id).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    let now = now_ms();
    let current = snap.steps.iter().find(|s| !s.status.is_done());
    let waiting_approval = (snap.run.status == fogbook_state::RunStatus::Waiting)
        .then(|| current.map(|s| s.step_id.clone()))
        .flatten();
    if cli.format == Format::Json {
        output::json(
            "status",
            &json!({
                "run": snap.run,
                "current_step": current.map(|s| &s.step_id),
                "waiting_for_approval": waiting_approval,
                "steps": snap.steps,
                "windows": snap.windows.iter().map(|w| window_json(w, now)).collect::<Vec<_>>(),
                "approvals": snap.approvals,
            }),
        );
        return Exit::Success;
    }
    let r = &snap.run;
    let mut out = format!(
        "run {}  {} v{}\nstatus: {}\n",
        r.id, r.runbook_name, r.runbook_version, r.status
    );
    out.push_str(&format!("created: {}\n", format_ms(r.created_at)));
    if let Some(step) = current {
        out.push_str(&format!(
            "current step: {} ({}, attempt {})\n",
            step.step_id, step.status, step.attempt
        ));
    }
    if let Some(step) = &waiting_approval {
        out.push_str(&format!(
            "waiting for approval: fogbook approve {} {step} --by NAME\n",
            r.id
        ));
    }
    match (&r.lease_owner, r.lease_expires_at) {
        (Some(o), Some(exp)) if exp > now => {
            out.push_str(&format!("driven by: {o} (lease until {})\n", format_ms(exp)))
        }
        (Some(o), _) => out.push_str(&format!("last driver: {o} (lease expired; resumable)\n")),
        _ => {}
    }
    match &r.error {
        Some(e) if e.get("waiting_for").is_some() => out.push_str(&format!(
            "waiting for: {} ({}) before step {}\n",
            e["waiting_for"].as_str().unwrap_or("?"),
            e["window"].as_str().unwrap_or("?"),
            e["step"].as_str().unwrap_or("?")
        )),
        Some(e) => out.push_str(&format!("error: {e}\n")),
        None => {}
    }
    for w in snap.windows.iter().filter(|w| w.closed_at.is_none()) {
        out.push_str(&format!(
            "OPEN {} window since {} (opened by {}), age {}\n",
            w.kind,
            format_ms(w.opened_at),
            w.opened_step,
            human(now - w.opened_at)
        ));
    }
    out.push_str("steps:\n");
    for s in &snap.steps {
        out.push_str(&format!(
            "  {:<28} {:<10} attempt {}\n",
            s.step_id,
            s.status.as_str(),
            s.attempt
        ));
    }
    output::data(&out);
    Exit::Success
}

pub(crate) async fn runs(cli: &Cli, store: Store, filter: RunFilter) -> Exit {
    let runs = match store.list_runs(filter).await {
        Ok(r) => r,
        Err(e) => {
            output::error_chain(&e, None);
            return Exit::BadInput;
        }
    };
    if cli.format == Format::Json {
        output::json("runs", &json!({ "runs": runs }));
        return Exit::Success;
    }
    let mut out = format!("{:<36}  {:<28} {:<10} {}\n", "RUN", "RUNBOOK", "STATUS", "CREATED");
    for r in &runs {
        out.push_str(&format!(
            "{:<36}  {:<28} {:<10} {}\n",
            r.id,
            r.runbook_name,
            r.status.as_str(),
            format_ms(r.created_at)
        ));
    }
    output::data(&out);
    Exit::Success
}

pub(crate) async fn history(cli: &Cli, store: Store, run_id: String) -> Exit {
    let events: Vec<EventRow> = match store.events(&run_id).await {
        Ok(e) => e,
        Err(e) => {
            output::error(&e.to_string(), Some("`fogbook runs` lists the runs in this database"));
            return Exit::BadInput;
        }
    };
    match cli.format {
        Format::Json => output::json("history", &json!({ "run_id": run_id, "events": events })),
        Format::Csv => {
            let mut out = String::from("seq,at,kind,step,attempt,data,hash\n");
            for e in &events {
                out.push_str(&format!(
                    "{},{},{},{},{},{},{}\n",
                    e.seq,
                    format_ms(e.at),
                    csv(&e.kind),
                    csv(e.step_id.as_deref().unwrap_or("")),
                    e.attempt.map(|a| a.to_string()).unwrap_or_default(),
                    csv(&e.data.to_string()),
                    e.hash
                ));
            }
            output::data(&out);
        }
        Format::Text | Format::Table => output::data(&history_table(&run_id, &events, cli.verbose > 0)),
    }
    Exit::Success
}

/// `s` cut to `width` characters (ending in `…` when cut) and padded to `width`.
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return format!("{s:<width$}");
    }
    let cut: String = s.chars().take(width.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// Who an event names (`by`), if any.
fn event_actor(e: &EventRow) -> String {
    match e.data.get("by") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Object(m)) => m
            .get("user")
            .and_then(|u| u.as_str())
            .or_else(|| m.get("command").and_then(|c| c.as_str()))
            .unwrap_or("")
            .to_owned(),
        _ => String::new(),
    }
}

/// A short human summary of an event's data (the whole JSON is `-v` or `--format json`).
fn event_summary(e: &EventRow) -> String {
    let d = &e.data;
    let text = |k: &str| d.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    match e.kind.as_str() {
        "step.started" => match d.get("deadline_at").and_then(|v| v.as_str()) {
            Some(dl) => format!("deadline {dl}"),
            None => String::new(),
        },
        "step.completed" => d
            .get("output")
            .and_then(|o| o.as_object())
            .map(|o| format!("output: {}", o.keys().cloned().collect::<Vec<_>>().join(", ")))
            .unwrap_or_default(),
        "step.failed" | "run.failed" => {
            let err = d.get("error").unwrap_or(d);
            format!(
                "{} {}",
                err.get("code").and_then(|c| c.as_str()).unwrap_or(""),
                err.get("message").and_then(|c| c.as_str()).unwrap_or("")
            )
            .trim()
            .to_owned()
        }
        "step.approved" => match d.get("comment").and_then(|c| c.as_str()) {
            Some(c) => format!("comment: {c}"),
            None if d.get("auto") == Some(&serde_json::Value::Bool(true)) => "auto-approved".to_owned(),
            None => String::new(),
        },
        "window.opened" => format!("{} window, databases of {}", text("kind"), text("subject")),
        "window.closed" => format!(
            "{} window closed after {}",
            text("kind"),
            d.get("duration_ms")
                .and_then(|v| v.as_i64())
                .map(human)
                .unwrap_or_default()
        ),
        "lease.acquired" | "lease.released" => format!("owner {}", text("owner")),
        "step.progress" => d
            .as_object()
            .map(|o| format!("progress: {}", o.keys().cloned().collect::<Vec<_>>().join(", ")))
            .unwrap_or_default(),
        "run.created" => d
            .get("locks")
            .and_then(|l| l.as_array())
            .map(|l| {
                let locks: Vec<&str> = l.iter().filter_map(|x| x.as_str()).collect();
                format!("locks {}", locks.join(", "))
            })
            .unwrap_or_default(),
        "step.retry_scheduled" => format!("{} {}", text("at"), text("reason")).trim().to_owned(),
        _ if d.is_null() => String::new(),
        _ => {
            let mut rest = d.clone();
            if let Some(m) = rest.as_object_mut() {
                m.remove("by");
            }
            if rest.as_object().is_some_and(|m| m.is_empty()) {
                String::new()
            } else {
                rest.to_string()
            }
        }
    }
}

/// `history` as a table people can read: the run, then one line per event (time, event,
/// step, who, a short detail), long ids and details cut to fit with `…`; with `-v`, each
/// event's whole JSON data on the lines below it.
fn history_table(run_id: &str, events: &[EventRow], verbose: bool) -> String {
    let mut out = format!(
        "run {run_id}\n{:>4}  {:<24}  {:<22}  {:<30}  {:<14}  {}\n",
        "#", "TIME", "EVENT", "STEP", "WHO", "DETAIL"
    );
    for e in events {
        let step = match (&e.step_id, e.attempt) {
            (Some(s), Some(a)) if a > 1 => format!("{s} #{a}"),
            (Some(s), _) => s.clone(),
            _ => String::new(),
        };
        let line = format!(
            "{:>4}  {:<24}  {}  {}  {}  {}",
            e.seq,
            format_ms(e.at),
            fit(&e.kind, 22),
            fit(&step, 30),
            fit(&event_actor(e), 14),
            fit(&event_summary(e), 50).trim_end()
        );
        out.push_str(line.trim_end());
        out.push('\n');
        if verbose && !e.data.is_null() {
            let json = serde_json::to_string_pretty(&e.data).unwrap_or_default();
            for l in json.lines() {
                out.push_str("        ");
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

pub(crate) async fn verify(cli: &Cli, store: Store, run_id: Option<String>, since: Option<String>) -> Exit {
    let report = match store.verify_audit_since(run_id.as_deref(), since.as_deref()).await {
        Ok(r) => r,
        Err(e) => {
            output::error(&e.to_string(), None);
            return Exit::BadInput;
        }
    };
    let ok = report.failure.is_none();
    if cli.format == Format::Json {
        output::json("audit_verification", &json!({ "ok": ok, "report": report }));
    } else if let Some(f) = &report.failure {
        output::data(&format!("FAILED: run {} event #{}: {}", f.run_id, f.seq, f.reason));
    } else {
        output::data(&format!(
            "ok: {} events in {} runs and schedules verify\nhead: {} (keep it elsewhere; `audit verify --since-head {}` proves the trail was not cut since)",
            report.events, report.runs, report.head, report.head
        ));
    }
    if ok { Exit::Success } else { Exit::RunFailed }
}
