//! Checking a step's `with:` inputs against the JSON Schema of its activity
//! (`fogbook_activities::input_schema`), so that new activities need no code here.
//!
//! Supported schema keywords: `type`, `properties`, `required`, `additionalProperties`,
//! `items`, `enum`, `const`, `oneOf`/`anyOf`/`allOf`, `$ref` into `$defs`, `minimum`,
//! `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `minItems`, `maxItems`,
//! `minLength`, `maxLength`, `propertyNames` (only as `not: { enum: [...] }`, names refused
//! for the reason in its `description`), and `format` (`duration`, and the integer formats
//! schemars emits such as `uint32`). A value written as a `${{ }}` expression has a type only known
//! when the step runs, so it is accepted wherever the expression's static type fits.

use serde_json::Value as Json;

use std::collections::{BTreeMap, BTreeSet};

use super::model::ParamType;
use super::reader::{Cx, describe_node, join};
use super::refs::{RefScope, static_kind};
use super::suggest;
use super::yaml::{Node, Pos, Value};
use crate::expr::Template;

type Problems = Vec<(Option<Pos>, String, String)>;

/// What stays the same while one `with:` mapping is checked.
struct Ctx<'a> {
    /// The activity's whole schema (for `$ref`).
    root: &'a Json,
    /// "activity `x`", for messages.
    label: &'a str,
    params: &'a BTreeMap<String, ParamType>,
    nullable: &'a BTreeSet<String>,
}

/// Checks the `with:` mapping `node` of a step that uses `uses`.
pub(crate) fn check(cx: &mut Cx<'_>, uses: &str, node: &Node, path: &str, scope: &RefScope<'_>) {
    let Some(schema) = fogbook_activities::input_schema(uses) else {
        return;
    };
    let label = format!("activity `{uses}`");
    let ctx = Ctx {
        root: schema.as_value(),
        label: &label,
        params: scope.params,
        nullable: scope.nullable,
    };
    let mut problems = Problems::new();
    check_node(node, schema.as_value(), &ctx, path, &mut problems, 0);
    for (pos, path, msg) in problems {
        cx.error(pos, &path, msg);
    }
}

