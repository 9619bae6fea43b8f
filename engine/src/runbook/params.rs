//! Parameter values: parameter files, `--set k=v`, type checks, and defaults.

use serde_json::{Map, Value};

use super::diagnostics::{Diagnostic, Diagnostics};
use super::model::{ParamType, Runbook};
use super::parse::MAX_FILE_BYTES;
use super::reader::Cx;
use super::refs::INSTANCE_FIELDS;
use super::suggest;
use super::yaml::{self, Value as Yaml};

impl ParamType {
    /// Every type name, as written in `type:`.
    pub const NAMES: &'static [&'static str] = &[
        "string", "name", "int", "number", "bool", "duration", "instance", "list", "object", "path",
    ];

    /// The type name as written in `type:`.
    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Name => "name",
            ParamType::Int => "int",
            ParamType::Number => "number",
            ParamType::Bool => "bool",
            ParamType::Duration => "duration",
            ParamType::Instance => "instance",
            ParamType::List => "list",
            ParamType::Object => "object",
            ParamType::Path => "path",
        }
    }

    /// The type called `name`.
    pub fn from_name(name: &str) -> Option<ParamType> {
        Some(match name {
            "string" => ParamType::String,
            "name" => ParamType::Name,
            "int" => ParamType::Int,
            "number" => ParamType::Number,
            "bool" => ParamType::Bool,
            "duration" => ParamType::Duration,
            "instance" => ParamType::Instance,
            "list" => ParamType::List,
            "object" => ParamType::Object,
            "path" => ParamType::Path,
            _ => return None,
        })
    }
}

type Problems = Vec<(String, String)>;

fn describe(v: &Value) -> String {
    crate::expr::describe(v)
}

/// Checks `v` against `ty` and returns it normalized (numbers and booleans given for a
/// `string` or `name` become text). `allow_null` accepts `null` (for parameters whose
/// default is `null`). Problems are `(sub-path, message)`, the sub-path starting with `.`
/// or `[` or empty.
pub(crate) fn check_value(ty: ParamType, v: &Value, allow_null: bool) -> Result<Value, Problems> {
    let mut problems = Problems::new();
    if v.is_null() {
        if allow_null {
            return Ok(Value::Null);
        }
        problems.push((String::new(), format!("expected {}, found null", expected(ty))));
        return Err(problems);
    }
    let out = match (ty, v) {
        (ParamType::String, Value::String(s)) => {
            if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                problems.push((String::new(), "must not contain control characters".to_owned()));
            }
            v.clone()
        }
        (ParamType::Path, Value::String(s)) => {
            if s.is_empty() || s.chars().any(char::is_control) {
                problems.push((
                    String::new(),
                    "must be a file path (not empty, no control characters)".to_owned(),
                ));
            }
            v.clone()
        }
        (ParamType::Name, Value::String(s)) => {
            if let Some(m) = name_problem(s) {
                problems.push((String::new(), m));
            }
            v.clone()
        }
        (ParamType::String | ParamType::Name, Value::Number(_) | Value::Bool(_)) => {
            let text = v.to_string();
            if ty == ParamType::Name
                && let Some(m) = name_problem(&text)
            {
                problems.push((String::new(), m));
            }
            Value::String(text)
        }
        (ParamType::Int, Value::Number(n)) if n.is_i64() => v.clone(),
        (ParamType::Int, Value::Number(n)) if n.is_u64() => {
            problems.push((String::new(), format!("{n} is too large for an int")));
            v.clone()
        }
        (ParamType::Number, Value::Number(_)) | (ParamType::Bool, Value::Bool(_)) => v.clone(),
        (ParamType::Duration, Value::String(s)) => {
            if let Err(e) = super::reader::parse_duration(s) {
                problems.push((String::new(), e));
            }
            v.clone()
        }
        (ParamType::Instance, Value::Object(m)) => {
            check_instance(m, &mut problems);
            v.clone()
        }
        (ParamType::List, Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !item.is_string() {
                    problems.push((
                        format!("[{i}]"),
                        format!("a list holds strings, found {}", describe(item)),
                    ));
                }
            }
            v.clone()
        }
        (ParamType::Object, Value::Object(_)) => v.clone(),
        (ParamType::Duration, Value::Number(n)) => {
            problems.push((
                String::new(),
                format!("a duration needs a unit: write `{n}s`, `{n}m` or `{n}h`"),
            ));
            v.clone()
        }
        _ => {
            problems.push((
                String::new(),
                format!("expected {}, found {}", expected(ty), describe(v)),
            ));
            v.clone()
        }
    };
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

