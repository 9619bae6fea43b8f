//! The sections of a run's page: header, timeline, windows, approvals and operator actions,
//! steps (inputs, outputs, ARM request and correlation ids) and the verified audit trail.

use std::fmt::Write as _;

use fogbook_state::{EventRow, Millis, format_ms};

use super::markup::{CSS, esc, short};
use super::timeline::{self, actor};
use super::view::{RunView, human, shown_status, waiting_reason};

/// The sections of a run's page (inside `<main>`).
pub(crate) fn run_sections(view: &RunView) -> String {
    let run = &view.snap.run;
    let now = view.now;
    let mut s = String::new();
    let status = shown_status(&view.snap, &view.clock);
    let _ = write!(
        s,
        "<h1>Run {} <span class=\"status status-{status}\" id=\"run-status\">{status}</span></h1>\
         <p class=\"meta\">runbook <b>{}</b> v{} · created {} · {}</p>",
        short(&run.id, 40),
        esc(&run.runbook_name),
        run.runbook_version,
        format_ms(run.created_at),
        match run.finished_at {
            Some(f) => format!("finished {} · took {}", format_ms(f), view.dur(f - run.created_at)),
            None => format!("running for {}", view.dur(now - run.created_at)),
        }
    );
    if let Some(scale) = view.sim_scale {
        let _ = write!(
            s,
            "<p class=\"meta\" id=\"rehearsal\">a rehearsal on the ARM emulator at {scale}× simulated time: \
             times are real; durations in simulated time are given beside them</p>"
        );
    }
    if let Some(current) = view.snap.steps.iter().find(|s| !s.status.is_done()) {
        let _ = write!(
            s,
            "<p class=\"meta\">current step: <b>{}</b> ({}, attempt {})</p>",
            esc(&current.step_id),
            current.status.as_str(),
            current.attempt
        );
    }
    if let Some(reason) = waiting_reason(view) {
        let _ = write!(s, "<p class=\"notice\" id=\"waiting-reason\">{}</p>", esc(&reason));
    }
    if let Some(e) = run.error.as_ref().filter(|e| e.get("waiting_for").is_none()) {
        let _ = write!(s, "<p class=\"notice\">error: {}</p>", esc(&compact(e, 400)));
    }

    s.push_str("<h2>Timeline</h2>");
    s.push_str(&timeline::svg(view));
    s.push_str(
        "<p class=\"legend\"><span><i style=\"background:#1a73e8\"></i>attempt</span>\
         <span><i style=\"background:#d93025\"></i>failed attempt</span>\
         <span><i style=\"background:#9aa0a6\"></i>waiting (approval, wait)</span>\
         <span><i style=\"border:1px dashed #d93025\"></i>waiting to retry</span>\
         <span><i style=\"background:#fdecea\"></i>unprotected window</span>\
         <span><i style=\"background:#fff4d6\"></i>listener window</span>\
         <span><i style=\"background:#7b1fa2\"></i>approval / operator action</span></p>",
    );
    let _ = write!(
        s,
        "<p class=\"meta\">axis: time since the run was created ({}), wall-clock time as recorded by the driver{}</p>",
        format_ms(run.created_at),
        match view.max_unprotected {
            Some(l) => format!(
                "; the runbook's max_unprotected is {}",
                human(Millis::try_from(l.as_millis()).unwrap_or(Millis::MAX))
            ),
            None => String::new(),
        }
    );

    windows_table(&mut s, view);
    actions_table(&mut s, view);
    steps_table(&mut s, view);
    audit_section(&mut s, view);
    s
}

