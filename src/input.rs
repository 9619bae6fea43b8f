//! Reading what the operator gives: a runbook file, a parameter file and `--set` values,
//! checked against the runbook, with every error printed at its place.

use std::path::Path;

use fogbook_engine::EngineError;
use fogbook_engine::runbook::{self, Diagnostics, Runbook};
use serde_json::json;

use crate::error::{CliError, fail};
use crate::exit::Exit;
use crate::output;

pub(crate) fn read_runbook(path: &Path) -> Result<(String, Runbook), Exit> {
    let origin = path.display().to_string();
    let text = match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                return Err(fail(CliError::usage(
                    format!("{origin}: the runbook is not valid UTF-8"),
                    None,
                )));
            }
        },
        Err(e) => {
            return Err(fail(CliError::usage(
                format!("cannot read runbook {origin}: {e}"),
                None,
            )));
        }
    };
    match runbook::parse(&text, &origin) {
        Ok(rb) => {
            for w in &rb.warnings {
                output::always(&w.to_string());
            }
            Ok((text, rb))
        }
        Err(diags) => Err(fail(EngineError::Invalid(diags))),
    }
}

pub(crate) fn print_diagnostics(diags: &Diagnostics) {
    let n = diags.iter().filter(|d| !d.is_warning()).count();
    output::always(&diags.to_string());
    output::error(
        &format!("{n} error{} found; nothing was run", if n == 1 { "" } else { "s" }),
        None,
    );
}

/// Reads the parameter file and `--set` values and checks them against the runbook.
pub(crate) fn read_params(rb: &Runbook, file: Option<&Path>, sets: &[String]) -> Result<serde_json::Value, Exit> {
    let mut given = serde_json::Map::new();
    let mut origin = "command line".to_owned();
    let mut file_text = String::new();
    if let Some(path) = file {
        origin = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                return Err(fail(CliError::usage(
                    format!("cannot read parameter file {origin}: {e}"),
                    None,
                )));
            }
        };
        file_text.clone_from(&text);
        given = match runbook::parse_params(&text, &origin) {
            Ok(m) => m,
            Err(d) => {
                return Err(fail(EngineError::Invalid(d)));
            }
        };
        anchor_paths(rb, &mut given, path.parent().unwrap_or(Path::new("")), |_| true);
    }
    for s in sets {
        match runbook::parse_set(s) {
            Ok((key, value)) => {
                set_dotted(&mut given, &key, value);
                anchor_paths(rb, &mut given, Path::new(""), |name| name == key);
            }
            Err(e) => {
                return Err(fail(CliError::usage(
                    format!("--set {s}: {e}"),
                    Some("write --set name=value, e.g. --set delete_old_secondary=true"),
                )));
            }
        }
    }
    runbook::resolve_params(rb, given, &origin).map_err(|d| {
        fail(EngineError::Invalid(runbook::place_params(
            blame_sets(d, sets),
            &file_text,
            &origin,
        )))
    })
}

/// Makes the relative values of the runbook's `type: path` parameters named in `given` (and
/// chosen by `which`) absolute against `base` (the parameter file's folder; empty: the
/// current directory), so that the run finds its files whatever directory it is created,
/// resumed or repaired from.
fn anchor_paths(
    rb: &Runbook,
    given: &mut serde_json::Map<String, serde_json::Value>,
    base: &Path,
    which: impl Fn(&str) -> bool,
) {
    for p in rb
        .params
        .iter()
        .filter(|p| p.ty == runbook::ParamType::Path && which(&p.name))
    {
        if let Some(serde_json::Value::String(v)) = given.get_mut(&p.name)
            && !v.is_empty()
            && Path::new(v.as_str()).is_relative()
            && let Ok(abs) = std::path::absolute(base.join(v.as_str()))
        {
            *v = abs.display().to_string();
        }
    }
}

/// A problem with a parameter that `--set` gave is the `--set`'s, not the parameter file's.
fn blame_sets(mut diags: Diagnostics, sets: &[String]) -> Diagnostics {
    for d in &mut diags.0 {
        let top = d.path.split(['.', '[', ':']).next().unwrap_or_default();
        // The value itself is not repeated: the message quotes it already (shortened).
        if sets.iter().any(|s| {
            let key = s.split_once('=').map_or(s.as_str(), |(k, _)| k);
            !top.is_empty() && key.split('.').next() == Some(top)
        }) {
            "--set".clone_into(&mut d.origin);
        }
    }
    diags
}

fn set_dotted(map: &mut serde_json::Map<String, serde_json::Value>, key: &str, value: serde_json::Value) {
    match key.split_once('.') {
        None => {
            map.insert(key.to_owned(), value);
        }
        Some((head, rest)) => {
            let entry = map.entry(head.to_owned()).or_insert_with(|| json!({}));
            if !entry.is_object() {
                *entry = json!({});
            }
            if let Some(inner) = entry.as_object_mut() {
                set_dotted(inner, rest, value);
            }
        }
    }
}

pub(crate) fn read_params_quiet(rb: &Runbook, file: Option<&Path>, sets: &[String]) -> Result<(), String> {
    let mut given = serde_json::Map::new();
    let mut origin = "command line".to_owned();
    let mut file_text = String::new();
    if let Some(path) = file {
        origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{origin}: cannot read: {e}"))?;
        given = runbook::parse_params(&text, &origin).map_err(|d| d.to_string())?;
        file_text = text;
    }
    for s in sets {
        let (k, v) = runbook::parse_set(s).map_err(|e| format!("--set {s}: {e}"))?;
        set_dotted(&mut given, &k, v);
    }
    runbook::resolve_params(rb, given, &origin)
        .map(|_| ())
        .map_err(|d| runbook::place_params(blame_sets(d, sets), &file_text, &origin).to_string())
}