fn expected(ty: ParamType) -> &'static str {
    match ty {
        ParamType::String => "a string",
        ParamType::Name => "a resource name (a string)",
        ParamType::Int => "an integer",
        ParamType::Number => "a number",
        ParamType::Bool => "true or false",
        ParamType::Duration => "a duration such as `90s` or `1h30m`",
        ParamType::Instance => "an instance ({subscription, resource_group, name})",
        ParamType::List => "a list of strings",
        ParamType::Object => "a mapping",
        ParamType::Path => "a file path (a string)",
    }
}

/// Why `s` cannot be a resource name (it goes into a URL path segment), if it cannot.
pub(crate) fn name_problem(s: &str) -> Option<String> {
    if s.trim().is_empty() {
        return Some("a resource name cannot be empty".to_owned());
    }
    if s.chars().any(char::is_control) {
        return Some(format!("`{}` contains a control character", s.escape_debug()));
    }
    if s.contains('/') || s.contains('\\') {
        return Some(format!(
            "`{s}` contains `/` or `\\`, which a resource name cannot (it is one name, not a path)"
        ));
    }
    if s.contains("..") {
        return Some(format!("`{s}` contains `..`, which a resource name cannot"));
    }
    if s.chars().count() > 260 {
        return Some("a resource name is at most 260 characters".to_owned());
    }
    None
}

fn check_instance(m: &Map<String, Value>, problems: &mut Problems) {
    for (k, v) in m {
        let sub = format!(".{k}");
        if !INSTANCE_FIELDS.contains(&k.as_str()) {
            let hint = suggest::hint(k, INSTANCE_FIELDS.iter().copied());
            problems.push((
                sub,
                format!(
                    "an instance has no field `{k}`{hint}; it has {}",
                    INSTANCE_FIELDS.join(", ")
                ),
            ));
            continue;
        }
        let Value::String(s) = v else {
            problems.push((sub, format!("expected a string, found {}", describe(v))));
            continue;
        };
        let problem = if k == "subnet_id" {
            subnet_problem(s)
        } else {
            name_problem(s)
        };
        if let Some(p) = problem {
            problems.push((sub, p));
        }
    }
    for r in ["subscription", "resource_group", "name"] {
        if !m.contains_key(r) {
            problems.push((String::new(), format!("an instance needs `{r}`")));
        }
    }
}

fn subnet_problem(s: &str) -> Option<String> {
    if s.chars().any(char::is_control) {
        return Some("`subnet_id` contains a control character".to_owned());
    }
    if s.contains("..") || s.contains("//") || s.contains('?') || s.contains('#') || s.contains('\\') {
        return Some(format!(
            "`{s}` is not a resource id (it contains `..`, `//`, `?`, `#` or `\\`)"
        ));
    }
    let lower = s.to_ascii_lowercase();
    if !lower.starts_with("/subscriptions/") || !lower.contains("/subnets/") {
        return Some(format!(
            "`{s}` is not a subnet id (`/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>`)"
        ));
    }
    None
}

