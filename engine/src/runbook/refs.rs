//! Static checks of the paths inside expressions: parameters that exist, earlier steps
//! only, `run.` fields that the executor provides.

use std::collections::{BTreeMap, BTreeSet};

use super::model::ParamType;
use super::reader::Cx;
use super::suggest;
use super::yaml::Node;
use crate::expr::RUN_FIELDS;
use crate::expr::syntax::{Ast, Path, Root, Segment};

/// The JSON type an expression is known to produce before the run, using the declared
/// parameter types for paths such as `params.count` (`None` when it cannot be known, e.g.
/// a step output, or a parameter whose default is `null`).
pub(crate) fn static_kind(
    ast: &Ast,
    params: &BTreeMap<String, ParamType>,
    nullable: &BTreeSet<String>,
) -> Option<&'static str> {
    let Ast::Path(p) = ast else { return ast.static_kind() };
    if p.root != Root::Params {
        return None;
    }
    let Some(Segment::Key(name)) = p.segments.first() else {
        return None;
    };
    if nullable.contains(name) {
        return None;
    }
    let ty = params.get(name)?;
    match (ty, &p.segments[1..]) {
        (ParamType::String | ParamType::Name | ParamType::Duration | ParamType::Path, []) => Some("string"),
        (ParamType::Int, []) => Some("integer"),
        (ParamType::Number, []) => Some("number"),
        (ParamType::Bool, []) => Some("boolean"),
        (ParamType::Instance | ParamType::Object, []) => Some("object"),
        (ParamType::List, []) => Some("array"),
        (ParamType::Instance | ParamType::List, [_]) => Some("string"),
        _ => None,
    }
}

/// The fields of an `instance` parameter.
pub(crate) const INSTANCE_FIELDS: &[&str] = &["subscription", "resource_group", "name", "location", "subnet_id"];

/// What an expression in a given place may refer to.
pub(crate) struct RefScope<'a> {
    /// Declared parameters.
    pub(crate) params: &'a BTreeMap<String, ParamType>,
    /// Every step id with its index.
    pub(crate) steps: &'a BTreeMap<String, usize>,
    /// Every step id with its activity (`uses`), to check output fields.
    pub(crate) uses: &'a BTreeMap<String, String>,
    /// The index of the step the expression belongs to; `None` where steps are not
    /// visible at all (locks, notify).
    pub(crate) current: Option<usize>,
    /// Whether `run.` is visible.
    pub(crate) run: bool,
    /// How the place is named in messages ("a lock key").
    pub(crate) place: &'a str,
    /// Parameters whose default is `null` (their type says nothing about their value).
    pub(crate) nullable: &'a BTreeSet<String>,
}

/// Checks every path of an expression written in string scalar `node` (text `value`).
pub(crate) fn check_paths(
    cx: &mut Cx<'_>,
    scope: &RefScope<'_>,
    node: &Node,
    value: &str,
    path: &str,
    paths: &[&Path],
) {
    for p in paths {
        if let (Root::Params, Some(Segment::Key(name))) = (p.root, p.segments.first()) {
            cx.used_params.insert(name.clone());
        }
        if let Some(msg) = check_one(scope, p, value) {
            let pos = cx.pos_in(node, value, p.start);
            cx.error(pos, path, msg);
        }
    }
}

