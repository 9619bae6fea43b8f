//! `fogbook report RUN --html FILE` (issue 16): one self-contained HTML file whose structure
//! a strict HTML checker accepts, that references nothing outside itself, and that shows the
//! timeline (one bar per step, the window bands with their durations, the limit), the steps
//! with their ARM ids, and the audit trail verified at export time.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::Output;

use crate::common::{Sandbox, code, stderr, stdout};

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The arguments of a change-primary-region rehearsal on the built-in emulator.
pub(crate) fn rehearsal_args(extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "run".to_owned(),
        root().join("runbooks/change-primary-region.yaml").display().to_string(),
        "--params".to_owned(),
        root().join("examples/change-primary-region.yaml").display().to_string(),
        "--set".to_owned(),
        format!(
            "admin_password_file={}",
            root().join("examples/sim-admin-password.txt").display()
        ),
        "--sim".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// Runs a whole change-primary-region rehearsal (auto-approved) and returns its run id.
pub(crate) fn finished_rehearsal(sb: &Sandbox) -> String {
    let args = rehearsal_args(&["--auto-approve"]);
    let out: Output = sb.cmd().args(&args).output().expect("spawn fogbook");
    assert_eq!(code(&out), 0, "rehearsal failed: {}", stderr(&out));
    sb.last_run_id()
}

/// A duration as the pages print it (the rules of `fogbook report`).
pub(crate) fn human(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        panic!("the tests expect windows shorter than a minute, got {ms}ms")
    }
}

/// One element of a checked document.
#[derive(Debug)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) attrs: BTreeMap<String, String>,
    /// The text directly and indirectly inside it (entities left as written).
    pub(crate) text: String,
    /// Inside an `<svg>` (where `<title>` is a tooltip, not the document's title).
    pub(crate) in_svg: bool,
}

impl Element {
    pub(crate) fn has_class(&self, class: &str) -> bool {
        self.attrs
            .get("class")
            .is_some_and(|c| c.split_whitespace().any(|x| x == class))
    }
}

const VOID: [&str; 13] = [
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr",
];
/// Elements an HTML parser would silently close an open `<p>` for.
const BLOCK: [&str; 22] = [
    "address", "article", "aside", "details", "div", "dl", "fieldset", "footer", "form", "h1", "h2", "h3", "h4", "h5",
    "h6", "header", "hr", "main", "nav", "ol", "pre", "table",
];

fn allowed_child(parent: &str, child: &str) -> bool {
    match parent {
        "table" => matches!(child, "caption" | "colgroup" | "thead" | "tbody" | "tfoot" | "tr"),
        "thead" | "tbody" | "tfoot" => child == "tr",
        "tr" => matches!(child, "td" | "th"),
        "p" => !BLOCK.contains(&child) && child != "p" && child != "section" && child != "ul",
        "html" => matches!(child, "head" | "body"),
        _ => true,
    }
}

