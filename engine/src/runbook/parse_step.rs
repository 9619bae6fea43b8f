//! Reading one step of a runbook: its fields, `when`, `retry`, `with` and timeout advice.

use std::collections::BTreeMap;
use std::time::Duration;

use super::model::{ErrorClass, OnFailure, RetryPolicy, Step, StepId, WindowEdge, WithValue};
use super::parse::{is_step_id, peek_id, template};
use super::reader::{Cx, describe_node, join};
use super::refs::{RefScope, check_paths};
use super::suggest;
use super::with_schema;
use super::yaml::{Node, Value};
use crate::expr::Expr;

const STEP_FIELDS: &[&str] = &[
    "id",
    "name",
    "uses",
    "with",
    "when",
    "timeout",
    "retry",
    "on_failure",
    "unprotected",
    "listener",
    "disruptive",
];
const RETRY_FIELDS: &[&str] = &[
    "max_attempts",
    "initial_interval",
    "max_interval",
    "multiplier",
    "jitter",
    "on",
];
const ERROR_CLASSES: &[&str] = &["transient", "timeout", "failed"];

/// Most attempts a retry policy may ask for.
pub(crate) const MAX_ATTEMPTS: i64 = 100;
/// The default `max_attempts` when a `retry:` block is present but does not say.
pub(crate) const DEFAULT_RETRY_ATTEMPTS: u32 = 3;

/// Activities whose timeout should stay below a limit, with the reason (a warning).
const TIMEOUT_ADVICE: &[(&str, Duration, &str)] = &[(
    "fog.create",
    Duration::from_secs(7 * 86_400),
    "Azure cancels a failover group creation whose seeding has not completed within 7 days",
)];

pub(super) fn read_step(
    cx: &mut Cx<'_>,
    node: &Node,
    index: usize,
    scope: &RefScope<'_>,
    first_seen: &mut BTreeMap<String, u32>,
) -> Option<Step> {
    let path = match peek_id(node) {
        Some(id) => format!("steps.{id}"),
        None => format!("steps[{index}]"),
    };
    let f = cx.mapping(node, &path, "a step", STEP_FIELDS, &["id", "uses"])?;

    let id = f.get("id").and_then(|n| {
        let s = cx.string(n, &join(&path, "id"), "a step id")?;
        if !is_step_id(s) {
            cx.error(
                n.pos,
                &join(&path, "id"),
                format!(
                    "invalid step id `{}`: use lowercase letters, digits, `_` and `-`, starting with a letter or digit (at most 64)",
                    s.escape_debug()
                ),
            );
            return None;
        }
        let line = n.pos.map_or(0, |p| p.line);
        if let Some(first) = first_seen.get(s) {
            cx.error(n.pos, &join(&path, "id"), format!("duplicate step id `{s}` (first used at line {first})"));
            return None;
        }
        first_seen.insert(s.to_owned(), line);
        Some(StepId(s.to_owned()))
    });

    let name = f.get("name").and_then(|n| {
        let s = cx.string(n, &join(&path, "name"), "a step name")?;
        if s.chars().any(char::is_control) || s.chars().count() > 200 {
            cx.error(
                n.pos,
                &join(&path, "name"),
                "a step name must be one line of at most 200 characters",
            );
            return None;
        }
        Some(s.to_owned())
    });

    let uses = f.get("uses").and_then(|n| {
        let upath = join(&path, "uses");
        let s = cx.string(n, &upath, "`uses`")?;
        if fogbook_activities::KINDS.contains(&s) {
            Some(s.to_owned())
        } else {
            let hint = suggest::hint(s, fogbook_activities::KINDS.iter().copied());
            cx.error(
                n.pos,
                &upath,
                format!(
                    "unknown activity `{}`{hint}; known activities: {}",
                    s.escape_debug(),
                    fogbook_activities::KINDS.join(", ")
                ),
            );
            None
        }
    });

    let with = match f.get("with") {
        None => Some(BTreeMap::new()),
        Some(n) => {
            let wpath = join(&path, "with");
            let converted = match &n.value {
                Value::Map(_) => with_map(cx, n, &wpath, scope),
                Value::Null => Some(BTreeMap::new()),
                other => {
                    cx.error(
                        n.pos,
                        &wpath,
                        format!("`with` must be a mapping of inputs, found {}", other.kind()),
                    );
                    None
                }
            };
            if let Some(uses) = &uses
                && matches!(n.value, Value::Map(_))
            {
                with_schema::check(cx, uses, n, &wpath, scope);
            }
            converted
        }
    };
    // Required inputs must be checked even when `with:` is absent.
    if f.get("with").is_none()
        && let Some(uses) = &uses
    {
        with_schema::check_missing(cx, uses, node, &join(&path, "with"));
    }

    let when = f
        .get("when")
        .and_then(|n| read_when(cx, n, &join(&path, "when"), scope));

    let timeout = f.get("timeout").and_then(|n| {
        let tpath = join(&path, "timeout");
        let d = cx.duration(n, &tpath, "`timeout`")?;
        if d.is_zero() {
            cx.error(n.pos, &tpath, "`timeout` must be longer than zero");
            return None;
        }
        if let Some(uses) = &uses
            && let Some((_, max, why)) = TIMEOUT_ADVICE.iter().find(|(k, _, _)| k == uses)
            && d > *max
        {
            cx.warn(
                n.pos,
                &tpath,
                format!(
                    "a timeout above {} for `{uses}` cannot help: {why}",
                    fogbook_activities::duration::format(*max)
                ),
            );
        }
        Some(d)
    });

    let retry = match f.get("retry") {
        None => Some(RetryPolicy::default()),
        Some(n) => read_retry(cx, n, &join(&path, "retry")),
    };

    let on_failure = match f.get("on_failure") {
        None => Some(OnFailure::Fail),
        Some(n) => cx
            .choice(n, &join(&path, "on_failure"), "`on_failure`", &["fail", "continue"])
            .map(|c| {
                if c == "continue" {
                    OnFailure::Continue
                } else {
                    OnFailure::Fail
                }
            }),
    };
    let unprotected = edge(cx, f.get("unprotected"), &join(&path, "unprotected"), "`unprotected`");
    let listener = edge(cx, f.get("listener"), &join(&path, "listener"), "`listener`");
    let disruptive = match f.get("disruptive") {
        None => Some(false),
        Some(n) => cx.boolean(n, &join(&path, "disruptive"), "`disruptive`"),
    };

    Some(Step {
        id: id?,
        name,
        uses: uses?,
        with: with?,
        when,
        timeout,
        retry: retry?,
        on_failure: on_failure?,
        unprotected: unprotected?,
        listener: listener?,
        disruptive: disruptive?,
    })
}

