//! A YAML document as a tree of nodes that remember where they were written.
//!
//! serde-saphyr has no `Value` type of its own, and typed structs with
//! `deny_unknown_fields` stop at the first error. The runbook validator must report every
//! error, so YAML is read once into this tree (every node wrapped in [`Spanned`]) and the
//! checks walk it, collecting diagnostics.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, Location, Spanned};

/// A position in the source text (1-based line and column).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub(crate) line: u32,
    pub(crate) column: u32,
    /// Byte offset of the node in the source text, when known.
    pub(crate) offset: Option<usize>,
}

impl Pos {
    fn from_location(loc: &Location) -> Option<Pos> {
        let line = u32::try_from(loc.line()).ok()?;
        let column = u32::try_from(loc.column()).ok()?;
        if line == 0 {
            return None;
        }
        let offset = loc.span().byte_offset().and_then(|o| usize::try_from(o).ok());
        Some(Pos { line, column, offset })
    }
}

/// A YAML node and where it was written.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) pos: Option<Pos>,
    pub(crate) value: Value,
}

/// The shape of a YAML node.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer above `i64::MAX`.
    UInt(u64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    /// Entries in document order. Keys are scalars rendered as text.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// What the node is, for messages ("expected a mapping, found a list").
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::UInt(_) => "an integer",
            Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// The key text of a mapping key node (scalars only).
    pub(crate) fn key_text(&self) -> Option<String> {
        match &self.value {
            Value::String(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::UInt(i) => Some(i.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Null => Some("null".to_owned()),
            Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// The node as plain JSON (positions dropped).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::UInt(u) => serde_json::Value::from(*u),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Seq(items) => items.iter().map(Node::to_json).collect(),
            Value::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.key_text().unwrap_or_default(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// One spanned node, the unit the visitor recurses through.
struct Raw(Spanned<RawValue>);

struct RawValue(Value);

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Spanned::<RawValue>::deserialize(d).map(Raw)
    }
}

impl Raw {
    fn into_node(self) -> Node {
        Node {
            pos: Pos::from_location(&self.0.referenced),
            value: self.0.value.0,
        }
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = RawValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawValue, E> {
        Ok(RawValue(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawValue, E> {
        Ok(RawValue(Value::Int(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
        Ok(RawValue(match i64::try_from(v) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::UInt(v),
        }))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawValue, E> {
        match i64::try_from(v) {
            Ok(i) => Ok(RawValue(Value::Int(i))),
            Err(_) => match u64::try_from(v) {
                Ok(u) => Ok(RawValue(Value::UInt(u))),
                Err(_) => Err(E::custom(format!("integer {v} is out of range"))),
            },
        }
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawValue, E> {
        match u64::try_from(v) {
            Ok(u) => self.visit_u64(u),
            Err(_) => Err(E::custom(format!("integer {v} is out of range"))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawValue, E> {
        Ok(RawValue(Value::Float(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawValue, E> {
        Ok(RawValue(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<RawValue, E> {
        Ok(RawValue(Value::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawValue, E> {
        Ok(RawValue(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<RawValue, E> {
        Ok(RawValue(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawValue, D::Error> {
        d.deserialize_any(ValueVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Raw>()? {
            items.push(item.into_node());
        }
        Ok(RawValue(Value::Seq(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Raw>()? {
            let value = map.next_value::<Raw>()?;
            entries.push((key.into_node(), value.into_node()));
        }
        Ok(RawValue(Value::Map(entries)))
    }
}

/// A YAML syntax or structure error, before any runbook check ran.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub(crate) pos: Option<Pos>,
    pub(crate) message: String,
}

/// Parses one YAML document into a [`Node`] tree, with budgets against alias bombs and
/// deep nesting, and YAML 1.2 booleans only (`no` stays a string). Duplicate keys are
/// passed through, so that the caller can report all of them (see `Cx::check_duplicates`).
pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: 48,
            max_documents: 1,
            max_nodes: 100_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_total_scalar_bytes: 4 * 1024 * 1024,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 10_000,
            max_replay_stack_depth: 16,
        },
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
        strict_booleans: true,
        // `007` and `1_000` stay text, so that an id such as `0042` is not turned into 42.
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
    };
    match serde_saphyr::from_str_with_options::<Raw>(text, options) {
        Ok(raw) => Ok(raw.into_node()),
        Err(e) => Err(syntax_error(&e)),
    }
}

fn syntax_error(e: &serde_saphyr::Error) -> SyntaxError {
    let pos = e.location().as_ref().and_then(Pos::from_location);
    let raw = e.without_snippet().to_string();
    SyntaxError {
        pos,
        message: friendly(&raw),
    }
}

/// Rewrites parser messages for runbook authors: drops the position the parser appends
/// (the diagnostic carries it) and explains budget breaches.
fn friendly(raw: &str) -> String {
    let msg = raw.find(" at line ").map_or(raw, |i| &raw[..i]).trim();
    if msg.starts_with("alias replay limit exceeded") || msg.contains("Aliases") || msg.contains("Anchors") {
        return "too many alias expansions (`*name`): refusing a document that expands to this size (alias bomb?)"
            .to_owned();
    }
    if let Some(rest) = msg.strip_prefix("budget breached: ") {
        if rest.starts_with("Depth") {
            return "the document is nested too deeply (more than 48 levels)".to_owned();
        }
        if rest.starts_with("Documents") {
            return "a file holds one YAML document; found a second one (`---`)".to_owned();
        }
        if rest.starts_with("Nodes") || rest.starts_with("Events") || rest.starts_with("TotalScalarBytes") {
            return "the document is too large".to_owned();
        }
        return format!("the document exceeds a parser limit ({rest})");
    }
    if msg.starts_with("tabs disallowed") {
        return "tabs are not allowed for indentation in YAML; indent with spaces".to_owned();
    }
    format!("invalid YAML: {msg}")
}
