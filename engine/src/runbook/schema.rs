//! The JSON Schema of the runbook format (`fogbook schema`), for editors.
//!
//! The per-activity `with:` schemas come from `fogbook_activities::input_schema`, so a new
//! activity appears here without changes. Every input also accepts a `${{ }}` string,
//! whose type is only known when the step runs.

use serde_json::{Map, Value, json};

use super::model::ParamType;
use super::parse_step::MAX_ATTEMPTS;

const DURATION_PATTERN: &str = "^([0-9]+(ms|s|m|h|d))+$";

/// The JSON Schema (draft 2020-12) of a runbook.
pub fn json_schema() -> Value {
    let mut defs = Map::new();
    defs.insert(
        "duration".into(),
        json!({
            "description": "A duration: a number and a unit (ms, s, m, h, d), or a sum such as `1h30m`.",
            "type": "string",
            "pattern": DURATION_PATTERN
        }),
    );
    defs.insert(
        "expression".into(),
        json!({
            "description": "A value computed when the step starts: `${{ params.x }}`, `${{ steps.<id>.outputs.y }}`.",
            "type": "string",
            "pattern": "^\\s*\\$\\{\\{.*\\}\\}\\s*$"
        }),
    );
    defs.insert(
        "param".into(),
        json!({
            "description": "A parameter declaration.",
            "type": "object",
            "additionalProperties": false,
            "required": ["type"],
            "properties": {
                "type": { "enum": ParamType::NAMES },
                "description": { "type": "string" },
                "default": { "description": "Used when the parameter is not given; its presence makes the parameter optional." }
            }
        }),
    );
    defs.insert(
        "retry".into(),
        json!({
            "description": "How failed attempts are retried. With a `retry:` block, `max_attempts` defaults to 3.",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "max_attempts": { "type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS, "default": 3 },
                "initial_interval": { "$ref": "#/$defs/duration", "default": "1s" },
                "max_interval": { "$ref": "#/$defs/duration", "default": "1m" },
                "multiplier": { "type": "number", "minimum": 1, "maximum": 100, "default": 2.0 },
                "jitter": { "type": "number", "minimum": 0, "maximum": 1, "default": 0.2 },
                "on": {
                    "type": "array",
                    "uniqueItems": true,
                    "items": { "enum": ["transient", "timeout", "failed"] },
                    "default": ["transient", "timeout"]
                }
            }
        }),
    );

    let kinds = fogbook_activities::KINDS;
    let mut all_of = Vec::new();
    for kind in kinds {
        let Some(schema) = fogbook_activities::input_schema(kind) else {
            continue;
        };
        let mut with = schema.as_value().clone();
        let required = with
            .get("required")
            .is_some_and(|r| r.as_array().is_some_and(|a| !a.is_empty()));
        if let Some(obj) = with.as_object_mut() {
            obj.remove("$schema");
            obj.remove("title");
            if let Some(Value::Object(inner)) = obj.remove("$defs") {
                for (name, mut def) in inner {
                    rename_refs(&mut def, kind);
                    allow_expressions(&mut def);
                    defs.insert(format!("{kind}.{name}"), def);
                }
            }
        }
        rename_refs(&mut with, kind);
        allow_expressions(&mut with);
        defs.insert(format!("with.{kind}"), with);
        let mut then = json!({ "properties": { "with": { "$ref": format!("#/$defs/with.{kind}") } } });
        if required {
            then["required"] = json!(["with"]);
        }
        all_of.push(json!({
            "if": { "properties": { "uses": { "const": kind } }, "required": ["uses"] },
            "then": then
        }));
    }

    defs.insert(
        "step".into(),
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["id", "uses"],
            "properties": {
                "id": { "type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$", "description": "Unique id; other steps refer to `steps.<id>`." },
                "name": { "type": "string", "description": "A human title." },
                "uses": { "enum": kinds, "description": "The activity." },
                "with": { "type": "object", "description": "The activity's inputs; strings may hold `${{ }}` expressions." },
                "when": {
                    "description": "Run the step only when this condition is true; otherwise it is skipped.",
                    "type": ["string", "boolean"]
                },
                "timeout": { "$ref": "#/$defs/duration" },
                "retry": { "$ref": "#/$defs/retry" },
                "on_failure": { "enum": ["fail", "continue"], "default": "fail" },
                "unprotected": { "enum": ["opens", "closes"], "description": "Opens or closes the unprotected (no geo-secondary) window." },
                "listener": { "enum": ["opens", "closes"], "description": "Opens or closes the listener-unavailable window." },
                "disruptive": { "type": "boolean", "default": false, "description": "The step disrupts service (failover, delete); a scheduled run with a pausing maintenance window waits before it while the window is closed." }
            },
            "allOf": all_of
        }),
    );

    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "fogbook runbook",
        "description": "A fogbook runbook: typed parameters and an ordered list of checkpointed steps. See runbooks/README.md.",
        "type": "object",
        "additionalProperties": false,
        "patternProperties": { "^x-": { "description": "Free: a place to define YAML anchors." } },
        "required": ["runbook", "version", "steps"],
        "properties": {
            "runbook": { "type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$", "description": "The runbook name." },
            "version": { "type": "integer", "minimum": 1 },
            "description": { "type": "string" },
            "params": {
                "type": "object",
                "propertyNames": { "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$" },
                "additionalProperties": { "$ref": "#/$defs/param" }
            },
            "limits": {
                "type": "object",
                "additionalProperties": false,
                "properties": { "max_unprotected": { "$ref": "#/$defs/duration" } }
            },
            "locks": {
                "description": "Resource keys held for the whole run (templates over `params`).",
                "type": "array",
                "items": { "type": "string", "minLength": 1 }
            },
            "notify": {
                "type": "object",
                "additionalProperties": false,
                "required": ["url"],
                "properties": {
                    "url": { "type": "string" },
                    "on": {
                        "type": "array",
                        "uniqueItems": true,
                        "items": { "enum": ["window_opened", "window_closed", "max_unprotected_exceeded", "run_succeeded", "run_failed"] }
                    }
                }
            },
            "steps": { "type": "array", "minItems": 1, "items": { "$ref": "#/$defs/step" } }
        },
        "$defs": defs
    })
}

