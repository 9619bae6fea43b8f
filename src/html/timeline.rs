//! The timeline as inline SVG: a time axis, one row and one bar per step (attempts, retry
//! waits and approval waits drawn inside the bar), windows as bands across all rows, marks
//! for approvals and operator actions, and the `max_unprotected` limit line.

use std::fmt::Write as _;

use fogbook_state::{EventRow, Millis, WindowKind, format_ms};

use super::markup::esc;
use super::view::{RunView, human};

const WIDTH: f64 = 1200.0;
const X0: f64 = 240.0;
const X1: f64 = WIDTH - 24.0;
const ROW_H: f64 = 22.0;
const LINE_H: f64 = 16.0;

/// One drawn piece of a step's bar.
struct Segment {
    from: Millis,
    to: Millis,
    class: &'static str,
    title: String,
}

/// A point event drawn as a mark.
struct Mark {
    at: Millis,
    label: String,
}

struct Scale {
    t0: Millis,
    span: f64,
}

impl Scale {
    fn x(&self, t: Millis) -> f64 {
        let f = ((t - self.t0) as f64 / self.span).clamp(0.0, 1.0);
        X0 + f * (X1 - X0)
    }
}

/// Who did it, for events that name a person (`by`).
pub(super) fn actor(e: &EventRow) -> Option<String> {
    let by = e.data.get("by")?;
    match by {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(m) => m.get("user").and_then(|u| u.as_str()).map(str::to_owned).or_else(|| {
            m.get("command")
                .and_then(|c| c.as_str())
                .map(|c| format!("`{c}` command"))
        }),
        _ => None,
    }
}