fn windows_table(s: &mut String, view: &RunView) {
    s.push_str("<h2>Windows</h2>");
    if view.snap.windows.is_empty() && view.snap.run.status.is_terminal() {
        s.push_str("<p>None: the databases kept their geo-replica throughout.</p>");
        return;
    }
    if view.snap.windows.is_empty() {
        s.push_str("<p id=\"no-windows\">None so far (the run has not finished).</p>");
        return;
    }
    s.push_str(
        "<table id=\"windows\"><thead><tr><th>kind</th><th>databases of</th><th>opened by</th><th>opened at</th>\
         <th>closed by</th><th>closed at</th><th>duration</th></tr></thead><tbody>",
    );
    for w in &view.snap.windows {
        let duration = match w.closed_at {
            Some(c) => view.dur(c - w.opened_at),
            None if view.snap.run.status.is_terminal() => format!(
                "left open when the run ended, since {} ({})",
                format_ms(w.opened_at),
                view.dur(view.now - w.opened_at)
            ),
            None => format!(
                "still open, since {} ({})",
                format_ms(w.opened_at),
                view.dur(view.now - w.opened_at)
            ),
        };
        let over = view
            .max_unprotected
            .filter(|_| w.kind.as_str() == "unprotected")
            .and_then(|l| Millis::try_from(l.as_millis()).ok())
            .filter(|l| w.closed_at.unwrap_or(view.now) - w.opened_at > view.real_of_simulated(*l))
            .map(|l| format!(" <span class=\"bad\">over max_unprotected ({})</span>", human(l)))
            .unwrap_or_default();
        let _ = write!(
            s,
            "<tr class=\"window-row\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num window-duration\">{}{over}</td></tr>",
            w.kind.as_str(),
            esc(w.subject.as_deref().unwrap_or("-")),
            esc(&w.opened_step),
            format_ms(w.opened_at),
            esc(w.closed_step.as_deref().unwrap_or("-")),
            w.closed_at.map(format_ms).unwrap_or_else(|| "-".to_owned()),
            esc(&duration)
        );
    }
    s.push_str("</tbody></table>");
}

fn actions_table(s: &mut String, view: &RunView) {
    s.push_str("<h2>Approvals and operator actions</h2>");
    let acts: Vec<&EventRow> = view.events.iter().filter(|e| actor(e).is_some()).collect();
    if acts.is_empty() {
        s.push_str("<p>None.</p>");
        return;
    }
    s.push_str("<table id=\"actions\"><thead><tr><th>when</th><th>who</th><th>what</th><th>step</th><th>comment</th></tr></thead><tbody>");
    for e in acts {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            format_ms(e.at),
            esc(&actor(e).unwrap_or_default()),
            esc(&e.kind),
            esc(e.step_id.as_deref().unwrap_or("-")),
            esc(e.data.get("comment").and_then(|c| c.as_str()).unwrap_or(""))
        );
    }
    s.push_str("</tbody></table>");
}

/// The ARM request and correlation ids a step's output or progress recorded.
fn arm_ids(row: &fogbook_state::StepRow) -> (Vec<String>, Vec<String>) {
    let mut requests = Vec::new();
    let mut correlations = Vec::new();
    let mut push = |v: &serde_json::Value| {
        if let Some(r) = v.get("request_id").and_then(|r| r.as_str())
            && !requests.iter().any(|x| x == r)
        {
            requests.push(r.to_owned());
        }
        if let Some(c) = v.get("correlation_id").and_then(|c| c.as_str())
            && !correlations.iter().any(|x| x == c)
        {
            correlations.push(c.to_owned());
        }
    };
    if let Some(list) = row
        .output
        .as_ref()
        .and_then(|o| o.get("arm_requests"))
        .and_then(|a| a.as_array())
    {
        list.iter().for_each(&mut push);
    }
    if let Some(ops) = row
        .progress
        .as_ref()
        .and_then(|p| p.get("ops"))
        .and_then(|o| o.as_object())
    {
        ops.values().for_each(&mut push);
    }
    (requests, correlations)
}