/// Reports the required inputs of `uses` when a step has no `with:` at all.
pub(crate) fn check_missing(cx: &mut Cx<'_>, uses: &str, step: &Node, path: &str) {
    let Some(schema) = fogbook_activities::input_schema(uses) else {
        return;
    };
    let required: Vec<&str> = schema
        .as_value()
        .get("required")
        .and_then(Json::as_array)
        .map(|r| r.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    if !required.is_empty() {
        let list: Vec<String> = required.iter().map(|r| format!("`{r}`")).collect();
        cx.error(
            step.pos,
            path,
            format!("activity `{uses}` needs `with:` giving {}", list.join(", ")),
        );
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Int(_) | Value::UInt(_) => "integer",
        Value::Float(_) => "number",
        Value::String(_) => "string",
        Value::Seq(_) => "array",
        Value::Map(_) => "object",
    }
}

fn type_matches(allowed: &[&str], actual: &str) -> bool {
    allowed
        .iter()
        .any(|t| *t == actual || (*t == "number" && actual == "integer"))
}

fn type_words(t: &str) -> &str {
    match t {
        "null" => "null",
        "boolean" => "true or false",
        "integer" => "an integer",
        "number" => "a number",
        "string" => "a string",
        "array" => "a list",
        "object" => "a mapping",
        other => other,
    }
}

fn resolve<'s>(schema: &'s Json, root: &'s Json) -> &'s Json {
    let mut s = schema;
    for _ in 0..16 {
        let Some(r) = s.get("$ref").and_then(Json::as_str) else {
            return s;
        };
        let Some(name) = r.strip_prefix("#/$defs/") else {
            return s;
        };
        match root.get("$defs").and_then(|d| d.get(name)) {
            Some(t) => s = t,
            None => return s,
        }
    }
    s
}

#[allow(clippy::too_many_lines)]
fn check_node(node: &Node, schema: &Json, cx: &Ctx<'_>, path: &str, out: &mut Problems, depth: usize) {
    let (root, label) = (cx.root, cx.label);
    if depth > 32 {
        return;
    }
    let schema = resolve(schema, root);
    match schema {
        Json::Bool(true) => return,
        Json::Bool(false) => {
            out.push((node.pos, path.to_owned(), "no value is allowed here".to_owned()));
            return;
        }
        _ => {}
    }

    // A `${{ }}` value: its type is known only when the step runs. A template that does
    // not parse was reported where it was parsed.
    if let Value::String(s) = &node.value {
        match Template::parse(s) {
            Err(_) => return,
            Ok(t) if t.as_literal().is_none() => {
                let kind = if t.is_single_expr() {
                    t.single_ast().and_then(|a| static_kind(a, cx.params, cx.nullable))
                } else {
                    Some("string")
                };
                if let (Some(kind), Some(types)) = (kind, types_of(schema))
                    && !type_matches(&types, kind)
                {
                    out.push((
                        node.pos,
                        path.to_owned(),
                        format!("expected {}, but `{s}` is {}", words(&types), type_words(kind)),
                    ));
                }
                return;
            }
            Ok(_) => {}
        }
    }

    if let Some(all) = schema.get("allOf").and_then(Json::as_array) {
        for s in all {
            check_node(node, s, cx, path, out, depth + 1);
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(branches) = schema.get(key).and_then(Json::as_array) {
            let mut best: Option<Problems> = None;
            let mut matched = false;
            for b in branches {
                let mut scratch = Problems::new();
                check_node(node, b, cx, path, &mut scratch, depth + 1);
                if scratch.is_empty() {
                    matched = true;
                    break;
                }
                if best.as_ref().is_none_or(|p| scratch.len() < p.len()) {
                    best = Some(scratch);
                }
            }
            if !matched {
                let consts: Vec<String> = branches
                    .iter()
                    .map(|b| resolve(b, root))
                    .filter_map(|b| b.get("const").or_else(|| b.get("enum").and_then(|e| e.get(0))))
                    .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned))
                    .collect();
                if consts.len() == branches.len() && !consts.is_empty() {
                    let found = describe_node(&node.value);
                    let hint = match &node.value {
                        Value::String(s) => suggest::hint(s, consts.iter().map(String::as_str)),
                        _ => String::new(),
                    };
                    out.push((
                        node.pos,
                        path.to_owned(),
                        format!("must be one of {}, found {found}{hint}", consts.join(", ")),
                    ));
                } else if let Some(p) = best {
                    out.extend(p);
                }
            }
        }
    }

    if let Some(types) = types_of(schema) {
        let actual = json_type(&node.value);
        if !type_matches(&types, actual) {
            out.push((
                node.pos,
                path.to_owned(),
                format!("expected {}, found {}", words(&types), describe_node(&node.value)),
            ));
            return;
        }
    }
    let json = node.to_json();
    if let Some(c) = schema.get("const")
        && !crate::expr::json_eq(c, &json)
    {
        out.push((
            node.pos,
            path.to_owned(),
            format!("must be {c}, found {}", describe_node(&node.value)),
        ));
    }
    if let Some(e) = schema.get("enum").and_then(Json::as_array)
        && !e.iter().any(|c| crate::expr::json_eq(c, &json))
    {
        let list: Vec<String> = e
            .iter()
            .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned))
            .collect();
        let hint = match &node.value {
            Value::String(s) => suggest::hint(s, list.iter().map(String::as_str)),
            _ => String::new(),
        };
        out.push((
            node.pos,
            path.to_owned(),
            format!(
                "must be one of {}, found {}{hint}",
                list.join(", "),
                describe_node(&node.value)
            ),
        ));
    }

    match &node.value {
        Value::Map(entries) => {
            let props = schema.get("properties").and_then(Json::as_object);
            let additional = schema.get("additionalProperties");
            // `propertyNames: { not: { enum: [...] } }`: names refused, for the schema's reason.
            let refused = schema.get("propertyNames").map(|p| resolve(p, root));
            for (k, v) in entries {
                let Some(key) = k.key_text() else { continue };
                let child = join(path, &key);
                if let Some(names) = refused
                    && let Some(list) = names.pointer("/not/enum").and_then(Json::as_array)
                    && list.iter().any(|n| n.as_str() == Some(key.as_str()))
                {
                    let why = names
                        .get("description")
                        .and_then(Json::as_str)
                        .unwrap_or("it is reserved");
                    out.push((k.pos, child.clone(), format!("`{key}` may not be set here: {why}")));
                }
                if let Some(s) = props.and_then(|p| p.get(&key)) {
                    check_node(v, s, cx, &child, out, depth + 1);
                } else {
                    match additional {
                        Some(Json::Bool(false)) => {
                            let known: Vec<&str> = props
                                .map(|p| p.keys().map(String::as_str).collect())
                                .unwrap_or_default();
                            let hint = suggest::hint(&key, known.iter().copied());
                            let msg = if hint.is_empty() {
                                format!("unknown input `{key}` for {label}; it takes: {}", known.join(", "))
                            } else {
                                format!("unknown input `{key}` for {label}{hint}")
                            };
                            out.push((k.pos, path.to_owned(), msg));
                        }
                        Some(s @ Json::Object(_)) => check_node(v, s, cx, &child, out, depth + 1),
                        _ => {}
                    }
                }
            }
            if let Some(req) = schema.get("required").and_then(Json::as_array) {
                for r in req.iter().filter_map(Json::as_str) {
                    let present = entries.iter().any(|(k, _)| k.key_text().as_deref() == Some(r));
                    if !present {
                        out.push((
                            node.pos,
                            path.to_owned(),
                            format!("missing input `{r}` required by {label}"),
                        ));
                    }
                }
            }
        }
        Value::Seq(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_node(item, s, cx, &format!("{path}[{i}]"), out, depth + 1);
                }
            }
            let n = items.len() as u64;
            if let Some(min) = schema.get("minItems").and_then(Json::as_u64)
                && n < min
            {
                out.push((
                    node.pos,
                    path.to_owned(),
                    format!("needs at least {min} item(s), found {n}"),
                ));
            }
            if let Some(max) = schema.get("maxItems").and_then(Json::as_u64)
                && n > max
            {
                out.push((
                    node.pos,
                    path.to_owned(),
                    format!("takes at most {max} item(s), found {n}"),
                ));
            }
        }
        Value::String(s) => {
            let n = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Json::as_u64)
                && n < min
            {
                out.push((
                    node.pos,
                    path.to_owned(),
                    format!("must be at least {min} character(s) long"),
                ));
            }
            if let Some(max) = schema.get("maxLength").and_then(Json::as_u64)
                && n > max
            {
                out.push((
                    node.pos,
                    path.to_owned(),
                    format!("must be at most {max} character(s) long"),
                ));
            }
            if schema.get("format").and_then(Json::as_str) == Some("duration")
                && let Err(e) = super::reader::parse_duration(s)
            {
                out.push((node.pos, path.to_owned(), e));
            }
        }
        Value::Int(_) | Value::UInt(_) | Value::Float(_) => check_number(node, schema, path, out),
        Value::Null | Value::Bool(_) => {}
    }
}

