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
        Format::Text | Format::Table => {
            let mut out = String::new();
            for e in &events {
                let step = e.step_id.as_deref().map(|s| format!(" {s}")).unwrap_or_default();
                let attempt = e.attempt.map(|a| format!(" #{a}")).unwrap_or_default();
                let data = if e.data.is_null() {
                    String::new()
                } else {
                    format!("  {}", e.data)
                };
                out.push_str(&format!(
                    "{:>4}  {}  {}{step}{attempt}{data}\n",
                    e.seq,
                    format_ms(e.at),
                    e.kind
                ));
            }
            output::data(&out);
        }
    }
    Exit::Success
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
            output::error_chain(&e, None);
            return Exit::BadInput;
        }
    };
    let ok = report.failure.is_none();
    if cli.format == Format::Json {
        output::json("audit_verification", &json!({ "ok": ok, "report": report }));
    } else if let Some(f) = &report.failure {
        // A row that disagrees with the trail may have no event of its own (seq 0).
        let at = if f.seq > 0 {
            format!(" event #{}", f.seq)
        } else {
            String::new()
        };
        output::data(&format!("FAILED: run {}{at}: {}", f.run_id, f.reason));
    } else {
        output::data(&format!(
            "ok: {} events in {} runs and schedules verify, and the runs, steps and windows agree with them\nhead: {} (keep it elsewhere; `audit verify --since-head {}` proves the trail was not cut since)",
            report.events, report.runs, report.head, report.head
        ));
    }
    if ok { Exit::Success } else { Exit::RunFailed }
}
