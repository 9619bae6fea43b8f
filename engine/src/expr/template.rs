//! [`Expr`] (a condition or value) and [`Template`] (a string with `${{ }}` parts).

use std::fmt;

use serde_json::Value;

use super::error::{EvalError, ExprError};
use super::eval::{Scope, eval};
use super::syntax::{self, Ast, Path};

/// One expression, e.g. `params.size > 4 && steps.check.status == 'completed'`.
///
/// A `${{ … }}` wrapper around the whole text is accepted and ignored, so `when:` can be
/// written either way.
#[derive(Clone)]
pub struct Expr {
    src: String,
    ast: Ast,
}

impl Expr {
    /// Parses an expression. Error offsets are byte offsets into `s`.
    pub fn parse(s: &str) -> Result<Expr, ExprError> {
        let (start, end) = unwrap_braces(s);
        if s[start..end].contains("${{") {
            let at = start + s[start..end].find("${{").unwrap_or(0);
            return Err(ExprError::new(
                at,
                "`${{` inside an expression; write the expression without it",
            ));
        }
        let ast = syntax::parse(s, start, end)?;
        Ok(Expr { src: s.to_owned(), ast })
    }

    /// The text as written.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// Evaluates the expression.
    pub fn eval(&self, scope: &Scope<'_>) -> Result<Value, EvalError> {
        eval(&self.ast, &self.src, scope)
    }

    /// Evaluates the expression and requires `true` or `false`.
    pub fn eval_bool(&self, scope: &Scope<'_>) -> Result<bool, EvalError> {
        match self.eval(scope)? {
            Value::Bool(b) => Ok(b),
            other => Err(EvalError::NotBool {
                expr: self.inner_text().to_owned(),
                found: super::eval::describe(&other),
            }),
        }
    }

    fn inner_text(&self) -> &str {
        let (start, end) = unwrap_braces(&self.src);
        self.src[start..end].trim()
    }

    pub(crate) fn paths(&self) -> Vec<&Path> {
        let mut out = Vec::new();
        self.ast.paths(&mut out);
        out
    }

    /// The parsed expression.
    pub(crate) fn ast(&self) -> &Ast {
        &self.ast
    }
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Expr").field(&self.src).finish()
    }
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.src == other.src
    }
}

/// The byte range inside an optional `${{ … }}` wrapper around the whole (trimmed) text.
fn unwrap_braces(s: &str) -> (usize, usize) {
    let lead = s.len() - s.trim_start().len();
    let trimmed = s.trim();
    if trimmed.starts_with("${{") && trimmed.ends_with("}}") && trimmed.len() >= 5 {
        let start = lead + 3;
        let end = lead + trimmed.len() - 2;
        // Only when the closing `}}` is the one that matches the opening.
        if closing(s, start) == Some(end) {
            return (start, end);
        }
    }
    (0, s.len())
}

