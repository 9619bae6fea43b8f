//! The lexer of the expression language: text to tokens with their byte offsets.

use super::error::ExprError;
use super::syntax::{BinOp, op_text};

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Not,
    Op(BinOp),
    Str(String),
    Int(i64),
    Float(f64),
    Ident(String),
    /// A path segment right after a `.` (may start with a digit or contain `-`).
    Segment(String),
    End,
}

pub(super) fn describe(t: &Tok) -> String {
    match t {
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::LBracket => "`[`".into(),
        Tok::RBracket => "`]`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Dot => "`.`".into(),
        Tok::Not => "`!`".into(),
        Tok::Op(op) => format!("`{}`", op_text(*op)),
        Tok::Str(s) => format!("string '{s}'"),
        Tok::Int(i) => format!("number {i}"),
        Tok::Float(f) => format!("number {f}"),
        Tok::Ident(s) | Tok::Segment(s) => format!("`{s}`"),
        Tok::End => "the end of the expression".into(),
    }
}

fn is_segment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Splits `src[start..end]` into tokens with their byte offsets.
pub(super) fn lex(src: &str, start: usize, end: usize) -> Result<Vec<(Tok, usize)>, ExprError> {
    let text = &src[..end];
    let mut toks: Vec<(Tok, usize)> = Vec::new();
    let mut i = start;
    while i < end {
        let rest = &text[i..];
        let Some(c) = rest.chars().next() else { break };
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        let after_dot = matches!(toks.last(), Some((Tok::Dot, _)));
        if after_dot && is_segment_char(c) {
            let len = rest.find(|ch: char| !is_segment_char(ch)).unwrap_or(rest.len());
            toks.push((Tok::Segment(rest[..len].to_owned()), i));
            i += len;
            continue;
        }
        let two = rest.get(..2).unwrap_or("");
        let (tok, len) = match two {
            "==" => (Tok::Op(BinOp::Eq), 2),
            "!=" => (Tok::Op(BinOp::Ne), 2),
            "<=" => (Tok::Op(BinOp::Le), 2),
            ">=" => (Tok::Op(BinOp::Ge), 2),
            "&&" => (Tok::Op(BinOp::And), 2),
            "||" => (Tok::Op(BinOp::Or), 2),
            _ => match c {
                '(' => (Tok::LParen, 1),
                ')' => (Tok::RParen, 1),
                '[' => (Tok::LBracket, 1),
                ']' => (Tok::RBracket, 1),
                ',' => (Tok::Comma, 1),
                '.' => (Tok::Dot, 1),
                '!' => (Tok::Not, 1),
                '<' => (Tok::Op(BinOp::Lt), 1),
                '>' => (Tok::Op(BinOp::Gt), 1),
                '=' => return Err(ExprError::new(i, "`=` is not an operator; compare with `==`")),
                '&' => return Err(ExprError::new(i, "`&` is not an operator; use `&&`")),
                '|' => return Err(ExprError::new(i, "`|` is not an operator; use `||`")),
                '\'' | '"' => {
                    let (s, len) = lex_string(rest, i, c)?;
                    (Tok::Str(s), len)
                }
                '-' | '0'..='9' => {
                    let (t, len) = lex_number(rest, i)?;
                    (t, len)
                }
                c if c.is_ascii_alphabetic() || c == '_' => {
                    let len = rest.find(|ch: char| !is_segment_char(ch)).unwrap_or(rest.len());
                    (Tok::Ident(rest[..len].to_owned()), len)
                }
                other => {
                    return Err(ExprError::new(i, format!("unexpected character `{other}`")));
                }
            },
        };
        toks.push((tok, i));
        i += len;
    }
    toks.push((Tok::End, end));
    Ok(toks)
}

fn lex_string(rest: &str, at: usize, quote: char) -> Result<(String, usize), ExprError> {
    let mut out = String::new();
    let mut chars = rest.char_indices().skip(1).peekable();
    while let Some((j, ch)) = chars.next() {
        if ch == quote {
            // In single quotes, `''` stands for one quote (as in YAML and SQL).
            if quote == '\'' && matches!(chars.peek(), Some((_, '\''))) {
                chars.next();
                out.push('\'');
                continue;
            }
            return Ok((out, j + 1));
        }
        if quote == '"' && ch == '\\' {
            match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((k, other)) => {
                    return Err(ExprError::new(
                        at + k,
                        format!("unknown escape `\\{other}` (use \\n, \\t, \\\\ or \\\")"),
                    ));
                }
                None => break,
            }
            continue;
        }
        out.push(ch);
    }
    Err(ExprError::new(
        at,
        format!("unterminated string (missing closing {quote})"),
    ))
}

fn lex_number(rest: &str, at: usize) -> Result<(Tok, usize), ExprError> {
    let bytes = rest.as_bytes();
    let mut j = usize::from(bytes.first() == Some(&b'-'));
    let digits_start = j;
    while j < bytes.len() && bytes[j].is_ascii_digit() {
        j += 1;
    }
    if j == digits_start {
        return Err(ExprError::new(
            at,
            "`-` must be followed by a number (there is no subtraction)",
        ));
    }
    let mut is_float = false;
    if j + 1 < bytes.len() && bytes[j] == b'.' && bytes[j + 1].is_ascii_digit() {
        is_float = true;
        j += 1;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            j += 1;
        }
    }
    if j < bytes.len() && (bytes[j] == b'e' || bytes[j] == b'E') {
        let mut k = j + 1;
        if k < bytes.len() && (bytes[k] == b'+' || bytes[k] == b'-') {
            k += 1;
        }
        if k < bytes.len() && bytes[k].is_ascii_digit() {
            is_float = true;
            j = k;
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
        }
    }
    if j < bytes.len() && (bytes[j].is_ascii_alphabetic() || bytes[j] == b'_') {
        let word = rest.find(|c: char| !is_segment_char(c)).unwrap_or(rest.len());
        return Err(ExprError::new(
            at,
            format!("`{}` is not a number; quote text as '{}'", &rest[..word], &rest[..word]),
        ));
    }
    let text = &rest[..j];
    if is_float {
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok((Tok::Float(f), j)),
            _ => Err(ExprError::new(at, format!("number `{text}` is out of range"))),
        }
    } else {
        match text.parse::<i64>() {
            Ok(n) => Ok((Tok::Int(n), j)),
            Err(_) => Err(ExprError::new(at, format!("integer `{text}` is out of range"))),
        }
    }
}