fn check_number(node: &Node, schema: &Json, path: &str, out: &mut Problems) {
    #[allow(clippy::cast_precision_loss)]
    let x = match node.value {
        Value::Int(i) => i as f64,
        Value::UInt(u) => u as f64,
        Value::Float(f) => f,
        _ => return,
    };
    let (fmin, fmax): (Option<f64>, Option<f64>) = match schema.get("format").and_then(Json::as_str) {
        Some("uint8") => (Some(0.0), Some(255.0)),
        Some("uint16") => (Some(0.0), Some(65_535.0)),
        Some("uint32") => (Some(0.0), Some(4_294_967_295.0)),
        Some("uint64" | "uint") => (Some(0.0), None),
        Some("int8") => (Some(-128.0), Some(127.0)),
        Some("int16") => (Some(-32_768.0), Some(32_767.0)),
        Some("int32") => (Some(-2_147_483_648.0), Some(2_147_483_647.0)),
        _ => (None, None),
    };
    let min = schema.get("minimum").and_then(Json::as_f64).or(fmin);
    let max = schema.get("maximum").and_then(Json::as_f64).or(fmax);
    let found = describe_node(&node.value);
    if let Some(min) = min
        && x < min
    {
        out.push((
            node.pos,
            path.to_owned(),
            format!("must be at least {min}, found {found}"),
        ));
    }
    if let Some(max) = max
        && x > max
    {
        out.push((
            node.pos,
            path.to_owned(),
            format!("must be at most {max}, found {found}"),
        ));
    }
    if let Some(min) = schema.get("exclusiveMinimum").and_then(Json::as_f64)
        && x <= min
    {
        out.push((
            node.pos,
            path.to_owned(),
            format!("must be greater than {min}, found {found}"),
        ));
    }
    if let Some(max) = schema.get("exclusiveMaximum").and_then(Json::as_f64)
        && x >= max
    {
        out.push((
            node.pos,
            path.to_owned(),
            format!("must be less than {max}, found {found}"),
        ));
    }
}