/// The offset of the `}}` that closes an expression starting at `from`, skipping quoted
/// strings.
fn closing(s: &str, from: usize) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = from;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if q == b'"' && b == b'\\' {
                    i += 2;
                    continue;
                }
                if b == q {
                    quote = None;
                }
            }
            None => {
                if b == b'\'' || b == b'"' {
                    quote = Some(b);
                } else if b == b'}' && bytes.get(i + 1) == Some(&b'}') {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

#[derive(Clone)]
enum Part {
    Text(String),
    Expr(Ast),
}

/// A string that may contain `${{ expr }}` parts, e.g. `fog/${{ params.failover_group }}`.
///
/// When the whole string is exactly one `${{ }}`, [`Template::eval`] keeps the JSON type of
/// the result (a boolean, a number, an object); otherwise the parts are joined into a string.
#[derive(Clone)]
pub struct Template {
    src: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parses a template. Error offsets are byte offsets into `s`.
    pub fn parse(s: &str) -> Result<Template, ExprError> {
        let mut parts = Vec::new();
        let mut i = 0;
        while let Some(found) = s[i..].find("${{") {
            let open = i + found;
            if open > i {
                parts.push(Part::Text(s[i..open].to_owned()));
            }
            let start = open + 3;
            let Some(end) = closing(s, start) else {
                return Err(ExprError::new(open, "unclosed `${{` (missing `}}`)"));
            };
            if s[start..end].contains("${{") {
                let at = start + s[start..end].find("${{").unwrap_or(0);
                return Err(ExprError::new(at, "`${{` cannot be nested"));
            }
            if s[start..end].trim().is_empty() {
                return Err(ExprError::new(open, "empty `${{ }}`"));
            }
            parts.push(Part::Expr(syntax::parse(s, start, end)?));
            i = end + 2;
        }
        if i < s.len() {
            parts.push(Part::Text(s[i..].to_owned()));
        }
        Ok(Template {
            src: s.to_owned(),
            parts,
        })
    }

    /// The text as written.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// The text when the template has no `${{ }}` part.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// Whether the whole string is one `${{ }}` (so the result keeps its JSON type).
    pub fn is_single_expr(&self) -> bool {
        matches!(self.parts.as_slice(), [Part::Expr(_)])
    }

    /// Evaluates the template.
    pub fn eval(&self, scope: &Scope<'_>) -> Result<Value, EvalError> {
        if let [Part::Expr(ast)] = self.parts.as_slice() {
            return eval(ast, &self.src, scope);
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Expr(ast) => match eval(ast, &self.src, scope)? {
                    Value::String(s) => out.push_str(&s),
                    Value::Null => {
                        let (a, b) = ast.span();
                        return Err(EvalError::NullInString {
                            expr: self.src.get(a..b).unwrap_or("").trim().to_owned(),
                        });
                    }
                    Value::Bool(b) => out.push_str(if b { "true" } else { "false" }),
                    Value::Number(n) => out.push_str(&n.to_string()),
                    v @ (Value::Array(_) | Value::Object(_)) => out.push_str(&v.to_string()),
                },
            }
        }
        Ok(Value::String(out))
    }

    pub(crate) fn paths(&self) -> Vec<&Path> {
        let mut out = Vec::new();
        for p in &self.parts {
            if let Part::Expr(ast) = p {
                ast.paths(&mut out);
            }
        }
        out
    }

    /// For a single-expression template, whether its result type is known to be boolean.
    pub(crate) fn single_ast(&self) -> Option<&Ast> {
        match self.parts.as_slice() {
            [Part::Expr(ast)] => Some(ast),
            _ => None,
        }
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Template").field(&self.src).finish()
    }
}

impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.src == other.src
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fmt::Write as _;

    use serde_json::json;

    use super::*;
    use crate::expr::StepScope;

    struct Fixture {
        params: Value,
        steps: BTreeMap<String, StepScope>,
        run: Value,
    }

    fn fixture() -> Fixture {
        let mut steps = BTreeMap::new();
        steps.insert(
            "create".to_owned(),
            StepScope {
                status: "completed".into(),
                outputs: json!({ "id": "/subscriptions/s/x", "count": 2, "items": [{ "name": "i0" }] }),
            },
        );
        steps.insert(
            "skipped-one".to_owned(),
            StepScope {
                status: "skipped".into(),
                outputs: Value::Null,
            },
        );
        steps.insert(
            "failed-one".to_owned(),
            StepScope {
                status: "failed".into(),
                outputs: json!({ "exit_code": 1 }),
            },
        );
        Fixture {
            params: json!({
                "target": "world", "n": 3, "f": 1.5, "flag": true, "nothing": null,
                "primary": { "name": "mi-a", "subscription": "sub" },
                "list": ["a", "b"],
            }),
            steps,
            run: json!({ "id": "r-1", "runbook": "demo" }),
        }
    }

    fn render_eval(r: Result<Value, EvalError>) -> String {
        match r {
            Ok(v) => format!("= {v}"),
            Err(e) => format!("! {e}"),
        }
    }

    /// Each line: `source  =>  result` (`= json`, `! eval error`, `parse error at N: ..`).
    fn check_exprs(cases: &[&str]) -> String {
        let f = fixture();
        let scope = Scope {
            params: &f.params,
            steps: &f.steps,
            run: &f.run,
        };
        let mut out = String::new();
        for src in cases {
            let result = match Expr::parse(src) {
                Ok(e) => render_eval(e.eval(&scope)),
                Err(e) => format!("parse error at {}: {e}", e.offset),
            };
            let _ = writeln!(out, "{src:<48} {result}");
        }
        out
    }

    #[test]
    fn expressions_evaluate() {
        insta::assert_snapshot!(check_exprs(&[
            "params.target",
            "${{ params.target }}",
            "params.n == 3",
            "params.n == 3.0",
            "params.f > 1",
            "params.n >= 3 && params.n <= 3",
            "params.n < -1",
            "'a' < 'b'",
            "params.target != \"x\"",
            "params.flag && !false",
            "(true || false) && false",
            "true || params.missing",
            "false && params.missing",
            "params.primary.name",
            "params.primary",
            "params.list[1]",
            "params.list.0",
            "params.primary['name']",
            "steps.create.outputs.id",
            "steps.create.outputs.items[0].name",
            "steps.create.outputs.items.0.name",
            "steps.create.status == 'completed'",
            "steps.create.outputs",
            "steps.skipped-one.outputs.x.y",
            "steps.skipped-one.status",
            "steps.failed-one.outputs.exit_code != 0",
            "contains(params.list, 'a')",
            "contains(params.target, 'orl')",
            "contains(params.primary, 'name')",
            "starts_with(params.target, 'wo')",
            "ends_with(params.target, 'x')",
            "len(params.list) == 2",
            "coalesce(params.nothing, 'fallback')",
            "run.id",
            "'it''s'",
            "\"say \\\"hi\\\"\\n\"",
            "1.5e3",
            "null == params.nothing",
            "params.list == ['a']",
        ]));
    }

    #[test]
    fn evaluation_errors_name_the_path() {
        insta::assert_snapshot!(check_exprs(&[
            "params.missing",
            "params.target.length",
            "params.list[5]",
            "steps.nope.outputs.x",
            "steps.create.outputs.missing",
            "steps.create.outputs.items[3]",
            "run.started_at",
            "params.n < 'a'",
            "params.n && true",
            "!params.target",
            "contains(params.n, 1)",
            "len(params.n)",
            "starts_with(params.n, 'a')",
        ]));
    }

    #[test]
    fn parse_errors_say_where() {
        insta::assert_snapshot!(check_exprs(&[
            "",
            "   ",
            "params",
            "steps.x",
            "steps.x.output.y",
            "steps.x.status.y",
            "steps.x.result",
            "run",
            "target == 'x'",
            "params.a = 1",
            "params.a == 1 == 2",
            "(params.a",
            "params.a)",
            "'unterminated",
            "\"bad \\q escape\"",
            "foo(1)",
            "contans(params.a, 'x')",
            "contains(1)",
            "len(1, 2)",
            "params.a & params.b",
            "params.a | params.b",
            "1abc",
            "- 1",
            "params.list[-1]",
            "params.list[x]",
            "params.",
            "params.a params.b",
            "${{ params.a }} == 1",
            "${{ ${{ params.a }} }}",
            "99999999999999999999",
            "params.a == #",
        ]));
    }

    fn check_templates(cases: &[&str]) -> String {
        let f = fixture();
        let scope = Scope {
            params: &f.params,
            steps: &f.steps,
            run: &f.run,
        };
        let mut out = String::new();
        for src in cases {
            let result = match Template::parse(src) {
                Ok(t) => render_eval(t.eval(&scope)),
                Err(e) => format!("parse error at {}: {e}", e.offset),
            };
            let _ = writeln!(out, "{src:<48} {result}");
        }
        out
    }

    #[test]
    fn templates_interpolate_or_keep_types() {
        insta::assert_snapshot!(check_templates(&[
            "plain text",
            "",
            "hello ${{ params.target }}!",
            "${{ params.n }}",
            "n=${{ params.n }}",
            "${{ params.flag }}",
            "${{ params.primary }}",
            "p=${{ params.primary }}",
            "${{ params.list }}",
            "${{ params.nothing }}",
            "x ${{ params.nothing }}",
            " ${{ params.n }}",
            "${{ params.target }}-${{ steps.create.outputs.count }}",
            "${{ '}}' }}",
            "$x {{ y }} }}",
            "fog/${{ params.primary.name }}",
            "a ${{ params.target",
            "${{ }}",
            "${{ params.missing }}",
            "${{ params.a == }}",
        ]));
    }

    #[test]
    fn when_must_be_boolean() {
        let f = fixture();
        let scope = Scope {
            params: &f.params,
            steps: &f.steps,
            run: &f.run,
        };
        let mut out = String::new();
        for src in [
            "${{ params.flag }}",
            "params.n > 1",
            "params.target",
            "${{ steps.skipped-one.outputs.x }}",
        ] {
            let r = Expr::parse(src).expect("parses").eval_bool(&scope);
            let _ = writeln!(out, "{src:<40} {r:?}");
        }
        insta::assert_snapshot!(out);
    }

    #[test]
    fn source_is_kept() {
        let e = Expr::parse("${{ params.a == 1 }}").expect("parses");
        assert_eq!(e.source(), "${{ params.a == 1 }}");
        let t = Template::parse("x ${{ params.a }}").expect("parses");
        assert_eq!(t.source(), "x ${{ params.a }}");
        assert!(!t.is_single_expr());
        assert_eq!(Template::parse("lit").expect("parses").as_literal(), Some("lit"));
    }
}
