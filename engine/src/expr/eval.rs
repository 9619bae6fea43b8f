//! Evaluation of parsed expressions against a run's values.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::Value;

use super::error::EvalError;
use super::syntax::{Ast, BinOp, Path, Root, Segment};

/// What expressions can see while a run executes.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    /// All parameters of the run (defaults applied), an object.
    pub params: &'a Value,
    /// Steps that have a result so far, by id.
    pub steps: &'a BTreeMap<String, StepScope>,
    /// Facts about the run, an object (see [`RUN_FIELDS`](super::RUN_FIELDS)).
    pub run: &'a Value,
}

/// The result of one finished step, as expressions see it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepScope {
    /// `completed`, `skipped` or `failed`.
    pub status: String,
    /// The activity's outputs (`null` for a skipped step).
    pub outputs: Value,
}

/// Evaluates `ast`; `src` is the text the spans point into.
pub(crate) fn eval(ast: &Ast, src: &str, scope: &Scope<'_>) -> Result<Value, EvalError> {
    match ast {
        Ast::Lit(v, _) => Ok(v.clone()),
        Ast::Path(p) => eval_path(p, src, scope),
        Ast::Not(inner, span) => {
            let v = eval(inner, src, scope)?;
            match v {
                Value::Bool(b) => Ok(Value::Bool(!b)),
                other => Err(type_error(
                    src,
                    *span,
                    format!("`!` needs true or false, found {}", describe(&other)),
                )),
            }
        }
        Ast::Bin(op @ (BinOp::And | BinOp::Or), a, b, span) => {
            let left = as_bool(eval(a, src, scope)?, src, *span, *op)?;
            // Short-circuit, so `steps.x.status == 'completed' && steps.x.outputs.y` is safe.
            match (op, left) {
                (BinOp::And, false) => Ok(Value::Bool(false)),
                (BinOp::Or, true) => Ok(Value::Bool(true)),
                _ => {
                    let right = as_bool(eval(b, src, scope)?, src, *span, *op)?;
                    Ok(Value::Bool(right))
                }
            }
        }
        Ast::Bin(op, a, b, span) => {
            let left = eval(a, src, scope)?;
            let right = eval(b, src, scope)?;
            compare(*op, &left, &right)
                .map(Value::Bool)
                .map_err(|m| type_error(src, *span, m))
        }
        Ast::Call(name, args, span) => {
            let mut values = Vec::with_capacity(args.len());
            for a in args {
                values.push(eval(a, src, scope)?);
            }
            call(name, &values).map_err(|m| type_error(src, *span, m))
        }
    }
}

fn as_bool(v: Value, src: &str, span: (usize, usize), op: BinOp) -> Result<bool, EvalError> {
    match v {
        Value::Bool(b) => Ok(b),
        other => Err(type_error(
            src,
            span,
            format!(
                "`{}` needs true or false on both sides, found {}",
                super::syntax::op_text(op),
                describe(&other)
            ),
        )),
    }
}

fn type_error(src: &str, span: (usize, usize), message: String) -> EvalError {
    EvalError::Type {
        expr: src.get(span.0..span.1).unwrap_or(src).trim().to_owned(),
        message,
    }
}

/// A short description of a value for messages: `a string 'x'`, `null`, `a list`.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() <= 40 => format!("the string '{s}'"),
        Value::String(_) => "a string".to_owned(),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

