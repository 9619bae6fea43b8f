//! Walking a YAML [`Node`] tree while collecting every problem as a [`Diagnostic`].

use std::collections::BTreeMap;
use std::time::Duration;

use super::diagnostics::{Diagnostic, Diagnostics};
use super::suggest;
use super::yaml::{Node, Pos, SyntaxError, Value};

/// The collecting context of one validation.
pub(crate) struct Cx<'t> {
    pub(crate) origin: &'t str,
    pub(crate) text: &'t str,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// Parameters that some expression reads (for the unused-parameter warning).
    pub(crate) used_params: std::collections::BTreeSet<String>,
}

impl<'t> Cx<'t> {
    pub(crate) fn new(origin: &'t str, text: &'t str) -> Self {
        Self {
            origin,
            text,
            errors: Vec::new(),
            warnings: Vec::new(),
            used_params: std::collections::BTreeSet::new(),
        }
    }

    fn diag(&self, pos: Option<Pos>, path: &str, message: String) -> Diagnostic {
        Diagnostic {
            origin: self.origin.to_owned(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            path: path.to_owned(),
            message,
        }
    }

    /// Records an error at `pos` (or at the document path alone).
    pub(crate) fn error(&mut self, pos: Option<Pos>, path: &str, message: impl Into<String>) {
        let d = self.diag(pos, path, message.into());
        self.errors.push(d);
    }

    /// Records a warning; it does not make validation fail.
    pub(crate) fn warn(&mut self, pos: Option<Pos>, path: &str, message: impl Into<String>) {
        let d = self.diag(pos, path, format!("warning: {}", message.into()));
        self.warnings.push(d);
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Reports a YAML syntax error.
    pub(crate) fn syntax(&mut self, e: SyntaxError) {
        self.error(e.pos, "", e.message);
    }

    /// The warnings when there is no error; otherwise every diagnostic. Sorted by position.
    pub(crate) fn finish(self) -> Result<Vec<Diagnostic>, Diagnostics> {
        fn sorted(mut v: Vec<Diagnostic>) -> Vec<Diagnostic> {
            v.sort_by_key(|d| (d.line.is_none(), d.line, d.column));
            v.dedup();
            v
        }
        if self.errors.is_empty() {
            Ok(sorted(self.warnings))
        } else {
            // Warnings ride along, so that `validate` shows everything at once.
            let mut all = self.errors;
            all.extend(self.warnings);
            Err(Diagnostics(sorted(all)))
        }
    }

    /// The position of byte `offset` inside the string scalar `node` (whose text is
    /// `value`), when it can be found in the source; otherwise the node's own position.
    pub(crate) fn pos_in(&self, node: &Node, value: &str, offset: usize) -> Option<Pos> {
        let pos = node.pos?;
        let Some(start) = pos.offset else { return Some(pos) };
        let Some(src) = self.text.get(start..) else {
            return Some(pos);
        };
        let prefix = value.get(..offset).unwrap_or("");
        if prefix.contains('\n') {
            return Some(pos);
        }
        let quote = usize::from(src.starts_with('"') || src.starts_with('\''));
        if src.get(quote..).is_some_and(|s| s.starts_with(prefix)) {
            let col_shift = u32::try_from(quote + prefix.chars().count()).unwrap_or(0);
            Some(Pos {
                line: pos.line,
                column: pos.column + col_shift,
                offset: Some(start + quote + prefix.len()),
            })
        } else {
            Some(pos)
        }
    }

    /// Reads a mapping: reports a non-mapping, unknown keys (with a suggestion) and
    /// missing `required` keys. Returns the entries by key.
    pub(crate) fn mapping<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        what: &str,
        allowed: &[&str],
        required: &[&str],
    ) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            self.error(
                node.pos,
                path,
                format!("{what} must be a mapping, found {}", node.value.kind()),
            );
            return None;
        };
        let mut fields = Fields::default();
        for (k, v) in entries {
            let Some(name) = k.key_text() else {
                self.error(k.pos, path, "a key must be a plain name, found a list or mapping");
                continue;
            };
            // At the top of a runbook, `x-…` keys are free: a place to define YAML anchors.
            if path.is_empty() && name.starts_with("x-") && allowed.contains(&"runbook") {
                continue;
            }
            if !allowed.contains(&name.as_str()) {
                let hint = suggest::hint(&name, allowed.iter().copied());
                let msg = if hint.is_empty() {
                    format!(
                        "unknown field `{name}` in {what}; expected one of: {}",
                        allowed.join(", ")
                    )
                } else {
                    format!("unknown field `{name}` in {what}{hint}")
                };
                self.error(k.pos, path, msg);
                continue;
            }
            // Duplicates were reported by `check_duplicates`; the first one counts.
            fields.map.entry(name).or_insert((k, v));
        }
        for r in required {
            if !fields.map.contains_key(*r) {
                self.error(node.pos, path, format!("missing field `{r}` in {what}"));
            }
        }
        Some(fields)
    }

    /// Reports every duplicate key in the tree (YAML forbids them; the parser passes them
    /// through so that all of them are reported, not just the first).
    pub(crate) fn check_duplicates(&mut self, node: &Node, path: &str) {
        match &node.value {
            Value::Map(entries) => {
                let mut seen: BTreeMap<String, Option<Pos>> = BTreeMap::new();
                for (k, v) in entries {
                    let name = k.key_text().unwrap_or_default();
                    let child = join(path, &name);
                    if let Some(first) = seen.get(&name) {
                        let at = first
                            .map(|p| format!(" (first at line {}, column {})", p.line, p.column))
                            .unwrap_or_default();
                        self.error(k.pos, path, format!("duplicate key `{name}`{at}"));
                    } else {
                        seen.insert(name, k.pos);
                    }
                    self.check_duplicates(v, &child);
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.check_duplicates(item, &format!("{path}[{i}]"));
                }
            }
            _ => {}
        }
    }

    pub(crate) fn string<'n>(&mut self, node: &'n Node, path: &str, what: &str) -> Option<&'n str> {
        match &node.value {
            Value::String(s) => Some(s),
            Value::Null => {
                self.error(node.pos, path, format!("{what} must be a string, found nothing (null)"));
                None
            }
            other @ (Value::Seq(_) | Value::Map(_)) => {
                self.error(
                    node.pos,
                    path,
                    format!("{what} must be a string, found {}", other.kind()),
                );
                None
            }
            other => {
                self.error(
                    node.pos,
                    path,
                    format!(
                        "{what} must be a string, found {} (quote it to make it text)",
                        other.kind()
                    ),
                );
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, node: &Node, path: &str, what: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            other => {
                self.error(
                    node.pos,
                    path,
                    format!("{what} must be true or false, found {}", describe_node(other)),
                );
                None
            }
        }
    }

    pub(crate) fn integer(&mut self, node: &Node, path: &str, what: &str) -> Option<i64> {
        match &node.value {
            Value::Int(i) => Some(*i),
            Value::UInt(_) => {
                self.error(node.pos, path, format!("{what} is too large"));
                None
            }
            other => {
                self.error(
                    node.pos,
                    path,
                    format!("{what} must be an integer, found {}", describe_node(other)),
                );
                None
            }
        }
    }

    pub(crate) fn number(&mut self, node: &Node, path: &str, what: &str) -> Option<f64> {
        match &node.value {
            #[allow(clippy::cast_precision_loss)]
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) if f.is_finite() => Some(*f),
            other => {
                self.error(
                    node.pos,
                    path,
                    format!("{what} must be a number, found {}", describe_node(other)),
                );
                None
            }
        }
    }

    /// A duration such as `90s` or `1h30m`.
    pub(crate) fn duration(&mut self, node: &Node, path: &str, what: &str) -> Option<Duration> {
        match &node.value {
            Value::String(s) => match parse_duration(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.error(node.pos, path, e);
                    None
                }
            },
            Value::Int(i) => {
                self.error(
                    node.pos,
                    path,
                    format!("{what} needs a unit: write `{i}s`, `{i}m` or `{i}h` (units: ms, s, m, h, d)"),
                );
                None
            }
            other => {
                self.error(
                    node.pos,
                    path,
                    format!(
                        "{what} must be a duration such as `90s` or `1h30m`, found {}",
                        describe_node(other)
                    ),
                );
                None
            }
        }
    }

    /// One of a fixed set of words.
    pub(crate) fn choice<'a>(&mut self, node: &Node, path: &str, what: &str, choices: &[&'a str]) -> Option<&'a str> {
        let s = match &node.value {
            Value::String(s) => s.as_str(),
            other => {
                self.error(
                    node.pos,
                    path,
                    format!(
                        "{what} must be one of {}, found {}",
                        choices.join(", "),
                        describe_node(other)
                    ),
                );
                return None;
            }
        };
        if let Some(c) = choices.iter().find(|c| **c == s) {
            return Some(c);
        }
        let hint = suggest::hint(s, choices.iter().copied());
        self.error(
            node.pos,
            path,
            format!("{what} must be one of {}, found `{s}`{hint}", choices.join(", ")),
        );
        None
    }

    pub(crate) fn seq<'n>(&mut self, node: &'n Node, path: &str, what: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            other => {
                self.error(node.pos, path, format!("{what} must be a list, found {}", other.kind()));
                None
            }
        }
    }
}

/// `fogbook_activities::duration::parse`, with clearer messages for two common slips.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    fogbook_activities::duration::parse(s).map_err(|e| {
        let t = s.trim();
        if t.contains('.') && t.starts_with(|c: char| c.is_ascii_digit()) {
            format!("invalid duration `{s}`: fractions are not supported; combine units instead, e.g. `1h30m`")
        } else if t.contains(char::is_whitespace) {
            format!("invalid duration `{s}`: write it without spaces, e.g. `1h30m`")
        } else {
            e
        }
    })
}

/// A short description of a scalar for messages.
pub(crate) fn describe_node(v: &Value) -> String {
    match v {
        Value::String(s) if s.chars().count() <= 40 => format!("`{s}`"),
        Value::Int(i) => format!("{i}"),
        Value::Float(f) => format!("{f:?}"),
        Value::Bool(b) => format!("{b}"),
        other => other.kind().to_owned(),
    }
}

/// The entries of a mapping that passed [`Cx::mapping`].
#[derive(Default)]
pub(crate) struct Fields<'n> {
    map: BTreeMap<String, (&'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// The value of key `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&'n Node> {
        self.map.get(name).map(|(_, v)| *v)
    }
}

/// `a.b` from `a` and `b` (or `b` alone at the top).
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}