/// A strict well-formedness and structure check of an HTML document, stricter than the
/// HTML parsing rules: every non-void element is closed explicitly and in order, attribute
/// values are quoted and not repeated, ids are unique, entities are well formed, and
/// nesting an HTML parser would repair (a table inside a `<p>`, a `<div>` directly in a
/// `<tr>`) is an error. Returns the elements in document order.
pub(crate) fn check_html(doc: &str) -> Result<Vec<Element>, String> {
    let rest = doc
        .strip_prefix("<!DOCTYPE html>")
        .ok_or("the document does not start with <!DOCTYPE html>")?;
    let bytes = rest.as_bytes();
    let mut i = 0;
    let mut elements: Vec<Element> = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    let mut ids = HashSet::new();
    let mut in_svg = 0usize;
    let push_text = |elements: &mut Vec<Element>, stack: &[usize], text: &str| -> Result<(), String> {
        check_entities(text)?;
        if text.contains('>') {
            return Err(format!("unescaped `>` in text: {}", &text[..text.len().min(80)]));
        }
        for &e in stack {
            elements[e].text.push_str(text);
        }
        Ok(())
    };
    while i < bytes.len() {
        let Some(lt) = rest[i..].find('<') else {
            push_text(&mut elements, &stack, &rest[i..])?;
            break;
        };
        push_text(&mut elements, &stack, &rest[i..i + lt])?;
        i += lt;
        if rest[i..].starts_with("<!--") {
            let end = rest[i..].find("-->").ok_or("unterminated comment")?;
            i += end + 3;
            continue;
        }
        let gt = rest[i..].find('>').ok_or("unterminated tag")? + i;
        let tag = &rest[i + 1..gt];
        i = gt + 1;
        if let Some(name) = tag.strip_prefix('/') {
            let name = name.trim();
            let top = stack.pop().ok_or_else(|| format!("</{name}> closes nothing"))?;
            if elements[top].name != name {
                return Err(format!("</{name}> closes <{}>", elements[top].name));
            }
            if name == "svg" {
                in_svg -= 1;
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name_end = tag.find(|c: char| c.is_whitespace()).unwrap_or(tag.len());
        let name = &tag[..name_end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("bad tag name in <{tag}>"));
        }
        let attrs = parse_attrs(&tag[name_end..]).map_err(|e| format!("<{name}>: {e}"))?;
        if let Some(id) = attrs.get("id")
            && !ids.insert(id.clone())
        {
            return Err(format!("duplicate id `{id}`"));
        }
        if let Some(&parent) = stack.last()
            && !allowed_child(&elements[parent].name, name)
        {
            return Err(format!(
                "<{name}> is not allowed directly inside <{}>",
                elements[parent].name
            ));
        }
        if self_closing && in_svg == 0 && !VOID.contains(&name) {
            return Err(format!("<{name}/> is not a void element"));
        }
        elements.push(Element {
            name: name.to_owned(),
            attrs,
            text: String::new(),
            in_svg: in_svg > 0,
        });
        let idx = elements.len() - 1;
        if name == "script" || name == "style" {
            let close = format!("</{name}>");
            let end = rest[i..].find(&close).ok_or_else(|| format!("unterminated <{name}>"))?;
            elements[idx].text = rest[i..i + end].to_owned();
            i += end + close.len();
            continue;
        }
        if VOID.contains(&name) || self_closing {
            continue;
        }
        if name == "svg" {
            in_svg += 1;
        }
        stack.push(idx);
    }
    if let Some(&open) = stack.last() {
        return Err(format!("<{}> is never closed", elements[open].name));
    }
    for required in ["html", "head", "title", "body"] {
        let n = elements.iter().filter(|e| e.name == required && !e.in_svg).count();
        if n != 1 {
            return Err(format!("{n} <{required}> elements, expected exactly one"));
        }
    }
    if !elements
        .iter()
        .any(|e| e.name == "html" && e.attrs.contains_key("lang"))
    {
        return Err("<html> has no lang".to_owned());
    }
    if !elements
        .iter()
        .any(|e| e.name == "meta" && e.attrs.get("charset").map(String::as_str) == Some("utf-8"))
    {
        return Err("no <meta charset=\"utf-8\">".to_owned());
    }
    Ok(elements)
}

fn check_entities(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        let after = &rest[amp + 1..];
        let semi = after
            .find(';')
            .ok_or_else(|| format!("bare `&` in: {}", &rest[..rest.len().min(60)]))?;
        let name = &after[..semi];
        let ok = (name.starts_with('#') && name.len() > 1 && name[1..].chars().all(|c| c.is_ascii_digit()))
            || ["amp", "lt", "gt", "quot", "nbsp"].contains(&name);
        if !ok {
            return Err(format!("unknown entity &{name};"));
        }
        rest = &after[semi + 1..];
    }
    Ok(())
}

