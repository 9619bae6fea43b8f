//! From YAML text to a validated [`Runbook`], reporting every problem at once.

use std::collections::BTreeMap;

use super::diagnostics::Diagnostics;
use super::model::{Limits, NotifyConfig, NotifyEvent, ParamDecl, ParamType, Runbook};
use super::params::check_value;
use super::parse_step::read_step;
use super::reader::{Cx, join};
use super::refs::{RefScope, check_paths};
use super::yaml::{self, Node, Value};
use crate::expr::Template;

const TOP_FIELDS: &[&str] = &[
    "runbook",
    "version",
    "description",
    "params",
    "limits",
    "locks",
    "notify",
    "steps",
];
const PARAM_FIELDS: &[&str] = &["type", "description", "default"];
const NOTIFY_EVENTS: &[&str] = &[
    "window_opened",
    "window_closed",
    "max_unprotected_exceeded",
    "run_succeeded",
    "run_failed",
];

/// Largest accepted runbook or parameter file.
pub(crate) const MAX_FILE_BYTES: usize = 1024 * 1024;

/// Parses and validates a runbook. `origin` names the file in messages.
///
/// Every problem is reported, in source order: YAML syntax, unknown fields, wrong types,
/// unknown activities and inputs, bad durations, dangling and forward references,
/// duplicate ids, windows closed without being opened, invalid `when` conditions, retry
/// values out of range. Warnings (a window left open at the end, …) do not fail; they are
/// in [`Runbook::warnings`].
pub fn parse(text: &str, origin: &str) -> Result<Runbook, Diagnostics> {
    let mut cx = Cx::new(origin, text);
    if text.len() > MAX_FILE_BYTES {
        cx.error(
            None,
            "",
            format!("the file is larger than {} KiB", MAX_FILE_BYTES / 1024),
        );
        return cx.finish().map(|_| unreachable_runbook());
    }
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => {
            cx.syntax(e);
            return Err(cx.finish().err().unwrap_or_default());
        }
    };
    cx.check_duplicates(&root, "");
    let rb = read_runbook(&mut cx, &root);
    match (cx.finish(), rb) {
        (Ok(warnings), Some(mut rb)) => {
            rb.warnings = warnings;
            Ok(rb)
        }
        (Err(d), _) => Err(d),
        // Every path that returns no runbook has reported an error.
        (Ok(_), None) => Err(Diagnostics::default()),
    }
}

/// Never called: `finish` fails whenever an error was recorded.
fn unreachable_runbook() -> Runbook {
    Runbook {
        name: String::new(),
        version: 0,
        description: None,
        params: Vec::new(),
        limits: Limits::default(),
        locks: Vec::new(),
        notify: None,
        steps: Vec::new(),
        warnings: Vec::new(),
    }
}