/// Gives the problems of a parameter file that [`resolve_params`] found (they carry no
/// place: it sees values, not text) the line and column of the parameter they concern,
/// found in `text`, the file's text. Problems of other origins are left as they are.
pub fn place_params(mut diags: Diagnostics, text: &str, origin: &str) -> Diagnostics {
    let Ok(root) = yaml::parse(text) else { return diags };
    let Yaml::Map(entries) = &root.value else { return diags };
    for d in diags.0.iter_mut().filter(|d| d.origin == origin && d.line.is_none()) {
        let top = d.path.split(['.', '[']).next().unwrap_or_default();
        // A nested field (`mi.name`) points at its own line when it has one.
        let mut node = entries.iter().find(|(k, _)| k.key_text().as_deref() == Some(top));
        let mut pos = node.and_then(|(k, _)| k.pos);
        for part in d.path.split('.').skip(1) {
            let Some((_, v)) = node else { break };
            let Yaml::Map(inner) = &v.value else { break };
            node = inner.iter().find(|(k, _)| k.key_text().as_deref() == Some(part));
            if let Some(p) = node.and_then(|(k, _)| k.pos) {
                pos = Some(p);
            }
        }
        if let Some(p) = pos {
            d.line = Some(p.line);
            d.column = Some(p.column);
        }
    }
    diags
}

/// Reads a parameter file (YAML, or JSON, which is YAML): a mapping of parameter names to
/// values. Types are checked later, against the runbook, by [`resolve_params`].
pub fn parse_params(text: &str, origin: &str) -> Result<Map<String, Value>, Diagnostics> {
    let mut cx = Cx::new(origin, text);
    if text.len() > MAX_FILE_BYTES {
        cx.error(
            None,
            "",
            format!("the file is larger than {} KiB", MAX_FILE_BYTES / 1024),
        );
        return Err(cx.finish().err().unwrap_or_default());
    }
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => {
            cx.syntax(e);
            return Err(cx.finish().err().unwrap_or_default());
        }
    };
    cx.check_duplicates(&root, "");
    let mut out = Map::new();
    match &root.value {
        Yaml::Null => {}
        Yaml::Map(entries) => {
            for (k, v) in entries {
                match (&k.value, k.key_text()) {
                    (Yaml::String(_), Some(name)) => {
                        if !out.contains_key(&name) {
                            out.insert(name, v.to_json());
                        }
                    }
                    _ => cx.error(k.pos, "", "a parameter name must be text"),
                }
            }
        }
        other => cx.error(
            root.pos,
            "",
            format!(
                "a parameter file must be a mapping of parameter names to values, found {}",
                other.kind()
            ),
        ),
    }
    cx.finish().map(|_| out)
}

/// Parses a `--set key=value` argument. The value is read as YAML (`true`, `42`, `1.5`,
/// `[a, b]`, `{k: v}`; anything else, such as `a: b`, `0042` or `x # y`, is text as
/// written; an empty value is the empty string). A
/// dotted key (`primary.name=mi-a`) is returned as it is; [`resolve_params`] sets the
/// nested field.
pub fn parse_set(arg: &str) -> Result<(String, Value), String> {
    let Some((key, raw)) = arg.split_once('=') else {
        return Err(format!("`{arg}` is not `key=value`"));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("`{arg}` has no key before `=`"));
    }
    for seg in key.split('.') {
        if seg.is_empty() || !seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(format!(
                "invalid key `{key}`: use a parameter name, or `name.field` for a field of an instance or object"
            ));
        }
    }
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok((key.to_owned(), Value::String(String::new())));
    }
    if trimmed.contains(" #") {
        // Not a YAML comment on the command line: the text is meant as written.
        return Ok((key.to_owned(), Value::String(raw.to_owned())));
    }
    let value = match yaml::parse(trimmed) {
        // A mapping only when written as one (`{..}`): `a: b` is text.
        Ok(node) if matches!(node.value, Yaml::Map(_)) && !trimmed.starts_with('{') => Value::String(raw.to_owned()),
        Ok(node) if matches!(node.value, Yaml::Null) && !matches!(trimmed, "null" | "~") => {
            Value::String(raw.to_owned())
        }
        Ok(node) => node.to_json(),
        Err(e) if trimmed.starts_with('[') || trimmed.starts_with('{') => {
            return Err(format!("the value of `{key}` is not valid YAML: {}", e.message));
        }
        Err(_) => Value::String(raw.to_owned()),
    };
    Ok((key.to_owned(), value))
}