fn check_one(scope: &RefScope<'_>, p: &Path, src: &str) -> Option<String> {
    let text = src.get(p.start..p.end).unwrap_or("");
    let key = |i: usize| match p.segments.get(i) {
        Some(Segment::Key(k)) => Some(k.as_str()),
        _ => None,
    };
    match p.root {
        Root::Params => {
            let name = key(0)?;
            let Some(ty) = scope.params.get(name) else {
                let hint = suggest::hint(name, scope.params.keys().map(String::as_str));
                return Some(if scope.params.is_empty() {
                    format!("`{text}`: unknown parameter `{name}` (the runbook declares no parameters)")
                } else {
                    format!("`{text}`: unknown parameter `{name}`{hint}")
                });
            };
            check_param_fields(*ty, name, &p.segments[1..], text)
        }
        Root::Run => {
            if !scope.run {
                return Some(format!("`{text}`: {} can only use `params.`", scope.place));
            }
            let field = key(0)?;
            if !RUN_FIELDS.contains(&field) {
                let hint = suggest::hint(field, RUN_FIELDS.iter().copied());
                return Some(format!(
                    "`{text}`: `run` has no field `{field}`{hint}; it has {}",
                    RUN_FIELDS.join(", ")
                ));
            }
            if p.segments.len() > 1 {
                return Some(format!("`{text}`: `run.{field}` is a string and has no fields"));
            }
            None
        }
        Root::Steps => {
            let Some(current) = scope.current else {
                let allowed = if scope.run { "`params.` and `run.`" } else { "`params.`" };
                return Some(format!(
                    "`{text}`: {} is computed before any step runs, so it can only use {allowed}",
                    scope.place
                ));
            };
            let id = key(0)?;
            match scope.steps.get(id) {
                None => {
                    let hint = suggest::hint(id, scope.steps.keys().map(String::as_str));
                    Some(format!("`{text}`: there is no step `{id}`{hint}"))
                }
                Some(&i) if i == current => Some(format!("`{text}`: a step cannot use its own outputs or status")),
                Some(&i) if i > current => Some(format!(
                    "`{text}`: step `{id}` runs later (step {} of the list); a step can only use earlier steps",
                    i + 1
                )),
                Some(_) => check_output_field(scope, id, &p.segments[1..], text),
            }
        }
    }
}

fn check_param_fields(ty: ParamType, name: &str, rest: &[Segment], text: &str) -> Option<String> {
    let first = rest.first()?;
    match ty {
        ParamType::Object => None,
        ParamType::Instance => {
            let Segment::Key(field) = first else {
                return Some(format!("`{text}`: `params.{name}` is an instance, not a list"));
            };
            if !INSTANCE_FIELDS.contains(&field.as_str()) {
                let hint = suggest::hint(field, INSTANCE_FIELDS.iter().copied());
                return Some(format!(
                    "`{text}`: an instance has no field `{field}`{hint}; it has {}",
                    INSTANCE_FIELDS.join(", ")
                ));
            }
            if rest.len() > 1 {
                return Some(format!(
                    "`{text}`: `params.{name}.{field}` is a string and has no fields"
                ));
            }
            None
        }
        ParamType::List => match (first, rest.len()) {
            (Segment::Index(_), 1) => None,
            (Segment::Key(k), 1) if k.parse::<usize>().is_ok() => None,
            (Segment::Key(_), 1) => Some(format!(
                "`{text}`: `params.{name}` is a list; index it with a number, e.g. `params.{name}[0]`"
            )),
            _ => Some(format!(
                "`{text}`: the items of `params.{name}` are strings and have no fields"
            )),
        },
        other => Some(format!(
            "`{text}`: `params.{name}` is of type `{}` and has no fields",
            other.name()
        )),
    }
}

/// `steps.ID.outputs.FIELD` names a field the activity of step ID outputs (when its output
/// fields are known: see `fogbook_activities::output_fields`).
fn check_output_field(scope: &RefScope<'_>, id: &str, rest: &[Segment], text: &str) -> Option<String> {
    let (Some(Segment::Key(outputs)), Some(Segment::Key(field))) = (rest.first(), rest.get(1)) else {
        return None;
    };
    if outputs != "outputs" {
        return None;
    }
    let uses = scope.uses.get(id)?;
    let fields = fogbook_activities::output_fields(uses)?;
    if fields.contains(&field.as_str()) {
        return None;
    }
    let hint = suggest::hint(field, fields.iter().copied());
    Some(format!(
        "`{text}`: step `{id}` ({uses}) has no output `{field}`{hint}; its outputs are {}",
        fields.join(", ")
    ))
}