fn parse_attrs(mut s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return Ok(out);
        }
        let end = s.find(|c: char| c == '=' || c.is_whitespace()).unwrap_or(s.len());
        let name = s[..end].to_ascii_lowercase();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':') {
            return Err(format!("bad attribute name `{name}`"));
        }
        s = &s[end..];
        let value = if let Some(v) = s.strip_prefix('=') {
            let v = v
                .strip_prefix('"')
                .ok_or_else(|| format!("attribute `{name}` is not double-quoted"))?;
            let close = v.find('"').ok_or_else(|| format!("attribute `{name}` is not closed"))?;
            check_entities(&v[..close])?;
            s = &v[close + 1..];
            v[..close].to_owned()
        } else {
            String::new()
        };
        if out.insert(name.clone(), value).is_some() {
            return Err(format!("attribute `{name}` repeated"));
        }
    }
}

/// What would make a browser load anything: a URL in an attribute, a source or link
/// attribute, a script, a style import or `url()`. (URLs in text, such as the ARM endpoint
/// in the audit trail, are data and load nothing.)
pub(crate) fn assert_self_contained(elements: &[Element]) {
    for e in elements {
        for attr in [
            "src",
            "href",
            "srcset",
            "data",
            "action",
            "xlink:href",
            "poster",
            "background",
        ] {
            assert!(!e.attrs.contains_key(attr), "<{}> has a `{attr}` attribute", e.name);
        }
        for (k, v) in &e.attrs {
            assert!(
                !v.contains("://") && !v.starts_with("//"),
                "<{} {k}=\"{v}\"> names a URL",
                e.name
            );
        }
        assert!(
            !matches!(
                e.name.as_str(),
                "script" | "link" | "img" | "iframe" | "object" | "embed" | "base" | "image"
            ),
            "the report has a <{}>",
            e.name
        );
        if e.name == "style" {
            for needle in ["url(", "@import", "@font-face", "://"] {
                assert!(!e.text.contains(needle), "the style sheet has `{needle}`");
            }
        }
    }
}

