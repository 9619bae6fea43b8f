//! Escaping and the shared style sheet.

/// Escapes text for use in HTML text and in double-quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A long id cut to `max` characters with an ellipsis, escaped, inside an element whose
/// `title` holds the whole id (so a table column keeps its width and nothing is lost).
pub(crate) fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return format!("<span class=\"id\">{}</span>", esc(s));
    }
    let cut: String = s.chars().take(max.saturating_sub(1)).collect();
    format!("<span class=\"id\" title=\"{}\">{}…</span>", esc(s), esc(&cut))
}

/// The style sheet of the report and of the served pages (screen and print).
pub(crate) const CSS: &str = r#"
:root { --fg: #1d2733; --muted: #5b6776; --line: #d7dde4; --bg: #ffffff; --band: #fdecea;
  --band-edge: #d93025; --listener: #fff4d6; --listener-edge: #b7791f; --ok: #1e8e3e;
  --bad: #d93025; --run: #1a73e8; --wait: #9aa0a6; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: var(--fg); background: var(--bg); margin: 0 auto; padding: 16px 24px; max-width: 1280px; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 24px 0 8px;
  border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.meta { color: var(--muted); margin: 0 0 8px; }
.status { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
  font-weight: 600; background: #e8eaed; }
.status-succeeded, .status-completed { background: #e6f4ea; color: var(--ok); }
.status-failed, .status-cancelled { background: #fce8e6; color: var(--bad); }
.status-running { background: #e8f0fe; color: var(--run); }
.status-waiting, .status-stalled { background: #fef7e0; color: #8a5a00; }
table { border-collapse: collapse; width: 100%; margin: 4px 0 12px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 6px; text-align: left;
  vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.id { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px;
  overflow-wrap: anywhere; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 11px; margin: 2px 0;
  max-height: 24em; overflow: auto; background: #f8f9fa; padding: 4px; }
details > summary { cursor: pointer; color: var(--muted); }
.timeline { width: 100%; height: auto; border: 1px solid var(--line); }
.timeline text { font: 11px system-ui, sans-serif; fill: var(--fg); }
.timeline .axis text, .timeline .muted { fill: var(--muted); }
.timeline .bar { fill: #c6dafc; }
.timeline .bar.failed { fill: #f6aea9; }
.timeline .attempt { fill: var(--run); }
.timeline .attempt.failed { fill: var(--bad); }
.timeline .waiting { fill: var(--wait); }
.timeline .retry-wait { fill: none; stroke: var(--bad); stroke-dasharray: 3 2; }
.timeline .window-unprotected { fill: #f28b82; stroke: var(--band-edge); fill-opacity: .3; }
.timeline .window-listener_unavailable { fill: #fdd663; stroke: var(--listener-edge);
  fill-opacity: .3; }
.timeline .limit { stroke: var(--band-edge); stroke-width: 2; stroke-dasharray: 6 3; }
.timeline .mark { fill: #7b1fa2; }
.timeline .grid { stroke: var(--line); }
.legend span { margin-right: 14px; font-size: 12px; color: var(--muted); }
.legend i { display: inline-block; width: 12px; height: 10px; margin-right: 4px;
  vertical-align: -1px; border: 1px solid #999; }
.ok { color: var(--ok); font-weight: 600; } .bad { color: var(--bad); font-weight: 600; }
nav a { margin-right: 14px; }
form.inline { display: inline-flex; gap: 6px; align-items: center; flex-wrap: wrap; }
input[type=text], input[type=password] { padding: 3px 6px; }
button { padding: 3px 10px; cursor: pointer; }
.notice { background: #fef7e0; padding: 6px 10px; border-left: 4px solid #f9ab00; }
@page { size: A4 landscape; margin: 12mm; }
@media print {
  body { padding: 0; max-width: none; font-size: 11px; }
  nav, form, .live-note { display: none; }
  h2 { break-after: avoid; }
  tr, .timeline { break-inside: avoid; }
  pre { max-height: none; overflow: visible; }
  th, td { padding: 2px 4px; }
  #audit td, #steps td { font-size: 9px; }
}
"#;