/// Checks the given parameter values against the runbook's declarations and returns an
/// object with every declared parameter (defaults applied).
///
/// Keys containing dots (from `--set primary.name=x`) set a field inside the parameter's
/// value (given or default). Reports unknown parameters, missing required ones, wrong
/// types, bad durations and resource names with `/`, `..` or control characters.
pub fn resolve_params(rb: &Runbook, given: Map<String, Value>, origin: &str) -> Result<Value, Diagnostics> {
    let mut errors: Vec<Diagnostic> = Vec::new();
    let mut push = |path: String, message: String| {
        errors.push(Diagnostic {
            origin: origin.to_owned(),
            line: None,
            column: None,
            path,
            message,
        });
    };
    let names: Vec<&str> = rb.params.iter().map(|p| p.name.as_str()).collect();
    let mut values: Map<String, Value> = Map::new();
    let mut dotted: Vec<(String, Value)> = Vec::new();
    for (k, v) in given {
        if k.contains('.') {
            dotted.push((k, v));
            continue;
        }
        if rb.params.iter().any(|p| p.name == k) {
            values.insert(k, v);
        } else {
            let hint = suggest::hint(&k, names.iter().copied());
            let msg = if names.is_empty() {
                format!("unknown parameter `{k}`: runbook `{}` takes no parameters", rb.name)
            } else if hint.is_empty() {
                format!(
                    "unknown parameter `{k}`; runbook `{}` takes: {}",
                    rb.name,
                    names.join(", ")
                )
            } else {
                format!("unknown parameter `{k}`{hint}")
            };
            push(k, msg);
        }
    }
    for (k, v) in dotted {
        let mut segs = k.split('.');
        let root = segs.next().unwrap_or_default();
        let Some(decl) = rb.params.iter().find(|p| p.name == root) else {
            let hint = suggest::hint(root, names.iter().copied());
            push(k.clone(), format!("unknown parameter `{root}`{hint}"));
            continue;
        };
        if !matches!(decl.ty, ParamType::Instance | ParamType::Object) {
            push(
                k.clone(),
                format!("`{root}` is of type `{}` and has no fields", decl.ty.name()),
            );
            continue;
        }
        let base = values.entry(root.to_owned()).or_insert_with(|| match &decl.default {
            Some(d @ Value::Object(_)) => d.clone(),
            _ => Value::Object(Map::new()),
        });
        let mut cur = base;
        let rest: Vec<&str> = segs.collect();
        let mut ok = true;
        for (i, seg) in rest.iter().enumerate() {
            if !cur.is_object() {
                ok = false;
                break;
            }
            let obj = cur.as_object_mut();
            let Some(obj) = obj else { break };
            if i + 1 == rest.len() {
                obj.insert((*seg).to_owned(), v.clone());
                break;
            }
            cur = obj
                .entry((*seg).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        if !ok {
            push(
                k.clone(),
                format!("cannot set a field inside `{root}`: it is not a mapping"),
            );
        }
    }

    let mut out = Map::new();
    for decl in &rb.params {
        let allow_null = matches!(decl.default, Some(Value::Null));
        match values.remove(&decl.name) {
            Some(v) => match check_value(decl.ty, &v, allow_null) {
                Ok(v) => {
                    out.insert(decl.name.clone(), v);
                }
                Err(problems) => {
                    for (sub, msg) in problems {
                        push(format!("{}{sub}", decl.name), msg);
                    }
                }
            },
            None => match &decl.default {
                Some(d) => {
                    out.insert(decl.name.clone(), d.clone());
                }
                None => push(
                    decl.name.clone(),
                    format!(
                        "missing required parameter `{}` (type `{}`, no default)",
                        decl.name,
                        decl.ty.name()
                    ),
                ),
            },
        }
    }
    if errors.is_empty() {
        Ok(Value::Object(out))
    } else {
        Err(Diagnostics(errors))
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use serde_json::json;

    use super::*;

    #[test]
    fn set_values_are_read_as_yaml() {
        let mut out = String::new();
        for arg in [
            "size=32",
            "ratio=1.5",
            "big=1e3",
            "flag=true",
            "flag=no",
            "name=fog-sales",
            "id=0042",
            "n=1_000",
            "empty=",
            "nothing=null",
            "tilde=~",
            "regions=[westeurope, northeurope]",
            "tags={team: data, tier: 1}",
            "msg=note: this is text",
            "msg=a # not a comment",
            "url=https://example.invalid/x?a=b",
            "spaced =  padded ",
            "primary.name=mi-b",
            "a.b.c=1",
            "bad=[unclosed",
            "noequals",
            "=value",
            "a..b=1",
            "a b=1",
        ] {
            let _ = writeln!(out, "{arg:<40} {:?}", parse_set(arg));
        }
        insta::assert_snapshot!(out);
    }

    fn runbook() -> Runbook {
        let text = r#"
runbook: p
version: 1
params:
  name: { type: name }
  text: { type: string, default: "x" }
  primary: { type: instance, default: { subscription: s, resource_group: rg, name: mi } }
  tags: { type: object, default: { a: 1 } }
  size: { type: int, default: 1 }
  opt: { type: string, default: null }
steps:
  - id: a
    uses: wait
    with: { duration: 1s }
"#;
        crate::runbook::parse(text, "p.yaml").expect("valid")
    }

    fn resolve(given: Value) -> String {
        let Value::Object(given) = given else { unreachable!() };
        match resolve_params(&runbook(), given, "given") {
            Ok(v) => format!("ok {v}"),
            Err(d) => format!("err\n{d}"),
        }
    }

    #[test]
    fn defaults_and_coercions() {
        insta::assert_snapshot!(resolve(json!({ "name": "fog-1" })), @r#"ok {"name":"fog-1","opt":null,"primary":{"name":"mi","resource_group":"rg","subscription":"s"},"size":1,"tags":{"a":1},"text":"x"}"#);
        insta::assert_snapshot!(resolve(json!({ "name": 42, "text": true, "opt": null })), @r#"ok {"name":"42","opt":null,"primary":{"name":"mi","resource_group":"rg","subscription":"s"},"size":1,"tags":{"a":1},"text":"true"}"#);
    }

    #[test]
    fn dotted_keys_set_fields_on_top_of_file_or_default() {
        insta::assert_snapshot!(resolve(json!({ "name": "n", "primary.name": "mi-2", "tags.b.c": 2 })), @r#"ok {"name":"n","opt":null,"primary":{"name":"mi-2","resource_group":"rg","subscription":"s"},"size":1,"tags":{"a":1,"b":{"c":2}},"text":"x"}"#);
        insta::assert_snapshot!(resolve(json!({ "name": "n", "primary": { "subscription": "s2", "resource_group": "r2", "name": "m2" }, "primary.location": "westeurope" })), @r#"ok {"name":"n","opt":null,"primary":{"location":"westeurope","name":"m2","resource_group":"r2","subscription":"s2"},"size":1,"tags":{"a":1},"text":"x"}"#);
    }

    #[test]
    fn every_problem_is_reported() {
        insta::assert_snapshot!(resolve(json!({ "size.x": 1, "nme": "n", "primary.name": "a/b", "primary.bogus": "x", "text": "a\u{1}b" })), @r"
        err
        given: nme: unknown parameter `nme` (did you mean `name`?)
        given: size.x: `size` is of type `int` and has no fields
        given: name: missing required parameter `name` (type `name`, no default)
        given: text: must not contain control characters
        given: primary.bogus: an instance has no field `bogus`; it has subscription, resource_group, name, location, subnet_id
        given: primary.name: `a/b` contains `/` or `\`, which a resource name cannot (it is one name, not a path)
        ");
    }
}