fn types_of(schema: &Json) -> Option<Vec<&str>> {
    match schema.get("type")? {
        Json::String(s) => Some(vec![s.as_str()]),
        Json::Array(a) => Some(a.iter().filter_map(Json::as_str).collect()),
        _ => None,
    }
}

fn words(types: &[&str]) -> String {
    let w: Vec<&str> = types.iter().map(|t| type_words(t)).collect();
    w.join(" or ")
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use serde_json::json;

    use super::*;

    /// A schema that uses every supported keyword, as schemars would write it.
    fn schema() -> Json {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["name"],
            "properties": {
                "name": { "type": "string", "minLength": 2, "maxLength": 5 },
                "wait": { "type": "string", "format": "duration" },
                "count": { "type": "integer", "format": "uint8" },
                "ratio": { "type": "number", "minimum": 0, "exclusiveMaximum": 1 },
                "maybe": { "type": ["string", "null"] },
                "mode": { "$ref": "#/$defs/Mode" },
                "color": { "enum": ["red", "green"] },
                "fixed": { "const": 7 },
                "tags": { "type": "array", "items": { "type": "string" }, "minItems": 1, "maxItems": 2 },
                "env": { "type": "object", "additionalProperties": { "type": "string" } },
                "any": true,
                "both": { "allOf": [{ "type": "integer" }, { "maximum": 3 }] }
            },
            "$defs": {
                "Mode": { "oneOf": [
                    { "type": "string", "const": "fast", "description": "Fast." },
                    { "type": "string", "const": "safe", "description": "Safe." }
                ] }
            }
        })
    }

    fn check(with: &str) -> String {
        let node = crate::runbook::yaml::parse(with).expect("yaml");
        let root = schema();
        let params: BTreeMap<String, ParamType> =
            [("n".to_owned(), ParamType::Int), ("flag".to_owned(), ParamType::Bool)]
                .into_iter()
                .collect();
        let ctx = Ctx {
            root: &root,
            label: "activity `t`",
            params: &params,
            nullable: &BTreeSet::new(),
        };
        let mut out = Problems::new();
        check_node(&node, &root, &ctx, "with", &mut out, 0);
        if out.is_empty() {
            return "ok".to_owned();
        }
        out.into_iter()
            .map(|(pos, path, msg)| {
                format!(
                    "{}:{} {path}: {msg}",
                    pos.map_or(0, |p| p.line),
                    pos.map_or(0, |p| p.column)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn schema_keywords() {
        let mut out = String::new();
        for case in [
            "{ name: abc }",
            "{ name: abc, wait: 90s, count: 255, ratio: 0.5, maybe: null, mode: safe, color: red, fixed: 7, tags: [a], env: { A: b }, any: [1, {x: y}], both: 3 }",
            "{ nme: abc }",
            "{ name: a }",
            "{ name: abcdef }",
            "{ name: abc, wait: 10 minutes }",
            "{ name: abc, count: 256 }",
            "{ name: abc, count: -1 }",
            "{ name: abc, ratio: 1 }",
            "{ name: abc, ratio: \"0.5\" }",
            "{ name: abc, maybe: 3 }",
            "{ name: abc, mode: fats }",
            "{ name: abc, color: blue }",
            "{ name: abc, fixed: 8 }",
            "{ name: abc, tags: [] }",
            "{ name: abc, tags: [a, b, c] }",
            "{ name: abc, tags: [1] }",
            "{ name: abc, env: { A: [x] } }",
            "{ name: abc, both: 4 }",
            "{ name: abc, both: x }",
            "{ name: \"${{ params.n }}\", count: \"${{ params.c }}\", mode: \"${{ params.m }}\" }",
            "{ name: abc, count: \"${{ params.a == 1 }}\" }",
            "{ name: abc, count: \"n=${{ params.c }}\" }",
            "{ name: abc, count: \"${{ 'x' }}\" }",
            "{ name: abc, maybe: \"${{ null }}\" }",
            "{ name: \"${{ params.n }}\", count: \"${{ params.flag }}\", both: \"${{ params.n }}\" }",
            "[name]",
        ] {
            let _ = writeln!(out, "{case}\n    {}", check(case).replace('\n', "\n    "));
        }
        insta::assert_snapshot!(out);
    }
}