/// `Some(None)` when absent, `Some(Some(edge))` when valid, `None` when invalid.
fn edge(cx: &mut Cx<'_>, node: Option<&Node>, path: &str, what: &str) -> Option<Option<WindowEdge>> {
    let Some(n) = node else { return Some(None) };
    let c = cx.choice(n, path, what, &["opens", "closes"])?;
    Some(Some(if c == "opens" {
        WindowEdge::Opens
    } else {
        WindowEdge::Closes
    }))
}

fn read_when(cx: &mut Cx<'_>, n: &Node, path: &str, scope: &RefScope<'_>) -> Option<Expr> {
    let text = match &n.value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        other => {
            cx.error(
                n.pos,
                path,
                format!(
                    "`when` must be a condition such as \"${{{{ params.x == 'y' }}}}\", found {}",
                    describe_node(other)
                ),
            );
            return None;
        }
    };
    match Expr::parse(&text) {
        Ok(e) => {
            check_paths(cx, scope, n, &text, path, &e.paths());
            if let Some(kind) = super::refs::static_kind(e.ast(), scope.params, scope.nullable)
                && kind != "boolean"
            {
                cx.error(
                    n.pos,
                    path,
                    format!("`when` must be true or false, but `{}` is a {kind}", text.trim()),
                );
                return None;
            }
            Some(e)
        }
        Err(e) => {
            let pos = cx.pos_in(n, &text, e.offset);
            cx.error(pos, path, format!("invalid `when` expression: {e}"));
            None
        }
    }
}