fn read_runbook(cx: &mut Cx<'_>, root: &Node) -> Option<Runbook> {
    if matches!(root.value, Value::Null) {
        cx.error(
            root.pos,
            "",
            "the file is empty; a runbook is a mapping with at least `runbook`, `version` and `steps`",
        );
        return None;
    }
    let top = cx.mapping(root, "", "a runbook", TOP_FIELDS, &["runbook", "version", "steps"])?;
    // Top-level `x-…` keys are free (a place for anchors); `Cx::mapping` skips them.

    let name = top.get("runbook").and_then(|n| runbook_name(cx, n));
    let version = top.get("version").and_then(|n| {
        let v = cx.integer(n, "version", "`version`")?;
        match u32::try_from(v) {
            Ok(v) if v >= 1 => Some(v),
            _ => {
                cx.error(
                    n.pos,
                    "version",
                    format!("`version` must be a positive integer, found {v}"),
                );
                None
            }
        }
    });
    let description = top
        .get("description")
        .and_then(|n| cx.string(n, "description", "`description`").map(str::to_owned));

    let params = top.get("params").map(|n| read_params(cx, n)).unwrap_or_default();
    let param_types: BTreeMap<String, ParamType> = params.iter().map(|p| (p.name.clone(), p.ty)).collect();
    let nullable: std::collections::BTreeSet<String> = params
        .iter()
        .filter(|p| matches!(p.default, Some(serde_json::Value::Null)))
        .map(|p| p.name.clone())
        .collect();

    let limits = top.get("limits").map(|n| read_limits(cx, n)).unwrap_or_default();

    // Step ids first, so that references can tell "later" from "missing".
    let step_nodes: &[Node] = match top.get("steps") {
        Some(n) => cx.seq(n, "steps", "`steps`").unwrap_or(&[]),
        None => &[],
    };
    let mut step_index: BTreeMap<String, usize> = BTreeMap::new();
    let mut step_uses: BTreeMap<String, String> = BTreeMap::new();
    for (i, n) in step_nodes.iter().enumerate() {
        if let Some(id) = peek_id(n) {
            step_index.entry(id.to_owned()).or_insert(i);
            if let Some(uses) = peek_field(n, "uses") {
                step_uses.entry(id.to_owned()).or_insert_with(|| uses.to_owned());
            }
        }
    }

    let lock_scope = RefScope {
        params: &param_types,
        steps: &step_index,
        uses: &step_uses,
        current: None,
        run: false,
        place: "a lock key",
        nullable: &nullable,
    };
    let locks = top
        .get("locks")
        .map(|n| read_locks(cx, n, &lock_scope))
        .unwrap_or_default();
    let notify_scope = RefScope {
        params: &param_types,
        steps: &step_index,
        uses: &step_uses,
        current: None,
        run: true,
        place: "`notify.url`",
        nullable: &nullable,
    };
    let notify = top.get("notify").and_then(|n| read_notify(cx, n, &notify_scope));

    if top.get("steps").is_some()
        && step_nodes.is_empty()
        && matches!(top.get("steps").map(|n| &n.value), Some(Value::Seq(_)))
    {
        let pos = top.get("steps").and_then(|n| n.pos);
        cx.error(pos, "steps", "a runbook needs at least one step");
    }
    let mut steps = Vec::new();
    let mut first_seen: BTreeMap<String, u32> = BTreeMap::new();
    for (i, n) in step_nodes.iter().enumerate() {
        let scope = RefScope {
            params: &param_types,
            steps: &step_index,
            uses: &step_uses,
            current: Some(i),
            run: true,
            place: "a step",
            nullable: &nullable,
        };
        if let Some(step) = read_step(cx, n, i, &scope, &mut first_seen) {
            steps.push((step, n));
        }
    }
    check_windows(cx, step_nodes);
    // Only for an otherwise valid runbook: with errors, an expression that did not parse
    // may be the one that uses the parameter.
    if let Some(params_node) = top.get("params")
        && !cx.has_errors()
    {
        warn_unused_params(cx, params_node, &params);
    }

    let (Some(name), Some(version)) = (name, version) else {
        return None;
    };
    if steps.len() != step_nodes.len() || cx.has_errors() {
        return None;
    }
    Some(Runbook {
        name,
        version,
        description,
        params,
        limits,
        locks,
        notify,
        steps: steps.into_iter().map(|(s, _)| s).collect(),
        warnings: Vec::new(),
    })
}

fn is_runbook_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn runbook_name(cx: &mut Cx<'_>, n: &Node) -> Option<String> {
    let s = cx.string(n, "runbook", "the runbook name")?;
    if is_runbook_name(s) {
        Some(s.to_owned())
    } else {
        cx.error(
            n.pos,
            "runbook",
            format!(
                "invalid runbook name `{}`: use lowercase letters, digits and `-` (at most 64, not starting or ending with `-`)",
                s.escape_debug()
            ),
        );
        None
    }
}

/// Step ids: a lowercase letter or digit, then lowercase letters, digits, `_` or `-`.
pub(crate) fn is_step_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

