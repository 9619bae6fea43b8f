//! `schedule show`: what a schedule fires and when, what it pinned, its last fire and that
//! run, and its history in words (`--format json`: the stored row and events as they are).

use fogbook_engine::schedule::CronSchedule;
use fogbook_state::{EventRow, Store};
use serde_json::{Value, json};

use super::{TimeFmt, now, window_mark};
use crate::cli::{Cli, Format};
use crate::error::fail;
use crate::exit::Exit;
use crate::output;

/// A JSON value as a person reads it: a string without its quotes, anything else compact.
fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// Pinned parameters as `name=value, …` (`none` without any).
fn params_text(params: &Value) -> String {
    match params.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={}", plain(v)))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "none".to_owned(),
    }
}

/// Who did it, as an event records it: `"by": "NAME"` or `"by": {"user": NAME}`.
fn by_text(data: &Value) -> String {
    match &data["by"] {
        Value::String(s) => s.clone(),
        Value::Object(m) => m.get("user").map_or_else(|| data["by"].to_string(), plain),
        Value::Null => "unknown".to_owned(),
        other => other.to_string(),
    }
}

fn short_sha(sha: &str) -> &str {
    &sha[..12.min(sha.len())]
}

/// One line of a schedule's history, in words.
fn history_line(e: &EventRow, fmt: TimeFmt) -> String {
    let d = &e.data;
    let field = |k: &str| d.get(k).and_then(|v| v.as_str()).unwrap_or("?").to_owned();
    let what = match e.kind.as_str() {
        "schedule.skipped" => format!("skipped fire time {}: {}", fmt.text(&field("fire_at")), field("reason")),
        "schedule.fired" => match d.get("fleet_id").and_then(Value::as_str) {
            Some(fleet) => format!("fired {} as fleet {fleet}", fmt.text(&field("fire_at"))),
            None => format!("fired {} as run {}", fmt.text(&field("fire_at")), field("run_id")),
        },
        "schedule.queued" => format!("queued fire time {}: {}", fmt.text(&field("fire_at")), field("reason")),
        "schedule.created" => format!(
            "created by {}: runbook {} (sha256 {}), cron {} ({}), params {}",
            by_text(d),
            field("runbook"),
            short_sha(&field("sha256")),
            field("cron"),
            field("tz"),
            params_text(&d["params"])
        ),
        "schedule.updated" => format!(
            "updated by {}: runbook sha256 {} → {}, params {}",
            by_text(d),
            short_sha(&field("old_sha256")),
            short_sha(&field("sha256")),
            params_text(&d["params"])
        ),
        "schedule.paused" => format!("paused by {}", by_text(d)),
        "schedule.resumed" => format!("resumed by {}", by_text(d)),
        "schedule.removed" => format!("removed by {}", by_text(d)),
        other => {
            let fields: Vec<String> = d
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k}={}", plain(v))).collect())
                .unwrap_or_default();
            format!("{} {}", other.trim_start_matches("schedule."), fields.join(", "))
        }
    };
    format!("  {}  {what}\n", fmt.at(e.at))
}

/// The schedule's last fire and what became of its run (or fleet): `never` before one.
async fn last_fire(store: &Store, events: &[EventRow], fmt: TimeFmt) -> String {
    let Some(e) = events.iter().rev().find(|e| e.kind == "schedule.fired") else {
        return "never".to_owned();
    };
    let fire_at = fmt.text(e.data["fire_at"].as_str().unwrap_or("?"));
    let fb = output::fogbook();
    if let Some(fleet) = e.data["fleet_id"].as_str() {
        return format!(
            "{fire_at} (fired at {}) as fleet {fleet} ({fb} fleet status {fleet})",
            fmt.at(e.at)
        );
    }
    let run = e.data["run_id"].as_str().unwrap_or("?");
    let how = match store.load_run(run).await {
        Ok(snap) => match snap.run.finished_at {
            Some(f) => format!("{} at {}", snap.run.status.as_str(), fmt.at(f)),
            None => snap.run.status.as_str().to_owned(),
        },
        Err(_) => "no longer in this database".to_owned(),
    };
    format!(
        "{fire_at} (fired at {}) as run {run}: {how} ({fb} status {run})",
        fmt.at(e.at)
    )
}

pub(super) async fn show(cli: &Cli, store: &Store, name: &str, local: bool) -> Exit {
    let s = match store.schedule(name).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let events = store.events(&format!("schedule:{name}")).await.unwrap_or_default();
    let now = now();
    let fmt = TimeFmt::new(local, &s.tz);
    let next_ms: Vec<i64> = CronSchedule::parse(&s.cron, &s.tz)
        .map(|c| c.next(now, 5))
        .unwrap_or_default();
    let next: Vec<String> = next_ms.iter().map(|t| fmt.at(*t)).collect();
    if cli.format == Format::Json {
        let marks: Vec<_> = next_ms.iter().map(|t| window_mark(&s, *t, fmt)).collect();
        output::json(
            "schedule",
            &json!({ "schedule": s, "next": next, "next_outside_window": marks, "events": events }),
        );
        return Exit::Success;
    }
    let fires = match &s.fleet {
        Some(f) => format!(
            "a fleet of runbook {} (fleet file {})",
            s.runbook_name,
            f.source_path.as_deref().unwrap_or("pinned")
        ),
        None => format!("a run of runbook {}", s.runbook_name),
    };
    let mut out = format!(
        "schedule {}\nfires: {fires} at cron `{}` ({}); next at {}\nrunbook: {} (sha256 {}){}\nparams: {}\n\
         overlap: {}  catch-up: {}  auto-approve: {}\n",
        s.name,
        s.cron,
        s.tz,
        next.first().map_or("never", String::as_str),
        s.runbook_name,
        short_sha(&s.runbook_sha256),
        s.source_path
            .as_deref()
            .map(|p| format!(", pinned from {p}"))
            .unwrap_or_default(),
        params_text(&s.params),
        s.overlap.as_str(),
        fogbook_activities::duration::format(std::time::Duration::from_millis(s.catch_up_ms.max(0).unsigned_abs())),
        s.auto_approve
    );
    if let Some(w) = &s.window {
        out.push_str(&format!("window: {}\n", w["text"].as_str().unwrap_or("?")));
    }
    out.push_str(&format!("state: {}\n", if s.paused { "paused" } else { "active" }));
    out.push_str(&format!("last fire: {}\n", last_fire(store, &events, fmt).await));
    if let Some(r) = &s.active_run {
        out.push_str(&format!("active run: {r}\n"));
    }
    if s.queued > 0 {
        out.push_str(&format!("queued fires: {}\n", s.queued));
    }
    out.push_str("next:\n");
    for (t, text) in next_ms.iter().zip(&next) {
        match window_mark(&s, *t, fmt) {
            Some(mark) => out.push_str(&format!("  {text}  ({mark})\n")),
            None => out.push_str(&format!("  {text}\n")),
        }
    }
    out.push_str("history:\n");
    for e in events.iter().rev().take(20).rev() {
        out.push_str(&history_line(e, fmt));
    }
    output::data(&out);
    Exit::Success
}