fn eval_path(p: &Path, src: &str, scope: &Scope<'_>) -> Result<Value, EvalError> {
    let text = src.get(p.start..p.end).unwrap_or(src).to_owned();
    let (base, rest, prefix_len): (&Value, &[Segment], usize) = match p.root {
        Root::Params => (scope.params, &p.segments[..], 0),
        Root::Run => (scope.run, &p.segments[..], 0),
        Root::Steps => {
            let Some(Segment::Key(id)) = p.segments.first() else {
                return Err(EvalError::MissingPath {
                    path: text,
                    detail: "no step id".into(),
                });
            };
            let Some(step) = scope.steps.get(id) else {
                return Err(EvalError::StepNotRun {
                    path: text,
                    step: id.clone(),
                });
            };
            match p.segments.get(1) {
                Some(Segment::Key(k)) if k == "status" => return Ok(Value::String(step.status.clone())),
                Some(Segment::Key(k)) if k == "outputs" => {
                    if step.status == "skipped" {
                        return Ok(Value::Null);
                    }
                    (&step.outputs, &p.segments[2..], 2)
                }
                _ => {
                    return Err(EvalError::MissingPath {
                        path: text,
                        detail: "after `steps.<id>` comes `.outputs` or `.status`".into(),
                    });
                }
            }
        }
    };
    let mut cur = base;
    for (i, seg) in rest.iter().enumerate() {
        let next = match (seg, cur) {
            (Segment::Key(k), Value::Object(m)) => m.get(k),
            (Segment::Index(n), Value::Array(a)) => a.get(*n),
            (Segment::Key(k), Value::Array(a)) => k.parse::<usize>().ok().and_then(|n| a.get(n)),
            _ => None,
        };
        match next {
            Some(v) => cur = v,
            None => {
                let at = render_prefix(p.root, &p.segments[..prefix_len + i]);
                let detail = match cur {
                    Value::Object(m) => {
                        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
                        let shown = if keys.is_empty() {
                            "it is an empty object".to_owned()
                        } else if keys.len() <= 12 {
                            format!("it has {}", keys.join(", "))
                        } else {
                            format!("it has {} and {} more", keys[..12].join(", "), keys.len() - 12)
                        };
                        format!("`{at}` has no field `{}` ({shown})", seg_text(seg))
                    }
                    Value::Array(a) => format!("`{at}` is a list of {} item(s), no item `{}`", a.len(), seg_text(seg)),
                    other => format!("`{at}` is {}, which has no field `{}`", describe(other), seg_text(seg)),
                };
                return Err(EvalError::MissingPath { path: text, detail });
            }
        }
    }
    Ok(cur.clone())
}

fn seg_text(s: &Segment) -> String {
    match s {
        Segment::Key(k) => k.clone(),
        Segment::Index(i) => i.to_string(),
    }
}

fn render_prefix(root: Root, segs: &[Segment]) -> String {
    let mut out = root.as_str().to_owned();
    for s in segs {
        match s {
            Segment::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// JSON equality where `1 == 1.0`.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn compare(op: BinOp, a: &Value, b: &Value) -> Result<bool, String> {
    match op {
        BinOp::Eq => return Ok(json_eq(a, b)),
        BinOp::Ne => return Ok(!json_eq(a, b)),
        _ => {}
    }
    let ord = match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => Some(i.cmp(&j)),
            _ => x.as_f64().zip(y.as_f64()).and_then(|(p, q)| p.partial_cmp(&q)),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    };
    let Some(ord) = ord else {
        return Err(format!(
            "`{}` compares two numbers or two strings, found {} and {}",
            super::syntax::op_text(op),
            describe(a),
            describe(b)
        ));
    };
    Ok(match op {
        BinOp::Lt => ord == Ordering::Less,
        BinOp::Le => ord != Ordering::Greater,
        BinOp::Gt => ord == Ordering::Greater,
        _ => ord != Ordering::Less,
    })
}

fn call(name: &str, args: &[Value]) -> Result<Value, String> {
    match (name, args) {
        ("contains", [Value::String(h), Value::String(n)]) => Ok(Value::Bool(h.contains(n.as_str()))),
        ("contains", [Value::Array(items), needle]) => Ok(Value::Bool(items.iter().any(|i| json_eq(i, needle)))),
        ("contains", [Value::Object(m), Value::String(k)]) => Ok(Value::Bool(m.contains_key(k))),
        ("contains", [h, n]) => Err(format!(
            "`contains` takes (string, string), (list, value) or (object, key), found {} and {}",
            describe(h),
            describe(n)
        )),
        ("starts_with", [Value::String(s), Value::String(p)]) => Ok(Value::Bool(s.starts_with(p.as_str()))),
        ("ends_with", [Value::String(s), Value::String(p)]) => Ok(Value::Bool(s.ends_with(p.as_str()))),
        ("starts_with" | "ends_with", [a, b]) => Err(format!(
            "`{name}` takes two strings, found {} and {}",
            describe(a),
            describe(b)
        )),
        ("len", [Value::String(s)]) => Ok(Value::from(s.chars().count())),
        ("len", [Value::Array(a)]) => Ok(Value::from(a.len())),
        ("len", [Value::Object(m)]) => Ok(Value::from(m.len())),
        ("len", [other]) => Err(format!(
            "`len` takes a string, list or object, found {}",
            describe(other)
        )),
        ("coalesce", values) => Ok(values.iter().find(|v| !v.is_null()).cloned().unwrap_or(Value::Null)),
        _ => Err(format!("`{name}` cannot take {} argument(s)", args.len())),
    }
}