fn is_param_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// The `id:` of a step node, when it is a valid id (used to name the step in paths).
/// A string field of a step's mapping, read before the step itself is.
fn peek_field<'a>(n: &'a Node, field: &str) -> Option<&'a str> {
    let Value::Map(entries) = &n.value else { return None };
    entries.iter().find_map(|(k, v)| match (&k.value, &v.value) {
        (Value::String(k), Value::String(value)) if k == field => Some(value.as_str()),
        _ => None,
    })
}

pub(super) fn peek_id(n: &Node) -> Option<&str> {
    let Value::Map(entries) = &n.value else { return None };
    entries.iter().find_map(|(k, v)| match (&k.value, &v.value) {
        (Value::String(k), Value::String(id)) if k == "id" && is_step_id(id) => Some(id.as_str()),
        _ => None,
    })
}

fn read_params(cx: &mut Cx<'_>, node: &Node) -> Vec<ParamDecl> {
    let mut out = Vec::new();
    let Value::Map(entries) = &node.value else {
        if !matches!(node.value, Value::Null) {
            cx.error(
                node.pos,
                "params",
                format!(
                    "`params` must be a mapping of names to declarations, found {}",
                    node.value.kind()
                ),
            );
        }
        return out;
    };
    let mut seen = std::collections::BTreeSet::new();
    for (k, v) in entries {
        let Some(name) = k.key_text() else { continue };
        let path = format!("params.{name}");
        if !seen.insert(name.clone()) {
            continue;
        }
        if !is_param_name(&name) {
            cx.error(
                k.pos,
                &path,
                format!(
                    "invalid parameter name `{}`: use letters, digits and `_`, starting with a letter or `_`",
                    name.escape_debug()
                ),
            );
        }
        let what = format!("the declaration of parameter `{name}`");
        if let Value::String(s) = &v.value {
            // A common slip: `name: string` instead of `name: { type: string }`.
            cx.error(
                v.pos,
                &path,
                format!("{what} must be a mapping such as `{{ type: {s} }}`, found a string"),
            );
            continue;
        }
        let Some(f) = cx.mapping(v, &path, &what, PARAM_FIELDS, &["type"]) else {
            continue;
        };
        let ty = f.get("type").and_then(|t| {
            let tpath = join(&path, "type");
            let c = cx.choice(t, &tpath, "the parameter type", ParamType::NAMES)?;
            ParamType::from_name(c)
        });
        let description = f.get("description").and_then(|d| {
            cx.string(d, &join(&path, "description"), "`description`")
                .map(str::to_owned)
        });
        let default = match (f.get("default"), ty) {
            (Some(d), Some(ty)) => {
                let json = d.to_json();
                let dpath = join(&path, "default");
                match check_value(ty, &json, true) {
                    Ok(v) => Some(v),
                    Err(problems) => {
                        for (sub, msg) in problems {
                            cx.error(d.pos, &format!("{dpath}{sub}"), msg);
                        }
                        None
                    }
                }
            }
            _ => None,
        };
        if let Some(ty) = ty {
            out.push(ParamDecl {
                name,
                ty,
                default,
                description,
            });
        }
    }
    out
}

fn read_limits(cx: &mut Cx<'_>, node: &Node) -> Limits {
    let mut limits = Limits::default();
    let Some(f) = cx.mapping(node, "limits", "`limits`", &["max_unprotected"], &[]) else {
        return limits;
    };
    if let Some(n) = f.get("max_unprotected") {
        let path = "limits.max_unprotected";
        if let Some(d) = cx.duration(n, path, "`max_unprotected`") {
            if d.is_zero() {
                cx.error(n.pos, path, "`max_unprotected` must be longer than zero");
            } else {
                limits.max_unprotected = Some(d);
            }
        }
    }
    limits
}

/// Parses a template in string scalar `node` and checks its references.
pub(super) fn template(cx: &mut Cx<'_>, node: &Node, s: &str, path: &str, scope: &RefScope<'_>) -> Option<Template> {
    match Template::parse(s) {
        Ok(t) => {
            check_paths(cx, scope, node, s, path, &t.paths());
            Some(t)
        }
        Err(e) => {
            let pos = cx.pos_in(node, s, e.offset);
            cx.error(pos, path, format!("invalid expression: {e}"));
            None
        }
    }
}