#[test]
fn report_html_is_well_formed_self_contained_and_complete_issue_16() {
    let sb = Sandbox::new();
    let run = finished_rehearsal(&sb);
    let file = sb.path("report.html");
    let out = sb.run(&["report", &run, "--html", file.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).is_empty(),
        "the report goes to the file, stdout stays empty: {}",
        stdout(&out)
    );
    let doc = std::fs::read_to_string(&file).unwrap();
    let elements = check_html(&doc).unwrap_or_else(|e| panic!("the HTML report is not well formed: {e}"));
    assert_self_contained(&elements);

    // One bar per step, in runbook order.
    let db = sb.sql();
    let steps: Vec<String> = db
        .prepare("SELECT step_id FROM steps WHERE run_id = ?1 ORDER BY position")
        .unwrap()
        .query_map([&run], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let shipped = crate::seed_runbooks::runbook_steps("change-primary-region", &[]).len();
    assert_eq!(steps.len(), shipped, "every step of the runbook has a row");
    let rows: Vec<&Element> = elements
        .iter()
        .filter(|e| e.name == "g" && e.has_class("step"))
        .collect();
    assert_eq!(
        rows.iter().map(|g| g.attrs["data-step"].as_str()).collect::<Vec<_>>(),
        steps,
        "one timeline row per step, in order"
    );
    let bars = elements
        .iter()
        .filter(|e| e.name == "rect" && e.has_class("bar"))
        .count();
    assert_eq!(bars, steps.len(), "one bar per step");

    // The unprotected window: a band whose label has the recorded duration and databases.
    let (opened, closed, subject): (i64, i64, String) = db
        .query_row(
            "SELECT opened_at, closed_at, subject FROM windows WHERE run_id = ?1 AND kind = 'unprotected'",
            [&run],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let label = elements
        .iter()
        .find(|e| e.name == "g" && e.attrs.get("data-kind").map(String::as_str) == Some("unprotected"))
        .expect("an unprotected window band")
        .text
        .clone();
    let expected = format!("unprotected {}", human(closed - opened));
    assert!(label.contains(&expected), "band label `{label}` lacks `{expected}`");
    assert!(
        label.contains(&format!("databases of {subject}")),
        "band label `{label}` lacks the databases"
    );
    // A rehearsal: simulated time (3600x by default) beside real time.
    assert!(
        doc.contains("a rehearsal on the ARM emulator at 3600× simulated time"),
        "the rehearsal is not named"
    );
    let simulated = (closed - opened) * 3600 / 1000;
    let sim_text = fogbook_activities::duration::format(std::time::Duration::from_secs(simulated as u64));
    assert!(
        label.contains(&sim_text) && label.contains("simulated)"),
        "band `{label}` lacks the simulated `{sim_text}`"
    );
    // The runbook sets max_unprotected: 8h, which a rehearsal does not reach.
    assert!(doc.contains("max_unprotected 8h"), "the limit is drawn");

    // Approvals as marks with who.
    let marks: Vec<&Element> = elements
        .iter()
        .filter(|e| e.name == "path" && e.has_class("mark"))
        .collect();
    assert!(
        marks
            .iter()
            .filter(|m| m.text.contains("approved by auto-approve"))
            .count()
            == 3,
        "three approval marks: {marks:?}"
    );

    // The steps table carries an ARM request and correlation id recorded by the step.
    let (request, correlation): (String, String) = db
        .query_row(
            "SELECT json_extract(output, '$.arm_requests[0].request_id'), json_extract(output, '$.arm_requests[0].correlation_id') \
             FROM steps WHERE run_id = ?1 AND step_id = 'create-new-instance'",
            [&run],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let steps_table = elements
        .iter()
        .find(|e| e.attrs.get("id").map(String::as_str) == Some("steps"))
        .unwrap();
    assert!(
        steps_table.text.contains(&request) || doc.contains(&format!("title=\"{request}\"")),
        "request id {request}"
    );
    assert!(doc.contains(&correlation), "correlation id {correlation}");

    // The audit trail, verified at export time, with the head the verifier computes.
    let verify = sb.run(&["audit", "verify", &run, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    let head = v["report"]["head"].as_str().unwrap();
    let result = elements
        .iter()
        .find(|e| e.attrs.get("id").map(String::as_str) == Some("audit-result"))
        .unwrap();
    assert!(result.text.contains("chain verified"), "{}", result.text);
    assert!(result.text.contains(head), "head {head} in `{}`", result.text);
    let events: i64 = db
        .query_row("SELECT count(*) FROM events WHERE run_id = ?1", [&run], |r| r.get(0))
        .unwrap();
    let audit_at = elements
        .iter()
        .position(|e| e.attrs.get("id").map(String::as_str) == Some("audit"))
        .unwrap();
    // The audit table is the last table of the document.
    let audit_rows = elements[audit_at..].iter().filter(|e| e.name == "tr").count();
    assert_eq!(
        audit_rows as i64,
        events + 1,
        "every event in the audit table (plus the header row)"
    );
}

#[test]
fn the_html_checker_rejects_what_a_browser_would_repair() {
    let ok = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>t</title></head><body><p>a &amp; b</p></body></html>";
    assert!(check_html(ok).is_ok(), "{:?}", check_html(ok).err());
    for (bad, why) in [
        (ok.replace("<p>a", "<p><div>a</div>"), "div in p"),
        (ok.replace("</p>", ""), "unclosed p"),
        (ok.replace("a &amp; b", "a & b"), "bare ampersand"),
        (
            ok.replace("<p>a &amp; b</p>", "<table><div></div></table>"),
            "div in table",
        ),
        (ok.replace("lang=\"en\"", "lang=en"), "unquoted attribute"),
        (
            ok.replace("<p>", "<p id=\"x\"><b id=\"x\">")
                .replace("</p>", "</b></p>"),
            "duplicate id",
        ),
        (ok.replace("<!DOCTYPE html>", ""), "no doctype"),
    ] {
        assert!(check_html(&bad).is_err(), "accepted: {why}");
    }
}

#[test]
fn history_text_is_a_readable_table_issue_16() {
    let sb = Sandbox::new();
    let run = finished_rehearsal(&sb);
    let events: i64 = sb
        .sql()
        .query_row("SELECT count(*) FROM events WHERE run_id = ?1", [&run], |r| r.get(0))
        .unwrap();
    let out = sb.run(&["history", &run]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("run {run}"));
    for col in ["#", "TIME", "EVENT", "STEP", "WHO", "DETAIL"] {
        assert!(
            lines[1].split_whitespace().any(|c| c == col),
            "header `{}` lacks {col}",
            lines[1]
        );
    }
    assert_eq!(lines.len() as i64, events + 2, "one line per event:\n{text}");
    let widest = lines.iter().map(|l| l.chars().count()).max().unwrap();
    assert!(widest <= 160, "a line of {widest} characters:\n{text}");
    // The columns line up: every event line has its event name where the header says.
    let at = lines[1].find("EVENT").unwrap();
    for l in &lines[2..] {
        let kind = l.chars().skip(at).take(22).collect::<String>();
        assert!(kind.trim().contains('.'), "misaligned line: {l}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("window.opened") && l.contains("unprotected window, databases of mi-fog-b")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("step.approved") && l.contains("auto-approve")),
        "{text}"
    );

    // -v adds each event's whole JSON data below its line.
    let request: String = sb
        .sql()
        .query_row(
            "SELECT json_extract(output, '$.arm_requests[0].request_id') FROM steps WHERE run_id = ?1 AND step_id = 'create-new-instance'",
            [&run],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!text.contains(&request), "the table shows the short detail only");
    let verbose = stdout(&sb.run(&["history", &run, "-v"]));
    assert!(verbose.contains(&format!("\"request_id\": \"{request}\"")), "{verbose}");
}

#[test]
fn report_html_timeline_shows_a_failed_attempt_the_retry_wait_and_a_wait_issue_16() {
    let sb = Sandbox::new();
    let marker = sb.path("marker");
    let out_file = sb.path("out.log");
    let out = sb.run(&[
        "run",
        crate::common::fixture("retry-then-step.yaml").to_str().unwrap(),
        "--set",
        &format!("marker={}", marker.display()),
        "--set",
        &format!("out={}", out_file.display()),
        "--set",
        "pause=300ms",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let run = sb.last_run_id();
    let file = sb.path("report.html");
    let out = sb.run(&["report", &run, "--html", file.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc = std::fs::read_to_string(&file).unwrap();
    let elements = check_html(&doc).unwrap_or_else(|e| panic!("not well formed: {e}"));
    assert_self_contained(&elements);
    let rects = |class: &str| {
        elements
            .iter()
            .filter(|e| e.name == "rect" && e.has_class(class))
            .map(|e| e.text.clone())
            .collect::<Vec<_>>()
    };
    // `flaky` failed its first attempt, waited 200ms, and succeeded on the second.
    let failed = rects("failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].starts_with("flaky: failed attempt 1"), "{failed:?}");
    let retry = rects("retry-wait");
    assert_eq!(retry.len(), 1, "{retry:?}");
    assert!(
        retry[0].starts_with("flaky: waiting to retry after attempt 1"),
        "{retry:?}"
    );
    let attempts: Vec<String> = rects("attempt")
        .into_iter()
        .filter(|t| t.starts_with("flaky: attempt 2"))
        .collect();
    assert_eq!(attempts.len(), 1, "the second attempt");
    // `pause` is a durable wait, drawn as waiting.
    let waiting = rects("waiting");
    assert!(waiting.iter().any(|t| t.starts_with("pause: waiting 1")), "{waiting:?}");
    assert_eq!(
        elements
            .iter()
            .filter(|e| e.name == "rect" && e.has_class("bar"))
            .count(),
        3
    );
    // Not a rehearsal: no simulated time.
    assert!(!doc.contains("simulated"), "a local run shown as a rehearsal");
}
