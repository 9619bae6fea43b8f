//! The only module that writes to stdout (data) and prints errors to stderr.
//!
//! stdout carries data only: a report, a table, or JSON with a `schema_version`. A closed
//! pipe (`fogbook runs | head -1`) ends the process quietly with success. stderr goes through
//! anstream, which drops colour codes when colour is off ([`set_color`]).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;

use serde::Serialize;

/// The version of every JSON document fogbook prints.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// Writes `text` (plus a newline) to stdout.
pub(crate) fn data(text: &str) {
    let mut out = std::io::stdout().lock();
    let result = out.write_all(text.as_bytes()).and_then(|()| {
        if text.ends_with('\n') {
            Ok(())
        } else {
            out.write_all(b"\n")
        }
    });
    if let Err(e) = result.and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
    }
}

/// Writes `value` as pretty JSON, with `schema_version` first, to stdout.
pub(crate) fn json<T: Serialize>(kind: &str, value: &T) {
    let text = json_text(kind, value);
    if !text.is_empty() {
        data(&text);
    }
}

/// The document [`json`] writes (empty, with the error printed, when it cannot be encoded).
pub(crate) fn json_text<T: Serialize>(kind: &str, value: &T) -> String {
    let mut doc = serde_json::Map::new();
    doc.insert("schema_version".to_owned(), SCHEMA_VERSION.into());
    doc.insert("kind".to_owned(), kind.into());
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(map)) => doc.extend(map),
        Ok(other) => {
            doc.insert("data".to_owned(), other);
        }
        Err(e) => {
            error(&format!("cannot encode JSON output: {e}"), None);
            return String::new();
        }
    }
    let mut doc = serde_json::Value::Object(doc);
    rfc3339_times(&mut doc);
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Subtrees that carry a runbook's or an activity's own data, left exactly as stored.
const OPAQUE: &[&str] = &[
    "data", "params", "input", "output", "progress", "error", "results", "by",
];

/// Every time of fogbook's own rows (`at`, `*_at`) stored as epoch milliseconds becomes RFC
/// 3339 text, with the milliseconds beside it as `*_ms`, so tools read one time format.
fn rfc3339_times(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if OPAQUE.contains(&key.as_str()) {
                    continue;
                }
                let Some(v) = map.get_mut(&key) else { continue };
                if (key == "at" || key.ends_with("_at"))
                    && let Some(ms) = v.as_i64()
                {
                    *v = fogbook_state::format_ms(ms).into();
                    map.insert(format!("{key}_ms"), ms.into());
                    continue;
                }
                rfc3339_times(v);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(rfc3339_times),
        _ => {}
    }
}

/// Whether errors go to stdout as JSON (`--format json`), set once by the command dispatch.
static JSON_ERRORS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sets whether stderr is coloured: `--color always|never`, or with `auto` when stderr is a
/// terminal and `NO_COLOR` is unset (`CLICOLOR_FORCE` forces it). Returns whether it is.
pub(crate) fn set_color(choice: crate::cli::ColorChoice) -> bool {
    use anstream::ColorChoice as C;
    let resolved = match choice {
        crate::cli::ColorChoice::Always => C::AlwaysAnsi,
        crate::cli::ColorChoice::Never => C::Never,
        crate::cli::ColorChoice::Auto => anstream::AutoStream::choice(&std::io::stderr()),
    };
    resolved.write_global();
    resolved != C::Never
}

/// Errors become JSON documents on stdout (`--format json`).
pub(crate) fn json_errors(on: bool) {
    JSON_ERRORS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// `error: …`, then the causes, then a blank line and `hint: …`. Under `--format json`, a
/// JSON document of kind `error` on stdout instead (the exit code is unchanged).
pub(crate) fn error(message: &str, hint: Option<&str>) {
    if JSON_ERRORS.load(std::sync::atomic::Ordering::Relaxed) {
        let lines: Vec<&str> = message.lines().collect();
        json(
            "error",
            &serde_json::json!({
                "error": lines.first().copied().unwrap_or_default(),
                "details": lines.get(1..).unwrap_or_default().iter().map(|l| l.trim()).collect::<Vec<_>>(),
                "hint": hint,
            }),
        );
        return;
    }
    let mut err = anstream::stderr().lock();
    let red = anstyle::AnsiColor::Red.on_default().bold();
    let _ = writeln!(err, "{red}error:{red:#} {message}");
    if let Some(h) = hint {
        let _ = writeln!(err, "\nhint: {h}");
    }
}

/// Prints an error with its chain of causes.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static), hint: Option<&str>) {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    error(&text, hint);
}

/// A line on stderr (progress, notes), unless quiet.
pub(crate) fn note(quiet: bool, text: &str) {
    if !quiet {
        anstream::eprintln!("{text}");
    }
}

/// A line on stderr even when quiet (the run id, warnings that change what happens).
pub(crate) fn always(text: &str) {
    anstream::eprintln!("{text}");
}