fn read_locks(cx: &mut Cx<'_>, node: &Node, scope: &RefScope<'_>) -> Vec<Template> {
    let mut out = Vec::new();
    let Some(items) = cx.seq(node, "locks", "`locks`") else {
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let path = format!("locks[{i}]");
        let Some(s) = cx.string(item, &path, "a lock key") else {
            continue;
        };
        if s.trim().is_empty() {
            cx.error(item.pos, &path, "a lock key cannot be empty");
            continue;
        }
        if let Some(t) = template(cx, item, s, &path, scope) {
            out.push(t);
        }
    }
    out
}

fn read_notify(cx: &mut Cx<'_>, node: &Node, scope: &RefScope<'_>) -> Option<NotifyConfig> {
    let f = cx.mapping(node, "notify", "`notify`", &["url", "on"], &["url"])?;
    let url = f.get("url").and_then(|n| {
        let s = cx.string(n, "notify.url", "`url`")?;
        let t = template(cx, n, s, "notify.url", scope)?;
        if let Some(lit) = t.as_literal()
            && !(lit.starts_with("http://") || lit.starts_with("https://"))
        {
            cx.error(
                n.pos,
                "notify.url",
                format!("`url` must start with http:// or https://, found `{lit}`"),
            );
            return None;
        }
        Some(t)
    });
    let on = match f.get("on") {
        None => NOTIFY_EVENTS.iter().filter_map(|e| notify_event(e)).collect(),
        Some(n) => {
            let mut events = Vec::new();
            if let Some(items) = cx.seq(n, "notify.on", "`notify.on`") {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("notify.on[{i}]");
                    if let Some(e) = cx.choice(item, &path, "an event", NOTIFY_EVENTS).and_then(notify_event) {
                        if events.contains(&e) {
                            cx.error(item.pos, &path, "this event is listed twice");
                        } else {
                            events.push(e);
                        }
                    }
                }
            }
            events
        }
    };
    Some(NotifyConfig { url: url?, on })
}

fn notify_event(s: &str) -> Option<NotifyEvent> {
    Some(match s {
        "window_opened" => NotifyEvent::WindowOpened,
        "window_closed" => NotifyEvent::WindowClosed,
        "max_unprotected_exceeded" => NotifyEvent::MaxUnprotectedExceeded,
        "run_succeeded" => NotifyEvent::RunSucceeded,
        "run_failed" => NotifyEvent::RunFailed,
        _ => return None,
    })
}

/// Windows must open before they close, and not open twice. Works on the raw step
/// nodes, so that a step with an unrelated error still takes part.
fn check_windows(cx: &mut Cx<'_>, steps: &[Node]) {
    for label in ["unprotected", "listener"] {
        let what = format!("the {label} window");
        let mut open: Option<(String, Option<super::yaml::Pos>)> = None;
        for (i, node) in steps.iter().enumerate() {
            let Some(edge) = field(node, label) else { continue };
            let Value::String(edge) = &edge.value else { continue };
            let name = peek_id(node).map_or_else(|| format!("#{}", i + 1), str::to_owned);
            let path = match peek_id(node) {
                Some(id) => format!("steps.{id}.{label}"),
                None => format!("steps[{i}].{label}"),
            };
            let pos = field(node, label).and_then(|n| n.pos);
            match (edge.as_str(), &open) {
                ("opens", None) => open = Some((name, pos)),
                ("opens", Some((by, _))) => cx.error(
                    pos,
                    &path,
                    format!(
                        "step `{name}` opens {what}, but step `{by}` already opened it and no step closed it in between"
                    ),
                ),
                ("closes", Some(_)) => open = None,
                ("closes", None) => cx.error(
                    pos,
                    &path,
                    format!("step `{name}` closes {what}, but no earlier step opens it (`{label}: opens`)"),
                ),
                _ => {}
            }
        }
        if let Some((by, pos)) = open {
            cx.warn(
                pos,
                &format!("steps.{by}.{label}"),
                format!("{what} opened by step `{by}` is still open when the runbook ends; no later step has `{label}: closes`"),
            );
        }
    }
}