/// Points `#/$defs/X` references of activity `kind` at their new home `#/$defs/kind.X`.
fn rename_refs(v: &mut Value, kind: &str) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if k == "$ref"
                    && let Value::String(r) = val
                    && let Some(name) = r.strip_prefix("#/$defs/")
                {
                    *r = format!("#/$defs/{kind}.{name}");
                } else {
                    rename_refs(val, kind);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rename_refs(x, kind)),
        _ => {}
    }
}

/// Lets every input (and every item or field inside one) be a `${{ }}` string instead.
fn allow_expressions(v: &mut Value) {
    let Value::Object(m) = v else { return };
    if let Some(Value::Object(props)) = m.get_mut("properties") {
        for p in props.values_mut() {
            allow_expressions(p);
            wrap(p);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(s @ Value::Object(_)) = m.get_mut(key) {
            allow_expressions(s);
            wrap(s);
        }
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(Value::Array(branches)) = m.get_mut(key) {
            branches.iter_mut().for_each(allow_expressions);
        }
    }
}

fn wrap(s: &mut Value) {
    let accepts_any = matches!(s, Value::Bool(true)) || s.as_object().is_some_and(Map::is_empty);
    if accepts_any {
        return;
    }
    let mut inner = s.take();
    let description = inner.as_object_mut().and_then(|o| o.remove("description"));
    let default = inner.as_object_mut().and_then(|o| o.remove("default"));
    let mut out = json!({ "anyOf": [inner, { "$ref": "#/$defs/expression" }] });
    if let Some(d) = description {
        out["description"] = d;
    }
    if let Some(d) = default {
        out["default"] = d;
    }
    *s = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                for (k, val) in m {
                    match (k.as_str(), val) {
                        ("$ref", Value::String(r)) => out.push(r),
                        _ => refs(val, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves() {
        let schema = json_schema();
        let defs = schema["$defs"].as_object().expect("$defs");
        let mut all = Vec::new();
        refs(&schema, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let name = r.strip_prefix("#/$defs/").expect("local ref");
            assert!(defs.contains_key(name), "dangling $ref {r}");
        }
    }

    #[test]
    fn every_activity_has_its_inputs_and_a_condition() {
        let schema = json_schema();
        let step = &schema["$defs"]["step"];
        let all_of = step["allOf"].as_array().expect("allOf");
        assert_eq!(all_of.len(), fogbook_activities::KINDS.len());
        for kind in fogbook_activities::KINDS {
            let with = &schema["$defs"][format!("with.{kind}")];
            assert_eq!(with["additionalProperties"], Value::Bool(false), "{kind}");
            assert!(with["properties"].is_object(), "{kind}");
            assert!(
                all_of.iter().any(|c| c["if"]["properties"]["uses"]["const"] == *kind),
                "{kind} has no if/then"
            );
        }
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(schema["additionalProperties"], Value::Bool(false));
    }

    #[test]
    fn inputs_accept_expressions() {
        let schema = json_schema();
        let codes = &schema["$defs"]["with.command"]["properties"]["ok_exit_codes"];
        let text = codes.to_string();
        assert!(text.contains("#/$defs/expression"), "{text}");
        let items = &codes["anyOf"][0]["items"]["anyOf"];
        assert!(items.is_array(), "{codes}");
    }
}
