//! `fogbook history RUN`: the audit trail as text, a table, JSON or CSV.

use fogbook_state::{EventRow, Store, format_ms};
use serde_json::json;

use crate::cli::{Cli, Format};
use crate::error::fail;
use crate::exit::Exit;
use crate::output;

use super::shared::human;

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

/// `s` cut to `width` characters (ending in `…` when cut) and padded to `width`.
pub(super) fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return format!("{s:<width$}");
    }
    let cut: String = s.chars().take(width.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// Who an event names (`by`), if any.
pub(super) fn event_actor(e: &EventRow) -> String {
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
pub(super) fn event_summary(e: &EventRow) -> String {
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
        // What the progress says of an effect first (an intent's state, a command's phase:
        // `not_sent` and `not_started` record an effect its attempt did not start), then its keys.
        "step.progress" => {
            let of = |p: &str| d.pointer(p).and_then(|v| v.as_str());
            let said = match (of("/intent/state"), of("/phase")) {
                (Some(state), _) => format!("{} intent {state}; ", of("/intent/action").unwrap_or("the")),
                (None, Some(phase)) => format!("phase {phase}; "),
                (None, None) => String::new(),
            };
            d.as_object()
                .map(|o| format!("{said}progress: {}", o.keys().cloned().collect::<Vec<_>>().join(", ")))
                .unwrap_or_default()
        }
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
pub(super) fn history_table(run_id: &str, events: &[EventRow], verbose: bool) -> String {
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

pub(super) fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}