/// A declared parameter that no expression reads is most likely a mistake (a typo in the
/// declaration, or a step that forgot to use it).
fn warn_unused_params(cx: &mut Cx<'_>, node: &Node, params: &[ParamDecl]) {
    let Value::Map(entries) = &node.value else { return };
    for p in params {
        if cx.used_params.contains(&p.name) {
            continue;
        }
        let pos = entries
            .iter()
            .find(|(k, _)| k.key_text().as_deref() == Some(p.name.as_str()))
            .and_then(|(k, _)| k.pos);
        cx.warn(
            pos,
            &format!("params.{}", p.name),
            format!("parameter `{}` is declared but no expression uses it", p.name),
        );
    }
}

/// The value of key `key` in mapping `node`.
pub(super) fn field<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    let Value::Map(entries) = &node.value else { return None };
    entries
        .iter()
        .find(|(k, _)| matches!(&k.value, Value::String(s) if s == key))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::expr::Expr;
    use crate::runbook::model::{ErrorClass, OnFailure, RetryPolicy, WindowEdge, WithValue};
    use crate::runbook::parse_step::DEFAULT_RETRY_ATTEMPTS;

    const HEAD: &str = "runbook: t\nversion: 1\n";

    fn ok(body: &str) -> Runbook {
        let text = format!("{HEAD}{body}");
        match parse(&text, "t.yaml") {
            Ok(rb) => rb,
            Err(d) => panic!("{d}"),
        }
    }

    #[test]
    fn retry_defaults() {
        let rb = ok(
            "steps:\n  - id: a\n    uses: wait\n    with: { duration: 1s }\n  - id: b\n    uses: wait\n    with: { duration: 1s }\n    retry: { initial_interval: 5m }\n  - id: c\n    uses: wait\n    with: { duration: 1s }\n    retry: {}\n",
        );
        assert_eq!(rb.steps[0].retry, RetryPolicy::default());
        assert_eq!(rb.steps[0].retry.max_attempts, 1);
        let b = &rb.steps[1].retry;
        assert_eq!(b.max_attempts, DEFAULT_RETRY_ATTEMPTS);
        assert_eq!(b.initial_interval, Duration::from_secs(300));
        assert_eq!(b.max_interval, Duration::from_secs(300), "max never undercuts initial");
        assert_eq!(rb.steps[2].retry.max_attempts, 3);
        assert_eq!(rb.steps[2].retry.on, vec![ErrorClass::Transient, ErrorClass::Timeout]);
    }

    #[test]
    fn step_fields_are_converted() {
        let rb = ok(r#"params:
  x: { type: string, default: "y" }
steps:
  - id: first-step
    name: The first
    uses: command
    with: { program: echo, env: { A: "${{ params.x }}" } }
    when: params.x == 'y'
    timeout: 1h30m
    on_failure: continue
    unprotected: opens
    listener: opens
  - id: "2nd"
    uses: wait
    with: { duration: 1s }
    when: false
    unprotected: closes
    listener: closes
"#);
        let s = &rb.steps[0];
        assert_eq!(s.id.as_str(), "first-step");
        assert_eq!(s.name.as_deref(), Some("The first"));
        assert_eq!(s.timeout, Some(Duration::from_secs(5400)));
        assert_eq!(s.on_failure, OnFailure::Continue);
        assert_eq!(s.unprotected, Some(WindowEdge::Opens));
        assert_eq!(s.when.as_ref().map(Expr::source), Some("params.x == 'y'"));
        let Some(WithValue::Map(env)) = s.with.get("env") else {
            panic!("env")
        };
        assert!(matches!(env.get("A"), Some(WithValue::Template(t)) if t.source() == "${{ params.x }}"));
        assert_eq!(rb.steps[1].when.as_ref().map(Expr::source), Some("false"));
        assert!(rb.warnings.is_empty());
    }

    #[test]
    fn literals_of_any_type_are_kept() {
        let rb = ok(
            "steps:\n  - id: a\n    uses: notify\n    with: { url: \"https://x.invalid\", data: [\"${{ run.id }}\", 3, true, null, { k: 1.5 }] }\n",
        );
        let Some(WithValue::List(data)) = rb.steps[0].with.get("data") else {
            panic!("data")
        };
        assert!(matches!(&data[0], WithValue::Template(t) if t.source() == "${{ run.id }}"));
        assert!(matches!(&data[1], WithValue::Literal(v) if *v == serde_json::json!(3)));
        assert!(matches!(&data[2], WithValue::Literal(serde_json::Value::Bool(true))));
        assert!(matches!(&data[3], WithValue::Literal(serde_json::Value::Null)));
        assert!(matches!(&data[4], WithValue::Map(m) if m.contains_key("k")));
    }

    #[test]
    fn durations() {
        use std::fmt::Write as _;
        let mut out = String::new();
        for t in [
            "500ms",
            "90s",
            "15m",
            "2h",
            "7d",
            "1h30m",
            "1d2h3m4s5ms",
            "0s",
            "10",
            "1.5h",
            "1 h",
            "h",
            "3w",
            "-1s",
            "\"\"",
            "99999999999999999999s",
            "true",
            "[1s]",
        ] {
            let text =
                format!("{HEAD}steps:\n  - id: a\n    uses: wait\n    with: {{ duration: 1s }}\n    timeout: {t}\n");
            let r = match parse(&text, "t.yaml") {
                Ok(rb) => format!("{:?}", rb.steps[0].timeout),
                Err(d) => d.0.iter().map(|d| d.message.clone()).collect::<Vec<_>>().join("; "),
            };
            let _ = writeln!(out, "{t:<24} {r}");
        }
        insta::assert_snapshot!(out);
    }

    #[test]
    fn an_unused_parameter_is_a_warning() {
        let rb = ok(
            "params:\n  used: { type: string }\n  unused: { type: int, default: 1 }\nsteps:\n  - id: a\n    uses: command\n    with: { program: \"${{ params.used }}\" }\n",
        );
        let text: Vec<String> = rb.warnings.iter().map(ToString::to_string).collect();
        insta::assert_snapshot!(text.join("\n"), @"t.yaml:5:3: params.unused: warning: parameter `unused` is declared but no expression uses it");
    }

    #[test]
    fn a_window_left_open_is_a_warning() {
        let rb = ok("steps:\n  - id: a\n    uses: wait\n    with: { duration: 1s }\n    unprotected: opens\n");
        assert_eq!(rb.warnings.len(), 1);
        assert!(rb.warnings[0].is_warning());
        insta::assert_snapshot!(rb.warnings[0].to_string(), @"t.yaml:7:18: steps.a.unprotected: warning: the unprotected window opened by step `a` is still open when the runbook ends; no later step has `unprotected: closes`");
    }

    #[test]
    fn anchors_and_merge_keys_work() {
        let rb = ok(
            "x-retry: &r { max_attempts: 5 }\nsteps:\n  - id: a\n    uses: wait\n    with: { duration: 1s }\n    retry: *r\n",
        );
        assert_eq!(rb.steps[0].retry.max_attempts, 5);
    }

    #[test]
    fn diagnostics_render_with_and_without_position() {
        let d = Diagnostics(vec![
            crate::runbook::Diagnostic {
                origin: "f.yaml".into(),
                line: Some(3),
                column: Some(7),
                path: "steps.a.uses".into(),
                message: "unknown activity".into(),
            },
            crate::runbook::Diagnostic {
                origin: "params.yaml".into(),
                line: None,
                column: None,
                path: "primary.name".into(),
                message: "bad".into(),
            },
        ]);
        insta::assert_snapshot!(d.to_string(), @r"
        f.yaml:3:7: steps.a.uses: unknown activity
        params.yaml: primary.name: bad
        ");
    }
}
