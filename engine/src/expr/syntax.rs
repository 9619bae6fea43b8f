//! Recursive-descent parser of the expression language (its lexer is in `lex.rs`).
//!
//! Grammar (lowest precedence first):
//!
//! ```text
//! expr    := or
//! or      := and ( "||" and )*
//! and     := cmp ( "&&" cmp )*
//! cmp     := unary ( ( "==" | "!=" | "<" | "<=" | ">" | ">=" ) unary )?
//! unary   := "!" unary | primary
//! primary := literal | path | call | "(" expr ")"
//! path    := ( "params" | "steps" | "run" ) ( "." segment | "[" ( int | string ) "]" )*
//! call    := name "(" ( expr ( "," expr )* )? ")"
//! ```

use serde_json::Value;

use super::error::ExprError;
use super::lex::{Tok, describe, lex};

/// Functions an expression may call, with their arity.
pub(crate) const FUNCTIONS: &[(&str, std::ops::RangeInclusive<usize>)] = &[
    ("contains", 2..=2),
    ("starts_with", 2..=2),
    ("ends_with", 2..=2),
    ("len", 1..=1),
    ("coalesce", 1..=16),
];

/// Where a path starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Root {
    Params,
    Steps,
    Run,
}

impl Root {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Root::Params => "params",
            Root::Steps => "steps",
            Root::Run => "run",
        }
    }
}

/// One step of a path after its root.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Segment {
    /// `.name` or `['name']`.
    Key(String),
    /// `[3]` (or `.3` on a list).
    Index(usize),
}

/// A path such as `steps.create.outputs.id`, with its place in the source.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Path {
    pub(crate) root: Root,
    pub(crate) segments: Vec<Segment>,
    /// Byte range in the source text.
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Ast {
    Lit(Value, Span),
    Path(Path),
    Not(Box<Ast>, Span),
    Bin(BinOp, Box<Ast>, Box<Ast>, Span),
    Call(String, Vec<Ast>, Span),
}

/// A byte range in the source text.
pub(crate) type Span = (usize, usize);

impl Ast {
    pub(crate) fn span(&self) -> Span {
        match self {
            Ast::Lit(_, s) => *s,
            Ast::Path(p) => (p.start, p.end),
            Ast::Not(_, s) | Ast::Bin(_, _, _, s) | Ast::Call(_, _, s) => *s,
        }
    }

    /// What the expression produces when that is known without a run: `boolean`,
    /// `integer`, `number`, `string`, `null`; `None` when it depends on a path.
    pub(crate) fn static_kind(&self) -> Option<&'static str> {
        match self {
            Ast::Lit(Value::Bool(_), _) | Ast::Not(..) | Ast::Bin(..) => Some("boolean"),
            Ast::Lit(Value::Number(n), _) if n.is_i64() => Some("integer"),
            Ast::Lit(Value::Number(_), _) => Some("number"),
            Ast::Lit(Value::String(_), _) => Some("string"),
            Ast::Lit(_, _) => Some("null"),
            Ast::Call(name, _, _) => match name.as_str() {
                "contains" | "starts_with" | "ends_with" => Some("boolean"),
                "len" => Some("integer"),
                _ => None,
            },
            Ast::Path(_) => None,
        }
    }

    /// Visits every path in the expression, in source order.
    pub(crate) fn paths<'a>(&'a self, out: &mut Vec<&'a Path>) {
        match self {
            Ast::Lit(..) => {}
            Ast::Path(p) => out.push(p),
            Ast::Not(a, _) => a.paths(out),
            Ast::Bin(_, a, b, _) => {
                a.paths(out);
                b.paths(out);
            }
            Ast::Call(_, args, _) => args.iter().for_each(|a| a.paths(out)),
        }
    }
}

pub(crate) fn op_text(op: BinOp) -> &'static str {
    match op {
        BinOp::Eq => "==",
        BinOp::Ne => "!=",
        BinOp::Lt => "<",
        BinOp::Le => "<=",
        BinOp::Gt => ">",
        BinOp::Ge => ">=",
        BinOp::And => "&&",
        BinOp::Or => "||",
    }
}

/// Longest accepted expression, in bytes.
pub(crate) const MAX_EXPR_BYTES: usize = 4096;
/// Deepest accepted nesting of parentheses, `!` and function calls.
const MAX_DEPTH: usize = 32;

struct Parser<'s> {
    src: &'s str,
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end: usize,
    depth: usize,
}