fn steps_table(s: &mut String, view: &RunView) {
    s.push_str(
        "<h2>Steps</h2><table id=\"steps\"><thead><tr><th>#</th><th>step</th><th>activity</th><th>status</th>\
         <th>attempts</th><th>started</th><th>duration</th><th>ARM request / correlation ids</th>\
         <th>inputs and outputs</th></tr></thead><tbody>",
    );
    for (i, row) in view.snap.steps.iter().enumerate() {
        let dur = row
            .first_started_at
            .map(|st| human(row.finished_at.unwrap_or(view.now) - st))
            .unwrap_or_else(|| "-".to_owned());
        let (requests, correlations) = arm_ids(row);
        let mut ids = String::new();
        for c in &correlations {
            let _ = write!(ids, "<div>corr {}</div>", short(c, 40));
        }
        for r in &requests {
            let _ = write!(ids, "<div>req {}</div>", short(r, 40));
        }
        let mut io = String::new();
        for (label, v) in [("input", &row.input), ("output", &row.output), ("error", &row.error)] {
            if let Some(v) = v {
                let _ = write!(
                    io,
                    "<details><summary>{label}</summary><pre>{}</pre></details>",
                    esc(&serde_json::to_string_pretty(v).unwrap_or_default())
                );
            }
        }
        let _ = write!(
            s,
            "<tr class=\"step-row\" data-step=\"{}\"><td class=\"num\">{}</td><td>{}</td><td>{}</td>\
             <td><span class=\"status status-{}\">{}</span></td><td class=\"num\">{}</td><td>{}</td>\
             <td class=\"num\">{dur}</td><td>{ids}</td><td>{io}</td></tr>",
            esc(&row.step_id),
            i + 1,
            short(&row.step_id, 34),
            esc(view.uses(&row.step_id)),
            row.status.as_str(),
            row.status.as_str(),
            row.attempt,
            row.first_started_at.map(format_ms).unwrap_or_else(|| "-".to_owned()),
        );
    }
    s.push_str("</tbody></table>");
}

/// A JSON value on one line, cut to `max` characters.
pub(crate) fn compact(v: &serde_json::Value, max: usize) -> String {
    let text = v.to_string();
    if text.chars().count() <= max {
        return text;
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

fn audit_section(s: &mut String, view: &RunView) {
    s.push_str("<h2>Audit trail</h2>");
    match &view.audit {
        Ok(r) if r.failure.is_none() => {
            let _ = write!(
                s,
                "<p id=\"audit-result\"><span class=\"ok\">chain verified</span> at {}: {} events; head hash <span class=\"id\">{}</span></p>",
                format_ms(view.now),
                r.events,
                esc(&r.head)
            );
        }
        Ok(r) => {
            let f = r
                .failure
                .as_ref()
                .map(|f| format!("event #{}: {}", f.seq, f.reason))
                .unwrap_or_default();
            let _ = write!(
                s,
                "<p id=\"audit-result\"><span class=\"bad\">chain verification FAILED</span> at {}: {}</p>",
                format_ms(view.now),
                esc(&f)
            );
        }
        Err(e) => {
            let _ = write!(
                s,
                "<p id=\"audit-result\"><span class=\"bad\">chain not verified</span>: {}</p>",
                esc(e)
            );
        }
    }
    s.push_str(
        "<table id=\"audit\"><thead><tr><th>#</th><th>time</th><th>event</th><th>step</th><th>who</th><th>detail</th><th>hash</th></tr></thead><tbody>",
    );
    for e in &view.events {
        let step = match (&e.step_id, e.attempt) {
            (Some(st), Some(a)) => format!("{} #{a}", short(st, 30)),
            (Some(st), None) => short(st, 30),
            _ => String::new(),
        };
        let detail = if e.data.is_null() {
            String::new()
        } else {
            compact(&e.data, 160)
        };
        let _ = write!(
            s,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{step}</td><td>{}</td><td class=\"id\">{}</td><td>{}</td></tr>",
            e.seq,
            format_ms(e.at),
            esc(&e.kind),
            esc(&actor(e).unwrap_or_default()),
            esc(&detail),
            short(&e.hash, 12)
        );
    }
    s.push_str("</tbody></table>");
}

/// The whole self-contained report document of a run.
pub(crate) fn report_document(view: &RunView) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>fogbook run {} ({})</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{CSS}</style></head>\
         <body><main>{}<p class=\"meta\">exported by fogbook {} at {} from the run's state database; \
         this file loads nothing from anywhere.</p></main></body></html>\n",
        esc(&view.snap.run.id),
        esc(&view.snap.run.runbook_name),
        run_sections(view),
        env!("CARGO_PKG_VERSION"),
        format_ms(view.now)
    )
}