fn segments(view: &RunView, step: &str, uses: &str) -> (Vec<Segment>, Vec<Mark>) {
    let end = view.end();
    let mut out = Vec::new();
    let mut marks = Vec::new();
    // The open piece: (start, class, attempt).
    let mut open: Option<(Millis, &'static str, u32)> = None;
    let waiting_kind = matches!(uses, "approval" | "wait");
    for e in view.events.iter().filter(|e| e.step_id.as_deref() == Some(step)) {
        let attempt = e.attempt.unwrap_or(0);
        match e.kind.as_str() {
            "step.started" | "step.reentered" => {
                if let Some((from, class, a)) = open.take() {
                    let class = if class == "retry-wait" {
                        class
                    } else {
                        "attempt interrupted"
                    };
                    out.push(seg(from, e.at, class, a, step));
                }
                let class = if waiting_kind { "waiting" } else { "attempt" };
                open = Some((e.at, class, attempt));
            }
            "step.approved" => {
                if let Some((from, class, a)) = open.take() {
                    out.push(seg(from, e.at, class, a, step));
                    open = Some((e.at, "attempt", a));
                }
                let who = actor(e).unwrap_or_else(|| "?".to_owned());
                marks.push(Mark {
                    at: e.at,
                    label: format!("approved by {who} at {}", format_ms(e.at)),
                });
            }
            "step.retry_scheduled" => {
                if let Some((from, _, a)) = open.take() {
                    out.push(seg(from, e.at, "attempt failed", a, step));
                }
                open = Some((e.at, "retry-wait", attempt));
            }
            "step.completed" | "step.skipped" => {
                if let Some((from, class, a)) = open.take() {
                    out.push(seg(from, e.at, class, a, step));
                }
            }
            "step.failed" => {
                if let Some((from, _, a)) = open.take() {
                    out.push(seg(from, e.at, "attempt failed", a, step));
                }
            }
            _ => {}
        }
    }
    if let Some((from, class, a)) = open {
        out.push(seg(from, end, class, a, step));
    }
    (out, marks)
}

fn seg(from: Millis, to: Millis, class: &'static str, attempt: u32, step: &str) -> Segment {
    let what = match class {
        "waiting" => "waiting",
        "retry-wait" => "waiting to retry after attempt",
        "attempt failed" => "failed attempt",
        "attempt interrupted" => "interrupted attempt",
        _ => "attempt",
    };
    Segment {
        from,
        to,
        class,
        title: format!(
            "{step}: {what} {attempt}, {} ({} to {})",
            human(to - from),
            format_ms(from),
            format_ms(to)
        ),
    }
}

fn tick_step(span_ms: Millis) -> Millis {
    const STEPS: [Millis; 20] = [
        100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
        1_800_000, 3_600_000, 7_200_000, 21_600_000, 43_200_000, 86_400_000,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| span_ms / s <= 8)
        .unwrap_or(86_400_000 * (span_ms / (8 * 86_400_000) + 1))
}

/// The SVG of a run's timeline.
pub(super) fn svg(view: &RunView) -> String {
    let run = &view.snap.run;
    let t0 = run.created_at;
    let end = view.end();
    let span_ms = (end - t0).max(1);
    let scale = Scale {
        t0,
        span: span_ms as f64,
    };
    let windows = &view.snap.windows;
    let limit_line = view.max_unprotected.is_some() && windows.iter().any(|w| w.kind == WindowKind::Unprotected);
    // Rehearsals get a second axis line with simulated time.
    let axis_h = if view.sim_scale.is_some() { 28.0 } else { 16.0 };
    let header = axis_h + 4.0 + (windows.len() + usize::from(limit_line)) as f64 * LINE_H;
    let ops_y = header;
    let rows_y = ops_y + ROW_H;
    let height = rows_y + view.snap.steps.len() as f64 * ROW_H + 8.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"timeline\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"timeline of run {}\">",
        esc(&run.id)
    );
    // Axis and grid.
    let step = tick_step(span_ms);
    s.push_str("<g class=\"axis\">");
    let mut t = 0;
    while t <= span_ms {
        let x = scale.x(t0 + t);
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{axis_h}\" x2=\"{x:.1}\" y2=\"{height}\"></line><text x=\"{x:.1}\" y=\"12\" text-anchor=\"middle\">+{}</text>",
            human(t)
        );
        if let Some(sim) = view.sim_simulated(t) {
            let _ = write!(
                s,
                "<text class=\"sim-tick\" x=\"{x:.1}\" y=\"24\" text-anchor=\"middle\">sim +{sim}</text>"
            );
        }
        t += step;
    }
    s.push_str("</g>");
    // Windows: a band over every row, its label on its own line at the top.
    for (i, w) in windows.iter().enumerate() {
        let kind = w.kind.as_str();
        let to = w.closed_at.unwrap_or(end);
        let (xa, xb) = (scale.x(w.opened_at), scale.x(to));
        let dur = view.dur(to - w.opened_at);
        let label_y = axis_h + (i as f64 + 1.0) * LINE_H - 4.0;
        let state = if w.closed_at.is_some() { "" } else { " (still open)" };
        let dbs = w
            .subject
            .as_deref()
            .map(|s| format!(" · databases of {s}"))
            .unwrap_or_default();
        let _ = write!(
            s,
            "<g class=\"window\" data-kind=\"{kind}\"><rect class=\"window-{kind}\" x=\"{xa:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{kind} window: opened by {} at {}, {}</title></rect>\
             <text class=\"window-label\" x=\"{:.1}\" y=\"{label_y:.1}\" text-anchor=\"{}\">{kind} {dur}{state}{}</text></g>",
            label_y - 11.0,
            (xb - xa).max(2.0),
            height - label_y + 11.0,
            esc(&w.opened_step),
            format_ms(w.opened_at),
            match (&w.closed_step, w.closed_at) {
                (Some(c), Some(at)) => format!("closed by {} at {}", esc(c), format_ms(at)),
                _ => format!("open for {dur}"),
            },
            if xa > (X0 + X1) / 2.0 { xb } else { xa },
            if xa > (X0 + X1) / 2.0 { "end" } else { "start" },
            esc(&dbs),
        );
        if let (WindowKind::Unprotected, Some(limit)) = (w.kind, view.max_unprotected) {
            let limit_ms = Millis::try_from(limit.as_millis()).unwrap_or(Millis::MAX);
            // In a rehearsal the limit is simulated time: it falls where the simulated clock
            // reaches it.
            let at = w.opened_at.saturating_add(view.real_of_simulated(limit_ms));
            let label = format!("max_unprotected {}", human(limit_ms));
            if at <= end {
                let x = scale.x(at);
                let _ = write!(
                    s,
                    "<line class=\"limit\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{height}\"><title>{label}: reached at {}</title></line><text class=\"limit-label\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
                    label_y - 11.0,
                    format_ms(at),
                    header - 4.0
                );
            } else {
                // Beyond the chart: an arrow at the right edge says where the limit lies.
                let _ = write!(
                    s,
                    "<g class=\"limit-offscale\"><line class=\"limit\" x1=\"{X1}\" y1=\"{:.1}\" x2=\"{X1}\" y2=\"{height}\"></line><text class=\"limit-label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{label} → reached at {} (off the chart)</text></g>",
                    header - LINE_H,
                    X1 - 4.0,
                    header - 4.0,
                    format_ms(at)
                );
            }
        }
    }
    // Operator actions on their own row.
    let _ = write!(
        s,
        "<text class=\"muted\" x=\"4\" y=\"{:.1}\">operator actions</text>",
        ops_y + 15.0
    );
    for e in &view.events {
        let Some(who) = actor(e) else { continue };
        if e.kind == "step.approved" {
            continue;
        }
        mark(
            &mut s,
            &scale,
            e.at,
            ops_y + 11.0,
            &format!("{} by {who} at {}", e.kind, format_ms(e.at)),
        );
    }
    // One row and one bar per step that started.
    for (i, row) in view.snap.steps.iter().enumerate() {
        let y = rows_y + i as f64 * ROW_H;
        let uses = view.uses(&row.step_id);
        let label = if row.step_id.chars().count() > 34 {
            format!("{}…", row.step_id.chars().take(33).collect::<String>())
        } else {
            row.step_id.clone()
        };
        let _ = write!(
            s,
            "<g class=\"step\" data-step=\"{}\" data-status=\"{}\"><text x=\"4\" y=\"{:.1}\"><title>{} ({uses})</title>{}</text>",
            esc(&row.step_id),
            row.status.as_str(),
            y + 15.0,
            esc(&row.step_id),
            esc(&label),
        );
        if let Some(start) = row.first_started_at {
            let stop = row.finished_at.unwrap_or(end);
            let (xa, xb) = (scale.x(start), scale.x(stop));
            let failed = if row.status.as_str() == "failed" { " failed" } else { "" };
            let _ = write!(
                s,
                "<rect class=\"bar{failed}\" x=\"{xa:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"14\"><title>{}: {} , {} attempt(s), {}</title></rect>",
                y + 4.0,
                (xb - xa).max(2.0),
                esc(&row.step_id),
                row.status.as_str(),
                row.attempt,
                human(stop - start)
            );
            let (segs, marks) = segments(view, &row.step_id, uses);
            for g in segs {
                let (xa, xb) = (scale.x(g.from), scale.x(g.to));
                let _ = write!(
                    s,
                    "<rect class=\"{}\" x=\"{xa:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"8\"><title>{}</title></rect>",
                    g.class,
                    y + 7.0,
                    (xb - xa).max(1.5),
                    esc(&g.title)
                );
            }
            for m in marks {
                mark(&mut s, &scale, m.at, y + 11.0, &m.label);
            }
        }
        s.push_str("</g>");
    }
    s.push_str("</svg>");
    s
}

fn mark(s: &mut String, scale: &Scale, at: Millis, cy: f64, label: &str) {
    let x = scale.x(at);
    let _ = write!(
        s,
        "<path class=\"mark\" d=\"M{x:.1} {:.1} l5 6 l-5 6 l-5 -6 z\"><title>{}</title></path>",
        cy - 6.0,
        esc(label)
    );
}
