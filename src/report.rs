//! Read-only commands: `status`, `runs`, `history`, `report`, `audit verify`.
//!
//! JSON output uses the serializable rows of the state crate wrapped in a document with a
//! `schema_version`; text output is for people.

use std::time::Duration;

use fogbook_state::{EventRow, Millis, RunFilter, RunSnapshot, Store, WindowRow, format_ms};
use serde_json::json;

use crate::cli::{Cli, Format};
use crate::error::fail;
use crate::exit::Exit;
use crate::output;

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
    store.load_run(run_id).await.map_err(fail)
}

fn window_json(w: &WindowRow, now: Millis, ended: Option<Millis>) -> serde_json::Value {
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

fn window_text(w: &WindowRow, now: Millis, ended: Option<Millis>) -> String {
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
fn window_line(w: &WindowRow, now: Millis, ended: Option<Millis>) -> String {
    if let (None, Some(end)) = (w.closed_at, ended) {
        return format!(
            "  {:<22} opened by {:<24} at {}  ABANDONED OPEN since the run ended at {} (window {}: `fogbook window close RUN {}` once it closed)",
            w.kind.as_str(),
            w.opened_step,
            format_ms(w.opened_at),
            format_ms(end),
            w.id,
            w.id
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

fn step_duration(s: &fogbook_state::StepRow, now: Millis) -> Option<Millis> {
    let start = s.first_started_at?;
    Some(s.finished_at.unwrap_or(now) - start)
}

/// The rehearsal record of a run, if it is one.
async fn rehearsal_of(store: &Store, run_id: &str) -> Option<crate::rehearsal::Rehearsal> {
    match crate::rehearsal::target_of(store, run_id).await {
        Ok(crate::rehearsal::Target::Rehearsal(r)) => Some(r),
        _ => None,
    }
}

fn rehearsal_json(r: Option<&crate::rehearsal::Rehearsal>) -> serde_json::Value {
    r.map_or(serde_json::Value::Null, crate::rehearsal::Rehearsal::record)
}

fn rehearsal_line(r: &crate::rehearsal::Rehearsal) -> String {
    format!(
        "rehearsal: on the ARM emulator (--sim) at {}x time, nothing touched Azure; its state: {}\n",
        r.time_scale,
        r.state_file.display()
    )
}

/// For a rehearsal, the user databases of each instance of its estate (by instance name).
fn databases_of(r: Option<&crate::rehearsal::Rehearsal>) -> std::collections::BTreeMap<String, Vec<String>> {
    r.and_then(|r| fogbook_sim::saved_databases(&r.state_file).ok())
        .unwrap_or_default()
}

/// A duration of a run: for a rehearsal in the time it rehearses with the real time beside
/// it ("2.3h simulated (2.3s)"), otherwise the real time.
fn lasted(ms: Millis, rehearsal: Option<&crate::rehearsal::Rehearsal>) -> String {
    match rehearsal {
        Some(r) => format!("{} simulated ({})", simulated(ms, r.time_scale), human(ms)),
        None => human(ms),
    }
}

/// Real milliseconds as simulated time at `scale`.
fn simulated(ms: Millis, scale: f64) -> String {
    let sim = (ms as f64 * scale).round();
    let sim = if sim.is_finite() { sim as i64 } else { 0 };
    human(sim)
}

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
    if snap.windows.is_empty() {
        out.push_str("  none: the databases kept their geo-replica throughout\n");
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

/// Whether anybody drives a run: a live driver renewing its lease, or nobody.
#[derive(Debug, PartialEq)]
pub(crate) enum Drive {
    /// A driver holds an unexpired lease and its process is not known to be gone.
    Running { owner: String, until: Millis },
    /// The run is `running`, but its lease expired or its holder's process is gone.
    Stalled { since: Millis, why: String },
    /// Not meant to be driven now (pending for a worker, waiting, finished).
    Idle,
}

impl Drive {
    /// `running`, `stalled`, or the stored status.
    pub(crate) fn label(&self, status: fogbook_state::RunStatus) -> &'static str {
        match self {
            Drive::Stalled { .. } => "stalled",
            _ => status.as_str(),
        }
    }
}

/// Decides [`Drive`] from the run row: `lease_ttl` estimates when an expired or orphaned
/// lease was last renewed (the time since which nobody drives the run).
pub(crate) fn drive_of(r: &fogbook_state::RunRow, now: Millis, lease_ttl: Duration) -> Drive {
    if r.status != fogbook_state::RunStatus::Running {
        return Drive::Idle;
    }
    let ttl = i64::try_from(lease_ttl.as_millis()).unwrap_or(i64::MAX);
    match (&r.lease_owner, r.lease_expires_at) {
        (Some(owner), Some(until)) if fogbook_engine::owner::is_dead(owner) => Drive::Stalled {
            since: until.saturating_sub(ttl).max(r.updated_at).min(now),
            why: format!("its driver {owner} has exited"),
        },
        (Some(owner), Some(until)) if until > now => Drive::Running {
            owner: owner.clone(),
            until,
        },
        (Some(owner), Some(until)) => Drive::Stalled {
            since: until.saturating_sub(ttl).max(r.updated_at).min(until),
            why: format!("the lease of {owner} expired at {}", format_ms(until)),
        },
        _ => Drive::Stalled {
            since: r.updated_at,
            why: "no process holds its lease".to_owned(),
        },
    }
}

/// The open unprotected windows of a run, as text naming whose databases.
fn open_unprotected(snap: &RunSnapshot, now: Millis, rehearsal: Option<&crate::rehearsal::Rehearsal>) -> Vec<String> {
    snap.windows
        .iter()
        .filter(|w| w.closed_at.is_none() && w.kind == fogbook_state::WindowKind::Unprotected)
        .map(|w| {
            let whose = w.subject.as_deref().unwrap_or("the instance");
            format!(
                "the databases of {whose} have no geo-replica since {} ({})",
                format_ms(w.opened_at),
                lasted(now - w.opened_at, rehearsal)
            )
        })
        .collect()
}

/// The current step and what the run waits for (approval, maintenance window, an operation,
/// a back-off), from its snapshot.
pub(crate) fn waits_for(snap: &RunSnapshot, now: Millis) -> (Option<String>, String) {
    use fogbook_state::{RunStatus, StepStatus};
    let current = snap.steps.iter().find(|s| !s.status.is_done());
    let step = current.map(|s| s.step_id.clone());
    let uses = |id: &str| -> Option<String> {
        fogbook_engine::runbook::parse(&snap.run.runbook_text, "pinned runbook")
            .ok()
            .and_then(|rb| rb.step(id).map(|s| s.uses.clone()))
    };
    if snap.run.status.is_terminal() {
        return (None, "-".to_owned());
    }
    if let Some(e) = &snap.run.error
        && e.get("waiting_for").is_some()
    {
        return (
            step,
            format!("maintenance window {}", e["window"].as_str().unwrap_or("")),
        );
    }
    let Some(cur) = current else {
        return (step, "-".to_owned());
    };
    if let Some(next) = cur.next_attempt_at
        && next > now
    {
        return (step, format!("back-off until {}", format_ms(next)));
    }
    if cur.status == StepStatus::Running {
        let approved = snap.approvals.iter().any(|a| a.step_id == cur.step_id);
        match uses(&cur.step_id).as_deref() {
            Some("approval") if !approved => return (step, "approval".to_owned()),
            Some("wait") => return (step, "a timer".to_owned()),
            Some(u) if u.contains('.') && cur.progress.is_some() => return (step, "an ARM operation".to_owned()),
            _ => {}
        }
    }
    if snap.run.status == RunStatus::Waiting {
        return (step, "approval".to_owned());
    }
    (step, "-".to_owned())
}

/// Whether a run waits for an approval, however it is driven (status `waiting`, or a
/// foreground `--wait` driver at an approval step).
pub(crate) fn waits_for_approval(snap: &RunSnapshot, now: Millis) -> bool {
    waits_for(snap, now).1 == "approval"
}

/// The status document of a run (text or JSON) and whether the run is over.
async fn render_status(cli: &Cli, store: &Store, run_id: &str) -> Result<(String, bool), Exit> {
    let snap = load(store, run_id).await?;
    let over = snap.run.status.is_terminal();
    let now = now_ms();
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
        let doc = output::json_text(
            "status",
            &json!({
                "run": snap.run,
                "state": drive_of(&snap.run, now, cli.lease_ttl).label(snap.run.status),
                "stalled": match drive_of(&snap.run, now, cli.lease_ttl) {
                    Drive::Stalled { since, why } => json!({ "since": format_ms(since), "since_ms": since, "why": why }),
                    _ => serde_json::Value::Null,
                },
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
            }),
        );
        return Ok((doc, over));
    }
    let r = &snap.run;
    let drive = drive_of(r, now, cli.lease_ttl);
    let mut out = String::new();
    if let Drive::Stalled { since, .. } = &drive {
        let unprotected = open_unprotected(&snap, now, rehearsal.as_ref());
        if !unprotected.is_empty() {
            out.push_str(&format!(
                "!!! STALLED WITH AN UNPROTECTED WINDOW OPEN: {}; nobody drives this run since {}: `fogbook resume {}`\n",
                unprotected.join("; "),
                format_ms(*since),
                r.id
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
            "stalled: nobody drives this run since {} ({why}); continue it: `fogbook resume {}`\n",
            format_ms(*since),
            r.id
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
            "not driven: {}; continue it: `fogbook resume {}` (or a running `fogbook worker` picks it up)\n",
            if started {
                "it stopped at a safe point"
            } else {
                "it has not started"
            },
            r.id
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
            "waiting for approval: fogbook approve {} {step} --by NAME (or: fogbook reject {} {step} --by NAME --reason TEXT)\n",
            r.id, r.id
        ));
    }
    if let Some(a) = approved_waiting {
        out.push_str(&format!(
            "approved: step {} by {} at {}; continue the run: fogbook resume {} (or a running `fogbook worker` picks it up)\n",
            a.step_id,
            a.by,
            format_ms(a.at),
            r.id
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
        Some(e) if e.get("cancelled_by").is_some() => out.push_str(&cancel_text(e, r.finished_at)),
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
        }
        None => {}
    }
    for w in snap.windows.iter().filter(|w| w.closed_at.is_none() && over) {
        out.push_str(&format!(
            "ABANDONED OPEN {} window {} since {} (opened by {}), left open when the run ended at {}; once you know it closed: fogbook window close {} {} --reason TEXT\n",
            w.kind,
            w.id,
            format_ms(w.opened_at),
            w.opened_step,
            r.finished_at.map(format_ms).unwrap_or_default(),
            r.id,
            w.id
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

pub(crate) async fn runs(cli: &Cli, store: Store, statuses: Vec<fogbook_state::RunStatus>, limit: usize) -> Exit {
    use fogbook_state::RunStatus;
    // A run waits for an approval whether it exited with code 3 (`waiting`) or a foreground
    // `--wait` driver holds it at the approval step (`running`): `--status waiting` lists both.
    let foreground_waits = statuses.contains(&RunStatus::Waiting) && !statuses.contains(&RunStatus::Running);
    let mut query = statuses.clone();
    if foreground_waits {
        query.push(RunStatus::Running);
    }
    let filter = RunFilter {
        statuses: query,
        limit: (!foreground_waits).then_some(limit.saturating_add(1)),
    };
    let rows = match store.list_runs(filter).await {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let now = now_ms();
    let mut shown = Vec::new();
    let mut truncated = false;
    for row in rows {
        let snap = match store.load_run(&row.id).await {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        if foreground_waits && row.status == RunStatus::Running && !waits_for_approval(&snap, now) {
            continue;
        }
        if shown.len() == limit {
            truncated = true;
            break;
        }
        shown.push(snap);
    }
    let lines: Vec<RunLine> = shown.iter().map(|snap| run_line(snap, now, cli.lease_ttl)).collect();
    if cli.format == Format::Json {
        let runs: Vec<serde_json::Value> = shown
            .iter()
            .zip(&lines)
            .map(|(snap, l)| {
                let mut v = serde_json::to_value(&snap.run).unwrap_or_default();
                v["state"] = l.state.into();
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
            "showing the newest {limit} runs; more match: `fogbook runs --limit {}` shows more",
            limit.saturating_mul(2).max(1)
        ));
    }
    Exit::Success
}

/// One row of `runs`.
struct RunLine {
    state: &'static str,
    step: Option<String>,
    waits: String,
    windows: String,
}

fn run_line(snap: &RunSnapshot, now: Millis, lease_ttl: Duration) -> RunLine {
    let drive = drive_of(&snap.run, now, lease_ttl);
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

pub(crate) async fn history(cli: &Cli, store: Store, run_id: String) -> Exit {
    let events: Vec<EventRow> = match store.events(&run_id).await {
        Ok(e) => e,
        Err(e) => return fail(e),
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

/// The width of a steps table's id column: the longest step id, at least 28 characters, so
/// a long id never pushes its row's status out of line.
fn step_column(steps: &[fogbook_state::StepRow]) -> usize {
    steps
        .iter()
        .map(|s| s.step_id.chars().count())
        .max()
        .unwrap_or(0)
        .max(28)
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
        Err(e) => return fail(e),
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
        let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        output::data(&format!(
            "ok: {} in {} verify, and the runs, steps and windows agree with them\nhead: {} (keep it elsewhere; `audit verify --since-head {}` proves the trail was not cut since)",
            plural(report.events, "event", "events"),
            plural(
                report.runs,
                "stream (runs, schedules, fleets)",
                "streams (runs, schedules, fleets)"
            ),
            report.head,
            report.head
        ));
    }
    if ok { Exit::Success } else { Exit::RunFailed }
}

/// Who cancelled (or rejected) a run, why, and what the cancel abandoned, as text.
fn cancel_text(e: &serde_json::Value, at: Option<Millis>) -> String {
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
    for o in e["abandoned"]["operations"].as_array().into_iter().flatten() {
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
async fn operator_actions(store: &Store, run_id: &str) -> Vec<serde_json::Value> {
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
        if !d["abandoned"].is_null() && e.kind != "run.created" {
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