/// Parses `src[start..end]` as one expression.
pub(crate) fn parse(src: &str, start: usize, end: usize) -> Result<Ast, ExprError> {
    if end.saturating_sub(start) > MAX_EXPR_BYTES {
        return Err(ExprError::new(
            start,
            format!("the expression is longer than {MAX_EXPR_BYTES} bytes"),
        ));
    }
    let toks = lex(src, start, end)?;
    if matches!(toks.first(), Some((Tok::End, _))) {
        return Err(ExprError::new(start, "empty expression"));
    }
    let mut p = Parser {
        src,
        toks,
        pos: 0,
        end,
        depth: 0,
    };
    let ast = p.or()?;
    let (tok, at) = p.peek();
    if *tok != Tok::End {
        let at = *at;
        let msg = format!("unexpected {} after a complete expression", describe(tok));
        return Err(ExprError::new(at, msg));
    }
    Ok(ast)
}

impl Parser<'_> {
    fn peek(&self) -> &(Tok, usize) {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> (Tok, usize) {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    /// Byte offset just after the last consumed token.
    fn last_end(&self) -> usize {
        if self.pos == 0 {
            return 0;
        }
        let next_start = self.toks[self.pos].1;
        // Trim the whitespace between the previous token and the next one.
        let slice = &self.src[..next_start.min(self.end)];
        slice.trim_end().len()
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<usize, ExprError> {
        let (tok, at) = self.bump();
        if tok == want {
            Ok(at)
        } else {
            Err(ExprError::new(at, format!("expected {what}, found {}", describe(&tok))))
        }
    }

    fn or(&mut self) -> Result<Ast, ExprError> {
        let mut left = self.and()?;
        while self.peek().0 == Tok::Op(BinOp::Or) {
            self.bump();
            let right = self.and()?;
            let span = (left.span().0, right.span().1);
            left = Ast::Bin(BinOp::Or, Box::new(left), Box::new(right), span);
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Ast, ExprError> {
        let mut left = self.cmp()?;
        while self.peek().0 == Tok::Op(BinOp::And) {
            self.bump();
            let right = self.cmp()?;
            let span = (left.span().0, right.span().1);
            left = Ast::Bin(BinOp::And, Box::new(left), Box::new(right), span);
        }
        Ok(left)
    }

    fn cmp(&mut self) -> Result<Ast, ExprError> {
        let left = self.unary()?;
        let op = match self.peek().0 {
            Tok::Op(op @ (BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge)) => op,
            _ => return Ok(left),
        };
        self.bump();
        let right = self.unary()?;
        if let (Tok::Op(BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge), at) = self.peek() {
            return Err(ExprError::new(
                *at,
                "comparisons cannot be chained; use `&&` or parentheses",
            ));
        }
        let span = (left.span().0, right.span().1);
        Ok(Ast::Bin(op, Box::new(left), Box::new(right), span))
    }

    fn enter(&mut self, at: usize) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::new(
                at,
                format!("the expression nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<Ast, ExprError> {
        if self.peek().0 == Tok::Not {
            let (_, at) = self.bump();
            self.enter(at)?;
            let inner = self.unary()?;
            self.depth -= 1;
            let span = (at, inner.span().1);
            return Ok(Ast::Not(Box::new(inner), span));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Ast, ExprError> {
        let (tok, at) = self.bump();
        match tok {
            Tok::Str(s) => Ok(self.lit(Value::String(s), at)),
            Tok::Int(i) => Ok(self.lit(Value::from(i), at)),
            Tok::Float(f) => Ok(self.lit(serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number), at)),
            Tok::LParen => {
                self.enter(at)?;
                let inner = self.or()?;
                self.expect(Tok::RParen, "`)`")?;
                self.depth -= 1;
                Ok(inner)
            }
            Tok::Ident(name) => match name.as_str() {
                "true" => Ok(self.lit(Value::Bool(true), at)),
                "false" => Ok(self.lit(Value::Bool(false), at)),
                "null" => Ok(self.lit(Value::Null, at)),
                "params" => self.path(Root::Params, at),
                "steps" => self.path(Root::Steps, at),
                "run" => self.path(Root::Run, at),
                _ if self.peek().0 == Tok::LParen => self.call(name, at),
                _ => Err(ExprError::new(
                    at,
                    format!(
                        "unknown name `{name}`: a path starts with `params.`, `steps.` or `run.`, and text must be quoted ('{name}')"
                    ),
                )),
            },
            Tok::End => Err(ExprError::new(at, "expected a value, found the end of the expression")),
            other => Err(ExprError::new(
                at,
                format!("expected a value, found {}", describe(&other)),
            )),
        }
    }

    fn lit(&self, v: Value, at: usize) -> Ast {
        Ast::Lit(v, (at, self.last_end()))
    }

    fn call(&mut self, name: String, at: usize) -> Result<Ast, ExprError> {
        let Some((_, arity)) = FUNCTIONS.iter().find(|(n, _)| *n == name) else {
            let known: Vec<&str> = FUNCTIONS.iter().map(|(n, _)| *n).collect();
            let hint = crate::runbook::suggest::closest(&name, known.iter().copied())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(ExprError::new(
                at,
                format!("unknown function `{name}`{hint}; functions are {}", known.join(", ")),
            ));
        };
        self.bump();
        self.enter(at)?;
        let mut args = Vec::new();
        if self.peek().0 != Tok::RParen {
            loop {
                args.push(self.or()?);
                if self.peek().0 == Tok::Comma {
                    self.bump();
                    continue;
                }
                break;
            }
        }
        self.expect(Tok::RParen, "`,` or `)`")?;
        self.depth -= 1;
        if !arity.contains(&args.len()) {
            let want = if arity.start() == arity.end() {
                format!("{}", arity.start())
            } else {
                format!("at least {}", arity.start())
            };
            return Err(ExprError::new(
                at,
                format!("`{name}` takes {want} argument(s), found {}", args.len()),
            ));
        }
        let end = self.last_end();
        Ok(Ast::Call(name, args, (at, end)))
    }

    fn path(&mut self, root: Root, start: usize) -> Result<Ast, ExprError> {
        let mut segments = Vec::new();
        loop {
            match self.peek().0 {
                Tok::Dot => {
                    self.bump();
                    let (tok, at) = self.bump();
                    match tok {
                        Tok::Segment(s) => segments.push(Segment::Key(s)),
                        other => {
                            return Err(ExprError::new(
                                at,
                                format!("expected a name after `.`, found {}", describe(&other)),
                            ));
                        }
                    }
                }
                Tok::LBracket => {
                    self.bump();
                    let (tok, at) = self.bump();
                    match tok {
                        Tok::Int(i) => match usize::try_from(i) {
                            Ok(i) => segments.push(Segment::Index(i)),
                            Err(_) => return Err(ExprError::new(at, "a list index cannot be negative")),
                        },
                        Tok::Str(s) => segments.push(Segment::Key(s)),
                        other => {
                            return Err(ExprError::new(
                                at,
                                format!("expected an index or a quoted key in `[]`, found {}", describe(&other)),
                            ));
                        }
                    }
                    self.expect(Tok::RBracket, "`]`")?;
                }
                _ => break,
            }
        }
        let end = self.last_end();
        let path = Path {
            root,
            segments,
            start,
            end,
        };
        check_shape(&path, self.src)?;
        Ok(Ast::Path(path))
    }
}

/// Checks the fixed parts of a path: `params.<name>`, `run.<field>`,
/// `steps.<id>.status` and `steps.<id>.outputs...`.
fn check_shape(path: &Path, src: &str) -> Result<(), ExprError> {
    let text = &src[path.start..path.end];
    let key = |i: usize| match path.segments.get(i) {
        Some(Segment::Key(k)) => Some(k.as_str()),
        _ => None,
    };
    match path.root {
        Root::Params | Root::Run => {
            if key(0).is_none() {
                return Err(ExprError::new(
                    path.start,
                    format!("`{text}` needs a name: `{}.<name>`", path.root.as_str()),
                ));
            }
        }
        Root::Steps => {
            if key(0).is_none() {
                return Err(ExprError::new(
                    path.start,
                    format!("`{text}` needs a step id: `steps.<id>.outputs.<field>` or `steps.<id>.status`"),
                ));
            }
            match key(1) {
                Some("outputs") => {}
                Some("status") if path.segments.len() == 2 => {}
                Some("status") => {
                    return Err(ExprError::new(
                        path.start,
                        format!("`{text}`: `status` is a string and has no fields"),
                    ));
                }
                Some("output") => {
                    return Err(ExprError::new(path.start, format!("`{text}`: did you mean `outputs`?")));
                }
                _ => {
                    return Err(ExprError::new(
                        path.start,
                        format!("`{text}`: after `steps.<id>` comes `.outputs` or `.status`"),
                    ));
                }
            }
        }
    }
    Ok(())
}