fn read_retry(cx: &mut Cx<'_>, node: &Node, path: &str) -> Option<RetryPolicy> {
    let f = cx.mapping(node, path, "`retry`", RETRY_FIELDS, &[])?;
    let mut ok = true;
    let mut policy = RetryPolicy {
        max_attempts: DEFAULT_RETRY_ATTEMPTS,
        ..RetryPolicy::default()
    };
    if let Some(n) = f.get("max_attempts") {
        let p = join(path, "max_attempts");
        match cx.integer(n, &p, "`max_attempts`") {
            Some(v) if (1..=MAX_ATTEMPTS).contains(&v) => policy.max_attempts = u32::try_from(v).unwrap_or(1),
            Some(v) => {
                cx.error(
                    n.pos,
                    &p,
                    format!("`max_attempts` must be between 1 and {MAX_ATTEMPTS}, found {v}"),
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    let initial = f
        .get("initial_interval")
        .map(|n| (n, cx.duration(n, &join(path, "initial_interval"), "`initial_interval`")));
    let max = f
        .get("max_interval")
        .map(|n| (n, cx.duration(n, &join(path, "max_interval"), "`max_interval`")));
    match initial {
        Some((_, Some(d))) => policy.initial_interval = d,
        Some((_, None)) => ok = false,
        None => {}
    }
    match max {
        Some((n, Some(d))) => {
            if d < policy.initial_interval {
                cx.error(
                    n.pos,
                    &join(path, "max_interval"),
                    format!(
                        "`max_interval` ({}) must not be shorter than `initial_interval` ({})",
                        fogbook_activities::duration::format(d),
                        fogbook_activities::duration::format(policy.initial_interval)
                    ),
                );
                ok = false;
            }
            policy.max_interval = d;
        }
        Some((_, None)) => ok = false,
        // Without an explicit bound, the bound never undercuts the first delay.
        None => policy.max_interval = policy.max_interval.max(policy.initial_interval),
    }
    if let Some(n) = f.get("multiplier") {
        let p = join(path, "multiplier");
        match cx.number(n, &p, "`multiplier`") {
            Some(m) if (1.0..=100.0).contains(&m) => policy.multiplier = m,
            Some(m) => {
                cx.error(n.pos, &p, format!("`multiplier` must be between 1 and 100, found {m}"));
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = f.get("jitter") {
        let p = join(path, "jitter");
        match cx.number(n, &p, "`jitter`") {
            Some(j) if (0.0..=1.0).contains(&j) => policy.jitter = j,
            Some(j) => {
                cx.error(
                    n.pos,
                    &p,
                    format!("`jitter` must be between 0 and 1 (a fraction of the delay), found {j}"),
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = f.get("on") {
        let p = join(path, "on");
        let mut classes = Vec::new();
        match cx.seq(n, &p, "`on`") {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    let ip = format!("{p}[{i}]");
                    let Some(c) = cx.choice(item, &ip, "an error class", ERROR_CLASSES) else {
                        ok = false;
                        continue;
                    };
                    let class = match c {
                        "transient" => ErrorClass::Transient,
                        "timeout" => ErrorClass::Timeout,
                        _ => ErrorClass::Failed,
                    };
                    if classes.contains(&class) {
                        cx.error(item.pos, &ip, format!("`{c}` is listed twice"));
                        ok = false;
                    } else {
                        classes.push(class);
                    }
                }
                if items.is_empty() && policy.max_attempts > 1 {
                    cx.error(
                        n.pos,
                        &p,
                        "`on` is empty, so no error would be retried; remove `retry` or list error classes",
                    );
                    ok = false;
                }
            }
            None => ok = false,
        }
        policy.on = classes;
    }
    ok.then_some(policy)
}

/// Converts a `with:` mapping, parsing every string as a template and checking its paths.
fn with_map(cx: &mut Cx<'_>, node: &Node, path: &str, scope: &RefScope<'_>) -> Option<BTreeMap<String, WithValue>> {
    let Value::Map(entries) = &node.value else { return None };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in entries {
        let Some(key) = k.key_text() else {
            cx.error(
                k.pos,
                path,
                "an input name must be a plain name, found a list or mapping",
            );
            ok = false;
            continue;
        };
        match with_value(cx, v, &join(path, &key), scope) {
            Some(w) => {
                out.entry(key).or_insert(w);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn with_value(cx: &mut Cx<'_>, node: &Node, path: &str, scope: &RefScope<'_>) -> Option<WithValue> {
    match &node.value {
        Value::String(s) => template(cx, node, s, path, scope).map(WithValue::Template),
        Value::Seq(items) => {
            let mut out = Vec::new();
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                match with_value(cx, item, &format!("{path}[{i}]"), scope) {
                    Some(v) => out.push(v),
                    None => ok = false,
                }
            }
            ok.then_some(WithValue::List(out))
        }
        Value::Map(_) => with_map(cx, node, path, scope).map(WithValue::Map),
        _ => Some(WithValue::Literal(node.to_json())),
    }
}
